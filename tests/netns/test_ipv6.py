"""IPv6 integration tests (issue #5): pyrouter as an IPv6 router, seen from real Linux hosts.

Topology (``v6_ports()``; the router ports have fixed MACs so that their EUI-64 link-local
addresses are known on both targets)::

    h1 fd00:1::2/64 --[a fd00:1::1/64, fe80::ff:fe00:a01]-- router
                                          --[b fd00:2::1/64, fe80::ff:fe00:b01]-- fd00:2::2/64 h2

Every test runs on both targets (``PYROUTER_TARGET=kernel``: a kernel router in a namespace,
forwarding=1, radvd for ports with ``ra:``); assertions only pyrouter can answer (its
``show`` JSON) are guarded by ``target == "pyrouter"``.  Behaviour reference:
/work/shared/reference/behaviour/neighbour-ipv6-netfilter.md sections 4, 5 and 8.

What each test checks (kernel figures measured on 6.18, see the report):

1. forwarding: h1 -> h2 echo replies arrive with hop limit 63; the router answers echo on
   its global addresses of both ports and on its link-local address (``%dev``), hlim 64.
2. traceroute -6 (UDP and ICMP): hop 1 = the router's address on the ingress port, hop 2 =
   h2; ``ping -6 -t 1`` prints "Time exceeded: Hop limit" from that address.
3. Packet Too Big: port b MTU 1400; ``ping -6 -s 1452 -M do`` gets "Packet too big:
   mtu=1400" from the router, ``tracepath -6`` reports pmtu 1400, a 1500-byte packet sent
   raw (bypassing h1's PMTU cache) is never fragmented by the router: nothing reaches h2.
4. link-local source: fe80:: -> fd00:2::2 gets Destination Unreachable code 2 (beyond
   scope of source address) and nothing is forwarded.
5. unknown next header 253 -> Parameter Problem code 1 pointer 6; an unknown HBH option of
   type 0x9e (top bits 10) -> code 2 pointer 42; type 0x1e (top bits 00) is skipped and the
   echo answered.
6. a 1500-byte packet with hop limit 1: the Time Exceeded is exactly 1280 bytes of IPv6.
7. SLAAC (``ra:``): the host comes up with an address in the advertised prefix and a
   default route ``via fe80::... proto ra``, the RA carries every configured field
   (M/O, hop limit, router lifetime, reachable/retrans, MTU, PIO flags/lifetimes, RDNSS,
   SLLAO), unsolicited RAs come every [min, max] seconds, and an RS is answered within 1 s.
8. neighbours: h1 holds the router REACHABLE with the router's MAC and the ``router`` flag;
   the router's NA to a multicast NS has R, S and O set and a TLLAO with its MAC, hlim 255.
9. vanished host: h2 loses its address (or its link); pings from h1 then get "Address
   unreachable" (type 1 code 3) from the router ~3 s after the first unanswered echo
   (INCOMPLETE: 3 multicast NS 1 s apart).
10. redirect: the router's route to fd00:7::/64 is via fe80::1b on h1's own link: h1 gets
    an ICMPv6 Redirect (target fe80::1b, destination fd00:7::1) from the router's link-local.
11. hostile input: a spoofed override NA for the router's own addresses, a rogue RA (the
    router learns no route from it) and a flood of NS from 100 000 source addresses leave the
    router working (and, on pyrouter, its neighbour table within gc_thresh3 = 1024).
"""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess
import sys
import time

import pytest
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6ND_RA,
    ICMPv6ND_Redirect,
    ICMPv6ND_RS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptMTU,
    ICMPv6NDOptPrefixInfo,
    ICMPv6NDOptRDNSS,
    ICMPv6NDOptSrcLLAddr,
    ICMPv6PacketTooBig,
    ICMPv6ParamProblem,
    ICMPv6TimeExceeded,
    HBHOptUnknown,
    IPerror6,
    IPv6,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    UDP,
)
from scapy.layers.l2 import Ether

from .conftest import Port, Topology, nsexec, wait_for

