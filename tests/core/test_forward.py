"""Forwarding (ip_forward), the fast path, ICMP errors about forwarded packets, route types."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyrouter.core.route.fib import Route, RouteType

from .helpers import (
    BCAST_MAC, GW, H1, H2, H3, LAN, R_IP, R_IP_WAN2, R_MAC, TOPOLOGY, WAN, ZERO_MAC, Host, Net,
    arp, drop_delta, echo, expect_arp, expect_error, expect_ipv4, frame_from, icmp, ip2int, ipv4,
    parse_eth, parse_ipv4, ping, udp, udp_frame,
)

FUZZ = settings(max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def forwarded(l3: bytes) -> bytes:
    """What Linux puts on the wire for a forwarded packet: TTL - 1, checksum
    recomputed from scratch, nothing else changed."""
    b = bytearray(l3)
    b[8] -= 1
    ip = parse_ipv4(bytes(l3), strict=False)
    return ipv4(ip.src, ip.dst, ip.payload, proto=ip.proto, ttl=b[8], tos=ip.tos,
                ident=ip.ident, df=ip.df, mf=ip.mf, frag_offset=ip.frag_offset,
                options=ip.header[20:], reserved_flag=ip.reserved)


def resolve(net: Net, host: Host, l3: bytes) -> list[tuple[int, bytes]]:
    """Send a first packet toward *host*, check the ARP request, answer it; return
    what the router sent after the answer."""
    tx = net.send(LAN, frame_from(H1, l3))
    assert len(tx) == 1
    port_addr = net.router.ports[host.port].primary_addr4(toward=ip2int(host.ip))
    expect_arp(tx[0], op=1, ifindex=host.port, eth_dst=BCAST_MAC, eth_src=R_MAC[host.port],
               sha=R_MAC[host.port], tha=ZERO_MAC, tpa=host.ip)
    assert parse_eth(tx[0][1]).payload[14:18] == port_addr.to_bytes(4, "big")
    return net.send(host.port, arp(2, host.mac, host.ip, R_MAC[host.port], R_IP[host.port],
                                   eth_dst=R_MAC[host.port]))


def warm(net: Net, host: Host = H2) -> None:
    """Resolve *host* and leave a filled forwarding cache entry for it."""
    net.learn(H1)
    tx = resolve(net, host, ipv4(H1.ip, host.ip, echo(), proto=1))
    assert len(tx) == 1
    # The packet that waited for ARP left through neigh_resolved(); the next one takes
    # the slow path through a REACHABLE neighbour and fills the cache; the third is fast.
    assert len(net.send(LAN, ping(H1, host.ip, seq=2))) == 1
    assert net.router.fast_forwarded == 0
    assert len(net.send(LAN, ping(H1, host.ip, seq=3))) == 1
    assert net.router.fast_forwarded == 1


# --------------------------------------------------------------------------
# Resolution, the slow path and the fast path
# --------------------------------------------------------------------------

@pytest.mark.parametrize("host", [H2, H3], ids=["primary-subnet", "secondary-subnet"])
def test_first_packet_resolves_then_goes_out_decremented(host: Host) -> None:
    net = Net()
    l3 = ipv4(H1.ip, host.ip, echo(), proto=1, ttl=64, ident=0x7777)
    tx = resolve(net, host, l3)
    assert len(tx) == 1
    ip = expect_ipv4(tx[0], ifindex=WAN, eth_dst=host.mac, eth_src=R_MAC[WAN], src=H1.ip,
                     dst=host.ip, ttl=63, ident=0x7777)
    assert ip.raw == forwarded(l3)
    assert net.neigh_state(host) == "REACHABLE"
    assert net.snmp("IpForwDatagrams") == 1
    assert net.router.fast_forwarded == 0


def test_arp_request_source_is_the_egress_address_in_the_target_subnet() -> None:
    net = Net()
    tx = net.send(LAN, ping(H1, H3.ip))
    a = expect_arp(tx[0], op=1, ifindex=WAN)
    assert a.spa == R_IP_WAN2


def test_queued_packets_leave_in_order_after_the_reply() -> None:
    net = Net()
    frames = [ping(H1, H2.ip, seq=i) for i in range(5)]
    out = [net.send(LAN, f) for f in frames]
    assert len(out[0]) == 1 and all(o == [] for o in out[1:])      # one ARP, then queued
    tx = net.confirm(H2)
    assert [expect_ipv4(t, dst=H2.ip, ttl=63).payload for t in tx] == \
        [parse_ipv4(f[14:]).payload for f in frames]


def test_forward_via_gateway_resolves_the_gateway() -> None:
    net = Net()
    tx = net.send(LAN, ping(H1, "10.9.3.4"))
    expect_arp(tx[0], op=1, ifindex=WAN, tpa=GW.ip, spa=R_IP[WAN])
    tx = net.send(WAN, arp(2, GW.mac, GW.ip, R_MAC[WAN], R_IP[WAN], eth_dst=R_MAC[WAN]))
    expect_ipv4(tx[0], ifindex=WAN, eth_dst=GW.mac, dst="10.9.3.4", ttl=63)


def test_fast_path_matches_the_slow_path_byte_for_byte() -> None:
    net = Net()
    warm(net)
    slow = Net()
    warm(slow)
    for seq in range(10):
        frame = ping(H1, H2.ip, seq=seq, ident=seq, tos=seq * 4, ttl=2 + seq * 25)
        before = net.router.fast_forwarded
        fast_tx = net.send(LAN, frame)
        assert net.router.fast_forwarded == before + 1
        slow.router.fwd_cache.clear()                 # force eth_rcv -> ip_forward
        slow_tx = slow.send(LAN, frame)
        assert fast_tx == slow_tx
        assert fast_tx[0][1][14:] == forwarded(frame[14:])


@FUZZ
@given(tos=st.integers(0, 255), ident=st.integers(0, 0xFFFF), ttl=st.integers(2, 255),
       df=st.booleans(), proto=st.sampled_from([1, 6, 17, 47, 253]),
       payload=st.binary(max_size=1400), src=st.sampled_from([H1.ip, "172.16.5.5", "8.8.8.8"]))
def test_fast_path_checksum_update_equals_full_recompute(tos: int, ident: int, ttl: int,
                                                         df: bool, proto: int, payload: bytes,
                                                         src: str) -> None:
    """RFC 1624 eqn. 3 in the fast path never differs from recomputing the checksum."""
    net = Net()
    warm(net)
    l3 = ipv4(src, H2.ip, payload, proto=proto, tos=tos, ident=ident, ttl=ttl, df=df)
    tx = net.send(LAN, frame_from(H1, l3))
    assert net.router.fast_forwarded == 2
    assert len(tx) == 1
    assert tx[0][1][14:] == forwarded(l3)
    assert tx[0][1][:12] == H2.mac + R_MAC[WAN]


@pytest.mark.parametrize("path", ["slow", "fast"])
def test_ethernet_padding_is_trimmed(path: str) -> None:
    net = Net()
    warm(net)
    if path == "slow":
        net.router.fwd_cache.clear()
    l3 = ipv4(H1.ip, H2.ip, udp(H1.ip, H2.ip, data=b"ab"), proto=17)     # 30 bytes
    frame = frame_from(H1, l3, pad=True)
    assert len(frame) == 60
    before = net.router.fast_forwarded
    tx = net.send(LAN, frame)
    assert net.router.fast_forwarded == before + (path == "fast")
    assert len(tx[0][1]) == 14 + len(l3)
    assert tx[0][1][14:] == forwarded(l3)


def test_forwarding_counts_interface_bytes() -> None:
    net = Net()
    warm(net)
    lan, wan = net.router.ports[LAN], net.router.ports[WAN]
    rx0, tx0 = lan.rx_bytes, wan.tx_bytes
    frame = ping(H1, H2.ip, seq=9)
    out = net.send(LAN, frame)
    assert lan.rx_bytes - rx0 == len(frame)
    assert wan.tx_bytes - tx0 == len(out[0][1])
    snap = net.router.snapshot()
    assert snap["snmp"]["IpForwDatagrams"] == 4           # slow 2 + fast 2
    assert snap["fast_forwarded"] == 2


def test_route_change_invalidates_the_fast_path() -> None:
    net = Net()
    warm(net)
    net.router.add_route(Route(4, ip2int(H2.ip), 32, RouteType.BLACKHOLE))
    assert net.send(LAN, ping(H1, H2.ip, seq=5)) == []
    assert net.drops() == {"route_blackhole": 1}


def test_link_down_invalidates_the_fast_path() -> None:
    net = Net()
    warm(net)
    net.router.set_link(WAN, False, net.now)
    assert net.router.fwd_cache == {}
    before = net.router.fast_forwarded
    tx = net.send(LAN, ping(H1, H2.ip, seq=5))
    assert net.router.fast_forwarded == before
    assert [i for i, _ in tx if i == WAN] == []
    assert [e.name for e in net.events] == ["link.down"]


# --------------------------------------------------------------------------
# TTL
# --------------------------------------------------------------------------

@pytest.mark.parametrize("ttl", [1, 0])
@pytest.mark.parametrize("warmed", [False, True], ids=["cold", "cached"])
def test_ttl_expired_gives_time_exceeded_from_ingress_address(ttl: int, warmed: bool) -> None:
    net = Net()
    if warmed:
        warm(net)
    else:
        net.learn(H1)
    l3 = ipv4(H1.ip, H2.ip, echo(data=bytes(range(200))), proto=1, ttl=ttl, ident=0x3131)
    tx = net.send(LAN, frame_from(H1, l3))
    assert len(tx) == 1
    msg = expect_error(tx[0], type=11, code=0, src=R_IP[LAN], about=l3, ifindex=LAN,
                       eth_dst=H1.mac, eth_src=R_MAC[LAN], tos=0xC0)
    assert msg.rest == 0
    assert msg.quoted.ttl == ttl and msg.quoted.ident == 0x3131
    assert net.drops() == {"ttl_exceeded": 1}
    assert net.snmp("IcmpOutTimeExcds") == 1


def test_time_exceeded_source_is_the_address_toward_the_sender() -> None:
    """Sender in wan0's second subnet: the error comes from 10.0.20.1 (route prefsrc)."""
    net = Net()
    net.learn(H3)
    l3 = ipv4(H3.ip, H1.ip, echo(), proto=1, ttl=1)
    tx = net.send(WAN, frame_from(H3, l3))
    expect_error(tx[0], type=11, code=0, src=R_IP_WAN2, about=l3, ifindex=WAN)


