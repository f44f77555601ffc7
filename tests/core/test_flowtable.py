"""The per-flow fast path (core/netfilter/flowtable.py) against the slow path: two routers
with the same ruleset get the same frames at the same virtual times, one with per-flow
entries and one without (``nf.flow4 = nf.flow6 = False``); every output frame, every
rule counter and every conntrack entry must be the same, while the first router serves
most packets of established flows from its entries."""

from __future__ import annotations

import random
import struct

import pytest

from pyrouter.core.netfilter.conntrack import entry_line
from pyrouter.core.netfilter.hooks import Hook, HookEntry, NF_ACCEPT
from pyrouter.core.time import SECOND

from .helpers import (H1, H1B, H2, LAN, TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, WAN,
                      checksum, frame_from, ipv4, tcp, udp)
from .test_nat import WAN_IP, _net, ruleset

FWD = """
    ct state invalid counter drop
    tcp dport 1-79 counter drop
    tcp dport { 81, 82, 3000-3999 } counter drop
    udp dport 5000 counter drop
    ct state established,related counter accept
    iifname "lan0" ct state new counter accept
    counter drop
"""
MASQ_FW = ruleset(post='oifname "wan0" counter masquerade', fwd=FWD)


class Pair:
    """Router *a* with per-flow entries, router *b* without; the same input to both."""

    def __init__(self, rs: str) -> None:
        self.a = _net(rs)
        self.b = _net(rs)
        self.b.router.nf.flow4 = self.b.router.nf.flow6 = False
        for net in (self.a, self.b):
            net.reachable(H1B)
        self.now = 0

    def send(self, port: int, frame: bytes, dt: int = 0) -> list[tuple[int, bytes]]:
        self.now += dt
        oa = self.a.send(port, frame, at=self.now)
        ob = self.b.send(port, frame, at=self.now)
        assert oa == ob, (frame.hex(), oa, ob)
        return oa

    def tick(self, dt: int) -> None:
        self.now += dt
        assert self.a.run_until(self.now) == self.b.run_until(self.now)

    def same_state(self) -> None:
        ra, rb = self.a.router, self.b.router
        assert ra.nf.ruleset.list() == rb.nf.ruleset.list()          # every rule counter
        la = sorted(entry_line(c, self.now) + f" {c.packets} {c.bytes}"
                    for c in ra.nf.conntrack.entries())
        lb = sorted(entry_line(c, self.now) + f" {c.packets} {c.bytes}"
                    for c in rb.nf.conntrack.entries())
        assert la == lb
        assert ra.counters.drop_dict() == rb.counters.drop_dict()
        sa, sb = ra.snapshot(), rb.snapshot()
        assert sa["snmp"]["IpForwDatagrams"] == sb["snmp"]["IpForwDatagrams"]
        assert [(p.tx_packets, p.tx_bytes) for p in ra.ports.values()] == \
            [(p.tx_packets, p.tx_bytes) for p in rb.ports.values()]
        assert ra.flow_mismatch == 0


def seg(src: str, dst: str, sport: int, dport: int, flags: int, seq: int, ack: int,
        data: bytes = b"", *, ttl: int = 64, ident: int = 1, tos: int = 0) -> bytes:
    return ipv4(src, dst, tcp(src, dst, sport=sport, dport=dport, flags=flags, seq=seq,
                              ack=ack, data=data), proto=6, ttl=ttl, ident=ident, tos=tos)


def handshake(p: Pair, host=H1, sport: int = 40000, dport: int = 80) -> None:
    p.send(LAN, frame_from(host, seg(host.ip, H2.ip, sport, dport, TCP_SYN, 100, 0)))
    p.send(WAN, frame_from(H2, seg(H2.ip, WAN_IP, dport, sport, TCP_SYN | TCP_ACK, 500, 101)))
    p.send(LAN, frame_from(host, seg(host.ip, H2.ip, sport, dport, TCP_ACK, 101, 501)))


