"""Internet checksum (RFC 1071), incremental update (RFC 1624) and pseudo-headers.

The ones' complement sum of 16-bit words equals the big-endian integer value of
the data modulo 0xFFFF (because 0x10000 == 1 mod 0xFFFF), except that a non-zero
sum congruent to 0 is 0xFFFF ("negative zero").  ``int.from_bytes`` and ``%`` run
in C, so this costs no per-byte Python loop.

Invariants: every function takes bytes-like objects and returns a 16-bit int in
host order; checksums of valid data verify as ``ones_sum(data) == 0xFFFF``.
"""

from __future__ import annotations

_from_bytes = int.from_bytes


def ones_sum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """Ones' complement sum of *data* (padded with a zero byte if odd) plus *initial*."""
    if len(data) & 1:
        data = bytes(data) + b"\x00"
    v = _from_bytes(data, "big") + initial
    if v == 0:
        return 0
    s = v % 0xFFFF
    return 0xFFFF if s == 0 else s


def inet_checksum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """The checksum field value for *data* (with its checksum field zeroed)."""
    return ~ones_sum(data, initial) & 0xFFFF


def verify(data: bytes | bytearray | memoryview, initial: int = 0) -> bool:
    """True when *data*, checksum field included, sums to 0xFFFF (RFC 1071 check)."""
    return ones_sum(data, initial) == 0xFFFF


def pseudo_header_v4(src: bytes, dst: bytes, proto: int, length: int) -> int:
    """Partial sum of the IPv4 pseudo-header (RFC 768 / RFC 793)."""
    return _from_bytes(src, "big") + _from_bytes(dst, "big") + proto + length


def pseudo_header_v6(src: bytes, dst: bytes, next_header: int, length: int) -> int:
    """Partial sum of the IPv6 pseudo-header (RFC 8200 section 8.1)."""
    return _from_bytes(src, "big") + _from_bytes(dst, "big") + next_header + length


def csum_replace2(check: int, old: int, new: int) -> int:
    """RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m') for one 16-bit word m -> m'.

    Never yields 0xFFFF-for-0 surprises: with a valid HC the result is exactly
    what a full recomputation gives (RFC 1624 section 3).
    """
    s = (~check & 0xFFFF) + (~old & 0xFFFF) + new
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def csum_replace4(check: int, old: int, new: int) -> int:
    """Incremental update for one 32-bit field (e.g. an IPv4 address under NAT)."""
    check = csum_replace2(check, old >> 16, new >> 16)
    return csum_replace2(check, old & 0xFFFF, new & 0xFFFF)
