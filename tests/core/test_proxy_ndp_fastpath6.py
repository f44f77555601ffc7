"""proxy_ndp (the kernel's pneigh entries) and the IPv6 fast path's equivalence with the
slow path (core/router.py receive, core/ip6/forward.py cache fill)."""

from __future__ import annotations

import struct

from pyrouter.core import SECOND

from .helpers6 import (CONFIG6, csum6, H1, H2, LAN, R_MAC, WAN, Net6, expect_ip6, frame6, icmp6_of,
                       na_pkt, nd_options, ns_pkt, parse_ip6, solicited, udp6_pkt)

PROXIED = "2001:db8:1::99"
CONFIG_PROXY = CONFIG6.replace('''    macaddress: "02:00:00:00:01:01"
''', f'''    macaddress: "02:00:00:00:01:01"
    proxy_ndp: ["{PROXIED}"]
''', 1)


def test_proxy_ndp_answers_multicast_ns_after_a_delay() -> None:
    net = Net6(CONFIG_PROXY)
    net.ready()
    out = net.send(LAN, frame6(H1, ns_pkt(H1.ip, solicited(PROXIED), PROXIED, H1.mac)))
    assert icmp6_of(out, 136) == []                  # pneigh_enqueue(): not at once
    later = net.run_until(net.now + SECOND)
    nas = icmp6_of(later, 136)
    assert len(nas) == 1
    na = parse_ip6(nas[0][1:])
    assert na.dst == H1.ip and na.hlim == 255 and na.eth_dst == H1.mac
    flags = na.payload[4]
    assert flags == 0x40                             # S=1, R=0, O=0 (RFC 4861 7.2.8)
    assert nd_options(na.payload[24:]).get(2) == [bytes([2, 1]) + R_MAC[LAN]]


def test_proxy_ndp_unicast_ns_answered_at_once_and_others_not() -> None:
    net = Net6(CONFIG_PROXY)
    net.ready()
    nas = icmp6_of(net.send(LAN, frame6(H1, ns_pkt(H1.ip, PROXIED, PROXIED, H1.mac))), 136)
    assert len(nas) == 1 and parse_ip6(nas[0]).payload[4] == 0x40
    other = "2001:db8:1::98"
    assert icmp6_of(net.send(LAN, frame6(H1, ns_pkt(H1.ip, solicited(other), other, H1.mac))),
                    136) == []
    net.run_until(net.now + SECOND)
    assert net.drops().get("mcast6_not_joined", 0) >= 1


def _resolve_h2(net: Net6) -> None:
    out = net.send(LAN, frame6(H1, udp6_pkt(H1.ip, H2.ip)))
    assert len(icmp6_of(out, 135)) == 1
    out = net.send(WAN, frame6(H2, na_pkt(H2.ip, "2001:db8:2::1", H2.ip, s=True, o=True,
                                          tll=H2.mac)))
    assert len(out) == 1


def test_fast_path_gives_the_slow_paths_bytes() -> None:
    slow, fast = Net6(), Net6()
    for n in (slow, fast):
        n.ready()
        _resolve_h2(n)
    pkt = udp6_pkt(H1.ip, H2.ip, data=b"y" * 100)
    for _ in range(3):
        f = frame6(H1, pkt)
        slow.router.fwd_cache.clear()                 # always the slow path
        a = slow.send(LAN, f)
        b = fast.send(LAN, f)
        assert [x[-1] for x in a] == [x[-1] for x in b] and len(a) == 1
        expect_ip6(a[0], src=H1.ip, dst=H2.ip, hlim=63, eth_dst=H2.mac, ifindex=WAN)
    assert fast.router.fast_forwarded6 == 2 and slow.router.fast_forwarded6 == 0
    snap = fast.router.snapshot()["snmp"]
    assert snap["Ip6OutForwDatagrams"] == 4           # the resolving packet + 3


def test_fast_path_leaves_doubtful_packets_to_the_slow_path() -> None:
    net = Net6()
    net.ready()
    _resolve_h2(net)
    base = bytearray(frame6(H1, udp6_pkt(H1.ip, H2.ip)))
    assert len(net.send(LAN, bytes(base))) == 1 and net.router.fwd_cache
    before = net.router.fast_forwarded6
    hl1 = bytearray(base)
    hl1[21] = 1                                       # hop limit 1: Time Exceeded
    net.send(LAN, bytes(hl1))
    assert net.drops().get("ttl_exceeded") == 1       # (its Time Exceeded waits on NS for H1)
    short = bytearray(base)
    struct.pack_into("!H", short, 18, 2000)           # payload length past the frame
    assert net.send(LAN, bytes(short)) == []
    assert net.drops().get("ip6_truncated") == 1
    assert net.router.fast_forwarded6 == before


def test_route_get6_shows_route_source_mtu_and_neighbour() -> None:
    from pyrouter.cli import fmt
    from pyrouter.core import introspect
    from ipaddress import IPv6Address

    net = Net6()
    net.ready()
    _resolve_h2(net)
    r = net.router
    d = introspect.route_get6(r, int(IPv6Address(H2.ip)))
    assert (d["dev"], d["prefsrc"], d["mtu"], d["neigh"]["state"]) == (
        "wan0", "2001:db8:2::1", 1500, "REACHABLE")
    assert fmt.route_get(d).startswith("2001:db8:2::20 dev wan0 src 2001:db8:2::1")
    g = introspect.route_get6(r, int(IPv6Address("2001:db8:77::1")))
    assert (g["gateway"], g["mtu"], g["neigh"]["state"]) == ("2001:db8:2::fe", 1280, "NONE")
    assert introspect.route_get6(r, int(IPv6Address("2001:db8:dead::1")))["error"] == \
        "Network is unreachable"
    assert introspect.route_get6(r, int(IPv6Address("2001:db8:1::1")))["type"] == "local"


