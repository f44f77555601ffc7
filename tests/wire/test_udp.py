"""pyrouter.wire.udp: UDP (RFC 768) over IPv4 and IPv6 pseudo-headers."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyrouter.wire.checksum import pseudo_header_v4, pseudo_header_v6
from pyrouter.wire.ipv4 import IPPROTO_UDP
from pyrouter.wire.udp import UDP_HLEN, UdpRepr

from ._helpers import SETTINGS, buffer_window, expect_malformed, h, parse_or_none, \
    pseudo_bytes, pseudo_sums, ref_checksum, u16

REASONS = frozenset({"udp_malformed", "udp_csum_error"})

SRC4, DST4 = IPv4Address("10.0.1.2").packed, IPv4Address("10.0.2.2").packed
SRC6, DST6 = IPv6Address("2001:db8:1::2").packed, IPv6Address("2001:db8:2::2").packed
PSEUDO4 = pseudo_header_v4(SRC4, DST4, IPPROTO_UDP, 0)
PSEUDO6 = pseudo_header_v6(SRC6, DST6, IPPROTO_UDP, 0)

# Built with scapy 2.8.0 (the UDP layer of each packet):
#   IP(src="10.0.1.2", dst="10.0.2.2") / UDP(sport=5353, dport=53) / Raw(b"hello, router")
UDP4 = h("14e9 0035 0015 1957") + b"hello, router"
#   IPv6(src="2001:db8:1::2", dst="2001:db8:2::2") / UDP(sport=40000, dport=123)
#     / Raw(b"\x1b" + b"\0" * 47)
UDP6 = h("9c40 007b 0038 ec49") + b"\x1b" + bytes(47)
#   IP(src="10.0.1.2", dst="10.0.2.2") / UDP(sport=8080, dport=8081) / Raw(h("2f377a7a"))
# The payload was chosen so that the computed checksum is 0, sent as 0xFFFF.
UDP4_FFFF = h("1f90 1f91 000c ffff 2f377a7a")

UDP4_REPR = UdpRepr(5353, 53, b"hello, router", 0x1957)
UDP6_REPR = UdpRepr(40000, 123, b"\x1b" + bytes(47), 0xEC49)
UDP4_FFFF_REPR = UdpRepr(8080, 8081, h("2f377a7a"), 0xFFFF)
GOLDEN = [(UDP4, UDP4_REPR, PSEUDO4), (UDP6, UDP6_REPR, PSEUDO6),
          (UDP4_FFFF, UDP4_FFFF_REPR, PSEUDO4)]
IDS = ["v4", "v6", "v4-csum-ffff"]


@pytest.mark.parametrize("wire,expected,pseudo", GOLDEN, ids=IDS)
def test_deconstruct(wire: bytes, expected: UdpRepr, pseudo: int) -> None:
    assert UdpRepr.parse(wire, 0, len(wire), pseudo) == expected
    assert UdpRepr.parse(wire, 0, len(wire)) == expected
    assert UdpRepr.parse(memoryview(b"\x00" * 20 + wire), 20, 20 + len(wire), pseudo) == expected
    assert expected.length == len(wire)


@pytest.mark.parametrize("wire,repr_,pseudo", GOLDEN, ids=IDS)
def test_construct(wire: bytes, repr_: UdpRepr, pseudo: int) -> None:
    buf = bytearray(len(wire))
    dataclasses.replace(repr_, checksum=None).emit(buf, 0, pseudo)
    assert bytes(buf) == wire
    buf = bytearray(b"\x11" * (len(wire) + 30))
    repr_.emit(buf, 20, pseudo)
    assert bytes(buf[20:20 + len(wire)]) == wire
    assert buf[:20] == b"\x11" * 20 and buf[20 + len(wire):] == b"\x11" * 10


def test_computed_zero_checksum_is_sent_as_ffff() -> None:
    zeroed = UDP4_FFFF[:6] + b"\x00\x00" + UDP4_FFFF[6 + 2:]
    assert ref_checksum(pseudo_bytes(SRC4, DST4, False, IPPROTO_UDP, 12) + zeroed) == 0x0000
    buf = bytearray(12)
    UdpRepr(8080, 8081, h("2f377a7a")).emit(buf, 0, PSEUDO4)
    assert buf[6:8] == b"\xff\xff"


def test_zero_checksum_means_none() -> None:
    # A transmitted 0 means "no checksum" (RFC 768): not verified.
    wire = UDP4[:6] + b"\x00\x00" + UDP4[8:]
    assert UdpRepr.parse(wire, 0, len(wire), PSEUDO4) == dataclasses.replace(UDP4_REPR, checksum=0)


@pytest.mark.parametrize("wire,pseudo", [(UDP4, PSEUDO4), (UDP6, PSEUDO6)], ids=["v4", "v6"])
def test_bad_checksum(wire: bytes, pseudo: int) -> None:
    for pos in [0, 1, 2, 3, 6, 7, 8, len(wire) - 1]:      # not the length field
        bad = bytearray(wire)
        bad[pos] ^= 0x04
        expect_malformed(UdpRepr.parse, bad, 0, len(bad), pseudo, reason="udp_csum_error")
        assert UdpRepr.parse(bad, 0, len(bad)).sport == int.from_bytes(bad[0:2], "big")
    # The pseudo-header matters: another address gives a checksum error.
    wrong = pseudo_header_v4(SRC4, IPv4Address("10.0.2.3").packed, IPPROTO_UDP, 0)
    expect_malformed(UdpRepr.parse, UDP4, 0, len(UDP4), wrong, reason="udp_csum_error")


@pytest.mark.parametrize("length", [0, 1, 7])
def test_length_field_below_header(length: int) -> None:
    bad = bytearray(UDP4)
    bad[4:6] = length.to_bytes(2, "big")
    expect_malformed(UdpRepr.parse, bad, 0, len(bad), reason="udp_malformed")
    expect_malformed(UdpRepr.parse, bad, 0, len(bad), PSEUDO4, reason="udp_malformed")


def test_length_field_shorter_than_ip_payload() -> None:
    # Trailing bytes past the UDP length (e.g. padding) are not data.
    assert UdpRepr.parse(UDP4 + b"\x00\x00\x00", 0, len(UDP4) + 3, PSEUDO4) == UDP4_REPR
    # Empty datagram: length 8.
    buf = bytearray(8)
    UdpRepr(1, 2).emit(buf, 0, PSEUDO4)
    assert buf[4:6] == h("0008")
    assert UdpRepr.parse(bytes(buf) + b"\xab", 0, 9, PSEUDO4) == \
        UdpRepr(1, 2, b"", int.from_bytes(buf[6:8], "big"))


@pytest.mark.parametrize("wire,pseudo", [(UDP4, PSEUDO4), (UDP6, PSEUDO6), (UDP4_FFFF, PSEUDO4)],
                         ids=IDS)
def test_truncation_sweep(wire: bytes, pseudo: int) -> None:
    # The length field exposes every truncation, checksum or not.
    for n in range(len(wire)):
        expect_malformed(UdpRepr.parse, wire[:n], 0, n, reason="udp_malformed")
        expect_malformed(UdpRepr.parse, wire[:n], 0, n, pseudo, reason="udp_malformed")
        expect_malformed(UdpRepr.parse, wire, 0, n, pseudo, reason="udp_malformed")


udp_reprs = st.builds(UdpRepr, sport=u16, dport=u16, data=st.binary(max_size=80))


@SETTINGS
@given(udp_reprs, pseudo_sums(IPPROTO_UDP), st.integers(0, 8), st.binary(max_size=6))
def test_round_trip(r: UdpRepr, ps: tuple[int, bytes, bytes, bool], off: int,
                    trailer: bytes) -> None:
    pseudo, src, dst, is_v6 = ps
    buf = bytearray(off + r.length)
    r.emit(buf, off, pseudo)
    wire = bytes(buf[off:])
    assert int.from_bytes(wire[4:6], "big") == r.length
    csum = int.from_bytes(wire[6:8], "big")
    zeroed = wire[:6] + b"\x00\x00" + wire[8:]
    expected = ref_checksum(pseudo_bytes(src, dst, is_v6, IPPROTO_UDP, r.length) + zeroed)
    assert csum == (expected or 0xFFFF)
    data = bytes(buf) + trailer
    parsed = UdpRepr.parse(data, off, len(data), pseudo)
    assert parsed.checksum == csum
    assert dataclasses.replace(parsed, checksum=None) == r


@SETTINGS
@given(buffer_window(max_size=60), st.none() | st.integers(0, 1 << 40))
def test_parse_random_bytes(window: tuple[bytes, int, int], pseudo: int | None) -> None:
    data, off, end = window
    r = parse_or_none(UdpRepr.parse, data, off, end, pseudo, reasons=REASONS)
    if r is not None:
        assert UDP_HLEN <= r.length <= end - off
