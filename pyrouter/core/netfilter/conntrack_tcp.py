"""TCP connection tracking: nf_conntrack_proto_tcp.c (tcp_new, nf_conntrack_tcp_packet,
tcp_in_window, tcp_options, tcp_sack, nf_tcp_handle_invalid).

The state machine is the kernel's tcp_conntracks[dir][index][state] table; the window
tracking follows tcp_in_window(): per direction (``TcpSeen``, struct ip_ct_tcp_state)
td_end = max(seq + len), td_maxend = max(ack + max(win, 1)) seen from the peer,
td_maxwin = max(win) and td_scale (the window scale from the SYN options, used only
when both SYNs carried one, RFC 7323).  The four checks:

  I.   seq <= sender.td_maxend                      (else INVALID "SEQ is over upper bound")
  II.  seq + len >= sender.td_end - receiver.td_maxwin   (else IGNORE: a retransmission)
  III. sack <= receiver.td_end                      (else INVALID "ACK is over upper bound")
  IV.  sack >= receiver.td_end - MAXACKWINDOW       (else IGNORE: an overly delayed ACK)

A failed check is accepted anyway when ``nf_conntrack_tcp_be_liberal`` is set or the
sender direction has IP_CT_TCP_FLAG_BE_LIBERAL (a connection picked up mid-stream with
``nf_conntrack_tcp_loose`` gets that flag in both directions, as in the kernel).  IGNORE
lets the packet pass as part of the connection without touching the entry.  The
retransmission counter (same seq/ack/end/window in the same direction) shortens the
timeout to 300 s (timeout_max_retrans) after ``nf_conntrack_tcp_max_retrans`` repeats;
unacknowledged data shortens it to 300 s (timeout_unacknowledged).

NAT sequence adjustment (nf_ct_seq_offset) is zero: no helper mangles payloads.

Invariants: every sequence value is a u32 (masked); option parsing reads only inside
the TCP header (data offset bounded by the caller's tcp_error check); nothing here
allocates on the per-packet path except the message of a rejected packet.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .conntrack import Conn, ConnTrack
    from ..router import Router

SECOND = 1_000_000_000
M32 = 0xFFFFFFFF

# enum tcp_conntrack and tcp_conntracks[2][6][10]
sNO, sSS, sSR, sES, sFW, sCW, sLA, sTW, sCL, sS2, sIV, sIG = range(12)
TCP_STATE_NAMES = ("NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT",
                   "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2")
TCP_TIMEOUTS = (0, 120, 60, 432000, 120, 60, 30, 120, 10, 120)    # seconds, per state
TIMEOUT_MAX_RETRANS = 300          # nf_conntrack_tcp_timeout_max_retrans
TIMEOUT_UNACK = 300                # nf_conntrack_tcp_timeout_unacknowledged
_TCP_TABLE = (
    (   # ORIGINAL
        (sSS, sSS, sIG, sIG, sIG, sIG, sIG, sSS, sSS, sS2),     # syn
        (sIV, sIV, sSR, sIV, sIV, sIV, sIV, sIV, sIV, sSR),     # synack
        (sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV),     # fin
        (sES, sIV, sES, sES, sCW, sCW, sTW, sTW, sCL, sIV),     # ack
        (sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL),     # rst
        (sIV,) * 10,                                            # none
    ),
    (   # REPLY
        (sIV, sS2, sIV, sIV, sIV, sIV, sIV, sSS, sIV, sS2),
        (sIV, sSR, sIG, sIG, sIG, sIG, sIG, sIG, sIG, sSR),
        (sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV),
        (sIV, sIG, sSR, sES, sCW, sCW, sTW, sTW, sCL, sIG),
        (sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL),
        (sIV,) * 10,
    ),
)
TH_FIN, TH_SYN, TH_RST, TH_PSH, TH_ACK, TH_URG = 1, 2, 4, 8, 16, 32
TCP_VALID = frozenset({TH_SYN, TH_SYN | TH_URG, TH_SYN | TH_ACK, TH_RST, TH_RST | TH_ACK,
                       TH_FIN | TH_ACK, TH_FIN | TH_ACK | TH_URG, TH_ACK, TH_ACK | TH_URG})
# get_conntrack_index()
TCP_SYN_SET, TCP_SYNACK_SET, TCP_FIN_SET, TCP_ACK_SET, TCP_RST_SET, TCP_NONE_SET = range(6)

# ip_ct_tcp_state.flags / ip_ct_tcp.last_flags
IP_CT_TCP_FLAG_WINDOW_SCALE = 0x01
IP_CT_TCP_FLAG_SACK_PERM = 0x02
IP_CT_TCP_FLAG_CLOSE_INIT = 0x04
IP_CT_TCP_FLAG_BE_LIBERAL = 0x08
IP_CT_TCP_FLAG_DATA_UNACKNOWLEDGED = 0x10
IP_CT_TCP_FLAG_MAXACK_SET = 0x20
IP_CT_EXP_CHALLENGE_ACK = 0x40
IP_CT_TCP_SIMULTANEOUS_OPEN = 0x80
TCP_MAX_WSCALE = 14
MAXACKWINCONST = 66000

IPS_SEEN_REPLY, IPS_ASSURED = 2, 4           # enum ip_conntrack_status (conntrack.py)

# tcp_in_window() results; truthy = the packet belongs to the connection
NFCT_TCP_INVALID, NFCT_TCP_IGNORE, NFCT_TCP_ACCEPT = 0, 1, 2

_HDR = struct.Struct("!IIBBH")      # seq, ack_seq, data offset, flags, window


def tcp_index(fl: int) -> int:
    """get_conntrack_index()."""
    if fl & TH_RST:
        return TCP_RST_SET
    if fl & TH_SYN:
        return TCP_SYNACK_SET if fl & TH_ACK else TCP_SYN_SET
    if fl & TH_FIN:
        return TCP_FIN_SET
    if fl & TH_ACK:
        return TCP_ACK_SET
    return TCP_NONE_SET


_H = 0x80000000


def before(a: int, b: int) -> bool:
    """before(seq1, seq2): (s32)(a - b) < 0."""
    return ((a - b) & M32) >= 0x80000000


def after(a: int, b: int) -> bool:
    return ((b - a) & M32) >= 0x80000000


class TcpSeen:
    """struct ip_ct_tcp_state: one direction's window data."""

    __slots__ = ("td_end", "td_maxend", "td_maxwin", "td_maxack", "td_scale", "flags")

    def __init__(self) -> None:
        self.td_end = self.td_maxend = self.td_maxwin = self.td_maxack = 0
        self.td_scale = self.flags = 0

    def reset(self) -> None:
        """nf_ct_tcp_state_reset()."""
        self.td_end = self.td_maxend = self.td_maxwin = self.td_maxack = 0
        self.td_scale = 0
        self.flags &= IP_CT_TCP_FLAG_BE_LIBERAL


