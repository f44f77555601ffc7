"""IPv4 neighbour subsystem (ARP) as real Linux hosts see it, on both targets.

Topology (conftest.py)::

    h1 10.0.1.2/24 --[port a 10.0.1.1/24] router [port b 10.0.2.1/24]-- 10.0.2.2/24 h2

Per-interface knobs are set the way each target takes them: for pyrouter by
rewriting the config and reloading (``proxy_arp``, ``neighbours:``), for the
kernel router with sysctl / ``ip neigh`` in its namespace.  Timings asserted
here (Destination Host Unreachable about 3 s after the first packet, the proxy
reply within proxy_delay) were measured on the kernel target first.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Callable

import pytest
from scapy.layers.l2 import ARP

from .conftest import Topology, nsexec, wait_for

pytestmark = [pytest.mark.netns, pytest.mark.timeout(120)]

H1, H2 = "10.0.1.2", "10.0.2.2"
R_A, R_B = "10.0.1.1", "10.0.2.1"
MAC_A, MAC_B = "02:00:00:0a:00:01", "02:00:00:0b:00:01"


def ports(a_peer: str = "10.0.1.2/24", a_extra: tuple[str, ...] = ()) -> list[dict]:
    return [
        {"key": "a", "host": "h1", "addresses": ["10.0.1.1/24", *a_extra],
         "peer_addresses": [a_peer], "peer_routes": [{"to": "default", "via": R_A}],
         "macaddress": MAC_A},
        {"key": "b", "host": "h2", "addresses": ["10.0.2.1/24"],
         "peer_addresses": ["10.0.2.2/24"], "peer_routes": [{"to": "default", "via": R_B}],
         "macaddress": MAC_B},
    ]


def router_neigh(topo: Topology, addr: str) -> dict[str, Any] | None:
    """The router's entry for *addr*: {"state", "lladdr"} (either target)."""
    if topo.target == "kernel":
        assert topo.router_ns
        cp = nsexec(topo.router_ns, "ip", "-j", "neigh", "show", addr, check=True)
        for n in json.loads(cp.stdout or "[]"):
            if n.get("dst") == addr:
                st = n.get("state") or ["NONE"]
                return {"state": st[0], "lladdr": n.get("lladdr")}
        return None
    for n in topo.cli_json("show", "neigh"):
        if n["dst"] == addr:
            return {"state": n["state"], "lladdr": n.get("lladdr")}
    return None


def router_neigh_count(topo: Topology) -> int:
    if topo.target == "kernel":
        assert topo.router_ns
        cp = nsexec(topo.router_ns, "ip", "-j", "-4", "neigh", "show", check=True)
        return len(json.loads(cp.stdout or "[]"))
    return len(topo.cli_json("show", "neigh"))


def reconfigure(topo: Topology, change: Callable[[dict], None]) -> None:
    """pyrouter: edit the config (a dict keyed by port names) and reload it."""
    cfg = topo.config_dict()
    change(cfg)
    topo.write_config(cfg)
    topo.reload()


def host_neigh(topo: Topology, host: str, addr: str) -> dict[str, Any] | None:
    p = topo.port_of(host)
    cp = nsexec(p.netns, "ip", "-j", "neigh", "show", addr, "dev", p.name, check=True)
    for n in json.loads(cp.stdout or "[]"):
        if n.get("dst") == addr:
            return n
    return None


def timed_ping(topo: Topology, host: str, dst: str, wait: float = 8) -> tuple[float, str]:
    t0 = time.monotonic()
    cp = topo.exec(host, "ping", "-n", "-c", "1", "-W", str(wait), dst, timeout=wait + 10)
    return time.monotonic() - t0, cp.stdout + cp.stderr


# --------------------------------------------------------------------------
# the host's view of the router
# --------------------------------------------------------------------------

def test_host_sees_router_reachable_after_traffic(topology) -> None:
    topo = topology(ports=ports())
    cp = topo.exec("h1", "ping", "-n", "-c", "2", "-i", "0.2", "-W", "2", H2, timeout=20)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    n = host_neigh(topo, "h1", R_A)
    assert n is not None and n.get("lladdr") == MAC_A, n
    assert n["state"] == ["REACHABLE"], n
    # The router learned both hosts (h1 from its request, h2 from the reply to its own).
    for addr in (H1, H2):
        e = router_neigh(topo, addr)
        assert e is not None and e["state"] in ("REACHABLE", "STALE", "DELAY"), (addr, e)
    assert router_neigh(topo, H2)["lladdr"] == topo.mac("h2")


