"""ICMPv6 (RFC 4443): the message header and checksum over the IPv6 pseudo-header.

Layout: type(1) code(1) checksum(2) message body.  Types 0-127 are errors,
128-255 informational (RFC 4443 section 2.1).  Neighbour Discovery options
arrive with the neighbour issue.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .checksum import inet_checksum, ones_sum
from .errors import MalformedError

ICMPV6_HLEN = 4
ICMPV6_DEST_UNREACH = 1
ICMPV6_PKT_TOOBIG = 2
ICMPV6_TIME_EXCEED = 3
ICMPV6_PARAMPROB = 4
ICMPV6_ECHO_REQUEST = 128
ICMPV6_ECHO_REPLY = 129
NDISC_ROUTER_SOLICITATION = 133
NDISC_ROUTER_ADVERTISEMENT = 134
NDISC_NEIGHBOUR_SOLICITATION = 135
NDISC_NEIGHBOUR_ADVERTISEMENT = 136
NDISC_REDIRECT = 137

_HDR = struct.Struct("!BBH")


def is_error_type(icmp_type: int) -> bool:
    return icmp_type < 128


@dataclass(frozen=True, slots=True)
class Icmpv6Repr:
    type: int
    code: int
    body: bytes = b""
    checksum: int | None = None

    @classmethod
    def parse(cls, buf: bytes | bytearray | memoryview, off: int, end: int,
              pseudo: int | None = None) -> Icmpv6Repr:
        """*pseudo*: pseudo-header sum without the length (added here)."""
        if end - off < ICMPV6_HLEN:
            raise MalformedError("icmp6_malformed", "truncated")
        if pseudo is not None and ones_sum(buf[off:end], pseudo + end - off) != 0xFFFF:
            raise MalformedError("icmp6_csum_error")
        t, c, csum = _HDR.unpack_from(buf, off)
        return cls(t, c, bytes(buf[off + ICMPV6_HLEN:end]), csum)

    @property
    def length(self) -> int:
        return ICMPV6_HLEN + len(self.body)

    def emit(self, buf: bytearray, off: int, pseudo: int) -> None:
        _HDR.pack_into(buf, off, self.type, self.code, 0)
        end = off + self.length
        buf[off + ICMPV6_HLEN:end] = self.body
        c = inet_checksum(buf[off:end], pseudo + end - off)
        struct.pack_into("!H", buf, off + 2, c)