def test_masqueraded_tcp_flow_is_served_per_flow_and_identically() -> None:
    p = Pair(MASQ_FW)
    handshake(p)
    a = p.a.router
    for i in range(40):
        fl = TCP_ACK | (TCP_PSH if i % 3 else 0)
        data = bytes([i]) * (i * 7 % 300)
        if i % 2:
            out = p.send(LAN, frame_from(H1, seg(H1.ip, H2.ip, 40000, 80, fl, 101 + i, 501,
                                                 data, ident=i, ttl=64 - i % 5)), dt=SECOND)
            assert out[0][0] == WAN
        else:
            out = p.send(WAN, frame_from(H2, seg(H2.ip, WAN_IP, 80, 40000, fl, 501 + i, 101,
                                                 data, ident=1000 + i)), dt=SECOND)
            assert out[0][0] == LAN
    assert a.flow_forwarded >= 34                  # all but the first of each direction/flags
    assert a.snapshot()["flow_entries"] == 2
    p.same_state()
    # Closing: FIN and RST take the slow path and move the state machine.
    p.send(LAN, frame_from(H1, seg(H1.ip, H2.ip, 40000, 80, TCP_FIN | TCP_ACK, 200, 600)))
    p.send(WAN, frame_from(H2, seg(H2.ip, WAN_IP, 80, 40000, TCP_FIN | TCP_ACK, 600, 201)))
    p.send(LAN, frame_from(H1, seg(H1.ip, H2.ip, 40000, 80, TCP_ACK, 201, 601)))
    assert "TIME_WAIT" in entry_line(a.nf.conntrack.entries()[0], p.now)
    n = a.flow_forwarded
    p.send(LAN, frame_from(H1, seg(H1.ip, H2.ip, 40000, 80, TCP_ACK, 201, 601)))
    assert a.flow_forwarded == n                   # the entry was for ESTABLISHED only
    p.same_state()


@pytest.mark.parametrize("seed", range(6))
def test_random_traffic_gets_the_same_answers_with_and_without_flow_entries(seed: int) -> None:
    """Established TCP and UDP flows, then seeded random packets on them: any flags,
    TTL 1/2, TOS, bad checksums, fragments, truncation, time jumps, a killed entry."""
    rnd = random.Random(seed)
    p = Pair(MASQ_FW)
    handshake(p, H1, 40000, 80)
    handshake(p, H1B, 40001, 443)
    flows = [(H1, 40000, 80, 6), (H1B, 40001, 443, 6), (H1, 41000, 53, 17), (H1B, 41001, 123, 17)]
    for h, sp, dp, pr in flows[2:]:                # UDP: a reply, then > 2 s: ASSURED
        p.send(LAN, frame_from(h, ipv4(h.ip, H2.ip, udp(h.ip, H2.ip, sport=sp, dport=dp),
                                       proto=17)))
        p.send(WAN, frame_from(H2, ipv4(H2.ip, WAN_IP, udp(H2.ip, WAN_IP, sport=dp, dport=sp),
                                        proto=17)))
    p.tick(3 * SECOND)
    flags = [TCP_ACK] * 16 + [TCP_ACK | TCP_PSH] * 8 + [TCP_FIN | TCP_ACK, TCP_RST, TCP_SYN,
                                                       TCP_ACK | 0x20, 0, TCP_SYN | TCP_ACK]
    for i in range(400):
        h, sp, dp, pr = rnd.choice(flows)
        data = bytes(rnd.randrange(256) for _ in range(rnd.choice([0, 1, 20, 200])))
        ttl = rnd.choice([64] * 8 + [1, 2])
        tos = rnd.choice([0] * 8 + [0x10, 0x04])
        up = rnd.random() < 0.5
        src, dst = (h.ip, H2.ip) if up else (H2.ip, WAN_IP)
        s, d = (sp, dp) if up else (dp, sp)
        if pr == 6:
            l4 = tcp(src, dst, sport=s, dport=d, flags=rnd.choice(flags),
                     seq=rnd.getrandbits(32), ack=rnd.getrandbits(32), data=data)
        else:
            l4 = udp(src, dst, sport=s, dport=d, data=data,
                     csum=0 if rnd.random() < 0.2 else None)
        l3 = bytearray(ipv4(src, dst, l4, proto=pr, ttl=ttl, tos=tos, ident=i))
        r = rnd.random()
        if r < 0.04:
            l3[10] ^= 0x40                         # bad header checksum
        elif r < 0.07:
            l3[6] |= 0x20                          # MF: a first fragment
            l3[10:12] = b"\0\0"
            l3[10:12] = struct.pack("!H", checksum(bytes(l3[:20])))
        elif r < 0.10:
            l3[2:4] = struct.pack("!H", len(l3) + 10)   # claims more than the frame holds
            l3[10:12] = b"\0\0"
            l3[10:12] = struct.pack("!H", checksum(bytes(l3[:20])))
        elif r < 0.11:
            for net in (p.a, p.b):                 # the entry dies (as conntrack -D would)
                for c in net.router.nf.conntrack.entries():
                    if c.orig[4] == sp:
                        net.router.nf.conntrack.kill(c)
        host = h if up else H2
        p.send(LAN if up else WAN, frame_from(host, bytes(l3)),
               dt=rnd.choice([0] * 10 + [10**6, SECOND, 40 * SECOND]))
        if i % 50 == 0:
            p.same_state()
    p.same_state()
    assert p.a.router.flow_forwarded > 40


