"""Metrics tests: the exposition text checked by a strict 0.0.4 parser written here, and the
HTTP server under trio on loopback (real sockets, real HTTP client) and on in-memory
streams in virtual time.  No root."""

from __future__ import annotations

import math
import random
import re
import socket
import struct
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
import trio.testing

from pyrouter.control.build import build
from pyrouter.control.load import parse
from pyrouter.core import DropReason
from pyrouter.core.drops import SNMP_COUNTERS
from pyrouter.core.link.neighbour import NudState
from pyrouter.shell.metrics import (
    BATCH_BUCKETS,
    CONTENT_TYPE,
    LoopStats,
    MetricsHandler,
    parse_listen,
    render,
    serve,
    snmp_metric_name,
)

# -- a strict parser for the text exposition format 0.0.4 --------------------------------

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL_NAME = r"[a-zA-Z_][a-zA-Z0-9_]*"
SAMPLE = re.compile(rf"({NAME})(?:\{{(.*)\}})? (\S+)(?: (-?\d+))?\Z")
LABEL = re.compile(rf'({LABEL_NAME})="((?:[^"\\\n]|\\[\\"n])*)"(,|\Z)')
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


class ParseError(Exception):
    pass


@dataclass
class Family:
    name: str
    type: str = "untyped"
    help: str | None = None
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = field(default_factory=dict)
    order: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def value(self, name: str | None = None, **labels: str) -> float:
        return self.samples[(name or self.name, frozenset(labels.items()))]


def unescape(s: str, help_text: bool = False) -> str:
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\":
            nxt = s[i + 1:i + 2]
            if nxt == "n":
                out.append("\n")
            elif nxt == "\\" or (nxt == '"' and not help_text):
                out.append(nxt)
            elif help_text:
                out.append("\\" + nxt)         # HELP: other escapes are literal
            else:
                raise ParseError(f"bad escape in {s!r}")
            i += 2
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def parse_value(s: str) -> float:
    if s in ("NaN", "+Inf", "-Inf"):
        return float(s.replace("Inf", "inf").replace("NaN", "nan"))
    if not re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", s):
        raise ParseError(f"bad value {s!r}")
    return float(s)


def parse_labels(s: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    pos = 0
    while pos < len(s):
        m = LABEL.match(s, pos)
        if m is None:
            raise ParseError(f"bad labels {s!r}")
        if m.group(1) in labels:
            raise ParseError(f"label {m.group(1)} twice")
        labels[m.group(1)] = unescape(m.group(2))
        pos = m.end()
        if m.group(3) == "," and pos == len(s):
            raise ParseError("trailing comma")
    return labels


def family_of(sample: str, families: dict[str, Family]) -> Family | None:
    if sample in families:
        return families[sample]
    for suffix in ("_bucket", "_sum", "_count"):
        base = sample.removesuffix(suffix)
        if base != sample and base in families and families[base].type in ("histogram",
                                                                             "summary"):
            return families[base]
    return None


def parse_exposition(text: str) -> dict[str, Family]:
    """Stricter than Prometheus: no blank lines, TYPE and HELP for every family before its
    samples, families contiguous, no duplicate series, histograms checked for shape."""
    if not text.endswith("\n"):
        raise ParseError("text must end with a newline")
    families: dict[str, Family] = {}
    current: Family | None = None
    closed: set[str] = set()
    for line in text[:-1].split("\n"):
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) < 3 or parts[1] not in ("HELP", "TYPE"):
                raise ParseError(f"stray comment {line!r}")
            name = parts[2]
            if not re.fullmatch(NAME, name) or name in closed:
                raise ParseError(f"bad or repeated family {name!r}")
            if current is not None and current.name != name:
                closed.add(current.name)
            fam = families.setdefault(name, Family(name))
            if fam.order:
                raise ParseError(f"{parts[1]} after samples for {name}")
            if parts[1] == "HELP":
                if fam.help is not None:
                    raise ParseError(f"HELP twice for {name}")
                fam.help = unescape(parts[3] if len(parts) > 3 else "", help_text=True)
            else:
                if fam.type != "untyped" or len(parts) != 4 or parts[3] not in TYPES:
                    raise ParseError(f"bad TYPE line {line!r}")
                fam.type = parts[3]
            current = fam
            continue
        m = SAMPLE.match(line)
        if m is None:
            raise ParseError(f"bad sample line {line!r}")
        name, labels_s, value_s, _ts = m.groups()
        fam = family_of(name, families)
        if fam is None or fam is not current:
            raise ParseError(f"sample {name} outside its family's block")
        labels = parse_labels(labels_s or "")
        key = (name, frozenset(labels.items()))
        if key in fam.samples:
            raise ParseError(f"duplicate series {line!r}")
        value = parse_value(value_s)
        if fam.type == "counter" and not value >= 0:
            raise ParseError(f"negative counter {line!r}")
        fam.samples[key] = value
        fam.order.append((name, labels, value))
    for fam in families.values():
        if fam.help is None or fam.type == "untyped":
            raise ParseError(f"{fam.name} lacks HELP or TYPE")
        if fam.type in ("counter", "gauge") and any(n != fam.name for n, _, _ in fam.order):
            raise ParseError(f"{fam.name}: sample name differs from family")
        if fam.type == "histogram":
            check_histogram(fam)
    return families


