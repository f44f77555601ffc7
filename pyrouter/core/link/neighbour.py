"""The neighbour subsystem (Linux net/core/neighbour.c), shared by ARP and, later, NDISC.

Heads up: read RFC 4861 section 7.3 (Neighbour Unreachability Detection) and
the kernel's neigh_update()/neigh_timer_handler() before changing this file.

Theory of operation
-------------------
One NeighbourEntry per (ifindex, protocol address).  States and transitions
(the kernel's NUD_* machine; "forwarded traffic does not confirm"):

========== ============================================ ======================
state      event                                        next
========== ============================================ ======================
NONE       packet to send                               INCOMPLETE, broadcast probe
INCOMPLETE reply/request from it (update w/ lladdr)     REACHABLE or STALE, flush queue
INCOMPLETE retrans timer, probes < mcast_probes         INCOMPLETE, probe again
INCOMPLETE retrans timer, probes exhausted              FAILED, error-report queue
REACHABLE  timer, confirmed recently                    REACHABLE (re-armed)
REACHABLE  timer, not confirmed for reachable_time      STALE
STALE      packet to send                               DELAY (delay_first_probe)
DELAY      timer, confirmed meanwhile                   REACHABLE
DELAY      timer, not confirmed                         PROBE, unicast probe
PROBE      retrans timer, probes < ucast_probes         PROBE, unicast probe
PROBE      retrans timer, probes exhausted              FAILED
FAILED     packet to send                               INCOMPLETE (resolve again)
any        update with a different lladdr, no override  ignored (locktime)
PERMANENT  (static entries) nothing changes it
========== ============================================ ======================

Timers run through the core's TimerQueue under the key (kind, ifindex, addr)
(kind "neigh" for ARP; another table uses its own); an entry's ``deadline`` is
its only live timer.  Packets waiting on resolution sit in a per-entry queue
bounded in bytes (unres_qlen_bytes, counted in approximate skb truesize); when
full the oldest is dropped, as __neigh_event_send() does.

Parameters are per interface (NeighParams, the kernel's neigh_parms, each with
its own randomised reachable_time), thresholds per table (NeighTableParams).
The table is bounded as neigh_alloc() bounds it: at gc_thresh3 entries, or
above gc_thresh2 when the last flush is more than 5 s old, a forced gc removes
(oldest first, down to gc_thresh2) entries with no running timer that are
FAILED or were not updated for 5 s; if that freed nothing at gc_thresh3 the
new entry is refused.  PERMANENT entries are exempt and never removed by gc or
carrier loss.  The periodic gc (every base_reachable_time/2) re-picks
reachable_time every 300 s and, above gc_thresh1, drops timer-less entries
that are FAILED or unused for gc_stale_time.

Invariants: an entry in REACHABLE/STALE/DELAY/PROBE/PERMANENT has an lladdr;
only INCOMPLETE entries hold queued packets; every state change bumps
``generation`` so the forwarding cache can tell it is out of date.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from ..time import MILLISECOND, SECOND, Instant, TimerQueue


class NudState(Enum):
    NONE = "NONE"
    INCOMPLETE = "INCOMPLETE"
    REACHABLE = "REACHABLE"
    STALE = "STALE"
    DELAY = "DELAY"
    PROBE = "PROBE"
    FAILED = "FAILED"
    NOARP = "NOARP"
    PERMANENT = "PERMANENT"


VALID = frozenset({NudState.REACHABLE, NudState.STALE, NudState.DELAY, NudState.PROBE,
                   NudState.PERMANENT, NudState.NOARP})
CONNECTED = frozenset({NudState.REACHABLE, NudState.PERMANENT, NudState.NOARP})

SKB_TRUESIZE_OVERHEAD = 640    # approximate sk_buff + shared_info overhead per queued packet


@dataclass(frozen=True, slots=True)
class NeighParams:
    """Per-interface knobs (struct neigh_parms: /proc/sys/net/ipv4/neigh/<dev>/), with the
    kernel's defaults.  Times are nanoseconds."""

    base_reachable_time: int = 30 * SECOND
    retrans_time: int = 1 * SECOND
    delay_first_probe_time: int = 5 * SECOND
    gc_stale_time: int = 60 * SECOND
    ucast_probes: int = 3
    mcast_probes: int = 3
    app_probes: int = 0               # ARPD probes: counted, nothing is sent (no arpd)
    locktime: int = 1 * SECOND
    unres_qlen_bytes: int = 212992
    proxy_delay: int = 800 * MILLISECOND
    proxy_qlen: int = 64


