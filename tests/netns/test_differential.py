"""Differential tests against the kernel (issue 7): the same nftables file (tests/netns/
data/*.nft) in a kernel router namespace (``nft -f``) and in pyrouter, side by side in
ONE run (tests/netns/dual.py), the same seeded random traffic crafted with scapy from
both hosts: TCP with random flags and scripted handshakes (valid sequence numbers),
UDP to echo servers and closed ports, ICMP echo/timestamp and random types/codes,
ICMP errors quoting tracked flows, TTL 1, martians; ports around the rules' edges.
Rulesets: stateful firewall, masquerade, DNAT port forward (IPv4), and an inet
stateful firewall with ip6 masquerade (IPv6).

Compared, per ruleset: the packets arriving at h1 and h2 (normalised summaries, as a
multiset), the ``nft list ruleset`` listings with their counters, and the conntrack
tables (``conntrack -L`` vs ``pyrouter conntrack -L``: protocol, state, tuples, flags;
timeouts within a few seconds).  The traffic runs once per ruleset (module-scoped
fixture); each comparison is its own test, so a known divergence can be an exact
``xfail(strict=True)`` while the others keep guarding (``KNOWN``).  Flows expected to
diverge (fragments, bad checksums, ICMP timestamp to the router) are sent after the
main comparison, in a second capture window, and compared one by one.  The test builds
both targets
itself, so it runs only once, under the default PYROUTER_TARGET (pyrouter).
PYROUTER_DIFF_SEED=N draws other traffic (the xfails are about fixed flows; the main
comparisons should hold for every seed)."""

from __future__ import annotations

import dataclasses
import difflib
import os
import random
import re
import secrets
import shutil
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_RR, fragment
from scapy.layers.inet6 import ICMPv6DestUnreach, ICMPv6EchoReply, ICMPv6EchoRequest, \
    ICMPv6PacketTooBig, ICMPv6TimeExceeded, ICMPv6Unknown, IPv6, IPv6ExtHdrFragment, \
    fragment6

from .conftest import TARGET, default_ports
from .dual import Dual, Observed, build_dual, diff_arrivals, diff_conntrack, diff_listing

pytestmark = [pytest.mark.netns, pytest.mark.timeout(120)]

DATA = Path(__file__).resolve().parent / "data"
H1, H2, R_LAN, R_WAN = "10.0.1.2", "10.0.2.2", "10.0.1.1", "10.0.2.1"
RULESETS = ("stateful", "masquerade", "dnat", "stateful6")
ROUTER = (R_LAN, R_WAN, "10.0.2.255", "255.255.255.255")

# Destination ports around the rules' edges (data/*.nft) and the listeners'.
TCP_EDGES = [21, 22, 23, 24, 80, 134, 135, 139, 140, 443, 2000, 2005, 2010, 2011, 7999,
             8000, 8080, 8099, 8100]
UDP_EDGES = [9, 52, 53, 54, 123, 4999, 5000, 5099, 5100, 5353]
ICMP_TYPES = [0, 3, 4, 5, 8, 11, 12, 13, 14, 15, 16, 17, 18, 30, 42]
ICMP6_TYPES = [1, 2, 3, 4, 128, 129, 144, 145, 200, 255]   # (not ND/MLD: 130-143)
FLAG_CHOICES = ["S", "A", "SA", "R", "RA", "F", "FA", "PA", "SF", "SR", "", "FPU", "SEC"]


