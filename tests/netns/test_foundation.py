"""Foundation integration tests: pyrouter as seen from real Linux hosts.

Topology (see conftest.py)::

    h1 10.0.1.2/24 --[port a 10.0.1.1/24] router [port b 10.0.2.1/24]-- 10.0.2.2/24 h2

Run against the kernel to validate the tests themselves:
``PYROUTER_TARGET=kernel pytest tests/netns``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time

import pytest
from scapy.layers.inet import ICMP, IP, UDP, IPerror, UDPerror
from scapy.layers.l2 import Ether

from .conftest import Topology, nsexec, wait_for

# Helpers come from conftest.py through fixtures / the Topology object (conftest is
# not imported as a module, so this file does not depend on pytest's import mode).

pytestmark = [pytest.mark.netns, pytest.mark.timeout(60)]

H1, H2 = "10.0.1.2", "10.0.2.2"
R_A, R_B = "10.0.1.1", "10.0.2.1"

def require_tools(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing tools: {', '.join(missing)}")


REPLY_RE = re.compile(r"^(\d+) bytes from ([\d.]+): icmp_seq=(\d+) ttl=(\d+)", re.M)
FROM_RE = re.compile(r"^From ([\d.]+)(?: icmp_seq=(\d+))? (.+)$", re.M)


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def ping(topo: Topology, host: str, dst: str, *opts: str, count: int = 3,
         wait: float = 2, timeout: float = 20) -> subprocess.CompletedProcess:
    return topo.exec(host, "ping", "-n", "-c", str(count), "-i", "0.2", "-W", str(wait),
                     *opts, dst, timeout=timeout)


def replies(out: str) -> list[tuple[int, str, int, int]]:
    """(bytes, src, icmp_seq, ttl) for every echo reply line of ping's output."""
    return [(int(b), src, int(seq), int(ttl)) for b, src, seq, ttl in REPLY_RE.findall(out)]


def errors(out: str) -> list[tuple[str, str]]:
    """(src, message) for every 'From X icmp_seq=N message' line of ping's output."""
    return [(src, msg.strip()) for src, _seq, msg in FROM_RE.findall(out)]


def show(cp: subprocess.CompletedProcess) -> str:
    return f"$ {' '.join(map(str, cp.args))}\nrc={cp.returncode}\n{cp.stdout}{cp.stderr}"


def pyexec(topo: Topology, host: str, code: str, *args: str,
           timeout: float = 20) -> subprocess.CompletedProcess:
    """Run a python snippet (this interpreter, so the venv's scapy) inside a host."""
    return topo.exec(host, sys.executable, "-c", code, *args, timeout=timeout)


SR1_CODE = r"""
import sys
from scapy.all import IP, conf, sr1
conf.verb = 0
timeout = float(sys.argv[1])
for h in sys.argv[2:]:
    ans = sr1(IP(bytes.fromhex(h)), timeout=timeout, verbose=0)
    print(bytes(ans).hex() if ans is not None else "-", flush=True)
"""


def sr1(topo: Topology, host: str, *pkts: IP, timeout: float = 2.0) -> list[IP | None]:
    """Send each IP packet from ``host`` with scapy and return its answer (or None)."""
    cp = pyexec(topo, host, SR1_CODE, str(timeout), *(bytes(p).hex() for p in pkts),
                timeout=10 + timeout * len(pkts))
    assert cp.returncode == 0, show(cp)
    lines = cp.stdout.split()
    assert len(lines) == len(pkts), show(cp)
    return [None if ln == "-" else IP(bytes.fromhex(ln)) for ln in lines]


SENDP_CODE = r"""
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
for h in sys.argv[2:]:
    s.send(bytes.fromhex(h))
"""


def sendp(topo: Topology, host: str, *frames: bytes) -> None:
    """Send raw Ethernet frames on ``host``'s port interface."""
    cp = pyexec(topo, host, SENDP_CODE, topo.port_of(host).name, *(f.hex() for f in frames))
    assert cp.returncode == 0, show(cp)


def icmp_pkts(pkts: list, src: str | None = None, type_: int | None = None) -> list:
    out = []
    for p in pkts:
        if IP in p and ICMP in p and (src is None or p[IP].src == src) \
                and (type_ is None or p[ICMP].type == type_):
            out.append(p)
    return out


def fragments(pkts: list, src: str, dst: str) -> dict[int, list[tuple[int, bool, int, int]]]:
    """IP id -> [(offset_bytes, more_fragments, ip_total_len, ttl)] for fragmented packets."""
    by_id: dict[int, list] = {}
    for p in pkts:
        if IP not in p or p[IP].src != src or p[IP].dst != dst or p[IP].proto != 1:
            continue
        ip_ = p[IP]
        mf = bool(int(ip_.flags) & 0x1)
        if ip_.frag or mf:
            by_id.setdefault(ip_.id, []).append((ip_.frag * 8, mf, ip_.len, ip_.ttl))
    return by_id


