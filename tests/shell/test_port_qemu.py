"""QEMU socket backend ports (shell/port_qemu.py) against fake QEMU peers on Unix sockets:
framing (4-byte big-endian length), reassembly of split frames, protocol errors,
both stream directions with reconnects and carrier changes, and dgram.  Reconnect
timing runs on trio's MockClock (autojump).  No root."""

from __future__ import annotations

import random
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from pyrouter.control.build import build, plan_ports
from pyrouter.control.load import ConfigError, parse
from pyrouter.core import DropReason
from pyrouter.shell.app import App
from pyrouter.shell.port import make_port
from pyrouter.shell.port_qemu import MAX_LEN, StreamProtocolError, parse_stream
from pyrouter.shell.tap import Transmitter

H1_MAC = bytes.fromhex("02000000aa01")
R_MAC = bytes.fromhex("020000000101")


class Log:
    def __init__(self) -> None:
        self.records: list[tuple[str, dict[str, Any]]] = []

    def info(self, event: str, **kw: Any) -> None:
        self.records.append((event, kw))

    error = warning = exception = info

    def events(self) -> list[str]:
        return [e for e, _ in self.records]


def arp_request(last: int = 2) -> bytes:
    return (b"\xff" * 6 + H1_MAC + b"\x08\x06" + b"\x00\x01\x08\x00\x06\x04\x00\x01"
            + H1_MAC + bytes([10, 0, 1, last]) + b"\x00" * 6 + bytes([10, 0, 1, 1]))


def is_arp_reply(f: bytes) -> bool:
    return f[12:14] == b"\x08\x06" and f[20:22] == b"\x00\x02" and f[6:12] == R_MAC


def framed(f: bytes) -> bytes:
    return struct.pack(">I", len(f)) + f


def cfg_text(qemu: str) -> str:
    # No IPv6 DAD or unsolicited NA: these tests count every frame the port carries.
    return ("ipv6: {accept_dad: 0, ndisc_notify: false, mld_reports: false}\n"
            "interfaces:\n  vm0:\n    kind: qemu\n    addresses: [10.0.1.1/24]\n"
            f"    macaddress: \"02:00:00:00:01:01\"\n    qemu: {qemu}\n")


def make_app(text: str, cfg_path: str = "<test>") -> App:
    cfg = parse(text)
    plans = plan_ports(cfg)
    app = App(cfg_path, cfg, plans, Log())
    app.router = build(cfg, random.Random(1), 0)
    app.tx = Transmitter(app)
    for p in plans:
        port = make_port(p)
        port.open()
        app.ports[p.ifindex] = port
    return app


def run_app(app: App, body: Callable[[App], Awaitable[None]], clock: Any = None,
            timeout: float = 10.0) -> None:
    async def main() -> None:
        async with trio.open_nursery() as n:
            app.nursery = n
            await n.start(app.timers.run)
            for pt in app.ports.values():
                app.start_port(pt)
            with trio.fail_after(timeout):
                await body(app)
            n.cancel_scope.cancel()

    try:
        trio.run(main, clock=clock)
    finally:
        for pt in app.ports.values():
            pt.close()


async def read_frames(stream: trio.SocketStream, buf: bytearray, n: int) -> list[bytes]:
    out: list[bytes] = []
    while len(out) < n:
        used = parse_stream(buf, out)
        del buf[:used]
        if len(out) >= n:
            break
        data = await stream.receive_some(65536)
        assert data, "peer closed"
        buf += data
    return out


