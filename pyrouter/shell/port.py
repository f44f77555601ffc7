"""The shell's port abstraction: every port kind feeds ``Router.receive`` in batches and
takes the frames the Transmitter hands it; the core never knows the kind.

A port either exposes a file descriptor the Transmitter ``os.write``s frames
to (``app.fds``: TAP, the fast path), or registers a ``send(frame)`` callable
(``app.senders``: QEMU sockets, AF_PACKET with its virtio-net header).  A port
that has no peer right now registers neither: the Transmitter counts
``port_down``.  Kinds:

* ``tap`` (this module, :class:`PortTask`): a TAP device, optionally moved into
  a namespace (``netns``/``peer``) or enslaved to an existing Linux bridge
  (``master``, as ``ip link set dev T master BR``);
* ``qemu`` (shell/port_qemu.py): QEMU's ``-netdev stream`` / ``dgram`` backends;
* ``packet`` (shell/port_packet.py): an AF_PACKET socket on an existing interface.

Life cycle: ``open()`` (blocking, before the loop or in a worker thread: netlink,
binds), ``attach(app)`` registers the fd or sender, ``run(app)`` is the rx task,
``close()`` releases everything.  ``link_ref()`` names the kernel device whose
admin state the link monitor follows (None: the port reports its own carrier).

Invariants: a port never raises out of ``run`` for a peer's misbehaviour (only
BrokenPortError for a failed local device); open() either fully succeeds or
leaves nothing behind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

from ..control.build import PortPlan
from ..control.load import ConfigError
from ..control.schema import Config, Interface
from .netlink import link_facts, link_kind, setup_link
from .port_packet import PacketPort, host_warnings
from .port_qemu import make_qemu_port
from .tap import open_tap, rx_loop

if TYPE_CHECKING:
    from .app import App


class PortTask:
    """A TAP port: one open TAP device (pytun) and the cancel scope of its rx task."""

    kind = "tap"

    def __init__(self, plan: PortPlan, dev: Any = None) -> None:
        self.plan = plan
        self.dev = dev
        self.scope = trio.CancelScope()

    def open(self) -> None:
        self.dev = open_tap(self.plan.name)
        try:
            setup_link(self.plan.name, self.plan.mtu, self.plan.netns, self.plan.config.peer,
                       self.plan.config.master)
        except BaseException:
            self.dev.close()
            raise

    def attach(self, app: App) -> None:
        app.fds[self.plan.ifindex] = self.dev.fileno()

    async def run(self, app: App) -> None:
        await rx_loop(app, self.plan.ifindex, self.dev.fileno())

    def link_ref(self) -> tuple[str, str | None] | None:
        return (self.plan.name, self.plan.netns)

    def close(self) -> None:
        try:
            trio.lowlevel.notify_closing(self.dev.fileno())
        except (RuntimeError, ValueError):
            pass
        self.dev.close()


def identity(plan: PortPlan) -> tuple[Any, ...]:
    """What cannot change without re-creating the port (a reload compares these)."""
    c = plan.config
    return (c.kind, plan.netns, c.peer, c.master, c.qemu, c.device)


def make_port(plan: PortPlan) -> Any:
    kind = plan.config.kind
    if kind == "qemu":
        return make_qemu_port(plan)
    if kind == "packet":
        return PacketPort(plan)
    return PortTask(plan)


def host_check(cfg: Config, file: str) -> Config:
    """What the config assumes of the running system, as ConfigErrors with key paths:
    a ``master`` must be an existing Linux bridge, a packet port's ``device`` must
    exist.  A packet port without ``macaddress`` / ``mtu`` takes its device's MAC
    and MTU (containerlab links default to 9500): the returned config says so
    explicitly, so that the core's Port carries what the device has."""
    updates: dict[str, Interface] = {}
    for name, itf in cfg.interfaces.items():
        if itf.master is not None:
            k = link_kind(itf.master)
            if k is None:
                raise ConfigError(file, f"interfaces.{name}.master",
                                  f"no bridge named {itf.master!r} (create it first: "
                                  f"ip link add {itf.master} type bridge)")
            if k != "bridge":
                raise ConfigError(file, f"interfaces.{name}.master",
                                  f"{itf.master} is a {k or 'physical'} device, not a bridge")
        if itf.kind == "packet":
            assert itf.device is not None
            facts = link_facts(itf.device)
            if facts is None:
                raise ConfigError(file, f"interfaces.{name}.device",
                                  f"no interface named {itf.device!r} in this namespace")
            fill: dict[str, object] = {}
            if itf.macaddress is None:
                fill["macaddress"] = facts["mac"]
            if itf.mtu is None:
                fill["mtu"] = facts["mtu"]
            if fill:
                updates[name] = itf.model_copy(update=fill)
    if not updates:
        return cfg
    return cfg.model_copy(update={"interfaces": {n: updates.get(n, i)
                                                 for n, i in cfg.interfaces.items()}})


def system_warnings(cfg: Config) -> list[tuple[str, str]]:
    """For ``pyrouter check``: what ``host_check`` would refuse on this machine (a
    missing bridge or device, reported as a warning because the file may be meant
    for another machine), plus the packet ports' kernel warnings."""
    out: list[tuple[str, str]] = []
    for name, itf in cfg.interfaces.items():           # every interface, not the first error
        try:
            host_check(cfg.model_copy(update={"interfaces": {name: itf}}), "<check>")
        except ConfigError as e:
            out.append((e.path, f"{e.reason} (on this machine; `pyrouter run` would refuse)"))
        except OSError as e:
            return [("", f"cannot inspect this machine's interfaces: {e}")]
    return out + host_warnings(cfg)
