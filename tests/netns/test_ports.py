"""Port kinds in network namespaces: an AF_PACKET port on an existing veth (containerlab
style) and a TAP enslaved to an existing Linux bridge (``master:``), each with ping and a
TCP transfer through the router to a host behind an ordinary TAP port.

Layout (names carry a per-test token; everything is removed at teardown):

    h1 --veth-- R: [packet port on the veth | TAP in bridge br]  pyrouter (runs in R)  TAP -- h2

pyrouter runs inside its own namespace R (forwarding off there, as docs/deploy-ports.md
asks), so the kernel's stack on the AF_PACKET device is the one pyrouter checks.  With
PYROUTER_TARGET=kernel the same hosts sit behind a kernel router in R (ip_forward=1; the
router address on the veth, or on the bridge).  The host side keeps its default offloads:
TCP arrives at the packet port as TSO super-frames with partial checksums.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import yaml

from .conftest import TARGET, ip, nsexec, wait_for
from .lab import Lab, kernel_port, lab_fixture, tap_to  # noqa: F401  (the lab fixture)

pytestmark = [pytest.mark.netns]


def ping_and_transfer(lab: Lab, h1: str, h2: str, mbytes: int = 8) -> None:
    cp = nsexec(h1, "ping", "-c", "3", "-i", "0.2", "-W", "2", "10.0.2.2", timeout=20)
    assert cp.returncode == 0, f"{cp.stdout}{cp.stderr}\n{lab.log_text()[-3000:]}"
    src = lab.tmp / "src.bin"
    dst = lab.tmp / "dst.bin"
    src.write_bytes(os.urandom(mbytes * 1024 * 1024))
    server = subprocess.Popen(["ip", "netns", "exec", h2, "socat", "-u",
                               "TCP-LISTEN:5001,bind=10.0.2.2,reuseaddr", f"CREATE:{dst}"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: ":5001" in nsexec(h2, "ss", "-Hltn", "sport = :5001").stdout, 5,
                 what="socat listener")
        cp = nsexec(h1, "socat", "-u", f"OPEN:{src},rdonly", "TCP:10.0.2.2:5001,connect-timeout=5",
                    timeout=60)
        assert cp.returncode == 0, f"{cp.stdout}{cp.stderr}\n{lab.log_text()[-3000:]}"
        server.wait(20)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert hashlib.sha256(dst.read_bytes()).digest() == hashlib.sha256(src.read_bytes()).digest()


# --------------------------------------------------------------------------------------

def test_packet_port_routes_ping_and_tcp(lab: Lab) -> None:
    """eth1-style: an existing veth in R, pyrouter attached with AF_PACKET, using the
    veth's own MAC (no promiscuous mode)."""
    h1, h2 = lab.netns("h1"), lab.netns("h2")
    a, b = lab.name("a"), lab.name("b")
    lab.veth(a, lab.r, h1)
    for ns in (lab.r, h1):                   # containerlab's default link MTU
        ip("-n", ns, "link", "set", a, "mtu", "9500")
    lab.host(h1, a, "10.0.1.2/24", "10.0.1.1")
    if TARGET == "kernel":
        ip("-n", lab.r, "addr", "add", "10.0.1.1/24", "dev", a)
        kernel_port(lab, h2, b, "10.0.2.1/24", "10.0.2.2/24")
        nsexec(lab.r, "sysctl", "-qw", "net.ipv4.ip_forward=1", check=True)
    else:
        # New namespaces inherit net.ipv4.* from the root one, where Docker may have
        # turned forwarding on: the kernel beside pyrouter must not forward.
        nsexec(lab.r, "sysctl", "-qw", "net.ipv4.ip_forward=0", check=True)
        lab.start({"interfaces": {
            "eth1": {"kind": "packet", "device": a, "addresses": ["10.0.1.1/24"]},
            b: tap_to(h2, "10.0.2.1/24", "10.0.2.2/24")}})
        events = [e for e in lab.log_text().splitlines() if "port.host_warning" in e]
        assert events == [], events          # R's kernel holds no router address, no forwarding
        opened = [e for e in lab.log_text().splitlines() if '"port": "eth1"' in e
                  and "port.open" in e]
        assert '"mtu": 9500' in opened[0], opened   # the device's MTU, as its MAC
    ping_and_transfer(lab, h1, h2)
    # A 9000-byte ping crosses the 9500 link unfragmented and is fragmented to h2's 1500.
    cp = nsexec(h1, "ping", "-c", "1", "-W", "2", "-s", "8972", "-M", "dont", "10.0.2.2",
                timeout=10)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    # h1 learned the router at the veth's own MAC.
    r_mac = nsexec(lab.r, "cat", f"/sys/class/net/{a}/address", check=True).stdout.strip()
    neigh = nsexec(h1, "ip", "neigh", "show", "10.0.1.1", check=True).stdout
    assert r_mac in neigh, neigh
    if TARGET == "pyrouter":
        # A reload that changes only addresses keeps the packet port running as it is.
        cp = lab.reload({"interfaces": {
            "eth1": {"kind": "packet", "device": a, "addresses": ["10.0.1.1/24", "10.0.1.254/24"]},
            b: tap_to(h2, "10.0.2.1/24", "10.0.2.2/24")}})
        assert cp.returncode == 0, cp.stdout + cp.stderr + lab.log_text()[-2000:]
        cp = nsexec(h1, "ping", "-c", "1", "-W", "2", "10.0.1.254", timeout=10)
        assert cp.returncode == 0, cp.stdout + lab.log_text()[-2000:]
        applied = [json.loads(line) for line in lab.log_text().splitlines()
                   if '"reload.applied"' in line]
        assert applied and applied[-1]["recreated"] == [] and applied[-1]["added"] == [], applied


