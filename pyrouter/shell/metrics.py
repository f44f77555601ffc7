"""Prometheus metrics: render the router's counters as text, serve them over HTTP on trio.

``render(snapshot, loop)`` turns ``Router.snapshot()`` plus the shell's loop
statistics into the Prometheus text exposition format 0.0.4
(https://prometheus.io/docs/instrumenting/exposition_formats/); ``serve`` is
a deliberately small HTTP/1.1 server (RFC 9112) answering ``GET /metrics``.

Exposition invariants (what a scraper may rely on):
- every family has one ``# HELP`` and one ``# TYPE`` line, before its samples,
  and its samples are contiguous; no series appears twice; the text ends in "\\n";
- names carry the ``pyrouter_`` prefix, counters end in ``_total``, units are
  in the name (``_bytes``, ``_seconds``) as the Prometheus naming guide asks;
- label values are escaped per the spec (``\\`` -> ``\\\\``, ``"`` -> ``\\"``,
  newline -> ``\\n``), HELP text likewise (backslash and newline);
- every ``DropReason`` and every neighbour state is exported, zeros included,
  so series never appear or vanish as traffic changes;
- a family is split into several metrics when summing over a label would be
  meaningless (the naming guide's rule): the SNMP MIB counters are one metric
  each (``IpInReceives`` -> ``pyrouter_snmp_ip_in_receives_total``), drops
  by reason are one metric with a ``reason`` label (their sum is all drops);
- missing optional snapshot keys render as zeros or as no samples, extra keys
  are ignored, non-numeric values are skipped: rendering never raises on a
  snapshot from an older or newer core.

The ``loop`` dict is the rx loop's view: ``wakeups``, ``frames`` (frames read,
the sum of all batch sizes), ``busy_seconds`` and ``batch_hist`` mapping a
bucket upper bound to the number of wakeups whose batch size n fell in that
bucket alone (previous bound < n <= bound; *not* cumulative; ``math.inf`` or
"+Inf" for larger batches).  ``LoopStats`` keeps exactly that shape.

HTTP invariants: one request per connection (``Connection: close``); the
request head is capped at ``MAX_HEAD`` bytes; the whole exchange has one
deadline (``timeout``), so a client trickling bytes is cut off as surely as an
idle one; at most ``max_connections`` are served at once and any beyond are
closed unanswered; no client behaviour raises out of ``serve`` and nothing is
logged.  A ``get_text`` failure answers 500 and the server carries on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from email.utils import formatdate
from typing import Any
from urllib.parse import urlsplit

import trio

from ..core import DropReason
from ..core.link.neighbour import NudState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
MAX_HEAD = 8192
TIMEOUT = 5.0
MAX_CONNECTIONS = 64
LINGER = 1.0                 # drain what the client still sends after our response...
LINGER_BYTES = 65536         # ...so closing does not reset the connection under it


# -- rendering ----------------------------------------------------------------------------

_NAME_OK = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NOT_NAME = re.compile(r"[^a-zA-Z0-9_]")

INTERFACE_COUNTERS = (
    ("rx_packets", "receive_packets", "Frames received on the port."),
    ("rx_bytes", "receive_bytes", "Bytes received on the port (Ethernet frames)."),
    ("rx_dropped", "receive_drops", "Received frames dropped on the port."),
    ("tx_packets", "transmit_packets", "Frames transmitted on the port."),
    ("tx_bytes", "transmit_bytes", "Bytes transmitted on the port (Ethernet frames)."),
    ("tx_dropped", "transmit_drops", "Frames dropped on transmit (e.g. TAP queue full)."),
)


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(v: float) -> str:
    if isinstance(v, int):
        return str(int(v))               # bool -> 0/1, never "True"
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


def snmp_metric_name(counter: str) -> str:
    """``IpInReceives`` -> ``pyrouter_snmp_ip_in_receives_total`` ("OKs" is one word)."""
    words = _CAMEL.sub("_", counter.replace("OKs", "Oks")).lower()
    return f"pyrouter_snmp_{_NOT_NAME.sub('_', words)}_total"


def _num(v: Any) -> int | float | None:
    return v if isinstance(v, (int, float)) else None


def _mapping(v: Any) -> Mapping[Any, Any]:
    return v if isinstance(v, Mapping) else {}


class _Out:
    """Accumulates families; refuses a family name twice (a bug, not an input problem)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: set[str] = set()

    def family(self, name: str, kind: str, help_text: str,
               samples: Iterable[tuple[str, Mapping[str, str], int | float]]) -> None:
        assert _NAME_OK.match(name) and name not in self.names, name
        self.names.add(name)
        self.lines.append(f"# HELP {name} {escape_help(help_text)}")
        self.lines.append(f"# TYPE {name} {kind}")
        for sname, labels, value in samples:
            if labels:
                ls = ",".join(f'{k}="{escape_label(v)}"' for k, v in labels.items())
                self.lines.append(f"{sname}{{{ls}}} {format_value(value)}")
            else:
                self.lines.append(f"{sname} {format_value(value)}")

    def scalar(self, name: str, kind: str, help_text: str, value: Any) -> None:
        v = _num(value)
        self.family(name, kind, help_text, [] if v is None else [(name, {}, v)])

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def render(snapshot: Mapping[str, Any], loop: Mapping[str, Any]) -> str:
    """The exposition text for one scrape (see the module docstring for the invariants)."""
    out = _Out()

    ifaces = _mapping(snapshot.get("interfaces"))
    for key, stem, help_text in INTERFACE_COUNTERS:
        name = f"pyrouter_interface_{stem}_total"
        out.family(name, "counter", help_text,
                   [(name, {"interface": str(ifn)}, v) for ifn, c in ifaces.items()
                    if (v := _num(_mapping(c).get(key))) is not None])

    drops = _mapping(snapshot.get("drops"))
    reasons = [r.value for r in DropReason] + sorted(
        str(k) for k in drops if k not in {r.value for r in DropReason})
    out.family("pyrouter_drops_total", "counter",
               "Packets the router discarded, by drop reason (each drop counted once).",
               [("pyrouter_drops_total", {"reason": r}, _num(drops.get(r)) or 0)
                for r in reasons])

    snmp = _mapping(snapshot.get("snmp"))
    for counter, value in snmp.items():
        v = _num(value)
        name = snmp_metric_name(str(counter))
        if v is None or name in out.names:
            continue
        out.family(name, "counter",
                   f"MIB counter {counter}, named as in /proc/net/snmp and nstat.",
                   [(name, {}, v)])

    out.scalar("pyrouter_fast_path_forwarded_total", "counter",
               "Packets forwarded by the fast path (also counted in IpForwDatagrams).",
               snapshot.get("fast_forwarded", 0))
    out.scalar("pyrouter_flow_path_forwarded_total", "counter",
               "Packets forwarded by the per-flow fast path (netfilter flowtable; IPv4 and "
               "IPv6, also counted in IpForwDatagrams / Ip6OutForwDatagrams).",
               snapshot.get("flow_forwarded", 0) + snapshot.get("flow_forwarded6", 0))
    out.scalar("pyrouter_flow_entries", "gauge",
               "Per-flow fast-path entries in the forwarding cache.",
               snapshot.get("flow_entries", 0))

    states: dict[str, int] = {s.value: 0 for s in NudState}
    neighbours = snapshot.get("neighbours")
    for entry in neighbours if isinstance(neighbours, list) else ():
        state = _mapping(entry).get("state")
        if state is not None:
            states[str(state)] = states.get(str(state), 0) + 1
    out.family("pyrouter_neighbours", "gauge", "Neighbour entries (ARP and NDISC) by NUD state.",
               [("pyrouter_neighbours", {"state": s}, n) for s, n in states.items()])

    for stat, value in _mapping(snapshot.get("neigh_stats")).items():
        v = _num(value)
        name = f"pyrouter_neighbour_{_NOT_NAME.sub('_', str(stat)).lower()}_total"
        if v is None or name in out.names or not _NAME_OK.match(name):
            continue
        out.family(name, "counter", f"Neighbour table statistic {stat} (ip -s ntable).",
                   [(name, {}, v)])

    out.scalar("pyrouter_reassembly_queues", "gauge",
               "IPv4 datagrams being reassembled.", snapshot.get("reasm_queues", 0))
    out.scalar("pyrouter_reassembly_bytes", "gauge",
               "Memory charged to IPv4 reassembly queues, in bytes.",
               snapshot.get("reasm_mem", 0))

    _netfilter(out, _mapping(snapshot.get("netfilter")))

    out.scalar("pyrouter_loop_wakeups_total", "counter",
               "Times the rx loop woke to read frames.", loop.get("wakeups", 0))
    out.scalar("pyrouter_loop_frames_total", "counter",
               "Frames the rx loop read.", loop.get("frames", 0))
    out.scalar("pyrouter_loop_busy_seconds_total", "counter",
               "Seconds the rx loop spent processing batches.", loop.get("busy_seconds", 0.0))
    _histogram(out, "pyrouter_loop_batch_frames", "Frames read per rx loop wakeup.",
               _mapping(loop.get("batch_hist")), _num(loop.get("frames")) or 0)
    return out.text()


