"""Multipath routes (Fib.select_path): flows spread over the live paths in proportion to
their weights, a flow keeps its path, L3 vs L4 hashing, dead paths skipped."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from pyrouter.control.build import build
from pyrouter.control.load import ConfigError, parse
from pyrouter.core.introspect import routes

from .helpers import GW, H1, H4, LAN, SMALL, TOPOLOGY, WAN, Host, Net, frame_from, ipv4, udp

MP = ("  - to: 10.99.0.0/16\n    nexthops: [{via: 10.0.2.254, weight: %d}, "
      "{via: 10.0.4.40, weight: %d}]\n")


def net(w1: int = 1, w2: int = 1, extra: str = "") -> Net:
    n = Net(TOPOLOGY + MP % (w1, w2) + extra)
    for h in (H1, GW, H4):
        n.reachable(h)
    return n


def egress(n: Net, src: str, dst: str, sport: int = 40000) -> int:
    host = Host(src, H1.mac, LAN)
    tx = n.send(LAN, frame_from(host, ipv4(src, dst, udp(src, dst, sport=sport))))
    ports = {i for i, f in tx if f[12:14] == b"\x08\x00"}
    assert len(ports) == 1, tx
    return ports.pop()


def flows(k: int, seed: int = 7) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    return [(f"10.0.1.{rng.randrange(2, 250)}", f"10.99.{rng.randrange(256)}.{rng.randrange(256)}")
            for _ in range(k)]


def test_flows_spread_and_stick() -> None:
    n = net()
    fl = flows(300)
    first = [egress(n, s, d) for s, d in fl]
    c = Counter(first)
    assert set(c) == {WAN, SMALL} and min(c.values()) > 300 * 0.35, c
    assert [egress(n, s, d) for s, d in fl] == first           # every flow kept its path
    assert n.router.fast_forwarded == 0                         # never from the dst-only cache


def test_weights() -> None:
    n = net(3, 1)
    c = Counter(egress(n, s, d) for s, d in flows(800))
    assert 0.68 < c[WAN] / 800 < 0.82, c


@pytest.mark.parametrize("policy, spread", [(0, False), (1, True)])
def test_hash_policy(policy: int, spread: bool) -> None:
    n = net(extra=f"ipv4: {{fib_multipath_hash_policy: {policy}}}\n")
    used = {egress(n, H1.ip, "10.99.1.1", sport=1000 + i) for i in range(64)}
    assert (len(used) == 2) == spread


def test_linkdown_paths_stay_in_use_by_default() -> None:
    n = net()
    fl = flows(60)
    before = [egress_or_none(n, s, d) for s, d in fl]
    n.router.set_link(SMALL, False, n.now)
    # Flows hashed to the dead link are not moved (they wait on resolution there).
    after = [egress_or_none(n, s, d) for s, d in fl]
    assert [a for a in after if a is not None] and SMALL not in after
    assert all(b == a for b, a in zip(before, after, strict=True) if a is not None)


def egress_or_none(n: Net, src: str, dst: str) -> int | None:
    host = Host(src, H1.mac, LAN)
    tx = n.send(LAN, frame_from(host, ipv4(src, dst, udp(src, dst))))
    ports = {i for i, f in tx if f[12:14] == b"\x08\x00"}
    return ports.pop() if ports else None


def test_dead_path_is_skipped_and_comes_back() -> None:
    n = net(extra="ipv4: {ignore_routes_with_linkdown: true}\n")
    fl = flows(100)
    before = [egress(n, s, d) for s, d in fl]
    n.router.set_link(SMALL, False, n.now)
    assert {egress(n, s, d) for s, d in fl} == {WAN}
    n.router.set_link(SMALL, True, n.now)
    n.reachable(H4)
    assert [egress(n, s, d) for s, d in fl] == before


def test_show_route_lists_the_nexthops() -> None:
    n = net(2, 1)
    mp = next(r for r in routes(n.router) if r["dst"] == "10.99.0.0/16")
    assert mp["nexthops"] == [
        {"gateway": "10.0.2.254", "dev": "wan0", "weight": 2, "dead": False},
        {"gateway": "10.0.4.40", "dev": "small0", "weight": 1, "dead": False}]


@pytest.mark.parametrize("route, path", [
    ("{to: 10.99.0.0/16, via: 10.0.2.254, nexthops: [{via: 10.0.4.40}]}", "routes[0].nexthops"),
    ("{to: 10.99.0.0/16, nexthops: [{via: 10.7.7.7}]}", "routes[0].nexthops[0].via"),
    ("{to: 10.99.0.0/16, nexthops: [{dev: nope}]}", "routes[0].nexthops[0].dev"),
    ("{to: 10.99.0.0/16, nexthops: [{via: 10.0.2.254, weight: 0}]}",
     "routes[0].nexthops[0].weight"),
])
def test_bad_multipath_routes(route: str, path: str) -> None:
    text = TOPOLOGY.split("routes:")[0] + "routes:\n  - " + route + "\n"
    with pytest.raises(ConfigError) as e:
        build(parse(text), random.Random(1))
    assert e.value.path == path
