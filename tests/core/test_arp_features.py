"""Static neighbours (neighbours:), proxy ARP (interfaces.X.proxy_arp), gratuitous ARP
(ipv4.arp_notify), carrier loss, and the operator's view of all of it (show neigh /
show ntable), in virtual time."""

from __future__ import annotations

import random
from typing import Any

import pytest

from pyrouter.cli import fmt
from pyrouter.control.build import build
from pyrouter.control.load import ConfigError, parse
from pyrouter.core import introspect

from .helpers import (
    BCAST_MAC, H1, H2, LAN, R_IP, R_IP_WAN2, R_MAC, SECOND, SMALL, TOPOLOGY, WAN, ZERO_MAC, Net,
    arp, expect_arp, expect_ipv4, ip2int, parse_eth, ping,
)

MS = SECOND // 1000
STATIC_MAC = bytes.fromhex("0220000000aa")
STATIC = ("neighbours:\n"
          "  - {to: 10.0.2.20, lladdr: \"02:20:00:00:00:aa\", dev: wan0}\n"
          "  - {to: \"fd00:2::20\", lladdr: \"02:20:00:00:00:bb\", dev: wan0}\n")


def lan_option(option: str, config: str = TOPOLOGY) -> str:
    line = '    macaddress: "02:00:00:00:01:01"\n'
    return config.replace(line, line + f"    {option}\n")


def arps(tx: list, ifindex: int | None = None) -> list:
    return [(i, f) for i, f in tx if parse_eth(f).type == 0x0806
            and (ifindex is None or i == ifindex)]


def reload(net: Net, text: str) -> dict[str, Any]:
    new = build(parse(text), random.Random(9), now=net.now,
                ifindexes={p.name: i for i, p in net.router.ports.items()})
    summary = net.router.adopt(new)
    net.drain()
    return summary


# --------------------------------------------------------------------------
# static neighbours
# --------------------------------------------------------------------------

def test_static_neighbour_is_permanent_and_used_without_arp() -> None:
    net = Net(config=TOPOLOGY + STATIC)
    e = net.neigh(H2)
    assert e.state.value == "PERMANENT" and e.lladdr == STATIC_MAC
    net.learn(H1)
    tx = net.send(LAN, ping(H1, H2.ip))
    assert len(tx) == 1                                  # forwarded at once, no who-has
    expect_ipv4(tx[0], ifindex=WAN, eth_dst=STATIC_MAC, ttl=63)
    out = net.run_until(600 * SECOND)                    # never probed, never aged
    assert arps([(i, f) for _, i, f in out], WAN) == []
    assert net.neigh_state(H2) == "PERMANENT"
    # A host's ARP with another MAC does not touch it (neigh_update: not ADMIN).
    net.send(WAN, arp(1, H2.mac, H2.ip, ZERO_MAC, R_IP[WAN]), at=601 * SECOND)
    net.send(WAN, arp(2, H2.mac, H2.ip, R_MAC[WAN], R_IP[WAN], eth_dst=R_MAC[WAN]))
    assert net.neigh(H2).lladdr == STATIC_MAC and net.neigh_state(H2) == "PERMANENT"


def test_static_neighbour_survives_link_down_and_gc() -> None:
    net = Net(config=TOPOLOGY + STATIC + "neigh: {gc_thresh1: 0, gc_thresh2: 0, "
                                         "gc_thresh3: 4}\n")
    r = net.router
    r.set_link(WAN, False, 0)
    r.set_link(WAN, True, SECOND)
    assert net.neigh_state(H2) == "PERMANENT"
    r.neigh4.forced_gc(100 * SECOND)
    r.neigh4.periodic_gc(100 * SECOND)
    assert net.neigh_state(H2) == "PERMANENT"
    assert r.neigh4.gc_entries == 0                      # exempt from the thresholds


def test_ipv6_static_neighbour_goes_to_the_ipv6_table_when_there_is_one() -> None:
    net = Net(config=TOPOLOGY + STATIC)
    assert len(net.router.neigh4.entries) == 1           # no neigh6 yet: ignored

    class FakeTable:
        def __init__(self) -> None:
            self.calls: list[tuple] = []

        def add_permanent(self, *args: Any) -> None:
            self.calls.append(args)

    r = net.router
    r.neigh6 = FakeTable()                               # type: ignore[attr-defined]
    r.add_static_neighbour(WAN, 6, 0xFD000002 << 96 | 0x20, STATIC_MAC, 5)
    r.add_static_neighbour(WAN, 4, ip2int("10.0.2.21"), STATIC_MAC, 5)
    assert r.neigh6.calls == [(WAN, 0xFD000002 << 96 | 0x20, STATIC_MAC, 5)]  # type: ignore
    assert r.neigh4.get(WAN, ip2int("10.0.2.21")).state.value == "PERMANENT"


