"""Per-interface neighbour parameters (interfaces.X.neigh), the table thresholds
(neigh:) and the kernel's gc semantics (neigh_alloc, neigh_forced_gc,
neigh_periodic_work), in virtual time."""

from __future__ import annotations

import pytest

from pyrouter.control.build import build
from pyrouter.control.load import ConfigError, parse
from pyrouter.core.link.neighbour import NeighParams, NeighTableParams

from .helpers import (
    BCAST_MAC, H1, H2, LAN, R_IP, R_MAC, SECOND, TOPOLOGY, WAN, ZERO_MAC, Net, arp, arp_fast,
    expect_arp, expect_error, ip2int, parse_eth, ping,
)

MS = SECOND // 1000


def with_neigh(port: str, knobs: str, extra: str = "") -> str:
    """TOPOLOGY with ``neigh: {knobs}`` under interface *port*, plus top-level *extra*."""
    mac = {"lan0": "01", "wan0": "02", "small0": "04", "jumbo0": "05"}[port]
    line = f'    macaddress: "02:00:00:00:{mac}:01"\n'
    assert line in TOPOLOGY
    return TOPOLOGY.replace(line, line + f"    neigh: {{{knobs}}}\n") + extra


def wan_arps(out: list) -> list[tuple[int, bytes]]:
    return [(t, f) for t, i, f in out if i == WAN and parse_eth(f).type == 0x0806]


def resolve_h2(net: Net) -> None:
    net.learn(H1)
    net.send(LAN, ping(H1, H2.ip))


# --------------------------------------------------------------------------
# config -> parameters
# --------------------------------------------------------------------------

def test_defaults_are_the_kernels() -> None:
    r = Net().router
    for idx in r.ports:
        assert r.neigh4.parms(idx) == NeighParams()
    p = NeighParams()
    assert (p.base_reachable_time, p.retrans_time, p.delay_first_probe_time, p.gc_stale_time,
            p.ucast_probes, p.mcast_probes, p.app_probes, p.locktime, p.unres_qlen_bytes,
            p.proxy_delay, p.proxy_qlen) == (30 * SECOND, SECOND, 5 * SECOND, 60 * SECOND,
                                             3, 3, 0, SECOND, 212992, 800 * MS, 64)
    assert r.neigh4.table == NeighTableParams(128, 512, 1024, 30 * SECOND)


def test_units_follow_the_kernel_sysctls() -> None:
    net = Net(config=with_neigh("wan0", "base_reachable_time_ms: 10000, retrans_time_ms: 250, "
                                "delay_first_probe_time: 2, gc_stale_time: 7, ucast_solicit: 1, "
                                "mcast_solicit: 5, app_probes: 1, locktime: 50, "
                                "unres_qlen_bytes: 4096, proxy_delay: 20, proxy_qlen: 3",
                                "neigh: {gc_thresh1: 10, gc_thresh2: 20, gc_thresh3: 30, "
                                "gc_interval: 9}\n"))
    t = net.router.neigh4
    assert t.parms(WAN) == NeighParams(10 * SECOND, 250 * MS, 2 * SECOND, 7 * SECOND, 1, 5, 1,
                                       500 * MS, 4096, 200 * MS, 3)
    assert t.parms(LAN) == NeighParams()                 # other ports keep the defaults
    assert t.table == NeighTableParams(10, 20, 30, 9 * SECOND)
    assert 5 * SECOND <= t.reach_time(WAN) < 15 * SECOND


@pytest.mark.parametrize("text,path", [
    ("interfaces: {a: {neigh: {retrans_time: 5}}}", "interfaces.a.neigh.retrans_time"),
    ("interfaces: {a: {neigh: {ucast_probes: -1}}}", "interfaces.a.neigh.ucast_probes"),
    ("interfaces: {a: {neigh: {base_reachable_time_ms: 10}}}",
     "interfaces.a.neigh.base_reachable_time_ms"),
    ("interfaces: {a: {}}\nneigh: {gc_thresh2: 2000}", "neigh"),
    ("interfaces: {a: {}}\nneigh: {gc_thresh3: 0}", "neigh.gc_thresh3"),
    ("interfaces: {a: {}}\nneigh: {gc_thresh4: 1}", "neigh.gc_thresh4"),
])
def test_bad_neigh_knobs_are_rejected_with_their_key_path(text: str, path: str) -> None:
    with pytest.raises(ConfigError) as ei:
        parse(text, "f.yaml")
    assert ei.value.file == "f.yaml" and ei.value.path == path, str(ei.value)


