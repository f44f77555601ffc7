"""IPv6 reassembly at the router (RFC 8200 4.5, RFC 5722, RFC 7112; net/ipv6/reassembly.c)
and fragmentation of the router's own large replies (ip6_fragment)."""

from __future__ import annotations

import struct

import pytest

from pyrouter.core.ip6.reasm import HIGH_THRESH
from tests.core.helpers6 import (
    H1,
    LAN,
    R_IP6,
    SECOND,
    Net6,
    echo6,
    echo6_body,
    expect_error6,
    expect_icmp6,
    expect_ip6,
    frag_hdr,
    fragment6,
    frame6,
    icmp6_msg,
    icmp6_of,
    ip6,
    na_pkt,
)

BIG = bytes(range(256)) * 12            # 3072 bytes of echo data


@pytest.fixture
def net() -> Net6:
    n = Net6()
    n.ready()
    n.learn6(H1)
    return n


def reassemble(out: list) -> tuple[bytes, bytes, set[int]]:
    """(IPv6 header of the first piece, whole payload, identifications) of fragments."""
    pieces, idents, hdr, nh = [], set(), b"", None
    for item in out:
        p = expect_ip6(item, nh=44)
        nh0, _, fo, ident = struct.unpack_from("!BBHI", p.payload)
        idents.add(ident)
        pieces.append((fo & ~7, bool(fo & 1), p.payload[8:]))
        if fo & ~7 == 0:
            hdr, nh = p.raw[:40], nh0
    pieces.sort()
    whole, at = b"", 0
    for off, _more, data in pieces:
        assert off == at, f"gap or overlap at {at}/{off}"
        whole += data
        at += len(data)
    assert [m for _, m, _ in pieces] == [True] * (len(pieces) - 1) + [False]
    return hdr[:6] + bytes([nh]) + hdr[7:], whole, idents


def test_fragmented_echo_reassembled_and_reply_fragmented(net: Net6) -> None:
    req = echo6(H1.ip, R_IP6[LAN], data=BIG, seq=3)
    frags = fragment6(req, 1232)
    assert len(frags) == 3
    out = []
    for f in reversed(frags):                   # out of order
        out += net.send(LAN, frame6(H1, f))
    assert len(out) == 3
    for item in out:
        p = expect_ip6(item, src=R_IP6[LAN], dst=H1.ip, hlim=64, nh=44, ifindex=LAN,
                       eth_dst=H1.mac, max_len=1500)
    assert [len(i[1]) - 14 for i in out][:2] == [1496, 1496]   # (1500 - 48) & ~7 + 48
    hdr, payload, idents = reassemble(out)
    assert len(idents) == 1
    assert hdr[6] == 58
    msg = icmp6_msg(R_IP6[LAN], H1.ip, 129, 0, echo6_body(seq=3, data=BIG))
    assert payload == msg
    assert net.snmp("Ip6ReasmOKs") == 1 and net.snmp("Ip6FragCreates") == 3
    del p


def test_atomic_fragment_processed_as_whole(net: Net6) -> None:
    msg = icmp6_msg(H1.ip, R_IP6[LAN], 128, 0, echo6_body())
    pkt = ip6(H1.ip, R_IP6[LAN], 44, frag_hdr(58, 0, False, 77) + msg)
    out = net.send(LAN, frame6(H1, pkt))
    assert len(out) == 1
    m = expect_icmp6(out[0], type=129, src=R_IP6[LAN], dst=H1.ip)
    assert m.body == echo6_body()


def test_overlap_drops_the_datagram(net: Net6) -> None:
    req = echo6(H1.ip, R_IP6[LAN], data=BIG)
    frags = fragment6(req, 1232)
    first = frags[0]
    # a second fragment starting 8 bytes inside the first
    payload = req[40 + 1224:40 + 1224 + 1232]
    bad = ip6(H1.ip, R_IP6[LAN], 44, frag_hdr(58, 1224, True, 0xABCD) + payload)
    out = net.send(LAN, frame6(H1, first))
    out += net.send(LAN, frame6(H1, bad))
    out += net.send(LAN, frame6(H1, frags[1]))
    out += net.send(LAN, frame6(H1, frags[2]))
    assert out == []
    assert net.drops().get("reasm_overlap") == 1
    # the remainder never completes; no Time Exceeded (its first fragment was lost)
    late = net.run_until(net.now + 61 * SECOND)
    assert icmp6_of(late, 3) == []