def test_packet_port_warns_about_the_kernel(lab: Lab) -> None:
    """The kernel on the device holding the router's address, and forwarding on in the
    namespace: `pyrouter check` (run in R) and `pyrouter run` warn, naming the key."""
    if TARGET == "kernel":
        pytest.skip("a pyrouter check")
    h1 = lab.netns("h1")
    a = lab.name("a")
    lab.veth(a, lab.r, h1)
    ip("-n", lab.r, "addr", "add", "10.0.1.1/24", "dev", a)
    ip("-n", lab.r, "addr", "add", "10.0.1.7/24", "dev", a)
    nsexec(lab.r, "sysctl", "-qw", "net.ipv4.ip_forward=1", check=True)
    cfg = lab.tmp / "c.yaml"
    cfg.write_text(yaml.safe_dump({"interfaces": {
        "eth1": {"kind": "packet", "device": a, "addresses": ["10.0.1.1/24"]}}}))
    cp = nsexec(lab.r, sys.executable, "-m", "pyrouter", "check", "-c", str(cfg))
    assert cp.returncode == 0, cp.stderr
    assert "warning: interfaces.eth1.addresses[0]" in cp.stderr, cp.stderr
    assert "net.ipv4.ip_forward=1" in cp.stderr, cp.stderr
    assert f"{a} has 10.0.1.7/24 in the router's subnet 10.0.1.0/24" in cp.stderr, cp.stderr
    assert cp.stderr.count("warning:") == 3, cp.stderr
    # A device that does not exist is a config error at run time, naming the key.
    cfg.write_text(yaml.safe_dump({"interfaces": {
        "eth1": {"kind": "packet", "device": "nosuch0", "addresses": ["10.0.1.1/24"]}}}))
    cp = nsexec(lab.r, sys.executable, "-m", "pyrouter", "run", "-c", str(cfg),
                "--log-format", "json", timeout=20)
    assert cp.returncode == 2 and "interfaces.eth1.device" in cp.stdout, cp.stdout


def test_bridge_master_port_routes(lab: Lab) -> None:
    """A TAP enslaved to an existing bridge (as a Docker or libvirt network): h1 hangs off
    the same bridge through a veth."""
    h1, h2 = lab.netns("h1"), lab.netns("h2")
    br, c, b, t = lab.name("br"), lab.name("c"), lab.name("b"), lab.name("t")
    ip("-n", lab.r, "link", "add", br, "type", "bridge")
    ip("-n", lab.r, "link", "set", br, "up")
    lab.veth(c, lab.r, h1)
    ip("-n", lab.r, "link", "set", c, "master", br)
    lab.host(h1, c, "10.0.1.2/24", "10.0.1.1")
    if TARGET == "kernel":
        ip("-n", lab.r, "addr", "add", "10.0.1.1/24", "dev", br)
        kernel_port(lab, h2, b, "10.0.2.1/24", "10.0.2.2/24")
        nsexec(lab.r, "sysctl", "-qw", "net.ipv4.ip_forward=1", check=True)
    else:
        lab.start({"interfaces": {
            t: {"master": br, "addresses": ["10.0.1.1/24"]},
            b: tap_to(h2, "10.0.2.1/24", "10.0.2.2/24")}})
        master = nsexec(lab.r, "ip", "-o", "link", "show", t, check=True).stdout
        assert f"master {br}" in master, master
    ping_and_transfer(lab, h1, h2, mbytes=4)


