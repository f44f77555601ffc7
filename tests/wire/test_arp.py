"""pyrouter.wire.arp: Ethernet/IPv4 ARP (RFC 826)."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyrouter.wire.arp import ARP_LEN, ARPOP_REPLY, ARPOP_REQUEST, ArpRepr

from ._helpers import SETTINGS, buffer_window, expect_malformed, h, ipv4_addrs, macs, \
    parse_or_none, u16

REASONS = frozenset({"arp_malformed"})

# Built with scapy 2.8.0:
#   ARP(op=1, hwsrc="02:00:00:00:01:02", psrc="10.0.1.2",
#       hwdst="00:00:00:00:00:00", pdst="10.0.1.1")
ARP_REQ = h("0001 0800 06 04 0001 020000000102 0a000102 000000000000 0a000101")
#   ARP(op=2, hwsrc="02:00:00:00:01:01", psrc="10.0.1.1",
#       hwdst="02:00:00:00:01:02", pdst="10.0.1.2")
ARP_REP = h("0001 0800 06 04 0002 020000000101 0a000101 020000000102 0a000102")

ARP_REQ_REPR = ArpRepr(op=ARPOP_REQUEST, sha=h("020000000102"), spa=IPv4Address("10.0.1.2"),
                       tha=b"\x00" * 6, tpa=IPv4Address("10.0.1.1"))
ARP_REP_REPR = ArpRepr(op=ARPOP_REPLY, sha=h("020000000101"), spa=IPv4Address("10.0.1.1"),
                       tha=h("020000000102"), tpa=IPv4Address("10.0.1.2"))
GOLDEN = [(ARP_REQ, ARP_REQ_REPR), (ARP_REP, ARP_REP_REPR)]
IDS = ["request", "reply"]


@pytest.mark.parametrize("wire,expected", GOLDEN, ids=IDS)
def test_deconstruct(wire: bytes, expected: ArpRepr) -> None:
    assert len(wire) == ARP_LEN
    assert ArpRepr.parse(wire) == expected
    # Minimum-size Ethernet frames pad ARP with 18 bytes: ignored.
    assert ArpRepr.parse(wire + b"\x00" * 18) == expected
    assert ArpRepr.parse(memoryview(b"\x00" * 14 + wire), 14) == expected
    assert ArpRepr.parse(bytearray(wire)) == expected


@pytest.mark.parametrize("wire,repr_", GOLDEN, ids=IDS)
def test_construct(wire: bytes, repr_: ArpRepr) -> None:
    assert repr_.to_bytes() == wire
    buf = bytearray(b"\xee" * 50)
    repr_.emit(buf, 14)
    assert bytes(buf[14:14 + ARP_LEN]) == wire
    assert buf[:14] == b"\xee" * 14 and buf[14 + ARP_LEN:] == b"\xee" * 8


@pytest.mark.parametrize("wire", [ARP_REQ, ARP_REP], ids=IDS)
def test_truncation_sweep(wire: bytes) -> None:
    for n in range(len(wire)):
        expect_malformed(ArpRepr.parse, wire[:n], reason="arp_malformed")
        expect_malformed(ArpRepr.parse, b"\x00" * 14 + wire[:n], 14, reason="arp_malformed")


@pytest.mark.parametrize("pos,value", [
    (slice(0, 2), h("0006")),      # htype IEEE 802
    (slice(0, 2), h("0000")),
    (slice(2, 4), h("86dd")),      # ptype IPv6
    (slice(2, 4), h("0806")),
    (slice(4, 5), h("08")),        # hlen
    (slice(5, 6), h("10")),        # plen
    (slice(5, 6), h("00")),
], ids=["htype6", "htype0", "ptype-ipv6", "ptype-arp", "hlen8", "plen16", "plen0"])
def test_not_ethernet_ipv4(pos: slice, value: bytes) -> None:
    bad = bytearray(ARP_REQ)
    bad[pos] = value
    expect_malformed(ArpRepr.parse, bytes(bad), reason="arp_malformed")


def test_any_opcode_is_accepted() -> None:
    # RARP / InARP opcodes are not the codec's business; the core filters them.
    bad = bytearray(ARP_REQ)
    bad[6:8] = h("0003")
    assert ArpRepr.parse(bad).op == 3


arp_reprs = st.builds(ArpRepr, op=u16, sha=macs, spa=ipv4_addrs, tha=macs, tpa=ipv4_addrs)


@SETTINGS
@given(arp_reprs, st.binary(max_size=18))
def test_round_trip(r: ArpRepr, trailer: bytes) -> None:
    wire = r.to_bytes()
    assert len(wire) == ARP_LEN
    assert ArpRepr.parse(wire) == r
    assert ArpRepr.parse(wire + trailer) == r


@SETTINGS
@given(buffer_window(max_size=60))
def test_parse_random_bytes(window: tuple[bytes, int, int]) -> None:
    data, off, _ = window
    r = parse_or_none(ArpRepr.parse, data, off, reasons=REASONS)
    if r is not None:
        assert r.to_bytes()[8:] == data[off + 8:off + ARP_LEN]


@SETTINGS
@given(st.binary(min_size=ARP_LEN - 6, max_size=40))
def test_parse_random_ethernet_ipv4_arp(tail: bytes) -> None:
    data = h("0001 0800 06 04") + tail
    r = parse_or_none(ArpRepr.parse, data, reasons=REASONS)
    assert r is not None
    assert r.to_bytes() == data[:ARP_LEN]