# --------------------------------------------------------------------------
# a host that vanished: FAILED and Destination Host Unreachable (~3 s)
# --------------------------------------------------------------------------

def test_vanished_host_fails_with_host_unreachable_in_kernel_time(topology) -> None:
    topo = topology(ports=ports())
    p = topo.port_of("h2")
    nsexec(p.netns, "ip", "addr", "del", "10.0.2.2/24", "dev", p.name, check=True)
    with topo.capture("h2", "arp") as cap:
        elapsed, out = timed_ping(topo, "h1", H2)
    print(f"[{topo.target}] Destination Host Unreachable after {elapsed:.2f} s")
    assert f"From {R_A}" in out and "Destination Host Unreachable" in out, out
    # INCOMPLETE: mcast_probes = 3 broadcast requests, retrans_time 1 s apart, then
    # FAILED at 3 s and the queued echo gets the ICMP error (kernel: 3.0-3.1 s).
    assert 2.5 <= elapsed <= 4.5, elapsed
    e = router_neigh(topo, H2)
    assert e is not None and e["state"] == "FAILED", e
    who_has = [pk for pk in cap.stop() if ARP in pk and pk[ARP].op == 1
               and pk[ARP].pdst == H2 and pk[ARP].psrc == R_B]
    assert len(who_has) == 3, [pk.summary() for pk in who_has]
    gaps = [float(b.time - a.time) for a, b in zip(who_has, who_has[1:])]
    print(f"[{topo.target}] who-has gaps {gaps}")
    assert all(0.8 <= g <= 1.3 for g in gaps), gaps


def test_host_link_down_flushes_and_then_fails(topology) -> None:
    topo = topology(ports=ports())
    cp = topo.exec("h1", "ping", "-n", "-c", "1", "-W", "2", H2, timeout=10)
    assert cp.returncode == 0, cp.stdout
    assert router_neigh(topo, H2) is not None
    p = topo.port_of("h2")
    nsexec(p.netns, "ip", "link", "set", p.name, "down", check=True)
    # Carrier loss on the router's port: neigh_carrier_down() drops the entry.
    wait_for(lambda: router_neigh(topo, H2) is None, 5, what="the router to flush h2")
    elapsed, out = timed_ping(topo, "h1", H2)
    print(f"[{topo.target}] after carrier loss: Host Unreachable after {elapsed:.2f} s")
    assert "Destination Host Unreachable" in out, out
    assert 2.5 <= elapsed <= 4.5, elapsed
    e = router_neigh(topo, H2)
    assert e is not None and e["state"] == "FAILED", e


# --------------------------------------------------------------------------
# proxy ARP
# --------------------------------------------------------------------------

SRP_CODE = r"""
import sys, time
from scapy.all import ARP, Ether, conf, srp
conf.verb = 0
dev, dst_mac, target, src_ip = sys.argv[1:5]
my = open(f"/sys/class/net/{dev}/address").read().strip()
t0 = time.monotonic()
ans, _ = srp(Ether(dst=dst_mac, src=my) / ARP(op=1, hwsrc=my, psrc=src_ip, pdst=target),
             iface=dev, timeout=3)
for _s, r in ans:
    print(r[ARP].op, r[ARP].hwsrc, r[ARP].psrc, r[ARP].hwdst, r[ARP].pdst,
          f"{r.time - _s.sent_time:.4f}")
"""


def arp_query(topo: Topology, host: str, target: str, dst_mac: str = "ff:ff:ff:ff:ff:ff",
              src_ip: str = H1) -> list[list[str]]:
    p = topo.port_of(host)
    cp = topo.exec(host, sys.executable, "-c", SRP_CODE, p.name, dst_mac, target, src_ip,
                   timeout=20)
    assert cp.returncode == 0, cp.stderr
    return [line.split() for line in cp.stdout.splitlines() if line.strip()]


def enable_proxy_arp(topo: Topology) -> None:
    dev = topo.dev("a")
    if topo.target == "kernel":
        assert topo.router_ns
        nsexec(topo.router_ns, "sysctl", "-qw", f"net.ipv4.conf.{dev}.proxy_arp=1", check=True)
    else:
        reconfigure(topo, lambda cfg: cfg["interfaces"][dev].update(proxy_arp=True))