def test_retrans_time_and_mcast_probes_pace_resolution() -> None:
    net = Net(config=with_neigh("wan0", "retrans_time_ms: 250, mcast_probes: 5"))
    resolve_h2(net)
    out = net.run_until(2 * SECOND)
    probes = [0] + [t for t, _ in wan_arps(out)]
    assert probes == [0, 250 * MS, 500 * MS, 750 * MS, 1000 * MS]
    assert net.neigh_state(H2) == "FAILED"
    fails = [(i, f) for t, i, f in out if i == LAN and parse_eth(f).type == 0x0800]
    assert len(fails) == 1
    expect_error(fails[0], type=3, code=1, about=ping(H1, H2.ip, ttl=63)[14:], src=R_IP[LAN])


def test_app_probes_delay_the_broadcasts() -> None:
    """arp_solicit(): the first app_probes solicitations go to ARPD (none here: nothing
    is sent), the broadcasts follow; the total is app_probes + mcast_probes."""
    net = Net(config=with_neigh("wan0", "app_probes: 2, mcast_probes: 1"))
    net.learn(H1)
    assert [f for i, f in net.send(LAN, ping(H1, H2.ip)) if i == WAN] == []
    out = net.run_until(4 * SECOND)
    assert [t for t, _ in wan_arps(out)] == [2 * SECOND]
    assert net.neigh_state(H2) == "FAILED"
    assert [t for t, i, f in out if i == LAN and parse_eth(f).type == 0x0800] == [3 * SECOND]


def test_no_probes_at_all_fails_at_once() -> None:
    """__neigh_event_send() with mcast_probes + app_probes == 0: FAILED at once, the
    packet dropped without an error report."""
    net = Net(config=with_neigh("wan0", "mcast_probes: 0"))
    net.learn(H1)
    tx = net.send(LAN, ping(H1, H2.ip))
    assert tx == [] and net.neigh_state(H2) == "FAILED"
    assert net.drops() == {"neigh_failed": 1}


def test_delay_first_probe_time_and_ucast_probes() -> None:
    net = Net(config=with_neigh("wan0", "delay_first_probe_time: 2, ucast_probes: 1"))
    net.learn(H1)
    net.send(WAN, arp(1, H2.mac, H2.ip, ZERO_MAC, R_IP[WAN]))      # H2 STALE
    net.send(LAN, ping(H1, H2.ip), at=10 * SECOND)
    assert net.neigh_state(H2) == "DELAY"
    out = net.run_until(20 * SECOND)
    probes = wan_arps(out)
    assert [t for t, _ in probes] == [12 * SECOND]                  # one unicast probe
    expect_arp(probes[0][1], op=1, eth_dst=H2.mac, tpa=H2.ip)
    assert net.neigh_state(H2) == "FAILED"


def test_locktime_zero_lets_the_second_reply_win() -> None:
    net = Net(config=with_neigh("wan0", "locktime: 0"))
    resolve_h2(net)
    other = bytes.fromhex("0220000000ee")
    net.send(WAN, arp(2, H2.mac, H2.ip, R_MAC[WAN], R_IP[WAN], eth_dst=R_MAC[WAN]),
             at=10 * MS)
    net.send(WAN, arp(2, other, H2.ip, R_MAC[WAN], R_IP[WAN], eth_dst=R_MAC[WAN]), at=20 * MS)
    assert net.neigh(H2).lladdr == other
    # The default locktime (1 s) keeps the first one.
    net = Net()
    resolve_h2(net)
    net.send(WAN, arp(2, H2.mac, H2.ip, R_MAC[WAN], R_IP[WAN], eth_dst=R_MAC[WAN]),
             at=10 * MS)
    net.send(WAN, arp(2, other, H2.ip, R_MAC[WAN], R_IP[WAN], eth_dst=R_MAC[WAN]), at=20 * MS)
    assert net.neigh(H2).lladdr == H2.mac


