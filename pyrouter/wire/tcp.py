"""TCP header (RFC 9293), enough for forwarding, conntrack and NAT.

Layout: sport(2) dport(2) seq(4) ack(4) off|flags(2) window(2) checksum(2)
urgent(2) options((off-5)*4) data.  Invariant: a parsed TcpRepr's data offset
is >= 5 words and lies within the segment.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .checksum import inet_checksum, ones_sum
from .errors import MalformedError

TCP_HLEN = 20
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80
_HDR = struct.Struct("!HHIIHHHH")


@dataclass(frozen=True, slots=True)
class TcpRepr:
    sport: int
    dport: int
    seq: int = 0
    ack: int = 0
    flags: int = 0
    window: int = 65535
    urgent: int = 0
    options: bytes = b""
    data: bytes = b""
    checksum: int | None = None

    @classmethod
    def parse(cls, buf: bytes | bytearray | memoryview, off: int, end: int,
              pseudo: int | None = None) -> TcpRepr:
        if end - off < TCP_HLEN:
            raise MalformedError("tcp_malformed", "truncated")
        sport, dport, seq, ack, offflags, window, csum, urg = _HDR.unpack_from(buf, off)
        doff = (offflags >> 12) << 2
        if doff < TCP_HLEN or doff > end - off:
            raise MalformedError("tcp_malformed", f"data offset {doff}")
        if pseudo is not None and ones_sum(buf[off:end], pseudo + end - off) != 0xFFFF:
            raise MalformedError("tcp_csum_error")
        return cls(sport, dport, seq, ack, offflags & 0x1FF, window, urg,
                   bytes(buf[off + TCP_HLEN:off + doff]), bytes(buf[off + doff:end]), csum)

    @property
    def length(self) -> int:
        return TCP_HLEN + len(self.options) + len(self.data)

    def emit(self, buf: bytearray, off: int, pseudo: int) -> None:
        if len(self.options) % 4 or len(self.options) > 40:
            raise ValueError("TCP options must be padded to 4 bytes, at most 40")
        doff = TCP_HLEN + len(self.options)
        _HDR.pack_into(buf, off, self.sport, self.dport, self.seq, self.ack,
                       ((doff >> 2) << 12) | self.flags, self.window, 0, self.urgent)
        buf[off + TCP_HLEN:off + doff] = self.options
        end = off + doff + len(self.data)
        buf[off + doff:end] = self.data
        c = inet_checksum(buf[off:end], pseudo + end - off)
        struct.pack_into("!H", buf, off + 16, c)