def test_time_exceeded_is_capped_at_576_bytes() -> None:
    net = Net()
    net.learn(H1)
    l3 = ipv4(H1.ip, H2.ip, udp(H1.ip, H2.ip, data=b"z" * 1400), ttl=1)
    tx = net.send(LAN, frame_from(H1, l3))
    msg = expect_error(tx[0], type=11, code=0, src=R_IP[LAN], about=l3)
    assert msg.ip.total_len == 576


def test_time_exceeded_tos_keeps_the_tos_bits_with_internetcontrol_precedence() -> None:
    net = Net()
    net.learn(H1)
    l3 = ipv4(H1.ip, H2.ip, echo(), proto=1, ttl=1, tos=0x12 | 0x01)   # TOS 0x12, ECN 01
    tx = net.send(LAN, frame_from(H1, l3))
    expect_error(tx[0], type=11, code=0, src=R_IP[LAN], about=l3, tos=0xC0 | 0x12)


def test_time_exceeded_for_sender_needing_resolution_waits_for_arp() -> None:
    net = Net()
    l3 = ipv4(H1.ip, H2.ip, echo(), proto=1, ttl=1)
    tx = net.send(LAN, frame_from(H1, l3))
    expect_arp(tx[0], op=1, ifindex=LAN, tpa=H1.ip, spa=R_IP[LAN])
    tx = net.confirm(H1)
    expect_error(tx[0], type=11, code=0, src=R_IP[LAN], about=l3, eth_dst=H1.mac)


