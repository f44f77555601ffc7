"""Forwarding benchmark: kernel vs. no-op Python relay vs. pyrouter.

Builds the same two-host topology three ways, one after another, and measures
each with iperf3 and ping from host h1 to host h2:

  kernel    h1 (10.0.1.2/24) -- veth -- router netns (ip_forward=1) -- veth -- h2 (10.0.2.2/24)
            The Linux forwarding path; veth offloads are left at their defaults
            (TSO/GSO/GRO on), so TCP moves 64 KB super-frames through it.
  relay     h1 (10.0.0.1/24) -- TAP == benchmarks/relay.py == TAP -- h2 (10.0.0.2/24)
            A no-op trio TAP bridge: the I/O ceiling for a Python forwarder
            (read/write syscalls and event-loop overhead only, no packet work).
  pyrouter  h1 (10.0.1.2/24) -- TAP == python -m pyrouter run == TAP -- h2 (10.0.2.2/24)
            The router under test, configured through `netns:` and `peer:`
            (see docs/contract.md).

  kernel-nft, pyrouter-nft
            The same, with the nftables ruleset of --nft loaded (`nft -f` in the
            router namespace; `nftables: {file: ...}` for pyrouter).  The default,
            benchmarks/rules100_ct_nat.nft, is issue 7's case: a 100-rule FORWARD
            chain with conntrack (the 97 port rules come before the established
            accept) and masquerade toward h2.

Per target it reports TCP throughput (Gbit/s, iperf3 receiver side), UDP
packets/s with 64-byte payloads (packets that reached the iperf3 server, plus
loss), ping RTT (average of 20 pings at 50 ms) and new TCP connections per second
(4 client threads in h1 connecting to a server in h2 that accepts and closes, for
3 s: each connection is a new conntrack entry, a NAT binding and a full handshake and
close through the router), then prints a table with absolute figures and ratios to
kernel and to relay, and each -nft target against its plain one.

Run as root:

    /work/main/.venv/bin/python benchmarks/forwarding.py [--duration 10] \
        [--targets kernel,relay,pyrouter,kernel-nft,pyrouter-nft] [--json OUT] [--ipv6]
        [--nft RULES.nft]

Every namespace, TAP and process it creates carries a per-run suffix (the
pid) and is removed in `finally`, including on Ctrl-C, SIGTERM and failure.
A target that fails to come up is reported as n/a; the others still run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

REPO = Path(__file__).resolve().parent.parent
RELAY = REPO / "benchmarks" / "relay.py"
TARGETS = ("kernel", "relay", "pyrouter", "kernel-nft", "pyrouter-nft")
DEFAULT_TARGETS = ("kernel", "relay", "pyrouter", "pyrouter-nft")
# --nft: the ruleset of the *-nft targets (issue 7: 100 rules, conntrack, masquerade)
DEFAULT_NFT = REPO / "benchmarks" / "rules100_ct_nat.nft"
NFT_FILE: str = str(DEFAULT_NFT)
CONN_PORT = 5301
CONN_SECONDS = 3
CONN_THREADS = 4
IPERF_PORT = 5201
UDP_PAYLOAD = 64
PING_COUNT = 20
PING_INTERVAL = 0.05
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
PREFIX = f"fb{os.getpid()}"  # <= 9 chars: names below stay <= 15 chars
CREATED_NETNS: set[str] = set()  # for a last check that nothing is left behind
IPV6 = False  # --ipv6: the same measurements over IPv6 (fd00:N::/64 instead of 10.0.N.0/24)


def net_addr(subnet: int, host: int, plen: bool = True) -> str:
    """10.0.<subnet>.<host>/24, or fd00:<subnet>::<host>/64 with --ipv6."""
    if IPV6:
        return f"fd00:{subnet}::{host}" + ("/64" if plen else "")
    return f"10.0.{subnet}.{host}" + ("/24" if plen else "")


class BenchError(Exception):
    """A target could not be set up or measured."""


@dataclass
class Topology:
    h1: str  # sender netns
    h2: str  # receiver netns
    dst: str  # h2's address
    h2_dev: str  # h2's interface facing the forwarder
    forwarder: Daemon | None = None  # relay or router process, if any

    def check_forwarder(self) -> None:
        if self.forwarder and not self.forwarder.alive():
            raise BenchError(f"{self.forwarder.name} died with code "
                             f"{self.forwarder.proc.returncode}\n{self.forwarder.tail()}".rstrip())


# --------------------------------------------------------------------------- #
# Processes and cleanup
# --------------------------------------------------------------------------- #


def sh(*cmd: str, timeout: float = 30.0, check: bool = True) -> str:
    """Run a short command, return its stdout; raise BenchError on failure."""
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                             start_new_session=True)
    except subprocess.TimeoutExpired:
        raise BenchError(f"timed out after {timeout:.0f}s: {' '.join(cmd)}") from None
    if check and res.returncode != 0:
        err = (res.stderr or res.stdout).strip()
        raise BenchError(f"`{' '.join(cmd)}` exited {res.returncode}: {err}")
    return res.stdout


def in_ns(ns: str, *cmd: str) -> tuple[str, ...]:
    return ("ip", "netns", "exec", ns, *cmd)


class Daemon:
    """A long-running child (iperf3 server, relay, router) with a log file.

    Started in its own session so that Ctrl-C on the terminal reaches only
    this script, which then stops children in order (SIGTERM, then SIGKILL).
    """

    def __init__(self, name: str, cmd: list[str], log: Path, cwd: Path | None = None):
        self.name, self.log = name, log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=cwd,
                                         start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                print(f"  warning: {self.name} ignored SIGTERM, sending SIGKILL",
                      file=sys.stderr)
                self.proc.kill()
                self.proc.wait()

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join("    | " + line for line in text[-lines:])


class Cleanup:
    """LIFO list of undo actions; every action runs even if others fail."""

    def __init__(self) -> None:
        self._actions: list[tuple[str, Callable[[], object]]] = []

    def push(self, what: str, action: Callable[[], object]) -> None:
        self._actions.append((what, action))

    def run(self) -> None:
        while self._actions:
            what, action = self._actions.pop()
            try:
                action()
            except Exception as exc:  # keep going: leave nothing behind
                print(f"  warning: cleanup of {what} failed: {exc}", file=sys.stderr)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while cleaning up; re-raise one afterwards."""
    received: list[int] = []
    old = {s: signal.signal(s, lambda signum, _frame: received.append(signum))
           for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        if received:
            raise KeyboardInterrupt


@contextmanager
def target_scope() -> Iterator[Cleanup]:
    cleanup = Cleanup()
    try:
        yield cleanup
    finally:
        with signals_deferred():
            cleanup.run()


def add_netns(cleanup: Cleanup, name: str) -> str:
    sh("ip", "netns", "add", name)
    CREATED_NETNS.add(name)
    cleanup.push(f"netns {name}", lambda: del_netns(name))
    sh("ip", "-n", name, "link", "set", "lo", "up")
    return name


def del_netns(name: str) -> None:
    """Kill anything still inside `name`, then delete it (veths go with it)."""
    pids = sh("ip", "netns", "pids", name, check=False).split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
    sh("ip", "netns", "del", name)


def start_daemon(cleanup: Cleanup, name: str, cmd: list[str], log: Path,
                 cwd: Path | None = None) -> Daemon:
    daemon = Daemon(name, cmd, log, cwd)
    cleanup.push(name, daemon.stop)
    return daemon


def wait_ready(daemon: Daemon, ready_file: Path, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not ready_file.exists():
        if not daemon.alive():
            raise BenchError(f"{daemon.name} exited with code {daemon.proc.returncode} "
                             f"before becoming ready\n{daemon.tail()}")
        if time.monotonic() > deadline:
            raise BenchError(f"{daemon.name} not ready after {timeout:.0f}s\n{daemon.tail()}")
        time.sleep(0.05)


def remove_links(names: list[str], netns: list[str]) -> None:
    """Delete leftover links (e.g. TAPs of a killed process) by exact name."""
    for name in names:
        for ns in [None, *netns]:
            prefix = ("ip",) if ns is None else ("ip", "-n", ns)
            if sh(*prefix, "link", "show", "dev", name, check=False).strip():
                print(f"  warning: removing leftover link {name}", file=sys.stderr)
                sh(*prefix, "link", "del", "dev", name, check=False)


# --------------------------------------------------------------------------- #
# Topologies
# --------------------------------------------------------------------------- #


def host_addr(ns: str, dev: str, cidr: str, gateway: str | None = None) -> None:
    sh("ip", "-n", ns, "addr", "add", cidr, "dev", dev, *(["nodad"] if ":" in cidr else []))
    sh("ip", "-n", ns, "link", "set", dev, "up")
    if gateway:
        sh("ip", "-n", ns, "route", "add", "default", "via", gateway)


def setup_kernel(cleanup: Cleanup, tmp: Path) -> Topology:
    h1 = add_netns(cleanup, f"{PREFIX}kh1")
    h2 = add_netns(cleanup, f"{PREFIX}kh2")
    r = add_netns(cleanup, f"{PREFIX}kr")
    for i, host in ((1, h1), (2, h2)):
        r_end, h_end = f"{PREFIX}r{i}", f"{PREFIX}h{i}"
        # Created inside the namespaces, so deleting them removes the veths.
        sh("ip", "-n", r, "link", "add", r_end, "type", "veth",
           "peer", "name", h_end, "netns", host)
        host_addr(r, r_end, net_addr(i, 1))
        host_addr(host, h_end, net_addr(i, 2), gateway=net_addr(i, 1, False))
    sh(*in_ns(r, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"))
    return Topology(h1, h2, net_addr(2, 2, False), f"{PREFIX}h2")


def setup_relay(cleanup: Cleanup, tmp: Path) -> Topology:
    h1 = add_netns(cleanup, f"{PREFIX}rh1")
    h2 = add_netns(cleanup, f"{PREFIX}rh2")
    tap_a, tap_b = f"{PREFIX}ra", f"{PREFIX}rb"
    cleanup.push("relay TAPs", lambda: remove_links([tap_a, tap_b], [h1, h2]))
    ready = tmp / "relay.ready"
    relay = start_daemon(cleanup, "relay", [
        sys.executable, str(RELAY), "--tap-a", tap_a, "--ns-a", h1,
        "--tap-b", tap_b, "--ns-b", h2, "--ready-file", str(ready)],
        tmp / "relay.log")
    wait_ready(relay, ready)
    host_addr(h1, tap_a, net_addr(0, 1))
    host_addr(h2, tap_b, net_addr(0, 2))
    return Topology(h1, h2, net_addr(0, 2, False), tap_b, relay)


def pyrouter_config(h1: str, h2: str, tap_a: str, tap_b: str, nft: bool = False) -> str:
    """The router config as YAML text (flow style, no dependency on PyYAML)."""
    lines = ["interfaces:"]
    for i, (tap, ns) in enumerate(((tap_a, h1), (tap_b, h2)), start=1):
        lines += [
            f"  {tap}:",
            f"    addresses: [10.0.{i}.1/24, \"fd00:{i}::1/64\"]",
            f"    netns: {ns}",
            "    peer:",
            f"      addresses: [\"{net_addr(i, 2)}\"]",
            f"      routes: [{{to: default, via: \"{net_addr(i, 1, False)}\"}}]",
        ]
    if nft:
        lines.append(f"nftables: {{file: \"{Path(NFT_FILE).resolve()}\"}}")
    return "\n".join(lines) + "\n"


def setup_kernel_nft(cleanup: Cleanup, tmp: Path) -> Topology:
    topo = setup_kernel(cleanup, tmp)
    sh(*in_ns(f"{PREFIX}kr", "nft", "-f", str(Path(NFT_FILE).resolve())))
    return topo


def setup_pyrouter_nft(cleanup: Cleanup, tmp: Path) -> Topology:
    return setup_pyrouter(cleanup, tmp, nft=True)


def setup_pyrouter(cleanup: Cleanup, tmp: Path, nft: bool = False) -> Topology:
    h1 = add_netns(cleanup, f"{PREFIX}ph1")
    h2 = add_netns(cleanup, f"{PREFIX}ph2")
    tap_a, tap_b = f"{PREFIX}pa", f"{PREFIX}pb"
    cleanup.push("pyrouter TAPs", lambda: remove_links([tap_a, tap_b], [h1, h2]))
    cfg, ready = tmp / "pyrouter.yaml", tmp / "pyrouter.ready"
    cfg.write_text(pyrouter_config(h1, h2, tap_a, tap_b, nft))
    router = start_daemon(cleanup, "pyrouter", [
        sys.executable, "-m", "pyrouter", "run", "-c", str(cfg),
        "--log-format", "json", "--ready-file", str(ready),
        "--stats-file", str(tmp / "pyrouter.stats.json")],
        tmp / "pyrouter.log", cwd=REPO)
    wait_ready(router, ready)
    return Topology(h1, h2, net_addr(2, 2, False), tap_b, router)


SETUP = {"kernel": setup_kernel, "relay": setup_relay, "pyrouter": setup_pyrouter,
         "kernel-nft": setup_kernel_nft, "pyrouter-nft": setup_pyrouter_nft}


# --------------------------------------------------------------------------- #
# Measurements
# --------------------------------------------------------------------------- #


def wait_reachable(h1: str, dst: str, timeout: float = 15.0) -> None:
    """Ping until the path works (ARP, router warm-up) or give up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        res = subprocess.run(in_ns(h1, "ping", "-c", "1", "-W", "1", dst),
                             capture_output=True, start_new_session=True)
        if res.returncode == 0:
            return
    raise BenchError(f"{dst} unreachable from h1 after {timeout:.0f}s")


def measure_ping(h1: str, dst: str) -> dict:
    out = sh(*in_ns(h1, "ping", "-q", "-c", str(PING_COUNT), "-i", str(PING_INTERVAL),
                    "-W", "1", dst), check=False)
    m = re.search(r"= [\d.]+/([\d.]+)/([\d.]+)/[\d.]+ ms", out)
    loss = re.search(r"(\d+(?:\.\d+)?)% packet loss", out)
    if not m:
        raise BenchError(f"ping got no reply: {out.strip()}")
    return {"rtt_avg_ms": float(m.group(1)), "rtt_max_ms": float(m.group(2)),
            "ping_loss_pct": float(loss.group(1)) if loss else None}


def start_iperf_server(cleanup: Cleanup, h2: str, tmp: Path) -> None:
    server = start_daemon(cleanup, "iperf3 server",
                          list(in_ns(h2, "iperf3", "-s", "-p", str(IPERF_PORT))),
                          tmp / "iperf3-server.log")
    deadline = time.monotonic() + 5
    while not sh(*in_ns(h2, "ss", "-Hltn", f"sport = :{IPERF_PORT}"), check=False).strip():
        if not server.alive() or time.monotonic() > deadline:
            raise BenchError(f"iperf3 server did not start\n{server.tail()}")
        time.sleep(0.05)


def iperf(h1: str, dst: str, duration: int, *extra: str) -> dict:
    cmd = in_ns(h1, "iperf3", "-c", dst, "-p", str(IPERF_PORT), "-t", str(duration),
                "--json", "--connect-timeout", "3000", *extra)
    out = sh(*cmd, timeout=duration + 30, check=False)
    try:
        data = json.loads(out)
    except json.JSONDecodeError:
        raise BenchError(f"iperf3 {' '.join(extra)}: no JSON output: {out.strip()[:300]}") from None
    if "error" in data:
        raise BenchError(f"iperf3 {' '.join(extra)}: {data['error']}")
    time.sleep(0.5)  # let the server finish the test before the next one
    return data["end"]


def measure_tcp(h1: str, dst: str, duration: int) -> dict:
    end = iperf(h1, dst, duration)
    rx = end["sum_received"]
    return {"tcp_gbps": rx["bits_per_second"] / 1e9,
            "tcp_retransmits": end["sum_sent"].get("retransmits")}


def rx_packets(ns: str, dev: str) -> int:
    (link,) = json.loads(sh("ip", "-n", ns, "-s", "-j", "link", "show", "dev", dev))
    return link["stats64"]["rx"]["packets"]


def measure_udp(topo: Topology, duration: int, rate: str) -> dict:
    """Offered (sent), forwarded (reached h2's interface) and received rates."""
    before = rx_packets(topo.h2, topo.h2_dev)
    end = iperf(topo.h1, topo.dst, duration, "-u", "-l", str(UDP_PAYLOAD), "-b", rate)
    forwarded = rx_packets(topo.h2, topo.h2_dev) - before
    sent, rx = end["sum_sent"], end["sum_received"]
    received = rx["packets"] - rx["lost_packets"]
    return {"udp_rx_pps": received / rx["seconds"],
            "udp_tx_pps": sent["packets"] / sent["seconds"],
            "udp_fwd_pps": forwarded / sent["seconds"],
            "udp_loss_pct": rx["lost_percent"]}


CONN_SERVER = r"""
import socket, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1024)
while True:
    c, _ = s.accept()
    c.close()
"""

CONN_CLIENT = r"""
import socket, sys, threading, time
dst, port, secs, nthreads = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
done, failed = [0] * nthreads, [0] * nthreads
end = time.monotonic() + secs
def run(i):
    while time.monotonic() < end:
        c = socket.socket(fam)
        c.settimeout(2)
        try:
            c.connect((dst, port))
            c.recv(1)            # the server closes: our FIN follows
            done[i] += 1
        except OSError:
            failed[i] += 1
        finally:
            c.close()
ts = [threading.Thread(target=run, args=(i,)) for i in range(nthreads)]
t0 = time.monotonic()
for t in ts: t.start()
for t in ts: t.join()
print(sum(done), sum(failed), time.monotonic() - t0)
"""


def measure_conn(cleanup: Cleanup, topo: Topology, tmp: Path) -> dict:
    """New TCP connections per second (handshake, server close, client close)."""
    server = start_daemon(cleanup, "conn server", list(in_ns(
        topo.h2, sys.executable, "-c", CONN_SERVER, topo.dst, str(CONN_PORT))),
        tmp / "conn-server.log")
    deadline = time.monotonic() + 5
    while not sh(*in_ns(topo.h2, "ss", "-Hltn", f"sport = :{CONN_PORT}"), check=False).strip():
        if not server.alive() or time.monotonic() > deadline:
            raise BenchError(f"connection server did not start\n{server.tail()}")
        time.sleep(0.05)
    out = sh(*in_ns(topo.h1, sys.executable, "-c", CONN_CLIENT, topo.dst, str(CONN_PORT),
                    str(CONN_SECONDS), str(CONN_THREADS)), timeout=CONN_SECONDS + 30)
    done, failed, secs = out.split()
    return {"conn_per_s": int(done) / float(secs), "conn_failed": int(failed)}


def run_target(name: str, args: argparse.Namespace, result: dict) -> None:
    """Set up one target, measure it into `result`, tear it down.

    Setup and measurement failures are recorded in result["errors"]; only
    KeyboardInterrupt (Ctrl-C, SIGTERM) propagates, after the cleanup.
    """
    print(f"== {name}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"fwdbench-{name}-"))
    try:
        try:
            with target_scope() as cleanup:
                measure_target(name, args, cleanup, tmp, result)
        except BenchError as exc:
            result["errors"]["run"] = str(exc)
            print(f"  FAILED: {exc}", file=sys.stderr, flush=True)
        if name.startswith("pyrouter"):
            collect_stats(tmp, result)  # written by the router at shutdown
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def measure_target(name: str, args: argparse.Namespace, cleanup: Cleanup,
                   tmp: Path, result: dict) -> None:
    t0 = time.monotonic()
    topo = SETUP[name](cleanup, tmp)
    start_iperf_server(cleanup, topo.h2, tmp)
    wait_reachable(topo.h1, topo.dst)
    print(f"  up in {time.monotonic() - t0:.1f}s", flush=True)
    steps = (("ping", lambda: measure_ping(topo.h1, topo.dst)),
             ("tcp", lambda: measure_tcp(topo.h1, topo.dst, args.duration)),
             ("udp", lambda: measure_udp(topo, args.duration, args.udp_rate)),
             ("conn", lambda: measure_conn(cleanup, topo, tmp)))
    for step, measure in steps:
        topo.check_forwarder()
        try:
            figures = measure()
        except BenchError as exc:
            result["errors"][step] = str(exc)
            print(f"  {step}: FAILED: {exc}", file=sys.stderr, flush=True)
            continue
        result.update(figures)
        print(f"  {step}: " + ", ".join(f"{k}={fmt_num(v)}" for k, v in figures.items()),
              flush=True)
    topo.check_forwarder()


def collect_stats(tmp: Path, result: dict) -> None:
    """Keep the router's final stats file (drop reasons explain UDP loss)."""
    path = tmp / "pyrouter.stats.json"
    try:
        stats = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    result["pyrouter_stats"] = stats
    drops = {k: v for k, v in stats.get("drops", {}).items() if v}
    if drops:
        print(f"  pyrouter drops: {drops}", flush=True)


# --------------------------------------------------------------------------- #
# Report
# --------------------------------------------------------------------------- #


def fmt_num(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


# (header, result key, format, scale)
COLUMNS = (
    ("TCP Gbit/s", "tcp_gbps", ".3f", 1.0),
    ("UDP rx kpps", "udp_rx_pps", ".1f", 1e-3),
    ("UDP fwd kpps", "udp_fwd_pps", ".1f", 1e-3),
    ("UDP tx kpps", "udp_tx_pps", ".1f", 1e-3),
    ("UDP loss %", "udp_loss_pct", ".1f", 1.0),
    ("RTT avg ms", "rtt_avg_ms", ".3f", 1.0),
    ("conn/s", "conn_per_s", ".0f", 1.0),
)
RATIO_ROWS = (("TCP", "tcp_gbps"), ("UDP rx", "udp_rx_pps"),
              ("UDP fwd", "udp_fwd_pps"), ("RTT", "rtt_avg_ms"), ("conn/s", "conn_per_s"))


def ratio(results: dict, target: str, base: str, key: str) -> str:
    a = results[target].get(key)
    b = results[base].get(key)
    if a is None or not b:
        return "n/a"
    return f"{a / b:.3f}"


def print_table(results: dict, duration: int) -> None:
    print(f"\nResults ({duration} s per iperf3 test; UDP payload {UDP_PAYLOAD} B; "
          f"ping {PING_COUNT} x {PING_INTERVAL * 1000:.0f} ms)")
    header = f"{'target':<13}" + "".join(f"{h:>14}" for h, *_ in COLUMNS)
    print(header)
    print("-" * len(header))
    for t, res in results.items():
        cells = ["n/a" if res.get(key) is None else format(res[key] * scale, fmt)
                 for _, key, fmt, scale in COLUMNS]
        print(f"{t:<13}" + "".join(f"{c:>14}" for c in cells))

    # Each target against the bases listed before it (kernel, then relay).
    pairs = [(t, b) for i, t in enumerate(results) for b in list(results)[:i]
             if b in ("kernel", "relay") and not t.startswith("kernel")]
    # ... and each ruleset target against the same forwarder without one (issue 7's
    # target: pyrouter-nft/pyrouter >= 0.5).
    pairs += [(t, t[:-4]) for t in results if t.endswith("-nft") and t[:-4] in results]
    if pairs:
        print("\nRatios (throughput: fraction of the base; RTT: multiple of the base)")
        header = f"{'metric':<10}" + "".join(f"{f'{t}/{b}':>17}" for t, b in pairs)
        print(header)
        print("-" * len(header))
        for label, key in RATIO_ROWS:
            print(f"{label:<10}" + "".join(f"{ratio(results, t, b, key):>17}" for t, b in pairs))

    for t, res in results.items():
        for step, err in res["errors"].items():
            print(f"\n{t} {step} failed: {err.splitlines()[0]}")


def machine_info() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    iperf_version = sh("iperf3", "--version", check=False).splitlines()[:1]
    return {"cpus": os.cpu_count(), "cpu_model": cpu, "kernel": platform.release(),
            "python": platform.python_version(),
            "iperf3": iperf_version[0] if iperf_version else ""}


def leftover_netns() -> list[str]:
    out = sh("ip", "netns", "list", check=False)
    return [line.split()[0] for line in out.splitlines()
            if line.split()[0] in CREATED_NETNS]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Compare kernel forwarding, a no-op Python TAP relay and pyrouter.")
    parser.add_argument("--duration", type=int, default=10,
                        help="seconds per iperf3 test (default 10)")
    parser.add_argument("--targets", default=",".join(DEFAULT_TARGETS),
                        help=f"comma-separated subset of {','.join(TARGETS)}")
    parser.add_argument("--udp-rate", default="0",
                        help="iperf3 -b for the UDP test (default 0 = unlimited)")
    parser.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    parser.add_argument("--nft", metavar="FILE", default=str(DEFAULT_NFT),
                        help="the ruleset of the kernel-nft / pyrouter-nft targets "
                        "(default benchmarks/rules100_ct_nat.nft)")
    parser.add_argument("--ipv6", action="store_true",
                        help="measure IPv6 forwarding (fd00:N::/64) instead of IPv4")
    args = parser.parse_args(argv)
    global NFT_FILE
    NFT_FILE = args.nft
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(args.targets) - set(TARGETS)
    if unknown or not args.targets:
        parser.error(f"--targets: unknown {sorted(unknown)}; choose from {','.join(TARGETS)}")
    if args.duration < 1:
        parser.error("--duration must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    global IPV6
    args = parse_args(argv)
    IPV6 = args.ipv6
    if os.geteuid() != 0:
        print("forwarding.py must run as root (netns, TAPs, veths)", file=sys.stderr)
        return 2
    for tool in ("ip", "iperf3", "ping", "ss"):
        if not shutil.which(tool):
            print(f"missing tool: {tool}", file=sys.stderr)
            return 2

    def on_sigterm(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    # Even when started from a shell that ignores SIGINT (background jobs).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    machine = machine_info()
    print(f"machine: {machine['cpus']} CPUs, {machine['cpu_model']}, "
          f"Linux {machine['kernel']}, Python {machine['python']}, {machine['iperf3']}")
    results: dict = {}
    interrupted = False
    try:
        for target in args.targets:
            results[target] = {"errors": {}}
            run_target(target, args, results[target])
    except KeyboardInterrupt:
        interrupted = True
        results.setdefault(target, {"errors": {}})["errors"]["interrupted"] = "by signal"
        print("\ninterrupted; cleaned up", file=sys.stderr)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):  # nothing left to interrupt
            signal.signal(sig, signal.SIG_IGN)
        for ns in leftover_netns():  # belt and braces: should never trigger
            print(f"warning: removing leftover netns {ns}", file=sys.stderr)
            try:
                del_netns(ns)
            except BenchError as exc:
                print(f"warning: {exc}", file=sys.stderr)

    if results:
        print_table(results, args.duration)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"machine": machine, "family": 6 if IPV6 else 4, "duration_s": args.duration,
             "udp_payload_bytes": UDP_PAYLOAD,
             "udp_rate": args.udp_rate, "interrupted": interrupted, "results": results},
            indent=2) + "\n")
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