class TcpInfo:
    """struct ip_ct_tcp: both directions plus the last-packet annotations."""

    __slots__ = ("seen", "last_dir", "last_index", "last_seq", "last_ack", "last_end",
                 "last_win", "last_wscale", "last_flags", "retrans", "why")

    def __init__(self) -> None:
        self.seen = (TcpSeen(), TcpSeen())
        self.last_dir = self.last_seq = self.last_ack = self.last_end = 0
        self.last_win = self.last_wscale = self.last_flags = self.retrans = 0
        self.last_index = TCP_NONE_SET
        self.why = ""                # the message of the last rejected packet


# -- options -----------------------------------------------------------------------------
def tcp_options(d: bytearray, th: int, hl: int, s: TcpSeen) -> None:
    """tcp_options(): SACK-permitted and the window scale (capped at 14) from a SYN."""
    i, end = th + 20, th + hl
    if i >= end:
        return
    s.td_scale = 0
    s.flags &= IP_CT_TCP_FLAG_BE_LIBERAL
    while i < end:
        op = d[i]
        if op == 0:
            return
        if op == 1:
            i += 1
            continue
        if i + 2 > end:
            return
        sz = d[i + 1]
        if sz < 2 or i + sz > end:
            return                                   # silly or partial option
        if op == 4 and sz == 2:
            s.flags |= IP_CT_TCP_FLAG_SACK_PERM
        elif op == 3 and sz == 3:
            s.td_scale = min(d[i + 2], TCP_MAX_WSCALE)
            s.flags |= IP_CT_TCP_FLAG_WINDOW_SCALE
        i += sz


