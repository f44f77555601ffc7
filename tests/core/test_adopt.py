"""Reload: Router.adopt keeps learned state of surviving ports, and plan_ports keeps their
ifindexes (control/build.py)."""

from __future__ import annotations

import json
import random

from pyrouter.control.build import build, plan_ports
from pyrouter.control.load import parse
from pyrouter.core import introspect
from pyrouter.core.router import Router

from .helpers import (
    BCAST_MAC, MS, SECOND, ZERO_MAC, Host, Net, arp, echo, expect_arp, expect_error,
    expect_icmp, expect_ipv4, fragment, frame_from, ip2int, ipv4, ping,
)

OLD = """\
interfaces:
  lan0: {addresses: [10.0.1.1/24], macaddress: "02:00:00:00:01:01"}
  wan0: {addresses: [10.0.2.1/24], macaddress: "02:00:00:00:02:01"}
  dmz0: {addresses: [10.0.3.1/24], macaddress: "02:00:00:00:03:01"}
  old0: {addresses: [10.0.4.1/24], macaddress: "02:00:00:00:04:01"}
routes:
  - {to: 10.9.0.0/16, via: 10.0.2.254}
"""

# wan0 listed first now, old0 gone, new0 added, 10.9/16 moved to dmz0, a new route.
NEW = """\
interfaces:
  wan0: {addresses: [10.0.2.1/24], macaddress: "02:00:00:00:02:01"}
  lan0: {addresses: [10.0.1.1/24], macaddress: "02:00:00:00:01:01"}
  dmz0: {addresses: [10.0.3.1/24], macaddress: "02:00:00:00:03:01"}
  new0: {addresses: [10.0.6.1/24], macaddress: "02:00:00:00:06:01"}
routes:
  - {to: 10.9.0.0/16, via: 10.0.3.254}
  - {to: 10.10.0.0/16, via: 10.0.2.254}
"""

LAN, WAN, DMZ, OLD0 = 1, 2, 3, 4
MAC = {LAN: bytes.fromhex("020000000101"), WAN: bytes.fromhex("020000000201"),
       DMZ: bytes.fromhex("020000000301"), OLD0: bytes.fromhex("020000000401")}
H1 = Host("10.0.1.10", bytes.fromhex("021000000010"), LAN)
GW = Host("10.0.2.254", bytes.fromhex("0220000000fe"), WAN)
H2 = Host("10.0.2.20", bytes.fromhex("022000000020"), WAN)
D1 = Host("10.0.3.30", bytes.fromhex("023000000030"), DMZ)
DGW = Host("10.0.3.254", bytes.fromhex("0230000000fe"), DMZ)
O1 = Host("10.0.4.40", bytes.fromhex("024000000040"), OLD0)
R_IP = {LAN: "10.0.1.1", WAN: "10.0.2.1", DMZ: "10.0.3.1", OLD0: "10.0.4.1"}


def learn(n: Net, h: Host, confirm: bool = True) -> None:
    tx = n.send(h.port, arp(1, h.mac, h.ip, ZERO_MAC, R_IP[h.port]))
    expect_arp(tx[0], op=2, tha=h.mac)
    if confirm:
        n.send(h.port, arp(2, h.mac, h.ip, MAC[h.port], R_IP[h.port], eth_dst=MAC[h.port]))


def frm(h: Host, l3: bytes) -> bytes:
    return frame_from(h, l3, eth_dst=MAC[h.port])


def old_net() -> Net:
    n = Net(OLD)
    for h in (H1, GW, H2, D1, O1):
        learn(n, h)
    # Warm the fast path toward 10.9.1.1 (via GW on wan0).
    for seq in range(3):
        tx = n.send(LAN, frm(H1, ipv4(H1.ip, "10.9.1.1", echo(seq=seq), proto=1)))
        expect_ipv4(tx[0], dst="10.9.1.1", ifindex=WAN, eth_dst=GW.mac)
    assert n.router.fast_forwarded >= 1 and n.router.fwd_cache
    return n


