"""The IPv6 forwarding cache (Router.receive fast path, core/router.py) must never change
what the slow path (ipv6_rcv -> ip6_forward) would do: with a warm cache entry for the
destination every exceptional packet still gets the slow path's answer."""

from __future__ import annotations

import pytest

from tests.core.helpers6 import (
    H1,
    H2,
    LAN,
    R_IP6,
    R_LL,
    WAN,
    Net6,
    expect_error6,
    expect_ip6,
    frame6,
    hbh,
    ip6,
    na_pkt,
    udp6_pkt,
)


@pytest.fixture
def warm() -> Net6:
    net = Net6()
    net.ready()
    net.learn6(H1)
    net.learn6(H1, H1.ll)
    net.learn6(H2)
    net.send(WAN, frame6(H2, na_pkt(H2.ip, R_IP6[WAN], H2.ip, s=True, tll=H2.mac)))
    assert net.nstate(WAN, H2.ip) == "REACHABLE"
    for _ in range(2):
        out = net.send(LAN, frame6(H1, udp6_pkt(H1.ip, H2.ip)))
        expect_ip6(out[0], dst=H2.ip, hlim=63, ifindex=WAN, eth_dst=H2.mac)
    assert net.router.fast_forwarded6 == 1, "the second packet should take the fast path"
    return net


def test_fast_path_forwards_identically(warm: Net6) -> None:
    pkt = udp6_pkt(H1.ip, H2.ip, hlim=7, tc=0x2C, flow=0xABCDE)
    out = warm.send(LAN, frame6(H1, pkt) + bytes(6))            # Ethernet padding
    assert len(out) == 1
    p = expect_ip6(out[0], src=H1.ip, dst=H2.ip, hlim=6, tc=0x2C, ifindex=WAN,
                   eth_dst=H2.mac)
    assert p.raw == pkt[:7] + bytes([6]) + pkt[8:]
    assert warm.router.fast_forwarded6 == 2


def test_hop_limit_1_still_time_exceeded(warm: Net6) -> None:
    pkt = udp6_pkt(H1.ip, H2.ip, hlim=1)
    out = warm.send(LAN, frame6(H1, pkt))
    assert len(out) == 1
    expect_error6(out[0], type=3, code=0, about=pkt, src=R_IP6[LAN])


def test_hop_by_hop_still_processed(warm: Net6) -> None:
    pkt = ip6(H1.ip, H2.ip, 0, hbh(17, bytes([0x9E, 4]) + bytes(4)) + bytes(8))
    out = warm.send(LAN, frame6(H1, pkt))
    assert len(out) == 1
    expect_error6(out[0], type=4, code=2, about=pkt, src=R_IP6[LAN], word=42)


def test_link_local_source_still_beyond_scope(warm: Net6) -> None:
    pkt = udp6_pkt(H1.ll, H2.ip)
    out = warm.send(LAN, frame6(H1, pkt))
    assert len(out) == 1
    expect_error6(out[0], type=1, code=2, about=pkt, src=R_LL[LAN])


def test_too_big_still_packet_too_big() -> None:
    from tests.core.helpers6 import H4, SMALL
    net = Net6()
    net.ready()
    net.learn6(H1)
    net.learn6(H4)
    net.send(SMALL, frame6(H4, na_pkt(H4.ip, R_IP6[SMALL], H4.ip, s=True, tll=H4.mac)))
    net.send(LAN, frame6(H1, udp6_pkt(H1.ip, H4.ip)))
    net.send(LAN, frame6(H1, udp6_pkt(H1.ip, H4.ip)))
    assert net.router.fast_forwarded6 == 1
    pkt = udp6_pkt(H1.ip, H4.ip, data=bytes(1401 - 48))
    out = net.send(LAN, frame6(H1, pkt))
    assert len(out) == 1
    expect_error6(out[0], type=2, code=0, about=pkt, src=R_IP6[LAN], word=1400)


@pytest.mark.parametrize("src", ["::", "::1", "ff0e::1", "::ffff:10.0.1.10"])
def test_bad_sources_still_take_the_slow_path(warm: Net6, src: str) -> None:
    before = warm.router.fast_forwarded6
    warm.send(LAN, frame6(H1, udp6_pkt(src, H2.ip)))
    assert warm.router.fast_forwarded6 == before


def test_truncated_payload_length_dropped(warm: Net6) -> None:
    pkt = bytearray(udp6_pkt(H1.ip, H2.ip))
    pkt[4:6] = (len(pkt) - 40 + 8).to_bytes(2, "big")
    assert warm.send(LAN, frame6(H1, bytes(pkt))) == []


def test_frame_to_another_mac_not_forwarded(warm: Net6) -> None:
    out = warm.send(LAN, frame6(H1, udp6_pkt(H1.ip, H2.ip), eth_dst=bytes.fromhex("02aa00000001")))
    assert out == []


def test_neighbour_change_invalidates(warm: Net6) -> None:
    other = bytes.fromhex("02aabbccddee")
    warm.send(WAN, frame6(H2, na_pkt(H2.ip, R_IP6[WAN], H2.ip, s=True, o=True, tll=other)))
    out = warm.send(LAN, frame6(H1, udp6_pkt(H1.ip, H2.ip)))
    expect_ip6(out[0], dst=H2.ip, eth_dst=other)


def test_counters_include_fast_path(warm: Net6) -> None:
    snap = warm.router.snapshot()
    assert snap["snmp"]["Ip6OutForwDatagrams"] == 2         # one slow, one fast
