"""pyrouter.wire.capfilter: the tcpdump filter subset, checked against tcpdump itself.

The reference is tcpdump: a corpus of frames built with scapy (plus truncated
and seeded random mutations of them) is written with pyrouter.wire.pcap, each
expression is run through ``tcpdump -r FILE -w - EXPR`` and the frames it
keeps (recognised by their timestamps) must be exactly the frames our
predicate accepts.  Two tcpdump modes:

- ``-O`` (no BPF optimizer): the left-to-right semantics the module promises,
  so the verdicts must agree on every frame, truncated and mutated included;
- the default (optimized) mode, what people run: must agree on every frame
  whose captured bytes hold all the headers a filter could read (see the
  module docstring: the optimizer may reorder loads on truncated frames).
"""

from __future__ import annotations

import random
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyrouter.wire.capfilter import FilterError, compile_filter, filter_source
from pyrouter.wire.pcap import file_header, read_records, record

from ._helpers import SETTINGS

scapy_all = pytest.importorskip("scapy.all")
Ether, Dot1Q, Dot1AD, ARP = (scapy_all.Ether, scapy_all.Dot1Q, scapy_all.Dot1AD,
                             scapy_all.ARP)
IP, IPv6, ICMP, TCP, UDP = (scapy_all.IP, scapy_all.IPv6, scapy_all.ICMP, scapy_all.TCP,
                            scapy_all.UDP)
ICMPv6EchoRequest, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop = (
    scapy_all.ICMPv6EchoRequest, scapy_all.IPv6ExtHdrFragment, scapy_all.IPv6ExtHdrHopByHop)
IPOption_RR, SCTP, Raw, fragment = (scapy_all.IPOption_RR, scapy_all.SCTP, scapy_all.Raw,
                                    scapy_all.fragment)

TCPDUMP = shutil.which("tcpdump")
needs_tcpdump = pytest.mark.skipif(TCPDUMP is None, reason="tcpdump not installed")

M1, M2, M3 = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03"
BCAST = "ff:ff:ff:ff:ff:ff"
BASE_TS = 1_700_000_000 * 10**9


# ------------------------------------------------------------------ corpus

