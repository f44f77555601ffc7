"""QEMU socket network backends as router ports: ``-netdev stream`` and ``-netdev dgram``.

Wire format (measured against QEMU 7.2, ../shared/reference/qemu-pairing.md and
QEMU's net/stream.c + net/net.c ``net_fill_rstate``): on a stream socket every
Ethernet frame (destination MAC to end of payload; no FCS, no vnet header) is
preceded by its length as 4 bytes big-endian; a dgram socket carries one frame
per datagram with no prefix.

stream, ``server: false`` (pyrouter connects to a QEMU started with
``-netdev stream,server=on``): connect, and after any loss of the connection
(QEMU exits, restarts, pyrouter restarts) reconnect with exponential backoff
(BACKOFF_MIN .. BACKOFF_MAX).  stream, ``server: true`` (QEMU started with
``server=off`` connects to pyrouter): the socket is bound when the port
opens, one peer is served at a time (a second connection is closed with a
warning).  QEMU 7.2 has no ``reconnect=``: if pyrouter restarts, that VM
stays cut off until QEMU restarts.

While no peer is connected the port's carrier is down (Router.set_link:
neighbours flushed, transmitted frames counted as ``port_down`` drops,
``link.down`` logged); a connection brings it up (``link.up``).

A length of 0 or above MAX_LEN is a protocol error: counted
(``port_protocol_error``), logged, the connection dropped and (client)
re-established; nothing escapes the port's task.  Reads are drained in
chunks of RECV_CHUNK and every whole frame in a chunk goes to the router as one
batch; a partial frame waits in a buffer that never exceeds
4 + MAX_LEN + RECV_CHUNK bytes.  Writes never block the dataplane: what the
socket does not take at once waits in a transmit buffer of at most
TX_BUFFER bytes (beyond that, ``tx_ring_full``), flushed by a writer task.

dgram: pyrouter binds ``local`` and sends to ``remote`` (a Unix path or UDP
HOST:PORT); QEMU is started with the two swapped.  There is no connection, so
the carrier stays up; while QEMU's socket is missing, sends fail and are
counted as ``port_down`` drops.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import struct
from typing import TYPE_CHECKING, Any

import trio

from ..control.build import PortPlan
from ..core import DropReason
from .rx import deliver, set_carrier

if TYPE_CHECKING:
    from .app import App

MAX_LEN = 65535 + 18          # the largest Ethernet frame pyrouter handles (+ a VLAN tag)
RECV_CHUNK = 256 * 1024
TX_BUFFER = 4 * 1024 * 1024
BACKOFF_MIN = 0.05
BACKOFF_MAX = 2.0
DGRAM_BATCH = 64
_LEN = struct.Struct(">I")


class StreamProtocolError(Exception):
    """The peer sent a length prefix no Ethernet frame can have."""


def parse_stream(buf: bytearray | bytes, out: list[bytes]) -> int:
    """Append every whole frame at the start of *buf* to *out*; return the bytes
    consumed.  Raises StreamProtocolError on a length of 0 or above MAX_LEN."""
    pos = 0
    end = len(buf)
    unpack = _LEN.unpack_from
    while end - pos >= 4:
        (n,) = unpack(buf, pos)
        if n == 0 or n > MAX_LEN:
            raise StreamProtocolError(f"bad frame length {n}")
        if end - pos - 4 < n:
            break
        out.append(bytes(buf[pos + 4:pos + 4 + n]))
        pos += 4 + n
    return pos


def _unlink_stale_socket(path: str) -> None:
    """Remove a leftover socket file at *path* (never anything else)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
    os.unlink(path)