def check_histogram(fam: Family) -> None:
    buckets = [(parse_value(lab["le"]), v) for n, lab, v in fam.order
               if n == fam.name + "_bucket" and set(lab) == {"le"}]
    if len(buckets) != sum(n == fam.name + "_bucket" for n, _, _ in fam.order):
        raise ParseError(f"{fam.name}: bucket without exactly an le label")
    les = [b for b, _ in buckets]
    counts = [c for _, c in buckets]
    if not les or les[-1] != math.inf or les != sorted(set(les)):
        raise ParseError(f"{fam.name}: le must ascend and end at +Inf")
    if counts != sorted(counts):
        raise ParseError(f"{fam.name}: buckets must be cumulative")
    if fam.value(fam.name + "_count") != counts[-1]:
        raise ParseError(f"{fam.name}: _count differs from the +Inf bucket")
    fam.value(fam.name + "_sum")


# -- the parser rejects what it should --------------------------------------------------

GOOD = '# HELP x_total Help.\n# TYPE x_total counter\nx_total{a="1"} 3\n'


@pytest.mark.parametrize("text", [
    GOOD.rstrip("\n"),                                               # no final newline
    GOOD + "\n",                                                     # blank line
    "x_total 3\n",                                                   # no HELP/TYPE
    GOOD + 'x_total{a="1"} 4\n',                                     # duplicate series
    GOOD.replace('"1"', '"\\q"'),                                    # bad escape
    GOOD.replace('"1"', '"1",'),                                     # trailing comma
    GOOD.replace("} 3", "} three"),                                  # bad value
    GOOD.replace("} 3", "} -3"),                                     # negative counter
    GOOD + "# HELP y Y.\n# TYPE y gauge\ny 1\n" + 'x_total{a="2"} 1\n',   # interleaved
    GOOD + "# HELP x_total Again.\n",                                # HELP after samples
    ("# HELP h H.\n# TYPE h histogram\n"
     'h_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n'),  # not cumulative
    "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",  # no +Inf
])
def test_parser_is_strict(text: str) -> None:
    with pytest.raises(ParseError):
        parse_exposition(text)


def test_parser_accepts_good_text() -> None:
    fams = parse_exposition(GOOD)
    assert fams["x_total"].value(a="1") == 3


# -- render -------------------------------------------------------------------------------

CFG = """
interfaces:
  a: {addresses: [10.0.1.1/24], macaddress: "02:00:00:00:01:01"}
  b: {addresses: [10.0.2.1/24], macaddress: "02:00:00:00:02:01"}
"""
H1_MAC = bytes.fromhex("02000000aa01")