def _complete_frames() -> list[bytes]:
    """Whole frames: every header a filter could read is present."""
    e12 = Ether(src=M1, dst=M2)
    e21 = Ether(src=M2, dst=M1)
    pkts = [
        Ether(src=M1, dst=BCAST) / ARP(op=1, hwsrc=M1, psrc="10.0.0.1", pdst="10.0.0.2"),
        e21 / ARP(op=2, hwsrc=M2, psrc="10.0.0.2", hwdst=M1, pdst="10.0.0.1"),
        Ether(src=M3, dst=BCAST, type=0x8035) / ARP(op=3, hwsrc=M3, psrc="0.0.0.0",
                                                    pdst="10.0.0.3"),
        e12 / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP(type=8, id=1, seq=1),
        e21 / IP(src="10.0.0.2", dst="10.0.0.1") / ICMP(type=0, id=1, seq=1),
        e12 / IP(src="10.0.0.1", dst="192.168.1.10") / TCP(sport=12345, dport=80, flags="S"),
        e21 / IP(src="192.168.1.10", dst="10.0.0.1") / TCP(sport=80, dport=12345, flags="SA"),
        # ihl 6 and 15: ports sit after the options
        e12 / IP(src="10.0.0.1", dst="10.0.0.2", options=[IPOption_RR(routers=[])])
        / TCP(sport=2000, dport=443),
        e12 / IP(src="10.0.0.1", dst="10.0.0.2",
                 options=[IPOption_RR(routers=["1.1.1.1"] * 9)]) / UDP(sport=53, dport=80),
        e12 / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5353, dport=53) / Raw(b"q" * 12),
        Ether(src=M3, dst=BCAST) / IP(src="10.1.2.3", dst="255.255.255.255")
        / UDP(sport=67, dport=68) / Raw(b"\x01" * 20),
        Ether(src=M1, dst="01:00:5e:00:00:fb") / IP(src="10.0.0.1", dst="224.0.0.251")
        / UDP(sport=5353, dport=5353),
        e12 / IP(src="172.16.0.1", dst="10.0.0.2") / SCTP(sport=80, dport=9999),
        e12 / IP(src="10.0.0.1", dst="10.0.0.2", proto=47) / Raw(b"\x00" * 24),
        e12 / IPv6(src="2001:db8::1", dst="2001:db8::2") / ICMPv6EchoRequest(id=7),
        e12 / IPv6(src="2001:db8::1", dst="2001:db8:1::5") / TCP(sport=40000, dport=80),
        e21 / IPv6(src="2001:db8:1::5", dst="2001:db8::1") / TCP(sport=80, dport=40000,
                                                                 flags="SA"),
        Ether(src=M1, dst="33:33:00:00:00:01") / IPv6(src="fe80::1", dst="ff02::1")
        / UDP(sport=521, dport=521),
        # UDP behind a hop-by-hop header: tcpdump's `udp`/`port` do not see it
        e12 / IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrHopByHop()
        / UDP(sport=53, dport=53),
        e12 / Dot1Q(vlan=10) / IP(src="10.0.0.1", dst="192.168.1.10") / TCP(sport=1024,
                                                                            dport=80),
        Ether(src=M2, dst=BCAST) / Dot1Q(vlan=20) / ARP(psrc="10.0.0.2", pdst="10.0.0.9"),
        e12 / Dot1Q(vlan=30, prio=5) / IPv6(src="2001:db8::1", dst="2001:db8::2")
        / UDP(sport=53, dport=1234),
        e12 / Dot1AD(vlan=100) / Dot1Q(vlan=200) / IP(src="10.0.0.1", dst="10.0.0.2")
        / UDP(sport=1234, dport=53),
        e12 / Dot1Q(vlan=4095) / Dot1Q(vlan=10) / IPv6(src="2001:db8::2", dst="fe80::1")
        / ICMPv6EchoRequest(),
        Ether(src=M1, dst="01:80:c2:00:00:0e", type=0x88CC) / Raw(b"\x02\x07" + b"\x00" * 40),
        Ether(src=M1, dst=M2, type=60) / Raw(b"\xaa\xaa\x03" + b"\x00" * 57),   # 802.3
        e12 / IP(src="10.0.0.1", dst="10.0.0.1") / ICMP(),
        Ether(src=M1, dst=M2, type=0x9100) / Dot1Q(vlan=10) / IP(src="10.0.0.1", dst="10.0.0.2")
        / UDP(sport=1234, dport=53),
    ]
    # IPv4 fragments: the first carries the UDP header, the others do not.
    big = e12 / IP(src="10.0.0.1", dst="10.0.0.2", id=99) / UDP(sport=1234, dport=53) \
        / Raw(b"x" * 64)
    pkts += [e12 / f for f in fragment(big[IP], fragsize=32)]
    # IPv6 fragments: first fragment UDP (next header 44, then 17), then a later one.
    v6 = IPv6(src="2001:db8::1", dst="2001:db8::2")
    pkts += [
        e12 / v6 / IPv6ExtHdrFragment(id=5, m=1, offset=0) / UDP(sport=1234, dport=53)
        / Raw(b"y" * 24),
        e12 / v6 / IPv6ExtHdrFragment(id=5, m=0, offset=4, nh=17) / Raw(b"y" * 16),
        e12 / v6 / IPv6ExtHdrFragment(id=6, m=1, offset=0) / ICMPv6EchoRequest(),
    ]
    frames = [bytes(p) for p in pkts]
    # Odd but complete: ethertype IPv4 with version 6 / ihl 0 (BPF reads them as is).
    tcp4 = bytearray(frames[5])
    tcp4[14] = 0x65
    frames.append(bytes(tcp4))
    tcp4[14] = 0x40
    frames.append(bytes(tcp4))
    return frames


def _truncated_frames(complete: list[bytes]) -> list[bytes]:
    """Every interesting prefix of a few frames, so loads fall off the end."""
    tcp4, tcp4_opts, arp_req = complete[5], complete[7], complete[0]
    tcp6, vlan_tcp, qinq = complete[15], complete[19], complete[22]
    out = [tcp4[:k] for k in range(40)]
    out += [tcp4_opts[:k] for k in (34, 36, 38, 39, 40, 41, 42)]
    out += [arp_req[:k] for k in (13, 14, 20, 28, 30, 31, 32, 38, 40, 41, 42)]
    out += [tcp6[:k] for k in (20, 21, 22, 25, 30, 37, 38, 45, 53, 54, 55, 56, 57, 58)]
    out += [vlan_tcp[:k] for k in (13, 15, 16, 17, 18, 27, 30, 34, 38, 42, 43, 44)]
    out += [qinq[:k] for k in (17, 18, 20, 22, 27, 36, 44, 45, 46, 47)]
    return out


