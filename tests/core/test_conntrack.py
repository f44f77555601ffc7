"""Connection tracking (core/netfilter/conntrack.py) on crafted frames and virtual time:
tuples and states (NEW, ESTABLISHED, RELATED, INVALID, UNTRACKED), the TCP state machine
and its timeouts, UDP assured, ICMP echo, RELATED ICMP errors, confirm on exit only,
the bounded table with early drop, and the nft ct matches and statements."""

from __future__ import annotations

import pytest

from pyrouter.core.netfilter.conntrack import IPS_ASSURED, TCP_STATE_NAMES, entry_line

from .helpers import (H1, H2, LAN, SECOND, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, WAN, echo,
                      frame_from, icmp, ipv4, tcp, udp)
from .test_netfilter_nft import nft_net

STATEFUL = """
table inet filter {
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related counter accept
    ct state invalid counter drop
    iifname "lan0" ct state new counter accept
  }
}
"""


def _net(ruleset: str = STATEFUL, extra: str = ""):
    net = nft_net(ruleset, extra)
    lan = net.router.ports[LAN].name
    if lan != "lan0":
        net = nft_net(ruleset.replace('"lan0"', f'"{lan}"'), extra)
    return net


def seg(net, src_host, dst_host, sport, dport, flags, seq=1000, ack=0, at=None):
    l3 = ipv4(src_host.ip, dst_host.ip, tcp(src_host.ip, dst_host.ip, sport=sport, dport=dport,
                                            flags=flags, seq=seq, ack=ack), proto=6)
    return net.send(src_host.port, frame_from(src_host, l3), at=at)


def only(net):
    es = net.router.nf.conntrack.entries()
    assert len(es) == 1, es
    return es[0]


