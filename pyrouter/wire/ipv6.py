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
