"""Connection tracking: nf_conntrack_in() and __nf_conntrack_confirm() (net/netfilter/).

A connection (struct nf_conn, here ``Conn``) has an original and a reply tuple
(l3 family, addresses, protocol, ports; ICMP/ICMPv6 echo-like messages use the
identifier as the source "port" and type<<8|code as the destination one, the reply
tuple holding the inverse type).  ``conntrack_in`` (registered at PREROUTING and
OUTPUT, priority -200) finds or creates the entry and sets ``pkt.ct`` and
``pkt.ctinfo`` (enum ip_conntrack_info: ESTABLISHED 0, RELATED 1, NEW 2,
ESTABLISHED_REPLY 3, RELATED_REPLY 4, UNTRACKED 7; ``pkt.ct is None`` with another
ctinfo is INVALID).  A new entry is *unconfirmed*: it hangs on the packet only and
enters the table in ``conntrack_confirm`` (POSTROUTING and INPUT, last priority),
when the packet leaves; a dropped packet takes its entry with it.

Protocols (nf_conntrack_proto_*.c):
* TCP: tcp_conntracks[dir][flags][state] as in the kernel, nf_conntrack_tcp_loose=1
  (an ACK without SYN picks a connection up as ESTABLISHED), tcp_valid_flags, a SYN
  in TIME_WAIT/CLOSE reopens (the old entry is killed), a RST before any reply kills
  the entry, ASSURED on SYN_RECV/ESTABLISHED -> ESTABLISHED, per-state timeouts
  (SYN_SENT 120 s ... CLOSE 10 s, a RST gives CLOSE's).  Window tracking:
  conntrack_tcp.py (tcp_in_window).
* UDP: 30 s until a reply was seen; then the kernel's "stream" rule: a packet more
  than 2 s after the first one extends to 120 s and sets ASSURED.
* ICMP/ICMPv6: echo, timestamp, information, address mask (IPv4), echo and node
  information (IPv6) are tracked (30 s); replies without a request and other
  informational types are INVALID; ND/MLD types are UNTRACKED (icmpv6_error's
  noct_valid_new); errors (dest unreachable, time exceeded, parameter problem,
  source quench, packet too big) are RELATED to the connection their embedded
  header belongs to (the inner tuple inverted), else INVALID.
* others: generic, 600 s, the tuple has no ports.

Fragments are reassembled before tracking: IPv4 here (nf_defrag_ipv4, through the
router's IPv4 reassembler), IPv6 by defrag6.py's hook at -400 (nf_defrag_ipv6).
With nf_conntrack_checksum (``checksum``, default 1) the TCP, UDP (not a zero UDP
checksum over IPv4), ICMP and ICMPv6 checksums of packets arriving at PREROUTING are
verified (tcp_error/udp_error/icmp_error -> nf_checksum); a bad one makes the packet
INVALID (counted, no entry is made); the router's own packets (OUTPUT) are trusted.

The table is bounded (``max``, nf_conntrack_max): creating an entry in a full table
first evicts the oldest unassured entry (early_drop), else the packet is dropped
(counted ``drop``, DropReason.CT_TABLE_FULL).  Expiry is driven by the router's
TimerQueue with keys ("ct", conn): a packet only moves ``conn.deadline``; the timer
re-arms itself when it fires early, so there is one heap entry per connection and
no scan of the table.  Counters follow ``conntrack -S``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from ..actions import Event
from ...wire.checksum import ones_sum, pseudo_header_v4, pseudo_header_v6
from ..drops import DropReason
from .conntrack_tcp import TCP_STATE_NAMES, TCP_TIMEOUTS, TCP_VALID, TH_PSH, sNO, tcp_new, \
    tcp_packet  # noqa: F401 (TCP_TIMEOUTS re-exported)
from .defrag6 import PRIO_CONNTRACK_DEFRAG, ipv6_defrag
from .hooks import NF_ACCEPT, NF_DROP, NF_STOLEN, PRIO_CONNTRACK, PRIO_CONNTRACK_CONFIRM, \
    Hook, HookEntry, HookState
from .view import pktinfo

if TYPE_CHECKING:
    from ..packet import PacketBuf
    from ..router import Router
    from .hooks import Netfilter

SECOND = 1_000_000_000
_fb = int.from_bytes
LOG_BURST = 10                     # ct.invalid events before the 1/s rate limit

# enum ip_conntrack_info
IP_CT_ESTABLISHED, IP_CT_RELATED, IP_CT_NEW = 0, 1, 2
IP_CT_IS_REPLY = 3
IP_CT_ESTABLISHED_REPLY, IP_CT_RELATED_REPLY = 3, 4
IP_CT_UNTRACKED = 7
DIR_ORIGINAL, DIR_REPLY = 0, 1

# enum ip_conntrack_status
IPS_EXPECTED, IPS_SEEN_REPLY, IPS_ASSURED, IPS_CONFIRMED = 1, 2, 4, 8
IPS_SRC_NAT, IPS_DST_NAT, IPS_DYING = 16, 32, 512
STATUS_NAMES = {"expected": IPS_EXPECTED, "seen-reply": IPS_SEEN_REPLY,
                "assured": IPS_ASSURED, "confirmed": IPS_CONFIRMED, "snat": IPS_SRC_NAT,
                "dnat": IPS_DST_NAT, "dying": IPS_DYING}
# nft's ct state bits (NF_CT_STATE_BIT, NF_CT_STATE_INVALID_BIT, ..._UNTRACKED_BIT)
STATE_NAMES = {"invalid": 1, "established": 2, "related": 4, "new": 8, "untracked": 64}


def ct_state_bits(pkt: PacketBuf) -> int:
    """nft_ct_get_eval(NFT_CT_STATE)."""
    if pkt.ct is not None:
        return 1 << (pkt.ctinfo % IP_CT_IS_REPLY + 1)
    return 64 if pkt.ctinfo == IP_CT_UNTRACKED else 1


UDP_UNREPLIED, UDP_REPLIED, UDP_STREAM_DELAY = 30, 120, 2
ICMP_TIMEOUT, GENERIC_TIMEOUT = 30, 600
# echo-like types and their inverse (nf_conntrack_proto_icmp.c invmap / icmpv6 invmap)
ICMP_INV = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 17: 18, 18: 17}
ICMP_NEW = frozenset({8, 13, 15, 17})
ICMP_ERRORS = frozenset({3, 4, 5, 11, 12})
ICMP6_INV = {128: 129, 129: 128, 139: 140, 140: 139}
ICMP6_NEW = frozenset({128, 139})
ICMP6_ERRORS = frozenset({1, 2, 3, 4})
ICMP6_NOCT = frozenset({130, 131, 132, 133, 134, 135, 136, 143})
PROTO_NAMES = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6", 132: "sctp", 136: "udplite",
               33: "dccp", 47: "gre"}

# A tuple: (pf, src bytes, dst bytes, proto, sport or icmp id, dport or icmp type<<8|code)
Tuple = tuple[int, bytes, bytes, int, int, int]


@dataclass(eq=False, slots=True)
class Conn:
    """struct nf_conn."""

    orig: Tuple
    reply: Tuple
    status: int = 0
    mark: int = 0
    tcp_state: int = sNO
    deadline: int = 0             # absolute expiry (valid once confirmed)
    timeout: int = 0              # relative timeout (ns) while unconfirmed
    timer_at: int | None = None   # the pending TimerQueue deadline
    created: int = 0
    packets: list[int] = field(default_factory=lambda: [0, 0])
    bytes: list[int] = field(default_factory=lambda: [0, 0])
    masq: tuple[int, bytes] | None = None   # masquerade: (ifindex, address) it used (nat.py)
    tcp: Any = None               # conntrack_tcp.TcpInfo (struct ip_ct_tcp) for TCP
    ev: int = 0                   # cached events (IPCT_*) not delivered yet

    @property
    def proto(self) -> int:
        return self.orig[3]

    @property
    def confirmed(self) -> bool:
        return bool(self.status & IPS_CONFIRMED)


# Event types as conntrack -E names them (nf_conntrack_ecache: IPCT_NEW, the others
# (IPCT_REPLY, IPCT_ASSURED, IPCT_PROTOINFO ...) as one UPDATE, IPCT_DESTROY)
EV_NEW, EV_UPDATE, EV_DESTROY = "NEW", "UPDATE", "DESTROY"
CT_EVENT_PENDING = 1
Listener = Callable[[str, "Conn", str], None]

STAT_KEYS = ("found", "invalid", "insert", "insert_failed", "drop", "early_drop", "error",
             "search_restart", "clash_resolve", "chaintoolong")   # as conntrack -S prints


class ConnTrack:
    """The table: both tuples of every confirmed entry map to it (the hash)."""

    def __init__(self, max_entries: int = 65536) -> None:
        self.max = max_entries
        self.hash: dict[Tuple, Conn] = {}
        self.unassured: OrderedDict[Conn, None] = OrderedDict()   # early-drop candidates
        self.count = 0
        self.stats = dict.fromkeys(STAT_KEYS, 0)
        self.nat_bysource: dict[tuple, list[Conn]] = {}   # nf_nat_bysource (nat.py)
        # net.netfilter sysctls (nf_conntrack_proto_tcp.c), set by control from config
        self.tcp_be_liberal = 0
        self.checksum = 1             # nf_conntrack_checksum: verify L4 at PREROUTING
        self.tcp_loose = 1
        self.tcp_max_retrans = 3
        self.tcp_ignore_invalid_rst = 0
        self.tcp_invalid = 0          # TCP packets INVALID in tcp_packet (window or state)
        self._log_tokens = float(LOG_BURST)
        self._log_stamp: int | None = None
        # ctnetlink event listeners (conntrack -E): fn(type, conn, line), called
        # synchronously; each must queue boundedly (the shell's drop and count).
        self.listeners: list[Listener] = []

    def __getstate__(self) -> dict[str, Any]:
        """A copy (explain's deep copy of the router) reports no events."""
        state = dict(self.__dict__)
        state["listeners"] = []
        return state

    def event(self, kind: str, c: Conn, now: int | None) -> None:
        """Deliver one event to the listeners (nf_conntrack_eventmask_report)."""
        c.ev = 0
        line = event_line(kind, c, now)
        for fn in list(self.listeners):
            fn(kind, c, line)

    def settings_from(self, new: ConnTrack) -> None:
        """Reload: the new config's limits and knobs; the entries stay."""
        self.max = new.max
        self.tcp_be_liberal, self.tcp_loose = new.tcp_be_liberal, new.tcp_loose
        self.tcp_max_retrans = new.tcp_max_retrans
        self.checksum = new.checksum

    def log_invalid(self, r: Router, c: Conn, now: int) -> None:
        """nf_ct_l4proto_log_invalid(): an Event ``ct.invalid`` with the kernel's message
        ("nf_ct_tcp: ACK is over the upper bound ..."), at most LOG_BURST then one per
        second (a token bucket, like net_ratelimit)."""
        self.tcp_invalid += 1
        if self._log_stamp is not None:
            self._log_tokens = min(float(LOG_BURST),
                                   self._log_tokens + (now - self._log_stamp) / SECOND)
        self._log_stamp = now
        if self._log_tokens < 1:
            return
        self._log_tokens -= 1
        why = c.tcp.why if c.tcp is not None else ""
        r.events.append(Event("ct.invalid", {"msg": f"nf_ct_tcp: {why}",
                                             "tuple": _tuple_text(c.orig).strip()}))

    def __len__(self) -> int:
        return self.count

    def entries(self) -> list[Conn]:
        return [c for t, c in self.hash.items() if t is c.orig]

    def lookup(self, t: Tuple) -> Conn | None:
        return self.hash.get(t)

    # -- table maintenance ---------------------------------------------------------
    def kill(self, c: Conn, now: int | None = None) -> None:
        """nf_ct_kill(): out of the table now (its timer finds it gone); a DESTROY
        event for a confirmed entry (the remaining timeout shown when *now* is given)."""
        if self.hash.get(c.orig) is c:
            del self.hash[c.orig]
            self.hash.pop(c.reply, None)
            self.count -= 1
            if self.listeners:
                self.event(EV_DESTROY, c, now)
        self.unassured.pop(c, None)
        c.status |= IPS_DYING

    def flush(self) -> None:
        for c in self.entries():
            self.kill(c)

    def set_timeout(self, r: Router, c: Conn, secs: int, now: int) -> None:
        """nf_ct_refresh(): move the deadline; arm a timer only if none is earlier."""
        if not c.status & IPS_CONFIRMED:
            c.timeout = secs * SECOND
            return
        c.deadline = now + secs * SECOND
        if c.timer_at is None or c.timer_at > c.deadline:
            c.timer_at = c.deadline
            r.timers.schedule(c.deadline, ("ct", c))

    def timer(self, r: Router, c: Conn, deadline: int, now: int) -> None:
        if c.timer_at != deadline or c.status & IPS_DYING:
            return                                  # a stale heap entry
        if c.deadline > now:
            c.timer_at = c.deadline
            r.timers.schedule(c.deadline, ("ct", c))
            return
        c.timer_at = None
        self.kill(c, now)

    def alive_timers(self) -> set[tuple[int, Any]]:
        return {(c.timer_at, ("ct", c)) for c in self.entries() if c.timer_at is not None}

    def early_drop(self, now: int | None = None) -> bool:
        if not self.unassured:
            return False
        victim = next(iter(self.unassured))
        self.kill(victim, now)
        self.stats["early_drop"] += 1
        return True

    def confirm(self, r: Router, c: Conn, now: int) -> bool:
        """__nf_conntrack_confirm(): False (insert_failed) on a clash."""
        if c.status & (IPS_CONFIRMED | IPS_DYING):
            return True
        if c.orig in self.hash or c.reply in self.hash:
            self.stats["insert_failed"] += 1
            return False
        self.hash[c.orig] = c
        self.hash[c.reply] = c
        self.count += 1
        self.stats["insert"] += 1
        if not c.status & IPS_ASSURED:
            self.unassured[c] = None
        c.status |= IPS_CONFIRMED
        self.set_timeout(r, c, c.timeout // SECOND, now)
        if self.listeners:
            self.event(EV_NEW, c, now)
        return True

    def assure(self, c: Conn) -> None:
        c.status |= IPS_ASSURED
        self.unassured.pop(c, None)


# -- tuples ----------------------------------------------------------------------------
def _addrs(d: bytearray, pf: int) -> tuple[bytes, bytes]:
    return (bytes(d[12:16]), bytes(d[16:20])) if pf == 4 else (bytes(d[8:24]), bytes(d[24:40]))


def get_tuple(d: bytearray, pf: int, l4: int, th: int) -> Tuple | None:
    """nf_ct_get_tuple(): None when the transport header is cut short."""
    src, dst = _addrs(d, pf)
    if l4 in (6, 17, 136, 132, 33):
        if th < 0 or th + 4 > len(d):
            return None
        return (pf, src, dst, l4, (d[th] << 8) | d[th + 1], (d[th + 2] << 8) | d[th + 3])
    if (l4 == 1 and pf == 4) or (l4 == 58 and pf == 6):
        if th < 0 or th + 8 > len(d):
            return None
        return (pf, src, dst, l4, (d[th + 4] << 8) | d[th + 5], (d[th] << 8) | d[th + 1])
    return (pf, src, dst, l4, 0, 0)


def invert(t: Tuple) -> Tuple | None:
    """nf_ct_invert_tuple(): None for an ICMP type without an inverse."""
    pf, src, dst, p, sp, dp = t
    if (p == 1 and pf == 4) or (p == 58 and pf == 6):
        inv = (ICMP_INV if p == 1 else ICMP6_INV).get(dp >> 8)
        if inv is None:
            return None
        return (pf, dst, src, p, sp, (inv << 8) | (dp & 0xFF))
    return (pf, dst, src, p, dp, sp)


# -- nf_conntrack_in -----------------------------------------------------------------
def l4_csum_bad(d: bytearray | memoryview, pf: int, l4: int, th: int) -> bool:
    """nf_checksum() for TCP, UDP, ICMP and ICMPv6 (the others are not verified); a
    zero UDP checksum over IPv4 means "none".  *d* is the network-layer packet (the
    per-flow path passes a memoryview of the frame)."""
    if l4 == 17 and pf == 4 and d[th + 6] == 0 and d[th + 7] == 0:
        return False
    if l4 == 1 and pf == 4:
        return ones_sum(d[th:]) != 0xFFFF
    n = len(d) - th
    if l4 == 17:
        n = (d[th + 4] << 8) | d[th + 5]
        if n < 8 or th + n > len(d):
            return True
    ps = pseudo_header_v4(d[12:16], d[16:20], l4, n) if pf == 4 \
        else pseudo_header_v6(d[8:24], d[24:40], l4, n)
    return ones_sum(d[th:th + n], ps) != 0xFFFF


def conntrack_in(r: Router, ct: ConnTrack, pkt: PacketBuf, pf: int, now: int,
                 prerouting: bool = False) -> int:
    """Find or create the packet's entry; sets pkt.ct/pkt.ctinfo; a verdict."""
    if pkt.ct is not None or pkt.ctinfo == IP_CT_UNTRACKED:
        return NF_ACCEPT                            # notrack, or already tracked (loopback)
    d = pkt.data
    if pf == 4 and ((d[6] << 8) | d[7]) & 0x3FFF:   # MF or offset: nf_defrag_ipv4
        whole = r.reasm.add(r, pkt, now)
        if whole is None:
            return NF_STOLEN
        pkt.data = d = whole.data
        pkt.frag_max_size = whole.frag_max_size
    l4, th = pktinfo(d, pf)
    st = ct.stats
    if l4 < 0:
        st["invalid"] += 1
        return NF_ACCEPT
    if th < 0 and pf == 6:                          # a fragment defrag6 did not take
        pkt.ctinfo = IP_CT_UNTRACKED
        return NF_ACCEPT
    icmp = (l4 == 1 and pf == 4) or (l4 == 58 and pf == 6)
    if icmp:
        if th + 8 > len(d):
            st["invalid"] += 1
            st["error"] += 1
            return NF_ACCEPT
        if prerouting and ct.checksum and l4_csum_bad(d, pf, l4, th):
            st["invalid"] += 1                      # icmp_error: "bad hw icmp checksum"
            st["error"] += 1
            return NF_ACCEPT
        ty = d[th]
        if ty in (ICMP_ERRORS if pf == 4 else ICMP6_ERRORS):
            return _icmp_error(ct, pkt, pf, th, d)
        if pf == 6 and ty in ICMP6_NOCT:
            pkt.ctinfo = IP_CT_UNTRACKED
            return NF_ACCEPT
    elif l4 == 6:
        if th + 20 > len(d) or ((d[th + 12] >> 4) << 2) < 20 \
                or th + ((d[th + 12] >> 4) << 2) > len(d) \
                or d[th + 13] & ~(0x40 | 0x80 | TH_PSH) & 0x3F not in TCP_VALID:
            st["invalid"] += 1
            st["error"] += 1
            return NF_ACCEPT
    elif l4 == 17 and th + 8 > len(d):
        st["invalid"] += 1
        st["error"] += 1
        return NF_ACCEPT
    if prerouting and ct.checksum and l4 in (6, 17) and l4_csum_bad(d, pf, l4, th):
        st["invalid"] += 1                          # tcp_error/udp_error: "bad checksum"
        return NF_ACCEPT
    t = get_tuple(d, pf, l4, th)
    if t is None:
        st["invalid"] += 1
        return NF_ACCEPT
    for _attempt in range(2):                       # -NF_REPEAT: a TCP reopen looks again
        c = ct.hash.get(t)
        if c is None:
            c = _new(r, ct, t, d, l4, th, now)
            if c is None:                           # INVALID (counted)
                pkt.ctinfo = 0
                return NF_ACCEPT
            direction = DIR_ORIGINAL
            pkt.ctinfo = IP_CT_NEW
        else:
            st["found"] += 1
            direction = DIR_ORIGINAL if c.orig == t else DIR_REPLY
            if direction == DIR_REPLY:
                pkt.ctinfo = IP_CT_ESTABLISHED_REPLY
            elif c.status & IPS_SEEN_REPLY:
                pkt.ctinfo = IP_CT_ESTABLISHED
            else:
                pkt.ctinfo = IP_CT_NEW
        pkt.ct = c
        before = (c.tcp_state, c.status) if ct.listeners else None
        v = _packet(r, ct, c, d, l4, th, direction, now)
        if v == -2:                                 # reopen: kill, then look again
            pkt.ct = None
            continue
        if v < 0:                                   # invalid for this connection
            pkt.ct = None
            pkt.ctinfo = 0
            st["invalid"] += 1
            return NF_ACCEPT
        if v == 1:                                  # ignored: passes, entry untouched
            return NF_ACCEPT
        c.packets[direction] += 1
        c.bytes[direction] += len(d)
        if direction == DIR_REPLY and not c.status & IPS_SEEN_REPLY:
            c.status |= IPS_SEEN_REPLY
        if before is not None and c.status & IPS_CONFIRMED \
                and before != (c.tcp_state, c.status):
            c.ev |= CT_EVENT_PENDING               # delivered when the packet passes confirm
        return NF_ACCEPT
    return NF_ACCEPT


class _Full(Exception):
    """The table is full and nothing could be early-dropped."""


def _new(r: Router, ct: ConnTrack, t: Tuple, d: bytearray, l4: int, th: int,
         now: int) -> Conn | None:
    """init_conntrack() with the protocol's new(): None means INVALID (counted) or a
    full table (the caller's packet is then dropped: see conntrack_hook)."""
    pf = t[0]
    reply = invert(t)
    if reply is None:
        ct.stats["invalid"] += 1
        return None
    c = Conn(t, reply, created=now)
    if l4 == 6:
        if not tcp_new(ct, c, d, th):
            ct.stats["invalid"] += 1
            return None
    elif (l4 == 1 and pf == 4) or (l4 == 58 and pf == 6):
        if (t[5] >> 8) not in (ICMP_NEW if l4 == 1 else ICMP6_NEW):
            ct.stats["invalid"] += 1
            return None
    if ct.count >= ct.max and not ct.early_drop(now):
        ct.stats["drop"] += 1
        raise _Full
    return c


def _packet(r: Router, ct: ConnTrack, c: Conn, d: bytearray, l4: int, th: int,
            direction: int, now: int) -> int:
    """The protocol's packet(): 0 ok, 1 ignored (accepted, nothing updated), -1 invalid,
    -2 reopen (kill and repeat)."""
    pf = c.orig[0]
    if l4 == 6:
        v = tcp_packet(r, ct, c, d, th, direction, now)
        if v == -1:
            ct.log_invalid(r, c, now)
        return v
    if l4 == 17 or l4 == 136:
        if c.status & IPS_SEEN_REPLY:
            if now > c.created + UDP_STREAM_DELAY * SECOND:
                ct.set_timeout(r, c, UDP_REPLIED, now)
                if not c.status & IPS_ASSURED:
                    ct.assure(c)
            else:
                ct.set_timeout(r, c, UDP_UNREPLIED, now)
        else:
            ct.set_timeout(r, c, UDP_UNREPLIED, now)
        return 0
    if (l4 == 1 and pf == 4) or (l4 == 58 and pf == 6):
        ct.set_timeout(r, c, ICMP_TIMEOUT, now)
        return 0
    ct.set_timeout(r, c, GENERIC_TIMEOUT, now)
    return 0


def _icmp_error(ct: ConnTrack, pkt: PacketBuf, pf: int, th: int, d: bytearray) -> int:
    """icmp_error_message(): RELATED to the connection of the embedded packet."""
    inner = bytearray(d[th + 8:])
    st = ct.stats
    if pf == 4:
        if len(inner) < 20 or inner[0] >> 4 != 4:
            st["invalid"] += 1
            return NF_ACCEPT
        il4, ith = inner[9], (inner[0] & 0x0F) << 2
        if ((inner[6] << 8) | inner[7]) & 0x1FFF:
            ith = -1
    else:
        if len(inner) < 40 or inner[0] >> 4 != 6:
            st["invalid"] += 1
            return NF_ACCEPT
        il4, ith = pktinfo(inner, 6)
    # The embedded header may be cut after 8 bytes of transport: enough for ports/id.
    if il4 in (6, 17, 136, 132, 33) and (ith < 0 or ith + 4 > len(inner)):
        st["invalid"] += 1
        return NF_ACCEPT
    it = get_tuple(inner, pf, il4, ith) if il4 not in (1, 58) or ith + 8 <= len(inner) \
        else None
    if it is None:
        st["invalid"] += 1
        return NF_ACCEPT
    # The embedded packet went the other way: its tuple, inverted, is ours to find.
    want = invert(it)
    c = ct.hash.get(want) if want is not None else None
    if c is None:
        st["invalid"] += 1
        return NF_ACCEPT
    st["found"] += 1
    pkt.ct = c
    # found through the reply tuple -> this error travels in reply (NF_CT_DIRECTION(h))
    pkt.ctinfo = IP_CT_RELATED_REPLY if c.reply == want and c.orig != want else IP_CT_RELATED
    return NF_ACCEPT


def attach(pkt: PacketBuf) -> tuple[Conn, int] | None:
    """nf_ct_attach() / nf_conntrack_attach(): what a packet the router makes about *pkt*
    (an ICMP error, a reset) carries: the same entry, RELATED in the other direction."""
    if pkt.ct is None:
        return None
    return pkt.ct, IP_CT_RELATED_REPLY if pkt.ctinfo < IP_CT_IS_REPLY else IP_CT_RELATED


# -- hook entries ----------------------------------------------------------------------
def _in_entry(pkt: PacketBuf, st: HookState) -> int:
    r = st.router
    ct = r.nf.conntrack
    try:
        return conntrack_in(r, ct, pkt, st.pf, st.now, st.hook == Hook.PRE_ROUTING)
    except _Full:
        st.reason = DropReason.CT_TABLE_FULL
        return NF_DROP


def _confirm_entry(pkt: PacketBuf, st: HookState) -> int:
    c = pkt.ct
    if c is None:
        return NF_ACCEPT
    if c.status & IPS_CONFIRMED:
        if c.ev and not c.status & IPS_DYING:           # nf_ct_deliver_cached_events
            st.router.nf.conntrack.event(EV_UPDATE, c, st.now)
        return NF_ACCEPT
    if pkt.ctinfo % IP_CT_IS_REPLY != IP_CT_NEW:
        return NF_ACCEPT
    ct = st.router.nf.conntrack
    if not ct.confirm(st.router, c, st.now):
        st.reason = DropReason.CT_INSERT_FAILED
        return NF_DROP
    return NF_ACCEPT


def register(nf: Netfilter) -> list[HookEntry]:
    """Conntrack at PREROUTING/OUTPUT -200 (IPv6 defrag before it at -400), confirm at
    POSTROUTING/INPUT last (once)."""
    out: list[HookEntry] = []
    if any(e.fn is _in_entry for e in nf.v4[0]):
        return out
    for hook in (Hook.PRE_ROUTING, Hook.LOCAL_OUT):
        out.append(nf.register(6, hook, HookEntry(ipv6_defrag, PRIO_CONNTRACK_DEFRAG,
                                                  "nf_defrag_ipv6", flow_safe=True)))
        out.append(nf.register(0, hook, HookEntry(_in_entry, PRIO_CONNTRACK, "nf_conntrack_in",
                                                  flow_safe=True)))
    for hook in (Hook.POST_ROUTING, Hook.LOCAL_IN):
        out.append(nf.register(0, hook, HookEntry(_confirm_entry, PRIO_CONNTRACK_CONFIRM,
                                                  "nf_conntrack_confirm", flow_safe=True)))
    return out


# -- listing (conntrack -L / -S) ---------------------------------------------------------
def _ip(b: bytes) -> str:
    import ipaddress
    return str(ipaddress.ip_address(b))


def _tuple_text(t: Tuple) -> str:
    pf, src, dst, p, sp, dp = t
    s = f"src={_ip(src)} dst={_ip(dst)} "
    if (p == 1 and pf == 4) or (p == 58 and pf == 6):
        return s + f"type={dp >> 8} code={dp & 0xFF} id={sp} "
    if p in (6, 17, 136, 132, 33):
        return s + f"sport={sp} dport={dp} "
    return s


def entry_dict(c: Conn, now: int) -> dict[str, Any]:
    p = c.proto
    return {"family": "ipv4" if c.orig[0] == 4 else "ipv6", "proto": PROTO_NAMES.get(p, "unknown"),
            "protonum": p, "timeout": max(0, (c.deadline - now) // SECOND),
            "state": TCP_STATE_NAMES[c.tcp_state] if p == 6 else None,
            "orig": _tuple_dict(c.orig), "reply": _tuple_dict(c.reply),
            "assured": bool(c.status & IPS_ASSURED),
            "unreplied": not c.status & IPS_SEEN_REPLY, "mark": c.mark, "status": c.status,
            "packets": list(c.packets), "bytes": list(c.bytes)}


def _tuple_dict(t: Tuple) -> dict[str, Any]:
    pf, src, dst, p, sp, dp = t
    out: dict[str, Any] = {"src": _ip(src), "dst": _ip(dst)}
    if (p == 1 and pf == 4) or (p == 58 and pf == 6):
        out.update(type=dp >> 8, code=dp & 0xFF, id=sp)
    elif p in (6, 17, 136, 132, 33):
        out.update(sport=sp, dport=dp)
    return out


def entry_line(c: Conn, now: int) -> str:
    """libnetfilter_conntrack's default output format (conntrack -L)."""
    p = c.proto
    name = PROTO_NAMES.get(p, "unknown")
    s = f"{name:<8} {p} {max(0, (c.deadline - now) // SECOND)} "
    return s + _entry_body(c) + f"mark={c.mark} use=1"


def _entry_body(c: Conn) -> str:
    """The TCP state, both tuples and the [UNREPLIED]/[ASSURED] flags, as -L and -E."""
    s = TCP_STATE_NAMES[c.tcp_state] + " " if c.proto == 6 else ""
    s += _tuple_text(c.orig)
    if not c.status & IPS_SEEN_REPLY:
        s += "[UNREPLIED] "
    s += _tuple_text(c.reply)
    if c.status & IPS_ASSURED:
        s += "[ASSURED] "
    return s


def event_line(kind: str, c: Conn, now: int | None) -> str:
    """conntrack -E's line: the event type right-aligned in 9 columns, then the entry
    as -L prints it without mark/use; a DESTROY without a remaining timeout omits it."""
    p = c.proto
    s = f"{'[' + kind + ']':>9} {PROTO_NAMES.get(p, 'unknown'):<8} {p} "
    left = max(0, (c.deadline - now) // SECOND) if now is not None else 0
    if kind != EV_DESTROY or left:
        s += f"{left} "
    return (s + _entry_body(c)).rstrip()


def stats_line(ct: ConnTrack) -> str:
    st = ct.stats
    return "cpu=0   \t" + " ".join(f"{k}={st[k]}" for k in STAT_KEYS) + " "


def event_filter(proto: str | None = None, src: str | None = None, dst: str | None = None,
                 family: str | None = None) -> Callable[[Conn], bool]:
    """The -L filters (see dump) as a predicate for conntrack -E."""
    import ipaddress
    pf = {"ipv4": 4, "ipv6": 6}.get(family or "", 0)
    pnum = None
    if proto is not None:
        by_name = {v: k for k, v in PROTO_NAMES.items()}
        pnum = by_name.get(proto, int(proto) if proto.isdigit() else -1)
    s = ipaddress.ip_address(src).packed if src else None
    d = ipaddress.ip_address(dst).packed if dst else None

    def match(c: Conn) -> bool:
        o = c.orig
        return not ((pf and o[0] != pf) or (pnum is not None and o[3] != pnum)
                    or (s is not None and o[1] != s) or (d is not None and o[2] != d))
    return match


def dump(ct: ConnTrack, now: int, proto: str | None = None, src: str | None = None,
         dst: str | None = None, family: str | None = None) -> list[Conn]:
    """conntrack -L's filters: -f family (both families without it, as conntrack-tools
    1.4.7 lists them), -p, --src/--dst (the original direction's addresses)."""
    match = event_filter(proto, src, dst, family)
    return [c for c in ct.entries() if match(c)]
