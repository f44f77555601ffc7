"""DHCPv4 from a real client: busybox udhcpc in a host namespace gets its address,
router, DNS and domain from the router's port, then reaches a host behind the router.

Both targets: pyrouter's own server, or (PYROUTER_TARGET=kernel) busybox udhcpd in
the kernel router's namespace with the same pool and options, which shows the
test's expectations are those of an ordinary DHCP server.  The restart test
(lease file) is pyrouter's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from .conftest import Port, Topology, nsexec, wait_for

BUSYBOX = shutil.which("busybox")
pytestmark = pytest.mark.skipif(BUSYBOX is None, reason="needs busybox (busybox-static)")

DHCP = {"pool": ["10.0.1.100", "10.0.1.199"], "lease_time": 120,
        "dns": ["10.0.1.53", "192.0.2.53"], "domain": "lab.example"}

SCRIPT = """#!/bin/sh
# udhcpc event script: record what the server said, configure the interface.
echo "$1 ip=$ip subnet=$subnet router=$router dns=$dns domain=$domain lease=$lease \
serverid=$serverid" >> {log}
case "$1" in
  deconfig) ip -4 addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew)
    ip addr replace "$ip/$subnet" dev "$interface"
    [ -n "$router" ] && ip route replace default via "$router" dev "$interface"
    ;;
