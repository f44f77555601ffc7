"""The router's own probes (core/ip/sock.py): send_echo / send_udp_probe through the
local-output path, and the Echo Replies and ICMP errors that come back as ``sock.icmp``."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from pyrouter.core.ip.sock import send_echo, send_udp_probe

from .helpers import (
    BCAST_MAC, GW, H1, H2, H4, LAN, R_IP, R_MAC, SECOND, SMALL, WAN, ZERO_MAC, Net, checksum,
    echo,
    expect_arp, expect_ipv4, frame_from, icmp, ip2int, ipv4, ones_sum, parse_ipv4, tcp, udp,
)

NOW = 7 * SECOND + 123456


def sock_events(n: Net) -> list[dict[str, Any]]:
    return [ev.fields for ev in n.events if ev.name == "sock.icmp"]


def world() -> Net:
    n = Net()
    n.reachable(H1)
    n.reachable(H2)
    n.reachable(GW)
    n.reachable(H4)
    n.now = NOW
    return n


def sent_one(n: Net) -> tuple[int, bytes]:
    tx = n.drain()
    assert len(tx) == 1, tx
    return tx[0]


# --------------------------------------------------------------------------
# What goes out
# --------------------------------------------------------------------------

def test_send_echo_defaults() -> None:
    n = world()
    assert send_echo(n.router, ip2int(H2.ip), 0xBEEF, 3, n.now)
    item = sent_one(n)
    ip = expect_ipv4(item, src=R_IP[WAN], dst=H2.ip, ttl=64, proto=1, df=False, tos=0,
                     total_len=20 + 8 + 56, ifindex=WAN, eth_dst=H2.mac, eth_src=R_MAC[WAN])
    t, c, _, ident, seq = struct.unpack_from("!BBHHH", ip.payload)
    assert (t, c, ident, seq) == (8, 0, 0xBEEF, 3)
    assert ones_sum(ip.payload) == 0xFFFF
    data = ip.payload[8:]
    assert int.from_bytes(data[:8], "big") == NOW        # ping's timestamp
    assert data[8:] == bytes((i + 8) & 0xFF for i in range(48))
    assert n.router.counters.snmp["IpOutRequests"] == 1


@pytest.mark.parametrize("size,ttl,df,tos", [(0, 1, True, 0), (5, 2, False, 0x10),
                                             (1472, 255, True, 0xB8)])
def test_send_echo_ttl_df_size_tos(size: int, ttl: int, df: bool, tos: int) -> None:
    n = world()
    assert send_echo(n.router, ip2int("10.9.1.1"), 1, 1, n.now, size=size, ttl=ttl, df=df,
                     tos=tos)
    ip = expect_ipv4(sent_one(n), src=R_IP[WAN], dst="10.9.1.1", ttl=ttl, df=df, tos=tos,
                     total_len=28 + size, ifindex=WAN, eth_dst=GW.mac)
    assert ones_sum(ip.payload) == 0xFFFF
    assert ip.payload[8:] == NOW.to_bytes(8, "big")[:size] + bytes(
        (i + 8) & 0xFF for i in range(max(0, size - 8)))


def test_send_echo_source_selection() -> None:
    n = world()
    # The port's address in the next hop's subnet ...
    send_echo(n.router, ip2int("10.0.20.30"), 1, 1, n.now)
    tx = n.drain()
    expect_arp(tx[0], op=1, spa="10.0.20.1", tpa="10.0.20.30", ifindex=WAN)
    # ... or the one asked for.
    send_echo(n.router, ip2int(H2.ip), 1, 2, n.now, src=ip2int(R_IP[LAN]))
    expect_ipv4(sent_one(n), src=R_IP[LAN], dst=H2.ip, ifindex=WAN)
    send_echo(n.router, ip2int(H4.ip), 1, 3, n.now)
    expect_ipv4(sent_one(n), src=R_IP[SMALL], dst=H4.ip, ifindex=SMALL, eth_dst=H4.mac)


def test_send_echo_larger_than_the_mtu() -> None:
    n = world()
    assert send_echo(n.router, ip2int(H4.ip), 1, 1, n.now, size=2000)       # small0: 1400
    tx = n.drain()
    assert len(tx) == 2
    first = expect_ipv4(tx[0], src=R_IP[SMALL], dst=H4.ip, mf=True, frag_offset=0,
                        ifindex=SMALL)
    assert first.total_len <= 1400
    expect_ipv4(tx[1], mf=False, frag_offset=first.total_len - 20, ifindex=SMALL)
    # With DF the router does not send it (ping checks the mtu itself first).
    assert send_echo(n.router, ip2int(H4.ip), 1, 2, n.now, size=2000, df=True)
    assert n.drain() == []
    assert n.drops() == {"frag_needed": 1}


def test_send_echo_without_a_route() -> None:
    n = world()
    for dst in ("8.8.8.8", "198.51.100.1", "203.0.113.1", "192.0.2.1"):
        assert not send_echo(n.router, ip2int(dst), 1, 1, n.now)
    assert n.drain() == []
    assert n.router.counters.snmp["IpOutNoRoutes"] == 4
    assert not send_udp_probe(n.router, ip2int("8.8.8.8"), 40000, 33434, n.now)


def test_send_echo_to_an_unresolved_host_waits_for_arp() -> None:
    n = world()
    send_echo(n.router, ip2int("10.0.5.50"), 9, 9, n.now, ttl=3)
    tx = n.drain()
    expect_arp(tx[0], op=1, spa="10.0.5.1", tpa="10.0.5.50", eth_dst=BCAST_MAC, tha=ZERO_MAC)
    assert len(tx) == 1


@pytest.mark.parametrize("ttl,df,size", [(1, False, 32), (7, True, 0), (64, False, 100)])
def test_send_udp_probe(ttl: int, df: bool, size: int) -> None:
    n = world()
    assert send_udp_probe(n.router, ip2int("10.9.8.7"), 44444, 33440, n.now, size=size,
                          ttl=ttl, df=df)
    ip = expect_ipv4(sent_one(n), src=R_IP[WAN], dst="10.9.8.7", ttl=ttl, df=df, proto=17,
                     total_len=28 + size, ifindex=WAN, eth_dst=GW.mac)
    assert struct.unpack_from("!HHHH", ip.payload) == (44444, 33440, 8 + size, 0)
    assert ip.payload[8:] == bytes(size)


def test_send_udp_probe_from_a_given_source() -> None:
    n = world()
    send_udp_probe(n.router, ip2int(H4.ip), 50000, 33434, n.now, src=ip2int("10.0.20.1"))
    expect_ipv4(sent_one(n), src="10.0.20.1", dst=H4.ip, proto=17, ifindex=SMALL)


# --------------------------------------------------------------------------
# What comes back
# --------------------------------------------------------------------------

def _reply_to(probe: bytes, sender: str = H2.ip, ttl: int = 61) -> bytes:
    """An Echo Reply to our probe, from *sender*."""
    p = parse_ipv4(probe)
    msg = bytearray(p.payload)
    msg[0] = 0
    msg[2:4] = b"\x00\x00"
    msg[2:4] = checksum(bytes(msg)).to_bytes(2, "big")
    return ipv4(sender, p.src, bytes(msg), proto=1, ttl=ttl)


def _error_about(probe: bytes, sender: str, type_: int, code: int, rest: int = 0,
                 dst: str | None = None) -> bytes:
    p = parse_ipv4(probe)
    return ipv4(sender, dst or p.src, icmp(type_, code, rest, probe[:28]), proto=1, ttl=250)


def _probe(n: Net, udp_probe: bool = False, **kw: Any) -> bytes:
    if udp_probe:
        send_udp_probe(n.router, ip2int(kw.pop("dst", "10.9.1.1")), kw.pop("sport", 40001),
                       kw.pop("dport", 33435), n.now, **kw)
    else:
        send_echo(n.router, ip2int(kw.pop("dst", "10.9.1.1")), kw.pop("ident", 0x4321),
                  kw.pop("seq", 5), n.now, **kw)
    _, frame = sent_one(n)
    return frame[14:]


def test_echo_reply_for_a_registered_ident() -> None:
    n = world()
    n.router.sockets["icmp"].add(0x4321)
    probe = _probe(n, dst=H2.ip, size=56)
    n.now += 1500
    assert n.send(WAN, frame_from(H2, _reply_to(probe))) == []
    [ev] = sock_events(n)
    assert ev == {"type": 0, "code": 0, "from": H2.ip, "ttl": 61, "len": 84, "now": NOW + 1500,
                  "kind": "echo_reply", "ident": 0x4321, "seq": 5, "bytes": 64, "sent": NOW}


def test_echo_reply_too_short_for_a_timestamp() -> None:
    n = world()
    n.router.sockets["icmp"].add(0x4321)
    probe = _probe(n, dst=H2.ip, size=4)
    n.send(WAN, frame_from(H2, _reply_to(probe)))
    [ev] = sock_events(n)
    assert ev["bytes"] == 12 and "sent" not in ev


def test_echo_reply_for_others_is_not_an_event() -> None:
    n = world()
    n.router.sockets["icmp"].add(0x4321)
    probe = _probe(n, dst=H2.ip, ident=0x1111)                    # not registered
    n.send(WAN, frame_from(H2, _reply_to(probe)))
    # A reply to a registered ident that only passes through the router.
    through = ipv4(H2.ip, H1.ip, echo(ident=0x4321, seq=5, reply=True), proto=1)
    tx = n.send(WAN, frame_from(H2, through))
    expect_ipv4(tx[0], dst=H1.ip, ifindex=LAN)
    # One sent to a broadcast address.
    n.send(WAN, frame_from(H2, ipv4(H2.ip, "10.0.2.255", echo(ident=0x4321, reply=True),
                                    proto=1), eth_dst=BCAST_MAC))
    assert sock_events(n) == []
    assert n.router.counters.snmp["IcmpInEchoReps"] == 2


def test_time_exceeded_about_our_echo_probe() -> None:
    n = world()
    n.router.sockets["icmp"].add(0x4321)
    probe = _probe(n, ttl=1)
    n.send(WAN, frame_from(GW, _error_about(probe, GW.ip, 11, 0)))
    [ev] = sock_events(n)
    assert ev == {"type": 11, "code": 0, "from": GW.ip, "ttl": 250, "len": 20 + 8 + 28,
                  "now": NOW, "kind": "error", "orig_dst": "10.9.1.1", "ident": 0x4321,
                  "seq": 5}


def test_port_unreachable_about_our_udp_probe() -> None:
    n = world()
    n.router.sockets["udp"].add(40001)
    probe = _probe(n, udp_probe=True, dst="10.9.1.1", ttl=9)
    n.send(WAN, frame_from(GW, _error_about(probe, "10.9.1.1", 3, 3)))
    [ev] = sock_events(n)
    assert ev["kind"] == "error" and (ev["type"], ev["code"]) == (3, 3)
    assert (ev["from"], ev["orig_dst"], ev["sport"], ev["dport"]) == (
        "10.9.1.1", "10.9.1.1", 40001, 33435)
    assert "ident" not in ev and "mtu" not in ev


def test_frag_needed_about_our_probe_carries_the_mtu() -> None:
    n = world()
    n.router.sockets["icmp"].add(0x4321)
    probe = _probe(n, size=1400, df=True)
    n.send(WAN, frame_from(GW, _error_about(probe, GW.ip, 3, 4, rest=1280)))
    [ev] = sock_events(n)
    assert (ev["type"], ev["code"], ev["mtu"], ev["ident"], ev["seq"]) == (3, 4, 1280, 0x4321, 5)


def test_other_unreachables_about_our_probe() -> None:
    n = world()
    n.router.sockets["icmp"].add(0x4321)
    probe = _probe(n)
    for code in (0, 1, 13):
        n.send(WAN, frame_from(GW, _error_about(probe, GW.ip, 3, code)))
    assert [(e["code"], e["kind"]) for e in sock_events(n)] == [(0, "error"), (1, "error"),
                                                                (13, "error")]
    assert all("mtu" not in e for e in sock_events(n))


def test_errors_not_about_our_probes_are_not_events() -> None:
    n = world()
    n.router.sockets["icmp"].add(0x4321)
    n.router.sockets["udp"].add(40001)
    echo_probe = _probe(n)
    udp_probe = _probe(n, udp_probe=True)
    # Unregistered ident / port.
    other_echo = _probe(n, ident=0x9999)
    other_udp = _probe(n, udp_probe=True, sport=40002)
    bad = [
        _error_about(other_echo, GW.ip, 11, 0),
        _error_about(other_udp, GW.ip, 3, 3),
        # The quoted packet is not from one of our addresses.
        _error_about(ipv4(H1.ip, "10.9.1.1", echo(ident=0x4321), proto=1), GW.ip, 11, 0,
                     dst=R_IP[WAN]),
        # A TCP segment of ours (a RST) quoted: no probe owns it.
        _error_about(ipv4(R_IP[WAN], "10.9.1.1", tcp(R_IP[WAN], "10.9.1.1", sport=40001),
                          proto=6), GW.ip, 3, 3),
        # Quote too short for the transport header.
        ipv4(GW.ip, R_IP[WAN], icmp(11, 0, 0, echo_probe[:24]), proto=1),
        # Quoted header that is not IPv4.
        ipv4(GW.ip, R_IP[WAN], icmp(11, 0, 0, b"\x60" + udp_probe[1:28]), proto=1),
    ]
    for l3 in bad:
        assert n.send(WAN, frame_from(GW, l3)) == []
    # Not an error type: a timestamp request quoting our probe is not matched (it only
    # gets its timestamp reply, as from the kernel).
    ts = n.send(WAN, frame_from(GW, ipv4(GW.ip, R_IP[WAN], icmp(13, 0, 0, echo_probe[:28]),
                                         proto=1)))
    assert len(ts) == 1 and ts[0][1][14 + 20] == 14
    assert sock_events(n) == []
    # The registered ones still match afterwards.
    n.send(WAN, frame_from(GW, _error_about(echo_probe, GW.ip, 11, 0)))
    n.send(WAN, frame_from(GW, _error_about(udp_probe, GW.ip, 11, 0)))
    assert [("ident" in e, "sport" in e) for e in sock_events(n)] == [(True, False),
                                                                    (False, True)]


def test_an_error_passing_through_is_not_an_event() -> None:
    n = world()
    n.router.sockets["icmp"].add(0x4321)
    probe = _probe(n)
    err = _error_about(probe, GW.ip, 11, 0, dst=H1.ip)          # addressed to H1, not us
    tx = n.send(WAN, frame_from(GW, err))
    expect_ipv4(tx[0], dst=H1.ip, ifindex=LAN)
    assert sock_events(n) == []


# --------------------------------------------------------------------------
# To the router's own addresses: looped back, nothing on the wire
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dst,src", [(R_IP[LAN], None), ("10.0.20.1", None),
                                     (R_IP[WAN], R_IP[LAN])])
def test_ping_to_a_router_address_is_looped_back(dst: str, src: str | None) -> None:
    n = world()
    before = {p.name: p.counters() for p in n.router.ports.values()}
    n.router.sockets["icmp"].add(77)
    assert send_echo(n.router, ip2int(dst), 77, 1, n.now, size=56, ttl=1,
                     src=ip2int(src) if src else None)
    assert n.drain() == []
    [ev] = sock_events(n)
    assert ev == {"type": 0, "code": 0, "from": dst, "ttl": 64, "len": 84, "now": NOW,
                  "kind": "echo_reply", "ident": 77, "seq": 1, "bytes": 64, "sent": NOW}
    snmp = n.router.counters.snmp
    assert (snmp["IcmpInEchos"], snmp["IcmpOutEchoReps"], snmp["IcmpInEchoReps"]) == (1, 1, 1)
    assert {p.name: p.counters() for p in n.router.ports.values()} == before
    assert n.drops() == {}


def test_ping_to_a_router_address_unregistered_is_silent() -> None:
    n = world()
    assert send_echo(n.router, ip2int(R_IP[LAN]), 78, 1, n.now)
    assert n.drain() == [] and sock_events(n) == []


def test_udp_probe_to_a_router_address_gets_port_unreachable() -> None:
    n = world()
    n.router.sockets["udp"].add(40001)
    assert send_udp_probe(n.router, ip2int(R_IP[LAN]), 40001, 33434, n.now, ttl=1)
    assert n.drain() == []
    [ev] = sock_events(n)
    assert (ev["type"], ev["code"], ev["sport"]) == (3, 3, 40001)


def test_udp_to_the_router_from_a_host_gets_port_unreachable() -> None:
    """The same probe from outside is answered (contrast with the xfail above)."""
    n = world()
    l3 = ipv4(H1.ip, R_IP[LAN], udp(H1.ip, R_IP[LAN], sport=40001), proto=17)
    tx = n.send(LAN, frame_from(H1, l3))
    assert parse_ipv4(tx[0][1][14:]).payload[:2] == b"\x03\x03"
