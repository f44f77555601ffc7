"""TCP window tracking (core/netfilter/conntrack_tcp.py, tcp_in_window) on crafted frames
and virtual time: in-window data, data beyond td_maxend and ACKs above the upper bound
are INVALID (dropped by `ct state invalid drop`, counted, logged rate-limited), the
window scale of both SYNs is honoured, nf_conntrack_tcp_be_liberal passes everything,
nf_conntrack_tcp_loose picks mid-stream flows up (or not), retransmissions shorten the
timeout; the plain-int tcp_in_window contract the fast path relies on."""

from __future__ import annotations

import struct

import pytest

from pyrouter.control.load import ConfigError
from pyrouter.core.netfilter.conntrack_tcp import (
    IP_CT_TCP_FLAG_BE_LIBERAL, IP_CT_TCP_FLAG_SACK_PERM, IP_CT_TCP_FLAG_WINDOW_SCALE,
    NFCT_TCP_ACCEPT, NFCT_TCP_IGNORE, NFCT_TCP_INVALID, TCP_STATE_NAMES, tcp_in_window)

from .helpers import H1, H2, SECOND, TCP_ACK, TCP_FIN, TCP_SYN, checksum, frame_from, ipv4, \
    pseudo
from .test_conntrack import STATEFUL, _net, only

WS7 = bytes([1, 3, 3, 7])                 # NOP, window scale 7
SACKP = bytes([4, 2, 1, 1])               # SACK permitted, NOP, NOP


