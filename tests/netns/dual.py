"""Side-by-side differential harness (issue 7): one kernel router and one pyrouter, built
from the SAME topology and the SAME nftables file, driven by the SAME packets, compared.

``Dual.build`` starts two ``conftest.Topology`` objects at once, one with target
"kernel" (router namespace, veths, ip_forward=1, ``nft -f FILE``) and one with target
"pyrouter" (TAPs, ``nftables: {file: FILE}``), each with its own uniquely named host
namespaces h1 (LAN, 10.0.1.2) and h2 (WAN, 10.0.2.2) carrying the same addresses; the
environment variable PYROUTER_TARGET plays no part.  Both routers and every host get
``icmp_ratelimit 0`` (the kernel's per-destination ICMP bucket would otherwise make
the answers depend on timing) and the hosts ``tcp_synack_retries 0`` (no SYN-ACK
retransmissions racing the end of a capture).

``Dual.run`` sends one *plan* (a list of steps: a raw IPv4 packet, a pause, or a scripted
TCP handshake that reads the peer's ISN from its SYN-ACK) from a host of both topologies
concurrently, through one long-lived scapy DRIVER per host, at layer 2 (so the host's
own netfilter and TCP stack never see the crafted packets).  The host drops the RSTs its
own stack would send from the crafted source ports (``CRAFTED_SPORTS``), so a scripted
handshake is not torn down under it.

Observed per target: every IPv4 packet that arrives at h1 and h2 (tcpdump, incoming
only), as normalised one-line summaries (``summary``; TCP sequence numbers relative to
the peer's ISN, IP ids dropped but for fragments) and, for pyrouter, any with a wrong
checksum (the kernel side's veths may carry CHECKSUM_PARTIAL ones); the ruleset
listing with its counters; the conntrack table (``conntrack -L`` in the kernel router
namespace, ``pyrouter conntrack -L``) with the timeouts split off (``ct_entries``).
``diff_*`` return "" when both sides agree, else a readable difference.  Cleanup
(``Dual.teardown``) tears both topologies down, also after a failure.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import difflib
import json
import os
import re
import select
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from .conftest import Capture, Port, Topology, default_ports, nsexec

TARGETS = ("kernel", "pyrouter")
CRAFTED_SPORTS = (20000, 29999)     # source ports of crafted TCP; hosts drop their own RSTs

HOST_NFT = f"""\
table inet dualhost {{
	chain output {{
		type filter hook output priority 0; policy accept;
		tcp sport {CRAFTED_SPORTS[0]}-{CRAFTED_SPORTS[1]} tcp flags rst drop
	}}
}}
"""

# Listeners on a host: TCP ports that listen and never accept (the kernel completes the
# handshake, acks data and FINs, sends nothing else), UDP ports that echo.
LISTENER = r"""
import socket, sys, threading
tcp, udp = [[int(p) for p in a.split(",") if p] for a in sys.argv[1:3]]
def sock(kind, p):
    s = socket.socket(socket.AF_INET6, kind)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)     # IPv4 too
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", p))
    return s
socks = [sock(socket.SOCK_STREAM, p) for p in tcp]
for s in socks:
    s.listen(128)
def echo(s):
    while True:
        d, a = s.recvfrom(4096)
        s.sendto(d, a)
for p in udp:
    threading.Thread(target=echo, args=(sock(socket.SOCK_DGRAM, p),), daemon=True).start()
print("up", flush=True)
threading.Event().wait()
"""

# The traffic driver, one process per host (scapy is imported once): argv = iface gw
# (the IPv4 gateway: its MAC, from ARP, is also the IPv6 one's on both targets);
# reads plans, one JSON line each ({"gap": s, "steps": [...]}), answers "done" after
# each.  Steps: {"kind": "pkt", "hex": ...}, {"kind": "sleep", "s": ...} or {"kind":
# "hs", "src", "dst", "sport", "dport", "seq", "mode"} with mode one of open (SYN, ACK),
# rst (SYN, RST), data_fin (SYN, ACK, data, FIN), data_rst (SYN, ACK, data, RST), and
# optionally "extra": [[flags, payload length], ...] sent after it, in sequence.
DRIVER = r"""
import json, sys, time
from scapy.config import conf
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether, getmacbyip
conf.verb = 0
conf.iface = sys.argv[1]
mac = None
for _ in range(10):
    mac = getmacbyip(sys.argv[2])
    if mac:
        break