def _mutated_frames(complete: list[bytes], count: int = 400) -> list[bytes]:
    """Seeded random damage: header bytes overwritten, then maybe truncated."""
    rng = random.Random(20240615)
    hot = [12, 13, 14, 16, 17, 20, 23, 26, 29, 30, 33, 34, 35, 36, 37, 38, 54, 55, 56, 57]
    out = []
    for _ in range(count):
        frame = bytearray(rng.choice(complete))
        for _ in range(rng.randint(1, 3)):
            pos = rng.choice(hot) if rng.random() < 0.7 else rng.randrange(len(frame))
            if pos < len(frame):
                frame[pos] = rng.choice([0, 1, 6, 17, 44, 58, 0x08, 0x81, 0x86, 0xDD, 0x45,
                                         0x46, 0x4F, 0xFF, rng.randrange(256)])
        if rng.random() < 0.4:
            frame = frame[:rng.randrange(len(frame) + 1)]
        out.append(bytes(frame))
    return out


COMPLETE = _complete_frames()
CORPUS = COMPLETE + _truncated_frames(COMPLETE) + _mutated_frames(COMPLETE)
N_COMPLETE = len(COMPLETE)

EXPRESSIONS = [
    "",
    "ip", "ip6", "arp", "rarp", "icmp", "icmp6", "tcp", "udp", "sctp", "vlan",
    "host 10.0.0.1", "src host 10.0.0.1", "dst host 10.0.0.2", "host 2001:db8::1",
    "dst host ff02::1", "src or dst host 10.0.0.2", "src and dst host 10.0.0.1",
    "arp host 10.0.0.2", "ip host 10.0.0.2", "arp src host 10.0.0.1",
    "net 10.0.0.0/8", "src net 192.168.0.0/16", "dst net 10.0.0.0/30", "net 10.1",
    "net 2001:db8::/32", "dst net 2001:db8:1::/48", "ip6 net fe80::/10", "net 0.0.0.0/0",
    "not dst net 2001:db8::/32", "not src host 2001:db8::1",
    "port 80", "src port 80", "dst port 53", "portrange 50-90", "port 53 or 67",
    "tcp port 80", "udp port 53", "tcp dst port 443", "udp src portrange 1-100",
    "port 80 or not 53", "host 10.0.0.1 or 10.0.0.2",
    "ether host 02:00:00:00:00:01", "ether src 02:00:00:00:00:02",
    "ether dst ff:ff:ff:ff:ff:ff", "ether broadcast", "ether src or dst 0200.0000.0003",
    "not ip", "not tcp port 80", "ip and not icmp", "icmp or arp",
    "arp or ip and tcp", "tcp or udp and host 10.0.0.1", "(tcp or udp) and not port 53",
    "!(ip6 || arp) && udp", "not (host 10.0.0.1 or host 10.0.0.2)", "not ether broadcast",
    "vlan and tcp port 80", "vlan 10", "vlan 20 and arp", "vlan and vlan 200 and udp",
    "vlan or ip", "not vlan and ip", "ip or vlan and ip", "vlan and ip6 and port 53",
    "vlan 100 and vlan 200 and dst port 53", "icmp6 or (udp and ip6)",
]