def current_ifindexes(r: Router) -> dict[str, int]:
    return {p.name: i for i, p in r.ports.items()}


def reloaded(n: Net, text: str = NEW, recreated: frozenset[str] = frozenset({"dmz0"})
             ) -> dict:
    ifx = current_ifindexes(n.router)
    new = build(parse(text), random.Random(99), n.now, "<reload>", ifx)
    summary = n.router.adopt(new, recreated)
    n.drain()
    return summary


# --------------------------------------------------------------------------
# plan_ports keeps ifindexes
# --------------------------------------------------------------------------

def test_plan_ports_first_start_numbers_in_config_order() -> None:
    assert [(p.name, p.ifindex) for p in plan_ports(parse(OLD))] == [
        ("lan0", 1), ("wan0", 2), ("dmz0", 3), ("old0", 4)]


def test_plan_ports_keeps_surviving_ifindexes() -> None:
    ifx = {"lan0": 1, "wan0": 2, "dmz0": 3, "old0": 4}
    plans = plan_ports(parse(NEW), ifx)
    # Config order, surviving numbers, a new port above every number in use (even the
    # removed port's 4 is not reused in the same reload).
    assert [(p.name, p.ifindex) for p in plans] == [("wan0", 2), ("lan0", 1), ("dmz0", 3),
                                                    ("new0", 5)]
    assert plans[0].mac == MAC[WAN] and plans[3].mtu == 1500
    # A second reload: new0 keeps 5, another new port gets 6.
    again = plan_ports(parse(NEW.replace("routes:", "  x0: {}\nroutes:")),
                       {p.name: p.ifindex for p in plans})
    assert [(p.name, p.ifindex) for p in again] == [("wan0", 2), ("lan0", 1), ("dmz0", 3),
                                                    ("new0", 5), ("x0", 6)]


def test_build_with_ifindexes_uses_them() -> None:
    r = build(parse(NEW), random.Random(1), 0, "<x>", {"lan0": 1, "wan0": 2, "dmz0": 3,
                                                      "old0": 4})
    assert {p.name: i for i, p in r.ports.items()} == {"wan0": 2, "lan0": 1, "dmz0": 3,
                                                       "new0": 5}
    assert all(r.ports_by_name[p.name] is p for p in r.ports.values())


# --------------------------------------------------------------------------
# adopt
# --------------------------------------------------------------------------

def test_adopt_summary_and_event() -> None:
    n = old_net()
    summary = reloaded(n)
    json.dumps(summary)
    assert summary["added"] == ["new0"]
    assert summary["removed"] == ["old0"]
    assert summary["recreated"] == ["dmz0"]
    assert summary["routes"] == sum(len(t) for t in n.router.fib.tables.values())
    assert [e.fields for e in n.events if e.name == "reload.applied"] == [summary]


def test_counters_and_neighbours_survive_for_unchanged_ports() -> None:
    n = old_net()
    r = n.router
    counters = {name: r.ports_by_name[name].counters() for name in ("lan0", "wan0")}
    neigh = {k: (e.state, e.lladdr, e.confirmed, e.updated) for k, e in r.neigh4.entries.items()
             if k[0] in (LAN, WAN)}
    snmp = dict(r.counters.snmp)
    fast = r.fast_forwarded
    reloaded(n)
    assert {name: r.ports_by_name[name].counters() for name in ("lan0", "wan0")} == counters
    assert {k: (e.state, e.lladdr, e.confirmed, e.updated)
            for k, e in r.neigh4.entries.items() if k[0] in (LAN, WAN)} == neigh
    # The only new counts: arp_notify's gratuitous ARP for new0's and dmz0's address.
    grew = {k: v - snmp[k] for k, v in r.counters.snmp.items() if v != snmp[k]}
    assert grew == {"ArpOutRequests": 2, "ArpOutGratuitous": 2}
    assert r.fast_forwarded == fast
    assert r.ports[LAN].rx_packets > 0