@pytest.mark.parametrize("entry,path,reason", [
    ("{to: 10.0.2.20, lladdr: \"02:00:00:00:00:01\", dev: eth9}", "neighbours[0].dev",
     "no interface"),
    ("{to: 10.0.2.1, lladdr: \"02:00:00:00:00:01\", dev: wan0}", "neighbours[0].to",
     "address of this router"),
    ("{to: 224.0.0.5, lladdr: \"02:00:00:00:00:01\", dev: wan0}", "neighbours[0].to",
     "cannot be"),
    ("{to: 127.0.0.2, lladdr: \"02:00:00:00:00:01\", dev: wan0}", "neighbours[0].to",
     "cannot be"),
    ("{to: 10.0.2.20, lladdr: \"01:00:5e:00:00:01\", dev: wan0}", "neighbours[0].lladdr",
     "unicast"),
    ("{to: 10.0.2.20, lladdr: \"00:00:00:00:00:00\", dev: wan0}", "neighbours[0].lladdr",
     "unicast"),
    ("{to: 10.0.2.20, lladdr: \"zz\", dev: wan0}", "neighbours[0].lladdr", ""),
    ("{to: 10.0.2.0/24, lladdr: \"02:00:00:00:00:01\", dev: wan0}", "neighbours[0].to", ""),
])
def test_bad_static_neighbours_are_rejected(entry: str, path: str, reason: str) -> None:
    with pytest.raises(ConfigError) as ei:
        build(parse(TOPOLOGY + f"neighbours:\n  - {entry}\n", "f.yaml"), random.Random(1),
              file="f.yaml")
    assert ei.value.path == path and reason in ei.value.reason, str(ei.value)


def test_duplicate_static_neighbour_is_rejected() -> None:
    text = TOPOLOGY + STATIC + "  - {to: 10.0.2.20, lladdr: \"02:20:00:00:00:cc\", dev: wan0}\n"
    with pytest.raises(ConfigError) as ei:
        build(parse(text), random.Random(1))
    assert ei.value.path == "neighbours[2].to" and "twice" in ei.value.reason


def test_reload_adds_changes_and_removes_static_neighbours() -> None:
    net = Net()
    net.learn(H1)
    net.send(LAN, ping(H1, H2.ip))                       # H2 INCOMPLETE, one queued
    assert net.neigh_state(H2) == "INCOMPLETE"
    new_tx: list = []
    new = build(parse(TOPOLOGY + STATIC), random.Random(9), now=net.now)
    net.router.adopt(new)
    new_tx = net.drain()
    # The queued packet leaves for the static lladdr.
    assert [expect_ipv4(t, ifindex=WAN).eth.dst for t in new_tx
            if parse_eth(t[1]).type == 0x0800] == [STATIC_MAC]
    assert net.neigh_state(H2) == "PERMANENT"
    reload(net, TOPOLOGY + STATIC.replace("00:aa", "00:ab"))
    assert net.neigh(H2).lladdr == bytes.fromhex("0220000000ab")
    assert net.neigh_state(H1) == "STALE"                # learned entries stay
    reload(net, TOPOLOGY)
    assert net.neigh(H2) is None and net.neigh_state(H1) == "STALE"


# --------------------------------------------------------------------------
# carrier loss (neigh_carrier_down)
# --------------------------------------------------------------------------

def test_link_down_flushes_learned_entries_counts_queued_keeps_permanent() -> None:
    net = Net(config=TOPOLOGY + "neighbours:\n"
              "  - {to: 10.0.2.99, lladdr: \"02:20:00:00:00:aa\", dev: wan0}\n")
    net.learn(H1)
    net.send(LAN, ping(H1, H2.ip, seq=1))
    net.send(LAN, ping(H1, H2.ip, seq=2))
    net.router.set_link(WAN, False, net.now)
    assert net.neigh(H2) is None
    assert net.drops() == {"neigh_dead": 2}
    assert net.router.neigh4.get(WAN, ip2int("10.0.2.99")).state.value == "PERMANENT"
    assert net.neigh_state(H1) == "STALE"                # other ports untouched


# --------------------------------------------------------------------------
# proxy ARP
# --------------------------------------------------------------------------

PROXY = lan_option("proxy_arp: true")


def who_has(target: str, *, unicast: bool = False) -> bytes:
    return arp(1, H1.mac, H1.ip, ZERO_MAC, target,
               eth_dst=R_MAC[LAN] if unicast else BCAST_MAC)