def test_reload_keeps_dad_outcome_and_runs_dad_for_new_addresses() -> None:
    from pyrouter.control.build import build, plan_ports
    from pyrouter.control.load import parse
    from pyrouter.core.ip6.addrconf import PERMANENT, TENTATIVE
    import random
    from ipaddress import IPv6Address

    net = Net6()
    net.ready()
    r = net.router
    new_text = CONFIG6.replace("addresses: [10.0.2.1/24, 2001:db8:2::1/64]",
                               "addresses: [10.0.2.1/24, 2001:db8:2::1/64, 2001:db8:22::1/64]")
    new_text = new_text.replace("    ra:\n      max_rtr_adv_interval: 30",
                                "    ra:\n      max_rtr_adv_interval: 20")
    cfg = parse(new_text)
    idx = {p.name: p.ifindex for p in r.ports.values()}
    new = build(cfg, random.Random(2), net.now, "<reload>", idx)
    assert plan_ports(cfg, idx)
    r.adopt(new)
    wan = r.in6[WAN]
    old_addr = wan.find(int(IPv6Address("2001:db8:2::1")))
    added = wan.find(int(IPv6Address("2001:db8:22::1")))
    assert old_addr is not None and old_addr.state == PERMANENT
    assert added is not None and added.state == TENTATIVE
    assert int(IPv6Address("2001:db8:22::1")) not in r.local6
    out = net.run_until(net.now + 3 * SECOND)
    assert added.state == PERMANENT and int(IPv6Address("2001:db8:22::1")) in r.local6
    dad = [o for o in icmp6_of(out, 135) if parse_ip6(o[1:]).src == "::"]
    assert len(dad) == 1                             # only the new address probed
    assert r.sysctl6.ra[LAN].max_rtr_adv_interval == 20 and LAN in r.ra_state


def test_random_ipv6_packets_never_raise() -> None:
    """Bad input is normal input: random IPv6 headers, extension-header chains and ICMPv6/ND
    bodies go through receive() and tick() without an exception; every frame that is not
    answered or forwarded is counted under a drop reason or delivered."""
    import random as _random

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    net = Net6()
    net.ready()
    r = net.router
    nexthdrs = st.sampled_from([0, 6, 17, 43, 44, 58, 59, 60, 50, 51, 135, 253])
    dsts = st.sampled_from(["2001:db8:1::1", "2001:db8:2::20", "ff02::1", "ff02::1:ff00:1",
                            "fe80::ff:fe00:101", "2001:db8:dead::1", "::1", "ff01::1"])

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
    @given(nh=nexthdrs, dst=dsts, hlim=st.integers(0, 255), body=st.binary(max_size=120),
           plen_delta=st.integers(-8, 8), seed=st.integers(0, 2**16))
    def run(nh: int, dst: str, hlim: int, body: bytes, plen_delta: int, seed: int) -> None:
        rnd = _random.Random(seed)
        chain = bytes(rnd.randrange(256) for _ in range(rnd.choice((0, 8, 16))))
        if nh == 58 and len(body) >= 4:
            # A valid checksum, so ICMPv6 and NDISC parsing is reached, not just the check.
            b = bytearray(body)
            b[0] = rnd.choice((1, 2, 3, 4, 128, 129, 133, 134, 135, 136, 137, 143, 200))
            b[2:4] = b"\0\0"
            b[2:4] = struct.pack("!H", csum6(H1.ip, dst, 58, bytes(b)))
            body, chain = bytes(b), b""
        payload = chain + body
        hdr = struct.pack("!IHBB", 6 << 28, max(0, len(payload) + plen_delta) & 0xFFFF, nh, hlim)
        from ipaddress import IPv6Address
        l3 = hdr + IPv6Address(H1.ip).packed + IPv6Address(dst).packed + payload
        r.receive(LAN, frame6(H1, l3, eth_dst=R_MAC[LAN] if rnd.random() < 0.7 else None),
                  net.now)
        net.now += rnd.randrange(0, 2 * SECOND)
        r.tick(net.now)
        r.drain()

    run()
    assert sum(r.counters.drops.values()) > 0 and r.counters.snmp["Icmp6InMsgs"] > 0


def test_packet_too_big_about_our_reply_lowers_the_path_mtu() -> None:
    """RFC 8201: a Packet Too Big quoting our echo reply makes the next reply to that
    destination fragment at the learned MTU (never below 1280); one not from us is ignored."""
    from .helpers6 import echo6, icmp6_pkt

    net = Net6()
    net.ready()
    net.learn6(H2)
    req = echo6(H2.ip, "2001:db8:2::1", data=b"z" * 1350)
    out = net.send(WAN, frame6(H2, req))
    assert len(out) == 1 and len(out[0][1]) - 14 == len(req)     # 1398 bytes fit 1500
    reply = out[0][1][14:]
    spoof = bytearray(reply)
    spoof[8:24] = bytes(15) + b"\x09"                           # quotes a packet not ours
    for quoted, ok in ((bytes(spoof), False), (reply, True)):
        ptb = icmp6_pkt("2001:db8:2::fe", "2001:db8:2::1", 2, 0,
                        (1300).to_bytes(4, "big") + quoted[:1232])
        net.send(WAN, frame6(H2, ptb))
        out = net.send(WAN, frame6(H2, req))
        sizes = [len(f) - 14 for _, f in out]
        if ok:
            assert len(sizes) == 2 and max(sizes) <= 1300, sizes
        else:
            assert sizes == [len(req)], sizes