def listen_unix(path: str) -> trio.SocketListener:
    """A fake QEMU ``server=on``; bound synchronously (trio's async bind may go through
    a worker thread, during which MockClock's autojump would race ahead)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(1)
    return trio.SocketListener(trio.socket.from_stdlib_socket(s))


async def wait_until(pred: Callable[[], bool], step: float = 0.01) -> None:
    while not pred():
        await trio.sleep(step)


# -- framing ---------------------------------------------------------------------

def test_parse_stream_whole_split_and_partial_frames() -> None:
    a, b = arp_request(2), b"\x11" * 1514
    data = framed(a) + framed(b) + framed(a)[:7]
    out: list[bytes] = []
    used = parse_stream(data, out)
    assert out == [a, b] and used == len(framed(a) + framed(b))
    # One byte at a time, length prefix included: nothing until a frame is whole.
    buf, got = bytearray(), []
    for i in range(len(framed(b))):
        buf.append(framed(b)[i])
        del buf[:parse_stream(buf, got)]
        assert got == ([] if i < len(framed(b)) - 1 else [b])
    assert buf == b""


@pytest.mark.parametrize("n", [0, MAX_LEN + 1, 0xFFFFFFFF])
def test_parse_stream_rejects_impossible_lengths(n: int) -> None:
    with pytest.raises(StreamProtocolError):
        parse_stream(struct.pack(">I", n) + b"\x00" * 64, [])
    # A good frame before the bad prefix is still handed over.
    out: list[bytes] = []
    with pytest.raises(StreamProtocolError):
        parse_stream(framed(arp_request()) + struct.pack(">I", n), out)
    assert out == [arp_request()]


# -- config ------------------------------------------------------------------------

@pytest.mark.parametrize("qemu, path, reason", [
    ("{mode: stream}", "interfaces.vm0.qemu.path", "needs path"),
    ("{mode: stream, path: rel.sock}", "interfaces.vm0.qemu.path", "absolute"),
    ("{mode: stream, path: /a, local: /b}", "interfaces.vm0.qemu.local", "only with mode dgram"),
    ("{mode: dgram, local: /a}", "interfaces.vm0.qemu.remote", "needs remote"),
    ("{mode: dgram, local: /a, remote: '127.0.0.1:5000'}", "interfaces.vm0.qemu.remote",
     "both Unix"),
    ("{mode: dgram, local: /a, remote: /b, server: true}", "interfaces.vm0.qemu.server",
     "only with mode stream"),
    ("{mode: tcp, path: /a}", "interfaces.vm0.qemu.mode", "stream"),
    ("{mode: stream, path: /a, bogus: 1}", "interfaces.vm0.qemu.bogus", "unknown key"),
])
def test_qemu_config_errors_name_the_key(qemu: str, path: str, reason: str) -> None:
    with pytest.raises(ConfigError) as e:
        cfg = parse(cfg_text(qemu))
        build(cfg, random.Random(0), 0)
    assert e.value.path == path and reason in e.value.reason


def test_qemu_port_takes_no_tap_keys() -> None:
    text = cfg_text("{mode: stream, path: /a}") + "    netns: h1\n"
    with pytest.raises(ConfigError) as e:
        build(parse(text), random.Random(0), 0)
    assert e.value.path == "interfaces.vm0.netns"
    text = cfg_text("{mode: stream, path: /a}").replace("vm0:", "vm1:") + \
        "  vm0:\n    kind: qemu\n    qemu: {mode: stream, path: /a}\n"
    with pytest.raises(ConfigError) as e:
        build(parse(text), random.Random(0), 0)
    assert e.value.path == "interfaces.vm0.qemu" and "already used" in e.value.reason


# -- stream, pyrouter connects (QEMU server=on) ---------------------------------------

def test_client_connects_reconnects_and_follows_carrier(tmp_path: Path) -> None:
    path = str(tmp_path / "q.sock")
    app = make_app(cfg_text(f"{{mode: stream, path: {path}}}"))
    r = app.router

    async def body(app: App) -> None:
        await trio.sleep(1.0)                  # nobody listens yet: backoff, carrier down
        assert not r.ports[1].up
        assert "qemu.connect_failed" in app.log.events()       # type: ignore[attr-defined]
        listener = listen_unix(path)
        for round_ in range(2):                # QEMU "restarts" once
            conn = await listener.accept()
            await wait_until(lambda: r.ports[1].up)
            # An ARP request split into 1-byte writes, then three in one write.
            for byte in framed(arp_request(2)):
                await conn.send_all(bytes([byte]))
            await conn.send_all(framed(arp_request(3)) * 3)
            got = await read_frames(conn, bytearray(), 4)
            assert all(is_arp_reply(f) for f in got)
            assert r.neigh4.entries                          # the host was learned
            await conn.aclose()                              # QEMU goes away
            await wait_until(lambda: not r.ports[1].up)
            assert not r.neigh4.entries                      # flushed as on link down
            before = r.counters.drops[DropReason.PORT_DOWN]
            r.tx = [(1, arp_request())]
            app.tx.flush()
            assert r.counters.drops[DropReason.PORT_DOWN] == before + 1
        await listener.aclose()
        ev = app.log.events()                                 # type: ignore[attr-defined]
        assert ev.count("qemu.connected") == 2 and ev.count("link.up") == 2
        assert ev.count("link.down") == 3                     # start + two disconnects

    run_app(app, body, clock=trio.testing.MockClock(autojump_threshold=0), timeout=60)
    assert r.ports[1].rx_packets == 8


def test_client_protocol_error_drops_and_reconnects(tmp_path: Path) -> None:
    path = str(tmp_path / "q.sock")
    app = make_app(cfg_text(f"{{mode: stream, path: {path}}}"))
    r = app.router

    async def body(app: App) -> None:
        listener = listen_unix(path)
        conn = await listener.accept()
        await conn.send_all(framed(arp_request()) + struct.pack(">I", 0) + b"junk")
        got = await read_frames(conn, bytearray(), 1)      # the good frame was answered
        assert is_arp_reply(got[0])
        assert await conn.receive_some(100) == b""         # then pyrouter hung up
        conn2 = await listener.accept()                    # and came back
        await conn2.send_all(framed(arp_request()))
        assert is_arp_reply((await read_frames(conn2, bytearray(), 1))[0])
        await conn2.send_all(struct.pack(">I", MAX_LEN + 1))
        assert await conn2.receive_some(100) == b""
        await listener.aclose()

    run_app(app, body, clock=trio.testing.MockClock(autojump_threshold=0), timeout=60)
    assert r.counters.drops[DropReason.PORT_PROTOCOL_ERROR] == 2
    assert app.log.events().count("qemu.protocol_error") == 2   # type: ignore[attr-defined]


def test_client_transmit_backlog_is_bounded(tmp_path: Path) -> None:
    """A peer that stops reading: the socket buffer fills, then the port's transmit
    buffer, then frames are counted tx_ring_full; nothing blocks the loop."""
    path = str(tmp_path / "q.sock")
    app = make_app(cfg_text(f"{{mode: stream, path: {path}}}"))
    r = app.router

    async def body(app: App) -> None:
        listener = listen_unix(path)
        conn = await listener.accept()
        await wait_until(lambda: r.ports[1].up)
        big = b"\x00" * 60000
        r.tx = [(1, big)] * 400                      # 24 MB > socket buffer + TX_BUFFER
        app.tx.flush()
        assert r.counters.drops[DropReason.TX_RING_FULL] > 0
        port = app.ports[1]
        assert len(port.txbuf) <= 4 * 1024 * 1024    # type: ignore[attr-defined]
        # The peer reads again: the backlog drains in order, whole frames only.
        buf = bytearray()
        got = await read_frames(conn, buf, 10)
        assert all(f == big for f in got)
        await conn.aclose()
        await listener.aclose()

    run_app(app, body, timeout=20)


# -- stream, pyrouter listens (QEMU server=off) -----------------------------------------

def test_server_accepts_one_peer_at_a_time(tmp_path: Path) -> None:
    path = str(tmp_path / "q.sock")
    (tmp_path / "q.sock").touch()                  # a stale non-socket file is refused...
    with pytest.raises(OSError):
        make_app(cfg_text(f"{{mode: stream, path: {path}, server: true}}"))
    (tmp_path / "q.sock").unlink()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)                               # ...a stale socket is replaced
    stale.close()
    app = make_app(cfg_text(f"{{mode: stream, path: {path}, server: true}}"))
    r = app.router

    async def body(app: App) -> None:
        for _ in range(2):                         # QEMU restarts: it connects again
            c1 = await trio.open_unix_socket(path)
            await wait_until(lambda: r.ports[1].up)
            c2 = await trio.open_unix_socket(path)   # a second VM on the same socket
            assert await c2.receive_some(10) == b""  # is turned away
            await c1.send_all(framed(arp_request()))
            assert is_arp_reply((await read_frames(c1, bytearray(), 1))[0])
            await c1.aclose()
            await wait_until(lambda: not r.ports[1].up)
            await c2.aclose()
        ev = app.log.events()                       # type: ignore[attr-defined]
        assert ev.count("qemu.peer_rejected") == 2 and ev.count("qemu.connected") == 2

    run_app(app, body)
    assert not Path(path).exists()                   # the socket file is removed on close


# -- dgram ---------------------------------------------------------------------------

def test_dgram_exchanges_frames_and_counts_a_missing_peer(tmp_path: Path) -> None:
    local, remote = str(tmp_path / "r.sock"), str(tmp_path / "q.sock")
    app = make_app(cfg_text(f"{{mode: dgram, local: {local}, remote: {remote}}}"))
    r = app.router

    async def body(app: App) -> None:
        q = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        await q.sendto(arp_request(), local)       # QEMU not bound yet: the reply is lost
        await wait_until(lambda: r.counters.drops[DropReason.PORT_DOWN] == 1)
        q.close()
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        raw.bind(remote)                           # QEMU starts and binds its end
        q = trio.socket.from_stdlib_socket(raw)
        for last in (2, 3, 4):
            await q.sendto(arp_request(last), local)
        got = [await q.recv(65536) for _ in range(3)]
        assert all(is_arp_reply(f) for f in got)
        await q.sendto(b"", local)                 # an empty datagram is no frame
        await wait_until(lambda: r.counters.drops[DropReason.PORT_PROTOCOL_ERROR] == 1)
        q.close()

    run_app(app, body)
    assert r.ports[1].rx_packets == 4 and r.ports[1].tx_dropped == 1


# -- reload --------------------------------------------------------------------------

def test_reload_recreates_a_changed_port_and_keeps_the_others(tmp_path: Path) -> None:
    a, b = str(tmp_path / "a.sock"), str(tmp_path / "b.sock")
    text = cfg_text(f"{{mode: stream, path: {a}}}") + (
        f"  vm1:\n    kind: qemu\n    addresses: [10.0.2.1/24]\n"
        f"    qemu: {{mode: dgram, local: {tmp_path / 'l.sock'}, remote: {tmp_path / 'r.sock'}}}\n")
    cfg_file = tmp_path / "router.yaml"
    cfg_file.write_text(text)
    app = make_app(text, str(cfg_file))
    r = app.router

    async def body(app: App) -> None:
        la = listen_unix(a)
        conn = await la.accept()
        await wait_until(lambda: r.ports[1].up)
        vm1 = app.ports[2]
        cfg_file.write_text(text.replace(a, b))
        lb = listen_unix(b)
        summary = await app.reload()
        assert summary["recreated"] == ["vm0"] and summary["added"] == []
        assert app.ports[2] is vm1                      # unchanged: the same running port
        assert app.ports[1].path == b                   # type: ignore[attr-defined]
        assert await conn.receive_some(10) == b""       # the old connection was closed
        conn2 = await lb.accept()
        await wait_until(lambda: r.ports[1].up)
        await conn2.send_all(framed(arp_request()))
        assert is_arp_reply((await read_frames(conn2, bytearray(), 1))[0])
        await la.aclose()
        await lb.aclose()

    run_app(app, body)


def test_dgram_over_udp(tmp_path: Path) -> None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    qport = probe.getsockname()[1]
    probe2 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe2.bind(("127.0.0.1", 0))
    rport = probe2.getsockname()[1]
    probe2.close()
    app = make_app(cfg_text(f"{{mode: dgram, local: '127.0.0.1:{rport}', "
                            f"remote: '127.0.0.1:{qport}'}}"))

    async def body(app: App) -> None:
        q = trio.socket.from_stdlib_socket(probe)
        await q.sendto(arp_request(), ("127.0.0.1", rport))
        assert is_arp_reply(await q.recv(65536))
        q.close()

    run_app(app, body)
