"""The control socket: a versioned JSON-lines protocol between the running router and the CLI.

Transport: a Unix stream socket (default /run/pyrouter/pyrouter.sock, config
``control.socket``), created only by the router, mode 0600 in a 0700
directory; a peer whose SO_PEERCRED uid is neither root nor the router's own
is refused.  It is never reachable from the dataplane.

Protocol (version 1): one JSON object per line each way.
  request:   {"v": 1, "id": N, "cmd": "show", "args": {...}}
  answer:    {"v": 1, "id": N, "ok": true, "result": ...}
  streaming: {"v": 1, "id": N, "item": ...} ... then {"v": 1, "id": N, "ok": true, "end": true}
             (``show routes`` of a large table streams lists of routes as items and
             ends with the result {"streamed": count})
  error:     {"v": 1, "id": N, "ok": false, "error": "why"}
A request line longer than MAX_LINE, bad JSON or an unknown command gets an
error answer; the router never raises because of a client.  Requests run as
trio tasks beside the dataplane: handlers only touch the Router in short
synchronous steps, so forwarding is never stalled by a client.

Commands: version, show (links|addrs|routes|neigh|ntable|stats), route.get, reload,
ping, traceroute, capture, trace, explain.
"""

from __future__ import annotations

import json
import os
import random
import socket
import stat
import struct
import time
from collections.abc import Awaitable, Callable
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, Any

import trio

from .. import __version__
from ..control.explain import build_frame
from ..control.load import ConfigError
from ..core import Event, introspect
from ..core.ip.sock import send_echo, send_udp_probe
from ..core.ip6.sock6 import send_echo6
from ..core.services.dhcp4 import dhcp4_show
from ..core.services.dns import dns_show
from ..core.trace import Tracer, explain
from ..wire.capfilter import FilterError, compile_filter

if TYPE_CHECKING:
    from .app import App

PROTOCOL_VERSION = 1
MAX_LINE = 64 * 1024
STREAM_CHUNK = 1000          # list answers longer than this are streamed in chunks
NS = 1_000_000_000

Send = Callable[[dict[str, Any]], Awaitable[None]]


class ClientError(Exception):
    """A request the router refuses; its text goes back to the client."""


def _ip4(text: Any, what: str) -> int:
    try:
        return int(IPv4Address(str(text)))
    except ValueError:
        raise ClientError(f"{what}: not an IPv4 address: {text!r}") from None