def tcp_sack(d: bytearray, th: int, hl: int, sack: int) -> int:
    """tcp_sack(): the highest right edge of the SACK blocks, else *sack* (the ack)."""
    i, end = th + 20, th + hl
    if end - i == 12 and d[i] == 1 and d[i + 1] == 1 and d[i + 2] == 8 and d[i + 3] == 10:
        return sack                                  # timestamps only: the common case
    while i < end:
        op = d[i]
        if op == 0:
            return sack
        if op == 1:
            i += 1
            continue
        if i + 2 > end:
            return sack
        sz = d[i + 1]
        if sz < 2 or i + sz > end:
            return sack
        if op == 5 and sz >= 10 and not (sz - 2) % 8:
            for j in range(i + 2, i + sz, 8):
                right = int.from_bytes(d[j + 4:j + 8], "big")
                if after(right, sack):
                    sack = right
            return sack
        i += sz
    return sack


def _init_sender(sender: TcpSeen, receiver: TcpSeen, d: bytearray | None, th: int,
                 end: int, win: int, direction: int) -> None:
    """tcp_init_sender(): a SYN/ACK (or a SYN in the reply direction) starts a side."""
    sender.td_end = sender.td_maxend = end
    sender.td_maxwin = win or 1
    if d is not None:
        tcp_options(d, th, (d[th + 12] >> 4) << 2, sender)
    if direction == 1 and not (sender.flags & IP_CT_TCP_FLAG_WINDOW_SCALE
                               and receiver.flags & IP_CT_TCP_FLAG_WINDOW_SCALE):
        sender.td_scale = receiver.td_scale = 0      # RFC 7323: both or neither


