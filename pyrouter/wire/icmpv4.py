"""ICMP for IPv4 (RFC 792, RFC 1191 next-hop MTU, RFC 1812 section 4.3).

Layout::

    type(1) code(1) checksum(2) rest-of-header(4) data...

``rest`` is the 32-bit variable part: id/sequence for echo, the gateway for
a redirect, unused(16)+next-hop MTU(16) for Frag Needed, pointer(8) for a
Parameter Problem.  The checksum covers the whole ICMP message.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .checksum import inet_checksum, verify
from .errors import MalformedError

ICMP_HLEN = 8

ICMP_ECHOREPLY = 0
ICMP_DEST_UNREACH = 3
ICMP_SOURCE_QUENCH = 4
ICMP_REDIRECT = 5
ICMP_ECHO = 8
ICMP_TIME_EXCEEDED = 11
ICMP_PARAMETERPROB = 12
ICMP_TIMESTAMP = 13
ICMP_TIMESTAMPREPLY = 14
NR_ICMP_TYPES = 18

# Destination Unreachable codes (RFC 792, RFC 1812).
ICMP_NET_UNREACH = 0
ICMP_HOST_UNREACH = 1
ICMP_PROT_UNREACH = 2
ICMP_PORT_UNREACH = 3
ICMP_FRAG_NEEDED = 4
ICMP_PKT_FILTERED = 13
# Time Exceeded codes.
ICMP_EXC_TTL = 0
ICMP_EXC_FRAGTIME = 1

# icmp_pointers[].error in net/ipv4/icmp.c: which types are errors.
ERROR_TYPES = frozenset({ICMP_DEST_UNREACH, ICMP_SOURCE_QUENCH, ICMP_REDIRECT,
                         ICMP_TIME_EXCEEDED, ICMP_PARAMETERPROB})

_HDR = struct.Struct("!BBHI")


def is_error_type(icmp_type: int) -> bool:
    """True for error messages; unknown types (> NR_ICMP_TYPES) count as errors
    too, as in icmp_send() ("assume any unknown ICMP type is an error")."""
    return icmp_type in ERROR_TYPES or icmp_type > NR_ICMP_TYPES


@dataclass(frozen=True, slots=True)
class IcmpRepr:
    """An ICMPv4 message: header fields plus the data after the 8-byte header."""

    type: int
    code: int
    rest: int = 0
    data: bytes = b""
    checksum: int | None = None

    @property
    def ident(self) -> int:
        return self.rest >> 16

    @property
    def seq(self) -> int:
        return self.rest & 0xFFFF

    @property
    def mtu(self) -> int:
        return self.rest & 0xFFFF

    @classmethod
    def echo(cls, request: bool, ident: int, seq: int, data: bytes = b"") -> IcmpRepr:
        return cls(ICMP_ECHO if request else ICMP_ECHOREPLY, 0, (ident << 16) | seq, data)

    @classmethod
    def parse(cls, buf: bytes | bytearray | memoryview, off: int = 0, end: int | None = None,
              verify_checksum: bool = True) -> IcmpRepr:
        if end is None:
            end = len(buf)
        if end - off < ICMP_HLEN:
            raise MalformedError("icmp_malformed", "truncated")
        if verify_checksum and not verify(buf[off:end]):
            raise MalformedError("icmp_csum_error")
        t, c, csum, rest = _HDR.unpack_from(buf, off)
        return cls(t, c, rest, bytes(buf[off + ICMP_HLEN:end]), csum)

    @property
    def length(self) -> int:
        return ICMP_HLEN + len(self.data)

    def emit(self, buf: bytearray, off: int = 0) -> None:
        _HDR.pack_into(buf, off, self.type, self.code, 0, self.rest)
        end = off + ICMP_HLEN + len(self.data)
        buf[off + ICMP_HLEN:end] = self.data
        c = inet_checksum(buf[off:end])
        buf[off + 2] = c >> 8
        buf[off + 3] = c & 0xFF

    def to_bytes(self) -> bytes:
        out = bytearray(self.length)
        self.emit(out)
        return bytes(out)
