"""Python hook plugins: an operator's function registered at a hook and priority.

The function is called as ``fn(view)`` with a view.PacketView and returns a verdict:
a Verdict / int (hooks.py, ``nf_queue_verdict(n)`` for QUEUE), one of the strings
"accept", "drop", "stolen", "repeat", or None (= accept).  Any exception, or a value
that is not a verdict, is counted (``errors``), reported as an Event
``nf.plugin_error`` (rate-limited: ERROR_EVENTS_BURST, then one per second) and the
packet gets the plugin's declared ``on_error`` verdict (a drop is counted as
NF_PLUGIN_ERROR).  The import of the module happens in control (nf_build.py); the
core only holds the function.

A plugin runs synchronously on the dataplane: a slow one slows every port (the
shell's batch bound still applies); it must not block.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from ..actions import Event
from ..drops import DropReason
from .hooks import NF_ACCEPT, NF_DROP, NF_REPEAT, NF_STOLEN, HookEntry, HookState
from .view import PacketView

if TYPE_CHECKING:
    from ..packet import PacketBuf

ERROR_EVENTS_BURST = 10
_NAMED = {"accept": NF_ACCEPT, "drop": NF_DROP, "stolen": NF_STOLEN, "repeat": NF_REPEAT}


class Plugin:
    def __init__(self, name: str, fn: Callable[[PacketView], Any], on_error: str) -> None:
        self.name = name
        self.fn = fn
        self.on_error = NF_DROP if on_error == "drop" else NF_ACCEPT
        self.calls = 0
        self.errors = 0
        self._tokens = float(ERROR_EVENTS_BURST)
        self._stamp: int | None = None

    def entry(self, priority: int) -> HookEntry:
        return HookEntry(self._call, priority, f"plugin {self.name}")

    def _call(self, pkt: PacketBuf, st: HookState) -> int:
        self.calls += 1
        try:
            v = self.fn(PacketView(pkt, st))
            if v is None:
                return NF_ACCEPT
            if isinstance(v, str):
                return _NAMED[v.lower()]
            if isinstance(v, int) and not isinstance(v, bool) and 0 <= v & 0xFF <= 4:
                return int(v)
            raise TypeError(f"returned {v!r}, not a verdict")
        except Exception as e:                       # noqa: BLE001 (operator code)
            self.errors += 1
            self._report(st, e)
            if self.on_error == NF_DROP:
                st.reason = DropReason.NF_PLUGIN_ERROR
            return self.on_error

    def _report(self, st: HookState, e: Exception) -> None:
        now = st.now
        if self._stamp is not None:
            self._tokens = min(float(ERROR_EVENTS_BURST),
                               self._tokens + (now - self._stamp) / 1_000_000_000)
        self._stamp = now
        if self._tokens >= 1:
            self._tokens -= 1
            st.router.events.append(Event("nf.plugin_error", {
                "plugin": self.name, "hook": st.hook.name.lower(), "error": repr(e)[:200],
                "errors": self.errors}))

    def stats(self) -> dict[str, Any]:
        return {"plugin": self.name, "calls": self.calls, "errors": self.errors,
                "on_error": "drop" if self.on_error == NF_DROP else "accept"}