# -- the window --------------------------------------------------------------------------
def tcp_in_window(c: Conn, direction: int, seq: int, ack: int, win: int, flags: int,
                  datalen: int, sack: int | None = None, liberal: bool = False,
                  d: bytearray | None = None, th: int = 0) -> int:
    """tcp_in_window(): check one segment against the entry's windows and update them.

    Contract (callable from a fast path on plain ints):
    * ``c`` is a TCP Conn whose ``c.tcp`` (TcpInfo) was set by ``tcp_new``; ``direction``
      0 original / 1 reply; ``seq``, ``ack`` the raw header values, ``win`` the raw
      16-bit window (the function scales it), ``flags`` the TCP flag byte, ``datalen``
      the payload bytes after the TCP header (IP length - IP header - data offset);
    * ``sack``: the highest SACK right edge when the receiver permitted SACK
      (``tcp_sack(d, th, hl, ack)``), None means ``ack``;
    * ``liberal``: the table's ``tcp_be_liberal`` knob;
    * ``d``/``th``: the packet and TCP header offset, needed only for segments with SYN
      (their options set the window scale); a fast path must hand every SYN, FIN and
      RST segment to the slow path (they change the state, which this does not touch).
    Returns NFCT_TCP_ACCEPT (2, state updated), NFCT_TCP_IGNORE (1, the packet passes,
    nothing changed: no timeout refresh) or NFCT_TCP_INVALID (0: the packet is INVALID);
    on a rejection ``c.tcp.why`` holds the kernel's log message.  The caller refreshes
    the timeout (``tcp_timeout``) and the last_index/last_dir annotations.
    """
    t = c.tcp
    sender = t.seen[direction]
    receiver = t.seen[1 - direction]
    end = (seq + datalen + (flags & TH_SYN and 1) + (flags & TH_FIN)) & M32
    if sack is None:
        sack = ack
    if sender.td_maxwin == 0:
        if flags & TH_SYN:
            _init_sender(sender, receiver, d, th, end, win, direction)
            if not flags & TH_ACK:
                return NFCT_TCP_ACCEPT                   # simultaneous open
        else:
            # Mid-stream: the history is lost, take what this packet says.
            sender.td_end = end
            swin = win << sender.td_scale
            sender.td_maxwin = swin or 1
            sender.td_maxend = (end + sender.td_maxwin) & M32
            if receiver.td_maxwin == 0:
                receiver.td_end = receiver.td_maxend = sack
            elif sack == (receiver.td_end + 1) & M32:
                receiver.td_end = sack                   # a keepalive's answer (III)
    elif flags & TH_SYN and after(end, sender.td_end) and c.tcp_state in (sSS, sSR):
        _init_sender(sender, receiver, d, th, end, win, direction)   # re-initialised SYN
        if direction == 1 and not flags & TH_ACK:
            return NFCT_TCP_ACCEPT
    if not flags & TH_ACK:
        ack = sack = receiver.td_end                     # no ACK: pretend it is fine
    elif flags & TH_RST and ack == 0:
        ack = sack = receiver.td_end                     # broken stacks: RST+ACK with 0
    if flags & TH_RST and seq == 0 and c.tcp_state == sSS:
        seq = end = sender.td_end                        # RST answering a SYN
    # The four checks and the updates, with before()/after() written out and the
    # fields read once (the hot path: every tracked TCP segment comes here).
    lib = liberal or sender.flags & IP_CT_TCP_FLAG_BE_LIBERAL
    s_end, s_maxend, s_maxwin = sender.td_end, sender.td_maxend, sender.td_maxwin
    r_end, r_maxwin = receiver.td_end, receiver.td_maxwin
    maxackwin = s_maxwin if s_maxwin > MAXACKWINCONST else MAXACKWINCONST
    if ((s_maxend - seq) & M32) >= _H:                   # I. before(td_maxend, seq)
        overshot = (end - s_maxend + 1) & M32
        if (r_maxwin and ((s_end - r_maxwin - 1 - end) & M32) >= _H
                and ((r_end - maxackwin - 1 - sack) & M32) >= _H
                and overshot <= r_maxwin
                and not ((r_end - sack) & M32) >= _H):
            # More than the receive window allows: keep td_end so the ACK fits later.
            sender.td_end = end
            sender.flags |= IP_CT_TCP_FLAG_DATA_UNACKNOWLEDGED
            if lib:
                return NFCT_TCP_ACCEPT
            t.why = f"{overshot} bytes more than expected"
            return NFCT_TCP_IGNORE
        if lib:
            return NFCT_TCP_ACCEPT
        t.why = (f"SEQ is over upper bound {(s_maxend + 1) & M32} "
                 "(over the window of the receiver)")
        return NFCT_TCP_INVALID
    if ((r_end - sack) & M32) >= _H:                     # III. before(r.td_end, sack)
        if lib:
            return NFCT_TCP_ACCEPT
        t.why = (f"ACK is over upper bound {(r_end + 1) & M32} "
                 "(ACKed data not seen yet)")
        return NFCT_TCP_INVALID
    if r_maxwin and not ((s_end - r_maxwin - 1 - end) & M32) >= _H:   # II.
        if lib:
            return NFCT_TCP_ACCEPT
        t.why = (f"SEQ is under lower bound {(s_end - r_maxwin - 1) & M32} "
                 "(already ACKed data retransmitted)")
        return NFCT_TCP_IGNORE
    if not ((r_end - maxackwin - 1 - sack) & M32) >= _H:  # IV.
        if lib:
            return NFCT_TCP_ACCEPT
        t.why = (f"ignored ACK under lower bound {(r_end - maxackwin - 1) & M32} "
                 "(possible overly delayed)")
        return NFCT_TCP_IGNORE
    win_raw = win
    if not flags & TH_SYN:
        win <<= sender.td_scale
    # Update the sender.
    swin = win + ((sack - ack) & M32)
    if s_maxwin < swin:
        sender.td_maxwin = swin
    if ((s_end - end) & M32) >= _H:                      # after(end, td_end)
        sender.td_end = end
        sender.flags |= IP_CT_TCP_FLAG_DATA_UNACKNOWLEDGED
    if flags & TH_ACK:
        if not sender.flags & IP_CT_TCP_FLAG_MAXACK_SET:
            sender.td_maxack = ack
            sender.flags |= IP_CT_TCP_FLAG_MAXACK_SET
        elif ((sender.td_maxack - ack) & M32) >= _H:
            sender.td_maxack = ack
    # Update the receiver.
    if r_maxwin and ((s_maxend - end) & M32) >= _H:      # after(end, s.td_maxend)
        receiver.td_maxwin = r_maxwin + ((end - s_maxend) & M32)
    r_maxend = receiver.td_maxend
    if ((r_maxend - 1 - sack - win) & M32) >= _H:        # after(sack + win, td_maxend - 1)
        receiver.td_maxend = (sack + win + (win == 0)) & M32
    if ack == r_end:
        receiver.flags &= ~IP_CT_TCP_FLAG_DATA_UNACKNOWLEDGED
    # Retransmissions: the same ACK segment again in the same direction.
    if not flags & (TH_SYN | TH_FIN | TH_RST) and flags & TH_ACK:
        if (t.last_dir == direction and t.last_seq == seq and t.last_ack == ack
                and t.last_end == end and t.last_win == win_raw):
            t.retrans += 1
        else:
            t.last_dir, t.last_seq, t.last_ack, t.last_end = direction, seq, ack, end
            t.last_win = win_raw
            t.retrans = 0
    return NFCT_TCP_ACCEPT