pytestmark = [pytest.mark.netns, pytest.mark.timeout(90)]

MAC_A, MAC_B = "02:00:00:00:0a:01", "02:00:00:00:0b:01"
R_A6, R_B6 = "fd00:1::1", "fd00:2::1"
H1_6, H2_6 = "fd00:1::2", "fd00:2::2"


def eui64_lladdr(mac: str) -> str:
    """The kernel's default (addr_gen_mode 0) link-local address for a MAC."""
    b = bytearray(int(x, 16) for x in mac.split(":"))
    b[0] ^= 0x02
    iid = bytes(b[:3]) + b"\xff\xfe" + bytes(b[3:])
    return str(ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + iid))


LL_A, LL_B = eui64_lladdr(MAC_A), eui64_lladdr(MAC_B)


def v6_ports(a: dict | None = None, b: dict | None = None) -> list[Port]:
    """h1/h2 with IPv4 and IPv6 on both sides; ``a``/``b`` override Port fields."""
    pa = dict(key="a", host="h1", addresses=["10.0.1.1/24", f"{R_A6}/64"],
              peer_addresses=["10.0.1.2/24", f"{H1_6}/64"],
              peer_routes=[{"to": "default", "via": "10.0.1.1"},
                           {"to": "default", "via": R_A6}], macaddress=MAC_A)
    pb = dict(key="b", host="h2", addresses=["10.0.2.1/24", f"{R_B6}/64"],
              peer_addresses=["10.0.2.2/24", f"{H2_6}/64"],
              peer_routes=[{"to": "default", "via": "10.0.2.1"},
                           {"to": "default", "via": R_B6}], macaddress=MAC_B)
    pa.update(a or {})
    pb.update(b or {})
    return [Port(**pa), Port(**pb)]


@pytest.fixture
def topo6(topology) -> Topology:
    return topology(ports=v6_ports())


