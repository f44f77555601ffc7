"""Packets for the router itself over IPv6: UDP and TCP answers, checksums, groups,
ICMPv6 rate limits (net/ipv6/udp.c, tcp_ipv6.c tcp_v6_send_reset, icmp.c
icmpv6_xrlim_allow) and forwarding details (fragments, redirects via gateways)."""

from __future__ import annotations

import struct

import pytest

from tests.core.helpers import MS, ones_sum
from tests.core.helpers6 import (
    ALL_NODES,
    ALL_ROUTERS,
    CONFIG6,
    GW1,
    H1,
    H1B,
    H2,
    LAN,
    R_IP6,
    R_LL,
    SECOND,
    WAN,
    Net6,
    a6,
    csum6,
    echo6,
    expect_error6,
    expect_icmp6,
    expect_ip6,
    fragment6,
    frame6,
    icmp6_of,
    ip6,
    na_pkt,
    solicited,
    udp6_pkt,
)


@pytest.fixture
def net() -> Net6:
    n = Net6()
    n.ready()
    n.learn6(H1)
    return n


def test_udp_to_router_port_unreachable(net: Net6) -> None:
    pkt = udp6_pkt(H1.ip, R_IP6[WAN])
    out = net.send(LAN, frame6(H1, pkt))
    assert len(out) == 1
    expect_error6(out[0], type=1, code=4, about=pkt, src=R_IP6[WAN], ifindex=LAN)


def test_udp_zero_checksum_dropped(net: Net6) -> None:
    pkt = bytearray(udp6_pkt(H1.ip, R_IP6[LAN]))
    pkt[46:48] = b"\x00\x00"
    assert net.send(LAN, frame6(H1, bytes(pkt))) == []
    assert net.snmp("Udp6InCsumErrors") == 1


def test_bad_icmpv6_checksum_dropped(net: Net6) -> None:
    pkt = bytearray(echo6(H1.ip, R_IP6[LAN]))
    pkt[42] ^= 0xFF
    assert net.send(LAN, frame6(H1, bytes(pkt))) == []
    assert net.snmp("Icmp6InCsumErrors") == 1


def _tcp(src: str, dst: str, flags: int, seq: int = 1000, ack: int = 0,
         data: bytes = b"") -> bytes:
    seg = bytearray(struct.pack("!HHIIBBHHH", 40000, 22, seq, ack, 5 << 4, flags, 64240, 0, 0)
                    + data)
    seg[16:18] = struct.pack("!H", csum6(src, dst, 6, bytes(seg)))
    return ip6(src, dst, 6, bytes(seg))


def test_tcp_syn_gets_rst_ack(net: Net6) -> None:
    out = net.send(LAN, frame6(H1, _tcp(H1.ip, R_IP6[LAN], 0x02, seq=1000)))
    assert len(out) == 1
    p = expect_ip6(out[0], src=R_IP6[LAN], dst=H1.ip, nh=6, hlim=64, tc=0, ifindex=LAN)
    assert ones_sum(p.payload, _pseudo(p.src, p.dst, 6, len(p.payload))) == 0xFFFF
    sport, dport, seq, ack, doff, flags = struct.unpack_from("!HHIIBB", p.payload)
    assert (sport, dport, seq, ack, doff >> 4, flags) == (22, 40000, 0, 1001, 5, 0x14)


def test_tcp_ack_gets_rst_with_its_ack_as_seq(net: Net6) -> None:
    out = net.send(LAN, frame6(H1, _tcp(H1.ip, R_IP6[LAN], 0x10, seq=5, ack=777)))
    assert len(out) == 1
    p = expect_ip6(out[0], src=R_IP6[LAN], dst=H1.ip, nh=6)
    _, _, seq, ack, _, flags = struct.unpack_from("!HHIIBB", p.payload)
    assert (seq, ack, flags) == (777, 0, 0x04)


def test_tcp_rst_not_answered(net: Net6) -> None:
    assert net.send(LAN, frame6(H1, _tcp(H1.ip, R_IP6[LAN], 0x04))) == []


def _pseudo(src: str, dst: str, nh: int, n: int) -> int:
    from tests.core.helpers6 import pseudo6
    return pseudo6(src, dst, nh, n)