def tcp_timeout(ct: ConnTrack, c: Conn, index: int) -> int:
    """The timeout nf_conntrack_tcp_packet picks after an accepted packet (seconds)."""
    t = c.tcp
    to = TCP_TIMEOUTS[c.tcp_state]
    if t.retrans >= ct.tcp_max_retrans and to > TIMEOUT_MAX_RETRANS:
        return TIMEOUT_MAX_RETRANS
    if index == TCP_RST_SET:
        return TCP_TIMEOUTS[sCL]
    if (t.seen[0].flags | t.seen[1].flags) & IP_CT_TCP_FLAG_DATA_UNACKNOWLEDGED \
            and to > TIMEOUT_UNACK:
        return TIMEOUT_UNACK
    if t.last_win == 0 and to > TIMEOUT_MAX_RETRANS:
        return TIMEOUT_MAX_RETRANS
    return to


# -- new / packet -----------------------------------------------------------------------
def tcp_new(ct: ConnTrack, c: Conn, d: bytearray, th: int) -> bool:
    """tcp_new(): a SYN starts SYN_SENT; an ACK picks a connection up mid-stream when
    nf_conntrack_tcp_loose is set (liberal in both directions); else INVALID (False)."""
    fl = d[th + 13]
    new = _TCP_TABLE[0][tcp_index(fl)][sNO]
    if new >= sIV:
        return False
    seq, _ack, off, _fl, win = _HDR.unpack_from(d, th + 4)
    hl = (off >> 4) << 2
    end = (seq + len(d) - th - hl + (fl & TH_SYN and 1) + (fl & TH_FIN)) & M32
    t = TcpInfo()
    s0 = t.seen[0]
    s0.td_end = end
    s0.td_maxwin = win or 1
    if new == sSS:
        s0.td_maxend = end
        tcp_options(d, th, hl, s0)
    elif not ct.tcp_loose:
        return False
    else:
        s0.td_maxend = (end + s0.td_maxwin) & M32
        s0.flags = t.seen[1].flags = IP_CT_TCP_FLAG_SACK_PERM | IP_CT_TCP_FLAG_BE_LIBERAL
    c.tcp = t
    return True


def _established(c: Conn) -> bool:
    """nf_conntrack_tcp_established()."""
    return c.tcp_state == sES and bool(c.status & IPS_ASSURED)


