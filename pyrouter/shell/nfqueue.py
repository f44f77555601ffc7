"""QUEUE consumers: run the ``nf_queues:`` callables off the packet path, on trio.

The user-space side of nfnetlink_queue, in-process: a packet a rule (``queue num N``)
or a plugin queued to a queue with a consumer is handed to ``consumer(view)`` (a
core/netfilter/view.PacketView of the waiting packet) in a task of its own, so many
packets can be waiting for their verdicts at once.  The consumer may be sync or async
(trio: it may ``await`` a lookup, a sleep, a worker thread); its return value is a
verdict as for plugins (None/"accept", "drop", an int); then the packet is reinjected
(``Netfilter.reinject``: the remaining hook entries, then its way on) and what it
produced is written out at once.

Bounds: the core holds at most ``maxlen`` packets per queue and gives each the failure
verdict ``timeout_ms`` after it was queued (core/netfilter/hooks.py, a router timer);
the consumer's task is cancelled at that deadline, so at most ``maxlen`` tasks per
queue exist.  A consumer that raises, or returns no verdict, is counted
(``NfQueue.errors``), logged rate-limited (``nf.queue_consumer_error``) and the packet
gets the queue's failure verdict (fail_open: accept, else drop NF_PLUGIN_ERROR).  A
sync consumer runs on the loop like a hook plugin and must not block.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

import trio

from ..core import DropReason
from ..core.netfilter.hooks import NF_ACCEPT, NF_DROP, EventBudget, Queued
from ..core.netfilter.plugins import as_verdict
from ..core.netfilter.view import PacketView

if TYPE_CHECKING:
    from .app import App

NS = 1_000_000_000
GRACE = 0.05          # seconds past the core's deadline before the task gives up


class QueueRunner:
    """Owns ``Router.nf.wakeup``; one task per queued packet (see module docstring)."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._wake = trio.Event()
        self._errors = EventBudget()
        self.running = 0

    def wake(self) -> None:
        self._wake.set()

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        nf = self.app.router.nf        # reload keeps this object (Netfilter.adopt)
        nf.wakeup = self.wake
        try:
            async with trio.open_nursery() as nursery:
                task_status.started()
                while True:
                    await self._wake.wait()
                    self._wake = trio.Event()
                    for item in nf.take_fresh():
                        nursery.start_soon(self._one, item)
        finally:
            nf.wakeup = None

    async def _one(self, item: Queued) -> None:
        app = self.app
        r = app.router
        q = r.nf.queues.get(item.num)
        if q is None or q.consumer is None or item.done:
            return
        now = trio.current_time()
        deadline = item.deadline / NS + GRACE if item.deadline else float("inf")
        verdict: int | None = None
        self.running += 1
        try:
            with trio.move_on_after(max(0.0, deadline - now)):
                try:
                    v = q.consumer(PacketView(item.pkt, item.state))
                    if inspect.isawaitable(v):
                        v = await v
                    verdict = as_verdict(v)
                except Exception as e:                # noqa: BLE001 (operator code)
                    q.errors += 1
                    if self._errors.allow(int(trio.current_time() * NS)):
                        app.log.warning("nf.queue_consumer_error", queue=q.num,
                                        consumer=q.name, error=repr(e)[:200], errors=q.errors)
                    verdict = NF_ACCEPT if q.fail_open else NF_DROP
                    if not q.fail_open:
                        item.state.reason = DropReason.NF_PLUGIN_ERROR
        finally:
            self.running -= 1
        if verdict is None or item.done:
            return                 # too late: the core's timer gave the failure verdict
        r.nf.reinject(r, item.id, verdict, int(trio.current_time() * NS))
        app.tx.flush()
        app.timers.rearm()