def payload_total(frags: list[tuple[int, bool, int, int]]) -> int:
    """Reassembled payload length of one datagram's fragments (checks contiguity)."""
    frags = sorted(frags)
    pos = 0
    for off, _mf, tot, _ttl in frags:
        assert off == pos, f"fragment gap/overlap at {off} (expected {pos}): {frags}"
        pos += tot - 20
    assert not frags[-1][1], f"last fragment still has MF set: {frags}"
    return pos


# --------------------------------------------------------------------------
# 1. forwarding, TTL
# --------------------------------------------------------------------------

def test_ping_forwarded_with_ttl_decrement(topo: Topology) -> None:
    with topo.capture("h2", "icmp") as cap:
        cp = ping(topo, "h1", H2)
    assert cp.returncode == 0, show(cp)
    rep = replies(cp.stdout)
    assert len(rep) == 3, show(cp)
    assert {r[1] for r in rep} == {H2}, show(cp)
    # h2 answers with ttl 64, the router decrements once.
    assert {r[3] for r in rep} == {63}, show(cp)

    reqs = [p for p in icmp_pkts(cap.stop(), type_=8) if p[IP].dst == H2]
    assert len(reqs) >= 3, f"echo requests seen in h2: {[p.summary() for p in reqs]}"
    assert {p[IP].ttl for p in reqs} == {63}
    assert {p[IP].src for p in reqs} == {H1}
    # The frames reaching h2 come from the router's port b MAC.
    rmac_b = topo.neigh_mac("h2", R_B)
    assert rmac_b, "h2 has no neighbour entry for the router"
    assert {p[Ether].src.lower() for p in reqs} == {rmac_b.lower()}


# --------------------------------------------------------------------------
# 2. router's own addresses
# --------------------------------------------------------------------------

@pytest.mark.parametrize("addr", [R_A, R_B])
def test_ping_router_addresses(topo: Topology, addr: str) -> None:
    with topo.capture("h1", "icmp") as cap:
        cp = ping(topo, "h1", addr)
    assert cp.returncode == 0, show(cp)
    rep = replies(cp.stdout)
    assert len(rep) == 3, show(cp)
    assert {r[1] for r in rep} == {addr}, show(cp)
    assert {r[3] for r in rep} == {64}, show(cp)
    wire = icmp_pkts(cap.stop(), type_=0)
    assert len(wire) >= 3
    assert {(p[IP].src, p[IP].dst, p[IP].ttl) for p in wire} == {(addr, H1, 64)}


# --------------------------------------------------------------------------
# 3. traceroute
# --------------------------------------------------------------------------

def parse_traceroute(out: str) -> dict[int, set[str]]:
    hops: dict[int, set[str]] = {}
    for line in out.splitlines()[1:]:
        m = re.match(r"^\s*(\d+)\s+(.*)$", line)
        if m:
            hops[int(m.group(1))] = set(re.findall(r"\b(\d+\.\d+\.\d+\.\d+)\b", m.group(2)))
    return hops


@pytest.mark.parametrize("mode", ["udp", "icmp"])
def test_traceroute(topo: Topology, mode: str) -> None:
    require_tools("traceroute")
    opts = ["-I"] if mode == "icmp" else []
    cp = topo.exec("h1", "traceroute", "-n", *opts, "-q", "3", "-w", "2", "-m", "5", H2,
                   timeout=30)
    assert cp.returncode == 0, show(cp)
    hops = parse_traceroute(cp.stdout)
    assert hops.get(1) == {R_A}, show(cp)
    assert hops.get(2) == {H2}, show(cp)
    assert max(hops) == 2, show(cp)


# --------------------------------------------------------------------------
# 4. TTL exceeded
# --------------------------------------------------------------------------

def test_ttl_exceeded(topo: Topology) -> None:
    with topo.capture("h1", "icmp") as cap:
        cp = ping(topo, "h1", H2, "-t", "1", count=1)
    assert cp.returncode != 0, show(cp)
    assert errors(cp.stdout) == [(R_A, "Time to live exceeded")], show(cp)
    te = icmp_pkts(cap.stop(), src=R_A, type_=11)
    assert len(te) == 1, [p.summary() for p in te]
    assert te[0][ICMP].code == 0
    assert te[0][IP].dst == H1
    assert te[0][IPerror].dst == H2


