"""NAT and MSS clamping end to end (issue 7, NAT slice), from the SAME nftables file in
pyrouter or, with PYROUTER_TARGET=kernel, in a kernel router (``nft -f``): masquerade
(the WAN server sees the router's address, a socat TCP exchange works, ``conntrack -L``
shows the translated reply tuple on both targets), a DNAT port forward to a LAN server,
traceroute through masquerade (the hops' ICMP errors translated back), and an MSS clamp
seen by the server (its accepted socket's TCP_MAXSEG)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .test_conntrack import conntrack_lines, normalise, show

pytestmark = [pytest.mark.netns, pytest.mark.timeout(90)]

H1, H2, R_LAN, R_WAN = "10.0.1.2", "10.0.2.2", "10.0.1.1", "10.0.2.1"


def nat_ruleset(pre: str = "", post: str = "", fwd: str = "") -> str:
    return f"""\
flush ruleset
table ip nat {{
	chain prerouting {{
		type nat hook prerouting priority dstnat; policy accept;
		{pre}
	}}
	chain postrouting {{
		type nat hook postrouting priority srcnat; policy accept;
		{post}
	}}
}}
table inet filter {{
	chain forward {{
		type filter hook forward priority filter; policy accept;
		{fwd}
	}}
}}
"""


MASQ = nat_ruleset(post="ip saddr 10.0.1.0/24 ip daddr 10.0.2.0/24 masquerade")


def _start(topology, tmp_path: Path, text: str):
    path = tmp_path / "nat.nft"
    path.write_text(text)
    return topology(config={"nftables": {"file": str(path)}})


def _peer_seen(topo, client: str, server: str, connect_to: str) -> str:
    """socat on *server* answers with the peer address it saw."""
    srv = subprocess.Popen(["ip", "netns", "exec", topo.ns(server), "socat", "-T3",
                            "TCP-LISTEN:8080,reuseaddr", "SYSTEM:echo peer=$SOCAT_PEERADDR"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        cp = topo.exec(client, "socat", "-T3", "-",
                       f"TCP:{connect_to}:8080,connect-timeout=2", input="", timeout=10)
        return cp.stdout.strip()
    finally:
        srv.kill()
        srv.wait()


@pytest.mark.skipif(shutil.which("socat") is None, reason="socat missing")
def test_masquerade_tcp_and_conntrack_listing(topology, tmp_path: Path) -> None:
    topo = _start(topology, tmp_path, MASQ)
    assert _peer_seen(topo, "h1", "h2", H2) == f"peer={R_WAN}"
    ping = topo.exec("h1", "ping", "-n", "-c", "2", "-i", "0.2", "-W", "1", H2, timeout=10)
    assert ping.returncode == 0, show(ping)
    if shutil.which("conntrack") is None:
        return
    got = sorted(normalise(ln) for ln in conntrack_lines(topo, "-L"))
    want = sorted([
        f"tcp      6 T TIME_WAIT src={H1} dst={H2} sport=P dport=8080 src={H2} dst={R_WAN} "
        "sport=8080 dport=P [ASSURED] mark=0 use=1",
        f"icmp     1 T src={H1} dst={H2} type=8 code=0 id=I src={H2} dst={R_WAN} type=0 "
        "code=0 id=I mark=0 use=1"])
    assert got == want, "\n".join(got)


@pytest.mark.skipif(shutil.which("socat") is None, reason="socat missing")
def test_dnat_port_forward_to_a_lan_server(topology, tmp_path: Path) -> None:
    topo = _start(topology, tmp_path, nat_ruleset(
        pre=f"ip daddr {R_WAN} tcp dport 8080 dnat to {H1}:8080"))
    # h2 connects to the router's WAN address; the LAN server sees h2 itself.
    assert _peer_seen(topo, "h2", "h1", R_WAN) == f"peer={H2}"
    if shutil.which("conntrack") is None:
        return
    got = [normalise(ln) for ln in conntrack_lines(topo, "-L", "-p", "tcp")]
    assert got == [f"tcp      6 T TIME_WAIT src={H2} dst={R_WAN} sport=P dport=8080 src={H1} "
                   f"dst={H2} sport=8080 dport=P [ASSURED] mark=0 use=1"], got


def test_traceroute_through_masquerade(topology, tmp_path: Path) -> None:
    if shutil.which("traceroute") is None:
        pytest.skip("traceroute missing")
    topo = _start(topology, tmp_path, MASQ)
    cp = topo.exec("h1", "traceroute", "-n", "-q", "1", "-w", "1", "-m", "3", H2, timeout=30)
    assert cp.returncode == 0, show(cp)
    hops: dict[int, set[str]] = {}
    for line in cp.stdout.splitlines()[1:]:
        m = re.match(r"^\s*(\d+)\s+(.*)$", line)
        if m:
            hops[int(m.group(1))] = set(re.findall(r"\b(\d+\.\d+\.\d+\.\d+)\b", m.group(2)))
    # hop 2 is h2's port unreachable about the masqueraded probe, translated back to h1
    assert hops == {1: {R_LAN}, 2: {H2}}, cp.stdout


MSS_SERVER = """
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8081))
s.listen(1)
s.settimeout(8)
c, _ = s.accept()
print(c.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG), flush=True)
c.close()
"""


@pytest.mark.parametrize("clamp", [False, True])
def test_mss_clamp_visible_at_the_server(topology, tmp_path: Path, clamp: bool) -> None:
    fwd = "tcp flags syn tcp option maxseg size set 1000" if clamp else ""
    topo = _start(topology, tmp_path, nat_ruleset(fwd=fwd))
    srv = subprocess.Popen(["ip", "netns", "exec", topo.ns("h2"), sys.executable, "-c",
                            MSS_SERVER], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    try:
        time.sleep(0.4)
        cp = topo.exec("h1", sys.executable, "-c",
                       "import socket,sys;s=socket.create_connection((sys.argv[1],8081),3);"
                       "s.close()", H2, timeout=10)
        assert cp.returncode == 0, show(cp)
        out, err = srv.communicate(timeout=10)
    finally:
        srv.kill()
        srv.wait()
    mss = int(out.strip())
    if clamp:
        assert 900 < mss <= 1000, (out, err)      # 1000, less the timestamp option
    else:
        assert mss > 1400, (out, err)


MASQ6 = """\
flush ruleset
table ip6 nat {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip6 saddr fd00:1::/64 ip6 daddr fd00:2::/64 masquerade
	}
}
"""


@pytest.mark.skipif(shutil.which("socat") is None, reason="socat missing")
def test_ipv6_masquerade_tcp(topology, tmp_path: Path) -> None:
    from .test_ipv6 import H2_6, R_B6, v6_ports
    path = tmp_path / "nat6.nft"
    path.write_text(MASQ6)
    topo = topology(ports=v6_ports(), config={"nftables": {"file": str(path)}})
    srv = subprocess.Popen(["ip", "netns", "exec", topo.ns("h2"), "socat", "-T3",
                            "TCP6-LISTEN:8080,reuseaddr", "SYSTEM:echo peer=$SOCAT_PEERADDR"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        cp = topo.exec("h1", "socat", "-T3", "-", f"TCP6:[{H2_6}]:8080,connect-timeout=2",
                       input="", timeout=10)
    finally:
        srv.kill()
        srv.wait()
    import ipaddress  # noqa: PLC0415
    m = re.search(r"peer=\[?([0-9a-f:]+)\]?", cp.stdout)
    assert m and ipaddress.ip_address(m.group(1)) == ipaddress.ip_address(R_B6), show(cp)


def _lan_server_host(topo, server_ip: str = "10.0.1.3",
                     v6: tuple[str, str, str] | None = None) -> str:
    """h1 and h1b share the router's LAN link (a bridge in h1, as test_foundation's
    redirect test); *v6* = (h1's, h1b's, the router's) IPv6 addresses to add too (no
    DAD); returns h1b's name."""
    from .conftest import nsexec, wait_for
    h1, dev = topo.ns("h1"), topo.port_of("h1").name
    h1b = topo.add_host_netns("h1b")
    tag = topo.token[:6]
    br, va, vb = f"b{tag}", f"r{tag}a", f"r{tag}b"
    for ns, cmd in [
        (h1, ["ip", "link", "add", br, "type", "bridge"]),
        (h1, ["ip", "addr", "flush", "dev", dev]),
        (h1, ["ip", "link", "set", dev, "master", br]),
        (h1, ["ip", "link", "add", va, "type", "veth", "peer", "name", vb, "netns", h1b]),
        (h1, ["ip", "link", "set", va, "master", br, "up"]),
        (h1, ["ip", "link", "set", br, "up"]),
        (h1, ["ip", "addr", "add", f"{H1}/24", "dev", br]),
        (h1, ["ip", "route", "replace", "default", "via", R_LAN]),
        (h1b, ["ip", "link", "set", vb, "up"]),
        (h1b, ["ip", "addr", "add", f"{server_ip}/24", "dev", vb]),
        (h1b, ["ip", "route", "add", "default", "via", R_LAN]),
    ]:
        nsexec(ns, *cmd, check=True)
    if v6 is not None:
        for ns, cmd in [
            (h1, ["ip", "addr", "add", f"{v6[0]}/64", "dev", br, "nodad"]),
            (h1, ["ip", "-6", "route", "replace", "default", "via", v6[2]]),
            (h1b, ["ip", "addr", "add", f"{v6[1]}/64", "dev", vb, "nodad"]),
            (h1b, ["ip", "-6", "route", "add", "default", "via", v6[2]]),
        ]:
            nsexec(ns, *cmd, check=True)
    wait_for(lambda: topo.exec("h1", "ping", "-c", "1", "-W", "1", server_ip).returncode == 0,
             10, what="h1 to reach h1b over the bridge")
    if v6 is not None:
        wait_for(lambda: topo.exec("h1", "ping", "-c", "1", "-W", "1", v6[1]).returncode == 0,
                 10, what="h1 to reach h1b over the bridge (IPv6)")
    return "h1b"


