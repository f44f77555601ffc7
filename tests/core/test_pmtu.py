"""Path MTU learning into nexthop exceptions (route/exceptions.py, ip/pmtu.py): from a
Frag Needed about the router's own packet, lowered never raised, clamped and locked
below min_pmtu, refused on a locked route, expiring after mtu_expires, used by the
router's own traffic always and by forwarded traffic only with ip_forward_use_pmtu."""

from __future__ import annotations

from pyrouter.core.introspect import route_get
from pyrouter.core.ip.sock import send_echo

from .helpers import (
    GW,
    H1,
    H2,
    LAN,
    R_IP,
    SECOND,
    TOPOLOGY,
    WAN,
    Net,
    frame_from,
    icmp,
    ip2int,
    ipv4,
    parse_ipv4,
    udp,
)

FAR = "10.9.1.1"               # behind GW (10.9.0.0/16 via 10.0.2.254 on wan0)


def net(extra: str = "") -> Net:
    n = Net(TOPOLOGY + extra)
    for h in (H1, H2, GW):
        n.reachable(h)
    return n


def frag_needed_from_gw(n: Net, mtu: int, quoted_src: str = R_IP[WAN]) -> None:
    """GW tells the router (always addressed to it) about a packet from *quoted_src*."""
    quoted = ipv4(quoted_src, FAR, b"\x08\x00" + bytes(30), proto=1, df=True)[:28]
    err = ipv4(GW.ip, R_IP[WAN], icmp(3, 4, rest=mtu, data=quoted), proto=1)
    assert n.send(WAN, frame_from(GW, err)) == []


def cache(n: Net) -> dict | None:
    return route_get(n.router, ip2int(FAR), now=n.now).get("cache")


def test_learned_from_frag_needed_shown_by_route_get_and_used() -> None:
    n = net()
    frag_needed_from_gw(n, 1400)
    assert cache(n) == {"expires": 600, "mtu": 1400, "locked": False}
    assert route_get(n.router, ip2int(FAR), now=n.now)["mtu"] == 1400
    # The router's own DF-clear 1472-byte ping now leaves in fragments of at most 1400.
    send_echo(n.router, ip2int(FAR), 7, 1, n.now, size=1472)
    out = [f for _i, f in n.drain()]
    assert len(out) == 2 and all(len(f) - 14 <= 1400 for f in out)


def test_increases_are_ignored_and_low_values_clamped_and_locked() -> None:
    n = net()
    frag_needed_from_gw(n, 1400)
    frag_needed_from_gw(n, 1450)
    assert cache(n)["mtu"] == 1400
    frag_needed_from_gw(n, 300)
    assert cache(n) == {"expires": 600, "mtu": 552, "locked": True}


def test_only_about_our_own_packets() -> None:
    n = net()
    frag_needed_from_gw(n, 1400, quoted_src=H1.ip)
    assert cache(n) is None


def test_a_locked_route_mtu_never_learns() -> None:
    n = Net(TOPOLOGY.replace("  - {to: 10.9.0.0/16, via: 10.0.2.254}",
                             "  - {to: 10.9.0.0/16, via: 10.0.2.254, mtu: 1500, mtu_lock: true}"))
    for h in (H1, H2, GW):
        n.reachable(h)
    frag_needed_from_gw(n, 1400)
    assert cache(n) is None


def test_expires_after_mtu_expires_and_flushed_by_fib_changes() -> None:
    n = net()
    frag_needed_from_gw(n, 1400)
    n.now += 300 * SECOND
    assert cache(n)["expires"] == 300
    n.now += 300 * SECOND
    assert cache(n) is None
    frag_needed_from_gw(n, 1400)
    from pyrouter.core.route.fib import Route

    n.router.add_route(Route(4, ip2int("10.77.0.0"), 16, oif=WAN, gateway=ip2int(GW.ip)))
    assert cache(n) is None


def test_forwarded_traffic_uses_it_only_with_ip_forward_use_pmtu() -> None:
    big = frame_from(H1, ipv4(H1.ip, FAR, udp(H1.ip, FAR, data=b"x" * 1450), df=True))
    n = net()
    frag_needed_from_gw(n, 1400)
    tx = n.send(LAN, big)
    assert len(tx) == 1 and tx[0][0] == WAN                      # forwarded as is
    n2 = net("ipv4: {ip_forward_use_pmtu: true}\n")
    frag_needed_from_gw(n2, 1400)
    tx = n2.send(LAN, big)
    assert len(tx) == 1 and tx[0][0] == LAN
    err = parse_ipv4(tx[0][1][14:])
    assert err.payload[0:2] == bytes([3, 4])
    assert int.from_bytes(err.payload[6:8], "big") == 1400