def test_tcp_handshake_to_established_and_listing() -> None:
    net = _net()
    ct = net.router.nf.conntrack
    assert len(seg(net, H1, H2, 40000, 80, TCP_SYN)) == 1
    c = only(net)
    assert TCP_STATE_NAMES[c.tcp_state] == "SYN_SENT"
    assert (c.deadline - net.now) == 120 * SECOND
    # From WAN a SYN (NEW, not from LAN) is dropped by the policy, no entry confirmed.
    assert seg(net, H2, H1, 80, 40001, TCP_SYN) == []
    assert len(ct) == 1
    assert len(seg(net, H2, H1, 80, 40000, TCP_SYN | TCP_ACK, seq=5000, ack=1001)) == 1
    assert TCP_STATE_NAMES[c.tcp_state] == "SYN_RECV" and not c.status & IPS_ASSURED
    assert len(seg(net, H1, H2, 40000, 80, TCP_ACK, seq=1001, ack=5001)) == 1
    assert TCP_STATE_NAMES[c.tcp_state] == "ESTABLISHED" and c.status & IPS_ASSURED
    assert c.deadline - net.now == 432000 * SECOND
    line = entry_line(c, net.now + SECOND // 2)
    assert line == (f"tcp      6 431999 ESTABLISHED src={H1.ip} dst={H2.ip} sport=40000 "
                    f"dport=80 src={H2.ip} dst={H1.ip} sport=80 dport=40000 [ASSURED] "
                    "mark=0 use=1")
    assert ct.stats["insert"] == 1 and ct.stats["found"] >= 2


def test_fin_path_and_time_wait_expiry_through_timers() -> None:
    net = _net()
    ct = net.router.nf.conntrack
    seg(net, H1, H2, 40000, 80, TCP_SYN)
    seg(net, H2, H1, 80, 40000, TCP_SYN | TCP_ACK, seq=5000, ack=1001)
    seg(net, H1, H2, 40000, 80, TCP_ACK, seq=1001, ack=5001)
    c = only(net)
    steps = [(H1, H2, 40000, 80, TCP_FIN | TCP_ACK, "FIN_WAIT", 120),
             (H2, H1, 80, 40000, TCP_ACK, "CLOSE_WAIT", 60),
             (H2, H1, 80, 40000, TCP_FIN | TCP_ACK, "LAST_ACK", 30),
             (H1, H2, 40000, 80, TCP_ACK, "TIME_WAIT", 120)]
    for a, b, sp, dp, fl, state, timeout in steps:
        assert len(seg(net, a, b, sp, dp, fl)) == 1
        assert TCP_STATE_NAMES[c.tcp_state] == state
        assert c.deadline - net.now == timeout * SECOND
    t0 = net.now
    net.run_until(t0 + 119 * SECOND)
    assert len(ct) == 1
    net.run_until(t0 + 121 * SECOND)
    assert len(ct) == 0
    # Gone: a late ACK from WAN is now NEW (loose pickup) from WAN: dropped.
    assert seg(net, H2, H1, 80, 40000, TCP_ACK) == []


def test_rst_closes_and_rst_as_only_reply_kills() -> None:
    net = _net()
    ct = net.router.nf.conntrack
    seg(net, H1, H2, 40000, 80, TCP_SYN)
    assert len(ct) == 1
    assert len(seg(net, H2, H1, 80, 40000, TCP_RST | TCP_ACK, seq=0, ack=1001)) == 1
    assert len(ct) == 0                        # reply was only a RST: entry deleted
    seg(net, H1, H2, 40001, 80, TCP_SYN)
    seg(net, H2, H1, 80, 40001, TCP_SYN | TCP_ACK, seq=5000, ack=1001)
    seg(net, H1, H2, 40001, 80, TCP_ACK, seq=1001, ack=5001)
    c = only(net)
    assert len(seg(net, H1, H2, 40001, 80, TCP_RST, seq=1001)) == 1
    assert TCP_STATE_NAMES[c.tcp_state] == "CLOSE" and c.deadline - net.now == 10 * SECOND
    net.run_until(net.now + 11 * SECOND)
    assert len(ct) == 0


def test_syn_in_time_wait_reopens() -> None:
    net = _net()
    ct = net.router.nf.conntrack
    seg(net, H1, H2, 40000, 80, TCP_SYN)
    seg(net, H2, H1, 80, 40000, TCP_SYN | TCP_ACK, seq=5000, ack=1001)
    seg(net, H1, H2, 40000, 80, TCP_RST, seq=1001)
    old = only(net)
    assert len(seg(net, H1, H2, 40000, 80, TCP_SYN, seq=9000)) == 1
    new = only(net)
    assert new is not old and TCP_STATE_NAMES[new.tcp_state] == "SYN_SENT"
    assert len(ct) == 1


def test_invalid_tcp() -> None:
    net = _net()
    ct = net.router.nf.conntrack
    # SYN+FIN is not a valid flag combination; a SYN/ACK or FIN without an entry neither.
    for fl in (TCP_SYN | TCP_FIN, TCP_SYN | TCP_ACK, TCP_FIN | TCP_ACK, 0):
        assert seg(net, H1, H2, 40000, 80, fl) == []
    assert ct.stats["invalid"] == 4 and len(ct) == 0
    rows = net.router.nf.ruleset.counters()
    assert rows[1]["packets"] == 4                 # ct state invalid counter drop
    # A SYN/ACK in the original direction of an entry in SYN_SENT is invalid too.
    seg(net, H1, H2, 40000, 80, TCP_SYN)
    assert seg(net, H1, H2, 40000, 80, TCP_SYN | TCP_ACK) == []
    assert ct.stats["invalid"] == 5


def test_udp_unreplied_then_assured() -> None:
    net = _net()
    ct = net.router.nf.conntrack

    def u(a, b, sp, dp, at):
        l3 = ipv4(a.ip, b.ip, udp(a.ip, b.ip, sport=sp, dport=dp), proto=17)
        return net.send(a.port, frame_from(a, l3), at=at)

    assert len(u(H1, H2, 5000, 53, 0)) == 1
    c = only(net)
    assert c.deadline == 30 * SECOND
    assert "[UNREPLIED]" in entry_line(c, net.now)
    assert len(u(H2, H1, 53, 5000, SECOND)) == 1
    assert c.deadline - net.now == 30 * SECOND and not c.status & IPS_ASSURED
    assert len(u(H1, H2, 5000, 53, 3 * SECOND)) == 1          # after the 2 s stream delay
    assert c.deadline - net.now == 120 * SECOND and c.status & IPS_ASSURED
    assert "[ASSURED]" in entry_line(c, net.now) and "UNREPLIED" not in entry_line(c, net.now)
    # WAN cannot open a new flow.
    assert u(H2, H1, 53, 5001, 4 * SECOND) == []
    net.run_until(net.now + 121 * SECOND)
    assert len(ct) == 0


def test_icmp_echo_and_reply_without_request_invalid() -> None:
    net = _net()
    ct = net.router.nf.conntrack
    req = ipv4(H1.ip, H2.ip, echo(ident=77), proto=1)
    rep = ipv4(H2.ip, H1.ip, echo(ident=77, reply=True), proto=1)
    assert net.send(WAN, frame_from(H2, rep)) == []            # no request yet: INVALID
    assert ct.stats["invalid"] == 1
    assert len(net.send(LAN, frame_from(H1, req))) == 1
    c = only(net)
    assert entry_line(c, net.now).startswith(f"icmp     1 30 src={H1.ip} dst={H2.ip} "
                                             "type=8 code=0 id=77 [UNREPLIED] src=")
    assert len(net.send(WAN, frame_from(H2, rep))) == 1
    assert f"src={H2.ip} dst={H1.ip} type=0 code=0 id=77 mark=0" in entry_line(c, net.now)
    net.run_until(31 * SECOND)
    assert len(ct) == 0


def test_icmp_error_about_a_tracked_connection_is_related() -> None:
    net = _net()
    out = seg(net, H1, H2, 40000, 80, TCP_SYN)
    fwd = out[0][1][14:]                                        # the SYN as forwarded
    err = ipv4(H2.ip, H1.ip, icmp(3, 1, data=fwd[:28]), proto=1)
    assert len(net.send(WAN, frame_from(H2, err))) == 1         # RELATED: accepted
    rows = net.router.nf.ruleset.counters()
    assert rows[0]["packets"] == 1
    # The same error about a connection that does not exist: INVALID, dropped.
    other = ipv4(H1.ip, H2.ip, tcp(H1.ip, H2.ip, sport=41000, dport=80), proto=6)
    err2 = ipv4(H2.ip, H1.ip, icmp(3, 1, data=other[:28]), proto=1)
    assert net.send(WAN, frame_from(H2, err2)) == []


def test_confirmed_only_when_the_packet_leaves() -> None:
    # A drop at FORWARD (after conntrack in PREROUTING) leaves no entry behind.
    net = _net("""
        table ip filter {
          chain forward {
            type filter hook forward priority filter; policy accept;
            tcp dport 23 ct state new drop
          }
        }
    """)
    ct = net.router.nf.conntrack
    assert seg(net, H1, H2, 40000, 23, TCP_SYN) == []
    assert len(ct) == 0 and ct.stats["insert"] == 0
    assert len(seg(net, H1, H2, 40000, 22, TCP_SYN)) == 1
    assert len(ct) == 1 and ct.stats["insert"] == 1


def test_table_full_early_drop_then_drop() -> None:
    net = _net(extra="conntrack:\n  max: 2\n")
    ct = net.router.nf.conntrack
    assert ct.max == 2
    for sp in (1, 2):
        seg(net, H1, H2, sp, 80, TCP_SYN)
    assert len(ct) == 2
    seg(net, H1, H2, 3, 80, TCP_SYN)                           # evicts the oldest (sport 1)
    assert len(ct) == 2 and ct.stats["early_drop"] == 1
    assert sorted(c.orig[4] for c in ct.entries()) == [2, 3]
    # Make both assured: nothing can go, a new connection is dropped and counted.
    for sp in (2, 3):
        seg(net, H2, H1, 80, sp, TCP_SYN | TCP_ACK, seq=5000, ack=1001)
        seg(net, H1, H2, sp, 80, TCP_ACK, seq=1001, ack=5001)
    assert all(c.status & IPS_ASSURED for c in ct.entries())
    assert seg(net, H1, H2, 4, 80, TCP_SYN) == []
    assert ct.stats["drop"] == 1 and net.drops()["ct_table_full"] == 1
    # established flows still pass
    assert len(seg(net, H1, H2, 2, 80, TCP_ACK, seq=1001, ack=5001)) == 1


def test_ct_mark_direction_status_and_notrack() -> None:
    net = _net("""
        table inet t {
          chain raw {
            type filter hook prerouting priority raw; policy accept;
            udp dport 9999 notrack
          }
          chain forward {
            type filter hook forward priority filter; policy accept;
            ct state new ct mark set 0x2a
            ct mark 0x2a ct direction reply ct status assured counter
            ct direction reply counter
            ct state untracked counter drop
          }
        }
    """)
    ct = net.router.nf.conntrack
    seg(net, H1, H2, 40000, 80, TCP_SYN)
    c = only(net)
    assert c.mark == 0x2a and "mark=42 use=1" in entry_line(c, net.now)
    seg(net, H2, H1, 80, 40000, TCP_SYN | TCP_ACK, seq=5000, ack=1001)
    seg(net, H1, H2, 40000, 80, TCP_ACK, seq=1001, ack=5001)
    seg(net, H2, H1, 80, 40000, TCP_ACK, seq=5001, ack=1001)
    rows = net.router.nf.ruleset.counters()
    assert [r["packets"] for r in rows] == [1, 2, 0]
    l3 = ipv4(H1.ip, H2.ip, udp(H1.ip, H2.ip, sport=1, dport=9999), proto=17)
    assert net.send(LAN, frame_from(H1, l3)) == []
    assert len(ct) == 1
    assert "ct state new ct mark set 0x0000002a" in net.router.nf.ruleset.list()


def test_plain_forwarding_runs_no_conntrack() -> None:
    from .test_netfilter_nft import FIREWALL  # noqa: PLC0415
    net = nft_net(FIREWALL)
    assert not any(e.name == "nf_conntrack_in" for e in net.router.nf.v4[0])
    seg(net, H1, H2, 40000, 80, TCP_SYN)
    assert len(net.router.nf.conntrack) == 0


def test_entries_and_timers_survive_a_reload() -> None:
    import random  # noqa: PLC0415

    from pyrouter.control.build import build  # noqa: PLC0415
    from pyrouter.control.load import parse  # noqa: PLC0415

    net = _net()
    seg(net, H1, H2, 40000, 80, TCP_SYN)
    seg(net, H2, H1, 80, 40000, TCP_SYN | TCP_ACK, seq=5000, ack=1001)
    c = only(net)
    text = net.config.replace("policy drop;", "policy drop;\n        counter")
    assert text != net.config
    cfg = parse(text)
    ifx = {p.name: i for i, p in net.router.ports.items()}
    new = build(cfg, random.Random(2), net.now, "<reload>", ifx)
    net.router.adopt(new)
    net.drain()
    assert only(net) is c
    # The reply direction is still ESTABLISHED for the new ruleset; the timer still runs.
    assert len(seg(net, H1, H2, 40000, 80, TCP_ACK, seq=1001, ack=5001)) == 1
    assert TCP_STATE_NAMES[c.tcp_state] == "ESTABLISHED"
    assert net.router.nf.ruleset.counters()[0]["packets"] == 1
    net.run_until(net.now + 432001 * SECOND)
    assert len(net.router.nf.conntrack) == 0


def test_knob_tracks_the_routers_own_traffic_without_a_ruleset() -> None:
    from .helpers import TOPOLOGY, R_IP, Net, ping  # noqa: PLC0415
    net = Net(config=TOPOLOGY + "conntrack:\n  enabled: true\n")
    net.reachable(H1)
    out = net.send(LAN, ping(H1, R_IP[LAN], ident=9))
    assert len(out) == 1                                   # the router's echo reply
    c = only(net)
    line = entry_line(c, net.now)
    assert line.startswith(f"icmp     1 30 src={H1.ip} dst={R_IP[LAN]} type=8 code=0 id=9 "
                           f"src={R_IP[LAN]} dst={H1.ip} type=0 code=0 id=9 mark=0")
    assert net.router.nf.conntrack.stats["found"] == 1     # the reply, at OUTPUT


def test_fragments_are_reassembled_before_tracking() -> None:
    from .helpers import fragment  # noqa: PLC0415
    net = _net()
    ct = net.router.nf.conntrack
    l3 = ipv4(H1.ip, H2.ip, udp(H1.ip, H2.ip, sport=7, dport=7, data=b"z" * 600), proto=17,
              ident=4321)
    frags = fragment(l3, 256)
    assert len(frags) == 3
    assert net.send(LAN, frame_from(H1, frags[0])) == []   # held for reassembly
    assert len(ct) == 0
    net.send(LAN, frame_from(H1, frags[1]))
    out = net.send(LAN, frame_from(H1, frags[2]))
    assert len(out) >= 1
    c = only(net)
    assert c.orig[4:] == (7, 7) and c.bytes[0] == len(l3)
    # ... and leaves re-fragmented no larger than the largest fragment received
    # (ip_do_fragment with IPCB(skb)->frag_max_size), as the kernel sends it on.
    sizes = [len(f) - 14 for _, f in out]
    assert sizes == [len(f) for f in frags], (sizes, [len(f) for f in frags])


def test_ipv6_echo_and_udp_stateful_and_nd_untracked() -> None:
    from .helpers6 import (CONFIG6, H1 as A, H2 as B, Net6, echo6, echo6_body,  # noqa
                           frame6, icmp6_pkt, ip6, udp6)
    net = Net6(config=CONFIG6 + "nftables:\n  ruleset: |\n    table inet f {\n"
               "      chain fwd {\n"
               "        type filter hook forward priority 0; policy drop;\n"
               "        ct state established,related accept\n"
               "        ip6 saddr 2001:db8:1::/64 ct state new accept\n      }\n    }\n")
    net.ready()
    net.learn6(A)
    net.learn6(B)
    ct = net.router.nf.conntrack
    assert len(net.send(LAN, frame6(A, echo6(A.ip, B.ip, ident=5)))) == 1
    c = only(net)
    assert entry_line(c, net.now).startswith(
        f"icmpv6   58 30 src={A.ip} dst={B.ip} type=128 code=0 id=5 [UNREPLIED] "
        f"src={B.ip} dst={A.ip} type=129 code=0 id=5 ")
    assert len(net.send(WAN, frame6(B, icmp6_pkt(B.ip, A.ip, 129, 0, echo6_body(5))))) == 1
    assert net.send(WAN, frame6(B, echo6(B.ip, A.ip, ident=6))) == []     # new from WAN
    u = ip6(B.ip, A.ip, 17, udp6(B.ip, A.ip, sport=53, dport=4000))
    assert net.send(WAN, frame6(B, u)) == []
    assert len(net.send(LAN, frame6(A, ip6(A.ip, B.ip, 17,
                                           udp6(A.ip, B.ip, sport=4000, dport=53))))) == 1
    assert len(net.send(WAN, frame6(B, u))) == 1
    assert len(ct) == 2
    # Neighbour discovery kept working (untracked) all along: no ND entries.
    assert all(e.orig[3] != 58 or e.orig[5] >> 8 == 128 for e in ct.entries())


def test_explain_runs_on_a_copy_of_the_table() -> None:
    from pyrouter.core.trace import explain  # noqa: PLC0415
    net = _net()
    seg(net, H1, H2, 40000, 80, TCP_SYN)
    c = only(net)
    l3 = ipv4(H2.ip, H1.ip, tcp(H2.ip, H1.ip, sport=80, dport=40000, flags=TCP_SYN | TCP_ACK,
                                 seq=5000, ack=1001), proto=6)
    res = explain(net.router, WAN, frame_from(H2, l3), net.now)
    assert res is not None
    assert TCP_STATE_NAMES[c.tcp_state] == "SYN_SENT"       # the live entry is untouched
    assert len(net.router.nf.conntrack) == 1


def test_ct_state_vmap_and_anonymous_set() -> None:
    net = _net("""
        table inet filter {
          chain forward {
            type filter hook forward priority filter; policy drop;
            ct state vmap { established : accept, related : accept, invalid : drop }
            ct state { new } ip saddr 10.0.1.0/24 accept
          }
        }
    """)
    assert len(seg(net, H1, H2, 40000, 80, TCP_SYN)) == 1
    assert seg(net, H2, H1, 80, 40001, TCP_SYN) == []
    assert len(seg(net, H2, H1, 80, 40000, TCP_SYN | TCP_ACK, seq=5000, ack=1001)) == 1
    assert seg(net, H2, H1, 80, 40000, TCP_SYN | TCP_FIN) == []
    text = net.router.nf.ruleset.list()
    assert "ct state vmap { established : accept, related : accept, invalid : drop }" in text


def test_hostile_packets_never_raise() -> None:
    import random  # noqa: PLC0415
    rng = random.Random(7)
    net = _net()
    for _ in range(1500):
        proto = rng.choice((1, 6, 17, 47, 58))
        body = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 60)))
        if proto == 1 and rng.random() < 0.5 and body:
            inner = ipv4(H2.ip, H1.ip, body, proto=rng.choice((1, 6, 17)))
            body = bytes([rng.choice((3, 11, 12, 0, 8))]) + body[1:4] + \
                inner[:rng.randrange(0, len(inner) + 1)]
        a, b = (H1, H2) if rng.random() < 0.5 else (H2, H1)
        l3 = ipv4(a.ip, b.ip, body, proto=proto)
        net.send(a.port, frame_from(a, l3))
    assert "internal_error" not in net.drops()
    assert len(net.router.nf.conntrack) <= net.router.nf.conntrack.max


