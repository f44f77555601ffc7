"""IPv6 echo, forwarding and ICMPv6 errors (RFC 4443, RFC 8200; net/ipv6/ip6_output.c
ip6_forward, icmp.c icmp6_send / icmpv6_echo_reply) with crafted frames."""

from __future__ import annotations

import pytest

from tests.core.helpers6 import (
    ALL_NODES,
    GW6,
    H1,
    H1B,
    H2,
    H4,
    LAN,
    R_IP6,
    R_LL,
    R_MAC,
    SMALL,
    WAN,
    Net6,
    echo6,
    echo6_body,
    expect_error6,
    expect_icmp6,
    expect_ip6,
    frame6,
    icmp6_of,
    icmp6_pkt,
    ip6,
    udp6_pkt,
)


@pytest.fixture
def net() -> Net6:
    n = Net6()
    n.ready()
    return n


# -- echo ---------------------------------------------------------------------------

def test_echo_to_global_address(net: Net6) -> None:
    net.learn6(H1)
    req = echo6(H1.ip, R_IP6[LAN], tc=0xB8, hlim=17, seq=7)
    out = net.send(LAN, frame6(H1, req))
    assert len(out) == 1
    m = expect_icmp6(out[0], type=129, code=0, src=R_IP6[LAN], dst=H1.ip, hlim=64, tc=0xB8,
                     ifindex=LAN, eth_dst=H1.mac)
    assert m.body == echo6_body(seq=7)


def test_echo_to_another_ports_global_address(net: Net6) -> None:
    """The pinged address is the source even when it belongs to another port."""
    net.learn6(H1)
    out = net.send(LAN, frame6(H1, echo6(H1.ip, R_IP6[WAN])))
    assert len(out) == 1
    expect_icmp6(out[0], type=129, code=0, src=R_IP6[WAN], dst=H1.ip, hlim=64, ifindex=LAN)


def test_echo_to_link_local(net: Net6) -> None:
    net.learn6(H1, H1.ll)
    out = net.send(LAN, frame6(H1, echo6(H1.ll, R_LL[LAN], tc=0x20)))
    assert len(out) == 1
    m = expect_icmp6(out[0], type=129, code=0, src=R_LL[LAN], dst=H1.ll, hlim=64, tc=0x20,
                     ifindex=LAN, eth_dst=H1.mac)
    assert m.body == echo6_body()


def test_echo_to_another_ports_link_local_is_not_answered(net: Net6) -> None:
    net.learn6(H1, H1.ll)
    out = net.send(LAN, frame6(H1, echo6(H1.ll, R_LL[WAN])))
    assert out == []
    assert net.drops().get("ip6_linklocal_dst") == 1


def test_echo_to_all_nodes(net: Net6) -> None:
    net.learn6(H1, H1.ll)
    out = net.send(LAN, frame6(H1, echo6(H1.ll, ALL_NODES)))
    assert len(out) == 1
    expect_icmp6(out[0], type=129, code=0, src=R_LL[LAN], dst=H1.ll, hlim=64, ifindex=LAN,
                 eth_dst=H1.mac)


def test_echo_to_all_nodes_from_global_source(net: Net6) -> None:
    net.learn6(H1)
    out = net.send(LAN, frame6(H1, echo6(H1.ip, ALL_NODES)))
    assert len(out) == 1
    expect_icmp6(out[0], type=129, code=0, src=R_IP6[LAN], dst=H1.ip, ifindex=LAN)


# -- forwarding ---------------------------------------------------------------------

def test_forward_decrements_hop_limit(net: Net6) -> None:
    net.learn6(H2)
    pkt = udp6_pkt(H1.ip, H2.ip, hlim=9, tc=0x48, flow=0x12345)
    out = net.send(LAN, frame6(H1, pkt))
    assert len(out) == 1
    p = expect_ip6(out[0], src=H1.ip, dst=H2.ip, hlim=8, tc=0x48, nh=17, ifindex=WAN,
                   eth_dst=H2.mac)
    assert p.flow == 0x12345
    assert p.raw == pkt[:7] + bytes([8]) + pkt[8:]


