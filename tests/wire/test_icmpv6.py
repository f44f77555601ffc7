"""pyrouter.wire.icmpv6: ICMPv6 header and pseudo-header checksum (RFC 4443)."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv6Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyrouter.wire.checksum import pseudo_header_v6
from pyrouter.wire.icmpv6 import (
    ICMPV6_DEST_UNREACH,
    ICMPV6_ECHO_REPLY,
    ICMPV6_ECHO_REQUEST,
    ICMPV6_HLEN,
    ICMPV6_PARAMPROB,
    ICMPV6_PKT_TOOBIG,
    ICMPV6_TIME_EXCEED,
    NDISC_NEIGHBOUR_SOLICITATION,
    NDISC_REDIRECT,
    Icmpv6Repr,
    is_error_type,
)
from pyrouter.wire.ipv4 import IPPROTO_ICMPV6

from ._helpers import SETTINGS, buffer_window, expect_malformed, h, ipv6_addrs, \
    parse_or_none, pseudo_v6_bytes, ref_checksum, u8

REASONS = frozenset({"icmp6_malformed", "icmp6_csum_error"})


def pseudo(src: str, dst: str) -> int:
    return pseudo_header_v6(IPv6Address(src).packed, IPv6Address(dst).packed, IPPROTO_ICMPV6, 0)


PSEUDO_ECHO = pseudo("2001:db8:1::2", "2001:db8:2::2")
PSEUDO_UNREACH = pseudo("2001:db8:1::1", "2001:db8:1::2")

# Built with scapy 2.8.0 (the ICMPv6 layer of each packet):
#   IPv6(src="2001:db8:1::2", dst="2001:db8:2::2")
#     / ICMPv6EchoRequest(id=0x1234, seq=1, data=b"ping6 data")
ECHO = h("80 00 2451 1234 0001") + b"ping6 data"
#   IPv6(src="2001:db8:1::1", dst="2001:db8:1::2") / ICMPv6DestUnreach(code=4)
#     / IPv6(src="2001:db8:1::2", dst="2001:db8:9::9", nh=17, plen=0)
QUOTED = h("60000000 0000 11 40 20010db8000100000000000000000002"
           "20010db8000900000000000000000009")
UNREACH = h("01 04 d652 00000000") + QUOTED

ECHO_REPR = Icmpv6Repr(ICMPV6_ECHO_REQUEST, 0, h("1234 0001") + b"ping6 data", 0x2451)
UNREACH_REPR = Icmpv6Repr(ICMPV6_DEST_UNREACH, 4, b"\x00" * 4 + QUOTED, 0xD652)
GOLDEN = [(ECHO, ECHO_REPR, PSEUDO_ECHO), (UNREACH, UNREACH_REPR, PSEUDO_UNREACH)]
IDS = ["echo-request", "port-unreachable"]


@pytest.mark.parametrize("wire,expected,ps", GOLDEN, ids=IDS)
def test_deconstruct(wire: bytes, expected: Icmpv6Repr, ps: int) -> None:
    assert Icmpv6Repr.parse(wire, 0, len(wire), ps) == expected
    assert Icmpv6Repr.parse(wire, 0, len(wire)) == expected
    framed = memoryview(b"\x00" * 40 + wire + b"\x99")
    assert Icmpv6Repr.parse(framed, 40, 40 + len(wire), ps) == expected
    assert expected.length == len(wire)


@pytest.mark.parametrize("wire,repr_,ps", GOLDEN, ids=IDS)
def test_construct(wire: bytes, repr_: Icmpv6Repr, ps: int) -> None:
    buf = bytearray(len(wire))
    dataclasses.replace(repr_, checksum=None).emit(buf, 0, ps)
    assert bytes(buf) == wire
    buf = bytearray(b"\x44" * (len(wire) + 48))
    repr_.emit(buf, 40, ps)
    assert bytes(buf[40:40 + len(wire)]) == wire
    assert buf[:40] == b"\x44" * 40 and buf[40 + len(wire):] == b"\x44" * 8


@pytest.mark.parametrize("wire,ps", [(ECHO, PSEUDO_ECHO), (UNREACH, PSEUDO_UNREACH)], ids=IDS)
def test_bad_checksum(wire: bytes, ps: int) -> None:
    for pos in range(len(wire)):
        bad = bytearray(wire)
        bad[pos] ^= 0x01
        expect_malformed(Icmpv6Repr.parse, bad, 0, len(bad), ps, reason="icmp6_csum_error")
        assert Icmpv6Repr.parse(bad, 0, len(bad)).type == bad[0]
    # Swapped addresses keep the sum; another address does not.
    assert Icmpv6Repr.parse(ECHO, 0, len(ECHO), pseudo("2001:db8:2::2", "2001:db8:1::2")) \
        == ECHO_REPR
    expect_malformed(Icmpv6Repr.parse, ECHO, 0, len(ECHO), pseudo("2001:db8:1::3", "::1"),
                     reason="icmp6_csum_error")


@pytest.mark.parametrize("wire,ps", [(ECHO, PSEUDO_ECHO), (UNREACH, PSEUDO_UNREACH)], ids=IDS)
def test_truncation_sweep(wire: bytes, ps: int) -> None:
    # No length field: past the 4-byte header a prefix is caught only by the
    # checksum (the pseudo-header carries the length); unverified it is valid.
    for n in range(len(wire)):
        if n < ICMPV6_HLEN:
            expect_malformed(Icmpv6Repr.parse, wire[:n], 0, n, reason="icmp6_malformed")
            expect_malformed(Icmpv6Repr.parse, wire, 0, n, ps, reason="icmp6_malformed")
        else:
            expect_malformed(Icmpv6Repr.parse, wire, 0, n, ps, reason="icmp6_csum_error")
            r = Icmpv6Repr.parse(wire[:n], 0, n)
            assert (r.type, r.code, r.body) == (wire[0], wire[1], wire[ICMPV6_HLEN:n])


def test_is_error_type() -> None:
    for t in (0, ICMPV6_DEST_UNREACH, ICMPV6_PKT_TOOBIG, ICMPV6_TIME_EXCEED, ICMPV6_PARAMPROB,
              127):
        assert is_error_type(t), t
    for t in (ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY, NDISC_NEIGHBOUR_SOLICITATION,
              NDISC_REDIRECT, 255):
        assert not is_error_type(t), t


icmpv6_reprs = st.builds(Icmpv6Repr, type=u8, code=u8, body=st.binary(max_size=80))


@SETTINGS
@given(icmpv6_reprs, ipv6_addrs, ipv6_addrs, st.integers(0, 8))
def test_round_trip(r: Icmpv6Repr, src: IPv6Address, dst: IPv6Address, off: int) -> None:
    ps = pseudo_header_v6(src.packed, dst.packed, IPPROTO_ICMPV6, 0)
    buf = bytearray(off + r.length)
    r.emit(buf, off, ps)
    wire = bytes(buf[off:])
    csum = int.from_bytes(wire[2:4], "big")
    zeroed = wire[:2] + b"\x00\x00" + wire[4:]
    raw_pseudo = pseudo_v6_bytes(src.packed, dst.packed, IPPROTO_ICMPV6, r.length)
    assert csum == ref_checksum(raw_pseudo + zeroed)
    parsed = Icmpv6Repr.parse(buf, off, len(buf), ps)
    assert parsed.checksum == csum
    assert dataclasses.replace(parsed, checksum=None) == r


@SETTINGS
@given(buffer_window(max_size=60), st.none() | st.integers(0, 1 << 140))
def test_parse_random_bytes(window: tuple[bytes, int, int], ps: int | None) -> None:
    data, off, end = window
    r = parse_or_none(Icmpv6Repr.parse, data, off, end, ps, reasons=REASONS)
    if r is not None:
        assert r.length == end - off