NO_ERROR_ABOUT = {
    "icmp-dest-unreach": ipv4(H1.ip, H2.ip, icmp(3, 1, 0, bytes(28)), proto=1, ttl=1),
    "icmp-time-exceeded": ipv4(H1.ip, H2.ip, icmp(11, 0, 0, bytes(28)), proto=1, ttl=1),
    "icmp-redirect": ipv4(H1.ip, H2.ip, icmp(5, 1, 0, bytes(28)), proto=1, ttl=1),
    "icmp-param-problem": ipv4(H1.ip, H2.ip, icmp(12, 0, 0, bytes(28)), proto=1, ttl=1),
    "icmp-unknown-type": ipv4(H1.ip, H2.ip, icmp(42, 0, 0, bytes(8)), proto=1, ttl=1),
    "non-first-fragment": ipv4(H1.ip, H2.ip, b"f" * 64, ttl=1, mf=True, frag_offset=1480),
    "last-fragment": ipv4(H1.ip, H2.ip, b"f" * 64, ttl=1, frag_offset=8),
}


@pytest.mark.parametrize("name", sorted(NO_ERROR_ABOUT))
def test_no_time_exceeded_about(name: str) -> None:
    net = Net()
    net.learn(H1)
    tx = net.send(LAN, frame_from(H1, NO_ERROR_ABOUT[name]))
    assert tx == []
    assert net.drops() == {"ttl_exceeded": 1}


