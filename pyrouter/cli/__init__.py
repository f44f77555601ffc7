"""Command line: run and check a config; operate a running router through its control socket.

    pyrouter run -c FILE            pyrouter check -c FILE
    pyrouter show link|addr|route|neigh|stats|dhcp|dns [--json]
    pyrouter route get ADDR [from SRC] [iif IF] [mark N]
    pyrouter ping / traceroute / capture / trace / explain / reload / version
    pyrouter nft list ruleset [--json]
    pyrouter conntrack -L [-p PROTO] [--src A] [--dst A] [-f ipv4|ipv6] [--json] | -S
    pyrouter conntrack -E [-e NEW,UPDATE,DESTROY] [filters] [--count N] [--duration S]
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from . import fmt
from .client import ControlError, call, request, socket_path

KV_ROUTE_GET = {"from", "iif", "mark"}
KV_EXPLAIN = {"iif", "src", "dst", "proto", "sport", "dport", "ttl", "size", "tos", "icmp_type",
              "tcp_flags"}


def _kv(words: list[str], allowed: set[str], flags: frozenset[str] = frozenset()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    i = 0
    while i < len(words):
        w = words[i]
        if w in flags:
            out[w] = True
            i += 1
            continue
        if w not in allowed or i + 1 >= len(words):
            raise SystemExit(f"pyrouter: unexpected {w!r} (expected one of: "
                             f"{', '.join(sorted(allowed | flags))})")
        v: Any = words[i + 1]
        if w in ("mark", "sport", "dport", "ttl", "size", "tos", "icmp_type"):
            try:
                v = int(v, 0)
            except ValueError:
                raise SystemExit(f"pyrouter: {w} needs a number, not {v!r}") from None
        out[w] = v
        i += 2
    return out


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="pyrouter", description="A userspace IPv4 router.")
    ap.add_argument("--socket", help="control socket (default $PYROUTER_SOCKET or "
                    "/run/pyrouter/pyrouter.sock)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run the router in the foreground until SIGTERM/SIGINT")
    run.add_argument("-c", "--config", required=True)
    run.add_argument("--log-format", choices=("console", "json"), default="console")
    run.add_argument("--ready-file", help="written once every port is up; removed at exit")
    run.add_argument("--stats-file", help="counters JSON, written on SIGUSR1 and at exit")
    chk = sub.add_parser("check", help="validate a config file (exit 0 valid, 2 invalid)")
    chk.add_argument("-c", "--config", required=True)
    show = sub.add_parser("show", help="interfaces, addresses, routes, neighbours, counters")
    show.add_argument("what", choices=("link", "addr", "route", "rule", "neigh", "ntable",
                                       "stats", "dhcp", "leases", "dns"))
    show.add_argument("rest", nargs="*", help="route: [-6] [table NAME|all]; stats: all")
    show.add_argument("--json", action="store_true")
    rt = sub.add_parser("route", help="route get ADDR [from SRC] [iif IF] [mark N]")
    rt.add_argument("action", choices=("get",))
    rt.add_argument("dst")
    rt.add_argument("rest", nargs="*")
    rt.add_argument("--json", action="store_true")
    sub.add_parser("reload", help="reload the config file (like SIGHUP)")
    sub.add_parser("version", help="the running router's version")
    pg = sub.add_parser("ping", help="ping from the router itself")
    pg.add_argument("dst")
    pg.add_argument("-c", "--count", type=int, default=4)
    pg.add_argument("-s", "--size", type=int, default=56)
    pg.add_argument("-t", "--ttl", type=int, default=64)
    pg.add_argument("-M", "--pmtudisc", choices=("do", "dont"), default="dont")
    pg.add_argument("-I", "--source")
    pg.add_argument("-i", "--interval", type=float, default=1.0)
    pg.add_argument("-W", "--timeout", type=float, default=2.0)
    pg.add_argument("--json", action="store_true")
    tr = sub.add_parser("traceroute", help="traceroute from the router itself")
    tr.add_argument("dst")
    tr.add_argument("-I", "--icmp", action="store_true", help="ICMP echo probes (default UDP)")
    tr.add_argument("-m", "--max-hops", type=int, default=30)
    tr.add_argument("-q", "--queries", type=int, default=3)
    tr.add_argument("-w", "--wait", type=float, default=1.0)
    tr.add_argument("-p", "--port", type=int, default=33434)
    tr.add_argument("--json", action="store_true")
    cp = sub.add_parser("capture", help="capture frames on a port (both directions)")
    cp.add_argument("port", help="interface name or 'any'")
    cp.add_argument("filter", nargs="*", help="tcpdump-like filter")
    cp.add_argument("-w", "--write", help="pcap file to write")
    cp.add_argument("-c", "--count", type=int, default=0)
    cp.add_argument("--duration", type=float, default=0.0)
    tc = sub.add_parser("trace", help="live per-packet decision records for matching packets")
    tc.add_argument("filter", nargs="*")
    tc.add_argument("-c", "--count", type=int, default=0)
    tc.add_argument("--duration", type=float, default=0.0)
    tc.add_argument("--json", action="store_true")
    nft = sub.add_parser("nft", help="nft list ruleset: the live ruleset with counters")
    nft.add_argument("words", nargs="+", help="list ruleset")
    nft.add_argument("--json", action="store_true")
    ctp = sub.add_parser("conntrack", help="conntrack -L / -S: the connection tracking table")
    ctm = ctp.add_mutually_exclusive_group(required=True)
    ctm.add_argument("-L", "--dump", action="store_true")
    ctm.add_argument("-S", "--stats", action="store_true")
    ctm.add_argument("-E", "--event", action="store_true")
    ctp.add_argument("-e", "--event-mask", default="ALL",
                     help="with -E: NEW,UPDATE,DESTROY or ALL")
    ctp.add_argument("--count", type=int, default=0, help="with -E: stop after N events")
    ctp.add_argument("--duration", type=float, default=0.0, help="with -E: stop after S s")
    ctp.add_argument("-p", "--proto")
    ctp.add_argument("-s", "--src", "--orig-src", dest="src")
    ctp.add_argument("-d", "--dst", "--orig-dst", dest="dst")
    ctp.add_argument("-f", "--family", choices=("ipv4", "ipv6"), default=None,
                     help="only this family (default: both, as conntrack-tools 1.4.7)")
    ctp.add_argument("--json", action="store_true")
    ex = sub.add_parser("explain", help="what would the router do with this packet (no effect)")
    ex.add_argument("words", nargs="+", help="iif IF [src A] dst A [proto P] [sport N] "
                    "[dport N] [ttl N] [size N] [tos N] [df] [icmp_type N] [tcp_flags S]")
    ex.add_argument("--json", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = parser()
    args, extra = ap.parse_known_args(argv)
    if extra:
        # Filter words may come after options (`capture lab1 -c 4 icmp`), as with tcpdump.
        if args.cmd in ("capture", "trace") and not any(w.startswith("-") for w in extra):
            args.filter = [*args.filter, *extra]
        else:
            ap.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.cmd == "check":
        import random

        from ..control.build import build
        from ..control.load import ConfigError, load
        from ..shell.port import system_warnings

        try:
            cfg = load(args.config)
            build(cfg, random.Random(0), 0, args.config)
        except ConfigError as e:
            print(f"invalid: {e}", file=sys.stderr)
            return 2
        for where, warning in system_warnings(cfg):   # what this machine would say
            print(f"warning: {where}: {warning}", file=sys.stderr)
        print(f"{args.config}: valid")
        return 0
    if args.cmd == "run":
        from ..shell.app import run as run_app

        return run_app(args.config, args.log_format, args.ready_file, args.stats_file,
                       args.socket)
    try:
        return _client(args, socket_path(args.socket))
    except ControlError as e:
        print(f"pyrouter: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


def _out(args: argparse.Namespace, obj: Any, human: str) -> None:
    print(json.dumps(obj, indent=1) if getattr(args, "json", False) else human, flush=True)


def _client(args: argparse.Namespace, path: str) -> int:
    if args.cmd == "version":
        print(json.dumps(call(path, "version")))
        return 0
    if args.cmd == "reload":
        res = call(path, "reload")
        print(f"reloaded: {json.dumps(res)}")
        return 0
    if args.cmd == "show":
        what = {"link": "links", "addr": "addrs", "route": "routes", "rule": "rules",
                "neigh": "neigh", "ntable": "ntable", "stats": "stats", "dhcp": "dhcp",
                "leases": "dhcp", "dns": "dns"}[args.what]
        req: dict[str, Any] = {"what": what}
        rest = list(args.rest)
        if args.what == "route" and rest[:1] in (["-6"], ["-4"]):
            req["family"] = int(rest.pop(0)[1])
        if args.what == "route" and len(rest) == 2 and rest[0] == "table":
            req["table"] = rest[1]
        data = call(path, "show", req)
        human = {"links": lambda: fmt.links(data), "addrs": lambda: fmt.addrs(data),
                 "routes": lambda: fmt.routes(data, req.get("table") == "all"),
                 "rules": lambda: fmt.rules(data),
                 "neigh": lambda: fmt.neighbours(data),
                 "ntable": lambda: fmt.neigh_tables(data),
                 "dhcp": lambda: fmt.dhcp_leases(data),
                 "dns": lambda: fmt.dns_forwarder(data),
                 "stats": lambda: fmt.stats(data, "all" in args.rest)}[what]()
        _out(args, data, human)
        return 0
    if args.cmd == "route":
        req = {"dst": args.dst, **_kv(args.rest, KV_ROUTE_GET)}
        data = call(path, "route.get", req)
        _out(args, data, fmt.route_get(data))
        return 2 if "error" in data else 0
    if args.cmd == "ping":
        req = {"dst": args.dst, "count": args.count, "size": args.size, "ttl": args.ttl,
               "df": args.pmtudisc == "do", "interval": args.interval, "timeout": args.timeout}
        if args.source:
            req["src"] = args.source
        if not args.json:
            if ":" in args.dst:          # iputils' IPv6 banner
                print(f"PING {args.dst}({args.dst}) {args.size} data bytes", flush=True)
            else:
                print(f"PING {args.dst} {args.size}({args.size + 28}) bytes of data.", flush=True)
        res: Any = None
        for kind, obj in request(path, "ping", req):
            if kind == "item":
                _out(args, obj, fmt.ping_line(obj))
            else:
                res = obj
        _out(args, res, "\n" + fmt.ping_summary(res))
        return 0 if res["received"] else 1
    if args.cmd == "traceroute":
        req = {"dst": args.dst, "mode": "icmp" if args.icmp else "udp", "max_hops": args.max_hops,
               "probes": args.queries, "wait": args.wait, "port": args.port}
        if not args.json:
            print(f"traceroute to {args.dst}, {args.max_hops} hops max", flush=True)
        for kind, obj in request(path, "traceroute", req):
            if kind == "item":
                _out(args, obj, fmt.traceroute_line(obj))
            elif args.json:
                _out(args, obj, "")
        return 0
    if args.cmd == "capture":
        return _capture(args, path)
    if args.cmd == "trace":
        req = {"filter": " ".join(args.filter), "count": args.count, "duration": args.duration}
        for kind, obj in request(path, "trace", req):
            if kind == "item":
                _out(args, obj, fmt.trace_record(obj))
        return 0
    if args.cmd == "nft":
        if args.words != ["list", "ruleset"]:
            raise SystemExit("pyrouter nft: only 'list ruleset' is supported")
        data = call(path, "nft.list")
        _out(args, data, data["ruleset"].rstrip("\n"))
        return 0
    if args.cmd == "conntrack":
        if args.stats:
            data = call(path, "conntrack", {"op": "stats"})
            _out(args, data, data["line"])
            return 0
        if args.event:
            return _ct_events(args, path)
        data = call(path, "conntrack", {"op": "list", "proto": args.proto, "src": args.src,
                                        "dst": args.dst, "family": args.family})
        if args.json or data["lines"]:
            _out(args, data, "\n".join(data["lines"]))
        if not args.json:
            print(f"conntrack v1.4.7 (conntrack-tools): {len(data['lines'])} flow entries "
                  "have been shown.", file=sys.stderr)
        return 0
    if args.cmd == "explain":
        req = _kv(args.words, KV_EXPLAIN | {"dst"}, frozenset({"df"}))
        data = call(path, "explain", req)
        _out(args, data, fmt.explain(data))
        return 0
    raise SystemExit(f"pyrouter: unknown command {args.cmd}")


def _ct_events(args: argparse.Namespace, path: str) -> int:
    req = {"op": "events", "mask": [m for m in args.event_mask.split(",") if m],
           "proto": args.proto, "src": args.src, "dst": args.dst, "family": args.family,
           "count": args.count, "duration": args.duration}
    n, lost = 0, 0
    try:
        for kind, obj in request(path, "conntrack", req):
            if kind == "item":
                _out(args, obj, obj["line"])
                n += 1
            elif kind == "result":
                lost = obj.get("lost", 0)
    except KeyboardInterrupt:
        pass
    if not args.json:
        if lost:
            print(f"WARNING: {lost} events were lost (reader too slow)", file=sys.stderr)
        print(f"conntrack v1.4.7 (conntrack-tools): {n} flow events have been shown.",
              file=sys.stderr)
    return 0


def _capture(args: argparse.Namespace, path: str) -> int:
    req = {"port": args.port, "filter": " ".join(args.filter), "count": args.count,
           "duration": args.duration}
    out = None
    if args.write:
        from ..wire import pcap

        out = open(args.write, "wb")  # noqa: SIM115 (closed in finally)
        out.write(pcap.file_header())
        out.flush()
    n = 0
    try:
        for kind, obj in request(path, "capture", req):
            if kind != "item":
                if obj.get("dropped"):
                    print(f"{obj['dropped']} frames dropped by the router (client too slow)",
                          file=sys.stderr)
                continue
            frame = bytes.fromhex(obj["frame"])
            n += 1
            if out is not None:
                out.write(pcap.record(obj["ts_ns"], frame))
                out.flush()
            else:
                print(fmt.frame_summary(obj["ts_ns"], obj["dir"], obj["port"], frame), flush=True)
    finally:
        if out is not None:
            out.close()
            print(f"{n} frames captured", file=sys.stderr)
    return 0
