"""The neighbour (NUD) machine with virtual time, queue and table bounds."""

from __future__ import annotations

import struct

import pytest

from pyrouter.core.link.neighbour import NeighParams

from .helpers import (
    BCAST_MAC, H1, H2, LAN, R_IP, R_MAC, SECOND, TOPOLOGY, WAN, ZERO_MAC, Net, arp, arp_fast,
    echo, expect_arp, expect_error, expect_ipv4, frame_from, ip2int, ipv4, parse_eth, ping,
)

MS = SECOND // 1000


def arps(out: list, ifindex: int = WAN) -> list:
    """The ARP frames the router sent on *ifindex* (wan0: the probes for H2)."""
    return [(t, i, f) for t, i, f in out if i == ifindex and parse_eth(f).type == 0x0806]


def reachable_h2(net: Net) -> int:
    """Resolve H2 through a forwarded packet at net.now; return the resolution time."""
    net.learn(H1)
    tx = net.send(LAN, ping(H1, H2.ip))
    expect_arp(tx[0], op=1, eth_dst=BCAST_MAC)
    tx = net.confirm(H2)
    assert len(tx) == 1 and net.neigh_state(H2) == "REACHABLE"
    return net.now


# --------------------------------------------------------------------------
# INCOMPLETE -> FAILED
# --------------------------------------------------------------------------

def test_incomplete_probes_three_times_then_fails_with_host_unreachable() -> None:
    net = Net()
    net.learn(H1)
    first = ipv4(H1.ip, H2.ip, echo(seq=1), proto=1, ident=1)
    second = ipv4(H1.ip, H2.ip, echo(seq=2), proto=1, ident=2)
    tx = net.send(LAN, frame_from(H1, first), at=0)
    assert len(tx) == 1
    probes = [(0, *tx[0])]
    assert net.send(LAN, frame_from(H1, second), at=500 * MS) == []      # queued, no new probe
    assert net.neigh_state(H2) == "INCOMPLETE"
    assert net.router.poll_at() == SECOND               # the retransmit timer
    out = net.run_until(10 * SECOND)
    probes += arps(out)
    assert [t for t, _, _ in probes] == [0, SECOND, 2 * SECOND]
    for _, idx, frame in probes:
        expect_arp((idx, frame), op=1, ifindex=WAN, eth_dst=BCAST_MAC, eth_src=R_MAC[WAN],
                   sha=R_MAC[WAN], spa=R_IP[WAN], tha=ZERO_MAC, tpa=H2.ip)
    errors = [(t, i, f) for t, i, f in out if parse_eth(f).type == 0x0800]
    # (H1, learned STALE, then goes DELAY -> PROBE because of these errors: that is
    # the same machine, on lan0, and is not looked at here.)
    assert [t for t, _, _ in errors] == [3 * SECOND, 3 * SECOND]
    for (_, idx, frame), l3 in zip(errors, (first, second)):
        # arp_error_report() quotes the packet as it was queued: TTL already decremented.
        sent = ipv4(H1.ip, H2.ip, l3[20:], proto=1, ident=l3[5] | (l3[4] << 8), ttl=63)
        expect_error((idx, frame), type=3, code=1, src=R_IP[LAN], about=sent,
                     ifindex=LAN, eth_dst=H1.mac)
    assert net.neigh_state(H2) == "FAILED"
    assert net.drops() == {"neigh_failed": 2}
    failed = [e for e in net.events if e.name == "neigh.failed"]
    assert len(failed) == 1
    assert failed[0].fields == {"ifindex": WAN, "addr": H2.ip, "queued": 2}


def test_failed_entry_is_resolved_again_on_the_next_packet() -> None:
    net = Net()
    net.learn(H1)
    net.send(LAN, ping(H1, H2.ip), at=0)
    net.run_until(5 * SECOND)
    assert net.neigh_state(H2) == "FAILED"
    tx = net.send(LAN, ping(H1, H2.ip, seq=9), at=10 * SECOND)
    assert len(tx) == 1
    expect_arp(tx[0], op=1, ifindex=WAN, eth_dst=BCAST_MAC, tpa=H2.ip)
    assert net.neigh_state(H2) == "INCOMPLETE"
    tx = net.confirm(H2)
    ip = expect_ipv4(tx[0], ifindex=WAN, eth_dst=H2.mac, dst=H2.ip)
    assert ip.payload == echo(seq=9)
    assert net.neigh_state(H2) == "REACHABLE"


