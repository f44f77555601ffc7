"""ARP for IPv4 over Ethernet (RFC 826).

Layout (28 bytes)::

    htype(2)=1 ptype(2)=0x0800 hlen(1)=6 plen(1)=4 oper(2)
    sha(6) spa(4) tha(6) tpa(4)

Only the Ethernet/IPv4 combination is accepted; anything else is malformed for
this router (the kernel's arp_rcv drops it too).  Invariant: a parsed
ArpRepr has 6-byte hardware and 4-byte protocol addresses.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

from .errors import MalformedError

ARP_LEN = 28
ARPHRD_ETHER = 1
ARPOP_REQUEST = 1
ARPOP_REPLY = 2

_ARP = struct.Struct("!HHBBH6s4s6s4s")


@dataclass(frozen=True, slots=True)
class ArpRepr:
    """An Ethernet/IPv4 ARP packet."""

    op: int
    sha: bytes
    spa: IPv4Address
    tha: bytes
    tpa: IPv4Address

    @classmethod
    def parse(cls, buf: bytes | bytearray | memoryview, off: int = 0) -> ArpRepr:
        if len(buf) - off < ARP_LEN:
            raise MalformedError("arp_malformed", "truncated")
        htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _ARP.unpack_from(buf, off)
        if htype != ARPHRD_ETHER or ptype != 0x0800 or hlen != 6 or plen != 4:
            raise MalformedError("arp_malformed", "not Ethernet/IPv4")
        return cls(op=op, sha=sha, spa=IPv4Address(spa), tha=tha, tpa=IPv4Address(tpa))

    def emit(self, buf: bytearray, off: int = 0) -> None:
        _ARP.pack_into(buf, off, ARPHRD_ETHER, 0x0800, 6, 4, self.op,
                       self.sha, self.spa.packed, self.tha, self.tpa.packed)

    def to_bytes(self) -> bytes:
        out = bytearray(ARP_LEN)
        self.emit(out)
        return bytes(out)