class QemuStreamPort:
    """``kind: qemu, qemu: {mode: stream}`` in either direction."""

    kind = "qemu"

    def __init__(self, plan: PortPlan) -> None:
        q = plan.config.qemu
        assert q is not None and q.path is not None
        self.plan = plan
        self.path: str = q.path
        self.server = q.server
        self.scope = trio.CancelScope()
        self.listener: socket.socket | None = None
        self.sock: socket.socket | None = None
        self.txbuf = bytearray()
        self.tx_wake = trio.Event()
        self.app: App | None = None
        self.stats = {"connects": 0, "disconnects": 0, "protocol_errors": 0,
                      "rejected_peers": 0}
        self._bound_ino: int | None = None

    # -- life cycle --------------------------------------------------------------
    def open(self) -> None:
        if not self.server:
            return
        _unlink_stale_socket(self.path)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.bind(self.path)
            s.listen(1)
            s.setblocking(False)
            self._bound_ino = os.stat(self.path).st_ino
        except BaseException:
            s.close()
            raise
        self.listener = s

    def attach(self, app: App) -> None:
        self.app = app          # the sender is registered while a peer is connected

    def link_ref(self) -> tuple[str, str | None] | None:
        return None

    def close(self) -> None:
        for s in (self.sock, self.listener):
            if s is not None:
                try:
                    trio.lowlevel.notify_closing(s)
                except (RuntimeError, ValueError):
                    pass
                s.close()
        self.sock = None
        if self.listener is not None:
            self.listener = None
            try:
                if os.stat(self.path).st_ino == self._bound_ino:
                    os.unlink(self.path)
            except OSError:
                pass

    async def run(self, app: App) -> None:
        self.app = app
        set_carrier(app, self.plan.ifindex, False)
        if self.server:
            await self._serve(app)
        else:
            await self._connect_loop(app)

    # -- the two directions ------------------------------------------------------
    async def _connect_loop(self, app: App) -> None:
        backoff = BACKOFF_MIN
        failing = False
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(self.path)
            except OSError as e:
                s.close()
                if not failing:
                    app.log.warning("qemu.connect_failed", port=self.plan.name, path=self.path,
                                    error=e.strerror or str(e), retry="backoff")
                    failing = True
                await trio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            failing = False
            backoff = BACKOFF_MIN
            await self._session(app, s)
            await trio.sleep(BACKOFF_MIN)

    async def _serve(self, app: App) -> None:
        assert self.listener is not None
        lst = self.listener
        async with trio.open_nursery() as n:
            while True:
                await trio.lowlevel.wait_readable(lst)
                try:
                    conn, _ = lst.accept()
                except (BlockingIOError, InterruptedError):
                    continue
                conn.setblocking(False)
                if self.sock is not None:
                    self.stats["rejected_peers"] += 1
                    app.log.warning("qemu.peer_rejected", port=self.plan.name, path=self.path,
                                    reason="one peer at a time")
                    conn.close()
                    continue
                self.sock = conn        # taken before the session task starts
                n.start_soon(self._session, app, conn)

    # -- one connection ------------------------------------------------------------
    async def _session(self, app: App, s: socket.socket) -> None:
        idx = self.plan.ifindex
        self.sock = s
        self.txbuf.clear()
        self.stats["connects"] += 1
        app.senders[idx] = self.send
        app.log.info("qemu.connected", port=self.plan.name, path=self.path,
                     role="server" if self.server else "client")
        set_carrier(app, idx, True)
        reason = "closed"
        try:
            async with trio.open_nursery() as n:
                n.start_soon(self._writer, n.cancel_scope)
                reason = await self._reader(app, s)
                n.cancel_scope.cancel()
        except trio.ClosedResourceError:
            reason = "port closed"
        finally:
            if app.senders.get(idx) == self.send:
                del app.senders[idx]
            if self.sock is s:
                self.sock = None
            try:
                trio.lowlevel.notify_closing(s)
            except (RuntimeError, ValueError):
                pass
            s.close()
            self.txbuf.clear()
            self.stats["disconnects"] += 1
            app.log.info("qemu.disconnected", port=self.plan.name, path=self.path,
                         reason=reason)
            set_carrier(app, idx, False)

    async def _reader(self, app: App, s: socket.socket) -> str:
        idx = self.plan.ifindex
        buf = bytearray()
        frames: list[bytes] = []
        while True:
            await trio.lowlevel.wait_readable(s)
            try:
                data = s.recv(RECV_CHUNK)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as e:
                return f"read: {e.strerror or e}"
            if not data:
                return "peer closed the connection"
            if buf:
                buf += data
                src: bytes | bytearray = buf
            else:
                src = data
            frames.clear()
            try:
                used = parse_stream(src, frames)
            except StreamProtocolError as e:
                if frames:
                    deliver(app, idx, frames)
                self.protocol_error(app, str(e))
                return f"protocol error: {e}"
            if frames:
                deliver(app, idx, frames)
            if src is buf:
                del buf[:used]
            elif used < len(data):
                buf += memoryview(data)[used:]

    def protocol_error(self, app: App, what: str) -> None:
        self.stats["protocol_errors"] += 1
        port = app.router.ports.get(self.plan.ifindex)
        app.router.drop(DropReason.PORT_PROTOCOL_ERROR, port)
        app.log.warning("qemu.protocol_error", port=self.plan.name, path=self.path, error=what)

    async def _writer(self, scope: trio.CancelScope) -> None:
        while True:
            await self.tx_wake.wait()
            self.tx_wake = trio.Event()
            while self.txbuf:
                s = self.sock
                if s is None:
                    return
                await trio.lowlevel.wait_writable(s)
                try:
                    n = s.send(self.txbuf)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    scope.cancel()      # the reader sees the same error or EOF
                    return
                del self.txbuf[:n]

    # -- the Transmitter's side -----------------------------------------------------
    def send(self, frame: bytes | bytearray) -> None:
        s = self.sock
        app = self.app
        assert app is not None
        if s is None:
            self._drop(app, DropReason.PORT_DOWN)
            return
        hdr = _LEN.pack(len(frame))
        if self.txbuf:
            if len(self.txbuf) + 4 + len(frame) > TX_BUFFER:
                self._drop(app, DropReason.TX_RING_FULL)
                return
            self.txbuf += hdr
            self.txbuf += frame
            return
        try:
            n = s.sendmsg([hdr, frame])
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError:
            self._drop(app, DropReason.PORT_DOWN)     # EPIPE/ECONNRESET: the reader ends it
            return
        if n < 4 + len(frame):
            self.txbuf += (hdr + bytes(frame))[n:]
            self.tx_wake.set()

    def _drop(self, app: App, reason: DropReason) -> None:
        app.router.drop(reason)
        p = app.router.ports.get(self.plan.ifindex)
        if p is not None:
            p.tx_dropped += 1


