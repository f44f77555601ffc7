"""Operator interface integration tests: the CLI and control socket of a running pyrouter,
checked against what real hosts see.

Topology (see conftest.py)::

    h1 10.0.1.2/24 --[port a 10.0.1.1/24] router [port b 10.0.2.1/24]-- 10.0.2.2/24 h2

Every answer of ``pyrouter show/route get/ping/traceroute/trace/explain/capture`` is
compared with real state: MACs read from the hosts, frames seen by tcpdump on the
hosts, ICMP received by ping, counters that move with traffic we cause.  The
operator interface exists only for pyrouter, so this file is skipped with
``PYROUTER_TARGET=kernel``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from ipaddress import IPv6Address
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import RawPcapReader

from .conftest import REPO_ROOT, TARGET, Topology, json_stream, nsexec, wait_for

pytestmark = [
    pytest.mark.netns,
    pytest.mark.timeout(90),
    pytest.mark.skipif(TARGET == "kernel", reason="the operator interface is pyrouter's own"),
]

H1, H2, H3 = "10.0.1.2", "10.0.2.2", "10.0.3.2"
R_A, R_B, R_C = "10.0.1.1", "10.0.2.1", "10.0.3.1"
MAC_A, MAC_B = "02:00:00:00:01:01", "02:00:00:00:02:01"

REPLY_RE = re.compile(r"^(\d+) bytes from ([\d.]+): icmp_seq=(\d+) ttl=(\d+)", re.M)
FROM_RE = re.compile(r"^From ([\d.]+)(?: icmp_seq=(\d+))? (.+)$", re.M)
SUMMARY_RE = re.compile(r"(\d+) packets transmitted, (\d+) received")

PORT_C = {"key": "c", "host": "h3", "addresses": ["10.0.3.1/24"], "peer_addresses": ["10.0.3.2/24"],
          "peer_routes": [{"to": "default", "via": "10.0.3.1"}]}


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def require_tools(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing tools: {', '.join(missing)}")


def show(cp: subprocess.CompletedProcess) -> str:
    return f"$ {' '.join(map(str, cp.args))}\nrc={cp.returncode}\n{cp.stdout}{cp.stderr}"


def ping(topo: Topology, host: str, dst: str, *opts: str, count: int = 1,
         wait: float = 2) -> subprocess.CompletedProcess:
    return topo.exec(host, "ping", "-n", "-c", str(count), "-i", "0.2", "-W", str(wait),
                     *opts, dst, timeout=20 + count)


def replies(out: str) -> list[tuple[int, str, int, int]]:
    return [(int(b), s, int(q), int(t)) for b, s, q, t in REPLY_RE.findall(out)]


def errors(out: str) -> list[tuple[str, str]]:
    return [(s, m.strip()) for s, _q, m in FROM_RE.findall(out)]


def by_name(items: list[dict], key: str = "ifname") -> dict[str, dict]:
    return {d[key]: d for d in items}


def quiet_ports() -> list[dict]:
    """Default h1/h2 ports with fixed router MACs (hosts get permanent entries for them)."""
    return [
        {"key": "a", "host": "h1", "addresses": ["10.0.1.1/24"], "peer_addresses": ["10.0.1.2/24"],
         "peer_routes": [{"to": "default", "via": R_A}], "macaddress": MAC_A},
        {"key": "b", "host": "h2", "addresses": ["10.0.2.1/24"], "peer_addresses": ["10.0.2.2/24"],
         "peer_routes": [{"to": "default", "via": R_B}], "macaddress": MAC_B},
    ]


def make_quiet(topo: Topology) -> None:
    """Keep the hosts from sending anything we did not ask for: no IPv6 (router
    solicitations, MLD, DAD) and permanent ARP entries for the router, so the only
    frames on the wire are the ones a test causes.  Then wait until the counters rest."""
    for p in topo.ports.values():
        for knob in ("all", "default", p.name):
            topo.exec(p.host, "sysctl", "-qw", f"net.ipv6.conf.{knob}.disable_ipv6=1", check=True)
        if p.macaddress:
            topo.exec(p.host, "ip", "neigh", "replace", p.addresses[0].split("/")[0], "lladdr",
                      p.macaddress, "nud", "permanent", "dev", p.name, check=True)
    wait_rest(topo)


def wait_rest(topo: Topology, timeout: float = 8.0) -> None:
    last: list = [None]

    def rested() -> bool:
        now = [d["stats"] for d in topo.cli_json("show", "link")]
        same = now == last[0]
        last[0] = now
        if not same:
            time.sleep(0.3)
        return same

    wait_for(rested, timeout, interval=0.3, what="the router's counters to rest")


def _trace_busy(topo: Topology) -> bool:
    """Is a trace running?  A second one is refused with "another trace is running"; if
    none is, this probe's own 10 ms trace (of a filter nothing matches) ends by itself."""
    req = {"v": 1, "id": 1, "cmd": "trace", "args": {"filter": "host 192.0.2.222",
                                                      "duration": 0.01}}
    answers, _ = rawreq(topo.socket_path, json.dumps(req).encode() + b"\n")
    final = answers[-1]
    return final.get("ok") is False and "another trace is running" in final.get("error", "")


def start_trace(topo: Topology, *args: str) -> subprocess.Popen:
    """``pyrouter trace ARGS`` in the background, returned once its tracer is installed."""
    for _attempt in range(5):
        proc = topo.cli_popen("trace", *args)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
            if _trace_busy(topo):
                return proc
        if proc.poll() is None:
            proc.kill()
            raise AssertionError("background trace never became active")
        out, err = proc.communicate()
        # it may have lost a race against a probe; anything else is a failure
        assert "another trace is running" in err, f"trace failed: {out}\n{err}"
    raise AssertionError("could not start a trace")


def finish(proc: subprocess.Popen, timeout: float = 10) -> tuple[str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"{proc.args} did not finish in {timeout}s\n"
                             f"stdout:\n{out}\nstderr:\n{err}") from None
    assert proc.returncode == 0, f"{proc.args} rc={proc.returncode}\n{out}\n{err}"
    return out, err


def stages(steps: list[dict]) -> list[str]:
    return [s["stage"] for s in steps]


def step(steps: list[dict], name: str) -> dict:
    found = [s for s in steps if s["stage"] == name]
    assert len(found) == 1, f"want one {name!r} step, got {len(found)}: {steps}"
    return found[0]