def test_icmp_errors_are_rate_limited_per_destination(topo: Topology) -> None:
    """Ten TTL-1 probes within 0.1 s: the per-destination bucket (icmp_ratelimit 1 s,
    burst factor 6) answers the first six and no more, on either target."""
    with topo.capture("h1", "icmp") as cap:
        topo.exec("h1", "ping", "-n", "-c", "10", "-i", "0.01", "-t", "1", "-W", "1", H2,
                  timeout=20)
    te = icmp_pkts(cap.stop(), src=R_A, type_=11)
    assert len(te) == 6, [p.summary() for p in te]


def test_redirect_for_an_onlink_gateway(topology) -> None:
    """h1 sends to 10.0.7.0/24, which the router reaches through 10.0.1.3 on h1's own
    link: the router answers with ICMP Redirect (host) naming 10.0.1.3, from its LAN
    address, quoting the packet with its TTL already decremented, on either target."""
    topo = topology(routes=[{"to": "10.0.7.0/24", "via": "10.0.1.3"}])
    with topo.capture("h1", "icmp") as cap:
        ping(topo, "h1", "10.0.7.7", count=1, wait=1)
    red = icmp_pkts(cap.stop(), src=R_A, type_=5)
    assert len(red) == 1, [p.summary() for p in red]
    assert red[0][ICMP].code == 1 and red[0][ICMP].gw == "10.0.1.3"
    assert red[0][IP].dst == H1 and red[0][IPerror].dst == "10.0.7.7"
    assert red[0][IPerror].ttl == 63


@pytest.mark.parametrize("action, expect", [
    ({"table": 100}, "Destination Host Unreachable"),      # table 100: unreachable route
    ({"type": "prohibit"}, "Packet filtered"),
    ({"type": "unreachable"}, "Destination Net Unreachable"),  # a rule's unreachable: -ENETUNREACH
])
def test_policy_rule_by_source(topology, action: dict, expect: str) -> None:
    """A rule for h1's address sends its traffic elsewhere than the main table does:
    same ICMP answer from both targets."""
    topo = topology(routes=[{"to": "10.0.2.0/24", "type": "unreachable", "table": 100}],
                    config={"rules": [{"priority": 100, "from": f"{H1}/32", **action}]})
    cp = ping(topo, "h1", H2, count=1, wait=1)
    assert errors(cp.stdout) == [(R_A, expect)], show(cp)


# --------------------------------------------------------------------------
# 5. route types
# --------------------------------------------------------------------------

ROUTE_TYPES = [
    {"to": "10.9.1.0/24", "type": "unreachable"},
    {"to": "10.9.2.0/24", "type": "prohibit"},
    {"to": "10.9.3.0/24", "type": "blackhole"},
]


def test_route_types_and_no_route(topology) -> None:
    topo = topology(routes=ROUTE_TYPES)
    cases = [  # dst, ping text, ICMP code (None: silence)
        ("10.9.1.5", "Destination Host Unreachable", 1),
        ("10.9.2.5", "Packet filtered", 13),
        ("10.9.3.5", None, None),
        ("192.0.2.1", "Destination Net Unreachable", 0),
    ]
    outputs = {}
    with topo.capture("h1", "icmp") as cap:
        for dst, _text, _code in cases:
            outputs[dst] = ping(topo, "h1", dst, count=1, wait=1.5)
    pkts = cap.stop()
    unreach = icmp_pkts(pkts, type_=3)
    by_dst = {}
    for p in unreach:
        by_dst.setdefault(p[IPerror].dst, []).append(p)
    for dst, text, code in cases:
        cp = outputs[dst]
        assert cp.returncode != 0, show(cp)
        assert not replies(cp.stdout), show(cp)
        if code is None:
            assert errors(cp.stdout) == [], show(cp)
            assert dst not in by_dst, f"{dst}: unexpected ICMP {[p.summary() for p in by_dst[dst]]}"
            assert not [p for p in pkts if IPerror in p and p[IPerror].dst == dst]
        else:
            assert errors(cp.stdout) == [(R_A, text)], show(cp)
            got = by_dst.get(dst, [])
            assert len(got) == 1, f"{dst}: {[p.summary() for p in got]}"
            assert (got[0][IP].src, got[0][ICMP].type, got[0][ICMP].code) == (R_A, 3, code)


# --------------------------------------------------------------------------
# 6. UDP to a closed port of the router
# --------------------------------------------------------------------------

def test_udp_closed_port_on_router(topo: Topology) -> None:
    probes = [IP(src=H1, dst=addr) / UDP(sport=40000 + i, dport=9999) / b"closed-port-probe"
              for i, addr in enumerate((R_A, R_B))]
    answers = sr1(topo, "h1", *probes)
    for probe, ans in zip(probes, answers):
        assert ans is not None, f"no answer to UDP {probe[IP].dst}:9999"
        assert ICMP in ans, ans.summary()
        assert (ans[IP].src, ans[ICMP].type, ans[ICMP].code) == (probe[IP].dst, 3, 3), ans.show(dump=True)
        assert ans[IPerror].dst == probe[IP].dst and ans[UDPerror].dport == 9999
        assert ans[UDPerror].sport == probe[UDP].sport