def test_a_rule_reading_a_per_packet_field_keeps_the_flow_on_the_slow_path() -> None:
    p = Pair(ruleset(post='oifname "wan0" masquerade',
                     fwd="meta length > 1000 counter\n" + FWD))
    handshake(p)
    for i in range(10):
        p.send(LAN, frame_from(H1, seg(H1.ip, H2.ip, 40000, 80, TCP_ACK, 101 + i, 501,
                                       b"x" * (i * 150))))
    assert p.a.router.flow_forwarded == 0
    assert p.a.router.snapshot()["flow_entries"] == 0
    p.same_state()


def test_limit_and_log_are_not_replayed_but_counters_and_marks_are() -> None:
    rs = ruleset(post='oifname "wan0" masquerade',
                 fwd='tcp dport 80 ct mark set 7 meta mark set 3 counter\n'
                     'ct mark 7 counter accept\n' + FWD)
    p = Pair(rs)
    handshake(p)
    for i in range(6):
        p.send(LAN, frame_from(H1, seg(H1.ip, H2.ip, 40000, 80, TCP_ACK, 101 + i, 501)))
    assert p.a.router.flow_forwarded == 5
    p.same_state()
    p2 = Pair(ruleset(post='oifname "wan0" masquerade',
                      fwd='tcp dport 80 limit rate 100/second counter\n' + FWD))
    handshake(p2)
    for i in range(6):
        p2.send(LAN, frame_from(H1, seg(H1.ip, H2.ip, 40000, 80, TCP_ACK, 101 + i, 501)))
    assert p2.a.router.flow_forwarded == 0
    p2.same_state()


def test_a_non_flow_safe_entry_turns_the_per_flow_path_off() -> None:
    net = _net(MASQ_FW)
    nf = net.router.nf
    assert nf.flow4 and nf.flow6
    e = nf.register(4, Hook.FORWARD, HookEntry(lambda pkt, st: NF_ACCEPT, 10, "a plugin"))
    assert not nf.flow4 and nf.flow6
    nf.unregister(e)
    assert nf.flow4


def test_stateless_ruleset_flows_without_conntrack() -> None:
    rules = "\n".join(f"    tcp dport {1000 + i} counter drop" for i in range(99))
    rs = ("table ip filter {\n  chain forward {\n    type filter hook forward priority 0; "
          "policy accept;\n" + rules + "\n    counter accept\n  }\n}\n")
    p = Pair(rs)
    assert not p.a.router.nf.ct_registered(4)
    for i in range(20):
        p.send(LAN, frame_from(H1, ipv4(H1.ip, H2.ip, udp(H1.ip, H2.ip, sport=7000, dport=9),
                                        proto=17, ident=i)))
        p.send(LAN, frame_from(H1, seg(H1.ip, H2.ip, 7001, 1050, TCP_ACK, i, 0)))  # dropped
    assert p.a.router.flow_forwarded == 19
    p.same_state()


def test_reload_or_a_route_change_clears_the_entries() -> None:
    p = Pair(MASQ_FW)
    handshake(p)
    p.send(LAN, frame_from(H1, seg(H1.ip, H2.ip, 40000, 80, TCP_ACK, 101, 501)))
    r = p.a.router
    assert r.snapshot()["flow_entries"] == 1
    r.nf.register(4, Hook.LOCAL_IN, HookEntry(lambda pkt, st: NF_ACCEPT, 0, "x",
                                                flow_safe=True))
    assert r.snapshot()["flow_entries"] == 0


