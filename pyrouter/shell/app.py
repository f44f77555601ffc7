"""The process: load the config, set up the ports, run the dataplane in one trio loop.

Order of events (nothing is touched before the config is fully checked):
1. load + check the config (ConfigError -> exit 2), check named netns exist;
2. build the Router (pure), open every TAP, set MTU / namespace / peer;
3. one nursery: an rx task per port, the timer task, the QUEUE consumer runner
   (shell/nfqueue.py), the signal task, the control socket and, if configured,
   the metrics endpoint;
4. log ``ready`` (and write the ready file) once every task runs;
5. SIGTERM/SIGINT -> cancel, close the TAPs (the kernel removes them), write
   the stats file, exit 0.  SIGUSR1 -> log counters, write the stats file.
   SIGHUP or ``pyrouter reload`` -> App.reload().

Time: the core's ``now`` is ``trio.current_time()`` in integer nanoseconds, so
timer deadlines map straight onto trio deadlines (and MockClock in tests).

Reload: the new file is loaded and checked, new TAPs are opened and set up,
and only then, in one synchronous step between two frames, the router adopts
the new configuration (Router.adopt) and port tasks are started or stopped.
Any failure before that step changes nothing.
"""

from __future__ import annotations

import json
import os
import random
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from ..control.build import PortPlan, build, check
from ..control.load import ConfigError, load
from ..control.schema import Config
from ..core import Event, Router
from . import leases as leasemod
from . import log as logmod
from .control import ControlServer
from .metrics import LoopStats, render
from .metrics import serve as serve_metrics
from .netlink import link_states, netns_exists, set_mtu
from .nfqueue import QueueRunner
from .port import PortTask, host_check, identity, make_port
from .port_packet import host_warnings
from .tap import BrokenPortError, Transmitter

NS = 1_000_000_000
LINK_POLL_SECONDS = 1.0


