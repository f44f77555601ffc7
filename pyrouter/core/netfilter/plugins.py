"""Python hook plugins: an operator's function registered at a hook and priority.

The function is called as ``fn(view)`` with a view.PacketView and returns a verdict:
a Verdict / int (hooks.py, ``nf_queue_verdict(n)`` for QUEUE), one of the strings
"accept", "drop", "stolen", "repeat", or None (= accept).  Any exception, or a value
that is not a verdict, is counted (``errors``), reported as an Event
``nf.plugin_error`` (rate-limited: EVENTS_BURST, then one per second) and the
packet gets the plugin's declared ``on_error`` verdict (a drop is counted as
NF_PLUGIN_ERROR).  The import of the module happens in control (nf_build.py); the
core only holds the function.  Verdicts are counted per kind (``verdicts``).

Time bound.  A plugin runs synchronously on the dataplane, and Python code cannot be
pre-empted inside its thread: a call that takes 50 ms stalls every port for 50 ms,
and nothing here can stop that one call.  What the core does is bound the damage
(a circuit breaker, as a watchdog would): each call is timed with the clock the
control ring hands in (``time.perf_counter_ns``; tests pass a fake one), a call
longer than ``budget`` ns is *slow* (counted, ``nf.plugin_slow`` Event, rate-limited)
and adds one to a leaky bucket that drains by one per second of packet time; when
the bucket holds more than ``max_slow`` the plugin is *disabled*
(``nf.plugin_disabled``): it is no longer called and every packet gets its
``on_error`` verdict at once (a drop counted as NF_PLUGIN_SLOW).  After
``retry_after`` ns (None: never, until a reload builds a fresh plugin) one call is
tried again (half-open); a slow one disables it again at once.  Code that needs to
wait (a lookup, a disk write) belongs in a QUEUE consumer (shell/nfqueue.py), which
runs off the packet path.

Invariant: an exception from operator code never leaves ``_call``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from ..actions import Event
from ..drops import DropReason
from .hooks import (NF_ACCEPT, NF_DROP, NF_REPEAT, NF_STOLEN, EventBudget, HookEntry,
                    HookState)
from .view import PacketView

if TYPE_CHECKING:
    from ..packet import PacketBuf

MS = 1_000_000
BUDGET_DEFAULT = 5 * MS
MAX_SLOW_DEFAULT = 5
_SECOND = 1_000_000_000
_NAMED = {"accept": NF_ACCEPT, "drop": NF_DROP, "stolen": NF_STOLEN, "repeat": NF_REPEAT}
VERDICT_NAMES = ("drop", "accept", "stolen", "queue", "repeat")


def as_verdict(v: Any) -> int:
    """A plugin's or consumer's return value as a verdict; TypeError/KeyError if none."""
    if v is None:
        return NF_ACCEPT
    if isinstance(v, str):
        return _NAMED[v.lower()]
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v & 0xFF <= 4:
        return int(v)
    raise TypeError(f"returned {v!r}, not a verdict")


class Plugin:
    def __init__(self, name: str, fn: Callable[[PacketView], Any], on_error: str,
                 budget: int = BUDGET_DEFAULT, max_slow: int = MAX_SLOW_DEFAULT,
                 retry_after: int | None = None, clock: Callable[[], int] | None = None,
                 hook: str = "") -> None:
        self.name = name
        self.hook = hook
        self.fn = fn
        self.on_error = NF_DROP if on_error == "drop" else NF_ACCEPT
        self.budget = budget
        self.max_slow = max_slow
        self.retry_after = retry_after
        self.clock = clock                # None: calls are not timed
        self.calls = 0
        self.errors = 0
        self.slow = 0                     # calls over budget
        self.skipped = 0                  # packets not shown to a disabled plugin
        self.trips = 0                    # times the breaker opened
        self.time_ns = 0                  # total time in the function
        self.max_ns = 0
        self.verdicts = [0, 0, 0, 0, 0]   # by NF_DROP .. NF_REPEAT
        self.disabled = False
        self._retry_at = 0
        self._score = 0.0                 # the leaky bucket of slow calls
        self._stamp: int | None = None
        self._errors_budget = EventBudget()
        self._slow_budget = EventBudget()

    def entry(self, priority: int) -> HookEntry:
        return HookEntry(self._call, priority, f"plugin {self.name}")

    def _call(self, pkt: PacketBuf, st: HookState) -> int:
        if self.disabled:
            if self.retry_after is None or st.now < self._retry_at:
                self.skipped += 1
                if self.on_error == NF_DROP:
                    st.reason = DropReason.NF_PLUGIN_SLOW
                self.verdicts[self.on_error] += 1
                return self.on_error
            self.disabled = False         # half-open: one more slow call trips it again
            self._score = float(self.max_slow)
            self._stamp = st.now
        self.calls += 1
        clock = self.clock
        t0 = clock() if clock is not None else 0
        try:
            code = as_verdict(self.fn(PacketView(pkt, st)))
        except Exception as e:                       # noqa: BLE001 (operator code)
            self.errors += 1
            if self._errors_budget.allow(st.now):
                st.router.events.append(Event("nf.plugin_error", {
                    "plugin": self.name, "hook": st.hook.name.lower(),
                    "error": repr(e)[:200], "errors": self.errors}))
            if self.on_error == NF_DROP:
                st.reason = DropReason.NF_PLUGIN_ERROR
            code = self.on_error
        if clock is not None:
            dt = clock() - t0
            self.time_ns += dt
            if dt > self.max_ns:
                self.max_ns = dt
            if dt > self.budget:
                self._overrun(st, dt)
        self.verdicts[code & 0xFF] += 1
        return code

    def _overrun(self, st: HookState, dt: int) -> None:
        self.slow += 1
        now = st.now
        if self._stamp is not None:
            self._score = max(0.0, self._score - (now - self._stamp) / _SECOND)
        self._stamp = now
        self._score += 1
        if self._slow_budget.allow(now):
            st.router.events.append(Event("nf.plugin_slow", {
                "plugin": self.name, "hook": st.hook.name.lower(), "ms": round(dt / MS, 3),
                "budget_ms": self.budget / MS, "slow": self.slow}))
        if self._score > self.max_slow:
            self.disabled = True
            self.trips += 1
            if self.retry_after is not None:
                self._retry_at = now + self.retry_after
            st.router.events.append(Event("nf.plugin_disabled", {
                "plugin": self.name, "hook": st.hook.name.lower(), "slow": self.slow,
                "verdict": "drop" if self.on_error == NF_DROP else "accept",
                "retry_after_s": None if self.retry_after is None
                else self.retry_after / _SECOND}))

    def stats(self) -> dict[str, Any]:
        return {"plugin": self.name, "hook": self.hook, "calls": self.calls,
                "errors": self.errors, "slow": self.slow, "skipped": self.skipped,
                "trips": self.trips, "disabled": self.disabled,
                "budget_ms": self.budget / MS, "time_ms": round(self.time_ns / MS, 3),
                "max_ms": round(self.max_ns / MS, 3),
                "verdicts": dict(zip(VERDICT_NAMES, self.verdicts)),
                "on_error": "drop" if self.on_error == NF_DROP else "accept"}
