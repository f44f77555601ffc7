"""Netfilter end to end (issue 7, filter slice): the SAME nftables ruleset file is
loaded into pyrouter (``nftables: {file: ...}``) or, with PYROUTER_TARGET=kernel, into a
kernel router namespace with ``nft -f``; real hosts see the same verdicts and the
listing shows the same counters on both targets."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP

from .conftest import Topology

pytestmark = [pytest.mark.netns, pytest.mark.timeout(90)]

H1, H2 = "10.0.1.2", "10.0.2.2"
R_A = "10.0.1.1"

FIREWALL = """\
flush ruleset
table inet filter {
	chain forward {
		type filter hook forward priority filter; policy accept;
		tcp dport 23 counter drop
		tcp dport 25 counter reject with tcp reset
		meta l4proto udp counter reject with icmp type port-unreachable
		counter accept
	}
}
"""

FORWARD_DROP = """\
flush ruleset
table ip filter {
	chain forward {
		type filter hook forward priority 0; policy drop;
		counter
	}
}
"""

COUNTER_RE = re.compile(r"counter packets (\d+) bytes (\d+)")

SR1_CODE = r"""
import sys
from scapy.all import IP, conf, sr1
conf.verb = 0
for h in sys.argv[2:]:
    ans = sr1(IP(bytes.fromhex(h)), timeout=float(sys.argv[1]), verbose=0)
    print(bytes(ans).hex() if ans is not None else "-", flush=True)
"""


def show(cp: subprocess.CompletedProcess) -> str:
    return f"$ {' '.join(map(str, cp.args))}\nrc={cp.returncode}\n{cp.stdout}{cp.stderr}"


def sr1(topo: Topology, host: str, *pkts: IP, timeout: float = 1.5) -> list[IP | None]:
    cp = topo.exec(host, sys.executable, "-c", SR1_CODE, str(timeout),
                   *(bytes(p).hex() for p in pkts), timeout=10 + timeout * len(pkts))
    assert cp.returncode == 0, show(cp)
    lines = cp.stdout.split()
    assert len(lines) == len(pkts), show(cp)
    return [None if ln == "-" else IP(bytes.fromhex(ln)) for ln in lines]


def counters(text: str) -> list[tuple[int, int]]:
    return [(int(p), int(b)) for p, b in COUNTER_RE.findall(text)]


def ruleset_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "rules.nft"
    path.write_text(text)
    return str(path)


def test_stateless_firewall_same_verdicts_and_counters(topology, tmp_path: Path) -> None:
    topo = topology(config={"nftables": {"file": ruleset_file(tmp_path, FIREWALL)}})
    syn = dict(flags="S", sport=40001, seq=1000)
    telnet, smtp, udp9, http = sr1(
        topo, "h1",
        IP(src=H1, dst=H2) / TCP(dport=23, **syn),
        IP(src=H1, dst=H2) / TCP(dport=25, **syn),
        IP(src=H1, dst=H2) / UDP(sport=40002, dport=9) / (b"x" * 12),
        IP(src=H1, dst=H2) / TCP(dport=80, **syn))
    assert telnet is None                                   # dropped silently
    # reject with tcp reset: sent by the router (TTL 64, not decremented) as if from h2
    assert smtp is not None and smtp[IP].src == H2 and smtp[IP].ttl == 64, smtp
    assert smtp[TCP].flags == "RA" and smtp[TCP].ack == 1001 and smtp[TCP].sport == 25
    # reject with icmp port-unreachable: from the router's address toward h1
    assert udp9 is not None and udp9[IP].src == R_A and udp9.haslayer(ICMP), udp9
    assert (udp9[ICMP].type, udp9[ICMP].code) == (3, 3)
    # accepted: h2's own kernel answers the SYN to a closed port, forwarded (TTL 63)
    assert http is not None and http[IP].src == H2 and http[IP].ttl == 63, http
    assert http[TCP].flags == "RA"
    listing = topo.nft_list_ruleset()
    # telnet SYN, smtp SYN, the UDP datagram, then SYN:80 and h2's RST back: 40-byte TCP
    # segments without options, a 40-byte UDP datagram.
    assert counters(listing) == [(1, 40), (1, 40), (1, 40), (2, 80)], listing
    assert "tcp dport 23 counter packets 1 bytes 40 drop" in listing, listing


def test_forward_drop_still_lets_traceroute_see_the_router(topology, tmp_path: Path) -> None:
    if shutil.which("traceroute") is None:
        pytest.skip("traceroute missing")
    topo = topology(config={"nftables": {"file": ruleset_file(tmp_path, FORWARD_DROP)}})
    cp = topo.exec("h1", "traceroute", "-n", "-q", "1", "-w", "1", "-m", "3", H2, timeout=30)
    assert cp.returncode == 0, show(cp)
    hops: dict[int, set[str]] = {}
    for line in cp.stdout.splitlines()[1:]:
        m = re.match(r"^\s*(\d+)\s+(.*)$", line)
        if m:
            hops[int(m.group(1))] = set(re.findall(r"\b(\d+\.\d+\.\d+\.\d+)\b", m.group(2)))
    assert hops.get(1) == {R_A}, show(cp)           # Time Exceeded goes out through OUTPUT
    assert hops.get(2) == set() and hops.get(3) == set(), show(cp)   # dropped in FORWARD
    ping = topo.exec("h1", "ping", "-n", "-c", "1", "-W", "1", H2, timeout=10)
    assert ping.returncode != 0, show(ping)
    # The TTL-1 probe never reached FORWARD; the probes of hops 2 and 3 (60-byte UDP,
    # traceroute's default) and the ping (84 bytes) did.
    listing = topo.nft_list_ruleset()
    assert counters(listing) == [(3, 2 * 60 + 84)], listing


FIREWALL6 = """\
flush ruleset
table inet filter {
	chain forward {
		type filter hook forward priority filter; policy accept;
		meta l4proto ipv6-icmp accept
		ip6 daddr fd00:2::2 udp dport 9 counter reject
		ip6 daddr fd00:2::2 tcp dport 25 counter reject with tcp reset
		ip6 saddr fd00:1::/64 tcp dport 23 counter drop
	}
}
"""

SR1_6_CODE = r"""
import sys
from scapy.all import IPv6, conf, sr1
conf.verb = 0
for h in sys.argv[2:]:
    ans = sr1(IPv6(bytes.fromhex(h)), timeout=float(sys.argv[1]), verbose=0)
    print(bytes(ans).hex() if ans is not None else "-", flush=True)