def arp_request(sip: bytes, tip: bytes) -> bytes:
    return (b"\xff" * 6 + H1_MAC + b"\x08\x06" + b"\x00\x01\x08\x00\x06\x04\x00\x01"
            + H1_MAC + sip + b"\x00" * 6 + tip)


def live_snapshot() -> dict[str, Any]:
    r = build(parse(CFG), random.Random(1), 0)
    r.receive(1, arp_request(bytes([10, 0, 1, 2]), bytes([10, 0, 1, 1])), 0)
    r.receive(1, b"\x00" * 10, 0)                          # truncated Ethernet frame
    r.drain()
    return r.snapshot()


LOOP = {"wakeups": 10, "frames": 100, "busy_seconds": 0.25,
        "batch_hist": {1: 3, 2: 1, 4: 0, 8: 2, 16: 4, 32: 0, 64: 0}}


def test_render_live_snapshot_values() -> None:
    snap = live_snapshot()
    fams = parse_exposition(render(snap, LOOP))
    for ifname, c in snap["interfaces"].items():
        for key, stem in (("rx_packets", "receive_packets"), ("rx_bytes", "receive_bytes"),
                          ("tx_packets", "transmit_packets"), ("tx_bytes", "transmit_bytes"),
                          ("rx_dropped", "receive_drops"), ("tx_dropped", "transmit_drops")):
            assert fams[f"pyrouter_interface_{stem}_total"].value(interface=ifname) == c[key]
    assert snap["interfaces"]["a"]["rx_packets"] == 2
    assert fams["pyrouter_interface_receive_packets_total"].value(interface="a") == 2
    drops = fams["pyrouter_drops_total"]
    assert {dict(lab)["reason"] for _, lab in drops.samples} == {r.value for r in DropReason}
    for reason, n in snap["drops"].items():
        assert drops.value(reason=reason) == n
    assert drops.value(reason="eth_truncated") == 1
    for counter, n in snap["snmp"].items():
        fam = fams[snmp_metric_name(counter)]
        assert fam.type == "counter" and fam.value() == n and counter in (fam.help or "")
    assert fams["pyrouter_snmp_arp_in_requests_total"].value() == 1
    neigh = fams["pyrouter_neighbours"]
    assert neigh.type == "gauge"
    for state in NudState:
        expect = sum(e["state"] == state.value for e in snap["neighbours"])
        assert neigh.value(state=state.value) == expect
    assert sum(neigh.samples.values()) == len(snap["neighbours"]) >= 1
    for stat, n in snap["neigh_stats"].items():
        assert fams[f"pyrouter_neighbour_{stat}_total"].value() == n
    assert fams["pyrouter_reassembly_queues"].value() == snap["reasm_queues"]
    assert fams["pyrouter_reassembly_bytes"].value() == snap["reasm_mem"]
    assert fams["pyrouter_fast_path_forwarded_total"].value() == snap["fast_forwarded"]


def test_types_and_help_on_every_family() -> None:
    fams = parse_exposition(render(live_snapshot(), LOOP))
    assert all(f.name.startswith("pyrouter_") and f.help for f in fams.values())
    for f in fams.values():
        assert f.name.endswith("_total") == (f.type == "counter"), f.name


def test_loop_metrics_and_histogram() -> None:
    fams = parse_exposition(render({}, LOOP))
    assert fams["pyrouter_loop_wakeups_total"].value() == 10
    assert fams["pyrouter_loop_frames_total"].value() == 100
    assert fams["pyrouter_loop_busy_seconds_total"].value() == 0.25
    h = fams["pyrouter_loop_batch_frames"]
    assert h.type == "histogram"
    buckets = {lab["le"]: v for n, lab, v in h.order if n.endswith("_bucket")}
    assert buckets == {"1": 3, "2": 4, "4": 4, "8": 6, "16": 10, "32": 10, "64": 10,
                       "+Inf": 10}
    assert h.value("pyrouter_loop_batch_frames_sum") == 100
    assert h.value("pyrouter_loop_batch_frames_count") == 10