def test_late_reply_revives_a_failed_entry() -> None:
    """A FAILED entry still exists, so a reply updates it (arp_accept=0 is no obstacle)."""
    net = Net()
    net.learn(H1)
    net.send(LAN, ping(H1, H2.ip), at=0)
    net.run_until(4 * SECOND)
    assert net.neigh_state(H2) == "FAILED"
    assert net.confirm(H2) == []                       # nothing left in the queue
    assert net.neigh_state(H2) == "REACHABLE"
    tx = net.send(LAN, ping(H1, H2.ip, seq=4))
    expect_ipv4(tx[0], ifindex=WAN, eth_dst=H2.mac)


# --------------------------------------------------------------------------
# REACHABLE -> STALE -> DELAY -> PROBE -> FAILED
# --------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(8))
def test_reachable_becomes_stale_after_reachable_time(seed: int) -> None:
    net = Net(seed=seed)
    t0 = reachable_h2(net)
    rt = net.router.neigh4.reach_time(WAN)
    assert 15 * SECOND <= rt < 45 * SECOND              # uniform in [base/2, 3*base/2)
    assert net.run_until(t0 + rt - 1) == []
    assert net.neigh_state(H2) == "REACHABLE"
    assert net.run_until(t0 + rt + MS) == []           # no probe: REACHABLE -> STALE is silent
    assert net.neigh_state(H2) == "STALE"


def test_reachable_time_is_randomised_per_router() -> None:
    times = {Net(seed=s).router.neigh4.reach_time(WAN) for s in range(10)}
    assert len(times) > 1
    assert all(15 * SECOND <= t < 45 * SECOND for t in times)


def stale_h2(net: Net) -> int:
    t0 = reachable_h2(net)
    net.run_until(t0 + 46 * SECOND)
    assert net.neigh_state(H2) == "STALE"
    return net.now


def test_stale_delay_probe_failed() -> None:
    net = Net()
    t = stale_h2(net)
    tx = net.send(LAN, ping(H1, H2.ip, seq=50), at=t)
    # The packet goes out at once to the known MAC; the entry waits in DELAY.
    assert len(tx) == 1
    expect_ipv4(tx[0], ifindex=WAN, eth_dst=H2.mac, dst=H2.ip)
    assert net.neigh_state(H2) == "DELAY"
    assert net.run_until(t + 5 * SECOND - 1) == []
    out = net.run_until(t + 20 * SECOND)
    probes = arps(out)
    assert [p[0] - t for p in probes] == [5 * SECOND, 6 * SECOND, 7 * SECOND]
    for _, idx, frame in probes:
        expect_arp((idx, frame), op=1, ifindex=WAN, eth_dst=H2.mac, eth_src=R_MAC[WAN],
                   sha=R_MAC[WAN], spa=R_IP[WAN], tha=ZERO_MAC, tpa=H2.ip)
    assert len(out) == 3                                # nothing else: no Host Unreachable
    assert net.neigh_state(H2) == "FAILED"
    assert net.neigh(H2).updated == t + 8 * SECOND


def test_packets_during_probe_still_go_to_the_known_mac() -> None:
    net = Net()
    t = stale_h2(net)
    net.send(LAN, ping(H1, H2.ip), at=t)
    net.run_until(t + 5 * SECOND + 500 * MS)
    assert net.neigh_state(H2) == "PROBE"
    tx = net.send(LAN, ping(H1, H2.ip, seq=77))
    assert len(tx) == 1
    expect_ipv4(tx[0], ifindex=WAN, eth_dst=H2.mac)


@pytest.mark.parametrize("when,state", [(2 * SECOND, "DELAY"), (6500 * MS, "PROBE")])
def test_reply_during_delay_or_probe_makes_it_reachable(when: int, state: str) -> None:
    net = Net()
    t = stale_h2(net)
    net.send(LAN, ping(H1, H2.ip), at=t)
    out = net.run_until(t + when)
    assert net.neigh_state(H2) == state
    n_probes = len(arps(out))
    net.send(WAN, arp(2, H2.mac, H2.ip, R_MAC[WAN], R_IP[WAN], eth_dst=R_MAC[WAN]),
             at=t + when)
    assert net.neigh_state(H2) == "REACHABLE"
    out = net.run_until(t + when + 10 * SECOND)
    assert arps(out) == []                              # no more probes
    assert net.neigh_state(H2) == "REACHABLE"
    assert n_probes == (0 if state == "DELAY" else 2)