def test_without_proxy_arp_a_request_for_a_remote_address_is_ignored() -> None:
    net = Net()
    assert net.send(LAN, who_has(H2.ip)) == []
    assert net.drops() == {"arp_not_for_us": 1}


def test_proxy_arp_answers_after_a_random_delay_below_proxy_delay() -> None:
    delays = []
    for seed in range(8):
        net = Net(config=PROXY, seed=seed)
        assert net.send(LAN, who_has(H2.ip)) == []       # queued (pneigh_enqueue)
        assert net.neigh_state(H1) == "STALE"            # the sender is learned at once
        out = net.run_until(SECOND)
        assert len(out) == 1
        t, idx, frame = out[0]
        expect_arp((idx, frame), op=2, ifindex=LAN, eth_dst=H1.mac, eth_src=R_MAC[LAN],
                   sha=R_MAC[LAN], spa=H2.ip, tha=H1.mac, tpa=H1.ip)
        assert 0 <= t < 800 * MS
        delays.append(t)
        assert net.snmp("ArpOutProxyReplies") == 1 and net.snmp("ArpInRequests") == 1
    assert len(set(delays)) > 1                          # random, per request


def test_proxy_arp_answers_a_unicast_request_at_once() -> None:
    net = Net(config=PROXY)
    tx = net.send(LAN, who_has(H2.ip, unicast=True))
    assert len(tx) == 1
    expect_arp(tx[0], op=2, eth_dst=H1.mac, spa=H2.ip, sha=R_MAC[LAN])


def test_proxy_delay_zero_answers_at_once() -> None:
    net = Net(config=lan_option("neigh: {proxy_delay: 0}", PROXY))
    tx = net.send(LAN, who_has(H2.ip))
    assert len(tx) == 1
    expect_arp(tx[0], op=2, spa=H2.ip)


@pytest.mark.parametrize("target,answered", [
    ("10.0.2.99", True),             # connected subnet of wan0
    ("10.9.1.1", True),              # routed via a gateway on wan0
    ("10.0.4.40", True),             # small0
    ("10.0.1.99", False),            # lan0's own subnet: the route leaves by the same port
    ("198.51.100.1", False),         # unreachable route
    ("192.0.2.1", False),            # blackhole
    ("172.16.0.1", False),           # no route at all
    ("10.0.2.255", False),           # wan0's broadcast address
])
def test_proxy_arp_needs_a_unicast_route_through_another_port(target: str,
                                                              answered: bool) -> None:
    net = Net(config=lan_option("neigh: {proxy_delay: 0}", PROXY))
    tx = net.send(LAN, who_has(target))
    assert len(tx) == (1 if answered else 0)
    if answered:
        expect_arp(tx[0], op=2, spa=target, eth_dst=H1.mac)
    else:
        assert net.drops() == {"arp_not_for_us": 1}


def test_proxy_arp_for_the_routers_own_address_is_a_normal_reply() -> None:
    net = Net(config=PROXY)
    tx = net.send(LAN, who_has(R_IP_WAN2))
    assert len(tx) == 1 and net.snmp("ArpOutProxyReplies") == 0


def test_proxy_arp_only_on_the_configured_port() -> None:
    net = Net(config=PROXY)
    h2_asks = arp(1, H2.mac, H2.ip, ZERO_MAC, "10.0.1.10")
    assert net.send(WAN, h2_asks) == []
    assert net.run_until(SECOND) == []


def test_proxy_arp_needs_forwarding() -> None:
    net = Net(config=lan_option("neigh: {proxy_delay: 0}", PROXY))
    net.router.ports[LAN].forwarding = False
    assert net.send(LAN, who_has(H2.ip)) == []


def test_proxy_queue_is_bounded_by_proxy_qlen() -> None:
    net = Net(config=lan_option("neigh: {proxy_qlen: 2}", PROXY))
    for i in range(5):
        net.send(LAN, who_has(f"10.0.2.{100 + i}"))
    # pneigh_enqueue() drops when more than proxy_qlen wait: qlen + 1 are kept.
    assert len(net.router.arp_proxy_queue) == 3
    assert net.drops() == {"arp_proxy_queue_full": 2}
    out = net.run_until(SECOND)
    assert sorted(expect_arp(o[1:], op=2).spa for o in out) == \
        ["10.0.2.100", "10.0.2.101", "10.0.2.102"]
    assert net.router.arp_proxy_queue == [] and net.router.arp_proxy_deadline is None


def test_queued_proxy_request_is_dropped_when_the_port_goes_down() -> None:
    net = Net(config=PROXY)
    net.send(LAN, who_has(H2.ip))
    net.router.set_link(LAN, False, net.now)
    assert net.run_until(SECOND) == []
    assert net.drops() == {"port_down": 1}