def test_histogram_overflow_and_string_keys() -> None:
    loop = {"frames": 500, "batch_hist": {"1": 1, "64": 2, "+Inf": 3}}
    h = parse_exposition(render({}, loop))["pyrouter_loop_batch_frames"]
    buckets = {lab["le"]: v for n, lab, v in h.order if n.endswith("_bucket")}
    assert buckets == {"1": 1, "64": 3, "+Inf": 6}
    assert h.value("pyrouter_loop_batch_frames_count") == 6


def test_empty_inputs_render_zeros() -> None:
    fams = parse_exposition(render({}, {}))
    assert all(v == 0 for v in fams["pyrouter_drops_total"].samples.values())
    assert len(fams["pyrouter_drops_total"].samples) == len(DropReason)
    assert not fams["pyrouter_interface_receive_packets_total"].samples
    h = fams["pyrouter_loop_batch_frames"]
    les = [lab["le"] for n, lab, _ in h.order if n.endswith("_bucket")]
    assert les == [str(b) for b in BATCH_BUCKETS] + ["+Inf"]
    assert all(v == 0 for v in h.samples.values())
    assert fams["pyrouter_loop_busy_seconds_total"].value() == 0


def test_extra_keys_unknown_values_and_odd_types_tolerated() -> None:
    snap = {"drops": {"ip_csum_error": 4, "future_reason": 2}, "something_new": [1, 2],
            "snmp": {"IpInReceives": 7, "IpFutureThing": None},
            "interfaces": {"x": {"rx_packets": 1, "rx_bytes": "?"}, "y": None},
            "neighbours": [{"state": "REACHABLE"}, {"state": "WEIRD"}, "junk", {}],
            "neigh_stats": {"allocs": 1, "odd-name": 2}, "reasm_queues": None}
    fams = parse_exposition(render(snap, {"busy_seconds": True, "batch_hist": None}))
    assert fams["pyrouter_drops_total"].value(reason="ip_csum_error") == 4
    assert fams["pyrouter_drops_total"].value(reason="future_reason") == 2
    assert fams["pyrouter_snmp_ip_in_receives_total"].value() == 7
    assert "pyrouter_snmp_ip_future_thing_total" not in fams
    assert fams["pyrouter_interface_receive_packets_total"].value(interface="x") == 1
    assert not fams["pyrouter_interface_receive_bytes_total"].samples
    assert fams["pyrouter_neighbours"].value(state="REACHABLE") == 1
    assert fams["pyrouter_neighbours"].value(state="WEIRD") == 1
    assert fams["pyrouter_neighbour_odd_name_total"].value() == 2
    assert not fams["pyrouter_reassembly_queues"].samples
    assert fams["pyrouter_loop_busy_seconds_total"].value() == 1


@pytest.mark.parametrize("name", ['we"ird', "back\\slash", "new\nline", 'all\\"\n\\n', "é"])
def test_label_escaping_round_trips(name: str) -> None:
    snap = {"interfaces": {name: {"rx_packets": 5}}, "neighbours": [{"state": name}]}
    text = render(snap, {})
    fams = parse_exposition(text)
    assert fams["pyrouter_interface_receive_packets_total"].value(interface=name) == 5
    assert fams["pyrouter_neighbours"].value(state=name) == 1
    assert text.count("\n") == len(text.splitlines())     # no raw newline inside a line


def test_float_values_are_exact_and_special_values_spelled() -> None:
    for v, expect in ((0.1, 0.1), (1e-9, 1e-9), (12345678.875, 12345678.875)):
        assert parse_exposition(render({}, {"busy_seconds": v}))[
            "pyrouter_loop_busy_seconds_total"].value() == expect
    text = render({"reasm_mem": float("nan")}, {"busy_seconds": math.inf})
    assert "pyrouter_reassembly_bytes NaN\n" in text
    assert "pyrouter_loop_busy_seconds_total +Inf\n" in text
    parse_exposition(text)