class Plan:
    """Seeded step lists; every crafted flow has a unique 5-digit source port or ICMP
    id (20000-29999 TCP/UDP, 30000+ ICMP), which also names it in a diff."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.port = 20000
        self.icmp_id = 30000

    def sport(self) -> int:
        self.port += 1
        return self.port

    def ident(self) -> int:
        self.icmp_id += 1
        return self.icmp_id

    def pkt(self, p: IP, **meta) -> dict:
        return {"kind": "pkt", "hex": bytes(p).hex(), **meta}

    @staticmethod
    def ip(src: str, dst: str, ttl: int = 64, tos: int = 0) -> IP:
        if ":" in src:
            return IPv6(src=src, dst=dst, hlim=ttl, tc=tos)
        return IP(src=src, dst=dst, ttl=ttl, tos=tos)

    def hs(self, src: str, dst: str, dport: int, mode: str, extra: list | None = None
           ) -> dict:
        return {"kind": "hs", "src": src, "dst": dst, "sport": self.sport(), "dport": dport,
                "seq": self.rng.randrange(1, 1 << 31), "mode": mode, "extra": extra or []}

    def tcp(self, src: str, dst: str, dport: int | None = None, flags: str | None = None,
            ttl: int = 64) -> dict:
        rng = self.rng
        if flags is None:
            flags = rng.choice(FLAG_CHOICES) if rng.random() < 0.7 else rng.randrange(64)
        sp = self.sport()
        seg = TCP(sport=sp, dport=dport or rng.choice(TCP_EDGES), flags=flags,
                  seq=rng.randrange(1, 1 << 31), ack=rng.randrange(1, 1 << 31), window=512)
        load = b"d" * rng.choice([0, 0, 5, 40])
        return self.pkt(self.ip(src, dst, ttl) / seg / load, sport=sp)

    def udp(self, src: str, dst: str, dport: int | None = None, sport: int | None = None,
            size: int | None = None, ttl: int = 64, **udp) -> dict:
        sp = sport or self.sport()
        size = self.rng.choice([0, 8, 64]) if size is None else size
        dp = dport or self.rng.choice(UDP_EDGES)
        tos = self.rng.choice([0, 0, 0x10, 0x1e, 0xb8])
        return self.pkt(self.ip(src, dst, ttl, tos) / UDP(sport=sp, dport=dp, **udp)
                        / (b"u" * size), sport=sp, dport=dp)

    def icmp(self, src: str, dst: str, typ: int | None = None, code: int = 0) -> dict:
        rng = self.rng
        if typ is None:
            typ, code = rng.choice(ICMP_TYPES), rng.choice([0, 0, 1, 3, 13])
            if typ == 13 and dst in ROUTER:
                typ = 8         # a timestamp request to the router: special_phase
        i, seq, load = self.ident(), rng.randrange(1, 100), b"p" * rng.choice([8, 28])
        if ":" in src:
            return self.icmp6(src, dst, typ, code, i, seq, load)
        body = ICMP(type=typ, code=code, id=i, seq=seq)
        return self.pkt(IP(src=src, dst=dst) / body / load, tag=i)

    def icmp6(self, src: str, dst: str, typ: int, code: int, i: int, seq: int,
              load: bytes) -> dict:
        if typ in (8, 13):                      # (the IPv4 choices map to echo)
            typ = 128
        elif typ < 128:
            typ = self.rng.choice(ICMP6_TYPES)
        if typ in (128, 129):
            cls = ICMPv6EchoRequest if typ == 128 else ICMPv6EchoReply
            body = cls(code=code, id=i, seq=seq, data=load)
        else:
            body = ICMPv6Unknown(type=typ, code=code,
                                 msgbody=i.to_bytes(2, "big") + seq.to_bytes(2, "big") + load)
        return self.pkt(IPv6(src=src, dst=dst) / body, tag=i)

    def error_about(self, src: str, dst: str, inner: IP, typ: int = 3, code: int = 3,
                    quote: int = 28, **icmp) -> dict:
        """An ICMP error from *src* quoting the first *quote* bytes of *inner* (for IPv6:
        *typ* 1 unreachable, 2 packet too big, 3 time exceeded, *quote* + 20)."""
        l4 = inner[UDP] if UDP in inner else inner[TCP]
        if ":" in src:
            err = {1: ICMPv6DestUnreach(code=code), 2: ICMPv6PacketTooBig(mtu=1280),
                   3: ICMPv6TimeExceeded(code=code)}[typ]
            return self.pkt(IPv6(src=src, dst=dst) / err / bytes(inner)[:quote + 20],
                            tag=l4.sport)
        return self.pkt(IP(src=src, dst=dst) / ICMP(type=typ, code=code, **icmp)
                        / bytes(inner)[:quote], tag=l4.sport)

    def random_mix(self, src: str, dst: str, n: int) -> list[dict]:
        out = []
        for _ in range(n):
            r = self.rng.random()
            out.append(self.tcp(src, dst) if r < 0.45 else self.udp(src, dst) if r < 0.7
                       else self.icmp(src, dst))
        return out


def lan_phase_a(plan: Plan, wan_dst: str) -> tuple[list[dict], list[dict]]:
    """From h1: UDP flows that get later packets first (then 2.5 s: their later packets
    come > 2 s after the first one, nf_conntrack_udp's stream rule), handshakes to h2's
    listeners, a random mix, echo/timestamp, TTL 1, traffic to the router itself.
    Returns (steps, flows)."""
    flows = [plan.udp(H1, wan_dst, dport=53, size=12), plan.udp(H1, wan_dst, dport=9),
             plan.udp(H1, wan_dst, dport=5000), plan.udp(H1, wan_dst, dport=123)]
    steps = list(flows) + [{"kind": "sleep", "s": 2.5}]
    steps += [plan.hs(H1, wan_dst, 80, "open"), plan.hs(H1, wan_dst, 443, "data_fin"),
              plan.hs(H1, wan_dst, 8080, "open")]          # rejected / closed on h2
    # established flows, then more segments in sequence: data, a SYN (ignored by
    # conntrack, challenge-ACKed by h2), FIN then data, urgent data
    for extra in ([["PA", 10], ["A", 0]], [["S", 0]], [["FA", 0], ["PA", 3]],
                  [["PAU", 4], ["RA", 0]]):
        steps.append(plan.hs(H1, wan_dst, 443, "open", extra))
    steps += [plan.tcp(H1, wan_dst, dport=80, flags="S"), plan.tcp(H1, wan_dst, flags="S")]
    steps += plan.random_mix(H1, wan_dst, 45)
    steps += [plan.icmp(H1, wan_dst, 8), plan.icmp(H1, wan_dst, 13), plan.icmp(H1, R_LAN, 8)]
    steps += [plan.tcp(H1, wan_dst, dport=80, flags="S", ttl=1),
              plan.udp(H1, R_LAN, dport=9), plan.tcp(H1, R_LAN, dport=22, flags="S"),
              plan.icmp(H1, R_WAN, 8), plan.tcp(H1, R_WAN, dport=23, flags="S"),
              plan.udp(H1, wan_dst, dport=53, size=5, chksum=0)]   # no UDP checksum
    i = plan.ident()
    rr = IP(src=H1, dst=wan_dst, options=[IPOption_RR(routers=["0.0.0.0"] * 3)])
    steps.append(plan.pkt(rr / ICMP(id=i, seq=1) / b"rr", tag=i))   # record route
    # odd ones: martian and spoofed sources, multicast and broadcast destinations from
    # the LAN, TTL 0, a Record Route option whose pointer is wrong (Parameter Problem)
    for src, dst in (("127.0.0.1", wan_dst), ("0.0.0.0", wan_dst), (R_LAN, wan_dst),
                     ("10.0.2.77", wan_dst), (H1, "224.0.0.5"), (H1, "10.0.1.255"),
                     (H1, "255.255.255.255"), (H1, "10.0.2.255"), (H1, "0.0.0.0")):
        steps.append(plan.udp(src, dst, dport=9, size=3))
    steps += [plan.icmp(H1, "10.0.1.255", 8), plan.udp(H1, wan_dst, dport=9, ttl=0)]
    sp = plan.sport()
    bad_rr = IP(src=H1, dst=wan_dst, options=[IPOption_RR(length=3, pointer=3, routers=[])])
    steps.append(plan.pkt(bad_rr / UDP(sport=sp, dport=9), sport=sp))
    return steps, flows


def wan_phase(plan: Plan, flows: list[dict], opened: list[dict], nat_addr: str | None,
              dnat: bool) -> list[dict]:
    """From h2: replies to h1's UDP flows (to the masquerade address when NATed), ICMP
    errors about them, new traffic toward the LAN host and the router."""
    steps = []
    lan_addr = nat_addr or H1
    for fl in flows[:3]:
        steps.append(plan.udp(H2, lan_addr, dport=fl["sport"], sport=fl["dport"], size=4))
    fl = flows[3]
    inner = IP(src=lan_addr, dst=H2, ttl=63) / UDP(sport=fl["sport"], dport=fl["dport"])
    steps.append(plan.error_about(H2, lan_addr, inner))
    steps.append(plan.error_about(H2, lan_addr, inner, quote=24))    # 4 bytes of UDP
    steps.append(plan.error_about(H2, lan_addr, inner, quote=22))    # too short: INVALID
    hs = opened[0]
    inner = IP(src=lan_addr, dst=H2, ttl=63) / TCP(sport=hs["sport"], dport=hs["dport"],
                                                   seq=hs["seq"] + 1)
    steps.append(plan.error_about(H2, lan_addr, inner, code=4, nexthopmtu=1400))
    # TTL 1 on a flow's reply direction: the router's Time Exceeded, NATed back
    fl = flows[0]
    steps.append(plan.udp(H2, lan_addr, dport=fl["sport"], sport=fl["dport"], ttl=1))
    bogus = IP(src=lan_addr, dst=H2, ttl=63) / UDP(sport=29999, dport=7)
    steps.append(plan.error_about(H2, lan_addr, bogus))    # about no flow: INVALID
    steps += [plan.tcp(H2, H1, dport=22, flags="S"), plan.tcp(H2, H1, dport=80, flags="S"),
              plan.icmp(H2, H1, 8)]
    steps += plan.random_mix(H2, H1, 12)
    steps += plan.random_mix(H2, R_WAN, 8)
    steps += [plan.udp(H2, "10.0.2.255", dport=9), plan.icmp(H2, "10.0.2.255", 8),
              plan.udp(H2, "255.255.255.255", dport=5000)]     # broadcasts to the router
    if dnat:
        for mode, port in (("open", 8080), ("data_fin", 8080), ("rst", 2005),
                           ("data_rst", 2005)):
            steps.append(plan.hs(H2, R_WAN, port, mode))
        steps += [plan.udp(H2, R_WAN, dport=5353, size=10), plan.udp(H2, R_WAN, dport=5354),
                  plan.tcp(H2, R_WAN, dport=2000, flags="S"),
                  plan.tcp(H2, R_WAN, dport=2011, flags="S"),
                  plan.tcp(H2, R_WAN, dport=8080, flags="A")]
        steps += [plan.tcp(H2, R_WAN, dport=plan.rng.choice([2003, 2007, 8080]))
                  for _ in range(8)]
    return steps


def lan_phase_c(plan: Plan, flows: list[dict], wan_dst: str) -> list[dict]:
    """From h1 again: an ICMP error about h2's reply on a flow (RELATED, translated back
    under NAT), one more datagram on a flow, and a second random mix."""
    fl = flows[0]
    inner = IP(src=wan_dst, dst=H1, ttl=63) / UDP(sport=fl["dport"], dport=fl["sport"])
    steps = [plan.error_about(H1, wan_dst, inner),
             plan.udp(H1, wan_dst, dport=flows[1]["dport"], sport=flows[1]["sport"], size=3),
             # last: their CLOSE entries (10 s) are still listed on both sides
             plan.hs(H1, wan_dst, 80, "rst"), plan.hs(H1, wan_dst, 443, "data_rst")]
    return steps + plan.random_mix(H1, wan_dst, 15)


FRAG_ID = 4242


def special_phase(plan: Plan, wan_dst: str) -> tuple[list[dict], dict[str, str]]:
    """From h1, after the main comparison: flows each compared on their own (a pattern
    matching their summaries): a UDP datagram in three fragments (reassembled by
    conntrack's defrag), a TCP SYN and a UDP datagram with a wrong L4 checksum, an ICMP
    timestamp request to the router."""
    pats: dict[str, str] = {}
    sp = plan.sport()
    big = IP(src=H1, dst=wan_dst, id=FRAG_ID) / UDP(sport=sp, dport=9) / (b"f" * 600)
    steps = [plan.pkt(f, sport=sp) for f in fragment(big, fragsize=256)]
    pats["fragments"] = rf"\b{sp}\b|\bid={FRAG_ID}\b"
    for name, l4 in (("bad_tcp_checksum", TCP(dport=80, flags="S", seq=77)),
                     ("bad_udp_checksum", UDP(dport=53))):
        sp = plan.sport()
        l4.sport = sp
        p = IP(bytes(IP(src=H1, dst=wan_dst) / l4 / (b"c" * 4)))
        p[l4.__class__].chksum ^= 0x5555
        steps.append(plan.pkt(p, sport=sp))
        pats[name] = rf"\b{sp}\b"
    ts = plan.icmp(H1, R_LAN, 13)
    steps.append(ts)
    pats["icmp_timestamp"] = rf"\bid={ts['tag']}\b"
    return steps, pats


H1_6, H2_6, R_LAN6, R_WAN6 = "fd00:1::2", "fd00:2::2", "fd00:1::1", "fd00:2::1"


def v6_phases(plan: Plan) -> tuple[list[dict], list[dict], list[dict]]:
    """The same kinds of traffic over IPv6 (data/stateful6.nft masquerades the LAN):
    flows then 2.5 s, handshakes (also with more segments), a random mix (ICMPv6 types
    but ND/MLD), echo, hop limit 1, the router's own addresses; from h2 replies to the
    masquerade address, errors quoting flows (unreachable, packet too big), hop limit 1
    on a reply, new traffic; from h1 again an error about a reply, RST handshakes."""
    h1, h2, nat = H1_6, H2_6, R_WAN6
    flows = [plan.udp(h1, h2, dport=53, size=12), plan.udp(h1, h2, dport=9),
             plan.udp(h1, h2, dport=5000), plan.udp(h1, h2, dport=123)]
    a = list(flows) + [{"kind": "sleep", "s": 2.5}]
    a += [plan.hs(h1, h2, 80, "open"), plan.hs(h1, h2, 443, "data_fin"),
          plan.hs(h1, h2, 8080, "open"), plan.hs(h1, h2, 443, "open", [["PA", 10], ["S", 0]])]
    a += plan.random_mix(h1, h2, 40)
    a += [plan.icmp(h1, h2, 8), plan.icmp(h1, R_LAN6, 8), plan.icmp(h1, R_WAN6, 8),
          plan.tcp(h1, h2, dport=80, flags="S", ttl=1), plan.udp(h1, R_LAN6, dport=9),
          plan.tcp(h1, R_LAN6, dport=22, flags="S"), plan.udp(h1, "ff02::1", dport=9),
          plan.udp(h1, "::1", dport=9), plan.udp("fe80::99", h2, dport=9)]
    b = [plan.udp(h2, nat, dport=fl["sport"], sport=fl["dport"], size=4) for fl in flows[:3]]
    fl = flows[3]
    inner = IPv6(src=nat, dst=h2, hlim=63) / UDP(sport=fl["sport"], dport=fl["dport"])
    b += [plan.error_about(h2, nat, inner, typ=1, code=4),
          plan.error_about(h2, nat, inner, typ=1, code=4, quote=2)]      # too short
    hs = [st for st in a if st["kind"] == "hs"][0]
    inner = IPv6(src=nat, dst=h2, hlim=63) / TCP(sport=hs["sport"], dport=hs["dport"],
                                                 seq=hs["seq"] + 1)
    b.append(plan.error_about(h2, nat, inner, typ=2))
    fl = flows[0]
    b.append(plan.udp(h2, nat, dport=fl["sport"], sport=fl["dport"], ttl=1))
    b += [plan.tcp(h2, h1, dport=22, flags="S"), plan.tcp(h2, h1, dport=80, flags="S"),
          plan.icmp(h2, h1, 8)]
    b += plan.random_mix(h2, h1, 10) + plan.random_mix(h2, R_WAN6, 8)
    inner = IPv6(src=h2, dst=h1, hlim=63) / UDP(sport=fl["dport"], dport=fl["sport"])
    c = [plan.error_about(h1, h2, inner, typ=1, code=4),
         plan.udp(h1, h2, dport=flows[1]["dport"], sport=flows[1]["sport"], size=3),
         plan.hs(h1, h2, 80, "rst"), plan.hs(h1, h2, 443, "data_rst")]
    c += plan.random_mix(h1, h2, 12)
    return a, b, c


def special6(plan: Plan) -> tuple[list[dict], dict[str, str]]:
    """special_phase for IPv6: a UDP datagram in three fragments (the kernel's
    nf_defrag_ipv6 reassembles it for conntrack), a TCP SYN and a UDP datagram with a
    wrong checksum."""
    pats: dict[str, str] = {}
    sp = plan.sport()
    big = IPv6(src=H1_6, dst=H2_6) / IPv6ExtHdrFragment(id=FRAG_ID) / UDP(sport=sp, dport=9) \
        / (b"f" * 600)
    steps = [plan.pkt(f, sport=sp) for f in fragment6(big, 300)]
    pats["fragments"] = rf"\b{sp}\b|nh=44"
    for name, l4 in (("bad_tcp_checksum", TCP(dport=80, flags="S", seq=77)),
                     ("bad_udp_checksum", UDP(dport=53))):
        sp = plan.sport()
        l4.sport = sp
        p = IPv6(bytes(IPv6(src=H1_6, dst=H2_6) / l4 / (b"c" * 4)))
        p[l4.__class__].chksum ^= 0x5555
        steps.append(plan.pkt(p, sport=sp))
        pats[name] = rf"\b{sp}\b"
    return steps, pats


CASES = {
    # ruleset: (seed, NAT address h2 answers to, DNAT traffic from h2)
    "stateful": (11, None, False),
    "masquerade": (12, R_WAN, False),
    "dnat": (13, R_WAN, True),
    "stateful6": (14, R_WAN6, False),          # IPv6 (v6_phases), with masquerade
}

# (check, ruleset) -> reason: divergences from the kernel found by these tests, for the
# lead to fix (the xfail is strict: a fix makes the test pass and must drop the entry).
# Found and fixed so far: IPv4 re-fragmentation at frag_max_size, IPv6 fragments
# tracked and re-fragmented without a 1280 floor, nf_conntrack_checksum, ICMP timestamp
# replies, `conntrack -L` listing both families, sorted anonymous sets.
KNOWN: dict[tuple[str, str], str] = {}


def cases(check: str) -> list:
    return [pytest.param(r, id=r, marks=[pytest.mark.xfail(strict=True, reason=KNOWN[check, r])]
                         if (check, r) in KNOWN else []) for r in RULESETS]


@dataclasses.dataclass
class Run:
    dual: Dual
    main: dict[str, Observed]        # after the main traffic
    special: dict[str, Observed]     # after special_phase (arrivals only)
    patterns: dict[str, str]         # special flow -> regex of its summaries


@pytest.fixture(scope="module")
def observed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Run:
    if TARGET != "pyrouter":
        pytest.skip("the differential test builds both targets itself (runs under "
                    "PYROUTER_TARGET=pyrouter)")
    for tool in ("nft", "conntrack", "tcpdump"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} missing")
    name = request.param
    seed, nat_addr, dnat = CASES[name]
    seed += int(os.environ.get("PYROUTER_DIFF_SEED", "0")) * 100
    v6 = name.endswith("6")
    from .test_ipv6 import v6_ports  # noqa: PLC0415
    dual = build_dual(tmp_path_factory.mktemp(f"dual-{name}"), DATA / f"{name}.nft",
                      ports=v6_ports if v6 else default_ports)
    try:
        dual.start_drivers()
        dual.listen("h2", tcp=[80, 443], udp=[53])
        dual.listen("h1", tcp=[80, 2005], udp=[53])
        plan = Plan(seed)
        if v6:
            a, b, c = v6_phases(plan)
        else:
            a, flows = lan_phase_a(plan, H2)
            b = wan_phase(plan, flows, [st for st in a if st["kind"] == "hs"], nat_addr, dnat)
            c = lan_phase_c(plan, flows, H2)
        dual.start_captures()
        dual.run("h1", a)
        dual.run("h2", b)
        dual.run("h1", c)
        main = dual.observe()
        steps, patterns = special6(plan) if v6 else special_phase(plan, H2)
        dual.start_captures()
        dual.run("h1", steps)
        special = dual.observe(tables=False)
    except BaseException:
        dual.teardown()
        raise
    dual.teardown()
    return Run(dual, main, special, patterns)


def _check(text: str, obs: dict[str, Observed]) -> None:
    if text:
        pytest.fail(f"{text}\n--- pyrouter log tail ---\n{obs['pyrouter'].log_tail}",
                    pytrace=False)


@pytest.mark.parametrize("observed", cases("arrivals"), indirect=True)
def test_same_packets_arrive(observed: Run) -> None:
    obs = observed.main
    assert sum(map(len, obs["kernel"].arrivals.values())) > 60, obs["kernel"].arrivals
    _check(diff_arrivals(obs, observed.dual), obs)


@pytest.mark.parametrize("observed", cases("counters"), indirect=True)
def test_same_rule_counters(observed: Run) -> None:
    obs = observed.main
    assert re.search(r"counter packets [1-9]", obs["kernel"].listing), obs["kernel"].listing
    _check(diff_listing(obs), obs)


@pytest.mark.parametrize("observed", cases("conntrack"), indirect=True)
def test_same_conntrack_table(observed: Run) -> None:
    obs = observed.main
    assert len(obs["kernel"].conntrack) > 20, obs["kernel"].conntrack
    _check(diff_conntrack(obs), obs)


@pytest.mark.parametrize("observed", cases("conntrack_default_family"), indirect=True)
def test_plain_conntrack_list_is_the_tools(observed: Run) -> None:
    """Without -f, both list the same entries (conntrack-tools: every family)."""
    obs = observed.main
    k, p = sorted(obs["kernel"].conntrack_default), sorted(obs["pyrouter"].conntrack_default)
    _check(diff_conntrack({t: dataclasses.replace(o, conntrack=o.conntrack_default)
                           for t, o in obs.items()}), obs)
    assert len(k) == len(p)


def _special(run: Run, flow: str) -> None:
    if flow not in run.patterns:
        pytest.skip(f"no {flow} flow in this case")
    pat = re.compile(run.patterns[flow])
    # a flow sent with a wrong checksum keeps it (both targets forward it unchanged or
    # NATed by RFC 1624, which preserves the error)
    keep_bad = flow.startswith("bad_")
    obs = {t: dataclasses.replace(o, arrivals={h: [s for s in a if pat.search(s)]
                                               for h, a in o.arrivals.items()},
                                  bad_checksums=[] if keep_bad else
                                  [s for s in o.bad_checksums if pat.search(s)])
           for t, o in run.special.items()}
    if not keep_bad:      # (the kernel drops a bad-checksum packet in some rulesets)
        assert any(obs["kernel"].arrivals.values()), f"{flow}: nothing arrived on the kernel"
    _check(diff_arrivals(obs, run.dual), obs)


@pytest.mark.parametrize("observed", cases("fragments"), indirect=True)
def test_fragments_forwarded_like_the_kernel(observed: Run) -> None:
    _special(observed, "fragments")


@pytest.mark.parametrize("observed", cases("bad_tcp_checksum"), indirect=True)
def test_bad_tcp_checksum_like_the_kernel(observed: Run) -> None:
    _special(observed, "bad_tcp_checksum")


@pytest.mark.parametrize("observed", cases("bad_udp_checksum"), indirect=True)
def test_bad_udp_checksum_like_the_kernel(observed: Run) -> None:
    _special(observed, "bad_udp_checksum")


@pytest.mark.parametrize("observed", cases("icmp_timestamp"), indirect=True)
def test_icmp_timestamp_to_the_router_like_the_kernel(observed: Run) -> None:
    _special(observed, "icmp_timestamp")


UNSORTED_SET = """\
flush ruleset
table inet filter {
	chain forward {
		type filter hook forward priority filter; policy accept;
		icmp type != { echo-request, echo-reply } ct state new counter drop
		tcp dport { 443, 80, 22 } counter accept
		udp dport { 53 } counter accept
	}
}
"""


@pytest.mark.parametrize("text", [
    *[pytest.param(p, id=p.stem) for p in sorted(DATA.glob("*.nft"))],
    pytest.param(UNSORTED_SET, id="anonymous_sets"),
])
def test_listing_of_a_fresh_ruleset_is_what_nft_prints(text, tmp_path: Path) -> None:
    """Before any traffic: pyrouter's listing of each file is the kernel's, byte for byte
    (the counter comparison above needs that)."""
    from pyrouter.core.netfilter.nft_compile import compile_ruleset  # noqa: PLC0415

    from .conftest import _CREATED_NETNS, _del_netns, ip, nsexec  # noqa: PLC0415
    if shutil.which("nft") is None:
        pytest.skip("nft missing")
    if isinstance(text, Path):
        path, text = text, text.read_text()
    else:
        path = tmp_path / "rules.nft"
        path.write_text(text)
    ns = f"pr-{secrets.token_hex(4)}-nft"
    ip("netns", "add", ns)
    _CREATED_NETNS.add(ns)
    try:
        nsexec(ns, "nft", "-f", str(path), check=True)
        kernel = nsexec(ns, "nft", "list", "ruleset", check=True).stdout
    finally:
        _del_netns(ns)
    ours = compile_ruleset(text, str(path)).list()
    assert ours == kernel, "".join(difflib.unified_diff(
        kernel.splitlines(True), ours.splitlines(True), "kernel", "pyrouter"))


# ---- the comparisons themselves (no namespaces) --------------------------------------

def _obs(arrivals=None, listing="", conntrack=(), bad=()) -> Observed:
    return Observed(arrivals or {"h1": [], "h2": []}, list(bad), listing, list(conntrack))


def test_diffs_report_every_difference() -> None:
    from .dual import diff_multiset, summary  # noqa: PLC0415

    assert diff_multiset(["a", "b", "b"], ["b", "a", "b"]) == ""
    d = diff_multiset(["a", "b", "b"], ["a", "b", "c"])
    assert "kernel only  1x b" in d and "pyrouter only 1x c" in d
    k = _obs({"h1": ["x"], "h2": []}, "counter packets 1 bytes 40\n")
    p = _obs({"h1": [], "h2": ["x"]}, "counter packets 2 bytes 80\n", bad=["y"])
    d = diff_arrivals({"kernel": k, "pyrouter": p})
    assert "arriving at h1" in d and "arriving at h2" in d and "bad checksums" in d
    assert "-counter packets 1 bytes 40" in diff_listing({"kernel": k, "pyrouter": p})
    line = ("tcp      6 {} ESTABLISHED src=10.0.1.2 dst=10.0.2.2 sport=20001 dport=80 "
            "src=10.0.2.2 dst=10.0.1.2 sport=80 dport=20001 [ASSURED] mark=0 use=1")
    same = {"kernel": _obs(conntrack=[line.format(431999)]),
            "pyrouter": _obs(conntrack=[line.format(431997)])}
    assert diff_conntrack(same) == ""
    off = {"kernel": _obs(conntrack=[line.format(431999)]),
           "pyrouter": _obs(conntrack=[line.format(120)])}
    assert "timeout kernel 431999 pyrouter 120" in diff_conntrack(off)
    state = {"kernel": _obs(conntrack=[line.format(60)]),
             "pyrouter": _obs(conntrack=[line.format(60).replace("ESTABLISHED", "CLOSE")])}
    d = diff_conntrack(state)
    assert "kernel only" in d and "pyrouter only" in d
    expiring = {"kernel": _obs(conntrack=[line.format(2)]), "pyrouter": _obs()}
    assert diff_conntrack(expiring) == ""                 # may have expired on the other side
    syn = IP(src=H1, dst=H2, ttl=63) / TCP(sport=20001, dport=80, flags="S", seq=5)
    sa = IP(bytes(IP(src=H2, dst=H1) / TCP(sport=80, dport=20001, flags="SA", seq=9000,
                                             ack=6)))
    ack = IP(bytes(IP(src=H1, dst=H2) / TCP(sport=20001, dport=80, flags="A", seq=6,
                                              ack=9001)))
    assert summary(IP(bytes(syn)), [9000]).endswith("tcp 20001>80 [S] seq=5 data=0")
    assert "seq=ISN+0 ack=6" in summary(sa, [9000])
    assert "ack=ISN+1" in summary(ack, [9000])
    from .dual import checksums_ok  # noqa: PLC0415
    good = IP(bytes(IP(src=H1, dst=H2) / UDP(sport=1, dport=2) / b"abc"))
    assert checksums_ok(good)
    bad = IP(bytes(good))
    bad[UDP].chksum ^= 1
    assert not checksums_ok(IP(bytes(bad)))