# --------------------------------------------------------------------------
# 7. TCP bulk transfer
# --------------------------------------------------------------------------

def test_tcp_transfer_20mb(topo: Topology, tmp_path) -> None:
    require_tools("socat")
    src = tmp_path / "src.bin"
    dst = tmp_path / "dst.bin"
    src.write_bytes(os.urandom(20 * 1024 * 1024))
    port = 5001
    server = subprocess.Popen(
        ["ip", "netns", "exec", topo.ns("h2"), "socat", "-u",
         f"TCP-LISTEN:{port},bind={H2},reuseaddr", f"CREATE:{dst}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: f":{port}" in topo.exec("h2", "ss", "-Hltn", f"sport = :{port}").stdout,
                 5, what="socat listener in h2")
        t0 = time.monotonic()
        cp = topo.exec("h1", "socat", "-u", f"OPEN:{src},rdonly",
                       f"TCP:{H2}:{port},connect-timeout=5", timeout=40)
        assert cp.returncode == 0, show(cp)
        server.wait(15)
        elapsed = time.monotonic() - t0
        assert server.returncode == 0, server.stdout.read()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    print(f"20 MiB in {elapsed:.2f}s ({20 / elapsed:.1f} MiB/s)")
    assert dst.stat().st_size == src.stat().st_size
    assert hashlib.sha256(dst.read_bytes()).hexdigest() == hashlib.sha256(src.read_bytes()).hexdigest()


# --------------------------------------------------------------------------
# 8. PMTU discovery
# --------------------------------------------------------------------------

def test_pmtu_frag_needed_and_tracepath(topology) -> None:
    require_tools("tracepath")
    topo = topology(mtu={"b": 1400})
    mtu_h2 = topo.exec("h2", "cat", f"/sys/class/net/{topo.dev('b')}/mtu", check=True).stdout
    assert int(mtu_h2) == 1400, "host side of port b should have mtu 1400"

    with topo.capture("h1", "icmp") as cap:
        cp = ping(topo, "h1", H2, "-M", "do", "-s", "1472", count=1)
    assert cp.returncode != 0, show(cp)
    assert errors(cp.stdout) == [(R_A, "Frag needed and DF set (mtu = 1400)")], show(cp)
    fn = icmp_pkts(cap.stop(), src=R_A, type_=3)
    assert len(fn) == 1, [p.summary() for p in fn]
    assert fn[0][ICMP].code == 4 and fn[0][ICMP].nexthopmtu == 1400
    assert fn[0][IPerror].dst == H2

    # Forget the learnt PMTU so tracepath has to discover it through the router.
    topo.exec("h1", "ip", "route", "flush", "cache", check=True)
    cp = topo.exec("h1", "tracepath", "-n", "-m", "5", H2, timeout=30)
    assert cp.returncode == 0, show(cp)
    m = re.search(r"Resume: pmtu (\d+) hops (\d+)", cp.stdout)
    assert m, show(cp)
    assert (int(m.group(1)), int(m.group(2))) == (1400, 2), show(cp)
    # The local start value is h1's own mtu; the 1400 is learnt from the router's ICMP.
    assert re.search(r"^\s*1\?: \[LOCALHOST\]\s+pmtu 1500", cp.stdout, re.M), show(cp)
    assert re.search(rf"^\s*\d+:\s+{re.escape(R_A)}\s.*pmtu 1400", cp.stdout, re.M), show(cp)


# --------------------------------------------------------------------------
# 9. fragments
# --------------------------------------------------------------------------

def test_fragmented_ping_forwarded(topo: Topology) -> None:
    """h1 fragments a 3008-byte echo (DF clear); the fragments cross the router."""
    with topo.capture("h2", "ip proto 1") as cap:
        cp = ping(topo, "h1", H2, "-M", "dont", "-s", "3000", count=2)
    assert cp.returncode == 0, show(cp)
    rep = replies(cp.stdout)
    assert len(rep) == 2 and {(r[0], r[1]) for r in rep} == {(3008, H2)}, show(cp)
    frags = fragments(cap.stop(), H1, H2)
    assert len(frags) >= 2, f"no fragmented requests seen in h2: {frags}"
    for ident, fl in frags.items():
        assert any(off > 0 for off, *_ in fl), fl
        assert payload_total(fl) == 3008, fl
        assert {ttl for *_, ttl in fl} == {63}, fl
        assert all(tot <= 1500 for _o, _m, tot, _t in fl), fl


def test_router_fragments_df_clear(topology) -> None:
    """h1 sends unfragmented 1500-byte packets with DF clear; port b has mtu 1400, so
    the router itself must fragment them."""
    topo = topology(mtu={"b": 1400})
    with topo.capture("h1", "ip proto 1") as cap1, topo.capture("h2", "ip proto 1") as cap2:
        cp = ping(topo, "h1", H2, "-M", "dont", "-s", "1472", count=2)
    assert cp.returncode == 0, show(cp)
    assert len(replies(cp.stdout)) == 2, show(cp)
    sent = [p for p in icmp_pkts(cap1.stop(), src=H1, type_=8) if p[IP].dst == H2]
    assert sent and all(p[IP].len == 1500 and p[IP].frag == 0 and not int(p[IP].flags)
                        for p in sent), [p.summary() for p in sent]
    frags = fragments(cap2.stop(), H1, H2)
    assert len(frags) >= 2, f"no router-made fragments seen in h2: {frags}"
    for ident, fl in frags.items():
        assert all(tot <= 1400 for _o, _m, tot, _t in fl), fl
        assert any(off > 0 for off, *_ in fl), fl
        assert payload_total(fl) == 1480, fl
        assert {ttl for *_, ttl in fl} == {63}, fl


# --------------------------------------------------------------------------
# 10. large ping to the router itself
# --------------------------------------------------------------------------

def test_large_ping_to_router(topo: Topology) -> None:
    with topo.capture("h1", "ip proto 1") as cap:
        cp = ping(topo, "h1", R_A, "-s", "3000", count=2)
    assert cp.returncode == 0, show(cp)
    rep = replies(cp.stdout)
    assert len(rep) == 2 and {(r[0], r[1], r[3]) for r in rep} == {(3008, R_A, 64)}, show(cp)
    frags = fragments(cap.stop(), R_A, H1)
    assert len(frags) >= 2, f"router's replies were not fragmented: {frags}"
    for ident, fl in frags.items():
        assert payload_total(fl) == 3008, fl
        assert all(tot <= 1500 for _o, _m, tot, _t in fl), fl


# --------------------------------------------------------------------------
# 11. malformed IPv4 headers
# --------------------------------------------------------------------------

def _ip_csum(hdr: bytes) -> int:
    s = 0
    for i in range(0, len(hdr), 2):
        s += (hdr[i] << 8) + hdr[i + 1]
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _with_first_byte(raw: bytes, b0: int) -> bytes:
    """Replace version/ihl byte and make the 20-byte header checksum valid again."""
    hdr = bytearray(raw[:20])
    hdr[0] = b0
    hdr[10:12] = b"\0\0"
    hdr[10:12] = _ip_csum(bytes(hdr)).to_bytes(2, "big")
    return bytes(hdr) + raw[20:]


def _drop_increased(before: dict, after: dict, names: tuple[str, ...]) -> bool:
    b, a = before.get("drops", {}), after.get("drops", {})
    return any(a.get(n, 0) > b.get(n, 0) for n in names)


def test_malformed_ipv4_dropped_and_counted(topo: Topology) -> None:
    assert ping(topo, "h1", H2, count=1).returncode == 0  # resolves MACs on both sides
    rmac = topo.neigh_mac("h1", R_A)
    assert rmac, "h1 did not learn the router's MAC"
    hmac = topo.mac("h1")
    base = 47000 + int.from_bytes(os.urandom(1), "big") * 8

    def udp(dport: int) -> IP:
        return IP(src=H1, dst=H2, ttl=64) / UDP(sport=12345, dport=dport) / (b"pyrouter-marker" * 4)

    good_ip = bytes(udp(base))
    bad_csum = bytearray(bytes(udp(base + 1)))
    bad_csum[10:12] = (int.from_bytes(bad_csum[10:12], "big") ^ 0x5A5A).to_bytes(2, "big")
    # Total length claims 200 bytes more than the frame carries (checksum valid).
    truncated = bytes(IP(src=H1, dst=H2, ttl=64, len=len(udp(base + 2)) + 200)
                      / UDP(sport=12345, dport=base + 2) / (b"pyrouter-marker" * 4))
    cases = [
        ("bad checksum", bytes(bad_csum), ("ip_csum_error",)),
        ("ihl=4", _with_first_byte(bytes(udp(base + 3)), 0x44), ("ip_bad_ihl",)),
        ("total length > frame", truncated, ("ip_truncated", "ip_bad_total_len")),
        ("version 5", _with_first_byte(bytes(udp(base + 4)), 0x55), ("ip_bad_version",)),
    ]
    eth = Ether(dst=rmac, src=hmac, type=0x0800)

    with topo.capture("h2", "udp") as cap:
        for what, raw, names in cases:
            before = topo.stats()
            sendp(topo, "h1", bytes(eth) + raw)
            try:
                wait_for(lambda: _drop_increased(before, topo.stats(), names), 5,
                         interval=0.1, what=f"{' or '.join(names)} to increase")
            except AssertionError as e:
                pytest.fail(f"{what}: {e}\nbefore: {before.get('drops')}\n"
                            f"after: {topo.stats().get('drops')}")
        # A well-formed control packet must arrive: proves the sniffer sees forwarded UDP.
        sendp(topo, "h1", bytes(eth) + good_ip)
        assert cap.wait_for(lambda p: UDP in p and p[UDP].dport == base), \
            "control UDP packet did not reach h2"
    seen = {p[UDP].dport for p in cap.stop() if UDP in p and p[IP].src == H1}
    assert seen == {base}, f"malformed packets reached h2: dports {sorted(seen - {base})}"


# --------------------------------------------------------------------------
# 12. shutdown
# --------------------------------------------------------------------------

def test_sigterm_exits_zero_and_removes_taps(topo: Topology, target: str, nsexec) -> None:
    for p in topo.ports.values():
        assert topo.exec(p.host, "ip", "link", "show", "dev", p.name).returncode == 0
    rc = topo.stop()
    assert rc == 0, f"router exit code {rc}\nlog:\n{topo.log_text()}"
    for p in topo.ports.values():
        cp = topo.exec(p.host, "ip", "link", "show", "dev", p.name)
        assert cp.returncode != 0, f"{p.name} still present in {p.netns}:\n{cp.stdout}"
        cp = nsexec(p.netns, "ip", "-o", "link")
        assert p.name not in cp.stdout
        assert subprocess.run(["ip", "link", "show", "dev", p.name],
                              capture_output=True).returncode != 0, \
            f"{p.name} left in the root namespace"
    if target == "pyrouter":
        # Contract: the stats file is also written at shutdown.
        assert topo.stats_path.exists(), "stats file not written at shutdown"


# --------------------------------------------------------------------------
# 13. stats file (pyrouter contract)
# --------------------------------------------------------------------------

CONTRACT_DROP_REASONS = set("""
eth_truncated otherhost unhandled_ethertype vlan_unsupported ipv6_disabled arp_malformed
ip_truncated ip_bad_version ip_bad_ihl ip_bad_total_len ip_csum_error martian_src martian_dst
pkt_not_host ttl_exceeded no_route route_blackhole route_unreachable route_prohibit frag_needed
ip_options_error neigh_failed neigh_queue_full icmp_csum_error icmp_malformed udp_csum_error
udp_malformed udp_no_port proto_unreachable reasm_timeout reasm_overlap reasm_too_big reasm_mem
tx_ring_full port_down internal_error""".split())
IF_COUNTERS = {"rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "rx_dropped", "tx_dropped"}


def test_stats_file_contract(topo: Topology, target: str) -> None:
    if target != "pyrouter":
        pytest.skip("stats file is a pyrouter contract")
    s0 = topo.stats()
    assert set(s0) >= {"drops", "snmp", "interfaces"}, s0
    # Every documented (stable) reason is reported; more may be appended.
    assert CONTRACT_DROP_REASONS <= set(s0["drops"]), CONTRACT_DROP_REASONS - set(s0["drops"])
    assert all(isinstance(v, int) and v >= 0 for v in s0["drops"].values()), s0["drops"]
    assert set(s0["interfaces"]) == {p.name for p in topo.ports.values()}
    for name, c in s0["interfaces"].items():
        assert set(c) >= IF_COUNTERS, (name, c)
    assert ping(topo, "h1", H2, count=3).returncode == 0
    s1 = topo.stats()
    a, b = topo.dev("a"), topo.dev("b")
    assert s1["interfaces"][a]["rx_packets"] - s0["interfaces"][a]["rx_packets"] >= 3
    assert s1["interfaces"][b]["tx_packets"] - s0["interfaces"][b]["tx_packets"] >= 3
    assert s1["interfaces"][b]["rx_packets"] - s0["interfaces"][b]["rx_packets"] >= 3
    assert s1["interfaces"][a]["tx_packets"] - s0["interfaces"][a]["tx_packets"] >= 3
    assert s1["interfaces"][a]["rx_bytes"] - s0["interfaces"][a]["rx_bytes"] >= 3 * 98
    assert "IpInReceives" in s1["snmp"], f"no snmp IpInReceives (contract): {sorted(s1['snmp'])}"
    assert s1["snmp"]["IpInReceives"] - s0["snmp"]["IpInReceives"] >= 6
    events = [e.get("event") for e in topo.log_events()]
    assert "ready" in events and "counters" in events, events[-20:]


@pytest.mark.parametrize("rp_filter, spoofed_arrives", [(0, True), (1, False), (2, True)])
def test_reverse_path_filter(topology, rp_filter: int, spoofed_arrives: bool) -> None:
    """h1 sends with a source from h2's subnet (the reverse route points out the other
    port): strict rp_filter drops it, loose and off let it through; on either target."""
    topo = topology(config={"ipv4": {"rp_filter": rp_filter}})
    assert ping(topo, "h1", H2, count=1).returncode == 0
    rmac = topo.neigh_mac("h1", R_A)
    eth = Ether(dst=rmac, src=topo.mac("h1"), type=0x0800)
    port = 41000 + int.from_bytes(os.urandom(1), "big")
    spoofed = IP(src="10.0.2.77", dst=H2, ttl=64) / UDP(sport=1234, dport=port) / b"spoof"
    honest = IP(src=H1, dst=H2, ttl=64) / UDP(sport=1234, dport=port + 1) / b"honest"
    with topo.capture("h2", "udp") as cap:
        sendp(topo, "h1", bytes(eth) + bytes(spoofed), bytes(eth) + bytes(honest))
        assert cap.wait_for(lambda p: UDP in p and p[UDP].dport == port + 1)
    seen = {p[UDP].dport for p in cap.stop() if UDP in p}
    assert (port in seen) == spoofed_arrives, seen


def test_record_route_through_the_router(topo: Topology) -> None:
    """ping -R: the router records its egress address in each direction, exactly as a
    kernel router does (the recorded route is compared, not just its presence)."""
    cp = ping(topo, "h1", H2, "-R", count=1)
    assert cp.returncode == 0, show(cp)
    m = re.search(r"RR:\s+((?:[\d.]+\s+)+)", cp.stdout)
    assert m, show(cp)
    assert m.group(1).split() == [H1, "10.0.2.1", H2, H2, R_A, H1], show(cp)


def test_reassembly_timeout_time_exceeded(topology) -> None:
    """Only the first fragment of a datagram to the router: after ipfrag_time (2 s here)
    the router gives up with Time Exceeded code 1 quoting it; a lone *later* fragment
    expires silently. Same on either target."""
    topo = topology(config={"ipv4": {"ipfrag_time": 2}})
    assert ping(topo, "h1", R_A, count=1).returncode == 0
    rmac = topo.neigh_mac("h1", R_A)
    eth = Ether(dst=rmac, src=topo.mac("h1"), type=0x0800)
    first = IP(src=H1, dst=R_A, id=0x5151, flags="MF", frag=0, proto=17) / (b"\x00" * 64)
    later = IP(src=H1, dst=R_A, id=0x5252, flags=0, frag=8, proto=17) / (b"\x00" * 64)
    with topo.capture("h1", "icmp") as cap:
        sendp(topo, "h1", bytes(eth) + bytes(first), bytes(eth) + bytes(later))
        time.sleep(3.5)
    te = icmp_pkts(cap.stop(), src=R_A, type_=11)
    assert [(p[ICMP].code, p[IPerror].id) for p in te] == [(1, 0x5151)], \
        [p.summary() for p in te]


def test_redirect_is_honoured_by_the_host(topology) -> None:
    """h1 and h1b share the router's LAN link (a bridge in h1); 10.0.7.0/24 sits behind
    h1b. The router forwards h1's packet there and redirects h1, and h1's kernel then
    shows the redirected route (`cache <redirected>`, via 10.0.1.3). Either target."""
    topo = topology(routes=[{"to": "10.0.7.0/24", "via": "10.0.1.3"}])
    h1, dev = topo.ns("h1"), topo.port_of("h1").name
    h1b = topo.add_host_netns("h1b")
    tag = topo.token[:6]
    br, va, vb = f"b{tag}", f"r{tag}a", f"r{tag}b"
    steps = [
        (h1, ["ip", "link", "add", br, "type", "bridge"]),
        (h1, ["ip", "addr", "flush", "dev", dev]),
        (h1, ["ip", "link", "set", dev, "master", br]),
        (h1, ["ip", "link", "add", va, "type", "veth", "peer", "name", vb, "netns", h1b]),
        (h1, ["ip", "link", "set", va, "master", br, "up"]),
        (h1, ["ip", "link", "set", br, "up"]),
        (h1, ["ip", "addr", "add", f"{H1}/24", "dev", br]),
        (h1, ["ip", "route", "replace", "default", "via", R_A]),
        (h1b, ["ip", "link", "set", vb, "up"]),
        (h1b, ["ip", "link", "set", "lo", "up"]),
        (h1b, ["ip", "addr", "add", "10.0.1.3/24", "dev", vb]),
        (h1b, ["ip", "addr", "add", "10.0.7.1/32", "dev", "lo"]),
        (h1b, ["ip", "route", "add", "default", "via", R_A]),
    ]
    for ns, cmd in steps:
        nsexec(ns, *cmd, check=True)
    wait_for(lambda: topo.exec("h1", "ping", "-c", "1", "-W", "1", "10.0.1.3").returncode == 0,
             10, what="h1 to reach h1b over the bridge")
    cp = topo.exec("h1", "ping", "-n", "-c", "2", "-i", "0.3", "-W", "1", "10.0.7.1")
    assert cp.returncode == 0, show(cp)
    rg = topo.exec("h1", "ip", "route", "get", "10.0.7.1").stdout
    assert "via 10.0.1.3" in rg and "redirected" in rg, rg


def test_multipath_spreads_flows_and_keeps_each_on_one_path(topology) -> None:
    """10.99.0.0/16 over two gateways (h2 and h3), 5-tuple hashing: 48 UDP flows from h1
    use both paths and every flow stays on one. Either target (the hash differs, the
    properties do not)."""
    h3 = {"key": "c", "host": "h3", "addresses": ["10.0.3.1/24"],
          "peer_addresses": ["10.0.3.2/24"],
          "peer_routes": [{"to": "default", "via": "10.0.3.1"}]}
    topo = topology(extra_ports=[h3],
                    routes=[{"to": "10.99.0.0/16",
                             "nexthops": [{"via": H2}, {"via": "10.0.3.2"}]}],
                    config={"ipv4": {"fib_multipath_hash_policy": 1}})
    assert ping(topo, "h1", H2, count=1).returncode == 0
    assert ping(topo, "h1", "10.0.3.2", count=1).returncode == 0
    rmac = topo.neigh_mac("h1", R_A)
    eth = Ether(dst=rmac, src=topo.mac("h1"), type=0x0800)
    frames = [bytes(eth) + bytes(IP(src=H1, dst="10.99.0.1") / UDP(sport=20000 + i, dport=7777)
                                 / b"flow") for i in range(48)]
    with topo.capture("h2", "udp port 7777") as c2, topo.capture("h3", "udp port 7777") as c3:
        for _ in range(3):
            sendp(topo, "h1", *frames)
        time.sleep(1)
    s2 = [p[UDP].sport for p in c2.stop() if UDP in p]
    s3 = [p[UDP].sport for p in c3.stop() if UDP in p]
    assert len(s2) + len(s3) == 3 * 48, (len(s2), len(s3))
    assert s2 and s3, "only one path used"
    assert not set(s2) & set(s3), "a flow was split across paths"


def test_link_down_behind_the_router(topo: Topology) -> None:
    """h2 takes its link down: the router's route there stays (the kernel's linkdown, with
    ignore_routes_with_linkdown=0), its neighbour entry goes, resolution fails, and h1's
    ping gets Destination Host Unreachable from the router. Either target."""
    assert ping(topo, "h1", H2, count=1).returncode == 0
    topo.exec("h2", "ip", "link", "set", topo.port_of("h2").name, "down", check=True)
    time.sleep(1.5)                      # pyrouter notices within its 1 s link poll
    cp = ping(topo, "h1", H2, count=1, wait=6)
    assert errors(cp.stdout) == [(R_A, "Destination Host Unreachable")], show(cp)


def test_longest_prefix_and_metric_order(topology) -> None:
    """The most specific prefix wins; among equal prefixes the lowest metric. Observed
    through reject routes' ICMP codes, on either target."""
    topo = topology(routes=[
        {"to": "10.50.0.0/16", "type": "unreachable"},
        {"to": "10.50.1.0/24", "type": "prohibit"},
        {"to": "10.60.0.0/16", "type": "prohibit", "metric": 10},
        {"to": "10.60.0.0/16", "type": "unreachable", "metric": 5},
    ])
    cases = {"10.50.1.1": "Packet filtered", "10.50.2.1": "Destination Host Unreachable",
             "10.60.0.1": "Destination Host Unreachable"}
    for dst, want in cases.items():
        cp = ping(topo, "h1", dst, count=1, wait=1)
        assert errors(cp.stdout) == [(R_A, want)], show(cp)
        time.sleep(2.1)        # each route error spends 2 s of the per-host ICMP budget


def test_route_error_budget(topology) -> None:
    """ip_error() and icmp_send() draw on one per-host bucket (burst 5 s, 1 s per use,
    two uses per route error): five quick pings into an unreachable route get exactly
    two answers, on either target."""
    topo = topology(routes=[{"to": "10.50.0.0/16", "type": "unreachable"}])
    cp = topo.exec("h1", "ping", "-n", "-c", "5", "-i", "0.01", "-W", "1", "10.50.0.1",
                   timeout=20)
    assert len(errors(cp.stdout)) == 2, show(cp)