esac
exit 0
"""


def _ports(dhcp: dict) -> list[Port]:
    return [Port("a", "h1", ["10.0.1.1/24"], [], iface={"dhcp": dhcp}),
            Port("b", "h2", ["10.0.2.1/24"], ["10.0.2.2/24"],
                 [{"to": "default", "via": "10.0.2.1"}])]


class Udhcpc:
    """A udhcpc in the foreground in a namespace; its events land in a file."""

    def __init__(self, topo: Topology, host: str, dev: str, *args: str) -> None:
        self.log = topo.tmp / f"udhcpc-{host}.events"
        script = topo.tmp / f"udhcpc-{host}.sh"
        script.write_text(SCRIPT.format(log=self.log))
        script.chmod(0o755)
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", topo.ns(host), BUSYBOX, "udhcpc", "-f", "-i", dev,
             "-s", str(script), "-t", "10", "-T", "1", "-A", "1", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True)
        topo._bg.append(self.proc)            # killed at teardown if still running

    def events(self) -> list[dict[str, str]]:
        if not self.log.exists():
            return []
        out = []
        for line in self.log.read_text().splitlines():
            kind, _, rest = line.partition(" ")
            d = {"event": kind}
            d.update(re.findall(r"(\w+)=(.*?)(?= \w+=|$)", rest))
            out.append(d)
        return out

    def wait(self, kind: str, n: int = 1, timeout: float = 20.0) -> dict[str, str]:
        def got() -> bool:
            return len([e for e in self.events() if e["event"] == kind]) >= n

        try:
            wait_for(got, timeout, what=f"udhcpc event {kind} #{n}")
        except AssertionError:
            self.stop()
            out = self.proc.stdout.read() if self.proc.stdout else ""
            raise AssertionError(f"no {kind} #{n}; events {self.events()}; udhcpc said:\n{out}")
        return [e for e in self.events() if e["event"] == kind][n - 1]

    def signal(self, sig: int) -> None:
        # ip netns exec execs the program: the Popen pid is udhcpc itself.
        os.kill(self.proc.pid, sig)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _kernel_udhcpd(topo: Topology, dhcp: dict) -> None:
    """The kernel target's DHCP server: busybox udhcpd in the router namespace."""
    assert topo.router_ns is not None
    dev = topo.dev("a")
    conf = topo.tmp / "udhcpd.conf"
    conf.write_text("\n".join([
        f"start {dhcp['pool'][0]}", f"end {dhcp['pool'][1]}", f"interface {dev}",
        f"lease_file {topo.tmp / 'udhcpd.leases'}", f"pidfile {topo.tmp / 'udhcpd.pid'}",
        "opt subnet 255.255.255.0", "opt router 10.0.1.1",
        f"opt dns {' '.join(dhcp['dns'])}", f"opt domain {dhcp['domain']}",
        f"opt lease {dhcp['lease_time']}", ""]))
    (topo.tmp / "udhcpd.leases").touch()
    proc = subprocess.Popen(["ip", "netns", "exec", topo.router_ns, BUSYBOX, "udhcpd", "-f",
                             str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True)
    topo._bg.append(proc)


def _start(topology, target: str) -> Topology:
    topo = topology(ports=_ports(DHCP))
    if target == "kernel":
        _kernel_udhcpd(topo, DHCP)
    return topo


def test_udhcpc_gets_address_router_dns_and_reaches_the_other_side(topology,
                                                                    target: str) -> None:
    topo = _start(topology, target)
    dev = topo.dev("a")
    client = Udhcpc(topo, "h1", dev, "-x", "hostname:vm-one")
    ev = client.wait("bound")
    lo, hi = (int(x.split(".")[3]) for x in DHCP["pool"])
    assert ev["ip"].startswith("10.0.1.") and lo <= int(ev["ip"].split(".")[3]) <= hi
    assert ev["subnet"] == "255.255.255.0"
    assert ev["router"] == "10.0.1.1"
    assert ev["dns"].split() == DHCP["dns"]
    assert ev["domain"] == "lab.example"
    assert ev["lease"] == str(DHCP["lease_time"])
    assert ev["serverid"] == "10.0.1.1"
    # The configured host now routes through the router to h2.
    cp = topo.exec("h1", "ping", "-c", "2", "-W", "2", "10.0.2.2", timeout=15)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    # Renewing (SIGUSR1: unicast REQUEST from ciaddr) keeps the address.
    client.signal(signal.SIGUSR1)
    renew = client.wait("renew")
    assert renew["ip"] == ev["ip"]
    if target == "pyrouter":
        (srv,) = topo.cli_json("show", "dhcp")
        (lease,) = [le for le in srv["leases"] if le["state"] == "bound"]
        assert lease["addr"] == ev["ip"] and lease["hostname"] == "vm-one"
        assert lease["mac"] == topo.mac("h1")
        assert srv["stats"]["ack"] >= 2
        human = topo.cli("show", "leases").stdout
        assert f"{ev['ip']} lladdr {topo.mac('h1')} bound" in human
    client.stop()


def test_broadcast_flag_client(topology, target: str) -> None:
    topo = _start(topology, target)
    client = Udhcpc(topo, "h1", topo.dev("a"), "-B", "-q", "-n")
    ev = client.wait("bound")
    assert ev["router"] == "10.0.1.1"
    assert client.proc.wait(10) == 0


def test_lease_survives_a_restart(topology, target: str, tmp_path: Path) -> None:
    if target != "pyrouter":
        pytest.skip("the lease file is pyrouter's")
    lease_file = tmp_path / "state" / "dhcp4.leases"
    topo = topology(ports=_ports(DHCP), config={"dhcp": {"lease_file": str(lease_file)}})
    dev = topo.dev("a")
    # Ask for an address the server would not pick by itself, so that getting it
    # again after the restart can only come from the lease file.
    first = Udhcpc(topo, "h1", dev, "-q", "-n", "-r", "10.0.1.177")
    ev = first.wait("bound")
    assert ev["ip"] == "10.0.1.177"
    assert first.proc.wait(10) == 0
    wait_for(lambda: lease_file.exists() and "10.0.1.177" in lease_file.read_text(), 10,
             what="the lease file to be written")
    saved = json.loads(lease_file.read_text())
    assert saved["version"] == 1 and saved["leases"][0]["mac"] == topo.mac("h1")
    mac = topo.mac("h1")
    assert topo.restart() == 0
    # The TAP was re-created: the host side is a new device (give it the old MAC,
    # as a VM's NIC keeps its own).
    nsexec(topo.ns("h1"), "ip", "link", "set", dev, "address", mac, check=True)
    (srv,) = topo.cli_json("show", "dhcp")
    assert [(le["addr"], le["mac"]) for le in srv["leases"]] == [("10.0.1.177", mac)]
    loaded = [e for e in topo.log_events() if e.get("event") == "dhcp.leases_loaded"]
    assert loaded[-1]["leases"] == 1
    again = Udhcpc(topo, "h1", dev, "-q", "-n")
    ev2 = again.wait("bound", n=2)              # the events file is shared with `first`
    assert ev2["ip"] == "10.0.1.177"
    assert again.proc.wait(10) == 0