def test_duplicate_fragment_is_harmless(net: Net6) -> None:
    frags = fragment6(echo6(H1.ip, R_IP6[LAN], data=BIG), 1232)
    out = net.send(LAN, frame6(H1, frags[0]))
    out += net.send(LAN, frame6(H1, frags[0]))
    out += net.send(LAN, frame6(H1, frags[1]))
    out += net.send(LAN, frame6(H1, frags[2]))
    assert len(out) == 3
    assert expect_ip6(out[0], nh=44).payload[8] == 129


def test_non_multiple_of_8_param_prob_pointer_4(net: Net6) -> None:
    req = echo6(H1.ip, R_IP6[LAN], data=BIG)
    bad = ip6(H1.ip, R_IP6[LAN], 44, frag_hdr(58, 0, True, 9) + req[40:40 + 1001])
    out = net.send(LAN, frame6(H1, bad))
    assert len(out) == 1
    expect_error6(out[0], type=4, code=0, about=bad, src=R_IP6[LAN], word=4, ifindex=LAN)


def test_first_fragment_without_tcp_header_param_prob_3(net: Net6) -> None:
    """RFC 7112 / RFC 8200 4.5: Parameter Problem code 3, pointer 0."""
    bad = ip6(H1.ip, R_IP6[LAN], 44, frag_hdr(6, 0, True, 10) + bytes(8))
    out = net.send(LAN, frame6(H1, bad))
    assert len(out) == 1
    expect_error6(out[0], type=4, code=3, about=bad, src=R_IP6[LAN], word=0)


def test_first_fragment_without_icmpv6_header_param_prob_3(net: Net6) -> None:
    bad = ip6(H1.ip, R_IP6[LAN], 44, frag_hdr(60, 0, True, 10) + bytes([58, 0]) + bytes(6))
    out = net.send(LAN, frame6(H1, bad))
    assert len(out) == 1
    expect_error6(out[0], type=4, code=3, about=bad, src=R_IP6[LAN], word=0)


def test_end_beyond_65535_param_prob_at_offset_field(net: Net6) -> None:
    bad = ip6(H1.ip, R_IP6[LAN], 44, frag_hdr(58, 65528, False, 11) + bytes(16))
    out = net.send(LAN, frame6(H1, bad))
    assert len(out) == 1
    expect_error6(out[0], type=4, code=0, about=bad, src=R_IP6[LAN], word=42)


def test_timeout_time_exceeded_code_1_when_first_arrived(net: Net6) -> None:
    frags = fragment6(echo6(H1.ip, R_IP6[LAN], data=BIG), 1232)
    t0 = net.now
    assert net.send(LAN, frame6(H1, frags[0])) == []
    assert net.send(LAN, frame6(H1, frags[2])) == []
    early = net.run_until(t0 + 60 * SECOND - 1)
    assert icmp6_of(early, 3) == []
    late = net.run_until(t0 + 60 * SECOND)
    # H1's entry went stale long ago: the error waits for a fresh resolution
    ns = icmp6_of(late, 135)
    assert len(ns) == 1 and ns[0][0] == t0 + 60 * SECOND
    out = net.send(LAN, frame6(H1, na_pkt(H1.ip, R_IP6[LAN], H1.ip, s=True, o=True,
                                          tll=H1.mac)))
    te = icmp6_of(out, 3)
    assert len(te) == 1
    expect_error6(te[0], type=3, code=1, about=frags[0], src=R_IP6[LAN], ifindex=LAN,
                  eth_dst=H1.mac)
    assert net.snmp("Ip6ReasmTimeout") == 1
    # the queue is gone: the missing piece alone now starts a new one, no reply
    assert net.send(LAN, frame6(H1, frags[1])) == []