def test_echo_to_all_routers_and_solicited_node_group(net: Net6) -> None:
    for group in (ALL_ROUTERS, solicited(R_IP6[LAN])):
        out = net.send(LAN, frame6(H1, echo6(H1.ip, group)))
        assert len(out) == 1, group
        expect_icmp6(out[0], type=129, src=R_IP6[LAN], dst=H1.ip)


def test_group_not_joined_dropped(net: Net6) -> None:
    assert net.send(LAN, frame6(H1, echo6(H1.ip, "ff02::1:ff00:99"))) == []
    assert net.send(LAN, frame6(H1, echo6(H1.ip, "ff0e::1234"))) == []
    assert net.drops() == {"mcast6_not_joined": 2}


@pytest.mark.parametrize("dst", ["ff00::1", "ff01::1", "::1"])
def test_reserved_or_interface_local_scope_and_loopback_dropped(net: Net6, dst: str) -> None:
    assert net.send(LAN, frame6(H1, echo6(H1.ip, dst))) == []
    assert net.drops() == {"ip6_bad_addr": 1}


def test_echo_ignore_multicast_knob() -> None:
    net = Net6(config=CONFIG6.replace("ndisc_notify: true",
                                      "ndisc_notify: true\n  icmp_echo_ignore_multicast: true"))
    net.ready()
    net.learn6(H1)
    assert net.send(LAN, frame6(H1, echo6(H1.ip, ALL_NODES))) == []
    assert len(net.send(LAN, frame6(H1, echo6(H1.ip, R_IP6[LAN])))) == 1


def test_subnet_router_anycast_answered(net: Net6) -> None:
    out = net.send(LAN, frame6(H1, echo6(H1.ip, "2001:db8:1::")))
    assert len(out) == 1
    expect_icmp6(out[0], type=129, src=R_IP6[LAN], dst=H1.ip)


# -- ICMPv6 rate limits ---------------------------------------------------------------

def test_error_rate_limit_per_destination(net: Net6) -> None:
    """icmpv6_xrlim_allow(): 1 s (icmp_ratelimit) >> ((128 - 64) >> 5) = 250 ms per
    error to a host behind a /64, burst 6; Packet Too Big is not limited."""
    pkts = [udp6_pkt(H1.ip, H2.ip, hlim=1, data=bytes([i]) * 16) for i in range(10)]
    out = []
    for p in pkts:
        out += net.send(LAN, frame6(H1, p))
    assert len(icmp6_of(out, 3)) == 6
    out = net.send(LAN, frame6(H1, pkts[0]), at=net.now + 249 * MS)
    assert out == []
    out = net.send(LAN, frame6(H1, pkts[0]), at=net.now + 1 * MS)
    assert len(icmp6_of(out, 3)) == 1
    net.learn6(H2)
    big = udp6_pkt(H1.ip, "2001:db8:4::40", data=bytes(1400))
    out = []
    for _ in range(10):
        out += net.send(LAN, frame6(H1, big))
    assert len(icmp6_of(out, 2)) == 10


def test_echo_replies_not_rate_limited(net: Net6) -> None:
    out = []
    for i in range(20):
        out += net.send(LAN, frame6(H1, echo6(H1.ip, R_IP6[LAN], seq=i)))
    assert len(icmp6_of(out, 129)) == 20


# -- forwarding details ------------------------------------------------------------------

def test_fragments_forwarded_unchanged(net: Net6) -> None:
    net.learn6(H2)
    frags = fragment6(udp6_pkt(H1.ip, H2.ip, data=bytes(3000)), 1232)
    for f in frags:
        out = net.send(LAN, frame6(H1, f))
        assert len(out) == 1
        p = expect_ip6(out[0], src=H1.ip, dst=H2.ip, nh=44, hlim=63, ifindex=WAN)
        assert p.raw[8:] == f[8:]
    assert len(net.router.reasm6) == 0


def test_no_redirect_for_a_global_gateway(net: Net6) -> None:
    """ndisc_send_redirect(): the target must be the destination or link-local."""
    net.learn6(GW1)
    out = net.send(LAN, frame6(H1, udp6_pkt(H1.ip, "2001:db8:11::5")))
    assert icmp6_of(out, 137) == []
    assert len(out) == 1
    expect_ip6(out[0], dst="2001:db8:11::5", hlim=63, ifindex=LAN, eth_dst=GW1.mac)