_PLUGIN_COUNTERS = (("calls", "calls", "Calls of a netfilter hook plugin."),
                    ("errors", "errors", "Plugin calls that raised or returned no verdict."),
                    ("slow", "slow_calls", "Plugin calls longer than the plugin's budget_ms."),
                    ("skipped", "skipped", "Packets given the failure verdict while the "
                                           "plugin was disabled for being slow."),
                    ("trips", "disabled", "Times the plugin was disabled for being slow."))
_QUEUE_COUNTERS = (("total", "queued", "Packets queued (netfilter QUEUE)."),
                   ("accepted", "accepted", "Queued packets a consumer accepted."),
                   ("rejected", "rejected", "Queued packets a consumer dropped."),
                   ("timeouts", "timeouts", "Queued packets given the failure verdict "
                                            "after timeout_ms."),
                   ("dropped", "overflows", "Packets not queued: the queue was full."),
                   ("errors", "consumer_errors", "Consumer calls that raised or returned "
                                                 "no verdict."))


def _netfilter(out: _Out, nf: Mapping[str, Any]) -> None:
    """Plugin counters labelled plugin and hook (the same function at a second place of
    the same hook is not exported twice), queue counters labelled queue."""
    plugins: dict[tuple[str, str], Mapping[str, Any]] = {}
    for p in nf.get("plugins") or ():
        if isinstance(p, Mapping):
            plugins.setdefault((str(p.get("plugin")), str(p.get("hook", ""))), p)
    for key, stem, help_text in _PLUGIN_COUNTERS:
        name = f"pyrouter_nf_plugin_{stem}_total"
        out.family(name, "counter", help_text,
                   [(name, {"plugin": k[0], "hook": k[1]}, v) for k, p in plugins.items()
                    if (v := _num(p.get(key))) is not None])
    name = "pyrouter_nf_plugin_seconds_total"
    out.family(name, "counter", "Time spent in a netfilter hook plugin.",
               [(name, {"plugin": k[0], "hook": k[1]}, v / 1000) for k, p in plugins.items()
                if (v := _num(p.get("time_ms"))) is not None])
    name = "pyrouter_nf_plugin_disabled"
    out.family(name, "gauge", "1 while a plugin is disabled for being slow.",
               [(name, {"plugin": k[0], "hook": k[1]}, 1 if p.get("disabled") else 0)
                for k, p in plugins.items()])
    queues = list({str(q.get("num")): q for q in nf.get("queues") or ()
                   if isinstance(q, Mapping)}.values())
    for key, stem, help_text in _QUEUE_COUNTERS:
        name = f"pyrouter_nf_queue_{stem}_total"
        out.family(name, "counter", help_text,
                   [(name, {"queue": str(q.get("num"))}, v) for q in queues
                    if (v := _num(q.get(key))) is not None])
    name = "pyrouter_nf_queue_waiting"
    out.family(name, "gauge", "Packets waiting in a netfilter queue for a verdict.",
               [(name, {"queue": str(q.get("num"))}, v) for q in queues
                if (v := _num(q.get("waiting"))) is not None])


