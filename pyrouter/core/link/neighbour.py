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

Timers run through the core's TimerQueue under the key ("neigh", ifindex, addr);
an entry's ``deadline`` is its only live timer.  Packets waiting on resolution
sit in a per-entry queue bounded in bytes (unres_qlen_bytes, counted in
approximate skb truesize); when full the oldest is dropped, as
__neigh_event_send() does.  The table is bounded by gc_thresh3: a forced GC
removes FAILED and unreferenced STALE entries, and if the table is still full
the new entry is refused.

Invariants: an entry in REACHABLE/STALE/DELAY/PROBE/PERMANENT has an lladdr;
only INCOMPLETE entries hold queued packets; every state change bumps
``generation`` so the forwarding cache can tell it is out of date.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from ..time import SECOND, Instant, TimerQueue


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
    """Per-interface knobs with the kernel's defaults (/proc/sys/net/ipv4/neigh/default)."""

    base_reachable_time: int = 30 * SECOND
    retrans_time: int = 1 * SECOND
    delay_first_probe_time: int = 5 * SECOND
    gc_stale_time: int = 60 * SECOND
    ucast_probes: int = 3
    mcast_probes: int = 3
    locktime: int = 1 * SECOND
    unres_qlen_bytes: int = 212992
    gc_thresh1: int = 128
    gc_thresh2: int = 512
    gc_thresh3: int = 1024


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
    """All neighbour entries of one family; see the module docstring."""

    timer_kind = "neigh"          # the TimerQueue key's first element ("neigh6" for NDISC)

    def __init__(self, owner: NeighOwner, timers: TimerQueue, rng: Any,
                 params: NeighParams | None = None) -> None:
        self.owner = owner
        self.timers = timers
        self.rng = rng
        self.params = params or NeighParams()
        self.entries: dict[tuple[int, int], NeighbourEntry] = {}
        self.generation = 0
        self.reachable_time = self._rand_reach_time()
        self.stats = {"allocs": 0, "destroys": 0, "forced_gc_runs": 0, "table_fulls": 0,
                      "res_failed": 0, "unres_discards": 0}

    # -- helpers ---------------------------------------------------------
    def _rand_reach_time(self) -> int:
        """neigh_rand_reach_time(): uniform in [base/2, 3*base/2)."""
        base = self.params.base_reachable_time
        return base // 2 + int(self.rng.random() * base)

    def _set_state(self, e: NeighbourEntry, state: NudState, now: Instant) -> None:
        e.state = state
        e.updated = now
        self.generation += 1
        self.owner.neigh_changed()

    def _arm(self, e: NeighbourEntry, deadline: Instant) -> None:
        e.deadline = deadline
        self.timers.schedule(deadline, (self.timer_kind, e.ifindex, e.addr))

    def get(self, ifindex: int, addr: int) -> NeighbourEntry | None:
        return self.entries.get((ifindex, addr))

    def _create(self, ifindex: int, addr: int, now: Instant) -> NeighbourEntry | None:
        p = self.params
        if len(self.entries) >= p.gc_thresh3:
            self.forced_gc(now)
            if len(self.entries) >= p.gc_thresh3:
                self.stats["table_fulls"] += 1
                return None
        e = NeighbourEntry(ifindex, addr, updated=now, used=now)
        self.entries[(ifindex, addr)] = e
        self.stats["allocs"] += 1
        return e

    def forced_gc(self, now: Instant) -> int:
        """neigh_forced_gc(): drop FAILED entries and STALE ones not used lately."""
        self.stats["forced_gc_runs"] += 1
        victims = [k for k, e in self.entries.items()
                   if e.state is NudState.FAILED
                   or (e.state is NudState.STALE and now - e.used > self.params.gc_stale_time // 2)
                   or (e.state is NudState.STALE and len(self.entries) >= self.params.gc_thresh3)]
        for k in victims:
            self._destroy(k)
        return len(victims)

    def periodic_gc(self, now: Instant) -> None:
        """neigh_periodic_work(): above gc_thresh1, drop FAILED and long-unused STALE."""
        if len(self.entries) <= self.params.gc_thresh1:
            return
        stale = self.params.gc_stale_time
        for k in [k for k, e in self.entries.items()
                  if e.state is NudState.FAILED
                  or (e.state is NudState.STALE and now - e.used > stale)]:
            self._destroy(k)

    def _destroy(self, key: tuple[int, int]) -> None:
        e = self.entries.pop(key)
        e.deadline = None
        self.stats["destroys"] += 1
        self.generation += 1
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
        if st is NudState.STALE:
            self._set_state(e, NudState.DELAY, now)
            self._arm(e, now + self.params.delay_first_probe_time)
            return e.lladdr
        if st is not NudState.INCOMPLETE:        # FAILED or fresh: start resolving
            self._set_state(e, NudState.INCOMPLETE, now)
            e.probes = 0
            self._arm(e, now + self.params.retrans_time)
            if l3 is not None:
                self._queue(e, l3, ctx)
            e.probes += 1
            self.owner.neigh_solicit(e, False, now)
            return None
        if l3 is not None:
            self._queue(e, l3, ctx)
        return None

    def _queue(self, e: NeighbourEntry, l3: bytes, ctx: Any) -> None:
        size = len(l3) + SKB_TRUESIZE_OVERHEAD
        while e.queue and e.queue_bytes + size > self.params.unres_qlen_bytes:
            old, _ = e.queue.popleft()
            e.queue_bytes -= len(old) + SKB_TRUESIZE_OVERHEAD
            self.stats["unres_discards"] += 1
            self.owner.neigh_dropped(e, "queue_full")
        e.queue.append((l3, ctx))
        e.queue_bytes += size

    def update(self, ifindex: int, addr: int, lladdr: bytes, new: NudState, override: bool,
               now: Instant, create: bool = False) -> NeighbourEntry | None:
        """neigh_update(): a confirmation or a hint (STALE) carrying *lladdr*."""
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
                    # A different address within locktime: keep the old one.
                    return e
            elif new is NudState.STALE:
                # Same address, only a hint: keep the stronger state we have.
                new = old
        e.lladdr = lladdr
        if new is NudState.REACHABLE:
            e.confirmed = now
        if new is not old or new is NudState.REACHABLE:
            self._set_state(e, new, now)
        if new is NudState.REACHABLE:
            self._arm(e, now + self.reachable_time)
        elif new is NudState.STALE:
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
                self._arm(e, now + self.params.delay_first_probe_time)
            self.owner.neigh_resolved(e, queued)
        return e

    def add_permanent(self, ifindex: int, addr: int, lladdr: bytes, now: Instant) -> None:
        e = self.entries.get((ifindex, addr)) or NeighbourEntry(ifindex, addr)
        e.lladdr, e.deadline = lladdr, None
        self.entries[(ifindex, addr)] = e
        self._set_state(e, NudState.PERMANENT, now)

    def flush_dev(self, ifindex: int) -> None:
        """neigh_ifdown(): drop every non-permanent entry of a port (link down)."""
        for k in [k for k, e in self.entries.items()
                  if k[0] == ifindex and e.state is not NudState.PERMANENT]:
            for _ in self.entries[k].queue:
                self.owner.neigh_dropped(self.entries[k], "dead")
            self._destroy(k)

    def timer(self, key: tuple[int, int], deadline: Instant, now: Instant) -> None:
        """neigh_timer_handler()."""
        e = self.entries.get(key)
        if e is None or e.deadline != deadline:
            return                               # cancelled or re-armed: stale heap entry
        e.deadline = None
        p = self.params
        st = e.state
        if st is NudState.REACHABLE:
            if now < e.confirmed + self.reachable_time:
                self._arm(e, e.confirmed + self.reachable_time)
            elif now < e.used + p.delay_first_probe_time:
                self._set_state(e, NudState.DELAY, now)
                self._arm(e, now + p.delay_first_probe_time)
            else:
                self._set_state(e, NudState.STALE, now)
        elif st is NudState.DELAY:
            if now < e.confirmed + p.delay_first_probe_time:
                self._set_state(e, NudState.REACHABLE, now)
                self._arm(e, e.confirmed + self.reachable_time)
            else:
                self._set_state(e, NudState.PROBE, now)
                e.probes = 1
                self._arm(e, now + p.retrans_time)
                self.owner.neigh_solicit(e, True, now)
        elif st is NudState.PROBE or st is NudState.INCOMPLETE:
            limit = p.ucast_probes if st is NudState.PROBE else p.mcast_probes
            if e.probes >= limit:
                self._set_state(e, NudState.FAILED, now)
                self.stats["res_failed"] += 1
                queued = list(e.queue)
                e.queue.clear()
                e.queue_bytes = 0
                self.owner.neigh_failed(e, queued, now)
            else:
                e.probes += 1
                self._arm(e, now + p.retrans_time)
                self.owner.neigh_solicit(e, st is NudState.PROBE, now)

    def rerandomize(self) -> None:
        """Called every 300 s, as neigh_periodic_work() re-picks reachable_time."""
        self.reachable_time = self._rand_reach_time()