def test_redirect_to_a_link_local_gateway() -> None:
    cfg = CONFIG6 + f'  - {{to: "2001:db8:12::/48", via: "{GW1.ll}", dev: lan0}}\n'
    net = Net6(config=cfg)
    net.ready()
    net.learn6(H1)
    net.learn6(GW1, GW1.ll)
    pkt = udp6_pkt(H1.ip, "2001:db8:12::5")
    out = net.send(LAN, frame6(H1, pkt))
    red = icmp6_of(out, 137)
    assert len(red) == 1
    m = expect_icmp6(red[0], type=137, code=0, src=R_LL[LAN], dst=H1.ip, hlim=255)
    assert m.data[0:16] == a6(GW1.ll) and m.data[16:32] == a6("2001:db8:12::5")
    fwd = [o for o in out if o not in red]
    assert len(fwd) == 1
    expect_ip6(fwd[0], dst="2001:db8:12::5", hlim=63, ifindex=LAN, eth_dst=GW1.mac)


def test_redirect_of_a_large_packet_fits_1280(net: Net6) -> None:
    net.learn6(H1B)
    pkt = udp6_pkt(H1.ip, H1B.ip, data=bytes(1400))
    out = net.send(LAN, frame6(H1, pkt))
    red = icmp6_of(out, 137)
    assert len(red) == 1
    m = expect_icmp6(red[0], type=137, src=R_LL[LAN], dst=H1.ip)
    assert len(m.ip.raw) == 1280
    opts = m.data[32:]
    assert opts[8] == 4 and opts[16:] == pkt[:len(opts) - 16]
    assert len(opts) - 16 == 1184


def test_redirects_rate_limited(net: Net6) -> None:
    net.learn6(H1B)
    out = []
    for i in range(10):
        out += net.send(LAN, frame6(H1, udp6_pkt(H1.ip, H1B.ip, data=bytes([i]) * 8)))
    assert len(icmp6_of(out, 137)) == 6
    assert len(out) - len(icmp6_of(out, 137)) == 10       # all still forwarded
    out = net.send(LAN, frame6(H1, udp6_pkt(H1.ip, H1B.ip)), at=net.now + SECOND)
    assert len(icmp6_of(out, 137)) == 1


def test_no_redirect_when_source_is_not_on_link(net: Net6) -> None:
    """ndisc_send_redirect(): 'destination is not a neighbour' (the source is routed
    through a gateway): forwarded, no redirect."""
    net.learn6(H1B)
    pkt = udp6_pkt("2001:db8:11::5", H1B.ip)
    out = net.send(LAN, frame6(GW1, pkt))
    assert icmp6_of(out, 137) == []
    assert len(out) == 1
    expect_ip6(out[0], src="2001:db8:11::5", dst=H1B.ip, hlim=63, ifindex=LAN,
               eth_dst=H1B.mac)


# -- input validation ------------------------------------------------------------------------

def test_ethernet_padding_trimmed(net: Net6) -> None:
    req = echo6(H1.ip, R_IP6[LAN], data=b"")
    out = net.send(LAN, frame6(H1, req) + bytes(10))
    assert len(out) == 1
    m = expect_icmp6(out[0], type=129, src=R_IP6[LAN], dst=H1.ip)
    assert m.body == struct.pack("!HH", 0x4242, 1)


def test_hop_limit_0_to_router_still_delivered(net: Net6) -> None:
    out = net.send(LAN, frame6(H1, echo6(H1.ip, R_IP6[LAN], hlim=0)))
    assert len(out) == 1
    expect_icmp6(out[0], type=129, src=R_IP6[LAN], hlim=64)


def test_echo_from_link_local_source_to_global(net: Net6) -> None:
    net.learn6(H1, H1.ll)
    out = net.send(LAN, frame6(H1, echo6(H1.ll, R_IP6[WAN])))
    assert len(out) == 1
    expect_icmp6(out[0], type=129, src=R_IP6[WAN], dst=H1.ll, ifindex=LAN, eth_dst=H1.mac)


@pytest.mark.parametrize("kind", ["truncated", "version4", "mcast-src", "short"])
def test_bad_ipv6_headers_dropped(net: Net6, kind: str) -> None:
    good = echo6(H1.ip, R_IP6[LAN])
    pkt = {
        "truncated": good[:4] + struct.pack("!H", len(good)) + good[6:],
        "version4": bytes([0x40]) + good[1:],
        "mcast-src": echo6("ff02::1", R_IP6[LAN]),
        "short": good[:39],
    }[kind]
    assert net.send(LAN, frame6(H1, pkt)) == []
    assert sum(net.drops().values()) == 1
    assert net.snmp("Ip6InHdrErrors") + net.snmp("Ip6InTruncatedPkts") == 1