def _bound(key: Any) -> float | None:
    try:
        b = float(key)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(b) else b


def _histogram(out: _Out, name: str, help_text: str, hist: Mapping[Any, Any],
               total: float) -> None:
    """Per-bucket counts -> cumulative ``_bucket`` samples, ``+Inf``, ``_sum``, ``_count``."""
    counts: dict[float, int | float] = {}
    for key, value in hist.items():
        b, v = _bound(key), _num(value)
        if b is not None and v is not None:
            counts[b] = counts.get(b, 0) + v
    if not any(math.isfinite(b) for b in counts):
        counts.update({float(b): 0 for b in BATCH_BUCKETS})
    samples: list[tuple[str, Mapping[str, str], int | float]] = []
    acc: int | float = 0
    for b in sorted(counts):
        acc += counts[b]
        if math.isfinite(b):
            le = str(int(b)) if b.is_integer() else repr(b)
            samples.append((f"{name}_bucket", {"le": le}, acc))
    samples.append((f"{name}_bucket", {"le": "+Inf"}, acc))
    samples.append((f"{name}_sum", {}, total))
    samples.append((f"{name}_count", {}, acc))
    out.family(name, "histogram", help_text, samples)


class LoopStats:
    """The rx loop's counters in the shape ``render`` takes as ``loop``."""

    __slots__ = ("batch_hist", "busy_seconds", "frames", "wakeups")

    def __init__(self) -> None:
        self.wakeups = 0
        self.frames = 0
        self.busy_seconds = 0.0
        self.batch_hist: dict[float, int] = dict.fromkeys(BATCH_BUCKETS, 0)

    def observe(self, frames: int, busy_seconds: float) -> None:
        self.wakeups += 1
        self.frames += frames
        self.busy_seconds += busy_seconds
        b = 1 << (frames - 1).bit_length() if frames > 1 else 1
        if b > BATCH_BUCKETS[-1]:
            b = math.inf
        self.batch_hist[b] = self.batch_hist.get(b, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {"wakeups": self.wakeups, "frames": self.frames,
                "busy_seconds": self.busy_seconds, "batch_hist": dict(self.batch_hist)}


# -- HTTP ---------------------------------------------------------------------------------

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = re.compile(rf"({_TOKEN}) ([\x21-\x7e]+) HTTP/(\d)\.(\d)\Z")
_HEADER = re.compile(rf"({_TOKEN}):[ \t]*(.*?)[ \t]*\Z")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            500: "Internal Server Error", 505: "HTTP Version Not Supported"}


