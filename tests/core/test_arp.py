"""ARP as net/ipv4/arp.c arp_process() with arp_ignore=0, arp_announce=0, arp_accept=0."""

from __future__ import annotations

import pytest

from .helpers import (
    ALL_ROUTER_IPS, BCAST_MAC, H1, H1B, H2, H4, H5, JUMBO, LAN, R_IP, R_MAC, SECOND, SMALL, WAN,
    ZERO_MAC, Net, arp, drop_delta, eth, expect_arp,
)

ON_PORT = {LAN: H1, WAN: H2, SMALL: H4, JUMBO: H5}
OTHER_MAC = bytes.fromhex("02ee00000001")


@pytest.mark.parametrize("ifindex", [LAN, WAN, SMALL, JUMBO])
@pytest.mark.parametrize("owner,target", ALL_ROUTER_IPS)
def test_request_for_each_router_address_is_answered(ifindex: int, owner: int,
                                                      target: str) -> None:
    """arp_ignore=0: any local address is answered on any port, from that port's MAC,
    unicast to the requester's sender hardware address."""
    net = Net()
    host = ON_PORT[ifindex]
    tx = net.send(ifindex, arp(1, host.mac, host.ip, ZERO_MAC, target, pad=True))
    assert len(tx) == 1
    expect_arp(tx[0], op=2, ifindex=ifindex, eth_dst=host.mac, eth_src=R_MAC[ifindex],
               sha=R_MAC[ifindex], spa=target, tha=host.mac, tpa=host.ip)
    # neigh_event_ns(): the requester is learned STALE with its address.
    e = net.neigh(host)
    assert e is not None and e.state.value == "STALE" and e.lladdr == host.mac
    assert net.snmp("ArpInRequests") == 1 and net.snmp("ArpOutReplies") == 1
    assert net.drops() == {}


def test_reply_goes_to_sender_hardware_address_not_ethernet_source() -> None:
    """arp_send_dst(..., dest_hw=sha, ...): the Ethernet destination is the ARP sha."""
    net = Net()
    frame = arp(1, H1.mac, H1.ip, ZERO_MAC, R_IP[LAN], eth_dst=R_MAC[LAN], eth_src=OTHER_MAC)
    tx = net.send(LAN, frame)
    assert len(tx) == 1
    expect_arp(tx[0], op=2, eth_dst=H1.mac, tha=H1.mac, tpa=H1.ip, spa=R_IP[LAN])


def test_request_for_foreign_address_is_ignored() -> None:
    net = Net()
    tx = net.send(LAN, arp(1, H1.mac, H1.ip, ZERO_MAC, "10.0.1.99"))
    assert tx == []
    assert net.router.neigh4.entries == {}                    # arp_accept=0: nothing learned
    assert net.drops() == {"arp_not_for_us": 1}


def test_request_for_foreign_address_refreshes_a_known_sender() -> None:
    """Any ARP from a known neighbour updates it (STALE hint), even if not for us."""
    net = Net()
    net.learn(H1)
    new_mac = bytes.fromhex("021000000099")
    tx = net.send(LAN, arp(1, new_mac, H1.ip, ZERO_MAC, "10.0.1.99"), at=2 * SECOND)
    assert tx == []
    e = net.neigh(H1)
    assert e.lladdr == new_mac and e.state.value == "STALE"   # after locktime: override


def test_dad_probe_is_answered_with_target_ip_zero_and_nothing_learned() -> None:
    """RFC 5227 probe (sender IP 0.0.0.0): arp_process() answers with tip = 0."""
    net = Net()
    tx = net.send(LAN, arp(1, H1.mac, "0.0.0.0", ZERO_MAC, R_IP[LAN]))
    assert len(tx) == 1
    expect_arp(tx[0], op=2, ifindex=LAN, eth_dst=H1.mac, eth_src=R_MAC[LAN], sha=R_MAC[LAN],
               spa=R_IP[LAN], tha=H1.mac, tpa="0.0.0.0")
    assert net.router.neigh4.entries == {}


def test_dad_probe_for_foreign_address_is_silent() -> None:
    net = Net()
    assert net.send(LAN, arp(1, H1.mac, "0.0.0.0", ZERO_MAC, "10.0.1.77")) == []
    assert net.router.neigh4.entries == {}


def test_frame_to_another_mac_is_dropped_as_otherhost() -> None:
    net = Net()
    port = net.router.ports[LAN]
    frame = arp(1, H1.mac, H1.ip, ZERO_MAC, R_IP[LAN], eth_dst=OTHER_MAC)
    assert net.send(LAN, frame) == []
    assert net.drops() == {"otherhost": 1}
    assert port.rx_dropped == 1 and port.rx_packets == 1
    assert net.router.neigh4.entries == {}
    assert net.snmp("ArpInRequests") == 0