@pytest.mark.skipif(shutil.which("socat") is None, reason="socat missing")
def test_hairpin_nat_lan_host_reaches_lan_server_through_the_wan_address(
        topology, tmp_path: Path) -> None:
    """The classic hairpin: h1 connects to the router's WAN address, DNAT sends it to
    h1b in h1's own subnet, masquerade makes the answers come back through the router.
    The packets leave by the port they came in on; the redirect ip_forward would send
    is dropped by NAT (nf_nat_icmp_reply_translation), so h1 never learns a redirected
    route to the WAN address (which would break the connection). Either target."""
    server = "10.0.1.3"
    topo = _start(topology, tmp_path, nat_ruleset(
        pre=f"ip daddr {R_WAN} tcp dport 8080 dnat to {server}:8080",
        post=f"ip saddr 10.0.1.0/24 ip daddr {server} masquerade"))
    _lan_server_host(topo, server)
    with topo.capture("h1", "icmp") as cap:
        seen = [_peer_seen(topo, "h1", "h1b", R_WAN) for _ in range(2)]
    assert seen == [f"peer={R_LAN}"] * 2, seen
    got = [p.summary() for p in cap.stop()]
    assert got == [], "the router sent h1 ICMP (a redirect from the WAN address)"
    rg = topo.exec("h1", "ip", "route", "get", R_WAN).stdout
    assert "redirected" not in rg, rg
    if shutil.which("conntrack") is None:
        return
    got = sorted(normalise(ln) for ln in conntrack_lines(topo, "-L", "-p", "tcp"))
    want = [f"tcp      6 T TIME_WAIT src={H1} dst={R_WAN} sport=P dport=8080 src={server} "
            f"dst={R_LAN} sport=8080 dport=P [ASSURED] mark=0 use=1"] * 2
    assert got == want, "\n".join(got)


