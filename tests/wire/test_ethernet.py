"""pyrouter.wire.ethernet: Ethernet II with an optional 802.1Q / 802.1ad tag."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyrouter.wire.ethernet import (
    ETH_HLEN,
    ETH_P_8021AD,
    ETH_P_8021Q,
    ETH_P_ARP,
    ETH_P_IP,
    ETH_P_IPV6,
    VLAN_HLEN,
    EthernetRepr,
    VlanTag,
)

from ._helpers import SETTINGS, buffer_window, expect_malformed, h, macs, parse_or_none, u16

REASONS = frozenset({"eth_truncated"})

# Built with scapy 2.8.0:
#   Ether(dst="02:00:00:00:01:01", src="52:54:00:12:34:56", type=0x0800)
ETH = h("020000000101 525400123456 0800")
#   Ether(dst="ff:ff:ff:ff:ff:ff", src="02:00:00:00:02:02")
#     / Dot1Q(prio=5, id=1, vlan=100, type=0x86dd)
ETH_VLAN = h("ffffffffffff 020000000202 8100 b064 86dd")
#   Ether(dst="01:00:5e:00:00:01", src="02:aa:bb:cc:dd:ee", type=0x88a8)
#     / Dot1Q(prio=3, id=0, vlan=4094, type=0x0806)
ETH_QINQ = h("01005e000001 02aabbccddee 88a8 6ffe 0806")

ETH_REPR = EthernetRepr(dst=h("020000000101"), src=h("525400123456"), ethertype=ETH_P_IP)
ETH_VLAN_REPR = EthernetRepr(dst=b"\xff" * 6, src=h("020000000202"), ethertype=ETH_P_IPV6,
                             vlan=VlanTag(vid=100, pcp=5, dei=1, tpid=ETH_P_8021Q))
ETH_QINQ_REPR = EthernetRepr(dst=h("01005e000001"), src=h("02aabbccddee"), ethertype=ETH_P_ARP,
                             vlan=VlanTag(vid=4094, pcp=3, dei=0, tpid=ETH_P_8021AD))

GOLDEN = [(ETH, ETH_REPR), (ETH_VLAN, ETH_VLAN_REPR), (ETH_QINQ, ETH_QINQ_REPR)]
IDS = ["untagged", "802.1Q", "802.1ad"]


@pytest.mark.parametrize("wire,expected", GOLDEN, ids=IDS)
def test_deconstruct(wire: bytes, expected: EthernetRepr) -> None:
    r = EthernetRepr.parse(wire)
    assert r == expected
    assert r.header_len == len(wire)
    # Payload after the header does not change the header.
    assert EthernetRepr.parse(wire + b"\x45" * 46) == expected
    assert EthernetRepr.parse(memoryview(b"\x00" * 5 + wire), 5) == expected


def test_deconstruct_tag_fields() -> None:
    tag = EthernetRepr.parse(ETH_VLAN).vlan
    assert tag is not None
    assert (tag.vid, tag.pcp, tag.dei, tag.tpid, tag.tci) == (100, 5, 1, 0x8100, 0xB064)
    assert EthernetRepr.parse(ETH).vlan is None
    assert ETH_REPR.header_len == ETH_HLEN
    assert ETH_VLAN_REPR.header_len == ETH_HLEN + VLAN_HLEN


@pytest.mark.parametrize("wire,repr_", GOLDEN, ids=IDS)
def test_construct(wire: bytes, repr_: EthernetRepr) -> None:
    assert repr_.to_bytes() == wire
    buf = bytearray(b"\xcc" * (len(wire) + 10))
    repr_.emit(buf, 3)
    assert bytes(buf[3:3 + len(wire)]) == wire
    assert buf[:3] == b"\xcc" * 3 and buf[3 + len(wire):] == b"\xcc" * 7


def test_vlan_tag_tci() -> None:
    assert VlanTag(vid=0).tci == 0
    assert VlanTag(vid=4095, pcp=7, dei=1).tci == 0xFFFF
    assert VlanTag(vid=1, pcp=1).tci == 0x2001
    assert VlanTag(vid=0, dei=1).tci == 0x1000


def test_double_tagged_parses_outer_tag_only() -> None:
    # 802.1ad outer + 802.1Q inner: the inner TPID is reported as the ethertype.
    frame = h("ffffffffffff 020000000001 88a8 0064 8100 0005 0800")
    r = EthernetRepr.parse(frame)
    assert r.vlan == VlanTag(vid=100, tpid=ETH_P_8021AD)
    assert r.ethertype == ETH_P_8021Q
    assert r.header_len == 18


@pytest.mark.parametrize("wire", [ETH, ETH_VLAN, ETH_QINQ], ids=IDS)
def test_truncation_sweep(wire: bytes) -> None:
    for n in range(len(wire)):
        expect_malformed(EthernetRepr.parse, wire[:n], reason="eth_truncated")
        expect_malformed(EthernetRepr.parse, b"\x00" * 7 + wire[:n], 7, reason="eth_truncated")


def test_truncation_sweep_with_payload() -> None:
    # Ethernet has no length field: any prefix holding the header is a valid header.
    frame = ETH + bytes(range(46))
    for n in range(len(frame)):
        if n < ETH_HLEN:
            expect_malformed(EthernetRepr.parse, frame[:n], reason="eth_truncated")
        else:
            assert EthernetRepr.parse(frame[:n]) == ETH_REPR
    frame = ETH_VLAN + bytes(range(46))
    for n in range(len(frame)):
        if n < ETH_HLEN + VLAN_HLEN:
            expect_malformed(EthernetRepr.parse, frame[:n], reason="eth_truncated")
        else:
            assert EthernetRepr.parse(frame[:n]) == ETH_VLAN_REPR


vlan_tags = st.builds(VlanTag, vid=st.integers(0, 4095), pcp=st.integers(0, 7),
                      dei=st.integers(0, 1), tpid=st.sampled_from([ETH_P_8021Q, ETH_P_8021AD]))


@st.composite
def ethernet_reprs(draw: st.DrawFn) -> EthernetRepr:
    vlan = draw(st.none() | vlan_tags)
    if vlan is None:
        # An untagged header cannot carry a TPID as its ethertype: it would parse as a tag.
        ethertype = draw(u16.filter(lambda t: t not in (ETH_P_8021Q, ETH_P_8021AD)))
    else:
        ethertype = draw(u16)
    return EthernetRepr(dst=draw(macs), src=draw(macs), ethertype=ethertype, vlan=vlan)


@SETTINGS
@given(ethernet_reprs(), st.binary(max_size=20))
def test_round_trip(r: EthernetRepr, payload: bytes) -> None:
    wire = r.to_bytes()
    assert len(wire) == r.header_len
    assert EthernetRepr.parse(wire) == r
    assert EthernetRepr.parse(wire + payload) == r
    assert EthernetRepr.parse(wire).to_bytes() == wire


@SETTINGS
@given(buffer_window(max_size=40))
def test_parse_random_bytes(window: tuple[bytes, int, int]) -> None:
    data, off, _ = window
    r = parse_or_none(EthernetRepr.parse, data, off, reasons=REASONS)
    if r is not None:
        assert off + r.header_len <= len(data)
        assert r.to_bytes() == data[off:off + r.header_len]
