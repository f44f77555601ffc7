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
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import _CREATED_NETNS, _LIVE_ROUTERS, REPO_ROOT, TARGET, _del_netns, ip, nsexec, \
    wait_for

pytestmark = [pytest.mark.netns]


class Lab:
    """Namespaces, veths and one router (pyrouter in namespace R, or the kernel there)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.token = secrets.token_hex(3)
        self.namespaces: list[str] = []
        self.proc: subprocess.Popen | None = None
        self.log_path = tmp / "router.log"
        self.ready = tmp / "router.ready"
        self.r = self.netns("r")

    def netns(self, short: str) -> str:
        ns = f"pp-{self.token}-{short}"
        ip("netns", "add", ns)
        _CREATED_NETNS.add(ns)
        self.namespaces.append(ns)
        ip("-n", ns, "link", "set", "lo", "up")
        return ns

    def name(self, suffix: str) -> str:
        return f"v{self.token}{suffix}"

    def veth(self, name: str, ns_a: str, ns_b: str) -> None:
        """A veth pair whose two ends are both called *name*, one in each namespace."""
        ip("-n", ns_a, "link", "add", name, "type", "veth", "peer", "name", name, "netns", ns_b)
        ip("-n", ns_a, "link", "set", name, "up")
        ip("-n", ns_b, "link", "set", name, "up")

    def host(self, ns: str, dev: str, addr: str, gw: str) -> None:
        ip("-n", ns, "addr", "add", addr, "dev", dev)
        ip("-n", ns, "route", "add", "default", "via", gw)

    def start(self, cfg: dict[str, Any]) -> None:
        path = self.tmp / "router.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        sock = Path(f"/tmp/pp-{self.token}.sock")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.r, sys.executable, "-m", "pyrouter", "--socket",
             str(sock), "run", "-c", str(path), "--log-format", "json", "--ready-file",
             str(self.ready)], cwd=str(REPO_ROOT), stdout=self.log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
        _LIVE_ROUTERS.add(self.proc)
        deadline = time.monotonic() + 20
        while not self.ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"pyrouter did not become ready (rc={self.proc.poll()})\n"
                            f"{self.log_text()}")
            time.sleep(0.05)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def teardown(self) -> None:
        err = None
        if self.proc is not None:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGTERM)
                try:
                    rc = self.proc.wait(10)
                    if rc != 0:
                        err = f"router exited {rc} after SIGTERM"
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(5)
                    err = "router did not stop within 10 s"
            else:
                err = f"router died during the test (rc={self.proc.returncode})"
            _LIVE_ROUTERS.discard(self.proc)
            self.log.close()
        for ns in reversed(self.namespaces):
            _del_netns(ns)
        Path(f"/tmp/pp-{self.token}.sock").unlink(missing_ok=True)
        if err:
            pytest.fail(f"{err}\n{self.log_text()[-4000:]}", pytrace=False)


@pytest.fixture
def lab(tmp_path: Path):
    lab = Lab(tmp_path)
    try:
        yield lab
    finally:
        lab.teardown()


def tap_to(lab: Lab, ns: str, name: str, addr: str, peer: str) -> dict[str, Any]:
    """An ordinary TAP port whose kernel side moves to *ns* and is configured there."""
    return {"addresses": [addr], "netns": ns,
            "peer": {"addresses": [peer], "routes": [{"to": "default", "via": addr.split("/")[0]}]}}


def kernel_port_b(lab: Lab, h2: str, name: str) -> None:
    lab.veth(name, lab.r, h2)
    ip("-n", lab.r, "addr", "add", "10.0.2.1/24", "dev", name)
    lab.host(h2, name, "10.0.2.2/24", "10.0.2.1")


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
    lab.host(h1, a, "10.0.1.2/24", "10.0.1.1")
    if TARGET == "kernel":
        ip("-n", lab.r, "addr", "add", "10.0.1.1/24", "dev", a)
        kernel_port_b(lab, h2, b)
        nsexec(lab.r, "sysctl", "-qw", "net.ipv4.ip_forward=1", check=True)
    else:
        # New namespaces inherit net.ipv4.* from the root one, where Docker may have
        # turned forwarding on: the kernel beside pyrouter must not forward.
        nsexec(lab.r, "sysctl", "-qw", "net.ipv4.ip_forward=0", check=True)
        lab.start({"interfaces": {
            "eth1": {"kind": "packet", "device": a, "addresses": ["10.0.1.1/24"]},
            b: tap_to(lab, h2, b, "10.0.2.1/24", "10.0.2.2/24")}})
        events = [e for e in lab.log_text().splitlines() if "port.host_warning" in e]
        assert events == [], events          # R's kernel holds no router address, no forwarding
    ping_and_transfer(lab, h1, h2)
    # h1 learned the router at the veth's own MAC.
    r_mac = nsexec(lab.r, "cat", f"/sys/class/net/{a}/address", check=True).stdout.strip()
    neigh = nsexec(h1, "ip", "neigh", "show", "10.0.1.1", check=True).stdout
    assert r_mac in neigh, neigh


def test_packet_port_warns_about_the_kernel(lab: Lab) -> None:
    """The kernel on the device holding the router's address, and forwarding on in the
    namespace: `pyrouter check` (run in R) and `pyrouter run` warn, naming the key."""
    if TARGET == "kernel":
        pytest.skip("a pyrouter check")
    h1 = lab.netns("h1")
    a = lab.name("a")
    lab.veth(a, lab.r, h1)
    ip("-n", lab.r, "addr", "add", "10.0.1.1/24", "dev", a)
    nsexec(lab.r, "sysctl", "-qw", "net.ipv4.ip_forward=1", check=True)
    cfg = lab.tmp / "c.yaml"
    cfg.write_text(yaml.safe_dump({"interfaces": {
        "eth1": {"kind": "packet", "device": a, "addresses": ["10.0.1.1/24"]}}}))
    cp = nsexec(lab.r, sys.executable, "-m", "pyrouter", "check", "-c", str(cfg))
    assert cp.returncode == 0, cp.stderr
    assert "warning: interfaces.eth1.addresses[0]" in cp.stderr, cp.stderr
    assert "net.ipv4.ip_forward=1" in cp.stderr, cp.stderr
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
        kernel_port_b(lab, h2, b)
        nsexec(lab.r, "sysctl", "-qw", "net.ipv4.ip_forward=1", check=True)
    else:
        lab.start({"interfaces": {
            t: {"master": br, "addresses": ["10.0.1.1/24"]},
            b: tap_to(lab, h2, b, "10.0.2.1/24", "10.0.2.2/24")}})
        master = nsexec(lab.r, "ip", "-o", "link", "show", t, check=True).stdout
        assert f"master {br}" in master, master
    ping_and_transfer(lab, h1, h2, mbytes=4)


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
    cfg.write_text(yaml.safe_dump({"interfaces": {
        lab.name("t"): {"master": "lo", "addresses": ["10.0.1.1/24"]}}}))
    cp = nsexec(lab.r, sys.executable, "-m", "pyrouter", "run", "-c", str(cfg),
                "--log-format", "json", timeout=20)
    assert cp.returncode == 2 and "not a bridge" in cp.stdout, cp.stdout