def rawreq(path: Any, data: bytes, timeout: float = 5.0,
           until_eof: bool = False) -> tuple[list[dict], bool]:
    """Send raw bytes on a fresh control connection; return the answers read until the
    first final answer (or, with ``until_eof``, until the router hangs up) and whether
    the router closed the connection."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(str(path))
    try:
        s.sendall(data)
        buf = b""
        answers: list[dict] = []
        closed = False
        while True:
            while b"\n" in buf:
                line, _, buf = buf.partition(b"\n")
                answers.append(json.loads(line))
            if answers and "ok" in answers[-1] and not until_eof:
                break
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                closed = True
                break
            buf += chunk
        return answers, closed
    finally:
        s.close()


def _metric_samples(text: str) -> dict[tuple[str, tuple], float]:
    out: dict[tuple[str, tuple], float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)', line)
        assert m, f"unparsable sample line: {line!r}"
        labels = tuple(sorted(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or "")))
        key = (m.group(1), labels)
        assert key not in out, f"duplicate series {key}"
        out[key] = float(m.group(3))
    return out


# --------------------------------------------------------------------------
# 1. show link / addr / route / neigh / stats
# --------------------------------------------------------------------------

def test_show_commands_reflect_real_state(topology) -> None:
    topo = topology(routes=[{"to": "10.9.0.0/16", "via": H2, "metric": 10},
                            {"to": "203.0.113.0/24", "type": "prohibit"}])
    a, b = topo.dev("a"), topo.dev("b")
    links0 = by_name(topo.cli_json("show", "link"))
    stats0 = topo.cli_json("show", "stats")

    cp = ping(topo, "h1", H2, count=3)
    assert len(replies(cp.stdout)) == 3, show(cp)

    # neighbours: the hosts' real MACs, in a valid NUD state
    neigh = topo.cli_json("show", "neigh")
    got = {(n["dst"], n["dev"]): n for n in neigh}
    for host, addr, dev in (("h1", H1, a), ("h2", H2, b)):
        n = got.get((addr, dev))
        assert n is not None, f"no neighbour {addr} on {dev}: {neigh}"
        assert n["lladdr"] == topo.mac(host), (n, topo.mac(host))
        assert n["state"] in ("REACHABLE", "STALE", "DELAY", "PROBE"), n
    human = topo.cli("show", "neigh").stdout
    for host, addr, dev in (("h1", H1, a), ("h2", H2, b)):
        assert re.search(rf"^{re.escape(addr)} dev {dev} lladdr {topo.mac(host)} .*"
                         rf"(REACHABLE|STALE|DELAY|PROBE)$", human, re.M), human

    # links: the MAC the hosts resolved for the router, counters grown by the traffic
    links = by_name(topo.cli_json("show", "link"))
    assert set(links) == {a, b}, links
    assert links[a]["address"] == topo.neigh_mac("h1", R_A), links[a]
    assert links[b]["address"] == topo.neigh_mac("h2", R_B), links[b]
    for dev in (a, b):
        st, st0 = links[dev]["stats"], links0[dev]["stats"]
        assert links[dev]["operstate"] == "UP" and links[dev]["mtu"] == 1500, links[dev]
        assert st["rx_packets"] - st0["rx_packets"] >= 3, (st0, st)     # 3 echo requests/replies
        assert st["tx_packets"] - st0["tx_packets"] >= 3, (st0, st)
        assert st["rx_bytes"] - st0["rx_bytes"] >= 3 * 98, (st0, st)
        assert st["tx_bytes"] - st0["tx_bytes"] >= 3 * 98, (st0, st)
    human = topo.cli("show", "link").stdout
    assert re.search(rf"^\d+: {a}: <[A-Z_,]*UP[A-Z_,]*> mtu 1500 state UP$", human, re.M), human
    assert f"link/ether {links[a]['address']} brd ff:ff:ff:ff:ff:ff" in human, human

    # addresses
    addrs = by_name(topo.cli_json("show", "addr"))
    mac = bytes.fromhex(addrs[a]["address"].replace(":", ""))
    ll = str(IPv6Address(b"\xfe\x80" + bytes(6) + bytes([mac[0] ^ 2]) + mac[1:3] + b"\xff\xfe"
                         + mac[3:6]))         # the port's EUI-64 link-local
    assert [(i["local"], i["prefixlen"], i.get("broadcast")) for i in addrs[a]["addr_info"]] == \
        [(R_A, 24, "10.0.1.255"), (ll, 64, None)], addrs[a]
    human = topo.cli("show", "addr").stdout
    assert f"inet {R_A}/24 brd 10.0.1.255 scope global {a}" in human, human
    assert f"inet {R_B}/24 brd 10.0.2.255 scope global {b}" in human, human

    # routes, in iproute2's format
    human = topo.cli("show", "route").stdout.splitlines()
    for want in (f"10.0.1.0/24 dev {a} proto kernel scope link src {R_A}",
                 f"10.0.2.0/24 dev {b} proto kernel scope link src {R_B}",
                 f"10.9.0.0/16 via {H2} dev {b} proto static metric 10",
                 "prohibit 203.0.113.0/24 proto static"):
        assert want in human, f"{want!r} not in:\n" + "\n".join(human)
    routes = topo.cli_json("show", "route")
    assert len(routes) == len(human) == 4, (routes, human)
    gw = [r for r in routes if r["dst"] == "10.9.0.0/16"]
    assert gw and gw[0]["gateway"] == H2 and gw[0]["dev"] == b and gw[0]["metric"] == 10, routes
    local = topo.cli("show", "route", "table", "all").stdout.splitlines()
    assert f"local {R_A} dev {a} table local proto kernel scope host src {R_A}" in local, local

    # stats: exactly 3 requests + 3 replies were forwarded
    stats = topo.cli_json("show", "stats")
    fwd = stats["snmp"]["IpForwDatagrams"] - stats0["snmp"]["IpForwDatagrams"]
    assert fwd == 6, (stats0["snmp"], stats["snmp"])
    assert stats["snmp"]["IpInReceives"] - stats0["snmp"]["IpInReceives"] >= 6
    human = topo.cli("show", "stats").stdout
    m = re.search(r"^IpForwDatagrams\s+(\d+)$", human, re.M)
    assert m and int(m.group(1)) >= stats["snmp"]["IpForwDatagrams"], human


# --------------------------------------------------------------------------
# 2. route get
# --------------------------------------------------------------------------

def test_route_get_names_the_real_egress(topology) -> None:
    topo = topology(extra_ports=[PORT_C],
                    routes=[{"to": "10.9.0.0/16", "via": H2},
                            {"to": "198.51.100.0/24", "type": "unreachable"}])
    a, b, c = topo.dev("a"), topo.dev("b"), topo.dev("c")
    hosts = {"h1": (H1, R_A, a), "h2": (H2, R_B, b), "h3": (H3, R_C, c)}

    # A host behind each port: output lookup (the router's own ping) and input lookup
    # (a packet from h1); the port named is the one on whose host the packet shows up.
    for host, (addr, raddr, dev) in hosts.items():
        rg = topo.cli_json("route", "get", addr)
        assert (rg["type"], rg["dev"], rg["prefsrc"], rg["table"]) == \
            ("unicast", dev, raddr, "main"), rg
        human = topo.cli("route", "get", addr).stdout
        assert re.match(rf"{re.escape(addr)} dev {dev} .*src {re.escape(raddr)}\b", human), human
        caps = {h: topo.capture(h, f"icmp and host {addr}") for h in hosts}
        cp = topo.cli("ping", "-c", "1", "-W", "2", addr)
        assert f"bytes from {addr}" in cp.stdout, show(cp)
        pkts = {h: cap.stop() for h, cap in caps.items()}
        seen = {h for h, pk in pkts.items() if any(IP in p and p[IP].dst == addr for p in pk)}
        assert seen == {host}, (addr, dev, seen)
        req = [p for p in pkts[host] if ICMP in p and p[ICMP].type == 8]
        assert req and req[0][IP].src == raddr, req  # the prefsrc route get announced

    for host in ("h2", "h3"):
        addr, _raddr, dev = hosts[host]
        rg = topo.cli_json("route", "get", addr, "from", H1, "iif", a)
        assert (rg["dev"], rg["iif"], rg["from"]) == (dev, a, H1), rg
        before = by_name(topo.cli_json("show", "link"))[dev]["stats"]["tx_packets"]
        with topo.capture(host, f"icmp and src host {H1}") as cap:
            cp = ping(topo, "h1", addr)
        assert len(replies(cp.stdout)) == 1, show(cp)
        assert any(IP in p and p[IP].dst == addr for p in cap.stop()), cap.stop()
        after = by_name(topo.cli_json("show", "link"))[dev]["stats"]["tx_packets"]
        assert after > before

    # Via a gateway: the frame leaves on b, addressed to h2's MAC.
    rg = topo.cli_json("route", "get", "10.9.1.1", "from", H1, "iif", a)
    assert (rg["dev"], rg["gateway"], rg["prefix"]) == (b, H2, "10.9.0.0/16"), rg
    assert re.match(rf"10\.9\.1\.1 from {H1} via {H2} dev {b}\b",
                    topo.cli("route", "get", "10.9.1.1", "from", H1, "iif", a).stdout)
    with topo.capture("h2", "icmp and dst host 10.9.1.1") as cap:
        ping(topo, "h1", "10.9.1.1", wait=1)
    pk = cap.stop()
    assert pk and pk[0][Ether].dst == topo.mac("h2") and pk[0][IP].ttl == 63, pk

    # A router address: local, nothing leaves towards h2.
    rg = topo.cli_json("route", "get", R_B)
    assert (rg["type"], rg["table"]) == ("local", "local"), rg
    assert topo.cli("route", "get", R_B).stdout.startswith(f"local {R_B} ")
    with topo.capture("h2", "icmp") as cap:
        cp = ping(topo, "h1", R_B)
    assert [(s, t) for _b, s, _q, t in replies(cp.stdout)] == [(R_B, 64)], show(cp)
    assert cap.stop() == []

    # An unreachable route and no route at all, output and input lookups.
    for extra in ((), ("from", H1, "iif", a)):
        cp = topo.cli("route", "get", "198.51.100.1", *extra, check=False)
        assert cp.returncode == 2 and "No route to host" in cp.stdout, show(cp)
        rg = json.loads(topo.cli("route", "get", "198.51.100.1", *extra, "--json",
                                 check=False).stdout)
        assert (rg["type"], rg["prefix"], rg["error"]) == \
            ("unreachable", "198.51.100.0/24", "No route to host"), rg
        cp = topo.cli("route", "get", "8.8.8.8", *extra, check=False)
        assert cp.returncode == 2 and "RTNETLINK answers: Network is unreachable" in cp.stdout, \
            show(cp)
        rg = json.loads(topo.cli("route", "get", "8.8.8.8", *extra, "--json", check=False).stdout)
        assert rg["error"] == "Network is unreachable" and "dev" not in rg, rg
    cp = ping(topo, "h1", "198.51.100.1")
    assert errors(cp.stdout) == [(R_A, "Destination Host Unreachable")], show(cp)
    cp = ping(topo, "h1", "8.8.8.8")
    assert errors(cp.stdout) == [(R_A, "Destination Net Unreachable")], show(cp)
    cp = topo.cli("route", "get", H2, "iif", "nosuchdev0", check=False)
    assert cp.returncode == 2 and 'Cannot find device "nosuchdev0"' in cp.stdout, show(cp)


# --------------------------------------------------------------------------
# 3. ping and traceroute from the router
# --------------------------------------------------------------------------

def _host_behind_h2(topo: Topology) -> str:
    """h4 10.9.0.2/24 behind h2 (10.9.0.1/24, forwarding); the router routes 10.9.0.0/24
    via h2.  ICMP rate limits off so that every probe is answered."""
    ns2 = topo.ns("h2")
    ns4 = topo.add_host_netns("h4")
    tok = topo.token[:6]
    v2, v4 = f"v{tok}x", f"v{tok}y"
    subprocess.run(["ip", "-n", ns2, "link", "add", v2, "type", "veth", "peer", "name", v4,
                    "netns", ns4], check=True)
    for ns, dev, addr in ((ns2, v2, "10.9.0.1/24"), (ns4, v4, "10.9.0.2/24")):
        subprocess.run(["ip", "-n", ns, "addr", "add", addr, "dev", dev], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", dev, "up"], check=True)
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.icmp_ratelimit=0"],
                       check=True)
    subprocess.run(["ip", "-n", ns4, "route", "add", "default", "via", "10.9.0.1"], check=True)
    subprocess.run(["ip", "netns", "exec", ns2, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
                   check=True)
    return ns4


def test_router_ping(topology) -> None:
    topo = topology(extra_ports=[PORT_C], mtu={"c": 1400},
                    routes=[{"to": "10.9.0.0/24", "via": H2}])
    _host_behind_h2(topo)

    with topo.capture("h2", "icmp") as cap:
        cp = topo.cli("ping", "-c", "2", "-i", "0.2", H2)
    assert [(s, q, t) for _b, s, q, t in replies(cp.stdout)] == [(H2, 1, 64), (H2, 2, 64)], \
        show(cp)
    assert "2 packets transmitted, 2 received, 0% packet loss" in cp.stdout, show(cp)
    reqs = [p for p in cap.stop() if ICMP in p and p[ICMP].type == 8]
    assert [(p[IP].src, p[IP].dst, p[IP].ttl) for p in reqs] == [(R_B, H2, 64)] * 2, reqs
    assert [p[ICMP].seq for p in reqs] == [1, 2]

    # -I: another of the router's addresses as the source
    with topo.capture("h2", "icmp") as cap:
        items = json_stream(topo.cli("ping", "-c", "1", "-I", R_A, "--json", H2).stdout)
    assert items[0]["from"] == H2 and items[-1]["received"] == 1, items
    assert [p[IP].src for p in cap.stop() if ICMP in p and p[ICMP].type == 8] == [R_A]

    # one hop further: ttl 63
    items = json_stream(topo.cli("ping", "-c", "1", "--json", "10.9.0.2").stdout)
    assert (items[0]["from"], items[0]["ttl"], items[0]["bytes"]) == ("10.9.0.2", 63, 64), items

    # the router's own address: answered locally, nothing on the wire
    with topo.capture("h2", "") as cap:
        cp = topo.cli("ping", "-c", "1", R_B)
    assert [(s, t) for _b, s, _q, t in replies(cp.stdout)] == [(R_B, 64)], show(cp)
    assert [p for p in cap.stop() if IP in p] == []

    # nobody answers: times out, exit 1
    cp = topo.cli("ping", "-c", "1", "-W", "0.5", "10.0.2.99", check=False)
    assert cp.returncode == 1 and "1 packets transmitted, 0 received, 100% packet loss" in \
        cp.stdout and not replies(cp.stdout), show(cp)

    # DF over the mtu-1400 port: refused locally, nothing sent; 1400 bytes exactly pass
    with topo.capture("h3", "icmp") as cap:
        cp = topo.cli("ping", "-c", "1", "-M", "do", "-s", "1472", H3, check=False)
    assert cp.returncode == 1 and "message too long, mtu=1400" in cp.stdout, show(cp)
    assert cap.stop() == []
    cp = topo.cli("ping", "-c", "1", "-M", "do", "-s", "1372", H3)
    assert replies(cp.stdout)[0][:2] == (1380, H3), show(cp)


def test_router_traceroute(topology) -> None:
    topo = topology(routes=[{"to": "10.9.0.0/24", "via": H2}])
    _host_behind_h2(topo)
    for host in ("h2", "h4"):
        topo.exec(host, "sysctl", "-qw", "net.ipv4.icmp_ratelimit=0", check=True)

    with topo.capture("h2", "udp") as cap:
        cp = topo.cli("traceroute", "-q", "2", "-w", "1", "10.9.0.2")
    lines = cp.stdout.splitlines()
    assert re.fullmatch(rf" 1  {H2}  [\d.]+ ms  [\d.]+ ms", lines[1]), show(cp)
    assert re.fullmatch(r" 2  10\.9\.0\.2  [\d.]+ ms  [\d.]+ ms", lines[2]), show(cp)
    assert len(lines) == 3, show(cp)
    probes = [p for p in cap.stop() if UDP in p and p[IP].dst == "10.9.0.2"]
    assert {p[IP].src for p in probes} == {R_B}, probes
    assert sorted(p[IP].ttl for p in probes) == [1, 1, 2, 2], probes

    out = json_stream(topo.cli("traceroute", "-I", "-q", "2", "--json", "10.9.0.2").stdout)
    hops = [o for o in out if "hop" in o]
    assert [[(p["from"], p["icmp_type"]) for p in h["probes"]] for h in hops] == \
        [[(H2, 11)] * 2, [("10.9.0.2", 0)] * 2], hops
    assert out[-1] == {"dst": "10.9.0.2", "reached": True, "hops": 2}, out

    # the same path as the kernel's traceroute from h1 sees, one hop (the router) longer
    ref = topo.exec("h1", "traceroute", "-n", "-q", "1", "-w", "1", "10.9.0.2", timeout=30)
    assert re.findall(r"^\s*\d+\s+([\d.]+)", ref.stdout, re.M) == [R_A, H2, "10.9.0.2"], show(ref)


# --------------------------------------------------------------------------
# 4. live trace
# --------------------------------------------------------------------------

def test_trace_live(topology) -> None:
    topo = topology(routes=[{"to": "203.0.113.0/24", "type": "prohibit"}])
    a, b = topo.dev("a"), topo.dev("b")
    ping(topo, "h1", H2)                   # resolve neighbours first
    proc = start_trace(topo, "-c", "4", "--json", "icmp")
    fwd = ping(topo, "h1", H2)
    loc = ping(topo, "h1", R_A)
    pro = ping(topo, "h1", "203.0.113.1")
    out, _ = finish(proc)
    assert len(replies(fwd.stdout)) == 1 and len(replies(loc.stdout)) == 1, (fwd, loc)
    assert errors(pro.stdout) == [(R_A, "Packet filtered")], show(pro)

    recs = json_stream(out)
    assert len(recs) == 4, out
    req, rep, echo, prohibited = recs

    # forwarded echo request h1 -> h2
    s = req["steps"]
    assert req["iif"] == a and stages(s)[:3] == ["eth_rcv", "ip_rcv", "fib_lookup"], req
    assert step(s, "eth_rcv")["src_mac"] == topo.mac("h1")
    assert (step(s, "ip_rcv")["src"], step(s, "ip_rcv")["dst"]) == (H1, H2)
    fl = step(s, "fib_lookup")
    assert (fl["table"], fl["route"], fl["type"], fl["dev"]) == (254, "10.0.2.0/24", "unicast", b)
    fw = step(s, "ip_forward")
    assert (fw["out"], fw["ttl_out"]) == (b, 63), fw
    x = step(s, "xmit")
    assert (x["dev"], x["dst_mac"], x["len"]) == (b, topo.mac("h2"), 98), x
    assert "drop" not in stages(s)

    # the reply h2 -> h1
    s = rep["steps"]
    assert rep["iif"] == b and step(s, "fib_lookup")["dev"] == a, rep
    assert (step(s, "xmit")["dev"], step(s, "xmit")["dst_mac"]) == (a, topo.mac("h1"))

    # echo to the router: local table, an echo reply out of a
    s = echo["steps"]
    fl = step(s, "fib_lookup")
    assert (fl["table"], fl["type"], fl["route"]) == (255, "local", f"{R_A}/32"), fl
    assert "icmp_echo_reply" in stages(s) and "ip_forward" not in stages(s), s
    assert step(s, "xmit")["dev"] == a

    # prohibit route: ICMP 3/13 back out of a, dropped with route_prohibit
    s = prohibited["steps"]
    fl = step(s, "fib_lookup")
    assert (fl["table"], fl["route"], fl["type"]) == (254, "203.0.113.0/24", "prohibit"), fl
    ic = step(s, "icmp_send")
    assert (ic["type"], ic["code"]) == (3, 13), ic
    assert step(s, "xmit")["dev"] == a
    assert s[-1] == {"stage": "drop", "reason": "route_prohibit"}, s

    # the tracer is gone after -c N: a new trace may start; human output
    proc = start_trace(topo, "-c", "1", f"icmp and dst host {R_A}")
    ping(topo, "h1", R_A)
    out, _ = finish(proc)
    assert re.match(rf"packet on {a} \(98 bytes\)\n", out), out
    assert re.search(r"^  fib_lookup\s+table=255 .*type=local", out, re.M), out
    assert re.search(rf"^  xmit\s+dev={a} ", out, re.M), out


# --------------------------------------------------------------------------
# 5. explain
# --------------------------------------------------------------------------

def test_explain_predicts_without_side_effects(topology) -> None:
    topo = topology(ports=quiet_ports(), routes=[{"to": "198.51.100.0/24", "type": "unreachable"}])
    a, b = topo.dev("a"), topo.dev("b")
    make_quiet(topo)
    assert len(replies(ping(topo, "h1", H2).stdout)) == 1     # the router resolves h1 and h2
    wait_rest(topo)

    cases = {"forward": ("dst", H2), "ttl1": ("dst", H2, "ttl", "1"),
             "unreachable": ("dst", "198.51.100.1")}

    def state() -> tuple:
        st = topo.cli_json("show", "stats")
        neigh = sorted((n["dst"], n["dev"], n["state"], n.get("lladdr"))
                       for n in topo.cli_json("show", "neigh"))
        return ({k: st[k] for k in ("snmp", "drops", "neigh_stats", "fast_forwarded",
                                    "reasm_queues")}, st["loop"]["frames"],
                [d["stats"] for d in topo.cli_json("show", "link")], neigh)

    before = state()
    explained: dict[str, dict] = {}
    with topo.capture("h1", "") as cap1, topo.capture("h2", "") as cap2:
        for name, words in cases.items():
            # ping sets DF: describe exactly the packet ping will send
            explained[name] = topo.cli_json("explain", "iif", a, *words, "df")
        human = topo.cli("explain", "iif", a, "dst", H2).stdout
    assert cap1.stop() == [] and cap2.stop() == [], "explain put frames on the wire"
    after = state()
    assert after == before, "explain changed the router's counters or neighbours"

    ex = explained["forward"]
    assert [(w["dev"], w["len"]) for w in ex["would_transmit"]] == [(b, 98)], ex
    assert f"=> would transmit 98 bytes on {b}" in human, human
    assert step(explained["ttl1"]["steps"], "icmp_send")["type"] == 11
    assert explained["ttl1"]["steps"][-1] == {"stage": "drop", "reason": "ttl_exceeded"}
    ic = step(explained["unreachable"]["steps"], "icmp_send")
    assert (ic["type"], ic["code"]) == (3, 1), ic

    # Real packets: their trace and what the hosts receive equal the prediction.
    proc = start_trace(topo, "-c", "3", "--json", f"icmp and src host {H1}")
    with topo.capture("h1", "icmp") as cap1, topo.capture("h2", "icmp") as cap2:
        fwd = ping(topo, "h1", H2)
        ttl1 = ping(topo, "h1", H2, "-t", "1")
        unr = ping(topo, "h1", "198.51.100.1")
    out, _ = finish(proc)
    assert len(replies(fwd.stdout)) == 1, show(fwd)
    assert errors(ttl1.stdout) == [(R_A, "Time to live exceeded")], show(ttl1)
    assert errors(unr.stdout) == [(R_A, "Destination Host Unreachable")], show(unr)
    real = dict(zip(cases, (r["steps"] for r in json_stream(out)), strict=True))

    def norm(steps: list[dict]) -> list[dict]:
        return [{k: v for k, v in s.items() if not (s["stage"] == "ip_rcv" and k == "id")}
                for s in steps]

    for name in cases:
        assert norm(real[name]) == norm(explained[name]["steps"]), \
            f"{name}: explain\n{explained[name]['steps']}\nreal\n{real[name]}"

    # what the hosts got is the frame explain said would go out
    got2 = [p for p in cap2.stop() if p[IP].src == H1]
    pred = Ether(bytes.fromhex(explained["forward"]["would_transmit"][0]["frame"]))
    assert len(got2) == 1 and len(got2[0]) == len(pred), got2
    assert (got2[0][Ether].dst, got2[0][IP].ttl, got2[0][IP].dst) == \
        (pred[Ether].dst, pred[IP].ttl, pred[IP].dst)
    got1 = [p for p in cap1.stop() if p[IP].src == R_A]
    for name, pkt in zip(("ttl1", "unreachable"), got1, strict=True):
        pred = Ether(bytes.fromhex(explained[name]["would_transmit"][0]["frame"]))
        assert (pkt[Ether].src, pkt[Ether].dst, pkt[IP].src, pkt[IP].dst, pkt[ICMP].type,
                pkt[ICMP].code, len(pkt)) == \
            (pred[Ether].src, pred[Ether].dst, pred[IP].src, pred[IP].dst, pred[ICMP].type,
             pred[ICMP].code, len(pred)), name


# --------------------------------------------------------------------------
# 6. reload
# --------------------------------------------------------------------------

def test_reload_rejects_bad_files(topology) -> None:
    topo = topology(routes=[{"to": "203.0.113.0/24", "type": "prohibit"}])
    good = topo.config_dict()
    routes0 = topo.cli_json("show", "route")
    cfg = str(topo.cfg_path)

    topo.write_config("interfaces:\n  - [unclosed\nroutes: {\n")
    cp = topo.reload(check=False)
    assert cp.returncode != 0 and cfg in cp.stderr and "not valid YAML" in cp.stderr \
        and "line " in cp.stderr, show(cp)
    assert topo.cli_json("show", "route") == routes0

    bad = json.loads(json.dumps(good))
    bad["routes"].append({"to": "10.9.0.0/16", "via": "10.7.0.1"})
    topo.write_config(bad)
    cp = topo.reload(check=False)
    assert cp.returncode != 0, show(cp)
    assert f"{cfg}: routes[1].via:" in cp.stderr and "10.7.0.1" in cp.stderr \
        and "not in a connected subnet" in cp.stderr, show(cp)
    assert topo.cli_json("show", "route") == routes0
    chk = topo.cli("check", "-c", cfg, check=False)
    assert chk.returncode == 2 and "routes[1].via" in chk.stderr, show(chk)

    # SIGHUP with the bad file: logged with file, key path and reason, nothing changed
    topo.reload("sighup")
    ev = [e for e in topo.log_events() if e.get("event") == "reload.rejected"][-1]
    assert (ev.get("file"), ev.get("path")) == (cfg, "routes[1].via") and \
        "not in a connected subnet" in ev.get("reason", ""), ev
    assert topo.cli_json("show", "route") == routes0
    assert topo.alive()
    assert len(replies(ping(topo, "h1", H2).stdout)) == 1


def test_reload_applies_routes_cli_and_sighup(topology) -> None:
    topo = topology()
    b = topo.dev("b")
    topo.exec("h2", "ip", "addr", "add", "10.9.0.1/32", "dev", "lo", check=True)
    cp = ping(topo, "h1", "10.9.0.1")
    assert errors(cp.stdout) == [(R_A, "Destination Net Unreachable")], show(cp)

    topo.routes = [{"to": "10.9.0.0/16", "via": H2}]
    topo.write_config()
    cp = topo.reload()
    assert cp.returncode == 0, show(cp)
    assert f"10.9.0.0/16 via {H2} dev {b} proto static" in \
        topo.cli("show", "route").stdout.splitlines()
    assert topo.cli_json("route", "get", "10.9.0.1")["dev"] == b
    cp = ping(topo, "h1", "10.9.0.1")
    assert [(s, t) for _b, s, _q, t in replies(cp.stdout)] == [("10.9.0.1", 63)], show(cp)

    topo.routes.append({"to": "203.0.113.0/24", "type": "prohibit"})
    topo.write_config()
    topo.reload("sighup")
    assert [e for e in topo.log_events() if e.get("event", "").startswith("reload")][-1][
        "event"] == "reload.applied"
    assert "prohibit 203.0.113.0/24 proto static" in topo.cli("show", "route").stdout
    assert errors(ping(topo, "h1", "203.0.113.1").stdout) == [(R_A, "Packet filtered")]

    topo.routes = []
    topo.write_config()
    topo.reload()
    assert "10.9.0.0/16" not in topo.cli("show", "route").stdout
    time.sleep(2.1)    # route errors share a per-host ICMP budget (ip_error)
    cp = ping(topo, "h1", "10.9.0.1")
    assert errors(cp.stdout) == [(R_A, "Destination Net Unreachable")], show(cp)


def test_reload_under_traffic_loses_nothing(topology) -> None:
    topo = topology()
    configs = [topo.config_dict(), {**topo.config_dict(),
                                    "routes": [{"to": "10.9.0.0/16", "via": H2},
                                               {"to": "203.0.113.0/24", "type": "prohibit"}]}]
    assert len(replies(ping(topo, "h1", H2).stdout)) == 1
    n = 300
    pinger = subprocess.Popen(["ip", "netns", "exec", topo.ns("h1"), "ping", "-n", "-q", "-c",
                               str(n), "-i", "0.01", "-W", "2", H2],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(0.4)
        results = []
        for i in range(6):
            topo.write_config(configs[(i + 1) % 2])
            if i == 3:
                topo.reload("sighup")
            else:
                results.append(topo.reload(check=False))
            time.sleep(0.25)
        out, _ = pinger.communicate(timeout=20)
    finally:
        if pinger.poll() is None:
            pinger.kill()
            pinger.communicate()
    assert all(cp.returncode == 0 for cp in results), [show(cp) for cp in results]
    applied = [e for e in topo.log_events() if e.get("event") == "reload.applied"]
    assert len(applied) == 6, applied
    m = SUMMARY_RE.search(out)
    assert m and (int(m.group(1)), int(m.group(2))) == (n, n), out


# --------------------------------------------------------------------------
# 7. metrics
# --------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_metrics_endpoint(topology) -> None:
    port = _free_port()
    topo = topology(ports=quiet_ports(), routes=[{"to": "203.0.113.0/24", "type": "prohibit"}],
                    config={"metrics": {"listen": f"127.0.0.1:{port}"}})
    make_quiet(topo)
    assert len(replies(ping(topo, "h1", H2, count=2).stdout)) == 2
    assert errors(ping(topo, "h1", "203.0.113.1").stdout) == [(R_A, "Packet filtered")]
    wait_rest(topo)
    url = f"http://127.0.0.1:{port}/metrics"

    links = by_name(topo.cli_json("show", "link"))
    with urllib.request.urlopen(url, timeout=5) as resp:
        status, ctype = resp.status, resp.headers.get("Content-Type", "")
        text = resp.read().decode()
    stats = topo.cli_json("show", "stats")
    assert by_name(topo.cli_json("show", "link")) == links, "traffic during the scrape"

    assert status == 200
    assert ctype.startswith("text/plain") and "version=0.0.4" in ctype, ctype
    samples = _metric_samples(text)
    for dev, d in links.items():
        for metric, key in (("pyrouter_interface_receive_packets_total", "rx_packets"),
                            ("pyrouter_interface_transmit_packets_total", "tx_packets"),
                            ("pyrouter_interface_receive_bytes_total", "rx_bytes")):
            assert samples.get((metric, (("interface", dev),))) == d["stats"][key], \
                (metric, dev, d["stats"])
        assert d["stats"]["rx_packets"] >= 3
    assert "# TYPE pyrouter_interface_receive_packets_total counter" in text
    reasons = {lab[0][1]: v for (name, lab), v in samples.items() if name == "pyrouter_drops_total"}
    contract = (REPO_ROOT / "docs" / "contract.md").read_text()
    listed = contract.split("new ones are appended):", 1)[1].split("\n\n")[0]
    documented = set(re.findall(r"[a-z][a-z0-9_]*", listed))
    assert len(documented) > 30, documented
    assert documented <= set(reasons), documented - set(reasons)
    assert {r: int(v) for r, v in reasons.items() if v} == \
        {r: v for r, v in stats["drops"].items() if v}, (reasons, stats["drops"])
    assert reasons["route_prohibit"] == 1
    assert samples[("pyrouter_snmp_ip_forw_datagrams_total", ())] == \
        stats["snmp"]["IpForwDatagrams"] == 4

    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/nope", timeout=5)
        raise AssertionError("/nope answered 2xx")
    except urllib.error.HTTPError as e:
        assert e.code == 404


# --------------------------------------------------------------------------
# 8. control socket: security and robustness
# --------------------------------------------------------------------------

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

# A raw client: connect, send one request unless it is "-" (the router may already have
# hung up), print everything the router sent back and how the connection ended.
RAW_CLIENT = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
s.connect(sys.argv[1])
if sys.argv[2] != "-":
    try:
        s.sendall(sys.argv[2].encode() + b"\n")
    except OSError as e:
        print("send:", type(e).__name__, file=sys.stderr)
data = b""
try:
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
except OSError as e:
    print("recv:", type(e).__name__, file=sys.stderr)
sys.stdout.write(data.decode())
"""