def tcp_packet(r: Router, ct: ConnTrack, c: Conn, d: bytearray, th: int, direction: int,
               now: int) -> int:
    """nf_conntrack_tcp_packet(): 0 accepted (state and timeout updated), 1 ignored
    (NF_ACCEPT, entry untouched), -1 INVALID (c.tcp.why says why), -2 reopen (the entry
    was killed: look up again, -NF_REPEAT)."""
    t = c.tcp
    seq, ack, off, fl, win = _HDR.unpack_from(d, th + 4)
    hl = (off >> 4) << 2
    datalen = len(d) - th - hl
    index = tcp_index(fl)
    old = c.tcp_state
    new = _TCP_TABLE[direction][index][old]
    check = True
    if new == sSS and old >= sTW:
        if (t.seen[0].flags | t.seen[1].flags) & IP_CT_TCP_FLAG_CLOSE_INIT \
                or (t.last_dir == direction and t.last_index == TCP_RST_SET):
            ct.kill(c, now)                              # reopen a closed/aborted one
            return -2
        new = sIG
    if new == sIG:
        if index == TCP_SYNACK_SET and t.last_index == TCP_SYN_SET \
                and t.last_dir != direction and ack == t.last_end:
            # This SYN/ACK answers a SYN we ignored: both ends are in sync, we are not.
            old, new = sSS, sSR
            ls = t.seen[t.last_dir]
            ls.td_end = ls.td_maxend = t.last_end
            ls.td_maxwin = t.last_win or 1
            ls.td_scale = t.last_wscale
            t.last_flags &= ~IP_CT_EXP_CHALLENGE_ACK
            ls.flags = t.last_flags
            t.seen[direction].reset()
        else:
            t.last_index, t.last_dir, t.last_seq = index, direction, seq
            t.last_end = (seq + datalen + (fl & TH_SYN and 1) + (fl & TH_FIN)) & M32
            t.last_win = win
            if index == TCP_SYN_SET and direction == 0:
                seen = TcpSeen()
                tcp_options(d, th, hl, seen)
                t.last_flags = t.last_wscale = 0
                if seen.flags & IP_CT_TCP_FLAG_WINDOW_SCALE:
                    t.last_flags |= IP_CT_TCP_FLAG_WINDOW_SCALE
                    t.last_wscale = seen.td_scale
                if seen.flags & IP_CT_TCP_FLAG_SACK_PERM:
                    t.last_flags |= IP_CT_TCP_FLAG_SACK_PERM
                if old == sLA:
                    t.last_flags |= IP_CT_EXP_CHALLENGE_ACK
            if old == sSS and index == TCP_ACK_SET and direction == 1:
                t.last_ack = ack                         # a challenge ACK to the SYN?
            return 1
    elif new == sIV:
        t.why = f"packet (index {index}) in dir {direction} invalid, state " \
                f"{TCP_STATE_NAMES[old]}"
        return -1
    elif new == sTW:
        if old == sLA and index == TCP_ACK_SET and t.last_dir != direction \
                and t.last_index == TCP_SYN_SET and t.last_flags & IP_CT_EXP_CHALLENGE_ACK:
            t.last_flags &= ~IP_CT_EXP_CHALLENGE_ACK     # an RFC 5961 challenge ACK
            return 1
    elif new == sS2:
        t.last_flags |= IP_CT_TCP_SIMULTANEOUS_OPEN
    elif new == sSR:
        if direction == 1 and index == TCP_ACK_SET and t.last_flags & IP_CT_TCP_SIMULTANEOUS_OPEN:
            new = sES
    elif new == sCL and index == TCP_RST_SET:
        if old in (sFW, sLA, sTW, sCL, sCW):
            check = False                                # tcp_can_early_drop: no checks
        else:
            other = t.seen[1 - direction]
            done = False
            if other.flags & IP_CT_TCP_FLAG_MAXACK_SET and t.last_index != TCP_SYN_SET:
                done = True
                if seq == 0 and not _established(c):
                    pass
                elif before(seq, other.td_maxack) and not ct.tcp_ignore_invalid_rst:
                    t.why = "invalid rst"
                    return -1
                elif not _established(c) or seq == other.td_maxack:
                    pass
                elif t.last_index == TCP_ACK_SET and t.last_dir == direction \
                        and seq == t.last_end:
                    pass                                 # a RST in a train of data
                else:
                    new = old                            # keep state: a challenge ACK may come
                    done = False
            if not done:
                if ((c.status & IPS_SEEN_REPLY and t.last_index == TCP_SYN_SET)
                        or (not c.status & IPS_ASSURED and t.last_index == TCP_ACK_SET)) \
                        and ack == t.last_end:
                    check = False                        # RST to a SYN/ACK we let through
                elif old == sSS and t.last_index == TCP_ACK_SET and t.last_dir == 1 \
                        and seq == t.last_ack:
                    check = False                        # RST answering a challenge ACK
    if check:
        sack = ack
        receiver = t.seen[1 - direction]
        if receiver.flags & IP_CT_TCP_FLAG_SACK_PERM and hl > 20:
            sack = tcp_sack(d, th, hl, ack)
        res = tcp_in_window(c, direction, seq, ack, win, fl, datalen, sack,
                            bool(ct.tcp_be_liberal), d, th)
        if res == NFCT_TCP_IGNORE:
            return 1
        if res == NFCT_TCP_INVALID:
            _handle_invalid(r, ct, c, direction, index, now)
            return -1
    t.last_index, t.last_dir = index, direction
    c.tcp_state = new
    if old != new and new == sFW:
        t.seen[direction].flags |= IP_CT_TCP_FLAG_CLOSE_INIT
    timeout = tcp_timeout(ct, c, index)
    if not c.status & IPS_SEEN_REPLY:
        if fl & TH_RST:
            ct.kill(c, now)                              # the only reply is a RST
            return 0
        if index == TCP_SYN_SET and old == sSS:
            return 0                                     # a SYN retransmit renews nothing
        if new == sES and timeout > TIMEOUT_UNACK:
            timeout = TIMEOUT_UNACK                      # picked up, unanswered
    elif not c.status & IPS_ASSURED and old in (sSR, sES) and new == sES:
        ct.assure(c)
    ct.set_timeout(r, c, timeout, now)
    return 0