def test_v4mapped_source_forwarded(net: Net6) -> None:
    net.learn6(H2)
    out = net.send(LAN, frame6(H1, udp6_pkt("::ffff:10.0.1.10", H2.ip)))
    assert len(out) == 1
    expect_ip6(out[0], src="::ffff:10.0.1.10", dst=H2.ip, hlim=63, ifindex=WAN)


def test_v4mapped_destination_routed(net: Net6) -> None:
    pkt = udp6_pkt(H1.ip, "::ffff:10.0.1.1")
    out = net.send(LAN, frame6(H1, pkt))
    assert len(out) == 1
    expect_error6(out[0], type=1, code=0, about=pkt, src=R_IP6[LAN])


def test_redirects_and_errors_share_the_peer_budget(net: Net6) -> None:
    net.learn6(H1B)
    out = []
    for i in range(6):
        out += net.send(LAN, frame6(H1, udp6_pkt(H1.ip, H1B.ip, data=bytes([i]) * 8)))
    assert len(icmp6_of(out, 137)) == 6
    out = net.send(LAN, frame6(H1, udp6_pkt(H1.ip, H2.ip, hlim=1)))
    assert icmp6_of(out, 3) == []


def test_unresolved_queue_bounded(net: Net6) -> None:
    """unres_qlen_bytes (212992) bounds what waits for NDISC; the oldest go first."""
    pkts = [udp6_pkt(H1.ip, H2.ip, data=i.to_bytes(2, "big") * 650) for i in range(300)]
    for p in pkts:
        net.send(LAN, frame6(H1, p))
    out = net.send(WAN, frame6(H2, na_pkt(H2.ip, R_IP6[WAN], H2.ip, s=True, o=True,
                                          tll=H2.mac)))
    assert 50 < len(out) < 300
    sent = [expect_ip6(o, dst=H2.ip, ifindex=WAN).raw[8:] for o in out]
    assert sent == [p[8:] for p in pkts[-len(out):]]          # the newest survive, in order


def test_no_ipv6_on_a_port_with_mtu_below_1280() -> None:
    from tests.core.helpers6 import Host6, eth6
    net = Net6(config=CONFIG6.replace("    mtu: 1400\n", "    mtu: 1000\n"))
    out = net.run_until(3 * SECOND)
    assert [o for o in out if o[1] == 3] == []              # no DAD, no NA on small0
    h = Host6("2001:db8:4::40", bytes.fromhex("024000000040"), 3)
    out = net.send(3, eth6(bytes.fromhex("020000000401"), h.mac,
                           echo6(h.ip, "2001:db8:4::1", data=bytes(1100))))
    assert all(len(f) - 14 <= 1000 for _, f in out)
    assert out == []


def test_hop_limit_knob_sets_our_packets_hop_limit() -> None:
    net = Net6(config=CONFIG6.replace("ndisc_notify: true", "ndisc_notify: true\n  hop_limit: 200"))
    net.ready()
    net.learn6(H1)
    out = net.send(LAN, frame6(H1, echo6(H1.ip, R_IP6[LAN])))
    expect_icmp6(out[0], type=129, hlim=200)
    out = net.send(LAN, frame6(H1, udp6_pkt(H1.ip, H2.ip, hlim=1)))
    expect_icmp6(out[0], type=3, hlim=200)


def test_unicast_to_us_in_a_broadcast_frame(net: Net6) -> None:
    """Not PACKET_HOST: no ICMPv6 error about it (icmp6_send), but the echo is answered
    (icmpv6_echo_reply does not look at pkt_type)."""
    bcast = b"\xff" * 6
    assert net.send(LAN, frame6(H1, udp6_pkt(H1.ip, R_IP6[LAN]), eth_dst=bcast)) == []
    out = net.send(LAN, frame6(H1, echo6(H1.ip, R_IP6[LAN]), eth_dst=bcast))
    assert len(out) == 1
    expect_icmp6(out[0], type=129, src=R_IP6[LAN], dst=H1.ip)
