"""nf_defrag_ipv6 (core/netfilter/defrag6.py): IPv6 fragments are reassembled before
conntrack (one entry for the datagram, the filter sees ports), forwarded datagrams
leave re-fragmented with the original (largest) fragment size, Packet Too Big only
when that size exceeds the egress MTU; a lone fragment is held, then freed at 60 s."""

from __future__ import annotations

import struct

from .helpers6 import CONFIG6, H1, H2, H4, LAN, SMALL, WAN, Net6, fragment6, frame6, ip6, udp6

RULES = ("nftables:\n  ruleset: |\n    table inet f {\n"
         "      chain fwd {\n"
         "        type filter hook forward priority 0; policy drop;\n"
         "        ct state established,related accept\n"
         "        udp dport 7 ct state new counter accept\n      }\n    }\n")


def _net() -> Net6:
    net = Net6(config=CONFIG6 + RULES)
    net.ready()
    for h in (H1, H2, H4):
        net.learn6(h)
    return net


def _frags_out(out: list) -> list[bytes]:
    return [bytes(f[14:]) for _, f in out]


def test_fragments_reassembled_tracked_and_refragmented_at_their_size() -> None:
    net = _net()
    ct = net.router.nf.conntrack
    l3 = ip6(H1.ip, H2.ip, 17, udp6(H1.ip, H2.ip, sport=5000, dport=7, data=b"q" * 2000))
    frags = fragment6(l3, 1232)                      # 1280-byte fragments, then the rest
    assert [len(f) for f in frags] == [1280, 40 + 8 + 2008 - 1232]
    assert net.send(LAN, frame6(H1, frags[0])) == []  # held by nf_defrag_ipv6
    assert len(ct) == 0
    out = net.send(LAN, frame6(H1, frags[1]))
    sent = _frags_out(out)
    assert [len(f) for f in sent] == [len(f) for f in frags]   # not 1500: frag_max_size
    assert all(f[6] == 44 for f in sent)
    ids = {struct.unpack_from("!I", f, 44)[0] for f in sent}
    assert len(ids) == 1
    # Reassembled by the receiver, the datagram is the original (hop limit one less).
    payload = sent[0][48:] + sent[1][48:]
    assert payload == l3[40:]
    assert sent[0][40] == 17 and sent[1][42:44] == struct.pack("!H", 1232)
    es = ct.entries()
    assert len(es) == 1 and es[0].orig[3:] == (17, 5000, 7)
    assert net.router.nf.ruleset.counters()[0]["packets"] == 1   # matched the port once


def test_reassembled_larger_than_egress_mtu_is_too_big_only_by_fragment_size() -> None:
    net = _net()
    l3 = ip6(H1.ip, H4.ip, 17, udp6(H1.ip, H4.ip, sport=5001, dport=7, data=b"w" * 2000))
    # Fragments of 1280 fit small0's MTU 1400: forwarded, re-fragmented at 1280.
    out = []
    for f in fragment6(l3, 1232):
        out = net.send(LAN, frame6(H1, f))
    sent = [bytes(f[14:]) for p, f in out if p == SMALL]
    assert [len(f) for f in sent] == [1280, 824]
    # Fragments of 1448 exceed 1400: Packet Too Big with 1400 back to H1.
    l3b = ip6(H1.ip, H4.ip, 17, udp6(H1.ip, H4.ip, sport=5002, dport=7, data=b"e" * 2000))
    out = []
    for f in fragment6(l3b, 1400):
        out = net.send(LAN, frame6(H1, f))
    assert not [f for p, f in out if p == SMALL]
    ptb = [bytes(f[14:]) for p, f in out if p == LAN]
    assert len(ptb) == 1 and ptb[0][40] == 2 and struct.unpack_from("!I", ptb[0], 44)[0] == 1400


def test_lone_fragment_held_then_expired_and_whole_packets_untouched() -> None:
    net = _net()
    ct = net.router.nf.conntrack
    l3 = ip6(H1.ip, H2.ip, 17, udp6(H1.ip, H2.ip, sport=5003, dport=7, data=b"r" * 2000))
    assert net.send(LAN, frame6(H1, fragment6(l3, 1232)[1])) == []
    assert len(net.router.reasm6) == 1 and len(ct) == 0
    net.run_until(net.now + 61 * 10**9)
    assert len(net.router.reasm6) == 0
    for h in (H1, H2):
        net.learn6(h)                                # neighbours went stale meanwhile
    # A whole packet: no frag_max_size, forwarded as is.
    small = ip6(H1.ip, H2.ip, 17, udp6(H1.ip, H2.ip, sport=5004, dport=7, data=b"s" * 100))
    out = net.send(LAN, frame6(H1, small))
    assert [len(f) for f in _frags_out(out)] == [len(small)]
    assert _frags_out(out)[0][6] == 17
    # From WAN, NEW to a port the ruleset does not open: fragments reassembled, dropped.
    back = ip6(H2.ip, H1.ip, 17, udp6(H2.ip, H1.ip, sport=9, dport=9, data=b"t" * 2000))
    outs = [net.send(WAN, frame6(H2, f)) for f in fragment6(back, 1232)]
    assert outs == [[], []]


def test_fragmented_echo_to_the_router_is_reassembled_once_and_answered() -> None:
    from .helpers6 import R_IP6, echo6  # noqa: PLC0415
    net = _net()
    ct = net.router.nf.conntrack
    req = echo6(H1.ip, R_IP6[LAN], ident=9, data=b"E" * 2500)
    frags = fragment6(req, 1232)
    assert net.send(LAN, frame6(H1, frags[0])) == []
    out = net.send(LAN, frame6(H1, frags[1])) + net.send(LAN, frame6(H1, frags[2]))
    replies = [bytes(f[14:]) for p, f in out if p == LAN]
    # The reply (2548 bytes) leaves as our own fragments at the link MTU.
    assert replies and all(r[6] == 44 for r in replies)
    assert sum(len(r) - 48 for r in replies) == len(req) - 40
    es = [c for c in ct.entries() if c.orig[3] == 58]
    assert len(es) == 1 and es[0].status & 2                      # seen the reply
    assert net.router.counters.snmp["Ip6ReasmOKs"] == 1
