"""UDP header (RFC 768).

Layout: sport(2) dport(2) length(2) checksum(2), then data.  Over IPv4 a zero
checksum means "none" and is not verified; a computed checksum of zero is sent
as 0xFFFF.  Invariant: a parsed UdpRepr's length lies within the IP payload.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .checksum import inet_checksum, ones_sum
from .errors import MalformedError

UDP_HLEN = 8
_HDR = struct.Struct("!HHHH")


@dataclass(frozen=True, slots=True)
class UdpRepr:
    sport: int
    dport: int
    data: bytes = b""
    checksum: int | None = None

    @classmethod
    def parse(cls, buf: bytes | bytearray | memoryview, off: int, end: int,
              pseudo: int | None = None) -> UdpRepr:
        """Parse the datagram in ``buf[off:end]``; with *pseudo* (the pseudo-header
        partial sum, length excluded) also verify a non-zero checksum."""
        if end - off < UDP_HLEN:
            raise MalformedError("udp_malformed", "truncated")
        sport, dport, length, csum = _HDR.unpack_from(buf, off)
        if length < UDP_HLEN or length > end - off:
            raise MalformedError("udp_malformed", f"length {length}")
        if pseudo is not None and csum != 0 \
                and ones_sum(buf[off:off + length], pseudo + length) != 0xFFFF:
            raise MalformedError("udp_csum_error")
        return cls(sport, dport, bytes(buf[off + UDP_HLEN:off + length]), csum)

    @property
    def length(self) -> int:
        return UDP_HLEN + len(self.data)

    def emit(self, buf: bytearray, off: int, pseudo: int) -> None:
        """Write header and data; *pseudo* is the pseudo-header sum without length."""
        length = self.length
        _HDR.pack_into(buf, off, self.sport, self.dport, length, 0)
        buf[off + UDP_HLEN:off + length] = self.data
        c = inet_checksum(buf[off:off + length], pseudo + length) or 0xFFFF
        struct.pack_into("!H", buf, off + 6, c)