def _int(args: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    v = args.get(key, default)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise ClientError(f"{key}: an integer from {lo} to {hi}")
    return v


def _bool(args: dict[str, Any], key: str) -> bool:
    v = args.get(key, False)
    if not isinstance(v, bool):
        raise ClientError(f"{key}: true or false")
    return v


def _float(args: dict[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    v = args.get(key, default)
    if not isinstance(v, int | float) or isinstance(v, bool) or not lo <= v <= hi:
        raise ClientError(f"{key}: a number from {lo} to {hi}")
    return float(v)


class Capture:
    """Frames of one port (or all) that match a filter, handed to a client's channel."""

    def __init__(self, ifindex: int | None, match: Callable[[bytes], bool],
                 chan: trio.MemorySendChannel[tuple[int, str, int, bytes]]) -> None:
        self.ifindex = ifindex
        self.match = match
        self.chan = chan
        self.dropped = 0

    def offer(self, direction: str, ifindex: int, frame: bytes | bytearray) -> None:
        if self.ifindex is not None and ifindex != self.ifindex:
            return
        try:
            if not self.match(bytes(frame)):
                return
        except Exception:
            return
        try:
            self.chan.send_nowait((time.time_ns(), direction, ifindex, bytes(frame)))
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            self.dropped += 1


CT_EVENTS_QUEUE = 1024        # conntrack -E: events queued per reader before losing them


class ControlServer:
    def __init__(self, app: App) -> None:
        self.app = app
        self.handlers: dict[str, Callable[[dict[str, Any], Send], Awaitable[Any]]] = {
            "version": self.h_version, "show": self.h_show, "route.get": self.h_route_get,
            "reload": self.h_reload, "ping": self.h_ping, "traceroute": self.h_traceroute,
            "capture": self.h_capture, "trace": self.h_trace, "explain": self.h_explain,
            "nft.list": self.h_nft_list,
            "conntrack": self.h_conntrack,
        }

    # -- transport -------------------------------------------------------------------
    async def serve(self, path: str, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, mode=0o700, exist_ok=True)
        if os.path.lexists(path):
            if not stat.S_ISSOCK(os.lstat(path).st_mode):
                raise OSError(f"control socket path {path} exists and is not a socket")
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(path)
            except OSError:
                os.unlink(path)                  # stale socket of a router that died
            else:
                probe.close()
                raise OSError(f"control socket {path} is in use by another router")
            finally:
                probe.close()
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            await sock.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        sock.listen(16)
        listener = trio.SocketListener(sock)
        task_status.started()
        try:
            await trio.serve_listeners(self.handle, [listener])
        finally:
            try:
                os.unlink(path)
            except OSError:
                pass

    async def handle(self, stream: trio.SocketStream) -> None:
        try:
            creds = stream.socket.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                             struct.calcsize("3i"))
            _pid, uid, _gid = struct.unpack("3i", creds)
            send_lock = trio.Lock()

            async def send(obj: dict[str, Any]) -> None:
                async with send_lock:
                    await stream.send_all(json.dumps(obj, separators=(",", ":")).encode()
                                          + b"\n")

            if uid not in (0, os.getuid()):
                # Read what the client sent first, so that closing does not reset the
                # connection before it has read the refusal.
                with trio.move_on_after(0.5):
                    await stream.receive_some(MAX_LINE)
                await send({"v": PROTOCOL_VERSION, "id": None, "ok": False,
                            "error": "permission denied"})
                with trio.move_on_after(0.5):
                    await stream.send_eof()
                    while await stream.receive_some(MAX_LINE):
                        pass
                return
            buf = bytearray()
            async with trio.open_nursery() as nursery:
                while True:
                    data = await stream.receive_some(65536)
                    if not data:
                        break        # half-closed: requests in flight still get answers
                    buf += data
                    too_long = False
                    while True:
                        nl = buf.find(b"\n")
                        if nl < 0:
                            too_long = len(buf) > MAX_LINE
                            break
                        if nl > MAX_LINE:
                            too_long = True
                            break
                        line = bytes(buf[:nl])
                        del buf[:nl + 1]
                        nursery.start_soon(self.dispatch, line, send)
                    if too_long:
                        await send({"v": PROTOCOL_VERSION, "id": None, "ok": False,
                                    "error": f"request longer than {MAX_LINE} bytes"})
                        nursery.cancel_scope.cancel()
                        return
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async def dispatch(self, line: bytes, send: Send) -> None:
        rid: Any = None
        try:
            try:
                req = json.loads(line)
            except ValueError:
                raise ClientError("malformed request: not JSON") from None
            if not isinstance(req, dict):
                raise ClientError("malformed request: not an object")
            rid = req.get("id")
            if req.get("v") != PROTOCOL_VERSION:
                raise ClientError(f"unsupported protocol version {req.get('v')!r}; "
                                  f"this router speaks {PROTOCOL_VERSION}")
            cmd = req.get("cmd")
            handler = self.handlers.get(cmd) if isinstance(cmd, str) else None
            if handler is None:
                raise ClientError(f"unknown command {cmd!r}")
            args = req.get("args", {})
            if not isinstance(args, dict):
                raise ClientError("args must be an object")

            async def item(obj: Any) -> None:
                await send({"v": PROTOCOL_VERSION, "id": rid, "item": obj})

            result = await handler(args, item)
            await send({"v": PROTOCOL_VERSION, "id": rid, "ok": True, "result": result,
                        "end": True})
        except ClientError as e:
            await send({"v": PROTOCOL_VERSION, "id": rid, "ok": False, "error": str(e)})
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except Exception as e:   # a bug: answer and log, never take the router down
            self.app.log.exception("control.internal_error")
            try:
                await send({"v": PROTOCOL_VERSION, "id": rid, "ok": False,
                            "error": f"internal error: {type(e).__name__}: {e}"})
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    def _now(self) -> int:
        return int(trio.current_time() * NS)

    # -- simple commands ----------------------------------------------------------------
    async def h_nft_list(self, args: dict[str, Any], item: Send) -> Any:
        """`nft list ruleset`: the live ruleset with its counters, plugins and queues."""
        nf = self.app.router.nf
        rs = nf.ruleset
        return {"ruleset": rs.list() if rs is not None else "",
                "counters": rs.counters() if rs is not None else [],
                **nf.stats()}

    async def h_conntrack(self, args: dict[str, Any], item: Send) -> Any:
        """`conntrack -L [filters]` / `-S`: entries as lines and dicts, or the counters."""
        from ..core.netfilter import conntrack as nfct  # noqa: PLC0415
        ct = self.app.router.nf.conntrack
        if args.get("op") == "stats":
            return {"stats": dict(ct.stats), "count": len(ct), "max": ct.max,
                    "line": nfct.stats_line(ct), "tcp_invalid": ct.tcp_invalid}
        if args.get("op") == "events":
            return await self._ct_events(ct, args, item)
        now = self._now()
        try:
            rows = nfct.dump(ct, now, args.get("proto"), args.get("src"), args.get("dst"),
                             args.get("family") or None)
        except ValueError as e:
            raise ClientError(f"conntrack: {e}") from None
        return {"entries": [nfct.entry_dict(c, now) for c in rows],
                "lines": [nfct.entry_line(c, now) for c in rows]}

    async def _ct_events(self, ct: Any, args: dict[str, Any], item: Send) -> Any:
        """`conntrack -E [-e MASK] [filters]`: NEW/UPDATE/DESTROY lines as they happen.
        The core calls the listener synchronously; it queues into a bounded channel and
        a slow reader loses events (counted in the answer, never buffered beyond it)."""
        from ..core.netfilter import conntrack as nfct  # noqa: PLC0415
        mask = {str(m).upper() for m in args.get("mask") or ("NEW", "UPDATE", "DESTROY")}
        if "ALL" in mask:
            mask = {"NEW", "UPDATE", "DESTROY"}
        bad = mask - {"NEW", "UPDATE", "DESTROY"}
        if bad:
            raise ClientError(f"conntrack: unknown event type(s) {', '.join(sorted(bad))}; "
                              "NEW, UPDATE, DESTROY or ALL")
        try:
            match = nfct.event_filter(args.get("proto"), args.get("src"), args.get("dst"),
                                      args.get("family") or None)
        except ValueError as e:
            raise ClientError(f"conntrack: {e}") from None
        count = _int(args, "count", 0, 0, 10_000_000)
        duration = _float(args, "duration", 0.0, 0.0, 86400.0)
        tx_chan, rx_chan = trio.open_memory_channel[dict[str, Any]](CT_EVENTS_QUEUE)
        lost = [0]

        def listener(kind: str, c: Any, line: str) -> None:
            if kind not in mask or not match(c):
                return
            try:
                tx_chan.send_nowait({"type": kind, "line": line})
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                lost[0] += 1
        ct.listeners.append(listener)
        try:
            n = await _relay(rx_chan, item, count, duration)
        finally:
            if listener in ct.listeners:
                ct.listeners.remove(listener)
        return {"events": n, "lost": lost[0]}

    async def h_version(self, args: dict[str, Any], item: Send) -> Any:
        return {"version": __version__, "protocol": PROTOCOL_VERSION, "pid": os.getpid(),
                "config": self.app.cfg_path}

    async def h_show(self, args: dict[str, Any], item: Send) -> Any:
        r = self.app.router
        what = args.get("what")
        if what == "links":
            return introspect.links(r)
        if what == "addrs":
            return introspect.addrs(r)
        if what == "routes":
            fam = args.get("family", 4)
            if fam not in (0, 4, 6):
                raise ClientError("family: 4, 6 or 0 (both)")
            objs = introspect.route_objects(r, str(args.get("table", "main")), fam)
            if len(objs) <= STREAM_CHUNK:
                return [introspect.route_dict(r, rt) for rt in objs]
            # Large tables stream: a chunk at a time, yielding to the dataplane between.
            for i in range(0, len(objs), STREAM_CHUNK):
                await item([introspect.route_dict(self.app.router, rt)
                            for rt in objs[i:i + STREAM_CHUNK]])
                await trio.lowlevel.checkpoint()
            return {"streamed": len(objs)}
        if what == "neigh":
            return introspect.neighbours(r, self._now())
        if what == "ntable":
            return introspect.neigh_tables(r)
        if what == "rules":
            return introspect.rules(r)
        if what == "dhcp":
            return dhcp4_show(r, self._now())
        if what == "dns":
            return dns_show(r)
        if what == "stats":
            snap = r.snapshot()
            return {"snmp": snap["snmp"], "drops": snap["drops"], "loop": self.app.loop.as_dict(),
                    "neigh_stats": snap["neigh_stats"], "reasm_queues": snap["reasm_queues"],
                    "fast_forwarded": snap["fast_forwarded"], "netfilter": snap["netfilter"],
                    "flow_forwarded": snap["flow_forwarded"] + snap["flow_forwarded6"],
                    "flow_entries": snap["flow_entries"], "flow_mismatch": snap["flow_mismatch"]}
        raise ClientError("show what? links, addrs, routes, rules, neigh, ntable, stats, dhcp "
                          "or dns")

    async def h_route_get(self, args: dict[str, Any], item: Send) -> Any:
        if isinstance(args.get("dst"), str) and ":" in args["dst"]:
            return self._route_get6(args)
        dst = _ip4(args.get("dst"), "dst")
        src = _ip4(args["from"], "from") if args.get("from") else None
        iif = args.get("iif")
        if iif is not None and not isinstance(iif, str):
            raise ClientError("iif: an interface name")
        mark = _int(args, "mark", 0, 0, 0xFFFFFFFF)
        return introspect.route_get(self.app.router, dst, src, iif, mark, self._now())

    def _route_get6(self, args: dict[str, Any]) -> Any:
        try:
            dst = int(IPv6Address(args["dst"]))
            src = int(IPv6Address(args["from"])) if args.get("from") else None
        except ValueError:
            raise ClientError("dst/from: not an IPv6 address") from None
        iif = args.get("iif")
        if iif is not None and not isinstance(iif, str):
            raise ClientError("iif: an interface name")
        return introspect.route_get6(self.app.router, dst, src, iif, self._now())

    async def h_reload(self, args: dict[str, Any], item: Send) -> Any:
        try:
            return await self.app.reload()
        except ConfigError as e:
            self.app.log.error("reload.rejected", file=e.file, path=e.path, reason=e.reason)
            raise ClientError(f"reload rejected, nothing changed: {e}") from None
        except OSError as e:
            self.app.log.error("reload.rejected", reason=str(e))
            raise ClientError(f"reload rejected, nothing changed: {e}") from None

    async def h_explain(self, args: dict[str, Any], item: Send) -> Any:
        r = self.app.router
        try:
            ifindex, frame, desc = build_frame(r, args)
        except ValueError as e:
            raise ClientError(str(e)) from None
        res = explain(r, ifindex, frame, self._now())
        res["packet"] = desc
        return res

    # -- subscriptions ---------------------------------------------------------------------
    def _subscribe(self, pred: Callable[[Event], bool], size: int = 1024
                   ) -> tuple[Callable[[Event], None], trio.MemoryReceiveChannel[Any]]:
        tx_chan, rx_chan = trio.open_memory_channel[Any](size)

        def sub(ev: Event) -> None:
            if pred(ev):
                try:
                    tx_chan.send_nowait(ev.fields)
                except trio.WouldBlock:
                    pass
        self.app.subscribers.append(sub)
        return sub, rx_chan

    def _unsubscribe(self, sub: Callable[[Event], None]) -> None:
        if sub in self.app.subscribers:
            self.app.subscribers.remove(sub)

    def _kick(self) -> None:
        """Write out what the router queued from a control action and re-arm timers."""
        self.app.tx.flush()
        self.app.timers.rearm()

    # -- ping / traceroute ------------------------------------------------------------------
    async def h_ping(self, args: dict[str, Any], item: Send) -> Any:
        r = self.app.router
        v6 = isinstance(args.get("dst"), str) and ":" in args["dst"]
        if v6:
            try:
                dst = int(IPv6Address(args["dst"]))
                src = int(IPv6Address(args["src"])) if args.get("src") else None
            except ValueError:
                raise ClientError("dst/src: not an IPv6 address") from None
        else:
            dst = _ip4(args.get("dst"), "dst")
            src = _ip4(args["src"], "src") if args.get("src") else None
        count = _int(args, "count", 4, 1, 100000)
        size = _int(args, "size", 56, 0, 65507)
        ttl = _int(args, "ttl", 64, 1, 255)
        df = _bool(args, "df")
        interval = _float(args, "interval", 1.0, 0.01, 60.0)
        timeout = _float(args, "timeout", 2.0, 0.01, 60.0)
        if src is not None and src not in (r.local6 if v6 else r.local4):
            shown = IPv6Address(src) if v6 else IPv4Address(src)
            raise ClientError(f"src {shown} is not one of the router's addresses")
        rg = (introspect.route_get6(r, dst, src, now=self._now()) if v6
              else introspect.route_get(r, dst, src, now=self._now()))
        if "error" in rg:
            raise ClientError(f"connect: {rg['error']}")
        table = "icmp6" if v6 else "icmp"
        overhead = 48 if v6 else 28
        ident = self._free_id(r.sockets["icmp"] | r.sockets["icmp6"])   # events are shared
        r.sockets[table].add(ident)
        sub, replies = self._subscribe(lambda ev: ev.name == "sock.icmp"
                                       and ev.fields.get("ident") == ident)
        sent = received = 0
        rtts: list[float] = []
        try:
            for seq in range(1, count + 1):
                start = trio.current_time()
                mtu = rg.get("mtu")
                if df and mtu and size + overhead > mtu:
                    await item({"seq": seq, "error": f"local error: message too long, mtu={mtu}"})
                    sent += 1
                else:
                    if v6:
                        send_echo6(r, dst, ident, seq, self._now(), size, ttl, src)
                    else:
                        send_echo(r, dst, ident, seq, self._now(), size, ttl, df, src)
                    sent += 1
                    self._kick()
                    got = await self._wait_for(replies, lambda f, s=seq: f.get("seq") == s,
                                               timeout)
                    if got is None:
                        await item({"seq": seq, "timeout": True})
                    elif got["kind"] == "echo_reply":
                        received += 1
                        rtt = (got["now"] - got.get("sent", got["now"])) / 1e6
                        rtts.append(rtt)
                        await item({"seq": seq, "from": got["from"], "ttl": got["ttl"],
                                    "bytes": got["bytes"], "rtt_ms": round(rtt, 3)})
                    else:
                        await item({"seq": seq, "from": got["from"], "icmp_type": got["type"],
                                    "icmp_code": got["code"], "mtu": got.get("mtu")})
                if seq < count:
                    await trio.sleep_until(start + interval)
        finally:
            self._unsubscribe(sub)
            r.sockets[table].discard(ident)
        summary: dict[str, Any] = {"dst": str(IPv6Address(dst) if v6 else IPv4Address(dst)),
                                   "transmitted": sent,
                                   "received": received,
                                   "loss_pct": round(100 * (sent - received) / sent, 1)}
        if rtts:
            summary["rtt_ms"] = {"min": round(min(rtts), 3), "avg": round(sum(rtts) / len(rtts), 3),
                                 "max": round(max(rtts), 3)}
        return summary

    async def h_traceroute(self, args: dict[str, Any], item: Send) -> Any:
        r = self.app.router
        dst = _ip4(args.get("dst"), "dst")
        max_hops = _int(args, "max_hops", 30, 1, 255)
        probes = _int(args, "probes", 3, 1, 10)
        wait = _float(args, "wait", 1.0, 0.01, 30.0)
        mode = args.get("mode", "udp")
        if mode not in ("udp", "icmp"):
            raise ClientError("mode: udp or icmp")
        port = _int(args, "port", 33434, 1, 65535)
        rg = introspect.route_get(r, dst, now=self._now())
        if "error" in rg:
            raise ClientError(f"connect: {rg['error']}")
        table = r.sockets["icmp" if mode == "icmp" else "udp"]
        ident = self._free_id(table)
        table.add(ident)
        key = "ident" if mode == "icmp" else "sport"
        sub, replies = self._subscribe(lambda ev: ev.name == "sock.icmp"
                                       and ev.fields.get(key) == ident)
        probe_no = 0
        reached = False
        try:
            for ttl in range(1, max_hops + 1):
                hop: list[Any] = []
                for _ in range(probes):
                    probe_no += 1
                    if mode == "icmp":
                        send_echo(r, dst, ident, probe_no, self._now(), 32, ttl)
                        match = lambda f, n=probe_no: f.get("seq") == n  # noqa: E731
                    else:
                        send_udp_probe(r, dst, ident, port + probe_no - 1, self._now(), 32, ttl)
                        match = lambda f, n=probe_no: f.get("dport") == port + n - 1  # noqa: E731
                    start = self._now()
                    self._kick()
                    got = await self._wait_for(replies, match, wait)
                    if got is None:
                        hop.append(None)
                        continue
                    hop.append({"from": got["from"], "rtt_ms": round((got["now"] - start) / 1e6, 3),
                                "icmp_type": got["type"], "icmp_code": got["code"]})
                    if got["kind"] == "echo_reply" or got["type"] == 3:
                        reached = True
                await item({"hop": ttl, "probes": hop})
                if reached:
                    break
        finally:
            self._unsubscribe(sub)
            table.discard(ident)
        return {"dst": str(IPv4Address(dst)), "reached": reached, "hops": ttl}

    @staticmethod
    def _free_id(used: set[int]) -> int:
        while True:
            ident = random.randint(32768, 60999)
            if ident not in used:
                return ident

    @staticmethod
    async def _wait_for(chan: trio.MemoryReceiveChannel[Any], pred: Callable[[Any], bool],
                        timeout: float) -> Any:
        with trio.move_on_after(timeout):
            while True:
                f = await chan.receive()
                if pred(f):
                    return f
        return None

    # -- capture / trace ----------------------------------------------------------------------
    def _filter(self, expr: str) -> Callable[[bytes], bool]:
        try:
            return compile_filter(expr)
        except FilterError as e:
            raise ClientError(f"filter: {e}") from None

    async def h_capture(self, args: dict[str, Any], item: Send) -> Any:
        r = self.app.router
        port = args.get("port", "any")
        ifindex = None
        if port != "any":
            p = r.ports_by_name.get(str(port))
            if p is None:
                raise ClientError(f"no interface named {port!r}")
            ifindex = p.ifindex
        match = self._filter(str(args.get("filter", "")))
        count = _int(args, "count", 0, 0, 10_000_000)
        duration = _float(args, "duration", 0.0, 0.0, 86400.0)
        tx_chan, rx_chan = trio.open_memory_channel[tuple[int, str, int, bytes]](4096)
        cap = Capture(ifindex, match, tx_chan)
        self.app.captures.append(cap)
        n = 0
        try:
            with trio.move_on_after(duration if duration else float("inf")):
                async for ts, direction, idx, frame in rx_chan:
                    p = r.ports.get(idx)
                    await item({"ts_ns": ts, "dir": direction, "port": p.name if p else idx,
                                "frame": frame.hex()})
                    n += 1
                    if count and n >= count:
                        break
        finally:
            self.app.captures.remove(cap)
        return {"frames": n, "dropped": cap.dropped}

    async def h_trace(self, args: dict[str, Any], item: Send) -> Any:
        r = self.app.router
        if r.tracer is not None:
            raise ClientError("another trace is running")
        match = self._filter(str(args.get("filter", "")))
        count = _int(args, "count", 0, 0, 1_000_000)
        duration = _float(args, "duration", 0.0, 0.0, 86400.0)
        ident = random.randint(1, 1 << 30)
        sub, records = self._subscribe(lambda ev: ev.name == "sock.trace"
                                       and ev.fields.get("tracer") == ident)
        r.tracer = Tracer(match, count, ident)
        try:
            n = await _relay(records, item, count, duration)
        finally:
            if self.app.router.tracer is not None and self.app.router.tracer.ident == ident:
                self.app.router.tracer = None
            self._unsubscribe(sub)
        return {"records": n}


async def _relay(chan: Any, item: Send, count: int, duration: float) -> int:
    """A streaming command's loop: send what arrives on *chan* as items until *count*
    of them (0: no limit) or *duration* seconds (0: no limit); how many were sent."""
    n = 0
    with trio.move_on_after(duration if duration else float("inf")):
        async for rec in chan:
            await item(rec)
            n += 1
            if count and n >= count:
                break
    return n