def test_reachable_time_is_per_interface_and_repicked_every_300_s() -> None:
    net = Net(seed=3)
    t = net.router.neigh4
    first = {idx: t.reach_time(idx) for idx in net.router.ports}
    assert len(set(first.values())) > 1                 # each port picks its own
    net.run_until(299 * SECOND)
    assert {idx: t.reach_time(idx) for idx in net.router.ports} == first
    net.run_until(316 * SECOND)                         # the gc run after 300 s re-picks
    again = {idx: t.reach_time(idx) for idx in net.router.ports}
    assert again != first
    assert all(15 * SECOND <= v < 45 * SECOND for v in again.values())


def test_periodic_gc_runs_every_half_base_reachable_time() -> None:
    net = Net()
    net.run_until(61 * SECOND)
    assert net.router.neigh4.stats["periodic_gc_runs"] == 4          # 15, 30, 45, 60 s


# --------------------------------------------------------------------------
# gc thresholds (neigh_alloc / neigh_forced_gc / neigh_periodic_work)
# --------------------------------------------------------------------------

SMALL_TABLE = "neigh: {gc_thresh1: 4, gc_thresh2: 8, gc_thresh3: 16}\n"


def flood(net: Net, n: int, start: int = 0, step: int = MS) -> int:
    """*n* requests for the router's LAN address from distinct on-link senders;
    returns how many were answered."""
    r = net.router
    answered = 0
    base = ip2int("10.0.1.100")
    for i in range(start, start + n):
        net.now += step
        r.receive(LAN, arp_fast(1, b"\x02\xf0" + i.to_bytes(4, "big"), base + i,
                                ip2int(R_IP[LAN])), net.now)
        answered += len(net.drain())
    return answered


def test_below_gc_thresh3_fresh_entries_are_all_kept() -> None:
    net = Net(config=TOPOLOGY + SMALL_TABLE)
    t = net.router.neigh4
    assert flood(net, 16) == 16
    assert len(t.entries) == 16 and t.stats["forced_gc_runs"] == 0    # last_flush < 5 s ago


def test_gc_thresh3_refuses_fresh_entries_but_the_request_is_answered() -> None:
    net = Net(config=TOPOLOGY + SMALL_TABLE)
    t = net.router.neigh4
    assert flood(net, 20) == 20                          # arp_process replies regardless
    assert len(t.entries) == 16
    assert t.stats["table_fulls"] == 4 and t.stats["forced_gc_runs"] == 4


def test_above_gc_thresh2_a_forced_gc_every_5_s_trims_old_entries_to_thresh2() -> None:
    net = Net(config=TOPOLOGY + SMALL_TABLE)
    t = net.router.neigh4
    flood(net, 10)                                       # 10 entries at t = 1..10 ms
    net.now = 6 * SECOND                                 # > last_flush + 5 s, all > 5 s old
    flood(net, 1, start=10)
    assert t.stats["forced_gc_runs"] == 1
    # neigh_forced_gc(): max_clean = entries - gc_thresh2 = 2, oldest first.
    assert len(t.entries) == 9
    gone = {ip2int("10.0.1.100"), ip2int("10.0.1.101")}
    assert not gone & {a for _, a in t.entries}
    flood(net, 1, start=11)                              # last_flush only just now: no run
    assert t.stats["forced_gc_runs"] == 1 and len(t.entries) == 10


def test_forced_gc_spares_permanent_and_in_timer_entries() -> None:
    net = Net(config=TOPOLOGY + SMALL_TABLE)
    r, t = net.router, net.router.neigh4
    t.add_permanent(WAN, ip2int("10.0.2.99"), bytes.fromhex("0220000000aa"), 0)
    resolve_h2(net)                                      # H2 INCOMPLETE (timer running)
    flood(net, 20)
    net.now = 10 * SECOND
    flood(net, 40, start=20)
    assert t.get(WAN, ip2int("10.0.2.99")).state.value == "PERMANENT"
    assert net.neigh_state(H2) in ("INCOMPLETE", "FAILED")
    assert t.gc_entries <= 16 and len(t.entries) == t.gc_entries + 1
    assert r.counters.drop_dict()["neigh_table_full"] == 0


def test_periodic_gc_removes_failed_and_unused_stale_above_thresh1() -> None:
    net = Net(config=TOPOLOGY + "neigh: {gc_thresh1: 2, gc_thresh2: 8, gc_thresh3: 16}\n")
    t = net.router.neigh4
    t.add_permanent(WAN, ip2int("10.0.2.99"), bytes.fromhex("0220000000aa"), 0)
    flood(net, 3)                                        # three STALE entries
    net.run_until(50 * SECOND)
    assert len(t.entries) == 4                           # used < gc_stale_time (60 s) ago
    net.run_until(76 * SECOND)                           # the run at 75 s: unused for 75 s
    assert [e.state.value for e in t.entries.values()] == ["PERMANENT"]