def test_proxy_answer_follows_route_changes_at_its_time() -> None:
    """neigh_proxy_process() re-runs arp_process(): the route is looked up again."""
    net = Net(config=PROXY)
    net.send(LAN, who_has("10.9.1.1"))
    reload(net, lan_option("proxy_arp: true", TOPOLOGY.replace(
        "  - {to: 10.9.0.0/16, via: 10.0.2.254}\n", "")))
    assert net.run_until(SECOND) == []


# --------------------------------------------------------------------------
# gratuitous ARP (arp_notify)
# --------------------------------------------------------------------------

def garps(tx: list) -> list[tuple[int, str]]:
    out = []
    for i, f in arps(tx):
        a = expect_arp((i, f), op=1, eth_dst=BCAST_MAC, eth_src=R_MAC[i], sha=R_MAC[i],
                       tha=ZERO_MAC)
        assert a.spa == a.tpa
        out.append((i, a.spa))
    return out


def test_start_announces_every_address_of_every_port() -> None:
    net = Net()
    net.router.announce(0)
    tx = net.drain()
    assert sorted(garps(tx)) == sorted((i, ip) for i, ip in
                                       [(1, "10.0.1.1"), (2, "10.0.2.1"), (2, "10.0.20.1"),
                                        (3, "10.0.4.1"), (4, "10.0.5.1")])
    ev = [e.fields for e in net.events if e.name == "arp.announce"]
    assert ev[1] == {"port": "wan0", "reason": "start", "addresses": ["10.0.2.1", "10.0.20.1"],
                     "mac": "02:00:00:00:02:01"}
    assert net.snmp("ArpOutGratuitous") == 5 and net.snmp("ArpOutRequests") == 5
    assert net.router.neigh4.entries == {}


def test_arp_notify_off_announces_nothing() -> None:
    net = Net(config=TOPOLOGY + "ipv4: {arp_notify: false}\n")
    net.router.announce(0)
    assert net.drain() == []
    reload(net, TOPOLOGY.replace("[10.0.1.1/24]", "[10.0.1.1/24, 10.0.7.1/24]")
           + "ipv4: {arp_notify: false}\n")
    assert net.snmp("ArpOutGratuitous") == 0


def test_a_port_without_carrier_is_not_announced() -> None:
    net = Net()
    net.router.set_link(SMALL, False, 0)
    net.router.announce(0)
    assert all(i != SMALL for i, _ in garps(net.drain()))


def test_reload_announces_added_addresses_new_ports_and_mac_changes() -> None:
    net = Net()
    net.learn(H1)
    net.learn(H2)
    text = TOPOLOGY.replace("[10.0.1.1/24]", "[10.0.1.1/24, 10.0.7.1/24]")
    text = text.replace('macaddress: "02:00:00:00:02:01"', 'macaddress: "02:00:00:00:02:99"')
    text = text.replace("routes:\n", "  new0:\n    addresses: [10.0.8.1/24]\n"
                        "    macaddress: \"02:00:00:00:08:01\"\nroutes:\n")
    new = build(parse(text), random.Random(9), now=net.now,
                ifindexes={p.name: i for i, p in net.router.ports.items()})
    net.router.adopt(new)
    tx = net.drain()
    got = {}
    for i, f in arps(tx):
        a = expect_arp((i, f), op=1, eth_dst=BCAST_MAC)
        got.setdefault(i, []).append((a.spa, a.sha.hex(":")))
    assert got == {LAN: [("10.0.7.1", "02:00:00:00:01:01")],
                   WAN: [("10.0.2.1", "02:00:00:00:02:99"), ("10.0.20.1", "02:00:00:00:02:99")],
                   5: [("10.0.8.1", "02:00:00:00:08:01")]}
    reasons = {e.fields["port"]: e.fields["reason"] for e in net.events
               if e.name == "arp.announce"}
    assert reasons == {"lan0": "address_added", "wan0": "mac_change", "new0": "port_added"}
    # NETDEV_CHANGEADDR flushed wan0's learned entries; lan0's stay.
    assert net.neigh(H2) is None and net.neigh_state(H1) == "STALE"


# --------------------------------------------------------------------------
# ARP counters and the operator's view
# --------------------------------------------------------------------------