def test_proxy_arp_answers_for_an_address_behind_another_port(topology) -> None:
    topo = topology(ports=ports(a_peer="10.0.1.2/16"))     # h1 thinks 10.0.2.2 is on-link
    # Off: nobody answers h1's who-has 10.0.2.2 on its link.
    assert arp_query(topo, "h1", H2) == []
    enable_proxy_arp(topo)
    delays = []
    for _ in range(3):
        ans = arp_query(topo, "h1", H2)
        assert len(ans) == 1, ans
        op, hwsrc, psrc, hwdst, pdst, dt = ans[0]
        assert (op, hwsrc, psrc, hwdst, pdst) == ("2", MAC_A, H2, topo.mac("h1"), H1)
        delays.append(float(dt))
    print(f"[{topo.target}] proxy ARP reply delays {delays}")
    # A broadcast request is answered after a random delay below proxy_delay (0.8 s).
    assert all(d < 1.0 for d in delays), delays
    # A request unicast to the router (pkt_type HOST) is answered at once.
    ans = arp_query(topo, "h1", H2, dst_mac=MAC_A)
    assert len(ans) == 1 and ans[0][1] == MAC_A and float(ans[0][5]) < 0.3, ans
    # Not for an address on h1's own link (the route leaves by the same port).
    assert arp_query(topo, "h1", "10.0.1.77") == []
    # And the traffic then goes through the router.
    nsexec(topo.port_of("h1").netns, "ip", "neigh", "flush", "dev", topo.dev("a"))
    cp = topo.exec("h1", "ping", "-n", "-c", "2", "-i", "0.3", "-W", "3", H2, timeout=20)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert host_neigh(topo, "h1", H2)["lladdr"] == MAC_A


# --------------------------------------------------------------------------
# gratuitous ARP on start
# --------------------------------------------------------------------------

def test_gratuitous_arp_on_start(topology) -> None:
    topo = topology(ports=ports())
    h1ns = topo.ns("h1")
    if topo.target == "kernel":
        # The kernel announces on NETDEV_UP only with arp_notify=1 (default 0).
        assert topo.router_ns
        dev = topo.dev("a")
        nsexec(topo.router_ns, "sysctl", "-qw", f"net.ipv4.conf.{dev}.arp_notify=1", check=True)
        with topo.capture("h1", "arp", dev="any") as cap:
            nsexec(topo.router_ns, "ip", "link", "set", dev, "down", check=True)
            nsexec(topo.router_ns, "ip", "link", "set", dev, "up", check=True)
            ok = cap.wait_for(lambda pk: ARP in pk and pk[ARP].psrc == R_A, 5)
        pkts = cap.stop()
    else:
        # Restart the router: its TAP reappears in h1's namespace, announced at once.
        topo.stop()
        with topo.capture("h1", "arp", dev="any") as cap:
            topo.stopped = False
            topo._start_pyrouter()
            ok = cap.wait_for(lambda pk: ARP in pk and pk[ARP].psrc == R_A, 5)
        pkts = cap.stop()
        assert any(e.get("event") == "arp.announce" for e in topo.log_events())
    assert ok, [pk.summary() for pk in pkts]
    garp = [pk for pk in pkts if ARP in pk and pk[ARP].psrc == R_A]
    g = garp[0][ARP]
    assert (g.op, g.pdst, g.hwsrc, g.hwdst) == (1, R_A, MAC_A, "00:00:00:00:00:00"), g.show(True)
    assert h1ns


# --------------------------------------------------------------------------
# a static neighbour is used without any ARP request
# --------------------------------------------------------------------------

def test_static_neighbour_is_used_without_arp(topology) -> None:
    topo = topology(ports=ports())
    h2mac = topo.mac("h2")
    dev_b = topo.dev("b")
    if topo.target == "kernel":
        assert topo.router_ns
        nsexec(topo.router_ns, "ip", "neigh", "replace", H2, "lladdr", h2mac, "dev", dev_b,
               "nud", "permanent", check=True)
    else:
        reconfigure(topo, lambda cfg: cfg.update(
            neighbours=[{"to": H2, "lladdr": h2mac, "dev": dev_b}]))
    assert router_neigh(topo, H2) == {"state": "PERMANENT", "lladdr": h2mac}
    with topo.capture("h2", "arp") as cap:
        cp = topo.exec("h1", "ping", "-n", "-c", "3", "-i", "0.3", "-W", "2", H2, timeout=20)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    from_router = [pk for pk in cap.stop() if ARP in pk and pk[ARP].hwsrc == MAC_B]
    assert from_router == [] or all(pk[ARP].op == 2 for pk in from_router), \
        [pk.summary() for pk in from_router]          # only answers to h2's own request
    assert router_neigh(topo, H2) == {"state": "PERMANENT", "lladdr": h2mac}
    # A permanent entry survives carrier loss.
    p = topo.port_of("h2")
    nsexec(p.netns, "ip", "link", "set", dev_b, "down", check=True)
    time.sleep(2.5)
    assert router_neigh(topo, H2) == {"state": "PERMANENT", "lladdr": h2mac}