def test_far_end_link_down_keeps_masqueraded_entries(topology, tmp_path: Path) -> None:
    """h2 sets its link down (for the kernel router a carrier loss on its veth, not
    NETDEV_DOWN): masq_device_event does not fire, the masqueraded entry survives.
    Either target."""
    topo = _start(topology, tmp_path, MASQ)
    ping = topo.exec("h1", "ping", "-n", "-c", "1", "-W", "2", H2, timeout=10)
    assert ping.returncode == 0, show(ping)
    if shutil.which("conntrack") is None:
        pytest.skip("conntrack missing")
    before = [normalise(ln) for ln in conntrack_lines(topo, "-L", "-p", "icmp")]
    assert len(before) == 1 and f"dst={R_WAN}" in before[0], before
    dev = topo.port_of("h2").name
    topo.exec("h2", "ip", "link", "set", dev, "down", check=True)
    time.sleep(2.0)                      # pyrouter notices within its 1 s link poll
    assert [normalise(ln) for ln in conntrack_lines(topo, "-L", "-p", "icmp")] == before


MASQ_OUT = """\
flush ruleset
table ip nat {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "%s" masquerade
	}
}
"""


def test_router_device_down_forgets_its_masqueraded_entries(tmp_path: Path) -> None:
    """The router's own WAN device set down (an AF_PACKET port's veth in R; the kernel
    router's veth): NETDEV_DOWN, masq_device_event kills the entries masqueraded through
    it. Either target."""
    if shutil.which("conntrack") is None:
        pytest.skip("conntrack missing")
    from .conftest import TARGET, ip, nsexec
    from .lab import Lab, kernel_port, tap_to
    lab = Lab(tmp_path)
    try:
        h1, h2 = lab.netns("h1"), lab.netns("h2")
        a, b = lab.name("a"), lab.name("b")
        lab.veth(b, lab.r, h2)                  # the WAN: a veth in R
        lab.host(h2, b, "10.0.2.2/24", "10.0.2.1")
        rules = tmp_path / "nat.nft"
        rules.write_text(MASQ_OUT % b)
        if TARGET == "kernel":
            ip("-n", lab.r, "addr", "add", "10.0.2.1/24", "dev", b)
            kernel_port(lab, h1, a, "10.0.1.1/24", "10.0.1.2/24")
            nsexec(lab.r, "sysctl", "-qw", "net.ipv4.ip_forward=1", check=True)
            nsexec(lab.r, "nft", "-f", str(rules), check=True)
        else:
            nsexec(lab.r, "sysctl", "-qw", "net.ipv4.ip_forward=0", check=True)
            lab.start({"interfaces": {
                b: {"kind": "packet", "device": b, "addresses": ["10.0.2.1/24"]},
                a: tap_to(h1, "10.0.1.1/24", "10.0.1.2/24")},
                "nftables": {"file": str(rules)}})

        def entries() -> list[str]:
            if TARGET == "kernel":
                cp = nsexec(lab.r, "conntrack", "-L", "-p", "icmp")
            else:
                cp = subprocess.run([sys.executable, "-m", "pyrouter", "--socket",
                                     str(lab.socket), "conntrack", "-L", "-p", "icmp"],
                                    capture_output=True, text=True, timeout=30)
            assert cp.returncode == 0, show(cp)
            return [ln for ln in cp.stdout.splitlines() if ln.strip()]

        cp = nsexec(h1, "ping", "-n", "-c", "1", "-W", "2", "10.0.2.2", timeout=10)
        assert cp.returncode == 0, show(cp)
        got = entries()
        assert len(got) == 1 and "dst=10.0.2.1" in got[0], got
        ip("-n", lab.r, "link", "set", b, "down")
        time.sleep(2.0)                         # pyrouter's 1 s link poll
        assert entries() == []
    finally:
        lab.teardown()