def test_confirmed_entry_in_delay_returns_to_reachable_at_the_timer() -> None:
    """neigh_timer_handler(): DELAY and confirmed meanwhile -> REACHABLE, no probe."""
    net = Net()
    t = stale_h2(net)
    net.send(LAN, ping(H1, H2.ip), at=t)
    entry = net.neigh(H2)
    entry.confirmed = t + SECOND                        # e.g. a TCP-level confirmation
    out = net.run_until(t + 5 * SECOND + MS)
    assert arps(out) == [] and net.neigh_state(H2) == "REACHABLE"


# --------------------------------------------------------------------------
# Bounds
# --------------------------------------------------------------------------

def test_unresolved_queue_is_bounded_in_bytes_oldest_dropped() -> None:
    net = Net()
    net.learn(H1)
    params = net.router.neigh4.parms(WAN)
    size = 1000
    n = 200
    for seq in range(n):
        l3 = ipv4(H1.ip, H2.ip, echo(seq=seq, data=b"q" * (size - 28)), proto=1)
        assert len(l3) == size
        net.send(LAN, frame_from(H1, l3))
    e = net.neigh(H2)
    assert e.queue_bytes <= params.unres_qlen_bytes
    kept = params.unres_qlen_bytes // (size + 640)      # 640: the skb truesize overhead
    assert len(e.queue) == kept
    assert net.drops() == {"neigh_queue_full": n - kept}
    assert net.router.neigh4.stats["unres_discards"] == n - kept
    tx = net.confirm(H2)
    seqs = [struct.unpack_from("!H", expect_ipv4(t, ifindex=WAN).payload, 6)[0] for t in tx]
    assert seqs == list(range(n - kept, n))             # the newest survive, in order


def test_small_queue_limit_from_params() -> None:
    net = Net()
    net.router.neigh4.set_params(WAN, NeighParams(unres_qlen_bytes=3 * (100 + 640)))
    net.learn(H1)
    for seq in range(5):
        net.send(LAN, frame_from(H1, ipv4(H1.ip, H2.ip, echo(seq=seq, data=b"s" * 72), proto=1)))
    assert len(net.neigh(H2).queue) == 3
    assert net.drops() == {"neigh_queue_full": 2}


def test_arp_flood_keeps_table_bounded_and_legit_flow_forwarded() -> None:
    """100 000 ARP requests from distinct sources for the router's address: the table
    stays within gc_thresh3 and the memory bounded while H1 -> H2 keeps flowing (H2
    answers the router's probes, as a live host does)."""
    net = Net()
    r = net.router
    limit = r.neigh4.table.gc_thresh3
    assert limit == 1024
    reachable_h2(net)
    tpa = ip2int(R_IP[LAN])
    base = ip2int("100.64.0.0")
    legit = delivered = max_entries = max_timers = 0
    step = 300 * 1000                                    # 300 us of virtual time per request
    now = net.now

    def answer(tx: list) -> int:
        got = 0
        for idx, frame in tx:
            frame = bytes(frame)
            if idx == WAN and frame[12:14] == b"\x08\x06" and frame[38:42] == \
                    bytes(map(int, H2.ip.split("."))):
                r.receive(WAN, arp(2, H2.mac, H2.ip, R_MAC[WAN], R_IP[WAN],
                                   eth_dst=R_MAC[WAN]), now)
                got += answer(r.drain()[0])
            elif idx == WAN and frame[12:14] == b"\x08\x00" and frame[30:34] == \
                    bytes(map(int, H2.ip.split("."))):
                assert frame[0:6] == H2.mac
                got += 1
        return got

    for i in range(100_000):
        now += step
        mac = b"\x02\xf0" + i.to_bytes(4, "big")
        r.receive(LAN, arp_fast(1, mac, base + i, tpa), now)
        if i % 500 == 499:
            r.tick(now)
            r.receive(LAN, ping(H1, H2.ip, seq=legit & 0xFFFF), now)
            legit += 1
            delivered += answer(r.drain()[0])
            max_entries = max(max_entries, len(r.neigh4.entries))
            max_timers = max(max_timers, len(r.timers))
    r.tick(now + 10 * SECOND)
    delivered += answer(r.drain()[0])
    assert max_entries <= limit and len(r.neigh4.entries) <= limit
    assert r.neigh4.stats["forced_gc_runs"] > 0
    assert delivered == legit == 200                     # nothing of the legit flow lost
    assert max_timers < 8 * (limit + 16) + 16            # the timer heap stays bounded
    assert r.tx == [] and len(r.fwd_cache) <= 1 and r.reasm.mem == 0
    assert sum(len(e.queue) for e in r.neigh4.entries.values()) == 0


