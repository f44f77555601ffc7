"""The DNS message header (RFC 1035 section 4.1.1), all a forwarder needs to read.

Layout: id(2) flags(2) qdcount(2) ancount(2) nscount(2) arcount(2), then the
sections, which a forwarder passes through untouched.  Flags: QR (0x8000, 1 in a
response), opcode (bits 11-14), AA, TC, RD, RA, Z, RCODE (low 4 bits).

Invariant: ``parse`` raises MalformedError("dns_malformed") for anything shorter
than a header; it never looks past it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .errors import MalformedError

DNS_PORT = 53
HEADER_LEN = 12
QR = 0x8000
_HDR = struct.Struct("!HHHHHH")


@dataclass(frozen=True, slots=True)
class DnsHeader:
    id: int
    flags: int
    qdcount: int
    ancount: int
    nscount: int
    arcount: int

    @classmethod
    def parse(cls, buf: bytes | bytearray | memoryview) -> DnsHeader:
        if len(buf) < HEADER_LEN:
            raise MalformedError("dns_malformed", f"{len(buf)} octets, a header is 12")
        return cls(*_HDR.unpack_from(buf, 0))

    @property
    def is_response(self) -> bool:
        return bool(self.flags & QR)


def with_id(msg: bytes | bytearray | memoryview, ident: int) -> bytes:
    """The same message with another ID (the forwarder's own, or the client's back)."""
    return ident.to_bytes(2, "big") + bytes(msg[2:])
