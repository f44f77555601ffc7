"""Hook registry and nf_hook_slow() (net/netfilter/core.c), with nf_queue.

Hooks (enum nf_inet_hooks): PRE_ROUTING 0, LOCAL_IN 1, FORWARD 2, LOCAL_OUT 3,
POST_ROUTING 4, per family (4, 6; an ``inet`` entry registers in both).  Entries
run in ascending priority (enum nf_ip_hook_priorities: raw -300, conntrack -200,
mangle -150, dstnat -100, filter 0, security 50, srcnat 100, confirm last), ties
in registration order.  An entry is ``fn(pkt, state) -> verdict``:

* ACCEPT: the next entry runs; after the last one the packet continues (okfn);
* DROP: counted under a DropReason (NF_DROP unless the entry says otherwise in
  ``state.reason``), the packet is gone;
* STOLEN: the entry owns the packet; pyrouter forgets it, nothing is counted;
* QUEUE (``nf_queue_verdict(num, bypass)``): the packet waits in queue *num*
  (bounded: ``NfQueue.maxlen``); a consumer later calls ``Netfilter.reinject``
  with a verdict and the remaining entries then the okfn run.  Queue full, or no
  queue bound: with the bypass flag (or the queue's fail_open) the packet is
  accepted, else dropped (NF_QUEUE_FULL / NF_QUEUE_NO_CONSUMER).  Waiting is
  bounded in time too (a pyrouter addition; the kernel waits for its listener):
  ``NfQueue.timeout`` ns after it was queued a router timer ``("nfq", num, id)``
  gives the packet the queue's failure verdict (fail_open: accept, else drop
  NF_QUEUE_TIMEOUT).  A queue with a ``consumer`` (set from the config) hands each
  new packet to the shell through ``Netfilter.wakeup`` / ``take_fresh`` (see
  shell/nfqueue.py); the core never calls the consumer;
* REPEAT: the same entry is called again (at most REPEAT_MAX times, then dropped).

Cost when nothing is registered: call sites test ``r.nf.v4[hook]`` (an empty
tuple) before building anything, and the forwarding cache is not filled while a
PRE_ROUTING, FORWARD or POST_ROUTING entry exists (``Netfilter.fwd_bypass``), so
Router.receive's fast path never skips a hook.  The per-flow path (flowtable.py)
replaces it only while every entry there is ``flow_safe`` (``Netfilter.flow4/6``).

Invariants: queues and repeats are bounded (length and time; ``fresh`` only holds
packets that are also waiting, pruned at FRESH_MAX); an exception from an entry never
leaves nf_hook (entries wrap user code themselves, see plugins; a core entry
raising is counted INTERNAL_ERROR and dropped).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Callable

from ..actions import Event
from ..drops import DropReason

if TYPE_CHECKING:
    from ..packet import PacketBuf
    from ..port import Port
    from ..router import Router

NF_DROP, NF_ACCEPT, NF_STOLEN, NF_QUEUE, NF_REPEAT = 0, 1, 2, 3, 4
NF_VERDICT_MASK = 0xFF
NF_VERDICT_FLAG_QUEUE_BYPASS = 0x8000
NF_VERDICT_QBITS = 16
REPEAT_MAX = 16
QUEUE_TIMEOUT_DEFAULT = 1_000_000_000   # ns a queued packet may wait for its verdict
FRESH_MAX = 65536
EVENTS_BURST = 10
_NS = 1_000_000_000


class Verdict(IntEnum):
    DROP = NF_DROP
    ACCEPT = NF_ACCEPT
    STOLEN = NF_STOLEN
    QUEUE = NF_QUEUE
    REPEAT = NF_REPEAT


def nf_queue_verdict(num: int, bypass: bool = False) -> int:
    """NF_QUEUE_NR(num), optionally with NF_VERDICT_FLAG_QUEUE_BYPASS."""
    return NF_QUEUE | (num << NF_VERDICT_QBITS) | (NF_VERDICT_FLAG_QUEUE_BYPASS if bypass else 0)


class Hook(IntEnum):
    PRE_ROUTING = 0
    LOCAL_IN = 1
    FORWARD = 2
    LOCAL_OUT = 3
    POST_ROUTING = 4


HOOK_NAMES = {"prerouting": Hook.PRE_ROUTING, "input": Hook.LOCAL_IN, "forward": Hook.FORWARD,
              "output": Hook.LOCAL_OUT, "postrouting": Hook.POST_ROUTING}

# enum nf_ip_hook_priorities (the IPv6 ones are the same numbers).
PRIO_FIRST = -(2**31)
PRIO_RAW = -300
PRIO_CONNTRACK = -200
PRIO_MANGLE = -150
PRIO_NAT_DST = -100
PRIO_FILTER = 0
PRIO_SECURITY = 50
PRIO_NAT_SRC = 100
PRIO_CONNTRACK_CONFIRM = 2**31 - 1
PRIO_NAMES = {"raw": PRIO_RAW, "mangle": PRIO_MANGLE, "dstnat": PRIO_NAT_DST,
              "filter": PRIO_FILTER, "security": PRIO_SECURITY, "srcnat": PRIO_NAT_SRC}

HookFn = Callable[["PacketBuf", "HookState"], int]
OkFn = Callable[[int], None]


@dataclass(slots=True)
class HookEntry:
    fn: HookFn
    priority: int = PRIO_FILTER
    name: str = ""
    seq: int = 0                      # registration order, breaks priority ties
    # True when the entry treats every packet of an established flow alike given the
    # fields flowtable.py pins (nft chains report their exceptions through
    # Router.flow_rec; conntrack and NAT are replayed), so a per-flow entry may skip it.
    flow_safe: bool = False


@dataclass(slots=True)
class HookState:
    """struct nf_hook_state: what an entry knows besides the packet."""

    router: Router
    hook: Hook
    pf: int                           # 4 or 6
    indev: Port | None
    outdev: Port | None
    now: int
    reason: DropReason | None = None  # an entry returning DROP may name why
    note: dict[str, Any] | None = None


class EventBudget:
    """A token bucket for log Events (EVENTS_BURST, then one per second of ``now``)."""

    __slots__ = ("_stamp", "_tokens", "suppressed")

    def __init__(self) -> None:
        self._tokens = float(EVENTS_BURST)
        self._stamp: int | None = None
        self.suppressed = 0

    def allow(self, now: int) -> bool:
        if self._stamp is not None:
            self._tokens = min(float(EVENTS_BURST), self._tokens + (now - self._stamp) / _NS)
        self._stamp = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        self.suppressed += 1
        return False


@dataclass(slots=True)
class Queued:
    id: int
    pkt: PacketBuf
    state: HookState
    index: int                        # the entry that queued it
    entries: tuple[HookEntry, ...]
    okfn: OkFn
    num: int = 0                      # the queue number
    deadline: int = 0                 # the timeout (0: none)
    done: bool = False                # verdict given (or timed out): no longer waiting


@dataclass(slots=True)
class NfQueue:
    """One queue number (nfnetlink_queue's instance): bounded in length and time,
    fail-open or closed; ``consumer`` is the configured callable (run by the shell)."""

    num: int
    maxlen: int = 1024
    fail_open: bool = False
    timeout: int = QUEUE_TIMEOUT_DEFAULT   # ns; 0: wait until reinjected
    consumer: Any = None
    name: str = ""                    # the consumer's "module.function"
    configured: bool = False          # from the config's nf_queues (reload may remove it)
    waiting: OrderedDict[int, Queued] = field(default_factory=OrderedDict)
    dropped: int = 0                  # queue_dropped: overflow
    total: int = 0
    accepted: int = 0                 # verdicts given by a consumer (reinject)
    rejected: int = 0                 # ... a drop
    timeouts: int = 0                 # the timeout gave the failure verdict
    errors: int = 0                   # the consumer raised or returned no verdict (shell)
    budget: EventBudget = field(default_factory=EventBudget)

    def stats(self) -> dict[str, Any]:
        return {"num": self.num, "consumer": self.name or None, "waiting": len(self.waiting),
                "maxlen": self.maxlen, "fail_open": self.fail_open,
                "timeout_ms": self.timeout // 1_000_000, "total": self.total,
                "dropped": self.dropped, "accepted": self.accepted, "rejected": self.rejected,
                "timeouts": self.timeouts, "errors": self.errors}


class Netfilter:
    """The router's hook table: ``v4[hook]`` / ``v6[hook]`` are sorted tuples."""

    def __init__(self, fwd_cache: dict[Any, Any] | None = None) -> None:
        # The router's forwarding cache: cleared on every registration, so the fast path
        # (which runs no hooks) never serves a destination once an entry exists.
        self._fwd_cache = fwd_cache if fwd_cache is not None else {}
        self.v4: list[tuple[HookEntry, ...]] = [()] * 5
        self.v6: list[tuple[HookEntry, ...]] = [()] * 5
        self.queues: dict[int, NfQueue] = {}
        self.flow4 = False                # flowtable.py may probe / replay (see _recalc)
        self.flow6 = False
        self._ct = [False, False]         # conntrack registered for IPv4, IPv6
        self._seq = 0
        self._qid = 0
        self.ruleset: Any = None          # nft_compile.Ruleset installed by control
        self.plugins: list[Any] = []      # plugin wrappers (counters, errors)
        # Queue consumers (shell/nfqueue.py): packets of queues with a consumer, not yet
        # handed out; ``wakeup`` is the shell's callback (None: nobody runs consumers).
        self.fresh: list[Queued] = []
        self.wakeup: Callable[[], None] | None = None
        self._orphans: dict[int, tuple[Queued, NfQueue]] = {}   # of queues a reload removed
        from .conntrack import ConnTrack
        self.conntrack = ConnTrack()      # kept across reloads (adopt)

    def __deepcopy__(self, memo: dict[int, Any]) -> Netfilter:
        """For ``explain`` (core/trace.py runs a deep copy of the router): the ruleset is
        compiled afresh so the copy's counters, limits and log budget are its own; plugin
        entries are shared (their functions cannot be copied); queues start empty."""
        new = Netfilter(copy.deepcopy(self._fwd_cache, memo))   # the copy's own cache
        own: set[int] = set()
        rs = self.ruleset
        if rs is not None:
            own = {id(e) for e in rs.entries()}
            rs.recompile().install(new)
        for fam, table in ((4, self.v4), (6, self.v6)):
            for h in range(5):
                for e in table[h]:
                    if id(e) not in own:
                        new.register(fam, Hook(h), e)
        new.plugins = list(self.plugins)
        for num, q in self.queues.items():          # same parameters, nothing waiting
            new.queues[num] = NfQueue(num, q.maxlen, q.fail_open, q.timeout, q.consumer,
                                      q.name, q.configured)
        new.conntrack = copy.deepcopy(self.conntrack, memo)
        memo[id(self)] = new
        return new

    # -- registration ----------------------------------------------------------
    def register(self, pf: int, hook: Hook, entry: HookEntry) -> HookEntry:
        """nf_register_net_hook(); pf 0 (inet) registers in both families."""
        self._seq += 1
        entry.seq = self._seq
        for fam in ((4, 6) if pf == 0 else (pf,)):
            table = self.v4 if fam == 4 else self.v6
            table[hook] = tuple(sorted(table[hook] + (entry,),
                                       key=lambda e: (e.priority, e.seq)))
        self._fwd_cache.clear()
        self._recalc()
        return entry

    def unregister(self, entry: HookEntry) -> None:
        for table in (self.v4, self.v6):
            for h in range(5):
                if entry in table[h]:
                    table[h] = tuple(e for e in table[h] if e is not entry)
        self._fwd_cache.clear()
        self._recalc()

    def clear(self) -> None:
        self.v4 = [()] * 5
        self.v6 = [()] * 5
        self._fwd_cache.clear()
        self._recalc()

    def _recalc(self) -> None:
        """flow4/flow6: some entry sits on a forwarding hook (so the destination cache is
        off) and every one there is flow-safe (so per-flow entries are exact)."""
        for i, t in enumerate((self.v4, self.v6)):
            fwd = t[0] + t[2] + t[4]
            ok = bool(fwd) and all(e.flow_safe for e in fwd)
            self._ct[i] = any(e.name == "nf_conntrack_in" for e in t[0])
            if i == 0:
                self.flow4 = ok
            else:
                self.flow6 = ok

    def ct_registered(self, pf: int) -> bool:
        return self._ct[0 if pf == 4 else 1]

    def fwd_bypass(self, pf: int) -> bool:
        """True when the forwarding cache must not be used for *pf*: some entry sits
        on a hook every forwarded packet passes."""
        t = self.v4 if pf == 4 else self.v6
        return bool(t[0] or t[2] or t[4])

    def adopt(self, new: Netfilter) -> None:
        """Take *new*'s entries (a reloaded config) in one step; queues stay."""
        self.v4, self.v6 = new.v4, new.v6
        self.ruleset, self.plugins = new.ruleset, new.plugins
        self.conntrack.settings_from(new.conntrack)  # the entries stay (survive reloads)
        self._fwd_cache.clear()
        self._recalc()
        for num, q in new.queues.items():
            old = self.queues.get(num)
            if old is None:
                self.queues[num] = q
            else:
                old.maxlen, old.fail_open, old.timeout = q.maxlen, q.fail_open, q.timeout
                old.consumer, old.name, old.configured = q.consumer, q.name, q.configured
        for num in [n for n, q in self.queues.items() if q.configured and n not in new.queues]:
            # A queue the new config no longer has: what still waits keeps its deadline
            # (a verdict may still come; the timer applies the failure verdict).
            q = self.queues.pop(num)
            for qid, item in q.waiting.items():
                self._orphans[qid] = (item, q)
            q.waiting.clear()

    # -- queue consumer API -------------------------------------------------------
    def bind_queue(self, num: int, maxlen: int = 1024, fail_open: bool = False,
                   timeout: int = QUEUE_TIMEOUT_DEFAULT, consumer: Any = None,
                   name: str = "") -> NfQueue:
        q = self.queues.get(num)
        if q is None:
            q = self.queues[num] = NfQueue(num, maxlen, fail_open, timeout, consumer, name)
        else:
            q.maxlen, q.fail_open, q.timeout = maxlen, fail_open, timeout
            q.consumer, q.name = consumer, name
        return q

    def unbind_queue(self, r: Router, num: int, now: int) -> None:
        """Packets still waiting are dropped (the kernel flushes an unbound instance)."""
        q = self.queues.pop(num, None)
        if q is not None:
            for item in list(q.waiting.values()):
                item.done = True
                r.drop(DropReason.NF_QUEUE_NO_CONSUMER)
            q.waiting.clear()

    def pending(self, num: int) -> list[Queued]:
        q = self.queues.get(num)
        return list(q.waiting.values()) if q is not None else []

    def take_fresh(self) -> list[Queued]:
        """The packets queued for a consumer since the last call, still waiting."""
        fresh, self.fresh = self.fresh, []
        return [i for i in fresh if not i.done]

    def queued(self) -> int:
        return sum(len(q.waiting) for q in self.queues.values()) + len(self._orphans)

    def _take(self, qid: int, num: int | None = None) -> tuple[Queued, NfQueue] | None:
        qs = (self.queues.get(num),) if num is not None else tuple(self.queues.values())
        for q in qs:
            if q is not None:
                item = q.waiting.pop(qid, None)
                if item is not None:
                    item.done = True
                    return item, q
        got = self._orphans.pop(qid, None)
        if got is not None:
            got[0].done = True
        return got

    def reinject(self, r: Router, qid: int, verdict: int, now: int) -> bool:
        """nf_reinject(): the consumer's verdict for packet *qid*; False if unknown
        (already given, timed out or flushed)."""
        got = self._take(qid)
        if got is None:
            return False
        item, q = got
        if verdict & NF_VERDICT_MASK == NF_DROP:
            q.rejected += 1
        else:
            q.accepted += 1
        try:
            self._reinject(r, item, verdict, now)
        except Exception:                        # noqa: BLE001 (e.g. its port went away)
            r.drop(DropReason.INTERNAL_ERROR)
        return True

    def queue_timer(self, r: Router, num: int, qid: int, now: int) -> None:
        """Router timer ``("nfq", num, qid)``: no verdict in time, the failure verdict."""
        got = self._take(qid, num)
        if got is None:
            return                               # answered in time (a stale timer)
        item, q = got
        q.timeouts += 1
        if q.budget.allow(now):
            r.events.append(Event("nf.queue_timeout", {
                "queue": q.num, "consumer": q.name or None, "timeouts": q.timeouts,
                "verdict": "accept" if q.fail_open else "drop"}))
        if q.fail_open:
            try:
                self._reinject(r, item, NF_ACCEPT, now)
            except Exception:                    # noqa: BLE001
                r.drop(DropReason.INTERNAL_ERROR)
        else:
            r.drop(DropReason.NF_QUEUE_TIMEOUT, item.state.indev)

    def alive_timers(self) -> set[tuple[int, Any]]:
        """The live ``("nfq", ...)`` heap entries, for Router._compact_timers."""
        out = {(i.deadline, ("nfq", q.num, i.id)) for q in self.queues.values()
               for i in q.waiting.values() if i.deadline}
        out |= {(i.deadline, ("nfq", q.num, i.id)) for i, q in self._orphans.values()
                if i.deadline}
        return out

    def stats(self) -> dict[str, Any]:
        """Counters of the plugins and queues (Router.snapshot, show stats, metrics)."""
        return {"plugins": [p.stats() for p in self.plugins],
                "queues": [q.stats() for q in self.queues.values()]}

    def _reinject(self, r: Router, item: Queued, verdict: int, now: int) -> None:
        st = item.state
        st.now = now
        v = verdict & NF_VERDICT_MASK
        if v == NF_REPEAT:
            start = item.index
        elif v == NF_ACCEPT:
            start = item.index + 1
        else:
            start = item.index
        if v == NF_ACCEPT or v == NF_REPEAT:
            if _run(r, item.pkt, st, item.entries, start, item.okfn):
                item.okfn(now)
        elif v == NF_DROP:
            r.drop(st.reason or DropReason.NF_DROP)
        elif v == NF_QUEUE:
            if _enqueue(r, item.pkt, st, item.entries, item.index, item.okfn, verdict):
                item.okfn(now)


def nf_hook(r: Router, entries: tuple[HookEntry, ...], hook: Hook, pf: int, pkt: PacketBuf,
            indev: Port | None, outdev: Port | None, now: int, okfn: OkFn) -> bool:
    """NF_HOOK(): True when every entry accepted and the caller should continue
    itself (the okfn is only used when a queued packet is reinjected later)."""
    st = HookState(r, hook, pf, indev, outdev, now)
    return _run(r, pkt, st, entries, 0, okfn)


def _run(r: Router, pkt: PacketBuf, st: HookState, entries: tuple[HookEntry, ...], i: int,
         okfn: OkFn) -> bool:
    n = len(entries)
    repeats = 0
    while i < n:
        e = entries[i]
        try:
            v = e.fn(pkt, st)
        except Exception:                        # noqa: BLE001 (a core entry's bug)
            r.drop(DropReason.INTERNAL_ERROR)
            return False
        code = v & NF_VERDICT_MASK
        if code == NF_ACCEPT:
            i += 1
            repeats = 0
            continue
        if code == NF_DROP:
            r.drop(st.reason or DropReason.NF_DROP, st.indev)
            if r.trace is not None:
                r.note("nf_drop", hook=st.hook.name, entry=e.name, **(st.note or {}))
            return False
        if code == NF_STOLEN:
            if r.trace is not None:
                r.note("nf_stolen", hook=st.hook.name, entry=e.name)
            return False
        if code == NF_QUEUE:
            return _enqueue(r, pkt, st, entries, i, okfn, v)
        if code == NF_REPEAT:
            repeats += 1
            if repeats > REPEAT_MAX:
                r.drop(DropReason.NF_REPEAT_LOOP, st.indev)
                return False
            continue
        r.drop(DropReason.NF_DROP, st.indev)     # unknown verdict: the kernel drops
        return False
    return True


def _enqueue(r: Router, pkt: PacketBuf, st: HookState, entries: tuple[HookEntry, ...],
             i: int, okfn: OkFn, v: int) -> bool:
    """nf_queue(); True means "bypass: continue as if accepted"."""
    num = v >> NF_VERDICT_QBITS
    bypass = bool(v & NF_VERDICT_FLAG_QUEUE_BYPASS)
    nf = r.nf
    q = nf.queues.get(num)
    if q is None:
        if bypass:
            return _run(r, pkt, st, entries, i + 1, okfn)
        r.drop(DropReason.NF_QUEUE_NO_CONSUMER, st.indev)
        return False
    if len(q.waiting) >= q.maxlen:
        q.dropped += 1
        if bypass or q.fail_open:
            return _run(r, pkt, st, entries, i + 1, okfn)
        r.drop(DropReason.NF_QUEUE_FULL, st.indev)
        return False
    nf._qid += 1
    q.total += 1
    qid = nf._qid
    item = Queued(qid, pkt, st, i, entries, okfn, num)
    q.waiting[qid] = item
    if q.timeout:
        item.deadline = st.now + q.timeout
        r.timers.schedule(item.deadline, ("nfq", num, qid))
    if q.consumer is not None and nf.wakeup is not None:
        fresh = nf.fresh
        fresh.append(item)
        if len(fresh) > FRESH_MAX:
            nf.fresh = [x for x in fresh if not x.done]
        nf.wakeup()
    if r.trace is not None:
        r.note("nf_queue", hook=st.hook.name, queue=num, id=qid)
    return False
