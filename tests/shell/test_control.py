"""The control socket (shell/control.py): JSON lines v1 over a Unix socket under tmp_path,
served by ControlServer for an App built like test_loop.make() (fake TAPs on socketpairs).
Also the CLI client against it, App.reload through it, and the log RateLimiter.  No root."""

from __future__ import annotations

import json
import os
import random
import socket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

import pyrouter
from pyrouter.cli import client as cli_client
from pyrouter.cli import main as cli_main
from pyrouter.control.build import build
from pyrouter.control.schema import Control
from pyrouter.shell.app import PortTask
from pyrouter.shell.control import MAX_LINE, PROTOCOL_VERSION, ControlServer
from pyrouter.shell.log import RateLimiter
from ..core.helpers import arp, checksum, echo, icmp, ipv4, parse_eth, parse_ipv4

from .test_loop import CFG, FakeDev, H1_MAC, R_MAC_A, arp_request, make, recv_all

NS = 1_000_000_000
R_MAC_B = bytes.fromhex("020000000201")
HOST_B_IP, HOST_B_MAC = "10.0.2.50", bytes.fromhex("02000000bb50")
MUTE_B_IP = "10.0.2.51"                      # answers ARP, never answers anything else


# --------------------------------------------------------------------------
# Harness
# --------------------------------------------------------------------------