def test_removed_port_neighbours_are_flushed_and_recreated_port_loses_its_own() -> None:
    n = old_net()
    r = n.router
    assert r.neigh4.get(OLD0, ip2int(O1.ip)) and r.neigh4.get(DMZ, ip2int(D1.ip))
    reloaded(n)
    assert {k[0] for k in r.neigh4.entries} == {LAN, WAN}
    assert [d["dev"] for d in introspect.neighbours(r, n.now)].count("old0") == 0
    assert OLD0 not in r.ports and "old0" not in r.ports_by_name


def test_recreated_port_keeps_its_ifindex_and_relearns() -> None:
    n = old_net()
    reloaded(n)
    # The host on dmz0 must be resolved again.
    tx = n.send(LAN, frm(H1, ipv4(H1.ip, D1.ip, echo(), proto=1)))
    expect_arp(tx[0], op=1, tpa=D1.ip, spa=R_IP[DMZ], ifindex=DMZ, eth_dst=BCAST_MAC)


def test_fwd_cache_cleared_and_a_changed_route_goes_the_new_way() -> None:
    n = old_net()
    r = n.router
    fast = r.fast_forwarded
    reloaded(n)
    assert r.fwd_cache == {}
    # 10.9/16 now goes via 10.0.3.254 on dmz0: first an ARP for the new gateway ...
    l3 = ipv4(H1.ip, "10.9.1.1", echo(seq=9), proto=1)
    tx = n.send(LAN, frm(H1, l3))
    expect_arp(tx[0], op=1, tpa=DGW.ip, ifindex=DMZ)
    assert r.fast_forwarded == fast                      # the stale cache entry was not used
    # ... then the queued packet leaves on dmz0 to the new gateway.
    tx = n.send(DMZ, arp(2, DGW.mac, DGW.ip, MAC[DMZ], R_IP[DMZ], eth_dst=MAC[DMZ]))
    expect_ipv4(tx[0], dst="10.9.1.1", ttl=63, ifindex=DMZ, eth_dst=DGW.mac)


def test_new_route_uses_a_surviving_neighbour_at_once() -> None:
    n = old_net()
    reloaded(n)
    tx = n.send(LAN, frm(H1, ipv4(H1.ip, "10.10.5.5", echo(), proto=1)))
    expect_ipv4(tx[0], dst="10.10.5.5", ifindex=WAN, eth_dst=GW.mac)


def test_addresses_follow_the_new_config() -> None:
    n = old_net()
    reloaded(n)
    r = n.router
    assert ip2int("10.0.4.1") not in r.local4 and ip2int("10.0.6.1") in r.local4
    assert (ip2int("10.0.4.1")).to_bytes(4, "big") not in r.local4_bytes
    assert ip2int("10.0.4.255") not in r.bcast4
    # The removed port's address: no route any more.
    l3 = ipv4(H1.ip, "10.0.4.1", echo(), proto=1)
    tx = n.send(LAN, frm(H1, l3))
    expect_error(tx[0], type=3, code=0, about=l3, src=R_IP[LAN], ifindex=LAN)
    # The new port's address answers.
    tx = n.send(LAN, frm(H1, ipv4(H1.ip, "10.0.6.1", echo(), proto=1)))
    expect_icmp(tx[0], type=0, code=0, src="10.0.6.1", dst=H1.ip, ifindex=LAN)


def test_queued_packets_on_a_removed_port_are_dropped_and_its_timers_are_harmless() -> None:
    n = Net(OLD)
    learn(n, H1)
    tx = n.send(LAN, frm(H1, ipv4(H1.ip, "10.0.4.99", echo(), proto=1)))
    expect_arp(tx[0], op=1, tpa="10.0.4.99", ifindex=OLD0)
    reloaded(n)
    assert n.drops() == {"neigh_dead": 1}
    out = n.run_until(10 * SECOND)
    assert all(i != OLD0 for _, i, _ in out)
    assert not any(e.name == "neigh.failed" for e in n.events)


def test_surviving_neighbour_timers_keep_running() -> None:
    n = old_net()
    r = n.router
    reloaded(n)
    e = r.neigh4.get(WAN, ip2int(H2.ip))
    assert e.state.value == "REACHABLE"
    n.run_until(n.now + 60 * SECOND)
    assert r.neigh4.get(WAN, ip2int(H2.ip)).state.value == "STALE"