def test_arp_counters_per_message_type() -> None:
    net = Net()
    net.learn(H1)
    net.send(LAN, arp(1, H1.mac, "0.0.0.0", ZERO_MAC, R_IP[LAN]))          # DAD probe
    net.send(LAN, arp(1, H1.mac, H1.ip, ZERO_MAC, H1.ip), at=2 * SECOND)   # gratuitous
    net.send(LAN, arp(2, H1.mac, H1.ip, R_MAC[LAN], R_IP[LAN], eth_dst=R_MAC[LAN]))
    snmp = net.router.snapshot()["snmp"]
    assert {k: snmp[k] for k in ("ArpInRequests", "ArpInReplies", "ArpInDadProbes",
                                 "ArpInGratuitous", "ArpOutReplies", "ArpOutRequests")} == \
        {"ArpInRequests": 3, "ArpInReplies": 1, "ArpInDadProbes": 1, "ArpInGratuitous": 1,
         "ArpOutReplies": 2, "ArpOutRequests": 0}


def test_show_neigh_lists_permanent_entries_and_ntable_the_stats() -> None:
    net = Net(config=TOPOLOGY + STATIC)
    net.learn(H1)
    net.send(LAN, ping(H1, "10.0.2.77"))
    net.run_until(4 * SECOND)                                              # .77 FAILED
    rows = {d["dst"]: d for d in introspect.neighbours(net.router, net.now)}
    assert rows["10.0.2.20"]["state"] == "PERMANENT"
    assert rows["10.0.2.20"]["lladdr"] == "02:20:00:00:00:aa"
    assert rows["10.0.2.77"]["state"] == "FAILED" and rows["10.0.2.77"]["probes"] == 6   # ip -s neigh: "probes 6 FAILED"
    text = fmt.neighbours(list(rows.values()))
    assert "10.0.2.20 dev wan0 lladdr 02:20:00:00:00:aa used 4/4/4 probes 0 PERMANENT" in text
    t, t6 = introspect.neigh_tables(net.router)
    assert t6["name"] == "ndisc_cache"
    assert (t["name"], t["gc_thresh1"], t["gc_thresh2"], t["gc_thresh3"], t["gc_interval"]) == \
        ("arp_cache", 128, 512, 1024, 30)
    assert t["entries"] == 3 and t["gc_entries"] == 2
    assert t["states"] == {"PERMANENT": 1, "FAILED": 1, "DELAY": 1}    # H1: the error
    st = t["stats"]
    assert st["allocs"] == 3 and st["res_failed"] == 1 and st["hash_grows"] is None
    assert set(st) >= {"destroys", "forced_gc_runs", "table_fulls", "unres_discards",
                       "periodic_gc_runs"}
    lan = next(p for p in t["parms"] if p["dev"] == "lan0")
    assert lan["locktime"] == 100 and lan["proxy_delay"] == 80 and lan["ucast_probes"] == 3
    assert 15000 <= lan["reachable_time_ms"] < 45000
    snap = net.router.snapshot()                         # the stats file / metrics
    assert snap["neigh_table"] == {"entries": 3, "gc_entries": 2, "gc_thresh3": 1024,
                                   "proxy_queue": 0}
    assert {"port": "wan0", "addr": "10.0.2.77", "lladdr": None, "state": "FAILED",
            "probes": 6, "queued": 0} in snap["neighbours"]
    assert snap["neigh_stats"]["res_failed"] == 1
    out = fmt.neigh_tables(introspect.neigh_tables(net.router))
    assert out.splitlines()[0] == "inet arp_cache"
    assert "thresh1 128 thresh2 512 thresh3 1024 gc_int 30000" in out
    assert "res_failed 1" in out and "hash_grows n/a" in out
    assert "dev lan0 reachable" in out and "locktime 1000" in out


def test_reload_changes_neigh_params_and_keeps_an_unchanged_ports_reachable_time() -> None:
    net = Net()
    t = net.router.neigh4
    lan_reach, wan_reach = t.reach_time(LAN), t.reach_time(WAN)
    text = TOPOLOGY.replace('    macaddress: "02:00:00:00:02:01"\n',
                            '    macaddress: "02:00:00:00:02:01"\n'
                            '    neigh: {retrans_time_ms: 250, base_reachable_time_ms: 2000}\n')
    reload(net, text + "neigh: {gc_thresh3: 2048}\n")
    assert t.parms(WAN).retrans_time == 250 * MS and t.table.gc_thresh3 == 2048
    assert t.reach_time(LAN) == lan_reach                # unchanged parms keep theirs
    assert t.reach_time(WAN) != wan_reach and 1 * SECOND <= t.reach_time(WAN) < 3 * SECOND
    net.learn(H1)
    net.send(LAN, ping(H1, H2.ip))
    out = net.run_until(net.now + 600 * MS)
    assert len(arps([(i, f) for _, i, f in out], WAN)) == 2   # probes 250 ms apart now