class Conn:
    """A JSON-lines client on one connection (async, in the same trio run as the server)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = b""

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def send(self, cmd: Any, args: Any = None, rid: Any = 1, v: Any = 1) -> None:
        req: dict[str, Any] = {"v": v, "id": rid, "cmd": cmd}
        if args is not None:
            req["args"] = args
        await self.send_raw(json.dumps(req).encode() + b"\n")

    async def line(self) -> dict[str, Any] | None:
        while b"\n" not in self.buf:
            data = await self.stream.receive_some(65536)
            if not data:
                return None
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        msg = json.loads(line)
        assert msg["v"] == PROTOCOL_VERSION
        return msg

    async def answer(self) -> tuple[list[Any], dict[str, Any]]:
        """Items, then the final line (ok or error)."""
        items = []
        while True:
            msg = await self.line()
            assert msg is not None, "connection closed before the answer"
            if "item" in msg:
                items.append(msg["item"])
                continue
            return items, msg

    async def call(self, cmd: str, args: Any = None, rid: Any = 1) -> tuple[list[Any], Any]:
        await self.send(cmd, args, rid)
        items, final = await self.answer()
        assert final["id"] == rid
        assert final["ok"] is True, final
        assert final["end"] is True
        return items, final["result"]

    async def error(self, cmd: Any, args: Any = None, rid: Any = 1, v: Any = 1) -> str:
        await self.send(cmd, args, rid, v)
        items, final = await self.answer()
        assert items == [] and final["ok"] is False and final["id"] == rid, final
        return final["error"]

    async def aclose(self) -> None:
        await self.stream.aclose()


async def until(pred: Callable[[], Any], timeout: float = 3.0) -> None:
    """Poll (the rx tasks run between polls) until *pred* holds."""
    with trio.fail_after(timeout):
        while not pred():
            await trio.sleep(0.002)


async def frames(sock: socket.socket, n: int) -> list[bytes]:
    got: list[bytes] = []

    def have() -> bool:
        got.extend(recv_all(sock))
        return len(got) >= n

    await until(have)
    return got


async def connect(path: str) -> Conn:
    return Conn(await trio.open_unix_socket(path))


class Env:
    def __init__(self, tmp_path: Path, cfg_text: str = CFG) -> None:
        self.app, self.pairs, self.log = make()
        self.tmp = tmp_path
        self.path = str(tmp_path / "run" / "ctl.sock")
        assert len(self.path) < 100, "AF_UNIX path too long for this tmp_path"
        self.cfg_file = tmp_path / "pyrouter.yaml"
        self.cfg_file.write_text(cfg_text)
        self.app.cfg_path = str(self.cfg_file)
        self.app.cfg = self.app.cfg.model_copy(update={"control": Control(socket=self.path)})
        self.server: ControlServer | None = None
        self.nursery: trio.Nursery | None = None

    def close(self) -> None:
        for outer, inner in self.pairs.values():
            outer.close()
            inner.close()

    def run(self, body: Callable[[Env], Awaitable[None]], hosts: bool = False,
            timeout: float = 5.0) -> None:
        async def main() -> None:
            app = self.app
            app.router = build(app.cfg, random.Random(1), int(trio.current_time() * NS))
            async with trio.open_nursery() as n:
                self.nursery = app.nursery = n
                await n.start(app.timers.run)
                for pt in app.ports.values():
                    app.start_port(pt)
                if hosts:
                    n.start_soon(fake_hosts, self.pairs[2][0])
                self.server = ControlServer(app)
                await n.start(self.server.serve, self.path)
                with trio.fail_after(timeout):
                    await body(self)
                n.cancel_scope.cancel()

        try:
            trio.run(main)
        finally:
            self.close()


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


async def fake_hosts(sock: socket.socket) -> None:
    """Hosts on port b: HOST_B answers ARP, echo (ttl 64) and UDP (port unreachable);
    MUTE_B only answers ARP."""
    while True:
        await trio.lowlevel.wait_readable(sock)
        for f in recv_all(sock):
            e = parse_eth(f)
            if e.type == 0x0806 and e.payload[7] == 1:
                tpa = ".".join(str(b) for b in e.payload[24:28])
                spa = ".".join(str(b) for b in e.payload[14:18])
                if tpa in (HOST_B_IP, MUTE_B_IP):
                    mac = HOST_B_MAC if tpa == HOST_B_IP else bytes.fromhex("02000000bb51")
                    sock.send(arp(2, mac, tpa, e.src, spa, eth_dst=e.src))
                continue
            if e.type != 0x0800:
                continue
            ip = parse_ipv4(e.payload)
            if ip.dst != HOST_B_IP:
                continue
            if ip.proto == 1 and ip.payload[0] == 8:
                msg = bytearray(ip.payload)
                msg[0], msg[2:4] = 0, b"\x00\x00"
                msg[2:4] = checksum(bytes(msg)).to_bytes(2, "big")
                reply = ipv4(HOST_B_IP, ip.src, bytes(msg), proto=1, ttl=64)
            elif ip.proto == 17:
                reply = ipv4(HOST_B_IP, ip.src, icmp(3, 3, 0, e.payload[:28]), proto=1)
            else:
                continue
            sock.send(e.src + HOST_B_MAC + b"\x08\x00" + reply)


# --------------------------------------------------------------------------
# Simple commands
# --------------------------------------------------------------------------

def test_version(env: Env) -> None:
    async def body(e: Env) -> None:
        c = await connect(e.path)
        _, res = await c.call("version")
        assert res == {"version": pyrouter.__version__, "protocol": 1,
                       "pid": os.getpid(), "config": str(e.cfg_file)}
        await c.aclose()

    env.run(body)


def test_show_each_what(env: Env) -> None:
    async def body(e: Env) -> None:
        c = await connect(e.path)
        _, links = await c.call("show", {"what": "links"})
        assert [(d["ifindex"], d["ifname"], d["operstate"]) for d in links] == [
            (1, "a", "UP"), (2, "b", "UP")]
        _, addrs = await c.call("show", {"what": "addrs"})
        assert [a["addr_info"][0]["local"] for a in addrs] == ["10.0.1.1", "10.0.2.1"]
        _, main = await c.call("show", {"what": "routes"})
        assert [(d["dst"], d["dev"]) for d in main] == [("10.0.1.0/24", "a"),
                                                         ("10.0.2.0/24", "b")]
        _, local = await c.call("show", {"what": "routes", "table": "local"})
        assert {d["dst"] for d in local} == {"10.0.1.1/32", "10.0.1.255/32", "10.0.2.1/32",
                                             "10.0.2.255/32"}
        _, every = await c.call("show", {"what": "routes", "table": "all"})
        assert len(every) == len(main) + len(local)
        _, neigh = await c.call("show", {"what": "neigh"})
        assert neigh == []
        _, stats = await c.call("show", {"what": "stats"})
        assert set(stats) == {"snmp", "drops", "loop", "neigh_stats", "reasm_queues",
                              "fast_forwarded", "flow_forwarded", "flow_entries",
                              "flow_mismatch", "netfilter"}
        assert stats["snmp"]["IpInReceives"] == 0
        assert "wakeups" in stats["loop"]
        _, dhcp = await c.call("show", {"what": "dhcp"})
        assert dhcp == []                         # no interface has a DHCP server
        _, dns = await c.call("show", {"what": "dns"})
        assert dns is None                        # no forwarder configured
        for bad in ({}, {"what": "bogus"}):
            err = await c.error("show", bad)
            assert err == ("show what? links, addrs, routes, rules, neigh, ntable, stats, dhcp "
                           "or dns")
        await c.aclose()

    env.run(body)


def test_show_neigh_after_traffic(env: Env) -> None:
    async def body(e: Env) -> None:
        e.pairs[1][0].send(arp_request(bytes([10, 0, 1, 2]), bytes([10, 0, 1, 1])))
        await frames(e.pairs[1][0], 1)
        c = await connect(e.path)
        _, neigh = await c.call("show", {"what": "neigh"})
        assert [(d["dst"], d["dev"], d["state"], d["lladdr"]) for d in neigh] == [
            ("10.0.1.2", "a", "STALE", H1_MAC.hex(":"))]
        assert neigh[0]["used"] == 0 and neigh[0]["confirmed"] == 60   # never confirmed
        _, links = await c.call("show", {"what": "links"})
        assert links[0]["stats"]["rx_packets"] == 1 and links[0]["stats"]["tx_packets"] == 1
        await c.aclose()

    env.run(body)


def test_route_get(env: Env) -> None:
    async def body(e: Env) -> None:
        c = await connect(e.path)
        _, res = await c.call("route.get", {"dst": "10.0.2.9"})
        assert (res["dev"], res["prefsrc"], res["mtu"], res["table"]) == ("b", "10.0.2.1",
                                                                          1500, "main")
        _, res = await c.call("route.get", {"dst": "10.0.2.9", "from": "10.0.1.2", "iif": "a",
                                            "mark": 3})
        assert (res["iif"], res["from"], res["mark"]) == ("a", "10.0.1.2", 3)
        _, res = await c.call("route.get", {"dst": "10.0.1.1"})
        assert res["type"] == "local"
        # Lookup failures are answers, not protocol errors.
        _, res = await c.call("route.get", {"dst": "8.8.8.8"})
        assert res == {"dst": "8.8.8.8", "error": "Network is unreachable"}
        _, res = await c.call("route.get", {"dst": "10.0.2.9", "iif": "zz"})
        assert res == {"error": 'Cannot find device "zz"'}
        # Bad arguments are protocol errors.
        assert await c.error("route.get", {"dst": "10.0.2"}) == \
            "dst: not an IPv4 address: '10.0.2'"
        assert await c.error("route.get", {}) == "dst: not an IPv4 address: None"
        assert await c.error("route.get", {"dst": "nonsense"}) == \
            "dst: not an IPv4 address: 'nonsense'"
        assert await c.error("route.get", {"dst": "fd00::zz"}) == "dst/from: not an IPv6 address"
        assert await c.error("route.get", {"dst": "10.0.2.9", "from": "x"}) == \
            "from: not an IPv4 address: 'x'"
        assert await c.error("route.get", {"dst": "10.0.2.9", "iif": 1}) == \
            "iif: an interface name"
        for mark in (-1, 1 << 32, "3", True, 1.5):
            assert await c.error("route.get", {"dst": "10.0.2.9", "mark": mark}) == \
                "mark: an integer from 0 to 4294967295"
        await c.aclose()

    env.run(body)


def test_explain(env: Env) -> None:
    async def body(e: Env) -> None:
        r = e.app.router
        before = json.dumps(r.snapshot(), sort_keys=True)
        c = await connect(e.path)
        _, res = await c.call("explain", {"iif": "a", "dst": "10.0.2.9", "proto": "udp",
                                          "ttl": 5})
        assert res["packet"] == {"iif": "a", "src": "10.0.1.2", "dst": "10.0.2.9", "proto": 17,
                                 "ttl": 5, "len": 84, "df": False, "tos": 0, "sport": 40000,
                                 "dport": 33434}
        assert [s["stage"] for s in res["steps"]] == [
            "eth_rcv", "ip_rcv", "fib_lookup", "ip_forward", "neigh_output", "xmit",
            "neigh_queued"]
        assert [(w["dev"], w["len"]) for w in res["would_transmit"]] == [("b", 42)]
        _, res = await c.call("explain", {"iif": "a", "dst": "10.0.2.9", "ttl": 1})
        assert res["steps"][-1] == {"stage": "drop", "reason": "ttl_exceeded"}
        assert json.dumps(r.snapshot(), sort_keys=True) == before
        assert r.neigh4.entries == {} and recv_all(e.pairs[2][0]) == []
        assert await c.error("explain", {"iif": "q", "dst": "10.0.2.9"}) == \
            "iif: no interface named 'q'"
        assert await c.error("explain", {"iif": "a", "dst": "10.0.2.9", "size": 70000}) == \
            "size: must be from 0 to 65000"
        assert (await c.error("explain", {"iif": "a", "dst": "nope"})).startswith(
            "src/dst: an IPv4 address is needed")
        assert await c.error("explain", {"iif": "a", "dst": "1.2.3.4", "proto": "tcp",
                                         "tcp_flags": "Q"}) == \
            "tcp_flags: unknown flag 'Q' (use F S R P A U)"
        await c.aclose()

    env.run(body)


# --------------------------------------------------------------------------
# Protocol errors
# --------------------------------------------------------------------------

def test_protocol_errors(env: Env) -> None:
    async def body(e: Env) -> None:
        c = await connect(e.path)
        await c.send_raw(b"{not json\n")
        _, final = await c.answer()
        assert final == {"v": 1, "id": None, "ok": False,
                         "error": "malformed request: not JSON"}
        for raw in (b"[1, 2]\n", b'"version"\n', b"3\n", b"null\n"):
            await c.send_raw(raw)
            _, final = await c.answer()
            assert final == {"v": 1, "id": None, "ok": False,
                             "error": "malformed request: not an object"}
        assert await c.error("version", rid=5, v=2) == \
            "unsupported protocol version 2; this router speaks 1"
        await c.send_raw(b'{"id": 6, "cmd": "version"}\n')
        _, final = await c.answer()
        assert final["id"] == 6 and final["error"].startswith("unsupported protocol version None")
        assert await c.error("frobnicate", rid="x") == "unknown command 'frobnicate'"
        assert await c.error(None, rid=7) == "unknown command None"
        for args in ([1], "links", 3):
            assert await c.error("show", args, rid=9) == "args must be an object"
        await c.send_raw(b'{"v": 1, "id": 11, "cmd": "version", "args": null}\n')
        _, final = await c.answer()
        assert final["error"] == "args must be an object"
        assert await c.error("route.get", {"dst": "300.1.1.1"}, rid={"a": 1}) == \
            "dst: not an IPv4 address: '300.1.1.1'"
        # An empty line is not JSON either; the connection stays usable throughout.
        await c.send_raw(b"\n")
        _, final = await c.answer()
        assert final["error"] == "malformed request: not JSON"
        _, res = await c.call("version", rid=10)
        assert res["protocol"] == 1
        await c.aclose()

    env.run(body)


def test_an_unhashable_command_is_an_unknown_command(env: Env) -> None:
    async def body(e: Env) -> None:
        c = await connect(e.path)
        assert await c.error(["show"], rid=8) == "unknown command ['show']"
        assert await c.error({"a": 1}, rid=9) == "unknown command {'a': 1}"
        await c.aclose()
        assert not any(ev == "control.internal_error" for ev, _ in e.log.records)

    env.run(body)


def test_a_line_longer_than_the_limit_without_newline_closes(env: Env) -> None:
    async def body(e: Env) -> None:
        c = await connect(e.path)
        await c.send_raw(b'{"v": 1, "id": 1, "cmd": "version", "args": {"x": "' + b"y" * 200_000)
        msg = await c.line()
        assert msg == {"v": 1, "id": None, "ok": False,
                       "error": f"request longer than {MAX_LINE} bytes"}
        try:                                          # then the router hangs up (a reset:
            assert await c.line() is None             # it did not read the rest)
        except trio.BrokenResourceError:
            pass
        await c.aclose()
        c = await connect(e.path)                      # and keeps serving others
        assert (await c.call("version"))[1]["protocol"] == 1
        await c.aclose()

    env.run(body)


def test_a_complete_line_longer_than_the_limit_is_refused(env: Env) -> None:
    async def body(e: Env) -> None:
        c = await connect(e.path)
        req = json.dumps({"v": 1, "id": 1, "cmd": "version", "args": {"pad": "x" * 70_000}})
        assert len(req) > MAX_LINE
        await c.send_raw(req.encode() + b"\n")
        msg = await c.line()
        assert msg is not None and msg["ok"] is False, msg
        assert "longer than" in msg["error"]
        await c.aclose()

    env.run(body)


def test_a_line_just_under_the_limit_is_served(env: Env) -> None:
    async def body(e: Env) -> None:
        c = await connect(e.path)
        head = json.dumps({"v": 1, "id": 1, "cmd": "version", "args": {"pad": ""}})
        req = head.replace('"pad": ""', '"pad": "' + "x" * (MAX_LINE - len(head) - 8) + '"')
        assert len(req) < MAX_LINE
        await c.send_raw(req.encode() + b"\n")
        _, final = await c.answer()
        assert final["ok"] is True
        await c.aclose()

    env.run(body)


# --------------------------------------------------------------------------
# The socket file
# --------------------------------------------------------------------------

def test_socket_mode_0600_in_a_new_0700_directory(env: Env) -> None:
    async def body(e: Env) -> None:
        st = os.stat(e.path)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert stat.S_IMODE(os.stat(os.path.dirname(e.path)).st_mode) == 0o700

    old = os.umask(0o022)
    try:
        env.run(body)
    finally:
        os.umask(old)
    assert not os.path.exists(env.path)               # removed when the server stops
    assert os.umask(0o022) == 0o022                   # the process umask was restored
    os.umask(old)


def test_a_second_server_on_a_live_path_refuses(env: Env) -> None:
    async def body(e: Env) -> None:
        with pytest.raises(OSError, match="in use by another router"):
            await ControlServer(e.app).serve(e.path)
        c = await connect(e.path)                      # the first one is untouched
        assert (await c.call("version"))[1]["protocol"] == 1
        await c.aclose()

    env.run(body)


def test_a_stale_socket_file_is_replaced(env: Env) -> None:
    os.makedirs(os.path.dirname(env.path), mode=0o700)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(env.path)
    dead.close()                                       # the file stays, nobody listens
    assert os.path.exists(env.path)

    async def body(e: Env) -> None:
        c = await connect(e.path)
        assert (await c.call("version"))[1]["protocol"] == 1
        await c.aclose()

    env.run(body)


def test_a_regular_file_at_the_socket_path_is_not_deleted(env: Env) -> None:
    os.makedirs(os.path.dirname(env.path), mode=0o700)
    Path(env.path).write_text("precious")

    async def main() -> None:
        async with trio.open_nursery() as n:
            await n.start(ControlServer(env.app).serve, env.path)
            n.cancel_scope.cancel()

    try:
        with pytest.raises(BaseExceptionGroup) as info:
            trio.run(main)
        assert info.group_contains(OSError)
    finally:
        env.close()
    assert Path(env.path).read_text() == "precious"


# --------------------------------------------------------------------------
# Connections
# --------------------------------------------------------------------------

def test_several_requests_on_one_connection(env: Env) -> None:
    async def body(e: Env) -> None:
        c = await connect(e.path)
        # Pipelined in one write: every request is answered, by id.
        reqs = [{"v": 1, "id": i, "cmd": cmd, "args": args} for i, (cmd, args) in enumerate([
            ("version", {}), ("show", {"what": "links"}), ("route.get", {"dst": "10.0.1.7"}),
            ("nope", {}), ("show", {"what": "routes"})])]
        await c.send_raw(b"".join(json.dumps(r).encode() + b"\n" for r in reqs))
        answers = {}
        for _ in reqs:
            _, final = await c.answer()
            answers[final["id"]] = final
        assert sorted(answers) == [0, 1, 2, 3, 4]
        assert [answers[i]["ok"] for i in range(5)] == [True, True, True, False, True]
        assert answers[2]["result"]["dev"] == "a"
        # A request split across writes, then sequential requests.
        line = json.dumps({"v": 1, "id": 99, "cmd": "version"}).encode() + b"\n"
        await c.send_raw(line[:7])
        await trio.sleep(0.01)
        await c.send_raw(line[7:])
        _, final = await c.answer()
        assert final["id"] == 99 and final["ok"]
        for i in range(3):
            _, res = await c.call("route.get", {"dst": f"10.0.2.{i + 5}"}, rid=100 + i)
            assert res["dst"] == f"10.0.2.{i + 5}"
        await c.aclose()

    env.run(body)


def test_a_client_leaving_mid_stream_does_not_break_the_server(env: Env) -> None:
    async def body(e: Env) -> None:
        r = e.app.router
        c = await connect(e.path)
        await c.send("ping", {"dst": "10.0.1.1", "count": 1000, "interval": 0.01}, rid=1)
        for _ in range(2):
            msg = await c.line()
            assert msg is not None and "item" in msg
        assert r.sockets["icmp"] and e.app.subscribers
        await c.aclose()                               # gone, mid-stream
        await until(lambda: r.sockets["icmp"] == set() and e.app.subscribers == [])
        # Also one that leaves with a half-written request.
        c = await connect(e.path)
        await c.send_raw(b'{"v": 1, "id": 2, "cmd": "ver')
        await c.aclose()
        # The server goes on serving.
        c = await connect(e.path)
        _items, res = await c.call("ping", {"dst": "10.0.1.1", "count": 2, "interval": 0.01})
        assert res["received"] == 2
        await c.aclose()
        assert not any(ev == "control.internal_error" for ev, _ in e.log.records)

    env.run(body)


def test_a_half_closed_client_still_gets_its_answer(env: Env) -> None:
    async def body(e: Env) -> None:
        c = await connect(e.path)
        await c.send("version")
        await c.stream.send_eof()
        msg = await c.line()
        assert msg is not None and msg["ok"] is True
        await c.aclose()

    env.run(body)


def test_many_concurrent_clients(env: Env) -> None:
    async def body(e: Env) -> None:
        results: list[Any] = []

        async def one(i: int) -> None:
            c = await connect(e.path)
            _, res = await c.call("route.get", {"dst": f"10.0.2.{i}"}, rid=i)
            results.append((i, res["dst"]))
            await c.aclose()

        async with trio.open_nursery() as n:
            for i in range(1, 13):                     # within the listen backlog (16)
                n.start_soon(one, i)
        assert sorted(results) == [(i, f"10.0.2.{i}") for i in range(1, 13)]

    env.run(body)


# --------------------------------------------------------------------------
# ping / traceroute
# --------------------------------------------------------------------------

def test_ping_the_routers_own_address_through_loopback(env: Env) -> None:
    async def body(e: Env) -> None:
        c = await connect(e.path)
        items, res = await c.call("ping", {"dst": "10.0.2.1", "count": 3, "interval": 0.01,
                                           "size": 100, "ttl": 1})
        assert [(i["seq"], i["from"], i["ttl"], i["bytes"]) for i in items] == [
            (1, "10.0.2.1", 64, 108), (2, "10.0.2.1", 64, 108), (3, "10.0.2.1", 64, 108)]
        assert all(i["rtt_ms"] >= 0 for i in items)
        assert res["dst"] == "10.0.2.1"
        assert (res["transmitted"], res["received"], res["loss_pct"]) == (3, 3, 0.0)
        assert set(res["rtt_ms"]) == {"min", "avg", "max"}
        # From another of the router's addresses.
        items, res = await c.call("ping", {"dst": "10.0.1.1", "src": "10.0.2.1", "count": 1})
        assert items[0]["from"] == "10.0.1.1" and res["received"] == 1
        # Nothing went on the wire.
        assert recv_all(e.pairs[1][0]) == [] and recv_all(e.pairs[2][0]) == []
        assert e.app.router.sockets["icmp"] == set() and e.app.subscribers == []
        await c.aclose()

    env.run(body)


def test_ping_a_host_on_a_socketpair(env: Env) -> None:
    async def body(e: Env) -> None:
        c = await connect(e.path)
        items, res = await c.call("ping", {"dst": HOST_B_IP, "count": 3, "interval": 0.01,
                                           "size": 20})
        assert [(i["seq"], i["from"], i["ttl"], i["bytes"]) for i in items] == [
            (s, HOST_B_IP, 64, 28) for s in (1, 2, 3)]
        assert res["received"] == 3
        _, neigh = await c.call("show", {"what": "neigh"})
        assert [(d["dst"], d["state"], d["lladdr"]) for d in neigh] == [
            (HOST_B_IP, "REACHABLE", HOST_B_MAC.hex(":"))]
        await c.aclose()

    env.run(body, hosts=True)


def test_ping_timeouts_and_local_errors(env: Env) -> None:
    async def body(e: Env) -> None:
        c = await connect(e.path)
        items, res = await c.call("ping", {"dst": MUTE_B_IP, "count": 2, "interval": 0.01,
                                           "timeout": 0.05})
        assert items == [{"seq": 1, "timeout": True}, {"seq": 2, "timeout": True}]
        assert (res["transmitted"], res["received"], res["loss_pct"]) == (2, 0, 100.0)
        assert "rtt_ms" not in res
        items, res = await c.call("ping", {"dst": HOST_B_IP, "count": 1, "size": 1473,
                                           "df": True})
        assert items == [{"seq": 1, "error": "local error: message too long, mtu=1500"}]
        assert await c.error("ping", {"dst": "8.8.8.8"}) == "connect: Network is unreachable"
        assert await c.error("ping", {"dst": HOST_B_IP, "src": "10.0.2.50"}) == \
            "src 10.0.2.50 is not one of the router's addresses"
        for args, msg in [({"dst": "x"}, "dst: not an IPv4 address: 'x'"),
                          ({"dst": HOST_B_IP, "count": 0}, "count: an integer from 1 to 100000"),
                          ({"dst": HOST_B_IP, "ttl": 0}, "ttl: an integer from 1 to 255"),
                          ({"dst": HOST_B_IP, "interval": 0.001},
                           "interval: a number from 0.01 to 60.0"),
                          ({"dst": HOST_B_IP, "timeout": "1"},
                           "timeout: a number from 0.01 to 60.0"),
                          ({"dst": HOST_B_IP, "df": "no"}, "df: true or false")]:
            assert await c.error("ping", args) == msg
        await c.aclose()

    env.run(body, hosts=True)


def test_traceroute_to_a_host_on_a_socketpair(env: Env) -> None:
    async def body(e: Env) -> None:
        c = await connect(e.path)
        items, res = await c.call("traceroute", {"dst": HOST_B_IP, "probes": 2, "wait": 0.5})
        assert len(items) == 1 and items[0]["hop"] == 1
        assert [(p["from"], p["icmp_type"], p["icmp_code"]) for p in items[0]["probes"]] == [
            (HOST_B_IP, 3, 3), (HOST_B_IP, 3, 3)]
        assert res == {"dst": HOST_B_IP, "reached": True, "hops": 1}
        items, res = await c.call("traceroute", {"dst": HOST_B_IP, "mode": "icmp",
                                                 "probes": 1, "wait": 0.5})
        assert items[0]["probes"][0]["icmp_type"] == 0 and res["reached"]
        items, res = await c.call("traceroute", {"dst": MUTE_B_IP, "max_hops": 2, "probes": 2,
                                                 "wait": 0.02})
        assert items == [{"hop": 1, "probes": [None, None]}, {"hop": 2, "probes": [None, None]}]
        assert res == {"dst": MUTE_B_IP, "reached": False, "hops": 2}
        assert await c.error("traceroute", {"dst": HOST_B_IP, "mode": "tcp"}) == \
            "mode: udp or icmp"
        assert e.app.router.sockets == {"icmp": set(), "udp": set(), "icmp6": set()}
        await c.aclose()

    env.run(body, hosts=True)


# --------------------------------------------------------------------------
# trace / capture
# --------------------------------------------------------------------------

def test_trace_streams_records_and_cleans_up(env: Env) -> None:
    async def body(e: Env) -> None:
        c = await connect(e.path)
        await c.send("trace", {"filter": "arp", "count": 1}, rid=4)
        await until(lambda: e.app.router.tracer is not None)
        c2 = await connect(e.path)
        assert await c2.error("trace", {}) == "another trace is running"
        assert await c2.error("capture", {"filter": "bogus ("}, rid=1) != ""
        await c2.aclose()
        e.pairs[1][0].send(ipv4_frame_to_router())      # not ARP: not traced
        e.pairs[1][0].send(arp_request(bytes([10, 0, 1, 2]), bytes([10, 0, 1, 1])))
        items, final = await c.answer()
        assert final == {"v": 1, "id": 4, "ok": True, "result": {"records": 1}, "end": True}
        [rec] = items
        # The echo to the router waited for 10.0.1.2 to resolve: the ARP request from it
        # releases the queued reply, then gets its own answer.
        assert rec["iif"] == "a" and [s["stage"] for s in rec["steps"]] == [
            "eth_rcv", "arp_rcv", "xmit", "xmit"]
        assert [s["ethertype"] for s in rec["steps"][2:]] == ["0x0800", "0x0806"]
        assert e.app.router.tracer is None and e.app.subscribers == []
        await c.aclose()

    env.run(body)


def test_capture_both_directions(env: Env) -> None:
    async def body(e: Env) -> None:
        c = await connect(e.path)
        await c.send("capture", {"port": "a", "filter": "arp", "count": 2}, rid=3)
        await until(lambda: e.app.captures)
        e.pairs[1][0].send(arp_request(bytes([10, 0, 1, 2]), bytes([10, 0, 1, 1])))
        items, final = await c.answer()
        assert final["result"] == {"frames": 2, "dropped": 0}
        assert [(i["dir"], i["port"]) for i in items] == [("in", "a"), ("out", "a")]
        assert bytes.fromhex(items[1]["frame"])[:6] == H1_MAC
        assert e.app.captures == []
        assert await c.error("capture", {"port": "zz"}) == "no interface named 'zz'"
        await c.aclose()

    env.run(body)


def ipv4_frame_to_router() -> bytes:
    return R_MAC_A + H1_MAC + b"\x08\x00" + ipv4("10.0.1.2", "10.0.1.1", echo(), proto=1)


# --------------------------------------------------------------------------
# The CLI against the server
# --------------------------------------------------------------------------

def test_cli_client_and_main(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    async def body(e: Env) -> None:
        res = await trio.to_thread.run_sync(cli_client.call, e.path, "route.get",
                                            {"dst": "10.0.2.7"})
        assert res["dev"] == "b"
        with pytest.raises(cli_client.ControlError, match="unknown command 'nope'"):
            await trio.to_thread.run_sync(cli_client.call, e.path, "nope")
        got = await trio.to_thread.run_sync(
            lambda: list(cli_client.request(e.path, "ping", {"dst": "10.0.1.1", "count": 2,
                                                             "interval": 0.01})))
        assert [k for k, _ in got] == ["item", "item", "result"]
        code = await trio.to_thread.run_sync(cli_main, ["--socket", e.path, "route", "get",
                                                        "10.0.2.7", "from", "10.0.1.2",
                                                        "iif", "a"])
        assert code == 0
        code = await trio.to_thread.run_sync(cli_main, ["--socket", e.path, "route", "get",
                                                        "8.8.8.8"])
        assert code == 2
        code = await trio.to_thread.run_sync(cli_main, ["--socket", e.path, "show", "route"])
        assert code == 0

    env.run(body)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "10.0.2.7 from 10.0.1.2 dev b iif a"
    assert out[1].startswith("    mtu 1500 route 10.0.2.0/24 neigh 10.0.2.7")
    assert out[2] == "RTNETLINK answers: Network is unreachable"
    assert out[3:] == ["10.0.1.0/24 dev a proto kernel scope link src 10.0.1.1",
                       "10.0.2.0/24 dev b proto kernel scope link src 10.0.2.1"]


def test_cli_without_a_server(tmp_path: Path) -> None:
    with pytest.raises(cli_client.ControlError, match="cannot reach the router"):
        cli_client.call(str(tmp_path / "none.sock"), "version")


# --------------------------------------------------------------------------
# reload through the control socket (App.reload, FakeDev ports)
# --------------------------------------------------------------------------

CFG_B_GONE = """
interfaces:
  a: {addresses: [10.0.1.1/24], macaddress: "02:00:00:00:01:01"}