if not mac:
    sys.exit("no ARP answer from " + sys.argv[2])
s = conf.L2socket(iface=sys.argv[1])
def tx(p):
    s.send(Ether(dst=mac) / p)
def run(plan):
    for st in plan["steps"]:
        if st["kind"] == "sleep":
            time.sleep(st["s"])
            continue
        if st["kind"] == "pkt":
            raw = bytes.fromhex(st["hex"])
            tx((IPv6 if raw[0] >> 4 == 6 else IP)(raw))
        else:
            handshake(st)
        time.sleep(plan["gap"])
    time.sleep(0.3)
def handshake(st):
    ip = (IPv6 if ":" in st["src"] else IP)(src=st["src"], dst=st["dst"])
    sp, dp, seq = st["sport"], st["dport"], st["seq"]
    syn = ip / TCP(sport=sp, dport=dp, flags="S", seq=seq, window=64240,
                   options=[("MSS", 1460)])
    ans = s.sr1(Ether(dst=mac) / syn, timeout=2, verbose=0)
    print(sp, "->", ans[TCP].flags if ans is not None and TCP in ans else ans, flush=True)
    if ans is None or TCP not in ans or (int(ans[TCP].flags) & 0x12) != 0x12:
        return
    isn, mode, seq = ans[TCP].seq, st["mode"], seq + 1
    seg = lambda flags, load=b"": ip / TCP(sport=sp, dport=dp, flags=flags, seq=seq,
                                             ack=isn + 1, window=64240) / load
    if mode == "rst":
        tx(ip / TCP(sport=sp, dport=dp, flags="R", seq=seq, window=0))
        return
    tx(seg("A"))
    if mode.startswith("data"):
        time.sleep(0.02)
        tx(seg("PA", b"hello\n"))
        seq += 6
        time.sleep(0.1)
    if mode.endswith("fin"):
        tx(seg("FA"))
    elif mode.endswith("rst"):
        tx(ip / TCP(sport=sp, dport=dp, flags="R", seq=seq, window=0))
    for flags, n in st.get("extra", ()):      # more segments, in sequence, ack = ISN + 1
        time.sleep(0.05)
        tx(seg(flags, b"x" * n))
        seq += n + ("F" in flags)
print("ready", flush=True)
for line in sys.stdin:
    run(json.loads(line))
    print("done", flush=True)