@contextlib.contextmanager
def public_socket_link(topo: Topology, mode: int | None = None):
    """A hard link to the control socket in a directory anyone may enter, optionally
    with the socket's mode loosened to *mode*; restored afterwards."""
    pub = tempfile.mkdtemp(prefix="pyrouter-pub-", dir="/tmp")
    try:
        os.chmod(pub, 0o755)
        link = os.path.join(pub, "ctl.sock")
        try:
            os.link(topo.socket_path, link)
        except OSError as e:
            pytest.skip(f"cannot hard-link the socket into /tmp: {e}")
        if mode is not None:
            os.chmod(link, mode)
        yield link
    finally:
        if os.path.exists(topo.socket_path):
            os.chmod(topo.socket_path, 0o600)
        shutil.rmtree(pub, ignore_errors=True)


def nobody(*cmd: Any) -> subprocess.CompletedProcess:
    return subprocess.run([*NOBODY, *map(str, cmd)], capture_output=True, text=True, timeout=30,
                          cwd=str(REPO_ROOT), check=False)


def test_control_socket_refuses_other_users(topology) -> None:
    require_tools("setpriv")
    topo = topology()
    st = os.stat(topo.socket_path)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    assert st.st_uid == 0

    cp = topo.cli("version", user="nobody", check=False)
    assert cp.returncode != 0 and "permission denied" in cp.stderr.lower(), show(cp)
    assert "pid" not in cp.stdout

    # Through a directory anyone may enter, the socket's own mode keeps nobody out ...
    with public_socket_link(topo) as link:
        cp = nobody(sys.executable, "-m", "pyrouter", "--socket", link, "version")
        assert cp.returncode != 0 and "Permission denied" in cp.stderr, show(cp)
        cp = nobody(sys.executable, "-c", RAW_CLIENT, link, '{"v": 1, "id": 1, "cmd": "version"}')
        assert cp.returncode != 0 and "PermissionError" in cp.stderr, show(cp)

    # ... and were the mode loosened, the router itself refuses a foreign uid (SO_PEERCRED):
    # it answers "permission denied" before reading anything and hangs up; a request sent
    # anyway gets nothing else (no result), whatever the timing.
    with public_socket_link(topo, mode=0o666) as link:
        quiet_cp = nobody(sys.executable, "-c", RAW_CLIENT, link, "-")
        asks = [nobody(sys.executable, "-c", RAW_CLIENT, link,
                       '{"v": 1, "id": 1, "cmd": "show", "args": {"what": "routes"}}')
                for _ in range(3)]
    assert quiet_cp.returncode == 0 and quiet_cp.stderr == "", show(quiet_cp)
    answers = [json.loads(ln) for ln in quiet_cp.stdout.splitlines()]
    assert [(m.get("ok"), m.get("error")) for m in answers] == [(False, "permission denied")], \
        show(quiet_cp)
    for cp in asks:
        assert cp.returncode == 0, show(cp)
        answers = [json.loads(ln) for ln in cp.stdout.splitlines()]
        assert all(m.get("ok") is False and m.get("error") == "permission denied"
                   for m in answers), show(cp)
        assert "result" not in cp.stdout and "10.0.1.0" not in cp.stdout, show(cp)
    assert stat.S_IMODE(os.stat(topo.socket_path).st_mode) == 0o600
    assert json.loads(topo.cli("version").stdout)["pid"] == topo.proc.pid  # root still served