"""


def test_ipv6_reject_and_drop_in_an_inet_table(topology, tmp_path: Path) -> None:
    from scapy.layers.inet6 import ICMPv6DestUnreach, IPv6  # noqa: PLC0415

    h1, h2, r_a = "fd00:1::2", "fd00:2::2", "fd00:1::1"
    ports = [
        {"key": "a", "host": "h1", "addresses": ["10.0.1.1/24", f"{r_a}/64"],
         "peer_addresses": ["10.0.1.2/24", f"{h1}/64"],
         "peer_routes": [{"to": "default", "via": "10.0.1.1"}, {"to": "default", "via": r_a}]},
        {"key": "b", "host": "h2", "addresses": ["10.0.2.1/24", "fd00:2::1/64"],
         "peer_addresses": ["10.0.2.2/24", f"{h2}/64"],
         "peer_routes": [{"to": "default", "via": "10.0.2.1"},
                         {"to": "default", "via": "fd00:2::1"}]},
    ]
    topo = topology(ports=ports,
                    config={"nftables": {"file": ruleset_file(tmp_path, FIREWALL6)}})
    pkts = [IPv6(src=h1, dst=h2) / UDP(sport=40003, dport=9) / (b"y" * 8),
            IPv6(src=h1, dst=h2) / TCP(sport=40004, dport=25, flags="S", seq=7),
            IPv6(src=h1, dst=h2) / TCP(sport=40005, dport=23, flags="S")]
    cp = topo.exec("h1", sys.executable, "-c", SR1_6_CODE, "2",
                   *(bytes(p).hex() for p in pkts), timeout=30)
    assert cp.returncode == 0, show(cp)
    udp9, smtp, telnet = [None if ln == "-" else IPv6(bytes.fromhex(ln))
                          for ln in cp.stdout.split()]
    assert udp9 is not None and udp9[IPv6].src == r_a and udp9.haslayer(ICMPv6DestUnreach)
    assert udp9[ICMPv6DestUnreach].code == 4                  # port unreachable (icmpx)
    assert smtp is not None and smtp[IPv6].src == h2 and smtp[TCP].flags == "RA"
    assert smtp[TCP].ack == 8 and smtp[IPv6].hlim == 64
    assert telnet is None
    listing = topo.nft_list_ruleset()
    # a 56-byte UDP datagram (40 + 8 + 8), 60-byte SYNs (40 + 20)
    assert counters(listing) == [(1, 56), (1, 60), (1, 60)], listing


LISTING_SETS = """\
flush ruleset
table ip t {
	set ports {
		type inet_service
		elements = { 22, 80, 443 }
	}

	chain pre {
		type filter hook prerouting priority raw; policy accept;
		iifname "lan0" meta mark set 0x00000007
	}

	chain filt {
		type filter hook forward priority filter - 5; policy drop;
		tcp dport @ports counter accept
		ip saddr != 10.0.0.0/8 udp dport { 53, 123 } accept
		icmp type { echo-reply, echo-request } limit rate 5/second burst 5 packets accept
		tcp dport 1000-2000 jump sub
		ip daddr 192.0.2.1 goto sub
	}

	chain sub {
		counter return
	}
}
"""


# Anonymous sets as nft lists them: elements sorted by value, one element bare.
UNSORTED_SETS = """\
table inet t {
	chain c {
		type filter hook forward priority filter; policy accept;
		tcp dport { 443, 22, 80 } counter accept
		udp dport { 53 } accept
		icmp type { echo-request, echo-reply } accept
		icmpv6 type { echo-reply, nd-neighbor-solicit, echo-request } accept
		ip saddr { 192.168.0.0/16, 10.0.0.0/8, 172.16.1.1 } drop
		meta l4proto { udp, tcp } accept
		tcp dport { 8000-8080, 1000 } drop
		ip6 daddr { fd00::2, fd00::1 } drop
	}
}
"""


@pytest.mark.parametrize("text", [FIREWALL, FIREWALL6, FORWARD_DROP, LISTING_SETS,
                                  UNSORTED_SETS],
                         ids=["firewall", "firewall6", "forward_drop", "sets", "unsorted"])
def test_listing_is_what_nft_prints_for_the_same_file(text: str, tmp_path: Path) -> None:
    """The kernel's `nft list ruleset` of a fresh file and pyrouter's listing of the same
    file are the same text (both with zero counters)."""
    if shutil.which("nft") is None:
        pytest.skip("nft missing")
    from pyrouter.core.netfilter.nft_compile import compile_ruleset  # noqa: PLC0415

    ns = f"pr-nft-{tmp_path.name[-8:]}-{id(text) % 10000}"
    path = ruleset_file(tmp_path, text)
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        cp = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", path],
                            capture_output=True, text=True)
        assert cp.returncode == 0, cp.stderr
        kernel = subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "ruleset"],
                                capture_output=True, text=True, check=True).stdout
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    ours = compile_ruleset(text, path).list()
    assert ours == kernel


RANDOM_RULES = """\
flush ruleset
table inet filter {
	chain forward {
		type filter hook forward priority filter; policy accept;
		tcp dport { 1000-1999, 2500 } tcp flags syn / syn,ack counter drop
		udp dport 3000-3999 counter drop
		ip saddr 10.0.1.2 tcp sport < 1024 counter drop
		tcp flags & (fin|rst) != 0 counter drop
		meta length > 200 counter drop
		counter
	}
}
"""

SEND_CODE = r"""
import sys
from scapy.all import IP, conf, send
conf.verb = 0
send([IP(bytes.fromhex(h)) for h in sys.argv[1:]], verbose=0)
"""

H2_SILENT = """\
table ip silent {
	chain input { type filter hook input priority 0; policy drop; }
	chain output { type filter hook output priority 0; policy drop; }
}
"""


def _oracle(pkts: list) -> list[tuple[int, int]]:
    """The ruleset above, evaluated by hand: (packets, bytes) per counter."""
    out = [[0, 0] for _ in range(6)]
    for p in pkts:
        n = len(p)
        tcp = p.haslayer(TCP)
        f = int(p[TCP].flags) if tcp else 0
        if tcp and (1000 <= p[TCP].dport <= 1999 or p[TCP].dport == 2500) \
                and f & 0x12 == 0x02:
            i = 0
        elif p.haslayer(UDP) and 3000 <= p[UDP].dport <= 3999:
            i = 1
        elif tcp and p[IP].src == H1 and p[TCP].sport < 1024:
            i = 2
        elif tcp and f & 0x05:
            i = 3
        elif n > 200:
            i = 4
        else:
            i = 5
        out[i][0] += 1
        out[i][1] += n
    return [tuple(c) for c in out]  # type: ignore[misc]


def test_random_packets_get_the_same_verdicts_on_both_targets(topology, tmp_path: Path) -> None:
    """Seeded random TCP/UDP packets (ports around the rules' edges, random flags and
    sizes): the counters equal the same hand-evaluated oracle on either target."""
    import random  # noqa: PLC0415

    if shutil.which("nft") is None:
        pytest.skip("nft (package nftables) is needed to silence h2")
    topo = topology(config={"nftables": {"file": ruleset_file(tmp_path, RANDOM_RULES)}})
    silent = tmp_path / "silent.nft"
    silent.write_text(H2_SILENT)
    cp = topo.exec("h2", "nft", "-f", str(silent))
    assert cp.returncode == 0, show(cp)                # h2 answers nothing: one-way traffic
    rng = random.Random(7)
    ports = [0, 1, 22, 999, 1000, 1023, 1024, 1500, 1999, 2000, 2500, 2999, 3000, 3999, 4000,
             65535]
    pkts = []
    for _ in range(150):
        size = rng.choice([0, 10, 100, 160, 161, 300])
        if rng.random() < 0.6:
            l4 = TCP(sport=rng.choice(ports), dport=rng.choice(ports),
                     flags=rng.randrange(256) & 0x3F)
        else:
            l4 = UDP(sport=rng.choice(ports), dport=rng.choice(ports))
        pkts.append(IP(bytes(IP(src=H1, dst=H2, ttl=64) / l4 / (b"z" * size))))
    cp = topo.exec("h1", sys.executable, "-c", SEND_CODE, *(bytes(p).hex() for p in pkts),
                   timeout=60)
    assert cp.returncode == 0, show(cp)
    want = _oracle(pkts)
    assert all(c[0] for c in want), want                 # every rule is exercised

    def got() -> list[tuple[int, int]]:
        return counters(topo.nft_list_ruleset())
    import time  # noqa: PLC0415
    deadline = time.monotonic() + 5
    while got() != want and time.monotonic() < deadline:
        time.sleep(0.2)
    assert got() == want


def test_reload_swaps_the_ruleset_and_rejects_a_bad_one(topology, tmp_path: Path,
                                                        target: str) -> None:
    """pyrouter only (the kernel has no config reload): a changed file takes effect at
    `pyrouter reload` (counters restart at zero); a broken file is refused with its
    position and the running ruleset stays."""
    if target != "pyrouter":
        pytest.skip("reload is pyrouter's")
    path = ruleset_file(tmp_path, FIREWALL)
    topo = topology(config={"nftables": {"file": path}})
    syn = dict(flags="S", sport=40011, seq=1)
    assert sr1(topo, "h1", IP(src=H1, dst=H2) / TCP(dport=23, **syn)) == [None]
    Path(path).write_text(FIREWALL.replace("tcp dport 23", "tcp dport 24"))
    cp = topo.reload()
    assert cp is not None and cp.returncode == 0, show(cp)
    ans = sr1(topo, "h1", IP(src=H1, dst=H2) / TCP(dport=23, **syn))[0]
    assert ans is not None and ans[IP].ttl == 63 and ans[TCP].flags == "RA"   # from h2 now
    listing = topo.nft_list_ruleset()
    assert "tcp dport 24 counter packets 0 bytes 0 drop" in listing, listing
    assert counters(listing)[-1] == (2, 80), listing      # SYN and h2's RST, since reload
    Path(path).write_text(FIREWALL.replace("tcp dport 23", "tcp dport"))
    cp = topo.reload(check=False)
    assert cp is not None and cp.returncode != 0
    assert "nftables.file" in cp.stdout + cp.stderr and "rules.nft:5:" in cp.stdout + cp.stderr
    assert "tcp dport 24 counter" in topo.nft_list_ruleset()