"""


class Driver:
    """A running DRIVER in one host namespace."""

    def __init__(self, ns: str, iface: str, gw: str, bg: list):
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", DRIVER, iface, gw],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            bufsize=0)
        bg.append(self.proc)
        self.out = b""
        self.ready = False

    def expect(self, word: bytes, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while (word + b"\n") not in self.out:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise AssertionError(f"driver: no {word!r} (rc={self.proc.poll()}):\n"
                                     f"{self.out.decode(errors='replace')}")
            if select.select([self.proc.stdout], [], [], min(left, 1.0))[0]:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                self.out += chunk
                if not chunk:
                    time.sleep(0.05)
        self.out = self.out.split(word + b"\n", 1)[1]

    def send(self, plan: dict, timeout: float) -> None:
        assert self.proc.stdin is not None
        if not self.ready:
            self.expect(b"ready", 40)
            self.ready = True
        self.proc.stdin.write(json.dumps(plan).encode() + b"\n")
        self.expect(b"done", timeout)


def both(fn: Callable[[str], Any]) -> dict[str, Any]:
    """``{target: fn(target)}`` for both targets, run concurrently."""
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        futs = {t: ex.submit(fn, t) for t in TARGETS}
        return {t: f.result() for t, f in futs.items()}


@dataclasses.dataclass
class Observed:
    """What one target showed after the traffic."""
    arrivals: dict[str, list[str]]          # host -> summaries of incoming packets
    bad_checksums: list[str]                 # summaries of arrivals with a bad checksum
    listing: str
    conntrack: list[str]                     # both families (-L, -L -f ipv6)
    log_tail: str = ""
    conntrack_default: list[str] = dataclasses.field(default_factory=list)   # plain -L


class Dual:
    """A kernel router and a pyrouter with identical hosts (h1 LAN, h2 WAN)."""

    def __init__(self, tmp: Path, ruleset: Path, config: dict | None = None,
                 ports: Callable[[], list[Port]] = default_ports):
        self.tmp = tmp
        self.make_ports = ports
        self.ruleset = ruleset
        self.config = dict(config or {})
        self.topos: dict[str, Topology] = {}
        self.caps: dict[str, dict[str, Capture]] = {}
        self.steps: dict[str, list[dict]] = {}     # host -> every step sent from it
        self.drivers: dict[tuple[str, str], Driver] = {}

    # ---- construction ------------------------------------------------------
    def build(self) -> None:
        cfg = {**self.config, "nftables": {"file": str(self.ruleset)},
               "ipv4": {"icmp_ratelimit": 0, **self.config.get("ipv4", {})},
               "ipv6": {"icmp_ratelimit": 0, **self.config.get("ipv6", {})}}
        for t in TARGETS:
            token = secrets.token_hex(4)
            ports = self.make_ports()
            for p in ports:
                p.name = f"p{token[:6]}{p.key}"
            sub = self.tmp / t
            sub.mkdir(parents=True, exist_ok=True)
            self.topos[t] = Topology(sub, token, ports, [], t, extra_config=cfg)
        both(lambda t: self.topos[t].start())
        hostnft = self.tmp / "host.nft"
        hostnft.write_text(HOST_NFT)
        knobs = ("net.ipv4.icmp_ratelimit=0", "net.ipv6.icmp.ratelimit=0",
                 "net.ipv4.tcp_synack_retries=0")
        # (the kernel target translates only ipv4: knobs; ipv6's by hand)
        nsexec(self.topos["kernel"].router_ns, "sysctl", "-qw", knobs[1], check=True)
        for topo in self.topos.values():
            for h in ("h1", "h2"):
                for knob in knobs:
                    topo.exec(h, "sysctl", "-qw", knob, check=True)
                topo.exec(h, "nft", "-f", str(hostnft), check=True)

    def listen(self, host: str, tcp: Sequence[int] = (), udp: Sequence[int] = ()) -> None:
        """Start LISTENER on *host* of both topologies (killed at teardown)."""
        def go(t: str) -> None:
            topo = self.topos[t]
            proc = subprocess.Popen(
                ["ip", "netns", "exec", topo.ns(host), sys.executable, "-c", LISTENER,
                 ",".join(map(str, tcp)), ",".join(map(str, udp))],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                stdin=subprocess.DEVNULL)
            topo._bg.append(proc)
            line = proc.stdout.readline() if proc.stdout else ""
            assert line.strip() == "up", f"listener on {host}: {line}{proc.stdout.read()}"
        both(go)

    def teardown(self) -> None:
        for caps in self.caps.values():
            for c in caps.values():
                try:
                    c.stop(settle=0)
                except BaseException:
                    pass
        errors = []
        for topo in self.topos.values():
            try:
                topo.teardown()
            except BaseException as e:   # keep tearing down the other one
                errors.append(e)
        if errors:
            raise errors[0]

    # ---- traffic -------------------------------------------------------------
    def start_captures(self) -> None:
        caps = both(lambda t: {h: self.topos[t].capture(h, "ip or ip6") for h in ("h1", "h2")})
        self.caps.update(caps)

    def start_drivers(self) -> None:
        """Spawn a DRIVER on h1 (gateway R_LAN) and h2 (R_WAN) of both topologies."""
        for t, topo in self.topos.items():
            for h, gw in (("h1", "10.0.1.1"), ("h2", "10.0.2.1")):
                self.drivers[t, h] = Driver(topo.ns(h), topo.port_of(h).name, gw, topo._bg)
        # (each answers "ready" once scapy is imported and the gateway's MAC known: the
        # first send waits for it, so the listeners start meanwhile)

    def run(self, host: str, steps: list[dict], gap: float = 0.02) -> None:
        """Send *steps* from *host* of both topologies concurrently."""
        if not self.drivers:
            self.start_drivers()
        self.steps.setdefault(host, []).extend(steps)
        timeout = 20 + len(steps) * (gap + 0.05) + 3 * sum(s["kind"] == "hs" for s in steps)
        timeout += sum(s.get("s", 0) for s in steps)
        both(lambda t: self.drivers[t, host].send({"gap": gap, "steps": steps}, timeout))

    def observe(self, tables: bool = True) -> dict[str, Observed]:
        """Stop the captures and read everything back (conntrack first: timeouts run);
        ``tables=False``: the arrivals only."""
        def ct(t: str) -> tuple[list[str], list[str]]:
            """(the table: both families, the plain ``conntrack -L``)."""
            topo = self.topos[t]
            outs = []
            for extra in ([], ["-f", "ipv6"]):
                if t == "kernel":
                    cp = nsexec(topo.router_ns, "conntrack", "-L", *extra, timeout=15)
                else:
                    cp = topo.cli("conntrack", "-L", *extra, check=False)
                assert cp.returncode == 0, f"conntrack -L on {t}: {cp.stdout}{cp.stderr}"
                outs.append([ln for ln in cp.stdout.splitlines() if ln.strip()])
            # (link-local to link-local: the harness's own DAD probe pings on pyrouter)
            default, v6 = ([ln for ln in o if not LL_PAIR.search(ln)] for o in outs)
            # (an entry in both listings once, whatever its timeout did in between)
            table = {CT_RE.sub(r"\1 \2 \4", ln.strip()): ln for ln in v6 + default}
            return sorted(table.values()), default
        conntrack = both(ct) if tables else {t: ([], []) for t in TARGETS}
        listing = both(lambda t: self.topos[t].nft_list_ruleset()) if tables \
            else {t: "" for t in TARGETS}
        out = {}
        for t, topo in self.topos.items():
            pkts = {h: self.caps[t][h].stop() for h in ("h1", "h2")}
            macs = {h: topo.mac(h).lower() for h in ("h1", "h2")}
            incoming = {h: [p for p in ps if p.src.lower() != macs[h] and not _is_ndisc(p)]
                        for h, ps in pkts.items()}
            isns = [int(p["TCP"].seq) for ps in incoming.values() for p in ps
                    if p.haslayer("TCP") and not p.haslayer("IPerror")
                    and not p.haslayer("IPerror6")
                    and int(p["TCP"].flags) & 0x12 == 0x12]
            arrivals = {h: sorted(summary(p, isns) for p in ps) for h, ps in incoming.items()}
            bad = [summary(p, isns) for ps in incoming.values() for p in ps
                   if not checksums_ok(p)] if t == "pyrouter" else []
            out[t] = Observed(arrivals, bad, listing[t], conntrack[t][0],
                              topo.log_text(limit=3000) if t == "pyrouter" else "",
                              conntrack[t][1])
        return out

    def steps_about(self, text: str) -> list[str]:
        """The sent steps whose (crafted, unique) source port or ICMP id occurs in *text*."""
        nums = set(re.findall(r"\b(\d{5})\b", text))
        out = []
        for host, steps in self.steps.items():
            for st in steps:
                key = str(st.get("sport") or st.get("tag") or "")
                if key and key in nums:
                    out.append(f"  {host} {json.dumps(st)}")
        return out


# --------------------------------------------------------------------------
# normalisation
# --------------------------------------------------------------------------

def _rel(v: int, isns: list[int]) -> str:
    for isn in isns:
        d = (v - isn) % (1 << 32)
        if d < 10_000:
            return f"ISN+{d}"
    return str(v)


def _is_ndisc(pkt: Any) -> bool:
    """IPv6 neighbour discovery, router solicitations/advertisements and MLD (hop-by-hop
    header): link housekeeping whose timing is the hosts', not the routers' verdicts."""
    from scapy.layers.inet6 import IPv6  # noqa: PLC0415

    if IPv6 not in pkt:
        return False
    nh, pl = pkt[IPv6].nh, bytes(pkt[IPv6].payload)
    return nh == 0 or (nh == 58 and bool(pl) and 130 <= pl[0] <= 143)


def summary6(pkt: Any, isns: list[int]) -> str:
    """``summary`` for IPv6: addresses, hop limit, traffic class, payload length, next
    header; then the same L4 fields, ICMPv6 type/code, echo id/seq, an error's quote."""
    from scapy.layers.inet import TCP, UDP  # noqa: PLC0415
    from scapy.layers.inet6 import IPerror6, IPv6, TCPerror, UDPerror  # noqa: PLC0415

    ip = pkt[IPv6]
    s = [f"{ip.src}>{ip.dst} hlim={ip.hlim} tc={ip.tc:#x} plen={ip.plen} nh={ip.nh}"]
    l4 = ip.payload
    if ip.nh == 6 and isinstance(l4, TCP):
        s.append(_tcp(l4, isns))
    elif ip.nh == 17 and isinstance(l4, UDP):
        s.append(f"udp {l4.sport}>{l4.dport} data={len(bytes(l4.payload))}")
    elif ip.nh == 58:
        raw = bytes(l4)
        s.append(f"icmp6 {raw[0]}/{raw[1]}" if len(raw) >= 2 else "icmp6 short")
        if len(raw) >= 8 and raw[0] in (128, 129):
            s.append(f"id={int.from_bytes(raw[4:6], 'big')} seq={int.from_bytes(raw[6:8], 'big')}")
        if IPerror6 in l4:
            q = l4[IPerror6]
            s.append(f"quote[{q.src}>{q.dst} nh={q.nh} hlim={q.hlim} plen={q.plen}")
            if TCPerror in q:
                s.append(f"tcp {q[TCPerror].sport}>{q[TCPerror].dport}]")
            elif UDPerror in q:
                s.append(f"udp {q[UDPerror].sport}>{q[UDPerror].dport}]")
            else:
                s.append("]")
        s.append(f"icmplen={len(raw)}")
    return " ".join(s)