# --------------------------------------------------------------------------
# an ARP flood from 100 000 sources: bounded table, forwarding goes on
# --------------------------------------------------------------------------

FLOOD_CODE = r"""
import socket, struct, sys, time
dev, n, target, base = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((dev, 0))
tpa = socket.inet_aton(target)
b = int.from_bytes(socket.inet_aton(base), "big")
body = struct.Struct("!HHBBH6sI6s4s")
sent = 0
t0 = time.monotonic()
for i in range(n):
    mac = b"\x02\xf0" + i.to_bytes(4, "big")
    frame = b"\xff" * 6 + mac + b"\x08\x06" + body.pack(1, 0x0800, 6, 4, 1, mac, b + i,
                                                       bytes(6), tpa) + bytes(18)
    try:
        s.send(frame)
        sent += 1
    except OSError:
        time.sleep(0.002)
    if i % 500 == 499:                  # about 10 000 a second: a flood, not a CPU test
        time.sleep(max(0.0, t0 + (i + 1) / 10000 - time.monotonic()))
print(sent, f"{time.monotonic() - t0:.2f}")
"""


def test_arp_flood_keeps_the_table_bounded_and_forwarding_alive(topology) -> None:
    topo = topology(ports=ports(a_extra=("10.128.0.1/9",)))    # 8M on-link senders
    p = topo.port_of("h1")
    # Resolve h1 and h2 first: a full table refuses *new* entries (the kernel's
    # "neighbour table overflow"), while entries in use keep their timers and are
    # never taken by the forced gc.
    cp = topo.exec("h1", "ping", "-n", "-c", "2", "-i", "0.2", "-W", "2", H2, timeout=20)
    assert cp.returncode == 0, cp.stdout
    flood = [sys.executable, "-c", FLOOD_CODE, p.name, "100000", R_A, "10.128.0.0"]
    import subprocess
    proc = subprocess.Popen(["ip", "netns", "exec", p.netns, *flood], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        cp = topo.exec("h1", "ping", "-n", "-c", "20", "-i", "0.2", "-W", "2", H2, timeout=40)
        during = cp.stdout
        peak = router_neigh_count(topo)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 0, err
    sent = int(out.split()[0])
    assert sent > 90_000, out
    got = during.count("bytes from")
    print(f"[{topo.target}] flood: sent {out.strip()}, ping replies {got}/20, peak {peak}")
    # Forwarding goes on meanwhile: h1 and h2 keep their entries (a lost neighbour could
    # not be created again while the table is full, and every ping would be lost).  Both
    # targets measured 20/20; a little slack for a loaded machine.
    assert got >= 15, during
    # gc_thresh3 = 1024 holds (the kernel's table may briefly hold a few in flight).
    assert peak <= 1024 + 16, peak
    assert router_neigh_count(topo) <= 1024 + 16
    cp = topo.exec("h1", "ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", H2, timeout=20)
    assert cp.returncode == 0, cp.stdout
    if topo.target == "pyrouter":
        t = topo.cli_json("show", "ntable")[0]
        assert t["gc_entries"] <= 1024 and t["stats"]["table_fulls"] > 0, t


# --------------------------------------------------------------------------
# IPv4 DAD probes (RFC 5227) are answered, nothing is learned
# --------------------------------------------------------------------------

def test_dad_probe_is_answered_and_nothing_learned(topology) -> None:
    topo = topology(ports=ports())
    ans = arp_query(topo, "h1", R_A, src_ip="0.0.0.0")
    assert len(ans) == 1, ans
    op, hwsrc, psrc, hwdst, pdst, _dt = ans[0]
    assert (op, hwsrc, psrc, hwdst, pdst) == ("2", MAC_A, R_A, topo.mac("h1"), "0.0.0.0")
    assert arp_query(topo, "h1", "10.0.1.77", src_ip="0.0.0.0") == []   # not ours: silent
    assert router_neigh(topo, H1) is None