def tcpo(src: str, dst: str, sport: int, dport: int, flags: int, seq: int, ack: int,
         win: int, data: bytes = b"", opts: bytes = b"") -> bytes:
    assert len(opts) % 4 == 0
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                      (5 + len(opts) // 4) << 4, flags, win, 0, 0)
    seg = bytearray(hdr + opts + data)
    seg[16:18] = struct.pack("!H", checksum(bytes(seg), pseudo(src, dst, 6, len(seg))))
    return bytes(seg)


def send(net, a, b, sport, dport, flags, seq, ack=0, win=65535, data=b"", opts=b""):
    l3 = ipv4(a.ip, b.ip, tcpo(a.ip, b.ip, sport, dport, flags, seq, ack, win, data, opts),
              proto=6)
    return net.send(a.port, frame_from(a, l3))


def handshake(net, wscale: bool = True, sport: int = 40000, synack_win: int = 65160):
    """Client H1 (ISN 1000, SYN window 64240), server H2 (ISN 5000, SYN/ACK window
    *synack_win*, never scaled)."""
    o = WS7 if wscale else b""
    assert len(send(net, H1, H2, sport, 80, TCP_SYN, 1000, 0, 64240, opts=o)) == 1
    assert len(send(net, H2, H1, 80, sport, TCP_SYN | TCP_ACK, 5000, 1001, synack_win,
                    opts=o)) == 1
    assert len(send(net, H1, H2, sport, 80, TCP_ACK, 1001, 5001, 502)) == 1
    c = only(net)
    assert TCP_STATE_NAMES[c.tcp_state] == "ESTABLISHED"
    return c


def invalid_drops(net) -> int:
    return net.router.nf.ruleset.counters()[1]["packets"]      # ct state invalid drop


def test_in_window_data_updates_td_end_and_maxend() -> None:
    net = _net()
    c = handshake(net)
    s0, s1 = c.tcp.seen
    assert s0.td_scale == 7 and s1.td_scale == 7
    assert s0.flags & IP_CT_TCP_FLAG_WINDOW_SCALE and s1.flags & IP_CT_TCP_FLAG_WINDOW_SCALE
    assert s0.td_end == 1001 and s1.td_end == 5001
    assert len(send(net, H1, H2, 40000, 80, TCP_ACK, 1001, 5001, 502, data=b"a" * 1000)) == 1
    assert s0.td_end == 2001
    # The server ACKs it with a scaled window of 1000 << 7.
    assert len(send(net, H2, H1, 80, 40000, TCP_ACK, 5001, 2001, 1000)) == 1
    assert s0.td_maxend == 2001 + (1000 << 7)
    assert s1.td_maxwin == 1000 << 7
    assert invalid_drops(net) == 0 and net.router.nf.conntrack.stats["invalid"] == 0
    assert c.deadline - net.now == 432000 * SECOND


def test_data_beyond_td_maxend_is_invalid_and_logged() -> None:
    net = _net()
    c = handshake(net, wscale=False)
    ct = net.router.nf.conntrack
    maxend = c.tcp.seen[0].td_maxend
    assert maxend == 1001 + 65160                  # the SYN/ACK's ack + window
    # More than the receiver's largest window beyond td_maxend: INVALID.
    far = maxend + 65160 + 10
    assert send(net, H1, H2, 40000, 80, TCP_ACK, far, 5001, 502, data=b"x" * 10) == []
    assert invalid_drops(net) == 1 and ct.stats["invalid"] == 1
    ev = [e for e in net.events if e.name == "ct.invalid"]
    assert ev and ev[-1].fields["msg"] == (f"nf_ct_tcp: SEQ is over upper bound {maxend + 1} "
                                           "(over the window of the receiver)")
    assert ev[-1].fields["tuple"] == f"src={H1.ip} dst={H2.ip} sport=40000 dport=80"
    assert c.tcp.seen[0].td_end == 1001            # the entry did not move
    # The last bytes the window allows pass.
    assert len(send(net, H1, H2, 40000, 80, TCP_ACK, maxend - 10, 5001, 502,
                    data=b"y" * 10)) == 1
    # A few bytes over (less than the receive window): the kernel lets them pass
    # (IGNORE, "N bytes more than expected") but moves td_end so their ACK fits.
    assert len(send(net, H1, H2, 40000, 80, TCP_ACK, maxend, 5001, 502, data=b"w" * 20)) == 1
    assert c.tcp.seen[0].td_end == maxend + 20 and ct.stats["invalid"] == 1


def test_ack_above_upper_bound_is_invalid() -> None:
    net = _net()
    handshake(net)
    ct = net.router.nf.conntrack
    # The server never sent byte 6000: acking it is INVALID.
    assert send(net, H1, H2, 40000, 80, TCP_ACK, 1001, 6000, 502) == []
    assert invalid_drops(net) == 1 and ct.stats["invalid"] == 1
    msgs = [e.fields["msg"] for e in net.events if e.name == "ct.invalid"]
    assert msgs[-1] == "nf_ct_tcp: ACK is over upper bound 5002 (ACKed data not seen yet)"
    # From the WAN side too (ESTABLISHED_REPLY would have accepted it otherwise).
    assert send(net, H2, H1, 80, 40000, TCP_ACK, 5001, 9999, 100) == []
    assert invalid_drops(net) == 2


def test_window_scaling_honoured_only_when_both_syns_carry_it() -> None:
    # Scaled: the server's window 1000 << 7 lets the client send up to 1001 + 128000.
    net = _net()
    handshake(net, wscale=True, synack_win=1000)
    assert len(send(net, H2, H1, 80, 40000, TCP_ACK, 5001, 1001, 1000)) == 1
    assert len(send(net, H1, H2, 40000, 80, TCP_ACK, 100000, 5001, 502, data=b"z")) == 1
    assert invalid_drops(net) == 0
    # Unscaled: the same window means 1000 bytes: seq 100000 is far beyond td_maxend.
    net = _net()
    handshake(net, wscale=False, synack_win=1000)
    assert len(send(net, H2, H1, 80, 40000, TCP_ACK, 5001, 1001, 1000)) == 1
    assert send(net, H1, H2, 40000, 80, TCP_ACK, 100000, 5001, 502, data=b"z") == []
    assert invalid_drops(net) == 1
    # Only the client offers a scale: neither direction scales (RFC 7323).
    net = _net()
    assert len(send(net, H1, H2, 40001, 80, TCP_SYN, 1000, 0, 64240, opts=WS7)) == 1
    assert len(send(net, H2, H1, 80, 40001, TCP_SYN | TCP_ACK, 5000, 1001, 65160)) == 1
    c = only(net)
    assert c.tcp.seen[0].td_scale == 0 and c.tcp.seen[1].td_scale == 0


def test_liberal_mode_passes_out_of_window_packets() -> None:
    net = _net(STATEFUL, "conntrack:\n  nf_conntrack_tcp_be_liberal: 1\n")
    ct = net.router.nf.conntrack
    assert ct.tcp_be_liberal == 1
    handshake(net, wscale=False)
    assert len(send(net, H1, H2, 40000, 80, TCP_ACK, 900000, 5001, 502, data=b"x")) == 1
    assert len(send(net, H1, H2, 40000, 80, TCP_ACK, 1001, 77777, 502)) == 1
    assert invalid_drops(net) == 0 and ct.stats["invalid"] == 0
    assert not [e for e in net.events if e.name == "ct.invalid"]


def test_loose_pickup_of_a_mid_stream_flow() -> None:
    net = _net()
    ct = net.router.nf.conntrack
    # An ACK with data from the LAN, no SYN ever seen: picked up as ESTABLISHED.
    assert len(send(net, H1, H2, 40100, 80, TCP_ACK, 777777, 424242, 500, data=b"d" * 10)) == 1
    c = only(net)
    assert TCP_STATE_NAMES[c.tcp_state] == "ESTABLISHED"
    assert c.tcp.seen[0].flags & IP_CT_TCP_FLAG_BE_LIBERAL
    assert c.tcp.seen[1].flags & IP_CT_TCP_FLAG_BE_LIBERAL
    assert c.tcp.seen[0].flags & IP_CT_TCP_FLAG_SACK_PERM
    assert c.deadline - net.now == 300 * SECOND     # unanswered pickup: timeout_unack
    # Liberal per direction: an ACK far off from the WAN side still passes and assures.
    assert len(send(net, H2, H1, 80, 40100, TCP_ACK, 1, 777787, 500)) == 1
    assert len(send(net, H1, H2, 40100, 80, TCP_ACK, 777787, 2, 500)) == 1
    assert c.status & 4 and ct.stats["invalid"] == 0
    # With nf_conntrack_tcp_loose 0 the same first packet is INVALID, no entry.
    net = _net(STATEFUL, "conntrack:\n  nf_conntrack_tcp_loose: 0\n")
    assert send(net, H1, H2, 40100, 80, TCP_ACK, 777777, 424242, 500, data=b"d") == []
    assert len(net.router.nf.conntrack) == 0 and invalid_drops(net) == 1


def test_retransmissions_shorten_the_timeout() -> None:
    net = _net()
    c = handshake(net)
    pkt = dict(flags=TCP_ACK, seq=1001, ack=5001, win=502, data=b"r" * 100)
    assert len(send(net, H1, H2, 40000, 80, **pkt)) == 1
    assert c.deadline - net.now == 300 * SECOND     # data not acknowledged yet
    assert len(send(net, H2, H1, 80, 40000, TCP_ACK, 5001, 1101, 500)) == 1
    assert c.deadline - net.now == 432000 * SECOND
    seg = dict(flags=TCP_ACK, seq=1101, ack=5001, win=502)
    for i in range(4):                               # the same ACK, 1 + 3 retransmissions
        assert len(send(net, H1, H2, 40000, 80, **seg)) == 1
        assert c.tcp.retrans == i
    assert c.deadline - net.now == 300 * SECOND      # nf_conntrack_tcp_max_retrans = 3


def test_fin_and_ignored_old_retransmission() -> None:
    net = _net()
    c = handshake(net)
    assert len(send(net, H1, H2, 40000, 80, TCP_ACK, 1001, 5001, 502, data=b"q" * 500)) == 1
    assert len(send(net, H2, H1, 80, 40000, TCP_ACK, 5001, 1501, 2)) == 1   # window 256
    # Old data far below the lower bound (td_end - receiver.td_maxwin): IGNORE, passes.
    old_deadline = c.deadline
    net.now += SECOND
    assert len(send(net, H1, H2, 40000, 80, TCP_ACK, 1001 - 200000, 5001, 502,
                    data=b"o")) == 1
    assert c.deadline == old_deadline and net.router.nf.conntrack.stats["invalid"] == 0
    assert len(send(net, H1, H2, 40000, 80, TCP_FIN | TCP_ACK, 1501, 5001, 502)) == 1
    assert TCP_STATE_NAMES[c.tcp_state] == "FIN_WAIT"


def test_tcp_in_window_on_plain_ints() -> None:
    """The fast path's contract: a Conn set up by the slow path, then plain ints."""
    net = _net()
    c = handshake(net, wscale=False)
    s0 = c.tcp.seen[0]
    assert tcp_in_window(c, 0, 1001, 5001, 502, TCP_ACK, 100) == NFCT_TCP_ACCEPT
    assert s0.td_end == 1101
    far = s0.td_maxend + 70000
    assert tcp_in_window(c, 0, far, 5001, 502, TCP_ACK, 1) == NFCT_TCP_INVALID
    assert c.tcp.why.startswith("SEQ is over upper bound")
    assert tcp_in_window(c, 0, far, 5001, 502, TCP_ACK, 1, liberal=True) == NFCT_TCP_ACCEPT
    assert s0.td_end == 1101                         # liberal: accepted, not recorded
    assert tcp_in_window(c, 1, 5001, 1101, 100, TCP_ACK, 0) == NFCT_TCP_ACCEPT
    assert tcp_in_window(c, 1, 5001, 1102, 100, TCP_ACK, 0) == NFCT_TCP_INVALID
    assert tcp_in_window(c, 0, 1101 - 300000, 5001, 502, TCP_ACK, 10) == NFCT_TCP_IGNORE
    assert s0.td_end == 1101


def test_invalid_logging_is_rate_limited() -> None:
    net = _net()
    handshake(net)
    for _ in range(30):
        send(net, H1, H2, 40000, 80, TCP_ACK, 1001, 9000, 502)
    ct = net.router.nf.conntrack
    assert ct.stats["invalid"] == 30 and invalid_drops(net) == 30
    assert len([e for e in net.events if e.name == "ct.invalid"]) == 10
    net.now += 3 * SECOND
    send(net, H1, H2, 40000, 80, TCP_ACK, 1001, 9000, 502)
    assert len([e for e in net.events if e.name == "ct.invalid"]) == 11


@pytest.mark.parametrize("bad", ["nf_conntrack_tcp_be_liberal: 2", "nf_conntrack_tcp_loose: -1",
                                 "tcp_loose: 1"])
def test_bad_knobs_rejected(bad: str) -> None:
    with pytest.raises(ConfigError) as ei:
        _net(STATEFUL, f"conntrack:\n  {bad}\n")
    assert "conntrack" in str(ei.value)


def test_fast_path_helper_decides_as_the_slow_path() -> None:
    """tcp_established_packet on plain ints, against the same segments through the
    router: same window state, same timeout, same verdicts."""
    from pyrouter.core.netfilter.conntrack_tcp import tcp_established_packet  # noqa: PLC0415
    segs = [(0, 1001, 5001, 502, 100), (1, 5001, 1101, 1000, 0), (0, 1101, 5001, 502, 1000),
            (0, 1101, 5001, 502, 1000), (1, 5001, 900000, 1000, 0),
            (0, 1101 - 400000, 5001, 502, 10), (1, 5001, 2101, 1000, 300)]
    slow, fast = _net(), _net()
    cs, cf = handshake(slow), handshake(fast)
    r, ct = fast.router, fast.router.nf.conntrack
    for d, seq, ack, win, n in segs:
        a, b = (H1, H2) if d == 0 else (H2, H1)
        sp, dp = (40000, 80) if d == 0 else (80, 40000)
        passed = len(send(slow, a, b, sp, dp, TCP_ACK, seq, ack, win, data=b"p" * n)) == 1
        v = tcp_established_packet(r, ct, cf, d, seq, ack, win, TCP_ACK, n, fast.now)
        assert passed == (v >= 0), (d, seq, ack, v)
        for x, y in zip(cs.tcp.seen, cf.tcp.seen):
            assert (x.td_end, x.td_maxend, x.td_maxwin, x.td_maxack, x.td_scale, x.flags) \
                == (y.td_end, y.td_maxend, y.td_maxwin, y.td_maxack, y.td_scale, y.flags)
        assert (cs.deadline - slow.now) == (cf.deadline - fast.now)
        assert cs.tcp.retrans == cf.tcp.retrans
    assert tcp_established_packet(r, ct, cf, 0, 1, 1, 1, TCP_ACK | TCP_FIN, 0, fast.now) == -3
