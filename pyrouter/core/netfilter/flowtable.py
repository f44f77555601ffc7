"""The per-flow fast path: an implicit software flowtable for netfilter rulesets.

Once any entry sits on PRE_ROUTING, FORWARD or POST_ROUTING the destination-keyed
forwarding cache is off (router.py): every packet would run the whole slow path,
hooks included.  This module gives established flows a way back, in the spirit of
the kernel's nf_flow_table (net/netfilter/nf_flow_table_ip.c,
nf_flow_offload_ip_hook), but *without* changing what the ruleset decides: an entry
is only made from a packet whose slow-path run proved that the next packets of the
same flow would get exactly the same treatment, and it replays that treatment.

Key: the IPv4 frame bytes 26:38 (source, destination, source and destination port)
or the IPv6 bytes 22:58; 12 and 36 bytes, so the entries share the router's
forwarding cache with the 4/16-byte destination keys and are cleared with it (any
FIB, neighbour, link, address or hook change, reload; FWD_CACHE_MAX bound).  The
entry also pins the input port, protocol, TOS and, for TCP, the exact flags byte.

A packet is *probed* (``probe``) when it is TCP or UDP, not a fragment, with no IP
options, and every entry on the forwarding hooks is flow-safe (the nft chains,
conntrack and NAT: ``HookEntry.flow_safe``; a plugin is not).  The probe records,
through ``Router.flow_rec``, every rule counter the generated chain code bumped, and
a ``None`` when the code evaluated something that may differ between packets of one
flow (``meta length``, ``ip ttl``, ``limit``, ``log``, ``maxseg``, a verdict map on
such a key...).  An entry is made only when all of these hold:

* nothing variant was evaluated and the packet left as exactly one frame, through
  ip_forward_finish on a CONNECTED neighbour (``Router.flow_fwd``), not back out its
  input port (redirects), within the MTU;
* with conntrack registered: the packet belonged to a confirmed connection, moved its
  counters by one and changed neither its mark, its status nor its TCP state.  A TCP
  connection must be ESTABLISHED, ASSURED and have seen a reply, and the packet carry
  ACK and none of SYN/FIN/RST (those change state or are ignored by conntrack).  A
  UDP (or UDP-Lite) connection may still be unreplied: every packet of a one-way
  stream is NEW with the same 30 s timeout until a reply changes the status, which
  invalidates the entry;
* replaying the entry on the same frame gives byte for byte the frame the slow
  path sent (a self-check: a NAT rewrite, the TTL and both checksums).

Replay (``forward4``/``forward6``): header checks as the slow path's first steps
(lengths, TTL/hop limit, IPv4 checksum, L2 destination; with conntrack, its transport
checksum check at PREROUTING, nf_conntrack_checksum), the rewrite (MAC header,
TTL, addresses and ports from the NAT binding, checksums by RFC 1624 with one
precomputed delta per direction, a zero UDP checksum over IPv4 stays zero), the
recorded rule counters, conntrack's per-segment TCP work (window tracking and the
timeout, conntrack_tcp.tcp_established_packet: a segment it finds INVALID goes to the
slow path, which decides the same, counts and logs it; an ignored one passes without
touching the entry), the connection's per-direction counters and, for UDP, its timeout
(moved to now + the timeout the slow path had just set), port counters.  A dying
connection (killed, expired, masquerade address gone) sends the packet to the slow
path.

Invariants: an entry never answers differently from the slow path for the fields it
pins; it holds no reference the cache clear does not drop; nothing here raises on
packet contents (every index is checked against the lengths first).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..link.ethernet import eth_rcv
from .conntrack import IPS_ASSURED, IPS_CONFIRMED, IPS_SEEN_REPLY, l4_csum_bad
from .conntrack_tcp import _HDR, IP_CT_TCP_FLAG_SACK_PERM, sES, tcp_established_packet, tcp_sack

if TYPE_CHECKING:
    from ..port import Port
    from ..router import Router

_fb = int.from_bytes
_CT_READY = IPS_ASSURED | IPS_CONFIRMED | IPS_SEEN_REPLY
TH_ACK, TH_SYN_FIN_RST = 0x10, 0x07

# An entry (a list, for speed): the fields forward4/6 unpack.
(F_OIF, F_L2, F_MTU, F_OPORT, F_IIF, F_PROTO, F_TOS, F_FLAGS, F_NEW, F_IPD, F_L4OFF,
 F_L4D, F_CONN, F_DIR, F_CTSTATE, F_TMO) = range(16)


def _sum16(b: bytes | bytearray) -> int:
    """The ones' complement sum of 16-bit words, as a residue mod 0xFFFF."""
    return _fb(b, "big") % 0xFFFF