@dataclass(frozen=True, slots=True)
class NeighTableParams:
    """Table-wide knobs (struct neigh_table: /proc/sys/net/ipv4/neigh/default/gc_*)."""

    gc_thresh1: int = 128
    gc_thresh2: int = 512
    gc_thresh3: int = 1024
    gc_interval: int = 30 * SECOND    # kept and shown; the kernel does not use it either


FORCED_GC_MIN_AGE = 5 * SECOND        # neigh_alloc()/neigh_forced_gc(): "5 * HZ"
RERANDOM_INTERVAL = 300 * SECOND      # neigh_periodic_work() re-picks reachable_time


def xmit_queued(r: Any, entry: NeighbourEntry, ethertype: bytes,
                queued: list[tuple[bytes, Any]]) -> None:
    """neigh_resolved() for either family: the packets that waited, onto the wire."""
    port = r.ports.get(entry.ifindex)
    if port is None or entry.lladdr is None:
        return
    hdr = entry.lladdr + port.mac + ethertype
    for l3, _ctx in queued:
        r.xmit(port, hdr + l3)


class NeighOwner(Protocol):
    """What the table needs from the router (ARP/NDISC and the output path)."""

    def neigh_solicit(self, entry: NeighbourEntry, unicast: bool, now: Instant) -> None: ...
    def neigh_resolved(self, entry: NeighbourEntry, queued: list[tuple[bytes, Any]]) -> None: ...
    def neigh_failed(self, entry: NeighbourEntry, queued: list[tuple[bytes, Any]],
                     now: Instant) -> None: ...
    def neigh_dropped(self, entry: NeighbourEntry | None, why: str) -> None: ...
    def neigh_changed(self) -> None: ...


@dataclass(slots=True)
class NeighbourEntry:
    ifindex: int
    addr: int
    family: int = 4
    state: NudState = NudState.NONE
    lladdr: bytes | None = None
    updated: Instant = 0
    confirmed: Instant = 0
    used: Instant = 0
    probes: int = 0
    deadline: Instant | None = None
    queue: deque[tuple[bytes, Any]] = field(default_factory=deque)
    queue_bytes: int = 0