def _tcpdump_matches(pcap: Path, expr: str, optimize: bool) -> set[int]:
    """Indices of the corpus frames tcpdump keeps (frame i has timestamp BASE + i s)."""
    cmd = [TCPDUMP, "-r", str(pcap), "-w", "-"] + ([] if optimize else ["-O"])
    if expr:
        cmd.append(expr)
    res = subprocess.run(cmd, capture_output=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr.decode()
    return {(ts - BASE_TS) // 10**9 for ts, _frame in read_records(res.stdout)}


@pytest.fixture(scope="module")
def tcpdump_verdicts(tmp_path_factory: pytest.TempPathFactory
                     ) -> dict[tuple[str, bool], set[int]]:
    if TCPDUMP is None:
        pytest.skip("tcpdump not installed")
    pcap = tmp_path_factory.mktemp("capfilter") / "corpus.pcap"
    pcap.write_bytes(file_header() + b"".join(
        record(BASE_TS + i * 10**9, frame) for i, frame in enumerate(CORPUS)))
    jobs = [(expr, opt) for expr in EXPRESSIONS for opt in (False, True)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda job: _tcpdump_matches(pcap, *job), jobs))
    return dict(zip(jobs, results, strict=True))


def _ours(expr: str) -> set[int]:
    pred = compile_filter(expr)
    return {i for i, frame in enumerate(CORPUS) if pred(frame)}


def _describe(indices: set[int]) -> str:
    return ", ".join(f"#{i}{'' if i < N_COMPLETE else ' (damaged)'}: {CORPUS[i][:60].hex()}"
                     for i in sorted(indices)[:5])


@needs_tcpdump
@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_same_verdicts_as_unoptimized_tcpdump(
        expr: str, tcpdump_verdicts: dict[tuple[str, bool], set[int]]) -> None:
    """Every frame, truncated and mutated ones included: exactly tcpdump -O's set."""
    ours, theirs = _ours(expr), tcpdump_verdicts[(expr, False)]
    assert ours == theirs, (f"only ours: {_describe(ours - theirs)}; "
                            f"only tcpdump: {_describe(theirs - ours)}")


@needs_tcpdump
@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_same_verdicts_as_tcpdump_on_whole_frames(
        expr: str, tcpdump_verdicts: dict[tuple[str, bool], set[int]]) -> None:
    """What people run (optimized BPF) agrees on every frame with whole headers."""
    whole = set(range(N_COMPLETE))
    ours, theirs = _ours(expr) & whole, tcpdump_verdicts[(expr, True)] & whole
    assert ours == theirs, (f"only ours: {_describe(ours - theirs)}; "
                            f"only tcpdump: {_describe(theirs - ours)}")


def test_corpus_exercises_every_expression() -> None:
    """Guard against vacuous agreement: each non-trivial filter keeps some whole
    frames and drops others."""
    whole = set(range(N_COMPLETE))
    for expr in EXPRESSIONS:
        hits = _ours(expr) & whole
        if expr in ("", "net 0.0.0.0/0"):
            continue
        assert hits, f"{expr!r} matches no whole frame"
        assert hits != whole, f"{expr!r} matches every whole frame"


# ------------------------------------------------------------------ semantics

def _frame(pkt: object) -> bytes:
    return bytes(pkt)  # type: ignore[call-overload]


TCP80 = _frame(Ether(src=M1, dst=M2) / IP(src="10.0.0.1", dst="10.0.0.2")
               / TCP(sport=1234, dport=80))
ARP_REQ = _frame(Ether(src=M1, dst=BCAST) / ARP(psrc="10.0.0.1", pdst="10.0.0.2"))
VLAN_TCP80 = _frame(Ether(src=M1, dst=M2) / Dot1Q(vlan=7) / IP(src="10.0.0.1", dst="10.0.0.2")
                    / TCP(sport=1234, dport=80))


@pytest.mark.parametrize("expr", ["", "   ", "\t\n"])
def test_empty_expression_matches_everything(expr: str) -> None:
    pred = compile_filter(expr)
    assert pred(b"") and pred(TCP80) and pred(b"\x00")


def test_and_or_have_equal_precedence_like_tcpdump() -> None:
    """tcpdump groups `a or b and c` as `(a or b) and c` (pcap-filter(7))."""
    assert compile_filter("arp or ip and tcp")(ARP_REQ) is False
    assert compile_filter("arp or (ip and tcp)")(ARP_REQ) is True
    assert compile_filter("tcp and ip or arp")(ARP_REQ) is True
    assert compile_filter("not arp or arp")(ARP_REQ) is True      # not binds tightest


def test_protocol_then_port_is_protocol_and_port() -> None:
    udp80 = _frame(Ether() / IP() / UDP(sport=80, dport=80))
    assert compile_filter("tcp port 80")(TCP80) and not compile_filter("tcp port 80")(udp80)
    assert compile_filter("udp port 80")(udp80) and compile_filter("port 80")(udp80)


def test_vlan_shifts_later_primitives() -> None:
    assert not compile_filter("ip")(VLAN_TCP80)
    assert compile_filter("vlan and ip and port 80")(VLAN_TCP80)
    assert compile_filter("vlan 7 and tcp dst port 80")(VLAN_TCP80)
    assert not compile_filter("vlan 8 and tcp")(VLAN_TCP80)
    assert not compile_filter("vlan and ip")(TCP80)
    assert compile_filter("ether src 02:00:00:00:00:01 and vlan")(VLAN_TCP80)
    assert compile_filter("vlan and ether src 02:00:00:00:00:01")(VLAN_TCP80)   # ether fixed


def test_port_reads_after_ipv4_options() -> None:
    pkt = _frame(Ether() / IP(options=[IPOption_RR(routers=["1.2.3.4"] * 3)])
                 / TCP(sport=7, dport=8080))
    assert pkt[14] & 0x0F > 5
    assert compile_filter("dst port 8080")(pkt)
    assert not compile_filter("port 7")(pkt[:-20])               # ports cut off
    assert compile_filter("src port 7")(pkt)


def test_later_fragments_have_no_ports() -> None:
    big = IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=53, dport=53) / Raw(b"z" * 64)
    first, *rest = [_frame(Ether() / f) for f in fragment(big, fragsize=24)]
    assert compile_filter("udp port 53")(first)
    assert rest and not any(compile_filter("port 53")(f) for f in rest)
    assert all(compile_filter("udp")(f) for f in rest)          # as in tcpdump