def test_bridge_host_takes_its_lease_from_the_router(lab: Lab) -> None:
    """Issue #8: a namespace on a bridge-attached port (standing in for a container or VM
    on a Docker/libvirt network) gets its address and default route from pyrouter's DHCP
    server with busybox udhcpc, then reaches a host on another port."""
    busybox = shutil.which("busybox")
    if TARGET == "kernel" or busybox is None:
        pytest.skip("pyrouter's DHCP server on a bridge port (needs busybox)")
    h1, h2 = lab.netns("h1"), lab.netns("h2")
    br, c, b, t = lab.name("br"), lab.name("c"), lab.name("b"), lab.name("t")
    ip("-n", lab.r, "link", "add", br, "type", "bridge")
    ip("-n", lab.r, "link", "set", br, "up")
    lab.veth(c, lab.r, h1)
    ip("-n", lab.r, "link", "set", c, "master", br)
    ip("-n", h1, "link", "set", c, "up")
    lab.start({"interfaces": {
        t: {"master": br, "addresses": ["10.0.1.1/24"],
            "dhcp": {"pool": ["10.0.1.50", "10.0.1.59"]}},
        b: tap_to(h2, "10.0.2.1/24", "10.0.2.2/24")}})
    script = lab.tmp / "udhcpc.sh"
    script.write_text("#!/bin/sh\ncase \"$1\" in bound|renew)\n"
                      "  ip addr replace \"$ip/$subnet\" dev \"$interface\"\n"
                      "  ip route replace default via \"$router\" dev \"$interface\" ;;\n"
                      "esac\nexit 0\n")
    script.chmod(0o755)
    cp = nsexec(h1, busybox, "udhcpc", "-i", c, "-n", "-q", "-t", "5", "-T", "1", "-s",
                str(script), timeout=30)
    assert cp.returncode == 0, f"{cp.stdout}{cp.stderr}\n{lab.log_text()[-3000:]}"
    addrs = nsexec(h1, "ip", "-4", "-o", "addr", "show", "dev", c, check=True).stdout
    assert "inet 10.0.1.5" in addrs, addrs
    route = nsexec(h1, "ip", "route", "show", "default", check=True).stdout
    assert "via 10.0.1.1" in route, route
    cp = nsexec(h1, "ping", "-c", "2", "-i", "0.2", "-W", "2", "10.0.2.2", timeout=20)
    assert cp.returncode == 0, f"{cp.stdout}{cp.stderr}"


def test_bridge_master_must_exist(lab: Lab) -> None:
    if TARGET == "kernel":
        pytest.skip("a pyrouter config check")
    cfg = lab.tmp / "c.yaml"
    cfg.write_text(yaml.safe_dump({"interfaces": {
        lab.name("t"): {"master": "nosuchbr0", "addresses": ["10.0.1.1/24"]}}}))
    cp = nsexec(lab.r, sys.executable, "-m", "pyrouter", "run", "-c", str(cfg),
                "--log-format", "json", timeout=20)
    assert cp.returncode == 2, cp.stdout
    assert f"interfaces.{lab.name('t')}.master" in cp.stdout and "nosuchbr0" in cp.stdout
    # `pyrouter check` validates the file (valid) and warns about this machine.
    cp = nsexec(lab.r, sys.executable, "-m", "pyrouter", "check", "-c", str(cfg))
    assert cp.returncode == 0, cp.stderr
    assert f"warning: interfaces.{lab.name('t')}.master: no bridge named 'nosuchbr0'" \
        in cp.stderr, cp.stderr
    cfg.write_text(yaml.safe_dump({"interfaces": {
        lab.name("t"): {"master": "lo", "addresses": ["10.0.1.1/24"]}}}))
    cp = nsexec(lab.r, sys.executable, "-m", "pyrouter", "run", "-c", str(cfg),
                "--log-format", "json", timeout=20)
    assert cp.returncode == 2 and "not a bridge" in cp.stdout, cp.stdout


def test_packet_port_follows_its_device_down_up_and_recreated(lab: Lab) -> None:
    """`ip link set eth1 down` takes the port down (the kernel reports ENETDOWN on the
    packet socket, which must not kill the router), up brings it back; a veth deleted and
    created again (a container restart) is found again and re-bound."""
    h1, h2 = lab.netns("h1"), lab.netns("h2")
    a, b = lab.name("a"), lab.name("b")
    lab.veth(a, lab.r, h1)
    lab.host(h1, a, "10.0.1.2/24", "10.0.1.1")
    if TARGET == "kernel":
        ip("-n", lab.r, "addr", "add", "10.0.1.1/24", "dev", a)
        kernel_port(lab, h2, b, "10.0.2.1/24", "10.0.2.2/24")
        nsexec(lab.r, "sysctl", "-qw", "net.ipv4.ip_forward=1", check=True)
    else:
        nsexec(lab.r, "sysctl", "-qw", "net.ipv4.ip_forward=0", check=True)
        lab.start({"interfaces": {
            "eth1": {"kind": "packet", "device": a, "addresses": ["10.0.1.1/24"]},
            b: tap_to(h2, "10.0.2.1/24", "10.0.2.2/24")}})

    def pings() -> bool:
        return nsexec(h1, "ping", "-c", "1", "-W", "1", "10.0.2.2", timeout=10).returncode == 0

    assert pings(), lab.log_text()[-3000:]
    ip("-n", lab.r, "link", "set", a, "down")
    assert not pings()
    ip("-n", lab.r, "link", "set", a, "up")
    wait_for(pings, 10, interval=0.2, what=f"ping after {a} came back up")
    if TARGET == "kernel":
        return
    assert '"link.down"' in lab.log_text() and lab.proc is not None and lab.proc.poll() is None
    ip("-n", lab.r, "link", "del", a)
    time.sleep(1.5)
    lab.veth(a, lab.r, h1)                    # same name, new device (new ifindex, new MAC)
    lab.host(h1, a, "10.0.1.2/24", "10.0.1.1")
    wait_for(pings, 15, interval=0.3, what=f"ping after {a} was re-created")
    assert lab.proc.poll() is None, lab.log_text()[-3000:]