def _tcp(t: Any, isns: list[int]) -> str:
    flags = int(t.flags)
    s = [f"tcp {t.sport}>{t.dport} [{t.flags}] seq={_rel(t.seq, isns)}"]
    if flags & 0x10:
        s.append(f"ack={_rel(t.ack, isns)}")
    s.append(f"data={len(bytes(t.payload))}")
    mss = [v for k, v in t.options if k == "MSS"]
    if mss:
        s.append(f"mss={mss[0]}")
    return " ".join(s)


def summary(pkt: Any, isns: list[int]) -> str:
    """One line per IPv4 packet: addresses, TTL, TOS, length, DF, then the L4 header
    (TCP flags, seq/ack relative to a seen ISN, payload size, MSS; UDP ports and size;
    ICMP type/code, echo id/seq, an error's quoted header).  No IP id, no checksums."""
    from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror, UDPerror  # noqa

    if IP not in pkt:
        return summary6(pkt, isns)
    ip = pkt[IP]
    s = [f"{ip.src}>{ip.dst} ttl={ip.ttl} tos={ip.tos:#x} len={ip.len} df={int(ip.flags.DF)}"]
    if ip.frag or ip.flags.MF:
        s.append(f"id={ip.id} frag={ip.frag} mf={int(ip.flags.MF)}")
    if ip.ihl > 5:
        s.append(f"opts={bytes(pkt[IP])[20:ip.ihl * 4].hex()}")
    if ip.proto == 6 and TCP in ip:
        s.append(_tcp(ip[TCP], isns))
    elif ip.proto == 17 and UDP in ip:
        u = ip[UDP]
        s.append(f"udp {u.sport}>{u.dport} data={len(bytes(u.payload))}"
                 + (" csum=0" if u.chksum == 0 else ""))
    elif ip.proto == 1 and ICMP in ip:
        c = ip[ICMP]
        s.append(f"icmp {c.type}/{c.code}")
        if c.type in (0, 8, 13, 14, 15, 16, 17, 18):
            s.append(f"id={c.id} seq={c.seq}")
        if IPerror in c:
            q = c[IPerror]
            s.append(f"quote[{q.src}>{q.dst} p={q.proto} ttl={q.ttl} len={q.len}")
            if TCPerror in q:
                s.append(f"tcp {q[TCPerror].sport}>{q[TCPerror].dport}]")
            elif UDPerror in q:
                s.append(f"udp {q[UDPerror].sport}>{q[UDPerror].dport}]")
            else:
                s.append("]")
        s.append(f"icmplen={len(bytes(c))}")
    else:
        s.append(f"proto={ip.proto}")
    return " ".join(s)