def test_truncated_load_rejects_the_whole_filter() -> None:
    """A read past the captured bytes aborts, as in BPF: `not` does not rescue it."""
    short = TCP80[:30]                                             # dst address cut
    assert not compile_filter("host 10.0.0.2")(short)
    assert not compile_filter("not host 10.0.0.2")(short)
    assert compile_filter("host 10.0.0.1")(short)                  # src matched first
    assert not compile_filter("not ip")(b"\x00" * 13)


def test_implied_qualifiers() -> None:
    assert compile_filter("port 22 or 80")(TCP80)
    assert compile_filter("tcp dst port 22 or 80")(TCP80)
    assert not compile_filter("tcp src port 22 or 80")(TCP80)
    assert compile_filter("host 10.9.9.9 or 10.0.0.2")(TCP80)
    assert compile_filter("ether host 02:00:00:00:00:09 or 02:00:00:00:00:01")(TCP80)
    assert not compile_filter("host 10.0.0.1 and not 10.0.0.2")(TCP80)
    assert compile_filter("10.0.0.2")(TCP80) and compile_filter("src 10.0.0.1")(TCP80)


@pytest.mark.parametrize("expr", ["net 10.0.0.0/8", "net 10", "net 10.0", "net 10.0.0.2", "dst net 10.0.0.2/31"])
def test_net_forms(expr: str) -> None:
    assert compile_filter(expr)(TCP80)


@pytest.mark.parametrize("mac", ["02:00:00:00:00:01", "2:0:0:0:0:1", "02-00-00-00-00-01",
                                 "0200.0000.0001", "020000000001"])
def test_mac_forms(mac: str) -> None:
    assert compile_filter(f"ether src {mac}")(TCP80)


def test_numbers_follow_libpcap() -> None:
    """0x hex and leading-zero octal, as libpcap reads them."""
    assert compile_filter("port 0x50")(TCP80)
    assert compile_filter("port 0120")(TCP80)


def test_accepts_other_bytes_like_frames() -> None:
    for expr in ("tcp port 80", "host 10.0.0.1", "vlan or ip", "ether broadcast or ip6"):
        pred = compile_filter(expr)
        assert pred(bytearray(TCP80)) == pred(memoryview(TCP80)) == pred(TCP80)


def test_generated_code_has_no_loops_or_parsing() -> None:
    src = filter_source("tcp port 80 or host 2001:db8::1 or vlan 5 and udp")
    assert "for " not in src and "while " not in src and "import" not in src
    assert filter_source("") .strip().endswith("return True")


