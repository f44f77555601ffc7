"""Shell tests: the rx loop, transmitter and timer task on fake TAPs (SOCK_SEQPACKET
socketpairs keep frame boundaries like a TAP fd), in virtual time.  No root."""

from __future__ import annotations

import random
import socket
from ipaddress import IPv4Address
from typing import Any

import pytest
import trio
import trio.testing

from pyrouter.control.build import build, plan_ports
from pyrouter.control.load import parse
from pyrouter.core import DropReason
from pyrouter.shell.app import App, PortTask
from pyrouter.shell.tap import BrokenPortError, Transmitter, rx_loop
from pyrouter.wire.icmpv4 import IcmpRepr
from pyrouter.wire.ipv4 import Ipv4Repr

CFG = """
interfaces:
  a: {addresses: [10.0.1.1/24], macaddress: "02:00:00:00:01:01"}
  b: {addresses: [10.0.2.1/24], macaddress: "02:00:00:00:02:01"}
"""
R_MAC_A = bytes.fromhex("020000000101")
H1_MAC = bytes.fromhex("02000000aa01")


class Log:
    def __init__(self) -> None:
        self.records: list[tuple[str, dict[str, Any]]] = []

    def info(self, event: str, **kw: Any) -> None:
        self.records.append((event, kw))

    error = warning = exception = info


def arp_request(sip: bytes, tip: bytes) -> bytes:
    return (b"\xff" * 6 + H1_MAC + b"\x08\x06" + b"\x00\x01\x08\x00\x06\x04\x00\x01"
            + H1_MAC + sip + b"\x00" * 6 + tip)


def ipv4_icmp_echo(src: bytes, dst: bytes) -> bytes:
    icmp = IcmpRepr.echo(True, 7, 1, b"x" * 16).to_bytes()
    ip = Ipv4Repr(IPv4Address(src), IPv4Address(dst), 1).to_bytes(icmp)
    return R_MAC_A + H1_MAC + b"\x08\x00" + ip


class FakeDev:
    """Stands in for a pytun device: a socket end whose fd the loop reads and writes."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()


def make() -> tuple[App, dict[int, tuple[socket.socket, socket.socket]], Log]:
    cfg = parse(CFG)
    plans = plan_ports(cfg)
    log = Log()
    app = App("<test>", cfg, plans, log)
    app.router = build(cfg, random.Random(1), 0)
    app.tx = Transmitter(app)
    pairs = {}
    for p in plans:
        outer, inner = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        inner.setblocking(False)
        outer.setblocking(False)
        pairs[p.ifindex] = (outer, inner)
        app.ports[p.ifindex] = PortTask(p, FakeDev(inner))
        app.fds[p.ifindex] = inner.fileno()
    return app, pairs, log


def recv_all(sock: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(sock.recv(65536))
        except BlockingIOError:
            return out


def test_rx_loop_answers_and_batches() -> None:
    app, pairs, log = make()
    r = app.router

    async def main() -> None:
        async with trio.open_nursery() as n:
            n.start_soon(rx_loop, app, 1, pairs[1][1].fileno())
            for i in range(100):                   # more than one batch
                pairs[1][0].send(arp_request(bytes([10, 0, 1, 2 + i % 50]), bytes([10, 0, 1, 1])))
            await trio.sleep(0.2)
            n.cancel_scope.cancel()

    trio.run(main)
    replies = recv_all(pairs[1][0])
    assert len(replies) == 100
    assert all(f[12:14] == b"\x08\x06" and f[20:22] == b"\x00\x02" for f in replies)
    assert r.ports[1].rx_packets == 100 and r.ports[1].tx_packets == 100


def test_broken_port_is_reported_not_spun_on() -> None:
    app, pairs, log = make()
    r = app.router
    pairs[1][0].close()                            # the "device" goes away

    async def main() -> None:
        with trio.fail_after(2):
            async with trio.open_nursery() as n:
                n.start_soon(rx_loop, app, 1, pairs[1][1].fileno())

    with pytest.raises(BaseExceptionGroup) as info:
        trio.run(main)
    assert info.group_contains(BrokenPortError)
    assert r.ports[1].rx_packets == 0


def test_full_tx_queue_is_a_counted_drop() -> None:
    app, pairs, log = make()
    r = app.router
    r.tx = [(2, b"\x00" * 60000)] * 200            # far more than the socket buffer holds
    app.tx.flush()
    assert r.counters.drops[DropReason.TX_RING_FULL] > 0
    assert r.ports[2].tx_dropped > 0


def test_timer_task_drives_neighbour_failure_in_virtual_time() -> None:
    """A packet to an address nobody answers: 3 ARP probes 1 s apart, then Host
    Unreachable back to the sender at 3 s, all driven by the timer task."""
    app, pairs, log = make()
    r = app.router
    clock = trio.testing.MockClock(autojump_threshold=0)
    times: list[float] = []

    async def main() -> None:
        async with trio.open_nursery() as n:
            await n.start(app.timers.run)
            n.start_soon(rx_loop, app, 1, pairs[1][1].fileno())
            n.start_soon(rx_loop, app, 2, pairs[2][1].fileno())
            # Let the router learn h1 so the ICMP error can go out without delay.
            pairs[1][0].send(arp_request(bytes([10, 0, 1, 2]), bytes([10, 0, 1, 1])))
            await trio.sleep(0.01)
            recv_all(pairs[1][0])
            pairs[1][0].send(ipv4_icmp_echo(bytes([10, 0, 1, 2]), bytes([10, 0, 2, 99])))
            start = trio.current_time()
            while True:
                await trio.sleep(0.05)
                for f in recv_all(pairs[2][0]):
                    if f[12:14] == b"\x08\x06":
                        times.append(round(trio.current_time() - start, 2))
                got = recv_all(pairs[1][0])
                if any(f[12:14] == b"\x08\x00" and f[34] == 3 and f[35] == 1 for f in got):
                    times.append(round(trio.current_time() - start, 2))
                    break
            n.cancel_scope.cancel()

    trio.run(main, clock=clock)
    probes, unreach = times[:-1], times[-1]
    assert len(probes) == 3, times
    assert probes[1] - probes[0] == pytest.approx(1.0, abs=0.06)
    assert probes[2] - probes[1] == pytest.approx(1.0, abs=0.06)
    assert unreach == pytest.approx(3.0, abs=0.1)
    assert any(ev == "neigh.failed" for ev, _ in log.records)