def checksums_ok(pkt: Any) -> bool:
    """The IPv4 header checksum and (unfragmented) TCP/UDP/ICMP checksum are right; for
    IPv6 the TCP/UDP/ICMPv6 one."""
    from scapy.layers.inet import ICMP, IP, TCP, UDP  # noqa: PLC0415
    from scapy.layers.inet6 import IPv6  # noqa: PLC0415

    if IP not in pkt:
        raw = bytes(pkt[IPv6])[:40 + pkt[IPv6].plen]
        fresh6 = IPv6(raw)
        l4 = fresh6.payload
        if fresh6.nh in (6, 17, 58) and hasattr(l4, "cksum"):
            del l4.cksum
        elif fresh6.nh in (6, 17) and hasattr(l4, "chksum"):
            del l4.chksum
        return bytes(fresh6) == raw
    raw = bytes(pkt[IP])[:pkt[IP].len]
    fresh = IP(raw)
    del fresh.chksum
    if not (fresh.frag or fresh.flags.MF):
        for cls in (TCP, UDP, ICMP):
            if cls in fresh and not (cls is UDP and fresh[UDP].chksum == 0):
                del fresh[cls].chksum
                break
    return bytes(fresh) == raw


LL_PAIR = re.compile(r"src=fe80:\S* dst=fe80:")
CT_RE = re.compile(r"^(\S+)\s+(\d+)\s+(\d+)\s+(.*)$")