def test_periodic_gc_does_nothing_below_thresh1() -> None:
    net = Net()
    flood(net, 3)
    net.run_until(200 * SECOND)
    assert len(net.router.neigh4.entries) == 3


def test_gc_stale_time_is_the_ports() -> None:
    net = Net(config=with_neigh("lan0", "gc_stale_time: 10",
                                "neigh: {gc_thresh1: 1, gc_thresh2: 8, gc_thresh3: 16}\n"))
    flood(net, 3)
    net.run_until(16 * SECOND)                           # first run at 15 s: unused > 10 s
    assert net.router.neigh4.entries == {}


def test_build_rejects_reversed_thresholds() -> None:
    with pytest.raises(ConfigError) as ei:
        build(parse(TOPOLOGY + "neigh: {gc_thresh1: 600}\n"), None)   # type: ignore[arg-type]
    assert ei.value.path == "neigh"


def test_broadcast_probe_is_answered_under_a_full_table() -> None:
    """The BCAST check of the existing helpers still holds with a tiny table."""
    net = Net(config=TOPOLOGY + SMALL_TABLE)
    flood(net, 16)
    tx = net.send(LAN, arp(1, H1.mac, H1.ip, ZERO_MAC, R_IP[LAN]))
    assert len(tx) == 1
    expect_arp(tx[0], op=2, eth_dst=H1.mac, tpa=H1.ip)
    tx = net.send(LAN, ping(H1, H2.ip))                  # H2 cannot be created either
    assert tx == [] and net.drops() == {"neigh_table_full": 1}
    assert BCAST_MAC                                     # (imported for symmetry)


def test_a_failed_entry_is_taken_at_once_even_after_a_fruitless_gc() -> None:
    """The forced gc's "nothing can qualify before T" shortcut is reset when an entry
    turns FAILED: the next allocation takes it, as a full kernel scan would."""
    net = Net(config=TOPOLOGY + SMALL_TABLE)
    t = net.router.neigh4
    resolve_h2(net)                                      # H2 INCOMPLETE at t = 0
    flood(net, 20)                                       # table full of fresh entries
    fulls = t.stats["table_fulls"]
    assert fulls > 0 and len(t.entries) == 16
    net.run_until(3500 * MS)
    assert net.neigh_state(H2) == "FAILED"
    flood(net, 1, start=100)
    assert t.stats["table_fulls"] == fulls and net.neigh(H2) is None
    flood(net, 1, start=101)                             # again full, all fresh: refused
    assert t.stats["table_fulls"] == fulls + 1
    net.now = 5 * SECOND + 100 * MS                      # the oldest ones are 5 s old now
    flood(net, 1, start=102)
    assert t.stats["table_fulls"] == fulls + 1 and len(t.entries) <= 16


def test_arp_flood_does_not_knock_forwarding_off_the_fast_path() -> None:
    """New and refreshed entries do not clear the forwarding cache; only an entry
    leaving CONNECTED (or changing lladdr) does."""
    net = Net()
    net.learn(H1)
    net.send(LAN, ping(H1, H2.ip))
    net.confirm(H2)
    net.send(LAN, ping(H1, H2.ip, seq=2))                 # fills the cache
    r = net.router
    assert r.fwd_cache
    before = r.fast_forwarded
    flood(net, 3000)
    assert r.fwd_cache
    tx = net.send(LAN, ping(H1, H2.ip, seq=3))
    assert len(tx) == 1 and r.fast_forwarded == before + 1
    # A new lladdr for H2 (after locktime) must clear it.
    net.send(WAN, arp(2, bytes.fromhex("0220000000ee"), H2.ip, R_MAC[WAN], R_IP[WAN],
                      eth_dst=R_MAC[WAN]), at=net.now + 2 * SECOND)
    assert r.fwd_cache == {}
    tx = net.send(LAN, ping(H1, H2.ip, seq=4))
    assert parse_eth(tx[0][1]).dst == bytes.fromhex("0220000000ee")