def _udp_addr(v: str) -> tuple[int, tuple[str, int]]:
    host, _, port = v.rpartition(":")
    host = host.strip("[]")
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    return fam, (host, int(port))


class QemuDgramPort:
    """``kind: qemu, qemu: {mode: dgram, local: A, remote: B}``."""

    kind = "qemu"

    def __init__(self, plan: PortPlan) -> None:
        q = plan.config.qemu
        assert q is not None and q.local is not None and q.remote is not None
        self.plan = plan
        self.local, self.remote_cfg = q.local, q.remote
        self.unix = q.local.startswith("/")
        self.scope = trio.CancelScope()
        self.sock: socket.socket | None = None
        self.remote: Any = None
        self.app: App | None = None
        self._bound_ino: int | None = None

    def open(self) -> None:
        if self.unix:
            _unlink_stale_socket(self.local)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            bind_to: Any = self.local
            self.remote = self.remote_cfg
        else:
            fam, bind_to = _udp_addr(self.local)
            s = socket.socket(fam, socket.SOCK_DGRAM)
            self.remote = _udp_addr(self.remote_cfg)[1]
        try:
            s.bind(bind_to)
            s.setblocking(False)
            if self.unix:
                self._bound_ino = os.stat(self.local).st_ino
        except BaseException:
            s.close()
            raise
        self.sock = s

    def attach(self, app: App) -> None:
        self.app = app
        app.senders[self.plan.ifindex] = self.send

    def link_ref(self) -> tuple[str, str | None] | None:
        return None

    def close(self) -> None:
        if self.sock is not None:
            try:
                trio.lowlevel.notify_closing(self.sock)
            except (RuntimeError, ValueError):
                pass
            self.sock.close()
            self.sock = None
        if self.unix:
            try:
                if os.stat(self.local).st_ino == self._bound_ino:
                    os.unlink(self.local)
            except OSError:
                pass

    async def run(self, app: App) -> None:
        s = self.sock
        assert s is not None
        idx = self.plan.ifindex
        frames: list[bytes] = []
        recv = s.recv
        while True:
            frames.clear()
            try:
                while len(frames) < DGRAM_BATCH:
                    f = recv(MAX_LEN + 1)
                    if 0 < len(f) <= MAX_LEN:
                        frames.append(f)
                    else:                  # empty or truncated: not an Ethernet frame
                        port = app.router.ports.get(idx)
                        app.router.drop(DropReason.PORT_PROTOCOL_ERROR, port)
            except (BlockingIOError, InterruptedError):
                pass
            except ConnectionRefusedError:  # UDP: an earlier send hit a closed port
                pass
            if frames:
                deliver(app, idx, frames)
            if len(frames) < DGRAM_BATCH:
                await trio.lowlevel.wait_readable(s)
            else:
                await trio.lowlevel.checkpoint()

    def send(self, frame: bytes | bytearray) -> None:
        s = self.sock
        app = self.app
        assert app is not None
        if s is None:
            return
        try:
            s.sendto(frame, self.remote)
        except (BlockingIOError, InterruptedError):
            self._drop(app, DropReason.TX_RING_FULL)
        except OSError:           # QEMU not there (ENOENT, ECONNREFUSED): the port is down
            self._drop(app, DropReason.PORT_DOWN)

    def _drop(self, app: App, reason: DropReason) -> None:
        app.router.drop(reason)
        p = app.router.ports.get(self.plan.ifindex)
        if p is not None:
            p.tx_dropped += 1


def make_qemu_port(plan: PortPlan) -> QemuStreamPort | QemuDgramPort:
    q = plan.config.qemu
    assert q is not None
    return QemuStreamPort(plan) if q.mode == "stream" else QemuDgramPort(plan)