def test_time_exceeded_about_icmp_echo_and_first_fragment() -> None:
    """Echo is not an error, and offset 0 with MF is the first fragment: both get one."""
    net = Net()
    net.learn(H1)
    for l3 in (ipv4(H1.ip, H2.ip, echo(), proto=1, ttl=1),
               ipv4(H1.ip, H2.ip, echo()[:16], proto=1, ttl=1, mf=True)):
        tx = net.send(LAN, frame_from(H1, l3))
        expect_error(tx[0], type=11, code=0, src=R_IP[LAN], about=l3)


@pytest.mark.parametrize("eth_dst", [BCAST_MAC, bytes.fromhex("01005e000001")],
                         ids=["broadcast", "multicast"])
def test_no_error_about_l2_broadcast_frames(eth_dst: bytes) -> None:
    """ip_forward() drops pkt_type != PACKET_HOST before the TTL check."""
    net = Net()
    net.learn(H1)
    l3 = ipv4(H1.ip, H2.ip, echo(), proto=1, ttl=1)
    assert net.send(LAN, frame_from(H1, l3, eth_dst=eth_dst)) == []
    assert net.drops() == {"pkt_not_host": 1}
    # And with a good TTL it is not forwarded either.
    l3 = ipv4(H1.ip, H2.ip, echo(), proto=1, ttl=64)
    assert net.send(LAN, frame_from(H1, l3, eth_dst=eth_dst)) == []
    assert net.drops() == {"pkt_not_host": 2}


@pytest.mark.parametrize("dst", ["10.0.1.255", "10.0.2.255", "10.0.20.255", "255.255.255.255"])
def test_no_error_about_ip_broadcast_destinations(dst: str) -> None:
    net = Net()
    net.learn(H1)
    for l3 in (ipv4(H1.ip, dst, udp(H1.ip, dst), ttl=1),          # no Port Unreachable
               ipv4(H1.ip, dst, b"\x00" * 8, proto=253, ttl=1),   # no Protocol Unreachable
               ipv4(H1.ip, dst, echo(), proto=1, ttl=1)):         # echo_ignore_broadcasts
        assert net.send(LAN, frame_from(H1, l3)) == []
        assert net.send(LAN, frame_from(H1, l3, eth_dst=BCAST_MAC)) == []
    assert net.snmp("IcmpOutMsgs") == 0


# --------------------------------------------------------------------------
# Route types and no route
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dst,code,reason", [
    ("198.51.100.7", 1, "route_unreachable"),
    ("203.0.113.7", 13, "route_prohibit"),
    ("172.16.0.1", 0, "no_route"),
])
def test_reject_routes_answer_destination_unreachable(dst: str, code: int, reason: str) -> None:
    net = Net()
    net.learn(H1)
    l3 = ipv4(H1.ip, dst, udp(H1.ip, dst), ttl=17)
    tx = net.send(LAN, frame_from(H1, l3))
    assert len(tx) == 1
    msg = expect_error(tx[0], type=3, code=code, src=R_IP[LAN], about=l3, ifindex=LAN,
                       eth_dst=H1.mac, rest=0)
    assert msg.quoted.ttl == 17                       # ip_error() quotes the packet as received
    assert net.drops() == {reason: 1}
    assert net.snmp("IcmpOutDestUnreachs") == 1
    assert net.snmp("IpExtInNoRoutes") == (1 if reason == "no_route" else 0)


def test_blackhole_route_is_silent() -> None:
    net = Net()
    net.learn(H1)
    assert net.send(LAN, udp_frame(H1, "192.0.2.9")) == []
    assert net.send(LAN, ping(H1, "192.0.2.9", ttl=1)) == []
    assert net.drops() == {"route_blackhole": 2}


def test_no_unreachable_about_an_icmp_error() -> None:
    net = Net()
    net.learn(H1)
    l3 = ipv4(H1.ip, "198.51.100.7", icmp(3, 3, 0, bytes(28)), proto=1)
    assert net.send(LAN, frame_from(H1, l3)) == []
    assert net.drops() == {"route_unreachable": 1}