def _fold(s: int) -> int:
    s = (s & 0xFFFF) + (s >> 16)
    return (s & 0xFFFF) + (s >> 16)


# -- replay ---------------------------------------------------------------------------
def _rewrite4(fl: list[Any], frame: bytes, total: int, n: int) -> bytearray:
    out = bytearray(frame) if total == n - 14 else bytearray(frame[:14 + total])
    out[0:12] = fl[F_L2]
    out[22] -= 1
    new = fl[F_NEW]
    if new is not None:
        out[26:38] = new
    s = ~_fold((~((out[24] << 8) | out[25]) & 0xFFFF) + fl[F_IPD]) & 0xFFFF
    out[24] = s >> 8
    out[25] = s & 0xFF
    d = fl[F_L4D]
    if d:
        at = fl[F_L4OFF]
        o = (out[at] << 8) | out[at + 1]
        if o or fl[F_PROTO] == 6:
            s = ~_fold((~o & 0xFFFF) + d) & 0xFFFF
            if s == 0 and fl[F_PROTO] == 17:
                s = 0xFFFF
            out[at] = s >> 8
            out[at + 1] = s & 0xFF
    return out


def _rewrite6(fl: list[Any], frame: bytes, total: int, n: int) -> bytearray:
    out = bytearray(frame) if total == n else bytearray(frame[:total])
    out[0:12] = fl[F_L2]
    out[21] -= 1
    new = fl[F_NEW]
    if new is not None:
        out[22:58] = new
        d = fl[F_L4D]
        if d:
            at = fl[F_L4OFF]
            o = (out[at] << 8) | out[at + 1]
            s = ~_fold((~o & 0xFFFF) + d) & 0xFFFF
            out[at] = s >> 8
            out[at + 1] = s & 0xFF
    return out


def _tcp_window(r: Router, c: Any, direction: int, frame: bytes, th: int, hl: int,
                datalen: int, now: int) -> int:
    """conntrack's per-segment TCP work for a cached flow: window tracking
    (conntrack_tcp.tcp_established_packet: 0 accepted and timeout refreshed, 1 ignored,
    -1 INVALID, -3 not an established ACK segment)."""
    seq, ack, _off, flags, win = _HDR.unpack_from(frame, th + 4)
    sack = None
    if hl > 20 and c.tcp.seen[1 - direction].flags & IP_CT_TCP_FLAG_SACK_PERM:
        sack = tcp_sack(frame, th, hl, ack)        # type: ignore[arg-type]
    return tcp_established_packet(r, r.nf.conntrack, c, direction, seq, ack, win, flags,
                                  datalen, now, sack)


def _l4_ok(fl: list[Any], frame: bytes, l4: int, end: int) -> Any:
    """The recorded counters for this packet's flags, or None (take the slow path)."""
    if fl[F_PROTO] == 6:
        if l4 + 20 > end:
            return None
        doff = (frame[l4 + 12] >> 4) << 2
        if doff < 20 or l4 + doff > end:
            return None
        return fl[F_FLAGS].get(frame[l4 + 13])
    if l4 + 8 > end:
        return None
    return fl[F_FLAGS].get(0)


def _account(r: Router, fl: list[Any], out: bytearray, cnts: tuple[list[int], ...],
             length: int, now: int, res: int) -> None:
    for cnt in cnts:
        cnt[0] += 1
        cnt[1] += length
    c = fl[F_CONN]
    if c is not None and res == 0:                 # 1: a TCP segment conntrack ignores
        d = fl[F_DIR]
        c.packets[d] += 1
        c.bytes[d] += length
        if fl[F_PROTO] != 6:                       # TCP: tcp_established_packet did it
            c.deadline = now + fl[F_TMO]
    oport = fl[F_OPORT]
    oport.tx_packets += 1
    oport.tx_bytes += len(out)
    r.tx.append((fl[F_OIF], out))


