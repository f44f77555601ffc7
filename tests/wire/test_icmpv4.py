"""pyrouter.wire.icmpv4: ICMP for IPv4 (RFC 792, RFC 1191, RFC 1812)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyrouter.wire.checksum import verify
from pyrouter.wire.icmpv4 import (
    ICMP_DEST_UNREACH,
    ICMP_ECHO,
    ICMP_ECHOREPLY,
    ICMP_FRAG_NEEDED,
    ICMP_HLEN,
    ICMP_PARAMETERPROB,
    ICMP_REDIRECT,
    ICMP_SOURCE_QUENCH,
    ICMP_TIME_EXCEEDED,
    ICMP_TIMESTAMP,
    ICMP_TIMESTAMPREPLY,
    IcmpRepr,
    is_error_type,
)

from ._helpers import SETTINGS, buffer_window, expect_malformed, h, parse_or_none, \
    ref_checksum, ref_ones_sum, u8, u32

REASONS = frozenset({"icmp_malformed", "icmp_csum_error"})

# Built with scapy 2.8.0:
#   ICMP(type=8, code=0, id=0x4242, seq=7) / Raw(b"abcdefghijklmnopqrstuvw")  (odd length)
ICMP_ECHO_WIRE = h("08 00 a10d 4242 0007 6162636465666768696a6b6c6d6e6f7071727374757677")
#   ICMP(type=3, code=4, nexthopmtu=1400) / Raw(<20-byte IPv4 header>)
INNER = h("4500003c1c4640004006b1e6ac100a63ac100a0c")
ICMP_FRAG_WIRE = h("03 04 f783 0000 0578") + INNER

ECHO_REPR = IcmpRepr(ICMP_ECHO, 0, 0x42420007, b"abcdefghijklmnopqrstuvw", 0xA10D)
FRAG_REPR = IcmpRepr(ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, 1400, INNER, 0xF783)
GOLDEN = [(ICMP_ECHO_WIRE, ECHO_REPR), (ICMP_FRAG_WIRE, FRAG_REPR)]
IDS = ["echo", "frag-needed"]


@pytest.mark.parametrize("wire,expected", GOLDEN, ids=IDS)
def test_deconstruct(wire: bytes, expected: IcmpRepr) -> None:
    r = IcmpRepr.parse(wire)
    assert r == expected
    assert r.length == len(wire)
    assert IcmpRepr.parse(memoryview(b"\x00" * 20 + wire), 20) == expected
    assert IcmpRepr.parse(wire + b"\xff\xff", 0, len(wire)) == expected


def test_deconstruct_accessors() -> None:
    assert (ECHO_REPR.ident, ECHO_REPR.seq) == (0x4242, 7)
    assert FRAG_REPR.mtu == 1400


@pytest.mark.parametrize("wire,repr_", GOLDEN, ids=IDS)
def test_construct(wire: bytes, repr_: IcmpRepr) -> None:
    assert repr_.to_bytes() == wire
    # The checksum field of the Repr is ignored: emit always computes it.
    assert dataclasses.replace(repr_, checksum=None).to_bytes() == wire
    assert dataclasses.replace(repr_, checksum=0x1234).to_bytes() == wire
    buf = bytearray(b"\x77" * (len(wire) + 24))
    repr_.emit(buf, 20)
    assert bytes(buf[20:20 + len(wire)]) == wire
    assert buf[:20] == b"\x77" * 20 and buf[20 + len(wire):] == b"\x77" * 4


def test_construct_echo_helper() -> None:
    assert IcmpRepr.echo(True, 0x4242, 7, b"abcdefghijklmnopqrstuvw").to_bytes() == ICMP_ECHO_WIRE
    reply = IcmpRepr.echo(False, 0x4242, 7, b"abcdefghijklmnopqrstuvw")
    assert (reply.type, reply.code, reply.ident, reply.seq) == (ICMP_ECHOREPLY, 0, 0x4242, 7)
    wire = reply.to_bytes()
    assert wire[0] == 0 and verify(wire)


@pytest.mark.parametrize("wire", [ICMP_ECHO_WIRE, ICMP_FRAG_WIRE], ids=IDS)
def test_truncation_sweep(wire: bytes) -> None:
    # ICMP has no length field: past the 8-byte header a prefix is only caught
    # by the checksum; without verification it is a shorter, valid message.
    for n in range(len(wire)):
        if n < ICMP_HLEN:
            expect_malformed(IcmpRepr.parse, wire[:n], reason="icmp_malformed")
            expect_malformed(IcmpRepr.parse, wire[:n], verify_checksum=False,
                             reason="icmp_malformed")
            expect_malformed(IcmpRepr.parse, wire, 0, n, reason="icmp_malformed")
        else:
            if ref_ones_sum(wire[:n]) == 0xFFFF:
                # The cut-off tail summed to -0 (e.g. the whole quoted IPv4 header
                # of the frag-needed message, which carries its own checksum):
                # the checksum cannot see the truncation.
                assert IcmpRepr.parse(wire[:n]).data == wire[ICMP_HLEN:n]
            else:
                expect_malformed(IcmpRepr.parse, wire[:n], reason="icmp_csum_error")
                expect_malformed(IcmpRepr.parse, wire, 0, n, reason="icmp_csum_error")
            r = IcmpRepr.parse(wire[:n], verify_checksum=False)
            assert r.data == wire[ICMP_HLEN:n]
            assert (r.type, r.code, r.rest) == (wire[0], wire[1], int.from_bytes(wire[4:8], "big"))


@pytest.mark.parametrize("wire", [ICMP_ECHO_WIRE, ICMP_FRAG_WIRE], ids=IDS)
def test_bad_checksum(wire: bytes) -> None:
    for pos in range(len(wire)):
        bad = bytearray(wire)
        bad[pos] ^= 0x10
        expect_malformed(IcmpRepr.parse, bad, reason="icmp_csum_error")
        assert IcmpRepr.parse(bad, verify_checksum=False).checksum == \
            int.from_bytes(bad[2:4], "big")


def test_is_error_type() -> None:
    for t in (ICMP_DEST_UNREACH, ICMP_SOURCE_QUENCH, ICMP_REDIRECT, ICMP_TIME_EXCEEDED,
              ICMP_PARAMETERPROB, 19, 40, 255):
        assert is_error_type(t), t
    for t in (ICMP_ECHOREPLY, ICMP_ECHO, ICMP_TIMESTAMP, ICMP_TIMESTAMPREPLY, 1, 2, 9, 10,
              15, 16, 17, 18):
        assert not is_error_type(t), t


icmp_reprs = st.builds(IcmpRepr, type=u8, code=u8, rest=u32, data=st.binary(max_size=80))


@SETTINGS
@given(icmp_reprs, st.binary(max_size=4))
def test_round_trip(r: IcmpRepr, trailer: bytes) -> None:
    wire = r.to_bytes()
    assert len(wire) == r.length
    assert verify(wire)
    zeroed = wire[:2] + b"\x00\x00" + wire[4:]
    assert int.from_bytes(wire[2:4], "big") == ref_checksum(zeroed)
    parsed = IcmpRepr.parse(wire + trailer, 0, len(wire))
    assert parsed.checksum == int.from_bytes(wire[2:4], "big")
    assert dataclasses.replace(parsed, checksum=None) == r
    assert parsed.to_bytes() == wire


@SETTINGS
@given(buffer_window(max_size=60), st.booleans())
def test_parse_random_bytes(window: tuple[bytes, int, int], verify_checksum: bool) -> None:
    data, off, end = window
    r = parse_or_none(IcmpRepr.parse, data, off, end, verify_checksum, reasons=REASONS)
    if r is not None:
        assert r.length == end - off
        if verify_checksum:
            assert r.to_bytes() == data[off:end]


def test_truncated_quoted_header_is_invisible_to_the_checksum() -> None:
    # Pinned explicitly: a Frag Needed message cut right after its 8-byte header
    # still verifies, because the dropped quoted IPv4 header sums to -0.
    assert IcmpRepr.parse(ICMP_FRAG_WIRE[:ICMP_HLEN]) == \
        dataclasses.replace(FRAG_REPR, data=b"")
    expect_malformed(IcmpRepr.parse, ICMP_FRAG_WIRE[:ICMP_HLEN + 10], reason="icmp_csum_error")