def test_unreachable_from_wan_side_comes_from_wan_address() -> None:
    net = Net()
    net.learn(H2)
    l3 = ipv4(H2.ip, "203.0.113.1", echo(), proto=1)
    tx = net.send(WAN, frame_from(H2, l3))
    expect_error(tx[0], type=3, code=13, src=R_IP[WAN], about=l3, ifindex=WAN, eth_dst=H2.mac)


def test_more_specific_route_wins_and_metric_orders() -> None:
    config = TOPOLOGY + """\
  - {to: 10.9.7.0/24, type: prohibit}
  - {to: 10.8.0.0/16, via: 10.0.1.200, metric: 10}
  - {to: 10.8.0.0/16, via: 10.0.2.254, metric: 5}
"""
    net = Net(config=config)
    net.learn(H1)
    l3 = ipv4(H1.ip, "10.9.7.1", echo(), proto=1)
    tx = net.send(LAN, frame_from(H1, l3))
    expect_error(tx[0], type=3, code=13, src=R_IP[LAN], about=l3)
    tx = net.send(LAN, ping(H1, "10.9.8.1"))
    expect_arp(tx[0], op=1, ifindex=WAN, tpa=GW.ip)
    tx = net.send(LAN, ping(H1, "10.8.0.1"))
    assert tx == []                                    # queued behind the same GW resolution
    tx = net.send(WAN, arp(2, GW.mac, GW.ip, R_MAC[WAN], R_IP[WAN], eth_dst=R_MAC[WAN]))
    assert [expect_ipv4(t, ifindex=WAN, eth_dst=GW.mac).dst for t in tx] == \
        ["10.9.8.1", "10.8.0.1"]


# --------------------------------------------------------------------------
# Martians
# --------------------------------------------------------------------------

MARTIAN_SRC = ["0.0.0.0", "0.1.2.3", "127.0.0.1", "127.9.9.9", "224.0.0.5", "239.1.1.1",
               "255.255.255.255"]
MARTIAN_DST = ["0.0.0.1", "0.9.9.9", "127.0.0.1", "127.1.2.3"]


@pytest.mark.parametrize("warmed", [False, True], ids=["cold", "cached"])
@pytest.mark.parametrize("src", MARTIAN_SRC)
def test_martian_source_is_dropped(src: str, warmed: bool) -> None:
    net = Net()
    if warmed:
        warm(net)
    before = net.drops()
    l3 = ipv4(src, H2.ip, echo(), proto=1)
    assert net.send(LAN, frame_from(H1, l3)) == []
    assert drop_delta(before, net.drops()) == {"martian_src": 1}


@pytest.mark.parametrize("dst", MARTIAN_DST)
def test_martian_destination_is_dropped(dst: str) -> None:
    net = Net()
    net.learn(H1)
    l3 = ipv4(H1.ip, dst, echo(), proto=1)
    assert net.send(LAN, frame_from(H1, l3)) == []
    assert net.drops() == {"martian_dst": 1}
    assert net.snmp("IpInAddrErrors") == 1


def test_zero_source_to_limited_broadcast_is_accepted() -> None:
    """DHCP DISCOVER (0.0.0.0 -> 255.255.255.255) is delivered locally, not martian."""
    net = Net()
    l3 = ipv4("0.0.0.0", "255.255.255.255", udp("0.0.0.0", "255.255.255.255", 68, 67))
    assert net.send(LAN, frame_from(H1, l3, eth_dst=BCAST_MAC)) == []
    assert net.drops() == {"udp_no_port": 1}


def test_class_e_source_is_forwarded() -> None:
    net = Net()
    warm(net)
    l3 = ipv4("240.0.0.1", H2.ip, echo(), proto=1)
    tx = net.send(LAN, frame_from(H1, l3))
    assert len(tx) == 1
    assert tx[0][1][14:] == forwarded(l3)


@pytest.mark.parametrize("warmed", [False, True], ids=["cold", "cached"])
def test_packet_from_a_router_address_is_martian(warmed: bool) -> None:
    net = Net()
    warm(net) if warmed else net.learn(H1)
    before = net.drops()
    l3 = ipv4(R_IP[WAN], H2.ip, echo(), proto=1)
    assert net.send(LAN, frame_from(H1, l3)) == []
    assert drop_delta(before, net.drops()) == {"martian_src": 1}