def test_snmp_names_are_valid_unique_snake_case() -> None:
    names = [snmp_metric_name(c) for c in SNMP_COUNTERS]
    assert len(set(names)) == len(names)
    assert all(re.fullmatch(r"pyrouter_snmp_[a-z0-9_]+_total", n) for n in names)
    assert snmp_metric_name("IpReasmOKs") == "pyrouter_snmp_ip_reasm_oks_total"
    assert snmp_metric_name("IpExtInCsumErrors") == "pyrouter_snmp_ip_ext_in_csum_errors_total"


def test_loop_stats_shape() -> None:
    s = LoopStats()
    for n in (0, 1, 2, 3, 64, 65, 5):
        s.observe(n, 0.5)
    d = s.as_dict()
    assert d["wakeups"] == 7 and d["frames"] == 140 and d["busy_seconds"] == 3.5
    assert d["batch_hist"] == {1: 2, 2: 1, 4: 1, 8: 1, 16: 0, 32: 0, 64: 1, math.inf: 1}
    h = parse_exposition(render({}, d))["pyrouter_loop_batch_frames"]
    assert h.value("pyrouter_loop_batch_frames_bucket", le="+Inf") == 7


@pytest.mark.parametrize(("listen", "expect"), [
    ("127.0.0.1:9101", ("127.0.0.1", 9101)), ("[::1]:9101", ("::1", 9101)),
    (":9101", (None, 9101)), ("localhost:0", ("localhost", 0)),
])
def test_parse_listen(listen: str, expect: tuple[str | None, int]) -> None:
    assert parse_listen(listen) == expect