class _HttpError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def parse_listen(listen: str) -> tuple[str | None, int]:
    """``"127.0.0.1:9101"``, ``"[::1]:9101"``, ``":9101"`` (every address) -> (host, port)."""
    host, sep, port_s = listen.rpartition(":")
    if not sep or not port_s.isdigit() or not 0 <= int(port_s) <= 65535:
        raise ValueError(f"listen address {listen!r}: want HOST:PORT or [IPV6]:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host or "[" in host or "]" in host:
        raise ValueError(f"listen address {listen!r}: put an IPv6 address in brackets")
    return (host or None), int(port_s)


def parse_request(head: bytes) -> tuple[str, str]:
    """A request head (up to the blank line) -> (method, path); ``_HttpError`` if unusable."""
    lines = [ln.removesuffix("\r") for ln in head.decode("latin-1").split("\n")]
    while lines and lines[-1] == "":
        lines.pop()
    m = _REQUEST_LINE.match(lines[0]) if lines else None
    if m is None:
        raise _HttpError(400)
    method, target, major, minor = m.groups()
    if major != "1":
        raise _HttpError(505)
    hosts = 0
    for line in lines[1:]:
        h = _HEADER.match(line)
        if h is None or _BAD_VALUE.search(h.group(2)):
            raise _HttpError(400)          # includes obs-fold and whitespace before ':'
        hosts += h.group(1).lower() == "host"
    if hosts > 1 or (hosts == 0 and minor != "0"):
        raise _HttpError(400)              # RFC 9112 3.2: exactly one Host in HTTP/1.1
    if target.startswith("/"):
        path = target.split("?", 1)[0]
    elif target.lower().startswith(("http://", "https://")):
        path = urlsplit(target).path or "/"
    else:
        raise _HttpError(400)
    return method, path


def _response(status: int, body: bytes, content_type: str, head_only: bool = False,
              extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    fields = [f"HTTP/1.1 {status} {_REASONS[status]}", f"Content-Type: {content_type}",
              f"Content-Length: {len(body)}", f"Date: {formatdate(usegmt=True)}",
              "Connection: close"]
    fields += [f"{k}: {v}" for k, v in extra]
    return ("\r\n".join(fields) + "\r\n\r\n").encode("latin-1") + (b"" if head_only else body)


def _error(status: int, extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    return _response(status, f"{status} {_REASONS[status]}\n".encode(),
                     "text/plain; charset=utf-8", extra=extra)


class MetricsHandler:
    """Serves one connection per call: read one request, answer it, close."""

    def __init__(self, get_text: Callable[[], str], timeout: float = TIMEOUT,
                 max_connections: int = MAX_CONNECTIONS, max_head: int = MAX_HEAD) -> None:
        self.get_text = get_text
        self.timeout = timeout
        self.max_connections = max_connections
        self.max_head = max_head
        self.active = 0

    async def __call__(self, stream: trio.abc.Stream) -> None:
        try:
            async with stream:
                if self.active >= self.max_connections:
                    return
                self.active += 1
                try:
                    with trio.move_on_after(self.timeout):
                        await self._exchange(stream)
                finally:
                    self.active -= 1
        except Exception:  # noqa: BLE001, S110 (a client's misbehaviour never escapes)
            pass

    async def _exchange(self, stream: trio.abc.Stream) -> None:
        try:
            head = await self._read_head(stream)
            if head is None:
                return                     # the client went away before asking anything
            answer = self._answer(*parse_request(head))
        except _HttpError as e:
            answer = _error(e.status)
        await stream.send_all(answer)
        if isinstance(stream, trio.abc.HalfCloseableStream):
            await stream.send_eof()
        with trio.move_on_after(LINGER):
            drained = 0
            while drained < LINGER_BYTES:
                data = await stream.receive_some(4096)
                if not data:
                    break
                drained += len(data)

    async def _read_head(self, stream: trio.abc.Stream) -> bytes | None:
        buf = b""
        while True:
            start = max(0, len(buf) - 3)
            data = await stream.receive_some(4096)
            if not data:
                if buf:
                    raise _HttpError(400)  # truncated request; the answer may not arrive
                return None
            buf += data
            m = _HEAD_END.search(buf, start)
            if m is not None:
                if m.end() > self.max_head:
                    raise _HttpError(400)
                return buf[:m.end()]
            if len(buf) > self.max_head:
                raise _HttpError(400)

    def _answer(self, method: str, path: str) -> bytes:
        if path != "/metrics":
            return _error(404)
        if method not in ("GET", "HEAD"):
            return _error(405, (("Allow", "GET, HEAD"),))
        try:
            body = self.get_text().encode("utf-8")
        except Exception:  # noqa: BLE001 (a rendering bug must not stop the router)
            return _error(500)
        return _response(200, body, CONTENT_TYPE, head_only=method == "HEAD")


async def serve(listen: str, get_text: Callable[[], str],
                task_status: Any = trio.TASK_STATUS_IGNORED, *, timeout: float = TIMEOUT,
                max_connections: int = MAX_CONNECTIONS) -> None:
    """Serve ``GET /metrics`` on ``listen`` until cancelled; ``started(port)`` once bound.

    With port 0 give a host: ``open_tcp_listeners`` binds every address family
    of a wildcard host to its own ephemeral port, and only the first is reported.
    """
    host, port = parse_listen(listen)
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()[1]
    handler = MetricsHandler(get_text, timeout, max_connections)
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handler, listeners)
        task_status.started(bound)