UDP_FROM = ("import socket,sys;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);"
            "s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
            "s.bind(('',int(sys.argv[1])));"
            "[s.sendto(b'x',(sys.argv[2],int(p))) for p in sys.argv[3:]]")


def test_a_source_port_keeps_its_masquerade_mapping(topology, tmp_path: Path) -> None:
    """find_appropriate_src: h1 and h1b both send from UDP port 40000 to h2; h1b's flow
    gets another port X (h1 holds 40000), and h1b's next flow from 40000 to another port
    of h2 reuses X although 40000 would be free there. Either target."""
    if shutil.which("conntrack") is None:
        pytest.skip("conntrack missing")
    topo = _start(topology, tmp_path, MASQ)
    _lan_server_host(topo, "10.0.1.3")
    for host, dports in (("h1", ["5000"]), ("h1b", ["5000"]), ("h1b", ["5001"])):
        cp = topo.exec(host, sys.executable, "-c", UDP_FROM, "40000", H2, *dports,
                       timeout=10)
        assert cp.returncode == 0, show(cp)
        time.sleep(0.2)
    rows = {}
    for ln in conntrack_lines(topo, "-L", "-p", "udp"):
        m = re.search(r"src=(\S+) dst=\S+ sport=(\d+) dport=(\d+) .*src=\S+ dst=(\S+) "
                      r"sport=\d+ dport=(\d+)", ln)
        assert m, ln
        rows[(m.group(1), int(m.group(3)))] = (m.group(4), int(m.group(5)))
    x = rows[("10.0.1.3", 5000)]
    assert rows[(H1, 5000)] == (R_WAN, 40000), rows
    assert x[0] == R_WAN and x[1] != 40000, rows
    assert rows[("10.0.1.3", 5001)] == x, rows


