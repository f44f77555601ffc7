"""The DNS forwarder with real programs: a host that got its configuration by DHCP
(busybox udhcpc) resolves a name through the router (busybox nslookup), the router
forwarding to a tiny DNS server in another namespace.  pyrouter target only (a
kernel router has no forwarder of its own).
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from .conftest import Port, wait_for
from .test_dhcp import Udhcpc

BUSYBOX = shutil.which("busybox")
pytestmark = pytest.mark.skipif(BUSYBOX is None, reason="needs busybox (busybox-static)")

# A DNS server that knows one name: an A record for NAME, an empty answer otherwise.
SERVER = r'''
import socket, struct, sys
NAME, ADDR = sys.argv[1].encode(), socket.inet_aton(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[3], 53))
print("listening", flush=True)
while True:
    q, peer = s.recvfrom(4096)
    if len(q) < 12:
        continue
    i, labels = 12, []
    while i < len(q) and q[i]:
        labels.append(q[i + 1:i + 1 + q[i]]); i += 1 + q[i]
    qtype = struct.unpack_from("!H", q, i + 1)[0] if i + 3 <= len(q) else 0
    question = q[12:i + 5]
    hit = b".".join(labels).lower() == NAME and qtype == 1
    flags = 0x8180 if b".".join(labels).lower() == NAME else 0x8183
    hdr = q[:2] + struct.pack("!HHHHH", flags, 1, 1 if hit else 0, 0, 0)
    rr = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + ADDR if hit else b""
    s.sendto(hdr + question + rr, peer)
'''


def test_dhcp_client_resolves_through_the_router(topology, target: str) -> None:
    if target != "pyrouter":
        pytest.skip("the DNS forwarder is pyrouter's")
    topo = topology(
        ports=[Port("a", "h1", ["10.0.1.1/24"], [],
                    iface={"dhcp": {"pool": ["10.0.1.100", "10.0.1.110"]}}),
               Port("b", "h2", ["10.0.2.1/24"], ["10.0.2.2/24"],
                    [{"to": "default", "via": "10.0.2.1"}])],
        config={"dns": {"upstream": ["10.0.2.2"], "timeout": 2}})
    script = topo.tmp / "dns_server.py"
    script.write_text(SERVER)
    server = subprocess.Popen(["ip", "netns", "exec", topo.ns("h2"), sys.executable, str(script),
                               "www.example.test", "192.0.2.7", "10.0.2.2"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    topo._bg.append(server)
    assert server.stdout is not None and server.stdout.readline().strip() == "listening"
    client = Udhcpc(topo, "h1", topo.dev("a"), "-q", "-n")
    ev = client.wait("bound")
    assert ev["dns"] == "10.0.1.1"            # the router's own forwarder, by default
    cp = topo.exec("h1", BUSYBOX, "nslookup", "www.example.test", ev["dns"], timeout=20)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "192.0.2.7" in cp.stdout
    cp = topo.exec("h1", BUSYBOX, "nslookup", "nowhere.example.test", ev["dns"], timeout=20)
    assert "192.0.2.7" not in cp.stdout and ("NXDOMAIN" in cp.stdout + cp.stderr
                                              or cp.returncode != 0)
    shown = topo.cli_json("show", "dns")
    assert shown["stats"]["answers"] >= 2 and shown["pending"] == 0
    assert shown["upstreams"] == ["10.0.2.2:53"]
    # The upstream goes away: queries time out, the client is told nothing.
    server.kill()
    server.wait(5)
    cp = topo.exec("h1", BUSYBOX, "nslookup", "www.example.test", ev["dns"], timeout=30)
    assert "192.0.2.7" not in cp.stdout
    wait_for(lambda: topo.cli_json("show", "dns")["stats"]["timeouts"] >= 1, 10,
             what="a query to time out")
