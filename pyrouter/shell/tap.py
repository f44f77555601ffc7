"""TAP ports: open with pytun (IFF_TAP | IFF_NO_PI), read and write the fd directly under trio.

rx: ``os.read`` up to BATCH frames per wakeup (one read per wakeup was
measured 5x slower), each handed to ``Router.receive``; then the frames the
router produced are written out and the loop yields with a checkpoint so one
busy port cannot starve the others.  When the fd has nothing, the task waits
in ``trio.lowlevel.wait_readable``.

tx: ``os.write`` without blocking; a full TAP queue (BlockingIOError) counts
``tx_ring_full`` and drops, as gVisor's fdbased endpoint does: the dataplane
never waits on a slow port.

A port whose fd fails (EBADF, EIO, end of file) raises BrokenPortError: the
nursery cancels everything and the process exits 1; it never spins on a dead fd.

Captures (``pyrouter capture``) see every frame in both directions: the rx
loop and the transmitter offer frames to them only while one is active.

Invariants: the router is only touched from this thread, between awaits;
loop statistics (wakeups, frames per wakeup, busy time) cost one update per
batch, not per frame.
"""

from __future__ import annotations

import errno
import os
import time
from typing import TYPE_CHECKING, Any

import pytun
import trio

from ..core import DropReason
from .rx import internal_error

if TYPE_CHECKING:
    from .app import App

BATCH = 64
MAX_FRAME = 65535 + 14


class BrokenPortError(Exception):
    """A port's file descriptor failed; the router cannot go on with it."""


def open_tap(name: str) -> Any:
    dev = pytun.TunTapDevice(name=name, flags=pytun.IFF_TAP | pytun.IFF_NO_PI)
    os.set_blocking(dev.fileno(), False)
    return dev


class Transmitter:
    """Writes the router's queued frames to the ports' fds (``app.fds``: TAP and
    AF_PACKET), or hands them to a port's ``send`` (``app.senders``: QEMU sockets,
    which count their own drops); a port with neither counts ``port_down``."""

    def __init__(self, app: App) -> None:
        self.app = app

    def flush(self) -> None:
        app = self.app
        r = app.router
        tx, events = r.tx, r.events
        if tx:
            r.tx = []
            write = os.write
            fds = app.fds
            captures = app.captures
            for ifindex, frame in tx:
                fd = fds.get(ifindex)
                if captures:
                    for c in captures:
                        c.offer("out", ifindex, frame)
                if fd is None:
                    send = app.senders.get(ifindex)
                    if send is None:
                        r.drop(DropReason.PORT_DOWN)
                    else:
                        send(frame)
                    continue
                try:
                    write(fd, frame)
                except BlockingIOError:
                    r.drop(DropReason.TX_RING_FULL)
                    r.ports[ifindex].tx_dropped += 1
                except OSError as e:
                    if e.errno in (errno.EIO, errno.ENETDOWN, errno.EINVAL, errno.EMSGSIZE,
                                   errno.ENXIO, errno.ENODEV):     # AF_PACKET: device gone
                        r.drop(DropReason.PORT_DOWN)
                        r.ports[ifindex].tx_dropped += 1
                    else:
                        raise BrokenPortError(f"write to {r.ports[ifindex].name}: {e}") from e
        if events:
            r.events = []
            app.on_events(events)


def _name(app: App, ifindex: int) -> str:
    p = app.router.ports.get(ifindex)
    return p.name if p is not None else str(ifindex)


async def rx_loop(app: App, ifindex: int, fd: int) -> None:
    read = os.read
    clock = trio.current_time
    perf = time.perf_counter_ns
    tx = app.tx
    log = app.log
    stats = app.loop
    router = app.router                 # reload mutates this same object (Router.adopt)
    receive = router.receive
    captures = app.captures
    rearm = app.timers.rearm
    while True:
        t0 = perf()
        now = int(clock() * 1_000_000_000)
        n = 0
        try:
            while n < BATCH:
                frame = read(fd, MAX_FRAME)
                if not frame:                           # EOF: the device is gone
                    raise BrokenPortError(f"read from {_name(app, ifindex)}: end of file")
                n += 1
                if captures:
                    for c in captures:
                        c.offer("in", ifindex, frame)
                try:
                    receive(ifindex, frame, now)
                except Exception:                       # a bug, never bad input
                    internal_error(app, ifindex, frame)
        except BlockingIOError:
            pass
        except OSError as e:
            log.error("port.broken", port=_name(app, ifindex), error=str(e))
            raise BrokenPortError(f"read from {_name(app, ifindex)}: {e}") from e
        tx.flush()
        rearm()
        if n:
            stats.observe(n, (perf() - t0) / 1e9)
        if n < BATCH:
            await trio.lowlevel.wait_readable(fd)
        else:
            await trio.lowlevel.checkpoint()