def forward4(r: Router, fl: list[Any], port: Port, frame: bytes, n: int, now: int) -> bool:
    """Replay *fl* for an IPv4 frame (the caller checked version/IHL 0x45, ethertype
    and n >= 38); False: take the slow path.  (_l4_ok and _account inlined: the hot path.)"""
    total = (frame[16] << 8) | frame[17]
    c = fl[F_CONN]
    if (frame[23] != fl[F_PROTO] or port.ifindex != fl[F_IIF] or frame[22] <= 1
            or not 28 <= total <= n - 14 or total > fl[F_MTU]
            or (frame[15] & 0x1E) != fl[F_TOS] or frame[20] & 0x3F or frame[21]
            or frame[0:6] != port.mac
            or (c is not None and (c.status, c.mark, c.tcp_state) != fl[F_CTSTATE])
            or _fb(frame[14:34], "big") % 0xFFFF):
        return False
    if frame[23] == 6:
        doff = (frame[46] >> 4) << 2
        if total < 40 or doff < 20 or 20 + doff > total:
            return False
        cnts = fl[F_FLAGS].get(frame[47])
        if cnts is None:
            return False
        if c is not None:
            if r.nf.conntrack.checksum and l4_csum_bad(memoryview(frame)[14:14 + total],
                                                       4, 6, 20):
                return False                       # INVALID: the slow path counts it
            res = _tcp_window(r, c, fl[F_DIR], frame, 34, doff, total - 20 - doff, now)
            if res < 0:
                return False                       # INVALID or not ours: the slow path
    else:
        cnts = fl[F_FLAGS].get(0)
        if cnts is None:
            return False
        if c is not None and r.nf.conntrack.checksum \
                and l4_csum_bad(memoryview(frame)[14:14 + total], 4, 17, 20):
            return False
        res = 0
    out = _rewrite4(fl, frame, total, n)
    for cnt in cnts:
        cnt[0] += 1
        cnt[1] += total
    if c is not None and res == 0:
        d = fl[F_DIR]
        c.packets[d] += 1
        c.bytes[d] += total
        if frame[23] != 6:
            c.deadline = now + fl[F_TMO]
    oport = fl[F_OPORT]
    oport.tx_packets += 1
    oport.tx_bytes += 14 + total
    r.tx.append((fl[F_OIF], out))
    r.flow_forwarded += 1
    return True


def forward6(r: Router, fl: list[Any], port: Port, frame: bytes, n: int, now: int) -> bool:
    """Replay *fl* for an IPv6 frame (the caller checked the version, the ethertype and
    n >= 58); False: take the slow path."""
    total = 54 + ((frame[18] << 8) | frame[19])
    c = fl[F_CONN]
    if (frame[20] != fl[F_PROTO] or port.ifindex != fl[F_IIF] or frame[21] <= 1
            or total > n or total - 14 > fl[F_MTU]
            or (((frame[14] & 0x0F) << 4) | (frame[15] >> 4)) != fl[F_TOS]
            or frame[0:6] != port.mac
            or (c is not None and (c.status, c.mark, c.tcp_state) != fl[F_CTSTATE])):
        return False
    cnts = _l4_ok(fl, frame, 54, total)
    if cnts is None:
        return False
    res = 0
    if c is not None and r.nf.conntrack.checksum \
            and l4_csum_bad(memoryview(frame)[14:total], 6, frame[20], 40):
        return False                               # nf_conntrack_checksum: INVALID
    if c is not None and frame[20] == 6:
        doff = (frame[66] >> 4) << 2
        res = _tcp_window(r, c, fl[F_DIR], frame, 54, doff, total - 54 - doff, now)
        if res < 0:
            return False
    out = _rewrite6(fl, frame, total, n)
    _account(r, fl, out, cnts, total - 14, now, res)
    r.flow_forwarded6 += 1
    return True


# -- probe and fill -------------------------------------------------------------------
def eligible4(frame: bytes, n: int) -> bool:
    """TCP/UDP, not a fragment (IHL 5 checked by the caller), long enough for ports."""
    return n >= 38 and frame[23] in (6, 17) and not (frame[20] & 0x3F or frame[21])