def test_link_state_survives() -> None:
    n = old_net()
    n.router.set_link(WAN, False, n.now)
    reloaded(n)
    assert not n.router.ports[WAN].up
    l3 = ipv4(H1.ip, "10.10.5.5", echo(), proto=1)
    # The route via wan0 is still used (no carrier, as the kernel's linkdown), nothing
    # can be resolved on a port without carrier: Host Unreachable after the 3 probes.
    assert n.send(LAN, frm(H1, l3)) == []
    sent = [(i, f) for _t, i, f in n.run_until(n.now + 4 * SECOND)]
    errs = [f for i, f in sent if i == LAN]
    assert len(errs) == 1 and errs[0][14 + 20] == 3 and errs[0][14 + 21] == 1


def test_mtu_change_takes_effect() -> None:
    n = old_net()
    reloaded(n, NEW.replace('macaddress: "02:00:00:00:02:01"}',
                            'macaddress: "02:00:00:00:02:01", mtu: 1280}'))
    assert n.router.ports[WAN].mtu == 1280
    big = ipv4(H1.ip, "10.10.5.5", echo(data=bytes(1300)), proto=1, df=True)
    tx = n.send(LAN, frm(H1, big))
    expect_error(tx[0], type=3, code=4, about=big, src=R_IP[LAN], mtu=1280, ifindex=LAN)


def test_reassembly_spans_a_reload() -> None:
    n = old_net()
    pieces = fragment(ipv4(H1.ip, R_IP[LAN], echo(data=bytes(64)), proto=1, ident=42), 32)
    n.send(LAN, frm(H1, pieces[0]))
    reloaded(n)
    assert len(n.router.reasm) == 1
    n.send(LAN, frm(H1, pieces[1]))
    tx = n.send(LAN, frm(H1, pieces[2]))
    expect_icmp(tx[0], type=0, code=0, src=R_IP[LAN], dst=H1.ip, ifindex=LAN)


def test_adopt_without_recreation_keeps_everything() -> None:
    n = old_net()
    r = n.router
    before = sorted((k, e.state) for k, e in r.neigh4.entries.items())
    summary = reloaded(n, OLD, frozenset())
    assert summary["added"] == [] and summary["removed"] == [] and summary["recreated"] == []
    assert sorted((k, e.state) for k, e in r.neigh4.entries.items()) == before
    # The fast path refills and is used again.
    for seq in range(3):
        n.send(LAN, frm(H1, ipv4(H1.ip, "10.9.1.1", echo(seq=seq), proto=1)))
    assert r.fwd_cache


def test_a_port_renamed_on_the_same_ifindex_is_not_the_same_port() -> None:
    n = old_net()
    r = n.router
    renamed = OLD.replace("old0:", "other0:")
    new = build(parse(renamed), random.Random(3), n.now, "<x>",
                {"lan0": 1, "wan0": 2, "dmz0": 3})           # as if other0 took 4
    assert new.ports[OLD0].name == "other0"
    summary = r.adopt(new)
    assert summary["removed"] == ["old0"] and summary["added"] == ["other0"]
    assert r.ports[OLD0].rx_packets == 0                    # counters not inherited
    assert r.neigh4.get(OLD0, ip2int(O1.ip)) is None


def test_ping_after_reload_to_a_new_neighbour_times_out_correctly() -> None:
    """The adopted router's timers (not the discarded one's) drive resolution."""
    n = old_net()
    reloaded(n)
    start = n.now
    n.send(LAN, frm(H1, ping(H1, "10.0.6.66")[14:]))
    out = n.run_until(start + 3500 * MS)
    probes = [(t - start) // MS for t, i, f in out if f[12:14] == b"\x08\x06"]
    assert probes == [1000, 2000]
    unreach = [f for t, i, f in out if i == LAN]
    assert len(unreach) == 1
    expect_icmp((LAN, unreach[0]), type=3, code=1, dst=H1.ip)