def test_forward_via_gateway(net: Net6) -> None:
    net.learn6(GW6)
    out = net.send(LAN, frame6(H1, udp6_pkt(H1.ip, "2001:db8:9::99")))
    assert len(out) == 1
    expect_ip6(out[0], dst="2001:db8:9::99", hlim=63, ifindex=WAN, eth_dst=GW6.mac)


def test_hop_limit_1_time_exceeded_from_ingress_global(net: Net6) -> None:
    net.learn6(H1)
    net.learn6(H2)
    pkt = udp6_pkt(H1.ip, H2.ip, hlim=1, tc=0x28)
    out = net.send(LAN, frame6(H1, pkt))
    assert len(out) == 1
    expect_error6(out[0], type=3, code=0, about=pkt, src=R_IP6[LAN], ifindex=LAN,
                  eth_dst=H1.mac)
    assert net.snmp("Icmp6OutTimeExcds") == 1


def test_hop_limit_0_time_exceeded(net: Net6) -> None:
    net.learn6(H1)
    pkt = udp6_pkt(H1.ip, H2.ip, hlim=0)
    out = net.send(LAN, frame6(H1, pkt))
    assert len(out) == 1
    expect_error6(out[0], type=3, code=0, about=pkt, src=R_IP6[LAN])


def test_no_route_dest_unreach_code_0(net: Net6) -> None:
    net.learn6(H1)
    pkt = udp6_pkt(H1.ip, "2001:db8:ffff::1")
    out = net.send(LAN, frame6(H1, pkt))
    assert len(out) == 1
    expect_error6(out[0], type=1, code=0, about=pkt, src=R_IP6[LAN], ifindex=LAN)


def test_unreachable_route_code_0(net: Net6) -> None:
    net.learn6(H1)
    pkt = udp6_pkt(H1.ip, "2001:db8:dead::1")
    out = net.send(LAN, frame6(H1, pkt))
    assert len(out) == 1
    expect_error6(out[0], type=1, code=0, about=pkt, src=R_IP6[LAN])


def test_prohibit_route_code_1(net: Net6) -> None:
    net.learn6(H1)
    pkt = udp6_pkt(H1.ip, "2001:db8:beef::1")
    out = net.send(LAN, frame6(H1, pkt))
    assert len(out) == 1
    expect_error6(out[0], type=1, code=1, about=pkt, src=R_IP6[LAN])


def test_blackhole_is_silent(net: Net6) -> None:
    net.learn6(H1)
    out = net.send(LAN, frame6(H1, udp6_pkt(H1.ip, "2001:db8:b1ac::1")))
    assert out == []
    assert net.drops().get("route_blackhole") == 1


def test_link_local_source_beyond_scope(net: Net6) -> None:
    net.learn6(H1, H1.ll)
    net.learn6(H2)
    pkt = udp6_pkt(H1.ll, H2.ip)
    out = net.send(LAN, frame6(H1, pkt))
    assert len(out) == 1
    expect_error6(out[0], type=1, code=2, about=pkt, src=R_LL[LAN], ifindex=LAN,
                  eth_dst=H1.mac)


def test_packet_too_big_with_egress_mtu(net: Net6) -> None:
    net.learn6(H1)
    net.learn6(H4)
    pkt = udp6_pkt(H1.ip, H4.ip, data=b"z" * (1401 - 48))
    assert len(pkt) == 1401
    out = net.send(LAN, frame6(H1, pkt))
    assert len(out) == 1
    m = expect_error6(out[0], type=2, code=0, about=pkt, src=R_IP6[LAN], word=1400,
                      ifindex=LAN)
    assert len(m.ip.raw) == 1280
    # exactly the MTU passes
    ok = udp6_pkt(H1.ip, H4.ip, data=b"z" * (1400 - 48))
    out = net.send(LAN, frame6(H1, ok))
    assert len(out) == 1
    expect_ip6(out[0], dst=H4.ip, hlim=63, ifindex=SMALL)