class TimerTask:
    """Sleeps until Router.poll_at(); ``rearm`` only ever lowers the deadline."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.scope: trio.CancelScope | None = None

    def rearm(self) -> None:
        at = self.app.router.poll_at()
        if at is not None and self.scope is not None and at / NS < self.scope.deadline:
            self.scope.deadline = at / NS

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            at = self.app.router.poll_at()
            with trio.CancelScope(deadline=at / NS if at is not None else float("inf")) as sc:
                self.scope = sc
                await trio.sleep_forever()
            self.scope = None
            now = int(trio.current_time() * NS)
            deadline = self.app.router.poll_at()
            if deadline is not None and sc.cancelled_caught and now < deadline <= now + 1000:
                # Float rounding of the deadline: we woke for it, so it is due.
                now = deadline
            self.app.router.tick(now)
            self.app.tx.flush()


def write_json_atomic(path: str, data: dict[str, Any]) -> None:
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".stats-")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def preflight(cfg_path: str, ifindexes: dict[str, int] | None = None
              ) -> tuple[Config, list[PortPlan]]:
    cfg = load(cfg_path)
    check(cfg, cfg_path, ifindexes)              # the file alone, before asking the system
    cfg = host_check(cfg, cfg_path)              # bridges and devices exist (shell/port.py)
    plans = check(cfg, cfg_path, ifindexes)
    for p in plans:
        if p.netns is not None and not netns_exists(p.netns):
            raise ConfigError(cfg_path, f"interfaces.{p.name}.netns",
                              f"no network namespace named {p.netns!r}")
    return cfg, plans


class App:
    """Everything the running process owns; the control socket works through it."""

    def __init__(self, cfg_path: str, cfg: Config, plans: list[PortPlan], log: Any,
                 stats_file: str | None = None) -> None:
        self.cfg_path = cfg_path
        self.cfg = cfg
        self.plans = plans
        self.log = log
        self.stats_file = stats_file
        self.rng = random.Random(os.urandom(16))
        self.ports: dict[int, PortTask] = {}
        self.fds: dict[int, int] = {}          # ifindex -> TAP fd, for the transmitter
        self.senders: dict[int, Callable[[bytes], None]] = {}   # other port kinds (shell/port.py)
        self.router: Router = None  # type: ignore[assignment]   # set in run()
        self.tx: Transmitter = None  # type: ignore[assignment]
        self.timers = TimerTask(self)
        self.loop = LoopStats()
        self.nursery: trio.Nursery | None = None
        self.subscribers: list[Callable[[Event], None]] = []
        self.captures: list[Any] = []         # shell/control.py Capture objects
        self.reload_lock = trio.Lock()
        self.error_limiter = logmod.RateLimiter()
        self.leases: leasemod.LeaseFile | None = None     # dhcp.lease_file, if configured

    # -- ports -----------------------------------------------------------------
    def open_ports(self, plans: list[PortPlan]) -> dict[int, Any]:
        """Open and set up ports of every kind (blocking: pyroute2, binds; shell/port.py);
        on failure close what was opened."""
        opened: dict[int, Any] = {}
        try:
            for p in plans:
                port = make_port(p)
                port.open()
                opened[p.ifindex] = port
        except BaseException:
            for t in opened.values():
                t.close()
            raise
        return opened

    def start_port(self, pt: Any) -> None:
        assert self.nursery is not None
        pt.attach(self)
        self.nursery.start_soon(self._port_main, pt)

    def stop_port(self, pt: Any) -> None:
        self.fds.pop(pt.plan.ifindex, None)
        self.senders.pop(pt.plan.ifindex, None)
        self.ports.pop(pt.plan.ifindex, None)
        pt.scope.cancel()
        pt.close()

    async def _port_main(self, pt: PortTask) -> None:
        with pt.scope:
            try:
                await pt.run(self)
            except (trio.ClosedResourceError, BrokenPortError):
                if not pt.scope.cancel_called:       # not a port we are removing
                    raise

    def fd_of(self, ifindex: int) -> int:
        return self.ports[ifindex].dev.fileno()

    # -- events ------------------------------------------------------------------
    def on_events(self, events: list[Event]) -> None:
        for ev in events:
            if ev.name.startswith("sock."):
                for sub in list(self.subscribers):
                    sub(ev)
            else:
                self.log.info(ev.name, **ev.fields)

    # -- reload ------------------------------------------------------------------
    async def reload(self) -> dict[str, Any]:
        """Load, check and apply the config file again; raise ConfigError (or
        OSError from device set-up) with nothing changed."""
        async with self.reload_lock:
            ifindexes = {p.plan.name: i for i, p in self.ports.items()}
            # In a worker thread: host_check asks netlink (pyroute2 must not run on trio's).
            cfg, plans = await trio.to_thread.run_sync(preflight, self.cfg_path, ifindexes)
            new_router = build(cfg, self.rng, int(trio.current_time() * NS), self.cfg_path,
                               ifindexes)
            old = {p.plan.name: p for p in self.ports.values()}
            new = {p.name: p for p in plans}
            recreate = {n for n in new if n in old and identity(new[n]) != identity(old[n].plan)}
            to_open = [new[n] for n in new if n not in old or n in recreate]
            to_close = [old[n] for n in old if n not in new or n in recreate]
            mtu_changes = [new[n] for n in new if n in old and n not in recreate
                           and new[n].mtu != old[n].plan.mtu and new[n].config.kind == "tap"]
            # Close the TAPs that will be re-created first: the name must be free.
            for pt in (old[n] for n in recreate):
                self.stop_port(pt)
            opened = await trio.to_thread.run_sync(self.open_ports, to_open)
            for p in mtu_changes:
                await trio.to_thread.run_sync(set_mtu, p.name, p.mtu, p.netns)
            # The switch: synchronous, between two frames.
            summary = self.router.adopt(new_router, frozenset(recreate))
            for pt in to_close:
                if pt.plan.name not in recreate:
                    self.stop_port(pt)
            for idx, pt in opened.items():
                self.ports[idx] = pt
                self.start_port(pt)
            for p in plans:
                if p.ifindex in self.ports:
                    self.ports[p.ifindex].plan = p
            self.cfg, self.plans = cfg, plans
            self.tx.flush()
            self.timers.rearm()
            return summary

    # -- main ----------------------------------------------------------------------
    async def main(self, ready_file: str | None) -> None:
        # The router was built (pure, and checked) before any device was touched; its
        # clock starts now: periodic timers are re-based on their first tick.
        now = int(trio.current_time() * NS)
        self.router.wall_offset_ns = time.time_ns() - now
        self.tx = Transmitter(self)
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            await nursery.start(self.timers.run)
            await nursery.start(QueueRunner(self).run)     # nf_queues consumers
            self.leases = leasemod.start(self, nursery, now)
            for pt in self.ports.values():
                self.start_port(pt)
            # arp_notify: gratuitous ARP for every address now that the ports run.
            self.router.announce(int(trio.current_time() * NS))
            self.tx.flush()
            await nursery.start(self._signals)
            nursery.start_soon(self._link_monitor)
            control = ControlServer(self)
            await nursery.start(control.serve, self.cfg.control.socket)
            if self.cfg.metrics is not None:
                await nursery.start(serve_metrics, self.cfg.metrics.listen, self.metrics_text)
            self.log.info("ready", ports=[p.name for p in self.router.ports.values()],
                          pid=os.getpid(), control=self.cfg.control.socket)
            if ready_file:
                Path(ready_file).write_text(f"{os.getpid()}\n")

    async def _link_monitor(self) -> None:
        """Follow the kernel side's admin state of every port (``ip link set X down`` in a
        host namespace): Router.set_link flushes neighbours and kills routes on down.
        A one-second poll in a worker thread; netlink events per namespace would be
        quicker, at the price of one watcher thread per namespace."""
        missing: set[str] = set()
        while True:
            await trio.sleep(LINK_POLL_SECONDS)
            refs = {idx: pt.link_ref() for idx, pt in self.ports.items()}
            ports = [r for r in refs.values() if r is not None]
            try:
                states = await trio.to_thread.run_sync(link_states, ports)
            except Exception as e:  # netlink trouble must not take the dataplane down
                self.log.warning("link.monitor_failed", error=f"{type(e).__name__}: {e}")
                continue
            now = int(trio.current_time() * NS)
            for idx, pt in list(self.ports.items()):
                ref = refs.get(idx)
                if ref is None:                  # a port that reports its own carrier
                    continue
                up = states.get(ref[0])
                if up is None:
                    if pt.plan.name not in missing:
                        missing.add(pt.plan.name)
                        self.log.warning("link.missing", port=pt.plan.name, device=ref[0],
                                         netns=ref[1])
                    continue
                missing.discard(pt.plan.name)
                if idx in self.router.ports and self.router.ports[idx].up != up:
                    self.router.set_link(idx, up, now,
                                         admin=getattr(pt, "OWN_DEVICE", False))
            self.tx.flush()

    def metrics_text(self) -> str:
        return render(self.router.snapshot(), self.loop.as_dict())

    def write_stats(self) -> None:
        if self.stats_file and self.router is not None:
            write_json_atomic(self.stats_file, self.router.snapshot())

    async def _signals(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGUSR1,
                                       signal.SIGHUP) as signals:
            task_status.started()
            async for sig in signals:
                if sig in (signal.SIGTERM, signal.SIGINT):
                    self.log.info("shutdown", signal=signal.Signals(sig).name)
                    # Final Router Advertisements (lifetime 0) go out before the ports close.
                    self.router.shutdown(int(trio.current_time() * NS))
                    self.tx.flush()
                    assert self.nursery is not None
                    self.nursery.cancel_scope.cancel()
                    return
                if sig == signal.SIGUSR1:
                    snap = self.router.snapshot()
                    self.log.info("counters", drops={k: v for k, v in snap["drops"].items() if v},
                                  interfaces=snap["interfaces"])
                    self.write_stats()
                elif sig == signal.SIGHUP:
                    await self.reload_logged()

    async def reload_logged(self) -> dict[str, Any]:
        try:
            summary = await self.reload()
        except ConfigError as e:
            self.log.error("reload.rejected", file=e.file, path=e.path, reason=e.reason)
            return {"error": str(e), "file": e.file, "path": e.path, "reason": e.reason}
        except OSError as e:
            self.log.error("reload.rejected", reason=f"device set-up failed: {e}")
            return {"error": f"device set-up failed: {e}"}
        return summary


def run(cfg_path: str, log_format: str = "console", ready_file: str | None = None,
        stats_file: str | None = None, socket_path: str | None = None) -> int:
    logmod.configure(log_format)
    log = logmod.get()
    try:
        cfg, plans = preflight(cfg_path)
    except ConfigError as e:
        log.error("config.invalid", file=e.file, path=e.path, reason=e.reason)
        return 2
    if socket_path:
        cfg = cfg.model_copy(update={"control": cfg.control.model_copy(
            update={"socket": socket_path})})
    for where, warning in host_warnings(cfg):
        log.warning("port.host_warning", path=where, reason=warning)
    app = App(cfg_path, cfg, plans, log, stats_file)
    try:
        # Everything the file implies, bulk routes included, is built and checked
        # before a single device is touched.
        app.router = build(cfg, app.rng, 0, cfg_path)
    except ConfigError as e:
        log.error("config.invalid", file=e.file, path=e.path, reason=e.reason)
        return 2
    try:
        app.ports = app.open_ports(plans)
        for pt in app.ports.values():
            log.info("port.open", port=pt.plan.name, kind=pt.kind, mac=pt.plan.mac.hex(":"),
                     mtu=pt.plan.mtu, netns=pt.plan.netns)
    except Exception as e:  # report any set-up failure, undo, exit 1
        log.error("port.setup_failed", error=f"{type(e).__name__}: {e}")
        return 1
    code = 0
    try:
        trio.run(app.main, ready_file)
    except BrokenPortError as e:
        log.error("exit.port_broken", error=str(e))
        code = 1
    except BaseExceptionGroup as eg:
        broken = eg.subgroup(BrokenPortError)
        if broken is None:
            raise
        log.error("exit.port_broken", error=str(broken.exceptions[0]))
        code = 1
    except OSError as e:
        log.error("exit.error", error=str(e))
        code = 1
    finally:
        for pt in app.ports.values():
            pt.close()
        if ready_file:
            Path(ready_file).unlink(missing_ok=True)
    if app.leases is not None:
        app.leases.write()
    app.write_stats()
    log.info("exit", code=code)
    return code