def test_reject_reset_carries_the_connection_as_related() -> None:
    net = _net("""
        table inet filter {
          chain forward {
            type filter hook forward priority filter; policy accept;
            tcp dport 25 reject with tcp reset
          }
          chain output {
            type filter hook output priority filter; policy accept;
            ct state invalid counter drop
            ct state related ct direction reply counter accept
          }
        }
    """)
    out = seg(net, H1, H2, 40000, 25, TCP_SYN)
    assert len(out) == 1 and out[0][0] == LAN                  # the reset reached h1
    rows = net.router.nf.ruleset.counters()
    assert [r["packets"] for r in rows] == [0, 1]
    assert len(net.router.nf.conntrack) == 0                   # the SYN never left


def test_routers_own_icmp_error_carries_the_connection_as_related() -> None:
    """icmp_send's nf_ct_attach: a Time Exceeded about a NEW (unconfirmed) packet passes an
    output chain that drops INVALID, as in the kernel."""
    net = _net("""
        table ip filter {
          chain output {
            type filter hook output priority filter; policy drop;
            ct state related counter accept
          }
        }
    """)
    l3 = ipv4(H1.ip, H2.ip, udp(H1.ip, H2.ip, sport=5, dport=33434), proto=17, ttl=1)
    out = net.send(LAN, frame_from(H1, l3))
    assert len(out) == 1 and out[0][0] == LAN
    assert net.router.nf.ruleset.counters()[0]["packets"] == 1