def test_packet_too_big_floor_1280(net: Net6) -> None:
    """A route mtu below 1280 counts as 1280 (ip6_forward: mtu < IPV6_MIN_MTU)."""
    net.learn6(H1)
    net.learn6(GW6)
    pkt = udp6_pkt(H1.ip, "2001:db8:77::1", data=b"q" * (1300 - 48))
    out = net.send(LAN, frame6(H1, pkt))
    assert len(out) == 1
    expect_error6(out[0], type=2, code=0, about=pkt, src=R_IP6[LAN], word=1280)
    ok = udp6_pkt(H1.ip, "2001:db8:77::1", data=b"q" * (1280 - 48))
    out = net.send(LAN, frame6(H1, ok))
    assert len(out) == 1
    expect_ip6(out[0], dst="2001:db8:77::1", ifindex=WAN, eth_dst=GW6.mac)


def test_error_capped_at_1280_bytes(net: Net6) -> None:
    net.learn6(H1)
    pkt = udp6_pkt(H1.ip, H2.ip, hlim=1, data=b"w" * 1400)
    out = net.send(LAN, frame6(H1, pkt))
    assert len(out) == 1
    m = expect_error6(out[0], type=3, code=0, about=pkt, src=R_IP6[LAN])
    assert len(m.ip.raw) == 1280
    assert len(m.data) == 1232


# -- no errors about ... ----------------------------------------------------------

def test_no_error_about_an_icmpv6_error(net: Net6) -> None:
    net.learn6(H1)
    inner = udp6_pkt(H2.ip, H1.ip)
    err = icmp6_pkt(H1.ip, H2.ip, 1, 4, bytes(4) + inner, hlim=1)
    out = net.send(LAN, frame6(H1, err))
    assert out == []
    assert net.drops().get("ttl_exceeded") == 1
    # ... but an informational message (echo request) with hop limit 1 gets one
    req = echo6(H1.ip, H2.ip, hlim=1)
    out = net.send(LAN, frame6(H1, req))
    assert len(out) == 1
    expect_error6(out[0], type=3, code=0, about=req, src=R_IP6[LAN])


def test_no_error_about_an_icmpv6_error_behind_extension_headers(net: Net6) -> None:
    from tests.core.helpers6 import hbh
    net.learn6(H1)
    ext = hbh(60, b"\x01\x04\x00\x00\x00\x00") + hbh(58, b"\x01\x04\x00\x00\x00\x00")
    err = icmp6_pkt(H1.ip, H2.ip, 3, 0, bytes(4) + udp6_pkt(H2.ip, H1.ip), hlim=1, ext=ext,
                    ext_nh=0)
    out = net.send(LAN, frame6(H1, err))
    assert out == []


def test_no_error_about_a_multicast_destination(net: Net6) -> None:
    net.learn6(H1)
    # unknown upper layer and UDP to a group we joined: no Param Prob / Port Unreachable
    out = net.send(LAN, frame6(H1, ip6(H1.ip, ALL_NODES, 253, b"\x00" * 16)))
    out += net.send(LAN, frame6(H1, udp6_pkt(H1.ip, ALL_NODES)))
    assert out == []
    # unicast to us: both answered
    out = net.send(LAN, frame6(H1, ip6(H1.ip, R_IP6[LAN], 253, b"\x00" * 16)))
    out += net.send(LAN, frame6(H1, udp6_pkt(H1.ip, R_IP6[LAN])))
    assert [(expect_icmp6(o, type=t).type, expect_icmp6(o, type=t).code)
            for o, t in zip(out, (4, 1))] == [(4, 1), (1, 4)]


def test_no_error_about_a_frame_to_another_mac(net: Net6) -> None:
    """Hop limit 1 in a frame sent to a multicast MAC but a unicast IP: not PACKET_HOST."""
    net.learn6(H1)
    out = net.send(LAN, frame6(H1, udp6_pkt(H1.ip, H2.ip, hlim=1),
                               eth_dst=b"\x33\x33\x00\x00\x00\x01"))
    assert out == []