def test_timeout_silent_without_first_fragment(net: Net6) -> None:
    frags = fragment6(echo6(H1.ip, R_IP6[LAN], data=BIG), 1232)
    t0 = net.now
    net.send(LAN, frame6(H1, frags[1]))
    net.send(LAN, frame6(H1, frags[2]))
    late = net.run_until(t0 + 61 * SECOND)
    assert icmp6_of(late, 3) == []
    assert net.snmp("Ip6ReasmTimeout") == 1
    assert len(net.router.reasm6) == 0


def test_memory_bound_under_incomplete_fragment_flood(net: Net6) -> None:
    msg = icmp6_msg(H1.ip, R_IP6[LAN], 128, 0, echo6_body(data=bytes(1224)))[:1232]
    n = HIGH_THRESH // (1232 + 256) + 400
    base = ip6(H1.ip, R_IP6[LAN], 44, frag_hdr(58, 0, True, 0) + msg)
    r = net.router
    peak = 0
    for ident in range(1, n):
        f = bytearray(base)
        f[44:48] = ident.to_bytes(4, "big")
        r.receive(LAN, frame6(H1, bytes(f)), net.now)
        peak = max(peak, r.reasm6.mem)
    net.drain()
    assert peak <= HIGH_THRESH + 1232 + 256
    assert r.reasm6.mem <= HIGH_THRESH
    assert net.drops().get("reasm_mem", 0) > 0
    # a fresh datagram still gets through
    out = []
    for f in fragment6(echo6(H1.ip, R_IP6[LAN], data=BIG), 1232, ident=0xFFFF0000):
        out += net.send(LAN, frame6(H1, f))
    assert len(out) == 3


def test_empty_fragment_discards_the_queue(net: Net6) -> None:
    frags = fragment6(echo6(H1.ip, R_IP6[LAN], data=BIG), 1232)
    empty = ip6(H1.ip, R_IP6[LAN], 44, frag_hdr(58, 1232, True, 0xABCD))
    out = net.send(LAN, frame6(H1, frags[0]))
    out += net.send(LAN, frame6(H1, empty))
    out += net.send(LAN, frame6(H1, frags[1]))
    out += net.send(LAN, frame6(H1, frags[2]))
    assert out == []


def test_unknown_next_header_after_reassembly(net: Net6) -> None:
    """The Param Prob quotes the reassembled packet and points at the field that names
    the unknown protocol there (nhoff 6, the Fragment header gone)."""
    whole = ip6(H1.ip, R_IP6[LAN], 253, bytes(range(200)) * 12)
    out = []
    for f in fragment6(whole, 1232):
        out += net.send(LAN, frame6(H1, f))
    assert len(out) == 1
    m = expect_icmp6(out[0], type=4, code=1, src=R_IP6[LAN], dst=H1.ip, hlim=64)
    assert m.word == 6
    assert m.data == whole[:1232]


def test_fragment_identification_is_unpredictable(net: Net6) -> None:
    def reply_ident(seq: int) -> int:
        out = []
        for f in fragment6(echo6(H1.ip, R_IP6[LAN], data=BIG, seq=seq), 1232, ident=seq):
            out += net.send(LAN, frame6(H1, f))
        return reassemble(out)[2].pop()
    a, b, c = reply_ident(1), reply_ident(2), reply_ident(3)
    assert (b - a) & 0xFFFFFFFF != 1 or (c - b) & 0xFFFFFFFF != 1


def test_truncated_first_fragment_checked_before_length(net: Net6) -> None:
    bad = ip6(H1.ip, R_IP6[LAN], 44, frag_hdr(6, 0, True, 12) + bytes(12))
    out = net.send(LAN, frame6(H1, bad))
    assert len(out) == 1
    expect_error6(out[0], type=4, code=3, about=bad, src=R_IP6[LAN], word=0)


def test_too_long_checked_before_multiple_of_8(net: Net6) -> None:
    bad = ip6(H1.ip, R_IP6[LAN], 44, frag_hdr(58, 65528, True, 13) + bytes(12))
    out = net.send(LAN, frame6(H1, bad))
    assert len(out) == 1
    expect_error6(out[0], type=4, code=0, about=bad, src=R_IP6[LAN], word=42)
