"""Hand a batch of received frames to the router (ports other than TAP's own rx loop).

Does what shell/tap.py's rx_loop does per batch: offer each frame to active
captures, ``Router.receive`` it with one ``now`` for the batch (a bug in the
core is counted as ``internal_error`` and logged, rate-limited, never raised),
then write out what the router produced, re-arm the timer task and record
the loop statistics once per batch.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

import trio

from ..core import DropReason

if TYPE_CHECKING:
    from .app import App


def internal_error(app: App, ifindex: int, frame: bytes) -> None:
    """Router.receive raised (a bug, never bad input): counted, logged rate-limited, with
    the exception and the frame's first bytes.  Call it from inside the except block."""
    router = app.router
    router.drop(DropReason.INTERNAL_ERROR)
    if app.error_limiter.allow(time.monotonic()):
        p = router.ports.get(ifindex)
        app.log.exception("internal_error", port=p.name if p else ifindex,
                          frame=frame[:128].hex(), suppressed=app.error_limiter.take_suppressed())


def deliver(app: App, ifindex: int, frames: Iterable[bytes]) -> int:
    t0 = time.perf_counter_ns()
    now = int(trio.current_time() * 1_000_000_000)
    router = app.router
    receive = router.receive
    captures = app.captures
    n = 0
    for frame in frames:
        n += 1
        if captures:
            for c in captures:
                c.offer("in", ifindex, frame)
        try:
            receive(ifindex, frame, now)
        except Exception:                       # a bug, never bad input
            internal_error(app, ifindex, frame)
    app.tx.flush()
    app.timers.rearm()
    if n:
        app.loop.observe(n, (time.perf_counter_ns() - t0) / 1e9)
    return n


def set_carrier(app: App, ifindex: int, up: bool) -> None:
    """A port's peer came or went (QEMU connected / disconnected): Router.set_link
    (neighbours flushed on down, ``link.up``/``link.down`` logged)."""
    router = app.router
    if ifindex in router.ports:
        router.set_link(ifindex, up, int(trio.current_time() * 1_000_000_000))
        if app.tx is not None:
            app.tx.flush()