def _good() -> bytes:
    return arp(1, H1.mac, H1.ip, ZERO_MAC, R_IP[LAN])


def _patch(off: int, value: bytes) -> bytes:
    b = bytearray(_good())
    b[14 + off:14 + off + len(value)] = value
    return bytes(b)


MALFORMED = {
    "truncated": arp(1, H1.mac, H1.ip, ZERO_MAC, R_IP[LAN], pad=False)[:14 + 27],
    "htype-7": _patch(0, b"\x00\x07"),
    "htype-zero": _patch(0, b"\x00\x00"),
    "ptype-ipv6": _patch(2, b"\x86\xdd"),
    "hlen-8": _patch(4, b"\x08"),
    "hlen-0": _patch(4, b"\x00"),
    "plen-16": _patch(5, b"\x10"),
    "op-rarp": _patch(6, b"\x00\x03"),
    "op-zero": _patch(6, b"\x00\x00"),
    "op-inarp": _patch(6, b"\x00\x08"),
}
INVALID_ADDR = {
    "target-multicast": arp(1, H1.mac, H1.ip, ZERO_MAC, "224.0.0.1"),
    "target-loopback": arp(1, H1.mac, H1.ip, ZERO_MAC, "127.0.0.1"),
    "target-class-d-top": arp(1, H1.mac, H1.ip, ZERO_MAC, "239.255.255.255"),
    "sha-multicast": arp(1, bytes.fromhex("01005e000001"), H1.ip, ZERO_MAC, R_IP[LAN],
                         eth_src=H1.mac),
    "sha-broadcast": arp(1, BCAST_MAC, H1.ip, ZERO_MAC, R_IP[LAN], eth_src=H1.mac),
}
MARTIAN_SENDER = {
    "sender-loopback": arp(1, H1.mac, "127.0.0.1", ZERO_MAC, R_IP[LAN]),
    "sender-multicast": arp(1, H1.mac, "224.0.0.5", ZERO_MAC, R_IP[LAN]),
    "sender-limited-broadcast": arp(1, H1.mac, "255.255.255.255", ZERO_MAC, R_IP[LAN]),
    "sender-zeronet": arp(1, H1.mac, "0.1.2.3", ZERO_MAC, R_IP[LAN]),
    "reply-from-loopback": arp(2, H1.mac, "127.0.0.1", R_MAC[LAN], R_IP[LAN],
                               eth_dst=R_MAC[LAN]),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_arp_is_counted_and_ignored(name: str) -> None:
    """arp_rcv()/arp_process(): short, wrong lengths/types, unknown opcode."""
    net = Net()
    assert net.send(LAN, MALFORMED[name]) == []
    assert net.drops() == {"arp_malformed": 1}
    assert net.router.neigh4.entries == {}
    assert net.router.ports[LAN].rx_dropped == 1
    assert net.snmp("ArpInRequests") == 0


@pytest.mark.parametrize("name", sorted(INVALID_ADDR))
def test_arp_with_an_invalid_address_is_counted_and_ignored(name: str) -> None:
    """A multicast/loopback target (arp_process) or a multicast sender MAC."""
    net = Net()
    assert net.send(LAN, INVALID_ADDR[name]) == []
    assert net.drops() == {"arp_invalid_addr": 1}
    assert net.router.neigh4.entries == {}


@pytest.mark.parametrize("name", sorted(MARTIAN_SENDER))
def test_request_from_a_martian_sender_is_not_answered(name: str) -> None:
    """ip_route_input() fails on a martian source: no reply, nothing learned."""
    net = Net()
    assert net.send(LAN, MARTIAN_SENDER[name]) == []
    assert net.drops() == {"martian_src": 1}
    assert net.router.neigh4.entries == {}


def test_ieee802_hardware_type_is_accepted_on_ethernet() -> None:
    """arp_process() accepts ar_hrd 6 (IEEE 802) on an Ethernet device; the reply
    carries the device's own type (1)."""
    net = Net()
    tx = net.send(LAN, _patch(0, b"\x00\x06"))
    assert len(tx) == 1
    expect_arp(tx[0], op=2, eth_dst=H1.mac, spa=R_IP[LAN], tpa=H1.ip)
    assert net.neigh_state(H1) == "STALE"


def test_reply_for_a_foreign_target_still_updates_a_known_sender() -> None:
    net = Net()
    net.learn(H1)
    tx = net.send(LAN, arp(2, H1.mac, H1.ip, R_MAC[LAN], "10.0.1.99", eth_dst=R_MAC[LAN]))
    assert tx == [] and net.neigh_state(H1) == "REACHABLE"


def test_request_failing_strict_rp_filter_is_not_answered() -> None:
    """ip_route_input() runs fib_validate_source(): with rp_filter=1 a sender whose
    reverse route leaves by another port gets no reply."""
    from .helpers import TOPOLOGY
    net = Net(config=TOPOLOGY + "ipv4: {rp_filter: 1}\n")
    assert net.send(LAN, arp(1, H1.mac, "10.0.2.77", ZERO_MAC, R_IP[LAN])) == []
    assert net.drops() == {"rp_filter": 1}
    assert net.router.neigh4.entries == {}
    tx = net.send(LAN, arp(1, H1.mac, H1.ip, ZERO_MAC, R_IP[LAN]))
    assert len(tx) == 1                                  # the on-link sender is fine


def test_unsolicited_reply_creates_nothing() -> None:
    """arp_accept=0: a reply from a host we never asked about is not learned."""
    net = Net()
    tx = net.send(LAN, arp(2, H1.mac, H1.ip, R_MAC[LAN], R_IP[LAN], eth_dst=R_MAC[LAN]))
    assert tx == []
    assert net.router.neigh4.entries == {}
    assert net.snmp("ArpInReplies") == 1


def test_unicast_reply_confirms_broadcast_reply_only_hints() -> None:
    """'Broadcast replies and request packets do not assert neighbour reachability.'"""
    net = Net()
    net.learn(H1)
    net.learn(H1B)
    net.send(LAN, arp(2, H1.mac, H1.ip, R_MAC[LAN], R_IP[LAN], eth_dst=R_MAC[LAN]))
    net.send(LAN, arp(2, H1B.mac, H1B.ip, R_MAC[LAN], R_IP[LAN], eth_dst=BCAST_MAC))
    assert net.neigh_state(H1) == "REACHABLE"
    assert net.neigh_state(H1B) == "STALE"


def test_different_lladdr_within_locktime_is_ignored_then_accepted() -> None:
    """neigh_update without override inside locktime (1 s) keeps the first answer."""
    net = Net()
    net.learn(H1)                                            # updated at t=0
    other = bytes.fromhex("021000000077")
    reply = arp(2, other, H1.ip, R_MAC[LAN], R_IP[LAN], eth_dst=R_MAC[LAN], eth_src=other)
    net.send(LAN, reply, at=SECOND // 2)
    assert net.neigh(H1).lladdr == H1.mac
    net.send(LAN, reply, at=2 * SECOND)
    assert net.neigh(H1).lladdr == other
    assert net.neigh_state(H1) == "REACHABLE"


def test_gratuitous_arp_overrides_within_locktime() -> None:
    net = Net()
    net.learn(H1)
    other = bytes.fromhex("021000000078")
    garp = arp(1, other, H1.ip, ZERO_MAC, H1.ip, eth_src=other)
    assert net.send(LAN, garp, at=SECOND // 10) == []
    assert net.neigh(H1).lladdr == other
    assert net.neigh_state(H1) == "STALE"


def test_arp_counts_on_the_port() -> None:
    net = Net()
    frame = arp(1, H1.mac, H1.ip, ZERO_MAC, R_IP[LAN])
    tx = net.send(LAN, frame)
    p = net.router.ports[LAN]
    assert (p.rx_packets, p.rx_bytes) == (1, len(frame))
    assert (p.tx_packets, p.tx_bytes) == (1, len(tx[0][1]))


def test_arp_on_a_port_that_is_down_is_dropped() -> None:
    net = Net()
    net.router.set_link(LAN, False, 0)
    assert net.send(LAN, arp(1, H1.mac, H1.ip, ZERO_MAC, R_IP[LAN])) == []
    assert net.drops() == {"port_down": 1}


def test_non_arp_non_ip_ethertype_is_counted() -> None:
    net = Net()
    before = net.drops()
    assert net.send(LAN, eth(R_MAC[LAN], H1.mac, 0x88CC, b"\x00" * 46)) == []   # LLDP
    assert drop_delta(before, net.drops()) == {"unhandled_ethertype": 1}


def test_request_claiming_a_router_address_is_not_answered() -> None:
    """An address-conflict announcement (sender IP = our IP) from another box."""
    net = Net()
    intruder = bytes.fromhex("02dead000001")
    tx = net.send(LAN, arp(1, intruder, R_IP[LAN], ZERO_MAC, R_IP[LAN], eth_src=intruder))
    assert tx == []
    assert net.router.neigh4.entries == {}