@pytest.mark.parametrize("src", ["::", "ff0e::1"])
def test_no_error_to_unspecified_or_multicast_source(net: Net6, src: str) -> None:
    out = net.send(LAN, frame6(H1, udp6_pkt(src, "2001:db8:ffff::1", hlim=1)))
    out += net.send(LAN, frame6(H1, udp6_pkt(src, "2001:db8:ffff::1")))
    assert out == []
    assert icmp6_of(out, 1) == [] and icmp6_of(out, 3) == []


def test_unspecified_source_not_forwarded(net: Net6) -> None:
    net.learn6(H2)
    out = net.send(LAN, frame6(H1, udp6_pkt("::", H2.ip)))
    assert out == []


# -- redirect ------------------------------------------------------------------------

def test_redirect_for_on_link_destination_and_still_forwarded(net: Net6) -> None:
    net.learn6(H1)
    net.learn6(H1B)
    pkt = udp6_pkt(H1.ip, H1B.ip, hlim=30)
    out = net.send(LAN, frame6(H1, pkt))
    redirects = icmp6_of(out, 137)
    assert len(redirects) == 1, out
    m = expect_icmp6(redirects[0], type=137, code=0, src=R_LL[LAN], dst=H1.ip, hlim=255,
                     ifindex=LAN, eth_dst=H1.mac)
    assert m.rest == bytes(4)
    assert m.data[0:16] == ip6("::", H1B.ip, 0)[24:40]          # target = destination
    assert m.data[16:32] == ip6("::", H1B.ip, 0)[24:40]         # destination
    opts = m.data[32:]
    # target lladdr (known: H1B is STALE) then the redirected header
    assert opts[0:8] == bytes([2, 1]) + H1B.mac
    assert opts[8] == 4 and opts[9] * 8 == len(opts) - 8
    quoted = opts[16:]
    assert quoted.rstrip(b"\x00") == pkt[:len(quoted)].rstrip(b"\x00")
    assert quoted[:40] == pkt[:40]
    fwd = [o for o in out if o not in redirects]
    assert len(fwd) == 1
    expect_ip6(fwd[0], src=H1.ip, dst=H1B.ip, hlim=29, ifindex=LAN, eth_dst=H1B.mac)
    assert R_MAC[LAN] == fwd[0][1][6:12]


def test_redirect_to_link_local_source(net: Net6) -> None:
    """Out the port it came in on: the redirect branch (no beyond-scope error for a
    link-local source), to the link-local sender, and forwarded."""
    net.learn6(H1, H1.ll)
    net.learn6(H1B)
    pkt = udp6_pkt(H1.ll, H1B.ip)
    out = net.send(LAN, frame6(H1, pkt))
    red = icmp6_of(out, 137)
    assert len(red) == 1
    expect_icmp6(red[0], type=137, src=R_LL[LAN], dst=H1.ll, hlim=255, eth_dst=H1.mac)
    assert icmp6_of(out, 1) == []
    fwd = [o for o in out if o not in red]
    assert len(fwd) == 1
    expect_ip6(fwd[0], src=H1.ll, dst=H1B.ip, hlim=63, ifindex=LAN, eth_dst=H1B.mac)


def test_redirect_and_packet_too_big(net: Net6) -> None:
    """ip6_forward(): the redirect is sent before the MTU check."""
    h = H4.__class__("2001:db8:4::41", bytes.fromhex("024000000041"), SMALL)
    net.learn6(H4)
    net.learn6(h)
    pkt = udp6_pkt(h.ip, H4.ip, data=bytes(1401 - 48))
    out = net.send(SMALL, frame6(h, pkt))
    assert [o[1][54] for o in out] == [137, 2]
    expect_icmp6(out[0], type=137, src=R_LL[SMALL], dst=h.ip, hlim=255, ifindex=SMALL)
    expect_error6(out[1], type=2, code=0, about=pkt, src=R_IP6[SMALL], word=1400,
                  ifindex=SMALL, eth_dst=h.mac)