DNAT6_PORT = """\
flush ruleset
table ip6 nat {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		ip6 daddr fd00:2::1 tcp dport 8080 dnat to [fd00:1::2]:8081
	}
}
"""


@pytest.mark.skipif(shutil.which("socat") is None, reason="socat missing")
def test_ipv6_dnat_to_address_and_port(topology, tmp_path: Path) -> None:
    """``dnat to [ADDR]:PORT``: h2 connects to the router's [fd00:2::1]:8080 and reaches
    h1's [fd00:1::2]:8081, seeing itself as the peer; the kernel target loads the same
    file (``nft -f``), so nft accepts the syntax too. Either target."""
    from .test_ipv6 import H1_6, H2_6, R_B6, v6_ports
    path = tmp_path / "nat6.nft"
    path.write_text(DNAT6_PORT)
    topo = topology(ports=v6_ports(), config={"nftables": {"file": str(path)}})
    srv = subprocess.Popen(["ip", "netns", "exec", topo.ns("h1"), "socat", "-T3",
                            "TCP6-LISTEN:8081,reuseaddr", "SYSTEM:echo peer=$SOCAT_PEERADDR"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        cp = topo.exec("h2", "socat", "-T3", "-", f"TCP6:[{R_B6}]:8080,connect-timeout=2",
                       input="", timeout=10)
    finally:
        srv.kill()
        srv.wait()
    import ipaddress  # noqa: PLC0415
    m = re.search(r"peer=\[?([0-9a-f:]+)\]?", cp.stdout)
    assert m and ipaddress.ip_address(m.group(1)) == ipaddress.ip_address(H2_6), show(cp)
    if shutil.which("conntrack") is None:
        return
    rows = conntrack_lines(topo, "-L", "-f", "ipv6", "-p", "tcp")
    assert len(rows) == 1 and " sport=8081 " in rows[0], rows   # (normalise hides it)
    got = [normalise(ln) for ln in rows]
    assert got == [f"tcp      6 T TIME_WAIT src={H2_6} dst={R_B6} sport=P dport=8080 "
                   f"src={H1_6} dst={H2_6} sport=P dport=P [ASSURED] mark=0 use=1"], got


OUTPUT_DNAT = f"""\
flush ruleset
table ip nat {{
	chain output {{
		type nat hook output priority -100; policy accept;
		ip daddr 10.0.2.99 dnat to {H1}
	}}
}}
"""


def test_output_dnat_reroutes_the_routers_own_ping(topology, tmp_path: Path) -> None:
    """The router pings 10.0.2.99 (a WAN-side address, so the source is 10.0.2.1); the
    output nat chain sends it to h1 instead, so it is routed again (ip_route_me_harder)
    and leaves by the LAN port with its source kept; h1's reply comes back un-NATed
    (the ping sees 10.0.2.99 answer). Either target (the kernel's own ping there)."""
    from scapy.layers.inet import ICMP, IP  # noqa: PLC0415
    topo = _start(topology, tmp_path, OUTPUT_DNAT)
    with topo.capture("h1", "icmp") as cap:
        if topo.target == "kernel":
            from .conftest import nsexec  # noqa: PLC0415
            cp = nsexec(topo.router_ns, "ping", "-n", "-c", "1", "-W", "2", "10.0.2.99",
                        timeout=10)
        else:
            cp = topo.cli("ping", "-c", "1", "-W", "2", "10.0.2.99", check=False)
    assert cp.returncode == 0 and "from 10.0.2.99" in cp.stdout, show(cp)
    reqs = [(p[IP].src, p[IP].dst) for p in cap.stop() if ICMP in p and p[ICMP].type == 8]
    assert reqs == [(R_WAN, H1)], reqs


HAIRPIN6 = """\
flush ruleset
table ip6 nat {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		ip6 daddr fd00:2::1 tcp dport 8080 dnat to [fd00:1::3]:8080
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip6 saddr fd00:1::/64 ip6 daddr fd00:1::3 masquerade
	}
}
"""


@pytest.mark.skipif(shutil.which("socat") is None, reason="socat missing")
def test_ipv6_hairpin_nat(topology, tmp_path: Path) -> None:
    """IPv6 hairpin: h1 connects to [fd00:2::1]:8080, DNAT sends it to h1b
    ([fd00:1::3]) on h1's own link, masquerade brings the answers back through the
    router (the server sees the router's LAN address). Unlike IPv4, the IPv6 redirects
    go out on both targets (ndisc_send_redirect's packet carries no conntrack entry), but
    they are about the server's own address, never the WAN address h1 asked for: h1's
    route to it stays via the router. Either target."""
    from .test_ipv6 import H1_6, R_A6, v6_ports
    path = tmp_path / "hairpin6.nft"
    path.write_text(HAIRPIN6)
    topo = topology(ports=v6_ports(), config={"nftables": {"file": str(path)}})
    _lan_server_host(topo, "10.0.1.3", v6=(H1_6, "fd00:1::3", R_A6))
    import ipaddress  # noqa: PLC0415

    from scapy.layers.inet6 import ICMPv6ND_Redirect  # noqa: PLC0415
    cap = topo.capture("h1", "icmp6 and ip6[40] == 137")
    for _ in range(2):
        srv = subprocess.Popen(["ip", "netns", "exec", topo.ns("h1b"), "socat", "-T3",
                                "TCP6-LISTEN:8080,reuseaddr",
                                "SYSTEM:echo peer=$SOCAT_PEERADDR"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.3)
            cp = topo.exec("h1", "socat", "-T3", "-", "TCP6:[fd00:2::1]:8080,connect-timeout=2",
                           input="", timeout=10)
        finally:
            srv.kill()
            srv.wait()
        m = re.search(r"peer=\[?([0-9a-f:]+)\]?", cp.stdout)
        assert m and ipaddress.ip_address(m.group(1)) == ipaddress.ip_address(R_A6), show(cp)
    about = {p[ICMPv6ND_Redirect].dst for p in cap.stop() if ICMPv6ND_Redirect in p}
    assert about and "fd00:2::1" not in about and about <= {"fd00:1::3", H1_6}, about
    rg = topo.exec("h1", "ip", "-6", "route", "get", "fd00:2::1").stdout
    assert f"via {R_A6}" in rg, rg