def eligible6(frame: bytes, n: int) -> bool:
    return n >= 58 and frame[20] in (6, 17)


def probe(r: Router, port: Port, frame: bytes, now: int, pf: int) -> None:
    """Run the slow path on *frame*, recording what it did; make or extend an entry
    when the run proves the flow's next packets would be treated the same way."""
    nf = r.nf
    c = None
    if nf.ct_registered(pf):
        if pf == 4:
            t = (4, frame[26:30], frame[30:34], frame[23], (frame[34] << 8) | frame[35],
                 (frame[36] << 8) | frame[37])
        else:
            t = (6, frame[22:38], frame[38:54], frame[20], (frame[54] << 8) | frame[55],
                 (frame[56] << 8) | frame[57])
        c = nf.conntrack.hash.get(t)
        if c is None or not c.status & IPS_CONFIRMED:
            eth_rcv(r, port, frame, now)          # a flow's first packet: nothing to learn
            return
        dirn = 0 if c.orig == t else 1
        before = (c.mark, c.status, c.tcp_state, c.packets[dirn])
    t0 = len(r.tx)
    rec: list[Any] = []
    r.flow_rec = rec
    r.flow_fwd = None
    try:
        eth_rcv(r, port, frame, now)
    finally:
        r.flow_rec = None
    fwd, r.flow_fwd = r.flow_fwd, None
    if fwd is None or len(r.tx) != t0 + 1 or None in rec:
        return
    if c is not None:
        if (c.mark, c.status, c.tcp_state, c.packets[dirn] - 1) != before or \
                (c.proto == 6 and (c.tcp_state != sES or (c.status & _CT_READY) != _CT_READY)):
            return
    l4 = 34 if pf == 4 else 54
    proto = frame[23] if pf == 4 else frame[20]
    flags = 0
    if proto == 6:
        flags = frame[l4 + 13]
        if flags & (TH_ACK | TH_SYN_FIN_RST) != TH_ACK:
            return
    oport, l2, mtu = fwd
    oif, sent = r.tx[t0]
    if pf == 4:
        total = (frame[16] << 8) | frame[17]
        if len(sent) != 14 + total or sent[12:14] != b"\x08\x00":
            return
        new = bytes(sent[26:38])
        old = frame[26:38]
        ipd = (_sum16(new[0:8]) - _sum16(old[0:8]) + 0xFEFF) % 0xFFFF
        l4d = (_sum16(new) - _sum16(old)) % 0xFFFF
        tos = frame[15] & 0x1E
        l4off = 34 + (16 if proto == 6 else 6)
    else:
        total = 54 + ((frame[18] << 8) | frame[19])
        if len(sent) != total or sent[12:14] != b"\x86\xdd":
            return
        new = bytes(sent[22:58])
        old = frame[22:58]
        ipd = 0
        l4d = (_sum16(new) - _sum16(old)) % 0xFFFF
        tos = ((frame[14] & 0x0F) << 4) | (frame[15] >> 4)
        l4off = 54 + (16 if proto == 6 else 6)
    key = bytes(old)
    nat = new != key
    prev = r.fwd_cache.get(key)
    fl: list[Any] = [oif, bytes(l2), mtu, oport, port.ifindex, proto, tos, {flags: tuple(rec)},
                     new if nat else None, ipd, l4off, l4d, c, dirn if c is not None else 0,
                     (c.status, c.mark, c.tcp_state) if c is not None else None,
                     (c.deadline - now) if c is not None else 0]
    if isinstance(prev, list) and prev[:F_FLAGS] == fl[:F_FLAGS] \
            and prev[F_NEW:F_TMO] == fl[F_NEW:F_TMO]:
        prev[F_FLAGS][flags] = tuple(rec)
        prev[F_TMO] = fl[F_TMO]
        fl = prev
    n = len(frame)
    again = _rewrite4(fl, frame, total, n) if pf == 4 else _rewrite6(fl, frame, total, n)
    if again != sent:
        r.flow_mismatch += 1                       # never cache what we cannot replay
        r.fwd_cache.pop(key, None)
        return
    if fl is not prev:
        r.flow_cache_fill(key, fl)

