"""MAC address helpers and the address constants the codecs share.

MAC addresses are plain 6-byte ``bytes`` on the hot path; these helpers turn
them to and from the ``aa:bb:cc:dd:ee:ff`` text operators read.  IP addresses
are ``ipaddress`` objects in Reprs and plain ``int`` inside the core.
"""

from __future__ import annotations

import hashlib
import re

_MAC = re.compile(r"^[0-9A-Fa-f]{1,2}([:-][0-9A-Fa-f]{1,2}){5}$")

BROADCAST_MAC = b"\xff" * 6
ZERO_MAC = b"\x00" * 6


def mac_to_str(mac: bytes) -> str:
    """``b'\\x02\\x00...'`` -> ``'02:00:...'``."""
    return ":".join(f"{b:02x}" for b in mac)


def mac_from_str(text: str) -> bytes:
    """Parse ``aa:bb:cc:dd:ee:ff`` (or with ``-``); ValueError if it is not one."""
    if not _MAC.fullmatch(text):
        raise ValueError(f"not a MAC address: {text!r}")
    return bytes(int(p, 16) for p in text.replace("-", ":").split(":"))


def is_multicast_mac(mac: bytes) -> bool:
    """The I/G bit (least significant bit of the first octet); broadcast included."""
    return bool(mac[0] & 1)


def stable_mac(name: str) -> bytes:
    """A locally administered unicast MAC derived from *name*, stable across runs."""
    digest = hashlib.sha256(name.encode()).digest()
    return bytes([0x02]) + digest[:5]


def ip4_str(addr: int | bytes | bytearray) -> str:
    """Dotted quad of an IPv4 address given as an int or 4 bytes (for logs and traces)."""
    if not isinstance(addr, int):
        addr = int.from_bytes(addr, "big")
    return f"{addr >> 24}.{(addr >> 16) & 255}.{(addr >> 8) & 255}.{addr & 255}"