def test_full_table_of_incomplete_entries_drops_new_destinations_silently() -> None:
    net = Net(config=TOPOLOGY + "  - {to: 10.50.0.0/16, dev: wan0}\n")
    net.router.neigh4.add_permanent(LAN, ip2int(H1.ip), H1.mac, 0)
    out = []
    n = 1100
    for i in range(n):
        dst = f"10.50.{i >> 8}.{i & 255}"
        out += net.send(LAN, ping(H1, dst, seq=i))
    arp_requests = [f for i, f in out if i == WAN and parse_eth(f).type == 0x0806]
    icmp_to_h1 = [f for i, f in out if i == LAN]
    refused = n - len(arp_requests)
    # PERMANENT entries are exempt from the gc thresholds (neigh_alloc's exempt_from_gc).
    assert refused == n - 1024 and net.router.neigh4.gc_entries == 1024
    assert len(net.router.neigh4.entries) == 1025
    assert net.router.neigh4.stats["table_fulls"] == refused
    assert icmp_to_h1 == []
    assert [e for e in net.events if e.name == "neigh.failed"] == []
    assert net.drops() == {"neigh_table_full": refused}


def test_packets_queued_on_a_port_going_down_are_counted() -> None:
    net = Net()
    net.learn(H1)
    net.send(LAN, ping(H1, H2.ip, seq=1))
    net.send(LAN, ping(H1, H2.ip, seq=2))
    assert len(net.neigh(H2).queue) == 2
    net.router.set_link(WAN, False, net.now)
    assert net.neigh(H2) is None
    assert sum(net.drops().values()) == 2


def test_queue_flushed_into_stale_entry_moves_it_to_delay() -> None:
    net = Net()
    net.learn(H1)
    net.send(LAN, ping(H1, H2.ip), at=0)
    tx = net.send(WAN, arp(1, H2.mac, H2.ip, ZERO_MAC, R_IP[WAN]), at=100 * MS)
    assert len([t for t in tx if parse_eth(t[1]).type == 0x0800]) == 1   # the queued ping
    assert net.neigh_state(H2) == "DELAY"
    out = net.run_until(6 * SECOND)
    probes = arps(out)
    assert [t for t, _, _ in probes] == [100 * MS + 5 * SECOND]
    expect_arp(probes[0][1:], op=1, eth_dst=H2.mac, tpa=H2.ip)


def test_timer_heap_stays_bounded_under_repeated_confirmations() -> None:
    """Every confirmation re-arms the REACHABLE timer (a new heap entry, the old one
    stale); tick() compacts the heap and the live deadline still fires on time."""
    net = Net()
    t0 = reachable_h2(net)
    r = net.router
    reply = arp(2, H2.mac, H2.ip, R_MAC[WAN], R_IP[WAN], eth_dst=R_MAC[WAN])
    t = t0
    for i in range(20_000):
        t += MS
        r.receive(WAN, reply, t)
        if i % 100 == 0:
            r.tick(t)
        assert len(r.timers) < 8 * (len(r.neigh4.entries) + 16) + 200
    r.drain()
    net.now = t
    rt = r.neigh4.reach_time(WAN)
    assert net.run_until(t + rt - MS) == [] and net.neigh_state(H2) == "REACHABLE"
    net.run_until(t + rt + MS)
    assert net.neigh_state(H2) == "STALE"