@pytest.mark.parametrize("proto", ["tcp", "udp", "icmp"])
def test_bad_l4_checksum_at_prerouting_is_invalid(proto: str) -> None:
    """nf_conntrack_checksum=1: tcp_error/udp_error/icmp_error verify the checksum of a
    packet arriving at PREROUTING; a bad one is INVALID (no entry is made), so
    `ct state invalid drop` drops it.  A zero UDP checksum over IPv4 is "none"; with the
    knob at 0 the packet is tracked."""
    from .helpers import echo as echo_msg  # noqa: PLC0415
    def pkt(bad: bool, zero: bool = False) -> bytes:
        if proto == "tcp":
            l4 = bytearray(tcp(H1.ip, H2.ip, sport=1234, dport=80))
        elif proto == "udp":
            l4 = bytearray(udp(H1.ip, H2.ip, sport=1234, dport=53, csum=0 if zero else None))
        else:
            l4 = bytearray(echo_msg(ident=77))
        if bad:
            l4[-1] ^= 0x55
        return ipv4(H1.ip, H2.ip, bytes(l4), proto={"tcp": 6, "udp": 17, "icmp": 1}[proto])
    net = _net()
    ct = net.router.nf.conntrack
    assert net.send(LAN, frame_from(H1, pkt(True))) == []
    assert len(ct) == 0 and ct.stats["invalid"] == 1
    if proto == "udp":
        bad_zero = bytearray(pkt(False, zero=True))
        bad_zero[-1] ^= 0x55                             # no checksum: nothing to verify
        assert len(net.send(LAN, frame_from(H1, bytes(bad_zero)))) == 1
        assert len(ct) == 1
        return
    assert len(net.send(LAN, frame_from(H1, pkt(False)))) == 1
    assert len(ct) == 1
    net2 = _net()
    net2.router.nf.conntrack.checksum = 0
    assert len(net2.send(LAN, frame_from(H1, pkt(True)))) == 1
    assert len(net2.router.nf.conntrack) == 1