def test_ipv6_masqueraded_udp_flow() -> None:
    from .helpers6 import CONFIG6, H1 as A, H2 as B, R_IP6, Net6, frame6, ip6, na_pkt, udp6
    from .test_nat import NAT6
    rs = NAT6 + """\
    table inet filter {
      chain forward {
        type filter hook forward priority filter; policy drop;
        ct state established counter accept
        ct state new counter accept
      }
    }
"""
    nets = []
    for flows in (True, False):
        net = Net6(config=CONFIG6 + rs)
        net.ready()
        for h in (A, B):
            net.learn6(h)
            net.send(h.port, frame6(h, na_pkt(h.ip, R_IP6[h.port], h.ip, s=True, tll=h.mac)))
        if not flows:
            net.router.nf.flow4 = net.router.nf.flow6 = False
        nets.append(net)
    r_wan = R_IP6[WAN]
    t = nets[0].now
    for i in range(30):
        t += SECOND
        if i % 2 == 0:
            l3 = ip6(A.ip, B.ip, 17, udp6(A.ip, B.ip, sport=4000, dport=53, data=bytes(i)))
            port, fr = LAN, frame6(A, l3)
        else:
            l3 = ip6(B.ip, r_wan, 17, udp6(B.ip, r_wan, sport=53, dport=4000, data=bytes(i)))
            port, fr = WAN, frame6(B, l3)
        outs = [n.send(port, fr, at=t) for n in nets]
        assert outs[0] == outs[1]
        assert len(outs[0]) == 1
    ra, rb = nets[0].router, nets[1].router
    assert ra.flow_forwarded6 >= 20
    assert ra.nf.ruleset.list() == rb.nf.ruleset.list()
    assert [entry_line(c, t) for c in ra.nf.conntrack.entries()] == \
        [entry_line(c, t) for c in rb.nf.conntrack.entries()]
    assert ra.flow_mismatch == 0


def _windows(net) -> list[tuple[int, ...]]:
    return [(s.td_end, s.td_maxend, s.td_maxwin, s.td_maxack, s.td_scale, s.flags)
            for c in net.router.nf.conntrack.entries() for s in c.tcp.seen]


def test_cached_tcp_flow_keeps_conntrack_window_tracking() -> None:
    """In-window data both ways is served per flow and leaves the same td_* state as the
    slow path; a segment far beyond the window is INVALID on both (the slow path decides,
    `ct state invalid counter drop` drops it) and the flow goes on."""
    p = Pair(MASQ_FW)
    handshake(p)
    a_seq, b_seq = 101, 501
    for i in range(30):
        data = bytes([i]) * (100 + i)
        if i % 2 == 0:
            out = p.send(LAN, frame_from(H1, seg(H1.ip, H2.ip, 40000, 80, TCP_ACK | TCP_PSH,
                                                 a_seq, b_seq, data, ident=i)), dt=10**6)
            a_seq += len(data)
        else:
            out = p.send(WAN, frame_from(H2, seg(H2.ip, WAN_IP, 80, 40000, TCP_ACK | TCP_PSH,
                                                 b_seq, a_seq, data, ident=500 + i)), dt=10**6)
            b_seq += len(data)
        assert len(out) == 1
    assert p.a.router.flow_forwarded >= 26
    assert _windows(p.a) == _windows(p.b)
    p.same_state()
    n = p.a.router.flow_forwarded
    bad = seg(H1.ip, H2.ip, 40000, 80, TCP_ACK | TCP_PSH, (a_seq + 2**30) & 0xFFFFFFFF, b_seq,
              b"evil")
    assert p.send(LAN, frame_from(H1, bad)) == []
    assert p.a.router.flow_forwarded == n          # the slow path decided
    assert p.a.router.nf.conntrack.stats["invalid"] == p.b.router.nf.conntrack.stats["invalid"] > 0
    out = p.send(LAN, frame_from(H1, seg(H1.ip, H2.ip, 40000, 80, TCP_ACK | TCP_PSH, a_seq,
                                         b_seq, b"ok")))
    assert len(out) == 1 and p.a.router.flow_forwarded == n + 1
    assert _windows(p.a) == _windows(p.b)
    p.same_state()