def require_tools(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing tools: {', '.join(missing)}")


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

REPLY6_RE = re.compile(r"^(\d+) bytes from ([0-9a-f:.]+)(?:%\S+)?: icmp_seq=(\d+) ttl=(\d+)", re.M)
FROM6_RE = re.compile(r"^From ([0-9a-f:.]+)(?:%\S+)? icmp_seq=(\d+) (.+)$", re.M)


def show(cp: subprocess.CompletedProcess) -> str:
    return f"$ {' '.join(map(str, cp.args))}\nrc={cp.returncode}\n{cp.stdout}{cp.stderr}"


def ping6(topo: Topology, host: str, dst: str, *opts: str, count: int = 3,
          interval: float = 0.2, wait: float = 2, timeout: float = 30) -> subprocess.CompletedProcess:
    return topo.exec(host, "ping", "-6", "-n", "-c", str(count), "-i", str(interval),
                     "-W", str(wait), *opts, dst, timeout=timeout)


def replies6(out: str) -> list[tuple[int, str, int, int]]:
    """(bytes, src, icmp_seq, hop limit) of every echo reply line of ping's output."""
    return [(int(b), src, int(seq), int(t)) for b, src, seq, t in REPLY6_RE.findall(out)]


def errors6(out: str) -> list[tuple[str, int, str]]:
    """(src, icmp_seq, message) of every 'From X icmp_seq=N message' line."""
    return [(src, int(seq), msg.strip()) for src, seq, msg in FROM6_RE.findall(out)]


def pyexec(topo: Topology, host: str, code: str, *args: str,
           timeout: float = 30) -> subprocess.CompletedProcess:
    """Run a python snippet (this interpreter, so the venv's scapy) inside a host."""
    return topo.exec(host, sys.executable, "-c", code, *args, timeout=timeout)


SENDP_CODE = r"""
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
gap = float(sys.argv[2])
for h in sys.argv[3:]:
    s.send(bytes.fromhex(h))
    if gap:
        time.sleep(gap)
"""


def sendp(topo: Topology, host: str, *frames: bytes, gap: float = 0.0) -> None:
    """Send raw Ethernet frames on ``host``'s port interface (AF_PACKET)."""
    cp = pyexec(topo, host, SENDP_CODE, topo.port_of(host).name, str(gap),
                *(bytes(f).hex() for f in frames))
    assert cp.returncode == 0, show(cp)


def host_lladdr(topo: Topology, host: str) -> str:
    """The host's (non-tentative) link-local address on its port."""
    p = topo.port_of(host)
    cp = nsexec(p.netns, "ip", "-j", "-6", "addr", "show", "dev", p.name, "scope", "link",
                check=True)
    for link in json.loads(cp.stdout or "[]"):
        for ai in link.get("addr_info", []):
            if ai.get("local") and not ai.get("tentative"):
                return ai["local"]
    raise AssertionError(f"{host} has no usable link-local address:\n{cp.stdout}")


def eth_to_router(topo: Topology, host: str, pkt, key: str | None = None) -> Ether:
    """``pkt`` in an Ethernet frame from ``host`` to the router port's MAC."""
    p = topo.port_of(host)
    return Ether(src=topo.mac(host), dst=p.macaddress) / pkt


def neigh6(topo: Topology, host: str) -> list[dict]:
    """``ip -j -6 neigh show dev <port>`` in ``host``."""
    p = topo.port_of(host)
    cp = nsexec(p.netns, "ip", "-j", "-6", "neigh", "show", "dev", p.name, check=True)
    return json.loads(cp.stdout or "[]")


def global_addrs6(topo: Topology, host: str) -> list[dict]:
    p = topo.port_of(host)
    cp = nsexec(p.netns, "ip", "-j", "-6", "addr", "show", "dev", p.name, "scope", "global",
                check=True)
    return [ai for link in json.loads(cp.stdout or "[]") for ai in link.get("addr_info", [])]


def icmp6(pkts: list, layer, src: str | None = None, dst: str | None = None) -> list:
    return [p for p in pkts if IPv6 in p and layer in p
            and (src is None or p[IPv6].src == src) and (dst is None or p[IPv6].dst == dst)]


def summaries(pkts: list) -> list[str]:
    return [p.summary() for p in pkts]


# --------------------------------------------------------------------------
# 1. forwarding and the router's own addresses
# --------------------------------------------------------------------------

def test_ping6_forwarded_and_router_addresses(topo6: Topology) -> None:
    with topo6.capture("h2", "icmp6") as cap:
        cp = ping6(topo6, "h1", H2_6)
    assert cp.returncode == 0, show(cp)
    rep = replies6(cp.stdout)
    assert len(rep) == 3 and {r[1] for r in rep} == {H2_6}, show(cp)
    assert {r[3] for r in rep} == {63}, show(cp)   # h2 sends with 64, one router hop
    reqs = icmp6(cap.stop(), ICMPv6EchoRequest, src=H1_6, dst=H2_6)
    assert len(reqs) >= 3 and {p[IPv6].hlim for p in reqs} == {63}, summaries(reqs)
    assert {p[Ether].src for p in reqs} == {MAC_B}, summaries(reqs)

    for addr in (R_A6, R_B6):
        cp = ping6(topo6, "h1", addr)
        rep = replies6(cp.stdout)
        assert len(rep) == 3 and {(r[1], r[3]) for r in rep} == {(addr, 64)}, show(cp)
    dev = topo6.dev("a")
    cp = ping6(topo6, "h1", f"{LL_A}%{dev}")
    rep = replies6(cp.stdout)
    assert len(rep) == 3 and {(r[1], r[3]) for r in rep} == {(LL_A, 64)}, show(cp)
    # h2 reaches the router's port-a address through port b (weak host model).
    cp = ping6(topo6, "h2", R_A6)
    assert {(r[1], r[3]) for r in replies6(cp.stdout)} == {(R_A6, 64)}, show(cp)


# --------------------------------------------------------------------------
# 2. hop limit: traceroute, Time Exceeded
# --------------------------------------------------------------------------

def parse_traceroute6(out: str) -> dict[int, set[str]]:
    hops: dict[int, set[str]] = {}
    for line in out.splitlines()[1:]:
        m = re.match(r"^\s*(\d+)\s+(.*)$", line)
        if m:
            hops[int(m.group(1))] = {a for a in re.findall(r"\b([0-9a-f]*:[0-9a-f:]+)\b",
                                                          m.group(2))}
    return hops


@pytest.mark.parametrize("mode", ["udp", "icmp"])
def test_traceroute6(topo6: Topology, mode: str) -> None:
    require_tools("traceroute")
    opts = ["-I"] if mode == "icmp" else []
    cp = topo6.exec("h1", "traceroute", "-6", "-n", "-q", "1", "-w", "2", "-m", "5", *opts,
                    H2_6, timeout=30)
    assert cp.returncode == 0, show(cp)
    hops = parse_traceroute6(cp.stdout)
    assert hops.get(1) == {R_A6}, show(cp)
    assert hops.get(2) == {H2_6}, show(cp)
    assert max(hops) == 2, show(cp)


def test_hop_limit_exceeded(topo6: Topology) -> None:
    with topo6.capture("h1", "icmp6") as cap:
        cp = ping6(topo6, "h1", H2_6, "-t", "1", count=1, wait=1)
    assert errors6(cp.stdout) == [(R_A6, 1, "Time exceeded: Hop limit")], show(cp)
    te = icmp6(cap.stop(), ICMPv6TimeExceeded, dst=H1_6)
    assert len(te) == 1 and te[0][ICMPv6TimeExceeded].code == 0, summaries(te)
    assert te[0][IPv6].src == R_A6 and te[0][IPv6].hlim == 64, te[0].show(dump=True)
    assert te[0][Ether].src == MAC_A


# --------------------------------------------------------------------------
# 3. Packet Too Big, no fragmentation in transit
# --------------------------------------------------------------------------

def test_packet_too_big(topology) -> None:
    topo = topology(ports=v6_ports(b={"mtu": 1400}))
    with topo.capture("h1", "icmp6") as cap:
        cp = ping6(topo, "h1", H2_6, "-s", "1452", "-M", "do", count=1, wait=1)
    assert errors6(cp.stdout) == [(R_A6, 1, "Packet too big: mtu=1400")], show(cp)
    ptb = icmp6(cap.stop(), ICMPv6PacketTooBig, src=R_A6, dst=H1_6)
    assert len(ptb) == 1 and ptb[0][ICMPv6PacketTooBig].mtu == 1400, summaries(ptb)

    require_tools("tracepath")
    topo.exec("h1", "ip", "-6", "route", "flush", "cache")
    cp = topo.exec("h1", "tracepath", "-6", "-n", H2_6, timeout=30)
    assert re.search(r"pmtu 1400\b", cp.stdout), show(cp)
    assert re.search(r"^\s*2:\s+" + re.escape(H2_6), cp.stdout, re.M), show(cp)

    # A 1500-byte packet sent raw (h1's kernel would fragment it at its learned PMTU): the
    # router answers PTB and forwards nothing, in particular no fragments.
    big = IPv6(src=H1_6, dst=H2_6, hlim=64) / UDP(sport=40000, dport=9) / (b"x" * 1452)
    assert len(bytes(big)) == 1500
    with topo.capture("h2", "ip6") as far, topo.capture("h1", "icmp6") as near:
        sendp(topo, "h1", eth_to_router(topo, "h1", big))
        assert near.wait_for(lambda p: ICMPv6PacketTooBig in p, 3), "no PTB for the raw packet"
    got = [p for p in far.stop() if IPv6 in p and p[IPv6].src == H1_6]
    assert got == [], f"forwarded despite the MTU: {summaries(got)}"
    assert not [p for p in far.stop() if IPv6ExtHdrFragment in p]
    ptb = icmp6(near.stop(), ICMPv6PacketTooBig, src=R_A6, dst=H1_6)
    assert [p[ICMPv6PacketTooBig].mtu for p in ptb] == [1400], summaries(ptb)
    # The quote: as much of the packet as fits in 1280 bytes.
    assert len(bytes(ptb[0][IPv6])) == 1280


# --------------------------------------------------------------------------
# 4. link-local source never forwarded
# --------------------------------------------------------------------------

def test_link_local_source_not_forwarded(topo6: Topology) -> None:
    ll = host_lladdr(topo6, "h1")
    pkt = IPv6(src=ll, dst=H2_6, hlim=64) / ICMPv6EchoRequest(id=0x66, seq=1, data=b"ll" * 8)
    with topo6.capture("h2", "ip6") as far, topo6.capture("h1", "icmp6") as near:
        sendp(topo6, "h1", eth_to_router(topo6, "h1", pkt))
        assert near.wait_for(lambda p: ICMPv6DestUnreach in p, 3), "no Destination Unreachable"
    fwd = [p for p in far.stop() if ICMPv6EchoRequest in p and p[IPv6].src == ll]
    assert fwd == [], summaries(fwd)
    du = icmp6(near.stop(), ICMPv6DestUnreach, dst=ll)
    assert len(du) == 1, summaries(du)
    assert du[0][ICMPv6DestUnreach].code == 2           # beyond scope of source address
    assert du[0][IPv6].src == LL_A, du[0].show(dump=True)
    assert du[0][IPerror6].dst == H2_6


# --------------------------------------------------------------------------
# 5. extension headers: Parameter Problem
# --------------------------------------------------------------------------

def test_parameter_problem(topo6: Topology) -> None:
    base = IPv6(src=H1_6, dst=R_A6, hlim=64)
    unk_nh = IPv6(src=H1_6, dst=R_A6, hlim=64, nh=253) / (b"\x00" * 16)
    opt10 = base / IPv6ExtHdrHopByHop(options=[HBHOptUnknown(otype=0x9E, optdata=b"\x00" * 4)]) \
        / ICMPv6EchoRequest(id=0x55, seq=1)
    opt00 = base / IPv6ExtHdrHopByHop(options=[HBHOptUnknown(otype=0x1E, optdata=b"\x00" * 4)]) \
        / ICMPv6EchoRequest(id=0x55, seq=2)
    with topo6.capture("h1", "icmp6") as cap:
        for pkt in (unk_nh, opt10, opt00):
            sendp(topo6, "h1", eth_to_router(topo6, "h1", pkt))
            time.sleep(0.2)
        cap.wait_for(lambda p: ICMPv6EchoReply in p, 3)
    pkts = cap.stop()
    pp = icmp6(pkts, ICMPv6ParamProblem, src=R_A6, dst=H1_6)
    got = sorted((p[ICMPv6ParamProblem].code, p[ICMPv6ParamProblem].ptr) for p in pp)
    # code 1 (unknown next header) points at the IPv6 header's Next Header field (6);
    # code 2 (unknown option) at the option: 40 (IPv6) + 2 (HBH next header, length).
    assert got == [(1, 6), (2, 42)], summaries(pp)
    echo = icmp6(pkts, ICMPv6EchoReply, src=R_A6, dst=H1_6)
    assert [(p[ICMPv6EchoReply].id, p[ICMPv6EchoReply].seq) for p in echo] == [(0x55, 2)], \
        summaries(echo)


# --------------------------------------------------------------------------
# 6. ICMPv6 errors are capped at 1280 bytes
# --------------------------------------------------------------------------

def test_icmpv6_error_capped_at_1280(topo6: Topology) -> None:
    with topo6.capture("h1", "icmp6") as cap:
        cp = ping6(topo6, "h1", H2_6, "-t", "1", "-s", "1452", "-M", "do", count=1, wait=1)
    assert errors6(cp.stdout) == [(R_A6, 1, "Time exceeded: Hop limit")], show(cp)
    te = icmp6(cap.stop(), ICMPv6TimeExceeded, src=R_A6, dst=H1_6)
    assert len(te) == 1, summaries(te)
    assert len(bytes(te[0][IPv6])) == 1280 and te[0][IPv6].plen == 1240
    quoted = te[0][IPerror6]
    assert quoted.plen == 1460 and quoted.src == H1_6 and quoted.dst == H2_6