class NeighbourTable:
    """All neighbour entries of one family; see the module docstring.

    Parameters are per interface (``set_params``; ports without their own use
    ``params``), each with its own randomised reachable_time; ``table`` holds
    the gc thresholds.  *kind* is the first element of this table's timer keys
    (a second table, e.g. IPv6, uses another kind)."""


    def __init__(self, owner: NeighOwner, timers: TimerQueue, rng: Any,
                 params: NeighParams | None = None, table: NeighTableParams | None = None,
                 kind: str = "neigh", family: int = 4, now: Instant = 0) -> None:
        self.owner = owner
        self.family = family
        self.timers = timers
        self.rng = rng
        self.kind = kind
        self.params = params or NeighParams()
        self.table = table or NeighTableParams()
        self.dev_params: dict[int, NeighParams] = {}
        self._reach: dict[int, int] = {}
        self.entries: dict[tuple[int, int], NeighbourEntry] = {}
        self.gc_entries = 0                    # entries subject to gc (not PERMANENT)
        self.last_flush = now
        self.last_rand = now
        # Earliest instant a forced gc can free anything, learned from a fruitless scan
        # (entries only become eligible by ageing past 5 s or by turning FAILED/NOARP,
        # which resets it): keeps allocation O(1) while a flood holds the table full.
        self._gc_next: Instant = 0
        self.generation = 0
        self._default_reach = self._rand_reach_time(self.params)
        self.stats = {"allocs": 0, "destroys": 0, "res_failed": 0, "periodic_gc_runs": 0,
                      "forced_gc_runs": 0, "table_fulls": 0, "unres_discards": 0}

    # -- parameters ------------------------------------------------------
    def _rand_reach_time(self, p: NeighParams) -> int:
        """neigh_rand_reach_time(): uniform in [base/2, 3*base/2)."""
        base = p.base_reachable_time
        return base // 2 + int(self.rng.random() * base)

    def set_params(self, ifindex: int, p: NeighParams) -> None:
        """The port's neigh_parms (its reachable_time is picked again)."""
        self.dev_params[ifindex] = p
        self._reach[ifindex] = self._rand_reach_time(p)

    def drop_params(self, ifindex: int) -> None:
        self.dev_params.pop(ifindex, None)
        self._reach.pop(ifindex, None)

    def parms(self, ifindex: int) -> NeighParams:
        return self.dev_params.get(ifindex, self.params)

    def reach_time(self, ifindex: int) -> int:
        """The port's current reachable_time (randomised, see rerandomize)."""
        return self._reach.get(ifindex, self._default_reach)

    @property
    def reachable_time(self) -> int:
        """reachable_time of the default parameters (ports without their own)."""
        return self._default_reach

    def rerandomize(self) -> None:
        """neigh_periodic_work(), every 300 s: every parms set picks a new reachable_time."""
        self._default_reach = self._rand_reach_time(self.params)
        for ifindex, p in self.dev_params.items():
            self._reach[ifindex] = self._rand_reach_time(p)

    def gc_period(self) -> int:
        """neigh_periodic_work() re-queues itself every base_reachable_time/2 of the
        table's default parameters (gc_interval is not used, as in the kernel)."""
        return max(SECOND, self.params.base_reachable_time // 2)

    # -- helpers ---------------------------------------------------------
    def _set_state(self, e: NeighbourEntry, state: NudState, now: Instant) -> None:
        # Only an entry that was CONNECTED can be behind a cached forwarding decision
        # (the cache is filled from CONNECTED entries only): leaving that state or
        # changing its lladdr clears it; creating and resolving entries does not, so an
        # ARP flood does not knock forwarded traffic off the fast path.
        if e.state in CONNECTED:
            self.owner.neigh_changed()
        if state is NudState.FAILED or state is NudState.NOARP:
            self._gc_next = 0                    # forced gc may free this one at once
        e.state = state
        e.updated = now
        self.generation += 1

    def _arm(self, e: NeighbourEntry, deadline: Instant) -> None:
        e.deadline = deadline
        self.timers.schedule(deadline, (self.kind, e.ifindex, e.addr))

    def get(self, ifindex: int, addr: int) -> NeighbourEntry | None:
        return self.entries.get((ifindex, addr))

    def _create(self, ifindex: int, addr: int, now: Instant) -> NeighbourEntry | None:
        """neigh_alloc(): forced gc above gc_thresh3, or above gc_thresh2 when the last
        flush is more than 5 s old; refused when that freed nothing and the table is
        at gc_thresh3.  PERMANENT entries do not count (exempt_from_gc)."""
        t = self.table
        n = self.gc_entries
        if n >= t.gc_thresh3 or (n >= t.gc_thresh2
                                 and now > self.last_flush + FORCED_GC_MIN_AGE):
            if not self.forced_gc(now) and n >= t.gc_thresh3:
                self.stats["table_fulls"] += 1
                return None
        p = self.parms(ifindex)
        # Entries start unconfirmed (neigh_alloc: confirmed = now - 2 * base_reachable_time).
        e = NeighbourEntry(ifindex, addr, family=self.family, updated=now, used=now,
                           confirmed=now - 2 * p.base_reachable_time)
        self.entries[(ifindex, addr)] = e
        self.gc_entries += 1
        self.stats["allocs"] += 1
        return e

    def forced_gc(self, now: Instant) -> int:
        """neigh_forced_gc(): in creation order, remove unreferenced entries (no timer
        running: not INCOMPLETE/REACHABLE/DELAY/PROBE; never PERMANENT) that are FAILED
        or NOARP or were not updated for 5 s, until the table is back at gc_thresh2
        (at least one is removed if any qualifies).  Returns how many went."""
        self.stats["forced_gc_runs"] += 1
        self.last_flush = now
        if now < self._gc_next:
            return 0                             # nothing can qualify yet (see __init__)
        max_clean = self.gc_entries - self.table.gc_thresh2
        tref = now - FORCED_GC_MIN_AGE
        victims = []
        oldest: Instant | None = None
        for k, e in self.entries.items():
            if e.deadline is not None or e.state is NudState.PERMANENT:
                continue
            if (e.state is NudState.FAILED or e.state is NudState.NOARP
                    or not tref <= e.updated <= now):
                victims.append(k)
                if len(victims) >= max_clean:
                    break
            elif oldest is None or e.updated < oldest:
                oldest = e.updated
        for k in victims:
            self._destroy(k)
        if not victims:
            # A timer-held entry qualifies only after leaving its timer state, which sets
            # ``updated`` then (5 s more at the least) or makes it FAILED (resets this).
            nxt = now + FORCED_GC_MIN_AGE + 1
            self._gc_next = nxt if oldest is None else min(nxt, oldest + FORCED_GC_MIN_AGE + 1)
        return len(victims)

    def periodic_gc(self, now: Instant) -> None:
        """neigh_periodic_work(): re-pick reachable_time every 300 s; below gc_thresh1
        nothing else; above it drop unreferenced entries (not PERMANENT, no timer) that
        are FAILED or unused for gc_stale_time (of their port)."""
        self.stats["periodic_gc_runs"] += 1
        if now >= self.last_rand + RERANDOM_INTERVAL:
            self.last_rand = now
            self.rerandomize()
        if len(self.entries) < self.table.gc_thresh1:
            return
        victims = []
        for k, e in self.entries.items():
            if e.deadline is not None or e.state is NudState.PERMANENT:
                continue
            if e.used < e.confirmed <= now:
                e.used = e.confirmed
            if e.state is NudState.FAILED or \
                    not e.used <= now < e.used + self.parms(e.ifindex).gc_stale_time:
                victims.append(k)
        for k in victims:
            self._destroy(k)

    def _destroy(self, key: tuple[int, int]) -> None:
        e = self.entries.pop(key)
        e.deadline = None
        if e.state is not NudState.PERMANENT:
            self.gc_entries -= 1
        self.stats["destroys"] += 1
        self.generation += 1
        if e.state in CONNECTED:
            self.owner.neigh_changed()

    # -- events ----------------------------------------------------------
    def event_send(self, ifindex: int, addr: int, l3: bytes | None, ctx: Any,
                   now: Instant) -> bytes | None:
        """__neigh_event_send() + neigh_resolve_output(): the lladdr to send to now,
        or None when the packet was queued (or dropped) pending resolution."""
        e = self.entries.get((ifindex, addr))
        if e is None:
            e = self._create(ifindex, addr, now)
            if e is None:
                # "neighbour table overflow": dropped silently (NEIGH_CREATEFAIL).
                if l3 is not None:
                    self.owner.neigh_dropped(None, "table_full")
                return None
        st = e.state
        if st in CONNECTED:
            # The kernel's cached-header output (neigh_hh_output) does not touch
            # ``used`` for connected entries; only neigh_resolve_output does.
            return e.lladdr
        e.used = now
        if st is NudState.DELAY or st is NudState.PROBE:
            return e.lladdr
        p = self.parms(ifindex)
        if st is NudState.STALE:
            self._set_state(e, NudState.DELAY, now)
            self._arm(e, now + p.delay_first_probe_time)
            return e.lladdr
        if st is not NudState.INCOMPLETE:        # FAILED or fresh: start resolving
            if p.mcast_probes + p.app_probes == 0:
                # __neigh_event_send(): nothing to probe with, straight to FAILED; the
                # packet is dropped without an error report.
                self._set_state(e, NudState.FAILED, now)
                if l3 is not None:
                    self.owner.neigh_dropped(e, "failed")
                return None
            self._set_state(e, NudState.INCOMPLETE, now)
            # The kernel's counter: preset to ucast_probes, so the first ones broadcast
            # (and ``ip -s neigh`` shows 3 + the probes sent).
            e.probes = p.ucast_probes
            self._arm(e, now + p.retrans_time)
            if l3 is not None:
                self._queue(e, l3, ctx, p)
            self._probe(e, p, now)
            return None
        if l3 is not None:
            self._queue(e, l3, ctx, p)
        return None

    def _probe(self, e: NeighbourEntry, p: NeighParams, now: Instant) -> None:
        """neigh_probe() -> arp_solicit(), on the kernel's counter: below ucast_probes a
        unicast probe to the known lladdr, then app_probes for ARPD (none here: nothing
        is sent), then broadcasts; the counter goes up after each."""
        k = e.probes - p.ucast_probes
        if k < 0:
            if e.lladdr is not None:
                self.owner.neigh_solicit(e, True, now)
        elif k >= p.app_probes:
            self.owner.neigh_solicit(e, False, now)
        e.probes += 1

    def _queue(self, e: NeighbourEntry, l3: bytes, ctx: Any, p: NeighParams) -> None:
        size = len(l3) + SKB_TRUESIZE_OVERHEAD
        while e.queue and e.queue_bytes + size > p.unres_qlen_bytes:
            old, _ = e.queue.popleft()
            e.queue_bytes -= len(old) + SKB_TRUESIZE_OVERHEAD
            self.stats["unres_discards"] += 1
            self.owner.neigh_dropped(e, "queue_full")
        e.queue.append((l3, ctx))
        e.queue_bytes += size

    def update(self, ifindex: int, addr: int, lladdr: bytes, new: NudState, override: bool,
               now: Instant, create: bool = False,
               weak_override: bool = False) -> NeighbourEntry | None:
        """neigh_update(): a confirmation or a hint (STALE) carrying *lladdr*.
        *weak_override* (NEIGH_UPDATE_F_WEAK_OVERRIDE, NDISC's NA): a different lladdr
        without override turns a REACHABLE entry STALE, keeping its address."""
        e = self.entries.get((ifindex, addr))
        if e is None:
            if not create:
                return None
            e = self._create(ifindex, addr, now)
            if e is None:
                return None
        old = e.state
        if old is NudState.PERMANENT or old is NudState.NOARP:
            return e
        if old in VALID:
            if lladdr != e.lladdr:
                if not override:
                    if not (weak_override and old is NudState.REACHABLE):
                        # A different address within locktime: keep the old one.
                        return e
                    lladdr, new = e.lladdr, NudState.STALE
            elif new is NudState.STALE:
                # Same address, only a hint: keep the stronger state we have.
                new = old
        if new is NudState.REACHABLE:
            e.confirmed = now
        changed = lladdr != e.lladdr
        e.lladdr = lladdr
        if new is not old or changed:
            # ``updated`` moves only on a real change, so no-op updates do not
            # shift the locktime window (neigh_update()).
            self._set_state(e, new, now)
        p = self.parms(ifindex)
        if new is not old:
            if new is NudState.REACHABLE:
                self._arm(e, now + self.reach_time(ifindex))
            else:
                e.deadline = None
        if old in (NudState.INCOMPLETE, NudState.FAILED) and e.queue:
            queued = list(e.queue)
            e.queue.clear()
            e.queue_bytes = 0
            if e.state is NudState.STALE:
                # Sending the queue goes through neigh_resolve_output(), which
                # moves a STALE entry to DELAY like any other use.
                e.used = now
                self._set_state(e, NudState.DELAY, now)
                self._arm(e, now + p.delay_first_probe_time)
            self.owner.neigh_resolved(e, queued)
        return e

    def add_permanent(self, ifindex: int, addr: int, lladdr: bytes, now: Instant) -> None:
        """``ip neigh replace ADDR lladdr MAC dev X nud permanent`` (NEIGH_UPDATE_F_ADMIN):
        never probed, never gc'd, kept on carrier loss.  Packets waiting on an
        INCOMPLETE entry it replaces are sent to *lladdr*."""
        e = self.entries.get((ifindex, addr))
        if e is None:
            e = NeighbourEntry(ifindex, addr, family=self.family, used=now,
                               confirmed=now)
            self.entries[(ifindex, addr)] = e
            self.stats["allocs"] += 1
        elif e.state is not NudState.PERMANENT:
            self.gc_entries -= 1
        e.lladdr, e.deadline, e.probes = lladdr, None, 0
        e.confirmed = now
        queued = list(e.queue)
        e.queue.clear()
        e.queue_bytes = 0
        self._set_state(e, NudState.PERMANENT, now)
        if queued:
            self.owner.neigh_resolved(e, queued)

    def delete(self, ifindex: int, addr: int) -> bool:
        """``ip neigh del``: the entry goes (queued packets are counted as dead)."""
        e = self.entries.get((ifindex, addr))
        if e is None:
            return False
        for _ in e.queue:
            self.owner.neigh_dropped(e, "dead")
        self._destroy((ifindex, addr))
        return True

    def flush_dev(self, ifindex: int, keep_permanent: bool = True) -> int:
        """neigh_carrier_down() (keep_permanent) / neigh_ifdown(): drop the port's entries;
        packets still queued on them are counted as dead.  Returns how many went."""
        keys = [k for k, e in self.entries.items()
                if k[0] == ifindex and not (keep_permanent and e.state is NudState.PERMANENT)]
        for k in keys:
            self.delete(*k)
        return len(keys)

    def timer(self, key: tuple[int, int], deadline: Instant, now: Instant) -> None:
        """neigh_timer_handler()."""
        e = self.entries.get(key)
        if e is None or e.deadline != deadline:
            return                               # cancelled or re-armed: stale heap entry
        e.deadline = None
        p = self.parms(e.ifindex)
        st = e.state
        if st is NudState.REACHABLE:
            reach = self.reach_time(e.ifindex)
            if now < e.confirmed + reach:
                self._arm(e, e.confirmed + reach)
            elif now < e.used + p.delay_first_probe_time:
                self._set_state(e, NudState.DELAY, now)
                self._arm(e, now + p.delay_first_probe_time)
            else:
                self._set_state(e, NudState.STALE, now)
        elif st is NudState.DELAY:
            if now < e.confirmed + p.delay_first_probe_time:
                self._set_state(e, NudState.REACHABLE, now)
                self._arm(e, e.confirmed + self.reach_time(e.ifindex))
            else:
                self._set_state(e, NudState.PROBE, now)
                e.probes = 0
                self._arm(e, now + p.retrans_time)
                self._probe(e, p, now)
        elif st is NudState.PROBE or st is NudState.INCOMPLETE:
            # neigh_max_probes(): mcast_reprobes (0) in PROBE, mcast_probes otherwise.
            limit = p.ucast_probes + p.app_probes + (
                0 if st is NudState.PROBE else p.mcast_probes)
            if e.probes >= limit:
                self._set_state(e, NudState.FAILED, now)
                self.stats["res_failed"] += 1
                queued = list(e.queue)
                e.queue.clear()
                e.queue_bytes = 0
                self.owner.neigh_failed(e, queued, now)
            else:
                self._arm(e, now + p.retrans_time)
                self._probe(e, p, now)