def _handle_invalid(r: Router, ct: ConnTrack, c: Conn, direction: int, index: int,
                    now: int) -> None:
    """nf_tcp_handle_invalid(): an out-of-window FIN/RST answering one from the other
    side shortens an assured entry's timeout to timeout_unacknowledged."""
    if not c.status & IPS_ASSURED or index not in (TCP_RST_SET, TCP_FIN_SET):
        return
    t = c.tcp
    if t.last_dir != direction and t.last_index in (TCP_FIN_SET, TCP_RST_SET):
        if not c.confirmed:
            return
        expires = c.deadline - now
        if expires >= 120 * SECOND and expires > TIMEOUT_UNACK * SECOND:
            ct.set_timeout(r, c, TIMEOUT_UNACK, now)
    else:
        t.last_index, t.last_dir = index, direction


def tcp_established_packet(r: Router, ct: ConnTrack, c: Conn, direction: int, seq: int,
                           ack: int, win: int, flags: int, datalen: int, now: int,
                           sack: int | None = None) -> int:
    """nf_conntrack_tcp_packet() for what a fast path may handle alone: a segment with
    ACK and without SYN/FIN/RST on an ESTABLISHED entry that saw a reply (the state
    table maps it to ESTABLISHED in both directions).  Same results as tcp_packet:
    0 accepted (timeout refreshed, ASSURED set if it was not), 1 ignored (passes, entry
    untouched), -1 INVALID (``c.tcp.why``; the caller treats the packet as INVALID, or
    hands it to the slow path, which decides the same and counts and logs it).  Any
    other segment or state returns -3: take the slow path.  Packet/byte accounting is
    the caller's (Conn.packets/bytes)."""
    if c.tcp_state != sES or flags & (TH_SYN | TH_FIN | TH_RST) or not flags & TH_ACK \
            or not c.status & IPS_SEEN_REPLY:
        return -3
    res = tcp_in_window(c, direction, seq, ack, win, flags, datalen, sack,
                        bool(ct.tcp_be_liberal))
    if res == NFCT_TCP_IGNORE:
        return 1
    if res == NFCT_TCP_INVALID:
        return -1
    t = c.tcp
    t.last_index, t.last_dir = TCP_ACK_SET, direction
    if not c.status & IPS_ASSURED:
        ct.assure(c)
    ct.set_timeout(r, c, tcp_timeout(ct, c, TCP_ACK_SET), now)
    return 0
