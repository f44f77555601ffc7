"""The process: load the config, set up the ports, run the dataplane in one trio loop.

Order of events (nothing is touched before the config is fully checked):
1. load + check the config (ConfigError -> exit 2), check named netns exist;
2. build the Router (pure), open every TAP, set MTU / namespace / peer;
3. one nursery: an rx task per port, the timer task, the signal task;
4. log ``ready`` (and write the ready file) once every port task runs;
5. SIGTERM/SIGINT -> cancel, close the TAPs (the kernel removes them), write
   the stats file, exit 0.  SIGUSR1 -> log counters, write the stats file.

Time: the core's ``now`` is ``trio.current_time()`` in integer nanoseconds, so
timer deadlines map straight onto trio deadlines (and MockClock in tests).
"""

from __future__ import annotations

import json
import os
import random
import signal
import tempfile
from pathlib import Path
from typing import Any

import trio

from ..control.build import PortPlan, build, check
from ..control.load import ConfigError, load
from ..core import Router
from . import log as logmod
from .netlink import netns_exists, setup_link
from .tap import BrokenPortError, Transmitter, open_tap, rx_loop

NS = 1_000_000_000


class TimerTask:
    """Sleeps until Router.poll_at(); ``rearm`` only ever lowers the deadline."""

    def __init__(self, router: Router, tx: Transmitter) -> None:
        self.router = router
        self.tx = tx
        self.scope: trio.CancelScope | None = None

    def rearm(self) -> None:
        at = self.router.poll_at()
        if at is not None and self.scope is not None and at / NS < self.scope.deadline:
            self.scope.deadline = at / NS

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            at = self.router.poll_at()
            with trio.CancelScope(deadline=at / NS if at is not None else float("inf")) as sc:
                self.scope = sc
                await trio.sleep_forever()
            self.scope = None
            now = int(trio.current_time() * NS)
            deadline = self.router.poll_at()
            if deadline is not None and sc.cancelled_caught and now < deadline <= now + 1000:
                # Float rounding of the deadline: we woke for it, so it is due.
                now = deadline
            self.router.tick(now)
            self.tx.flush()


def write_json_atomic(path: str, data: dict[str, Any]) -> None:
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".stats-")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def preflight(cfg_path: str) -> tuple[Any, list[PortPlan]]:
    cfg = load(cfg_path)
    plans = check(cfg, cfg_path)
    for p in plans:
        if p.netns is not None and not netns_exists(p.netns):
            raise ConfigError(cfg_path, f"interfaces.{p.name}.netns",
                              f"no network namespace named {p.netns!r}")
    return cfg, plans


def run(cfg_path: str, log_format: str = "console", ready_file: str | None = None,
        stats_file: str | None = None) -> int:
    logmod.configure(log_format)
    log = logmod.get()
    try:
        cfg, plans = preflight(cfg_path)
    except ConfigError as e:
        log.error("config.invalid", file=e.file, path=e.path, reason=e.reason)
        return 2
    rng = random.Random(os.urandom(16))
    taps: dict[int, Any] = {}
    try:
        for p in plans:
            taps[p.ifindex] = open_tap(p.name)
            setup_link(p.name, p.mtu, p.netns, p.config.peer)
            log.info("port.open", port=p.name, mac=p.mac.hex(":"), mtu=p.mtu, netns=p.netns)
    except Exception as e:  # noqa: BLE001 (report any set-up failure, undo, exit 1)
        log.error("port.setup_failed", error=f"{type(e).__name__}: {e}")
        for t in taps.values():
            t.close()
        return 1
    code = 0
    router: Router | None = None
    try:
        router = trio.run(_main, cfg, cfg_path, rng, taps, log, ready_file, stats_file)
    except BrokenPortError as e:
        log.error("exit.port_broken", error=str(e))
        code = 1
    finally:
        for t in taps.values():
            t.close()
        if ready_file:
            Path(ready_file).unlink(missing_ok=True)
    if router is not None and stats_file:
        write_json_atomic(stats_file, router.snapshot())
    log.info("exit", code=code)
    return code


async def _main(cfg: Any, cfg_path: str, rng: random.Random, taps: dict[int, Any], log: Any,
                ready_file: str | None, stats_file: str | None) -> Router:
    now = int(trio.current_time() * NS)
    router = build(cfg, rng, now, cfg_path)
    fds = {i: t.fileno() for i, t in taps.items()}
    tx = Transmitter(router, fds, log)
    timers = TimerTask(router, tx)
    async with trio.open_nursery() as nursery:
        await nursery.start(timers.run)
        for ifindex, fd in fds.items():
            nursery.start_soon(rx_loop, router, ifindex, fd, tx, timers.rearm, log)
        await nursery.start(_signals, router, nursery.cancel_scope, log, stats_file)
        log.info("ready", ports=[p.name for p in router.ports.values()], pid=os.getpid())
        if ready_file:
            Path(ready_file).write_text(f"{os.getpid()}\n")
    return router


async def _signals(router: Router, scope: trio.CancelScope, log: Any, stats_file: str | None,
                   task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGUSR1,
                                   signal.SIGHUP) as signals:
        task_status.started()
        async for sig in signals:
            if sig in (signal.SIGTERM, signal.SIGINT):
                log.info("shutdown", signal=signal.Signals(sig).name)
                scope.cancel()
                return
            if sig == signal.SIGUSR1:
                snap = router.snapshot()
                log.info("counters", drops={k: v for k, v in snap["drops"].items() if v},
                         interfaces=snap["interfaces"])
                if stats_file:
                    write_json_atomic(stats_file, snap)
            elif sig == signal.SIGHUP:
                log.warning("reload.unsupported", detail="hot reload arrives with the "
                            "operator-interface work; restart to apply a new config")