# The CLI as a client that is a little slow to send its request once connected (a loaded
# machine): sendall() is delayed by 0.3 s, everything else is the real CLI.
SLOW_CLI = r"""
import socket, sys, time
_sendall = socket.socket.sendall
def slow_sendall(self, data, *args):
    time.sleep(0.3)
    return _sendall(self, data, *args)
socket.socket.sendall = slow_sendall
from pyrouter.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_cli_reports_refusal_by_router(topology) -> None:
    require_tools("setpriv")
    topo = topology()
    with public_socket_link(topo, mode=0o666) as link:
        cp = nobody(sys.executable, "-c", SLOW_CLI, "--socket", link, "show", "route")
    assert "10.0.1.0/24" not in cp.stdout
    assert cp.returncode != 0 and "permission denied" in cp.stderr, show(cp)


def test_control_socket_survives_malformed_requests(topology) -> None:
    topo = topology()
    a = topo.dev("a")
    path = topo.socket_path
    cases = [
        (b"not json\n", "not JSON"),
        (b"\xff\xfe\x00garbage\n", "not JSON"),
        (b"[1, 2]\n", "not an object"),
        (b'{"v": 1, "id": 7, "cmd": "frobnicate"}\n', "unknown command"),
        (b'{"v": 2, "id": 8, "cmd": "version"}\n', "unsupported protocol version 2"),
        (b'{"id": 9, "cmd": "version"}\n', "unsupported protocol version"),
        (b'{"v": 1, "id": 10, "cmd": "show", "args": "links"}\n', "args must be an object"),
        (b'{"v": 1, "id": 11, "cmd": "show", "args": {"what": 5}}\n', "show what?"),
        (b'{"v": 1, "id": 12, "cmd": "route.get", "args": {"dst": ["10.0.2.2"]}}\n',
         "not an IPv4 address"),
        (b'{"v": 1, "id": 13, "cmd": "route.get", "args": {"dst": "10.0.2.2", "mark": "x"}}\n',
         "mark"),
        (b'{"v": 1, "id": 14, "cmd": "ping", "args": {"dst": "10.0.2.2", "count": "many"}}\n',
         "count"),
        (b'{"v": 1, "id": 15, "cmd": "ping", "args": {"dst": "10.0.2.2", "interval": [1]}}\n',
         "interval"),
        (b'{"v": 1, "id": 16, "cmd": "traceroute", "args": {"dst": "10.0.2.2", "mode": 1}}\n',
         "mode"),
        (json.dumps({"v": 1, "id": 17, "cmd": "explain",
                     "args": {"iif": a, "dst": H2, "ttl": "high"}}).encode() + b"\n", "ttl"),
        (b'{"v": 1, "id": 18, "cmd": "capture", "args": {"port": "any", "count": -1}}\n',
         "count"),
        (b'{"v": 1, "id": 19, "cmd": "trace", "args": {"filter": "ip and and"}}\n', "filter"),
    ]
    for data, want in cases:
        answers, _closed = rawreq(path, data)
        assert len(answers) == 1, (data, answers)
        ans = answers[0]
        assert ans.get("ok") is False and want in ans.get("error", ""), (data, ans)
        m = re.search(rb'"id": (\d+)', data)
        assert ans.get("id") == (int(m.group(1)) if m else None), (data, ans)

    # A line longer than 64 KiB: an error answer, then the router hangs up.
    answers, closed = rawreq(path, b'{"v": 1, "cmd": "version", "pad": "' + b"x" * 70000,
                             until_eof=True)
    assert [a_.get("ok") for a_ in answers] == [False] and "longer than" in answers[0]["error"], \
        answers
    assert closed

    # Pipelined requests on one connection, answered by id.
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(str(path))
    s.sendall(b'nope\n{"v": 1, "id": 41, "cmd": "version"}\n'
              b'{"v": 1, "id": 42, "cmd": "show", "args": {"what": "routes"}}\n')
    f = s.makefile("rb")
    got = {}
    for _ in range(3):
        msg = json.loads(f.readline())
        got[msg["id"]] = msg
    s.close()
    assert got[None]["ok"] is False and got[41]["result"]["pid"] == topo.proc.pid
    assert {r["dst"] for r in got[42]["result"]} == {"10.0.1.0/24", "10.0.2.0/24"}

    # The router keeps forwarding and answering.
    assert topo.alive()
    assert len(replies(ping(topo, "h1", H2, count=2).stdout)) == 2
    assert topo.cli_json("show", "link")


@pytest.mark.parametrize("data, what", [
    pytest.param(b'{"v": 1, "id": 1, "cmd": ["version"]}\n', "command|cmd", id="cmd-list"),
    pytest.param(b'{"v": 1, "id": 2, "cmd": "route.get", "args": {"dst": "10.0.2.2", '
                 b'"iif": ["x"]}}\n', "iif|device", id="route-get-iif-list"),
    pytest.param(b'{"v": 1, "id": 3, "cmd": "version", "args": []}\n', "args", id="args-empty-list"),
    pytest.param(b'{"v": 1, "id": 4, "cmd": "ping", "args": {"dst": "10.0.2.2", "count": 1, '
                 b'"df": "no", "size": 2000}}\n', "df", id="ping-df-string"),
])
def test_control_socket_wrong_types_are_client_errors(topology, data: bytes, what: str) -> None:
    """Args of the wrong type are the client's error: a plain error answer naming the
    key, never an internal error (which the router logs as its own bug)."""
    topo = topology()
    answers, _ = rawreq(topo.socket_path, data)
    final = answers[-1]
    if final.get("ok") is False:
        err = final["error"]
    else:   # route get reports some errors inside its result, like ip route get
        res = final.get("result")
        err = res.get("error", "") if isinstance(res, dict) else ""
    assert err, f"accepted: {answers}"
    assert "internal error" not in err and re.search(what, err), final
    assert not [e for e in topo.log_events() if e.get("event") == "control.internal_error"]


# --------------------------------------------------------------------------
# 9. capture
# --------------------------------------------------------------------------

def test_capture_to_pcap_and_lines(topology) -> None:
    require_tools("tcpdump")
    topo = topology()
    a = topo.dev("a")
    assert len(replies(ping(topo, "h1", H2).stdout)) == 1
    pcap = topo.tmp / "router-capture.pcap"

    with topo.capture("h1", "icmp") as ref:
        cap = topo.cli_popen("capture", a, "-w", pcap, "-c", "6", "icmp")
        pinger = subprocess.Popen(["ip", "netns", "exec", topo.ns("h1"), "ping", "-n", "-c", "60",
                                   "-i", "0.1", H2], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            _out, err = finish(cap, timeout=10)
        finally:
            pinger.kill()
            pinger.wait()
    assert "6 frames captured" in err, err
    ref.stop()
    seen_by_h1 = {bytes(pkt) for pkt, _meta in RawPcapReader(str(ref.path))}

    rd = subprocess.run(["tcpdump", "-r", str(pcap), "-n", "-e", "-v"], capture_output=True,
                        text=True, timeout=30, check=False)
    assert rd.returncode == 0, rd.stderr
    lines = [ln for ln in rd.stdout.splitlines() if not ln.startswith(" ")]
    assert len(lines) == 6, rd.stdout
    assert any("ICMP echo request" in ln for ln in rd.stdout.splitlines())
    assert any("ICMP echo reply" in ln for ln in rd.stdout.splitlines())
    if shutil.which("tshark"):
        ts = subprocess.run(["tshark", "-r", str(pcap), "-n"], capture_output=True, text=True,
                            timeout=60, check=False)
        assert ts.returncode == 0 and len(ts.stdout.splitlines()) == 6, ts.stdout + ts.stderr

    raw = [pkt for pkt, _meta in RawPcapReader(str(pcap))]
    frames = [Ether(r) for r in raw]
    assert len(frames) == 6
    kinds = set()
    for f, r in zip(frames, raw, strict=True):
        assert ICMP in f, f.summary()
        assert r in seen_by_h1, f"frame not seen on h1's link: {f.summary()}"
        if f[ICMP].type == 8:      # in: h1 -> router
            kinds.add("in")
            assert (f[Ether].src, f[IP].src, f[IP].dst, f[IP].ttl) == \
                (topo.mac("h1"), H1, H2, 64), f.summary()
        else:                      # out: router -> h1
            kinds.add("out")
            assert (f[ICMP].type, f[Ether].dst, f[IP].src, f[IP].dst, f[IP].ttl) == \
                (0, topo.mac("h1"), H2, H1, 63), f.summary()
    assert kinds == {"in", "out"}
    times = [meta.sec + meta.usec / 1e6 for _pkt, meta in RawPcapReader(str(pcap))]
    assert times == sorted(times) and times[-1] - times[0] < 10, times

    # Without -w: one line per frame.
    cap = topo.cli_popen("capture", a, "-c", "4", "icmp")
    pinger = subprocess.Popen(["ip", "netns", "exec", topo.ns("h1"), "ping", "-n", "-c", "60",
                               "-i", "0.1", H2], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        out, _ = finish(cap, timeout=10)
    finally:
        pinger.kill()
        pinger.wait()
    lines = out.splitlines()
    assert len(lines) == 4, out
    for ln in lines:
        assert re.match(rf"\d\d:\d\d:\d\d\.\d{{6}} {a} (in |out) IP ({H1} > {H2}: ICMP echo request"
                        rf", ttl 64|{H2} > {H1}: ICMP echo reply, ttl 63), length 84$", ln), ln
    assert {ln.split()[2] for ln in lines} == {"in", "out"}, out


def test_pmtu_exception_learned_shown_and_used(topology) -> None:
    """h1 - pyrouter - h2 (a kernel router) - h3, the h2-h3 link with MTU 1400.
    `pyrouter ping -M do -s 1472` to h3 is answered by h2 with Frag Needed 1400; the
    router learns a nexthop exception that `route get` shows (cache expires ~600 s, mtu
    1400); its next DF ping fails locally with that MTU; and with ip_forward_use_pmtu a
    DF packet forwarded from h1 is answered by pyrouter itself with Frag Needed 1400."""
    topo = topology(routes=[{"to": "10.0.3.0/24", "via": H2}],
                    config={"ipv4": {"ip_forward_use_pmtu": True}})
    h2 = topo.ns("h2")
    h3 = topo.add_host_netns("h3")
    tag = topo.token[:6]
    a, b = f"q{tag}a", f"q{tag}b"
    ip_cmd = ["ip", "link", "add", a, "netns", h2, "type", "veth", "peer", "name", b,
              "netns", h3]
    assert subprocess.run(ip_cmd, capture_output=True).returncode == 0
    for ns, dev, addr in ((h2, a, "10.0.3.1/24"), (h3, b, "10.0.3.2/24")):
        nsexec(ns, "ip", "link", "set", dev, "mtu", "1400", "up", check=True)
        nsexec(ns, "ip", "addr", "add", addr, "dev", dev, check=True)
    nsexec(h3, "ip", "route", "add", "default", "via", "10.0.3.1", check=True)
    nsexec(h2, "sysctl", "-qw", "net.ipv4.ip_forward=1", check=True)
    assert topo.cli("ping", "-c", "1", "-W", "1", "10.0.3.2").returncode == 0

    first = topo.cli("ping", "-c", "1", "-W", "1", "-M", "do", "-s", "1472", "10.0.3.2",
                     check=False)
    assert "Frag needed and DF set (mtu = 1400)" in first.stdout, first.stdout
    rg = topo.cli_json("route", "get", "10.0.3.2")
    assert rg["cache"]["mtu"] == 1400 and 590 <= rg["cache"]["expires"] <= 600, rg
    human = topo.cli("route", "get", "10.0.3.2").stdout
    assert re.search(r"cache expires \d+sec mtu 1400", human), human
    second = topo.cli("ping", "-c", "1", "-W", "1", "-M", "do", "-s", "1472", "10.0.3.2",
                      check=False)
    assert "message too long, mtu=1400" in second.stdout, second.stdout

    cp = topo.exec("h1", "ping", "-n", "-c", "1", "-W", "1", "-M", "do", "-s", "1472",
                   "10.0.3.2")
    assert re.search(r"From 10\.0\.1\.1 .*Frag needed and DF set \(mtu = 1400\)", cp.stdout), \
        cp.stdout