routes:
  - {to: 10.50.0.0/16, via: 10.0.1.254}
"""

CFG_C_ADDED = CFG + """\
  c: {addresses: [10.0.3.1/24], macaddress: "02:00:00:00:03:01"}
routes:
  - {to: 10.60.0.0/16, via: 10.0.2.254}
"""


def test_reload_removes_a_port_and_adds_a_route(env: Env) -> None:
    async def body(e: Env) -> None:
        e.pairs[1][0].send(arp_request(bytes([10, 0, 1, 2]), bytes([10, 0, 1, 1])))
        await frames(e.pairs[1][0], 1)
        rx_before = e.app.router.ports[1].rx_packets
        c = await connect(e.path)
        e.cfg_file.write_text(CFG_B_GONE)
        _, res = await c.call("reload")
        assert res["added"] == [] and res["removed"] == ["b"] and res["recreated"] == []
        r = e.app.router
        assert list(r.ports) == [1] and list(e.app.ports) == [1]
        assert r.ports[1].rx_packets == rx_before
        assert r.neigh4.get(1, int.from_bytes(bytes([10, 0, 1, 2]), "big")) is not None
        _, rg = await c.call("route.get", {"dst": "10.50.1.1"})
        assert rg["gateway"] == "10.0.1.254"
        assert await c.error("ping", {"dst": "10.0.2.9"}) == "connect: Network is unreachable"
        # The remaining port still works.
        e.pairs[1][0].send(arp_request(bytes([10, 0, 1, 3]), bytes([10, 0, 1, 1])))
        got = await frames(e.pairs[1][0], 1)
        assert len(got) == 1 and got[0][:6] == H1_MAC
        await c.aclose()

    env.run(body)


def test_reload_rejects_a_bad_config_and_changes_nothing(env: Env) -> None:
    async def body(e: Env) -> None:
        r = e.app.router
        before = (json.dumps(r.snapshot(), sort_keys=True), len(r.fib.tables[254]))
        c = await connect(e.path)
        e.cfg_file.write_text(CFG + "routes:\n  - {to: 10.9.0.0/16, via: 192.168.7.7}\n")
        err = await c.error("reload")
        assert err.startswith("reload rejected, nothing changed: ")
        assert "routes[0].via" in err and "not in a connected subnet" in err
        e.cfg_file.write_text("interfaces: [")
        assert (await c.error("reload")).startswith("reload rejected, nothing changed: ")
        assert e.app.router is r
        assert (json.dumps(r.snapshot(), sort_keys=True), len(r.fib.tables[254])) == before
        assert list(e.app.ports) == [1, 2]
        await c.aclose()

    env.run(body)


def test_reload_adds_a_port_with_a_stable_ifindex(env: Env, monkeypatch: pytest.MonkeyPatch
                                                  ) -> None:
    new_pairs: dict[int, tuple[socket.socket, socket.socket]] = {}

    def open_ports(plans: list[Any]) -> dict[int, PortTask]:
        out = {}
        for p in plans:
            outer, inner = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            outer.setblocking(False)
            inner.setblocking(False)
            new_pairs[p.ifindex] = (outer, inner)
            out[p.ifindex] = PortTask(p, FakeDev(inner))
        return out

    monkeypatch.setattr(env.app, "open_ports", open_ports)

    async def body(e: Env) -> None:
        c = await connect(e.path)
        e.cfg_file.write_text(CFG_C_ADDED)
        _, res = await c.call("reload")
        assert res["added"] == ["c"] and res["removed"] == []
        r = e.app.router
        assert {i: p.name for i, p in r.ports.items()} == {1: "a", 2: "b", 3: "c"}
        assert {i: pt.plan.name for i, pt in e.app.ports.items()} == {1: "a", 2: "b", 3: "c"}
        assert list(new_pairs) == [3]
        # The new port's rx task runs: it answers ARP for its address.
        new_pairs[3][0].send(b"\xff" * 6 + H1_MAC + b"\x08\x06"
                             + b"\x00\x01\x08\x00\x06\x04\x00\x01" + H1_MAC
                             + bytes([10, 0, 3, 9]) + b"\x00" * 6 + bytes([10, 0, 3, 1]))
        got = await frames(new_pairs[3][0], 1)
        assert len(got) == 1 and got[0][6:12] == bytes.fromhex("020000000301")
        # Reloading the same file again changes no ifindex.
        _, res = await c.call("reload")
        assert res["added"] == [] and {i: p.name for i, p in e.app.router.ports.items()} == {
            1: "a", 2: "b", 3: "c"}
        await c.aclose()

    try:
        env.run(body)
    finally:
        for outer, inner in new_pairs.values():
            outer.close()
            inner.close()


# --------------------------------------------------------------------------
# RateLimiter (shell/log.py)
# --------------------------------------------------------------------------

def test_rate_limiter_burst_then_rate() -> None:
    # Times and rates that are exact in binary floating point.
    rl = RateLimiter(rate=4.0, burst=8)
    t = 1000.0
    assert [rl.allow(t) for _ in range(10)] == [True] * 8 + [False] * 2
    assert rl.suppressed == 2
    assert not rl.allow(t + 0.125)                   # half a token
    assert rl.allow(t + 0.25)                        # one token after 1/rate s
    assert not rl.allow(t + 0.25)
    assert rl.take_suppressed() == 4 and rl.suppressed == 0
    # A steady 8/s against 4/s: every other line gets through.
    got = [rl.allow(t + 0.25 + i * 0.125) for i in range(1, 21)]
    assert got == [False, True] * 10
    assert rl.take_suppressed() == 10


def test_rate_limiter_refills_up_to_burst_only() -> None:
    rl = RateLimiter(rate=1.0, burst=3)
    assert all(rl.allow(0.0) for _ in range(3))
    assert not rl.allow(0.0)
    # A long quiet time gives back the burst, never more.
    assert [rl.allow(3600.0) for _ in range(4)] == [True, True, True, False]
    assert rl.take_suppressed() == 2
    assert rl.take_suppressed() == 0


def test_rate_limiter_in_the_rx_loop(env: Env) -> None:
    """An exception escaping Router.receive is counted, and logged at most burst times."""
    async def body(e: Env) -> None:
        import pyrouter.core.router as core_router

        def boom(r: object, port: object, frame: bytes, now: int) -> None:
            raise RuntimeError("bug")

        saved = core_router.eth_rcv          # the slow path, looked up on every frame
        core_router.eth_rcv = boom  # type: ignore[assignment]
        try:
            for _ in range(30):
                e.pairs[1][0].send(arp_request(bytes([10, 0, 1, 2]), bytes([10, 0, 1, 1])))
            await until(lambda: e.app.router.snapshot()["drops"]["internal_error"] >= 30)
        finally:
            core_router.eth_rcv = saved
        snap = e.app.router.snapshot()
        assert snap["drops"]["internal_error"] == 30

    env.run(body)
    logged = [kw for ev, kw in env.log.records if ev == "internal_error"]
    assert len(logged) == 10
    assert all(kw["suppressed"] == 0 for kw in logged)
    assert env.app.error_limiter.suppressed == 20


def test_conntrack_events_bounded_with_lost_count(env: Env) -> None:
    """`conntrack -E` over the socket: the listener queues into a bounded channel; a
    burst larger than it (no reader progress in between) loses the rest, counted; a bad
    mask is refused; the listener is gone after the answer."""
    from pyrouter.core.netfilter.conntrack import Conn as CtConn  # noqa: PLC0415
    from pyrouter.shell.control import CT_EVENTS_QUEUE  # noqa: PLC0415

    async def body(e: Env) -> None:
        ct = e.app.router.nf.conntrack
        c = await connect(e.path)
        assert "unknown event type" in await c.error("conntrack", {"op": "events",
                                                                   "mask": ["BOGUS"]})
        n = CT_EVENTS_QUEUE + 100
        await c.send("conntrack", {"op": "events", "mask": ["NEW"], "count": CT_EVENTS_QUEUE,
                                   "proto": "udp"}, rid=7)
        await until(lambda: len(ct.listeners) == 1)
        t = (4, bytes([10, 0, 1, 2]), bytes([10, 0, 2, 2]), 17, 1, 2)
        udp = CtConn(t, (4, t[2], t[1], 17, 2, 1))
        tcp = CtConn((4, t[1], t[2], 6, 1, 2), (4, t[2], t[1], 6, 2, 1))
        for _ in range(n):                              # synchronous, as from the core
            for fn in list(ct.listeners):
                fn("NEW", udp, "line")
                fn("DESTROY", udp, "not in the mask")
                fn("NEW", tcp, "filtered out")
        items, final = await c.answer()
        # The reader was already waiting: one event goes straight to it, 1024 queue.
        assert final["ok"] and final["result"] == {"events": CT_EVENTS_QUEUE, "lost": 99}
        assert items[0] == {"type": "NEW", "line": "line"} and len(items) == CT_EVENTS_QUEUE
        assert ct.listeners == []
        await c.aclose()

    env.run(body)
