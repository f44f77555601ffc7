"""Ethernet II and IEEE 802.1Q headers.

Layout (IEEE 802.3 clause 3, Ethernet II framing)::

    0      6      12         14
    | dst  | src  | ethertype | payload ...
    802.1Q: | dst | src | 0x8100 | TCI (pcp:3 dei:1 vid:12) | ethertype | payload

Invariants: ``EthernetRepr.parse`` either raises MalformedError or returns a
header whose ``header_len`` is within the frame.  The FCS is never present
(TAP devices strip it).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .errors import MalformedError

ETH_HLEN = 14
VLAN_HLEN = 4
ETH_ALEN = 6

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_8021Q = 0x8100
ETH_P_8021AD = 0x88A8
ETH_P_IPV6 = 0x86DD

ETH_P_IP_BYTES = b"\x08\x00"

_HDR = struct.Struct("!6s6sH")
_TAG = struct.Struct("!HH")


@dataclass(frozen=True, slots=True)
class VlanTag:
    """One 802.1Q tag: priority code point, drop eligible indicator, VLAN id."""

    vid: int
    pcp: int = 0
    dei: int = 0
    tpid: int = ETH_P_8021Q

    @property
    def tci(self) -> int:
        return (self.pcp << 13) | (self.dei << 12) | self.vid


@dataclass(frozen=True, slots=True)
class EthernetRepr:
    """An Ethernet II header, optionally with one 802.1Q/802.1ad tag."""

    dst: bytes
    src: bytes
    ethertype: int
    vlan: VlanTag | None = None

    @property
    def header_len(self) -> int:
        return ETH_HLEN + (VLAN_HLEN if self.vlan else 0)

    @classmethod
    def parse(cls, buf: bytes | bytearray | memoryview, off: int = 0) -> EthernetRepr:
        if len(buf) - off < ETH_HLEN:
            raise MalformedError("eth_truncated", f"{len(buf) - off} bytes")
        dst, src, etype = _HDR.unpack_from(buf, off)
        if etype in (ETH_P_8021Q, ETH_P_8021AD):
            if len(buf) - off < ETH_HLEN + VLAN_HLEN:
                raise MalformedError("eth_truncated", "802.1Q tag cut short")
            tci, inner = _TAG.unpack_from(buf, off + ETH_HLEN)
            tag = VlanTag(vid=tci & 0x0FFF, pcp=tci >> 13, dei=(tci >> 12) & 1, tpid=etype)
            return cls(dst=dst, src=src, ethertype=inner, vlan=tag)
        return cls(dst=dst, src=src, ethertype=etype)

    def emit(self, buf: bytearray, off: int = 0) -> None:
        if self.vlan is None:
            _HDR.pack_into(buf, off, self.dst, self.src, self.ethertype)
        else:
            _HDR.pack_into(buf, off, self.dst, self.src, self.vlan.tpid)
            _TAG.pack_into(buf, off + ETH_HLEN, self.vlan.tci, self.ethertype)

    def to_bytes(self) -> bytes:
        out = bytearray(self.header_len)
        self.emit(out)
        return bytes(out)