@pytest.mark.parametrize("listen", ["9101", "::1:9101", "host:", "host:x", "h:70000", "[::1"])
def test_parse_listen_rejects(listen: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(listen)


# -- the HTTP server on loopback -------------------------------------------------------------

BODY = render(live_snapshot(), LOOP)


def run_server(test: Callable[[int], Any], get_text: Callable[[], str] = lambda: BODY,
               **kw: Any) -> None:
    async def main() -> None:
        with trio.fail_after(10):
            async with trio.open_nursery() as n:
                port = await n.start(lambda task_status: serve("127.0.0.1:0", get_text,
                                                               task_status, **kw))
                await test(port)
                n.cancel_scope.cancel()
    trio.run(main)


def fetch(port: int, path: str = "/metrics", method: str = "GET") -> tuple[int, Any, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


async def raw(port: int, data: bytes, eof: bool = True) -> bytes:
    """Send ``data`` on a fresh connection (then EOF), return all until the server closes."""
    sock = trio.socket.socket()
    await sock.connect(("127.0.0.1", port))
    with sock:
        try:
            view = memoryview(data)
            while view:
                view = view[await sock.send(view):]
            if eof:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass                                  # the server closed first: read what it said
        out = b""
        try:
            while chunk := await sock.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
        return out


def status_of(resp: bytes) -> int:
    assert resp.startswith(b"HTTP/1.1 ") and b"\r\n\r\n" in resp, resp[:100]
    return int(resp[9:12])


def test_get_metrics_with_urllib() -> None:
    async def t(port: int) -> None:
        status, headers, body = await trio.to_thread.run_sync(fetch, port)
        assert status == 200
        assert headers["Content-Type"] == CONTENT_TYPE
        assert int(headers["Content-Length"]) == len(body)
        assert headers["Connection"] == "close"
        assert body.decode() == BODY
        parse_exposition(body.decode())
        status, _, _ = await trio.to_thread.run_sync(fetch, port, "/metrics?name[]=x")
        assert status == 200
    run_server(t)


def test_scrape_renders_afresh_each_time() -> None:
    n = iter(range(100))

    async def t(port: int) -> None:
        for i in range(3):
            _, _, body = await trio.to_thread.run_sync(fetch, port)
            assert body == f"{i}\n".encode()
    run_server(t, get_text=lambda: f"{next(n)}\n")


def test_not_found_and_method_not_allowed() -> None:
    async def t(port: int) -> None:
        status, headers, body = await trio.to_thread.run_sync(fetch, port, "/")
        assert status == 404 and headers["Connection"] == "close"
        assert int(headers["Content-Length"]) == len(body)
        assert (await trio.to_thread.run_sync(fetch, port, "/metricsx"))[0] == 404
        status, headers, _ = await trio.to_thread.run_sync(fetch, port, "/metrics", "POST")
        assert status == 405 and headers["Allow"] == "GET, HEAD"
        assert (await trio.to_thread.run_sync(fetch, port, "/metrics", "DELETE"))[0] == 405
        status, headers, body = await trio.to_thread.run_sync(fetch, port, "/metrics", "HEAD")
        assert status == 200 and body == b""
        assert int(headers["Content-Length"]) == len(BODY.encode())
    run_server(t)


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"GET /metrics HTTP/1.0\r\n\r\n", 200),                      # 1.0 needs no Host
    (b"GET /metrics HTTP/1.1\nHost: x\n\n", 200),                  # bare LF tolerated
    (b"GET http://x/metrics HTTP/1.1\r\nHost: x\r\n\r\n", 200),    # absolute-form
    (b"garbage\r\n\r\n", 400),
    (b"GET /metrics\r\n\r\n", 400),                                # HTTP/0.9 style
    (b"GET  /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 400),           # double space
    (b"GET /metrics HTTP/1.1\r\n\r\n", 400),                       # 1.1 without Host
    (b"GET /metrics HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    (b"GET /metrics HTTP/1.1\r\nHost : x\r\n\r\n", 400),           # space before colon
    (b"GET /metrics HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400),  # obs-fold
    (b"GET /metrics HTTP/1.1\r\nHost: x\rY\r\n\r\n", 400),         # bare CR
    (b"GET /metrics HTTP/1.1\r\nno colon\r\n\r\n", 400),
    (b"GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET /metrics HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    (b"\x00\xff\xfe\r\n\r\n", 400),
    (b"GET /metrics HTTP/1.1\r\nHost: x\r\n", 400),                # truncated, then EOF
])
def test_request_parsing(request_bytes: bytes, status: int) -> None:
    async def t(port: int) -> None:
        sock = trio.socket.socket()
        await sock.connect(("127.0.0.1", port))
        with sock:
            await sock.send(request_bytes)
            if not request_bytes.endswith(b"\n\n"):
                sock.shutdown(socket.SHUT_WR)
            out = b""
            while chunk := await sock.recv(65536):
                out += chunk
        assert status_of(out) == status
        head, _, body = out.partition(b"\r\n\r\n")
        assert b"\r\nConnection: close\r\n" in head + b"\r\n"
        assert f"\r\nContent-Length: {len(body)}\r\n".encode() in head + b"\r\n"
    run_server(t)


def test_header_size_limit() -> None:
    def request(total: int) -> bytes:
        base = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: \r\n\r\n"
        return base.replace(b"X-Pad: ", b"X-Pad: " + b"a" * (total - len(base)))

    async def t(port: int) -> None:
        assert status_of(await raw(port, request(8192))) == 200
        assert status_of(await raw(port, request(8193))) == 400
        assert status_of(await raw(port, request(60_000))) == 400
        # A header stream with no blank line: answered 400 once past the limit.
        assert status_of(await raw(port, b"GET /metrics HTTP/1.1\r\n"
                                   + b"X-A: " + b"b" * 20_000 + b"\r\n")) == 400
    run_server(t)


def test_slow_client_is_cut_off() -> None:
    async def t(port: int) -> None:
        t0 = trio.current_time()
        assert await raw(port, b"", eof=False) == b""                    # idle: closed unanswered
        assert 0.2 <= trio.current_time() - t0 < 2
        # Trickling one byte every 50 ms never completes the head: the deadline is for the
        # whole exchange, not per read, so the server still closes at ~0.3 s.
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setblocking(False)
        t0 = trio.current_time()
        with sock:
            closed = False
            with trio.move_on_after(3):
                for b in b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"z" * 1000:
                    try:
                        sock.send(bytes([b]))
                        closed = sock.recv(1) == b""
                    except BlockingIOError:
                        pass
                    except OSError:
                        closed = True
                    if closed:
                        break
                    await trio.sleep(0.05)
            assert closed
            assert 0.3 <= trio.current_time() - t0 < 2
        status, _, _ = await trio.to_thread.run_sync(fetch, port)   # still serving
        assert status == 200
    run_server(t, timeout=0.3)


def test_client_errors_never_stop_the_server() -> None:
    async def t(port: int) -> None:
        for _ in range(3):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.close()                                     # RST while the server answers
            sock = socket.create_connection(("127.0.0.1", port))
            sock.close()                                     # connect and leave
        await trio.sleep(0.1)
        status, _, body = await trio.to_thread.run_sync(fetch, port)
        assert status == 200 and body.decode() == BODY
    run_server(t)


def test_get_text_failure_answers_500_and_keeps_serving() -> None:
    calls = iter([True, False])

    def get_text() -> str:
        if next(calls):
            raise RuntimeError("bug")
        return "ok\n"

    async def t(port: int) -> None:
        assert (await trio.to_thread.run_sync(fetch, port))[0] == 500
        status, _, body = await trio.to_thread.run_sync(fetch, port)
        assert status == 200 and body == b"ok\n"
    run_server(t, get_text=get_text)


def test_connection_cap() -> None:
    async def t(port: int) -> None:
        idle = [trio.socket.socket() for _ in range(2)]
        for s in idle:
            await s.connect(("127.0.0.1", port))
        await trio.sleep(0.1)                                # both accepted and held
        assert await raw(port, b"GET /metrics HTTP/1.0\r\n\r\n") == b""   # over the cap
        for s in idle:
            s.close()
        await trio.sleep(0.1)
        assert status_of(await raw(port, b"GET /metrics HTTP/1.0\r\n\r\n")) == 200
    run_server(t, max_connections=2)


def test_ipv6_listen() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError:
        pytest.skip("no ::1")

    async def main() -> None:
        with trio.fail_after(10):
            async with trio.open_nursery() as n:
                port = await n.start(serve, "[::1]:0", lambda: "v6\n")
                sock = trio.socket.socket(trio.socket.AF_INET6)
                await sock.connect(("::1", port))
                with sock:
                    await sock.send(b"GET /metrics HTTP/1.1\r\nHost: [::1]\r\n\r\n")
                    out = b""
                    while chunk := await sock.recv(65536):
                        out += chunk
                assert status_of(out) == 200 and out.endswith(b"\r\n\r\nv6\n")
                n.cancel_scope.cancel()
    trio.run(main)


# -- the handler in virtual time ---------------------------------------------------------------

def test_default_timeout_in_virtual_time() -> None:
    """An idle client is dropped after exactly the default 5 s (MockClock, no real wait)."""
    async def main() -> None:
        client, server = trio.testing.memory_stream_pair()
        handler = MetricsHandler(lambda: BODY)
        async with trio.open_nursery() as n:
            n.start_soon(handler, server)
            t0 = trio.current_time()
            assert await client.receive_some() == b""
            assert trio.current_time() - t0 == pytest.approx(5.0)
            assert handler.active == 0

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_memory_stream_exchange() -> None:
    async def main() -> None:
        client, server = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as n:
            n.start_soon(MetricsHandler(lambda: "x 1\n"), server)
            await client.send_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            out = b""
            while chunk := await client.receive_some():
                out += chunk
            await client.aclose()
        assert status_of(out) == 200 and out.endswith(b"\r\n\r\nx 1\n")

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