def test_long_and_deep_expressions_compile() -> None:
    """Long chains are flattened (no recursion limit); nesting up to the limit works."""
    many = compile_filter(" or ".join(f"host 10.0.{i // 256}.{i % 256}" for i in range(1000)))
    assert many(TCP80) and not many(ARP_REQ[:20])
    deep = compile_filter("(" * 20 + "not " * 19 + "not tcp port 80 or udp" + ")" * 20)
    assert deep(TCP80) is True                 # twenty nots cancel out


# ------------------------------------------------------------------ robustness

ROBUST_EXPRS = [e for e in EXPRESSIONS if e] + ["host ::1", "net ::/0", "src net 1.2.3.4/32"]
ROBUST_PREDS = [compile_filter(e) for e in ROBUST_EXPRS]


@SETTINGS
@given(st.binary(max_size=120))
def test_random_bytes_never_raise(frame: bytes) -> None:
    for pred in ROBUST_PREDS:
        assert pred(frame) in (True, False)


@SETTINGS
@given(st.sampled_from(COMPLETE), st.data())
def test_damaged_frames_never_raise(frame: bytes, data: st.DataObject) -> None:
    buf = bytearray(frame)
    for pos in data.draw(st.lists(st.integers(0, len(buf) - 1), max_size=6)):
        buf[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(buf)))
    for pred in ROBUST_PREDS:
        assert pred(bytes(buf[:cut])) in (True, False)


# ------------------------------------------------------------------ errors

@pytest.mark.parametrize(("expr", "pos", "words"), [
    ("port x", 5, "port number"),
    ("port", 4, "port number"),
    ("tcp and", 7, "primitive"),
    ("tcp and or udp", 8, "primitive"),
    ("(tcp or udp", 11, "')'"),
    ("tcp)", 3, "unexpected ')'"),
    ("host 1.2.3", 5, "IPv4 or IPv6 address"),
    ("host 10.0.0.1 and portrange 10-", 31, "port number after '-'"),
    ("portrange 10", 10, "port range"),
    ("net 10.0.0.1/8", 4, "non-network bits"),
    ("net 10.0.0.0/33", 4, "mask length"),
    ("ip and port 65536", 12, "> 65535"),
    ("udp host 1.2.3.4", 0, "'udp' cannot qualify 'host'"),
    ("icmp port 7", 0, "'icmp' cannot qualify 'port'"),
    ("ip6 host 10.0.0.1", 9, "IPv6"),
    ("ip host ::1", 8, "IPv4"),
    ("ether host 1:2:3", 11, "MAC address"),
    ("ether", 5, "after 'ether'"),
    ("vlan 4096", 5, "> 4095"),
    ("tcp udp", 4, "'and', 'or'"),
    ("frobnicate", 0, "primitive"),
    ("ip[9] = 6", 2, "unexpected character '['"),
    ("tcp & udp", 4, "unexpected character '&'"),
    ("not", 3, "primitive"),
    ("src", 3, "host, net, port"),
    ("port 080", 5, "port number"),
    ("(" * 41 + "tcp" + ")" * 41, 40, "nested deeper"),
    ("not " * 50 + "tcp", 160, "nested deeper"),
])
def test_errors_carry_position(expr: str, pos: int, words: str) -> None:
    with pytest.raises(FilterError) as info:
        compile_filter(expr)
    err = info.value
    assert isinstance(err, ValueError)
    assert err.pos == pos, f"{expr!r}: pos {err.pos}, expected {pos} ({err})"
    assert words in str(err)
    assert str(err).endswith(f"at column {pos + 1}")


@needs_tcpdump
@pytest.mark.parametrize("expr", ["port x", "tcp and", "(tcp or udp", "tcp)",
                                  "net 10.0.0.1/8", "udp host 1.2.3.4", "icmp port 7",
                                  "ip6 host 10.0.0.1", "vlan 4096", "tcp udp", "port 080"])
def test_tcpdump_rejects_what_we_reject(expr: str, tmp_path: Path) -> None:
    pcap = tmp_path / "empty.pcap"
    pcap.write_bytes(file_header())
    res = subprocess.run([TCPDUMP, "-r", str(pcap), "-d", expr], capture_output=True,
                         timeout=30, check=False)
    assert res.returncode != 0, f"tcpdump accepts {expr!r}"
