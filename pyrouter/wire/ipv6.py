"""IPv6 fixed header (RFC 8200 section 3); extension headers come with the IPv6 issue.

Layout (40 bytes)::

    ver(4) traffic class(8) flow label(20)
    payload length(16) next header(8) hop limit(8)
    source address(128)
    destination address(128)

Invariant: a parsed Ipv6Repr's payload lies within the buffer.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv6Address

from .errors import MalformedError

IPV6_HLEN = 40
IPV6_MIN_MTU = 1280
_HDR = struct.Struct("!IHBB16s16s")


@dataclass(frozen=True, slots=True)
class Ipv6Repr:
    src: IPv6Address
    dst: IPv6Address
    next_header: int
    hop_limit: int = 64
    traffic_class: int = 0
    flow_label: int = 0
    payload_len: int = 0

    @classmethod
    def parse(cls, buf: bytes | bytearray | memoryview, off: int = 0,
              end: int | None = None) -> Ipv6Repr:
        if end is None:
            end = len(buf)
        if end - off < IPV6_HLEN:
            raise MalformedError("ip6_truncated", f"{end - off} bytes")
        vtf, plen, nh, hlim, src, dst = _HDR.unpack_from(buf, off)
        if vtf >> 28 != 6:
            raise MalformedError("ip6_bad_version", str(vtf >> 28))
        if plen > end - off - IPV6_HLEN:
            raise MalformedError("ip6_truncated", f"payload length {plen}")
        return cls(IPv6Address(src), IPv6Address(dst), nh, hlim, (vtf >> 20) & 0xFF,
                   vtf & 0xFFFFF, plen)

    def emit(self, buf: bytearray, off: int = 0, payload_len: int | None = None) -> None:
        plen = self.payload_len if payload_len is None else payload_len
        vtf = (6 << 28) | (self.traffic_class << 20) | self.flow_label
        _HDR.pack_into(buf, off, vtf, plen, self.next_header, self.hop_limit,
                       self.src.packed, self.dst.packed)

    def to_bytes(self, payload: bytes = b"") -> bytes:
        out = bytearray(IPV6_HLEN + len(payload))
        self.emit(out, 0, len(payload))
        out[IPV6_HLEN:] = payload
        return bytes(out)


# -- addresses (RFC 4291) as 128-bit ints -------------------------------------------
IPPROTO_HOPOPTS = 0
IPPROTO_TCP6 = 6
IPPROTO_UDP6 = 17
IPPROTO_ROUTING = 43
IPPROTO_FRAGMENT = 44
IPPROTO_ESP = 50
IPPROTO_AH = 51
IPPROTO_ICMPV6 = 58
IPPROTO_NONE = 59
IPPROTO_DSTOPTS = 60
IPPROTO_MH = 135

ALL_NODES = 0xFF02 << 112 | 1
ALL_ROUTERS = 0xFF02 << 112 | 2
ALL_MLDV2_ROUTERS = 0xFF02 << 112 | 0x16
SOLICITED_NODE_BASE = 0xFF02_0000_0000_0000_0000_0001_FF00_0000
LOOPBACK6 = 1
_LL_PREFIX = 0xFE80 << 112


def is_multicast6(a: int) -> bool:
    return a >> 120 == 0xFF


def is_linklocal6(a: int) -> bool:
    """fe80::/10 unicast, or a link-local scoped multicast (ff02::/16 and ffx2)."""
    return a >> 118 == 0x3FA or (a >> 120 == 0xFF and (a >> 112) & 0xF == 2)


def mcast_scope(a: int) -> int:
    return (a >> 112) & 0xF


def solicited_node(a: int) -> int:
    """ff02::1:ffXX:XXXX for *a* (RFC 4291 2.7.1)."""
    return SOLICITED_NODE_BASE | (a & 0xFFFFFF)


def mcast_mac6(a: int) -> bytes:
    """33:33 + the low 32 bits (RFC 2464 section 7)."""
    return b"\x33\x33" + (a & 0xFFFFFFFF).to_bytes(4, "big")


def eui64_linklocal(mac: bytes) -> int:
    """fe80::/64 with the modified EUI-64 interface identifier (RFC 4291 appendix A)."""
    iid = bytes([mac[0] ^ 0x02, mac[1], mac[2], 0xFF, 0xFE, mac[3], mac[4], mac[5]])
    return _LL_PREFIX | int.from_bytes(iid, "big")


def ip6_str(a: int | bytes | bytearray) -> str:
    if not isinstance(a, int):
        a = int.from_bytes(a, "big")
    return str(IPv6Address(a))