def ct_entries(lines: list[str]) -> list[tuple[str, int]]:
    """``conntrack -L`` lines as (line without its timeout, timeout)."""
    out = []
    for ln in lines:
        m = CT_RE.match(ln.strip())
        if not m:
            out.append((ln.strip(), -1))
            continue
        out.append((f"{m.group(1)} {m.group(2)} " + " ".join(m.group(4).split()),
                    int(m.group(3))))
    return sorted(out)


# --------------------------------------------------------------------------
# comparisons: "" when equal
# --------------------------------------------------------------------------

def diff_multiset(kernel: list[str], ours: list[str]) -> str:
    k, p = collections.Counter(kernel), collections.Counter(ours)
    only_k, only_p = k - p, p - k
    if not only_k and not only_p:
        return ""
    lines = [f"  kernel only  {n}x {s}" for s, n in sorted(only_k.items())]
    lines += [f"  pyrouter only {n}x {s}" for s, n in sorted(only_p.items())]
    return "\n".join(lines)


def diff_arrivals(obs: dict[str, Observed], dual: Dual | None = None) -> str:
    out = []
    for h in ("h1", "h2"):
        d = diff_multiset(obs["kernel"].arrivals[h], obs["pyrouter"].arrivals[h])
        if d:
            out.append(f"packets arriving at {h} differ:\n{d}")
            if dual is not None:
                about = dual.steps_about(d)
                if about:
                    out.append("steps involved:\n" + "\n".join(about))
    if obs["pyrouter"].bad_checksums:
        out.append("pyrouter delivered packets with bad checksums:\n  "
                   + "\n  ".join(obs["pyrouter"].bad_checksums))
    return "\n".join(out)


def diff_listing(obs: dict[str, Observed]) -> str:
    k, p = obs["kernel"].listing, obs["pyrouter"].listing
    if k == p:
        return ""
    return "nft list ruleset differs (counters):\n" + "".join(difflib.unified_diff(
        k.splitlines(True), p.splitlines(True), "kernel", "pyrouter"))


def diff_conntrack(obs: dict[str, Observed], slack: int = 4) -> str:
    """Same entries (protocol, state, tuples, flags) and timeouts within *slack* s; an
    entry on one side only is forgiven when its timeout is within *slack* of 0 (it may
    have expired on the other side between the two listings)."""
    k, p = ct_entries(obs["kernel"].conntrack), ct_entries(obs["pyrouter"].conntrack)
    kd: dict[str, list[int]] = collections.defaultdict(list)
    pd: dict[str, list[int]] = collections.defaultdict(list)
    for key, tmo in k:
        kd[key].append(tmo)
    for key, tmo in p:
        pd[key].append(tmo)
    out = []
    for key in sorted(set(kd) | set(pd)):
        a, b = sorted(kd.get(key, [])), sorted(pd.get(key, []))
        for x, y in zip(a, b):
            if abs(x - y) > slack:
                out.append(f"  timeout kernel {x} pyrouter {y}: {key}")
        for x in a[len(b):]:
            if x > slack:
                out.append(f"  kernel only    (timeout {x}) {key}")
        for y in b[len(a):]:
            if y > slack:
                out.append(f"  pyrouter only  (timeout {y}) {key}")
    return "conntrack tables differ:\n" + "\n".join(out) if out else ""


def build_dual(tmp: Path, ruleset: Path, config: dict | None = None,
               ports: Callable[[], list[Port]] = default_ports) -> Dual:
    """A started Dual; on a failed start, whatever was built is torn down."""
    d = Dual(tmp, ruleset, config, ports)
    try:
        d.build()
    except BaseException:
        try:
            d.teardown()
        except BaseException:
            pass
        raise
    return d

