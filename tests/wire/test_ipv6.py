"""pyrouter.wire.ipv6: the IPv6 fixed header (RFC 8200 section 3)."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv6Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyrouter.wire.ipv4 import IPPROTO_ICMPV6
from pyrouter.wire.ipv6 import IPV6_HLEN, Ipv6Repr

from ._helpers import SETTINGS, buffer_window, expect_malformed, h, ipv6_addrs, \
    parse_or_none, u8

REASONS = frozenset({"ip6_truncated", "ip6_bad_version"})

# Built with scapy 2.8.0:
#   IPv6(src="2001:db8::1", dst="2001:db8::2", tc=0xb8, fl=0xabcde, hlim=255, nh=58)
#     / Raw(b"\x80\x00\x00\x00\x00\x01\x00\x01")
PAYLOAD = h("8000000000010001")
IPV6 = h("6b8abcde 0008 3a ff"
         "20010db8000000000000000000000001"
         "20010db8000000000000000000000002") + PAYLOAD

IPV6_REPR = Ipv6Repr(src=IPv6Address("2001:db8::1"), dst=IPv6Address("2001:db8::2"),
                     next_header=IPPROTO_ICMPV6, hop_limit=255, traffic_class=0xB8,
                     flow_label=0xABCDE, payload_len=8)


def test_deconstruct() -> None:
    assert Ipv6Repr.parse(IPV6) == IPV6_REPR
    assert Ipv6Repr.parse(memoryview(b"\x00" * 14 + IPV6), 14) == IPV6_REPR
    assert Ipv6Repr.parse(bytearray(IPV6) + b"\x00" * 4, 0, len(IPV6)) == IPV6_REPR
    # Bytes past payload_len (link padding) are allowed.
    assert Ipv6Repr.parse(IPV6 + b"\x00" * 10) == IPV6_REPR


def test_construct() -> None:
    r = dataclasses.replace(IPV6_REPR, payload_len=0)
    assert r.to_bytes(PAYLOAD) == IPV6                       # payload_len from payload
    buf = bytearray(b"\x33" * 60)
    IPV6_REPR.emit(buf, 6)                                   # payload_len from the Repr
    assert bytes(buf[6:46]) == IPV6[:40]
    assert buf[:6] == b"\x33" * 6 and buf[46:] == b"\x33" * 14
    buf = bytearray(40)
    r.emit(buf, 0, payload_len=8)                            # explicit argument wins
    assert bytes(buf) == IPV6[:40]
    IPV6_REPR.emit(buf, 0, payload_len=0)
    assert buf[4:6] == b"\x00\x00"


def test_truncation_sweep() -> None:
    # payload_len exposes every truncation.
    for n in range(len(IPV6)):
        expect_malformed(Ipv6Repr.parse, IPV6[:n], reason="ip6_truncated")
        expect_malformed(Ipv6Repr.parse, IPV6, 0, n, reason="ip6_truncated")
        expect_malformed(Ipv6Repr.parse, b"\x00" * 3 + IPV6[:n], 3, reason="ip6_truncated")


@pytest.mark.parametrize("version", [0, 4, 5, 7, 15])
def test_bad_version(version: int) -> None:
    bad = bytearray(IPV6)
    bad[0] = (version << 4) | (bad[0] & 0x0F)
    expect_malformed(Ipv6Repr.parse, bad, reason="ip6_bad_version")


def test_version_checked_before_payload_length() -> None:
    bad = bytearray(IPV6[:40])                 # payload_len 8 but no payload ...
    bad[0] = 0x45                              # ... and an IPv4 version nibble
    expect_malformed(Ipv6Repr.parse, bad, reason="ip6_bad_version")


ipv6_reprs = st.builds(Ipv6Repr, src=ipv6_addrs, dst=ipv6_addrs, next_header=u8, hop_limit=u8,
                       traffic_class=u8, flow_label=st.integers(0, 0xFFFFF))


@SETTINGS
@given(ipv6_reprs, st.binary(max_size=64), st.binary(max_size=8))
def test_round_trip(r: Ipv6Repr, payload: bytes, trailer: bytes) -> None:
    wire = r.to_bytes(payload)
    assert len(wire) == IPV6_HLEN + len(payload)
    parsed = Ipv6Repr.parse(wire + trailer)
    assert parsed == dataclasses.replace(r, payload_len=len(payload))
    assert parsed.to_bytes(payload) == wire
    buf = bytearray(len(wire))
    parsed.emit(buf)
    assert bytes(buf[:IPV6_HLEN]) == wire[:IPV6_HLEN]


@SETTINGS
@given(buffer_window(max_size=70))
def test_parse_random_bytes(window: tuple[bytes, int, int]) -> None:
    data, off, end = window
    r = parse_or_none(Ipv6Repr.parse, data, off, end, reasons=REASONS)
    if r is not None:
        assert IPV6_HLEN + r.payload_len <= end - off


@SETTINGS
@given(st.integers(0x60, 0x6F), st.binary(max_size=60))
def test_parse_random_version6_bytes(b0: int, rest: bytes) -> None:
    data = bytes([b0]) + rest
    r = parse_or_none(Ipv6Repr.parse, data, reasons=REASONS)
    if r is not None:
        assert r.to_bytes(data[IPV6_HLEN:IPV6_HLEN + r.payload_len]) == \
            data[:IPV6_HLEN + r.payload_len]
