"""Compile a parsed nftables ruleset (nft_parse.py) into closures, once, at load time.

Each chain becomes one generated Python function (_gen_chain): the fields its rules
read are extracted once per packet at the top, each rule is nested ``if``s with the
comparison chosen at compile time (``==`` a constant, ``in`` a frozenset for a set of
single values, sorted intervals for ranges and prefixes, a bit test for flags);
limit, log, reject and verdict maps are closures it calls.  A base chain is
registered as a netfilter hook entry (hooks.py) at its family, hook and priority.

Semantics (nft(8), net/netfilter/nf_tables_core.c nft_do_chain):
* a failed match ends the rule; statements run in order where they stand
  (``counter`` counts only packets that reached it);
* accept / drop / queue end the evaluation of this base chain; ``jump`` calls a
  regular chain and continues with the next rule when it returns; ``goto`` does
  not come back (its return ends the calling chain too); ``return`` (or the end of
  a regular chain) goes back to the caller; the end of a base chain applies its
  policy;
* ``reject`` sends its ICMP / TCP reset (reject.py) and drops;
* ``limit rate`` is nft_limit's token bucket on the ``now`` the hook was given
  (tokens_max = burst packets, one more every unit/rate), so tests use virtual time;
* ``log`` emits an Event ``nft.log`` through a bucket (LOG_BURST, LOG_PER_SEC);
* transport matches (``tcp dport``...) carry nft's implicit dependency on the
  protocol and never match a non-first fragment or a truncated header.

Errors (unknown chain or set, a value of the wrong type, a jump loop, a jump to a
base chain) are NftErrors with the position of the offending text.  A Ruleset's
counters live in the closures: a reload builds a new Ruleset, so all counters
restart at zero (even of rules that did not change).
"""

from __future__ import annotations

import bisect
import ipaddress
import re
from typing import TYPE_CHECKING, Any, Callable

from ..actions import Event
from .hooks import (HOOK_NAMES, NF_ACCEPT, NF_DROP, HookEntry, HookState, Netfilter,
                    nf_queue_verdict)
from .nft_parse import Chain, Elem, Match, NftError, NSet, Rule, Stmt, Table, parse
from .reject import ICMP_CODES, ICMPV6_CODES, ICMPX, send_reset, send_unreach
from .conntrack import IP_CT_IS_REPLY, IP_CT_UNTRACKED, STATE_NAMES, STATUS_NAMES, \
    ct_state_bits
from .conntrack import register as conntrack_register
from .view import pktinfo

if TYPE_CHECKING:
    from ..packet import PacketBuf

NEXT = -2          # go on with the next rule
CONT = -1          # this chain is done (return / fell off the end)
LOG_BURST = 50
LOG_PER_SEC = 10
SECOND = 1_000_000_000
_UNIT_NS = {"second": SECOND, "minute": 60 * SECOND, "hour": 3600 * SECOND,
            "day": 86400 * SECOND, "week": 7 * 86400 * SECOND}

SERVICES = {"ftp-data": 20, "ftp": 21, "ssh": 22, "telnet": 23, "smtp": 25, "domain": 53,
            "bootps": 67, "bootpc": 68, "tftp": 69, "http": 80, "pop3": 110, "ntp": 123,
            "imap": 143, "snmp": 161, "bgp": 179, "ldap": 389, "https": 443,
            "submissions": 465, "submission": 587, "imaps": 993, "pop3s": 995,
            "sip": 5060, "sips": 5061}
PROTOS = {"icmp": 1, "igmp": 2, "tcp": 6, "udp": 17, "gre": 47, "esp": 50, "ah": 51,
          "icmpv6": 58, "ipv6-icmp": 58, "sctp": 132, "udplite": 136}
ICMP_TYPES = {"echo-reply": 0, "destination-unreachable": 3, "source-quench": 4,
              "redirect": 5, "echo-request": 8, "router-advertisement": 9,
              "router-solicitation": 10, "time-exceeded": 11, "parameter-problem": 12,
              "timestamp-request": 13, "timestamp-reply": 14, "info-request": 15,
              "info-reply": 16, "address-mask-request": 17, "address-mask-reply": 18}
ICMPV6_TYPES = {"destination-unreachable": 1, "packet-too-big": 2, "time-exceeded": 3,
                "parameter-problem": 4, "echo-request": 128, "echo-reply": 129,
                "mld-listener-query": 130, "mld-listener-report": 131,
                "mld-listener-done": 132, "mld-listener-reduction": 132,
                "nd-router-solicit": 133, "nd-router-advert": 134,
                "nd-neighbor-solicit": 135, "nd-neighbor-advert": 136, "nd-redirect": 137,
                "router-renumbering": 138, "mld2-listener-report": 143}
ICMP_CODE_NAMES = {"net-unreachable": 0, "host-unreachable": 1, "prot-unreachable": 2,
                   "port-unreachable": 3, "frag-needed": 4, "net-prohibited": 9,
                   "host-prohibited": 10, "admin-prohibited": 13}
ICMPV6_CODE_NAMES = {"no-route": 0, "admin-prohibited": 1, "addr-unreachable": 3,
                     "port-unreachable": 4, "policy-fail": 5, "reject-route": 6}
TCP_FLAGS = {"fin": 1, "syn": 2, "rst": 4, "psh": 8, "ack": 16, "urg": 32, "ecn": 64,
             "cwr": 128}
NFPROTO = {"ipv4": 2, "ipv6": 10}
ETHER = {"ip": 0x0800, "ip6": 0x86DD, "arp": 0x0806}

# selector -> value type
SEL_TYPE = {("ip", "saddr"): "ipv4_addr", ("ip", "daddr"): "ipv4_addr",
            ("ip", "protocol"): "inet_proto", ("ip", "ttl"): "integer",
            ("ip", "length"): "integer",
            ("ip6", "saddr"): "ipv6_addr", ("ip6", "daddr"): "ipv6_addr",
            ("ip6", "nexthdr"): "inet_proto", ("ip6", "hoplimit"): "integer",
            ("ip6", "length"): "integer",
            ("tcp", "sport"): "inet_service", ("tcp", "dport"): "inet_service",
            ("udp", "sport"): "inet_service", ("udp", "dport"): "inet_service",
            ("th", "sport"): "inet_service", ("th", "dport"): "inet_service",
            ("udp", "length"): "integer", ("tcp", "flags"): "tcp_flag",
            ("icmp", "type"): "icmp_type", ("icmp", "code"): "icmp_code",
            ("icmpv6", "type"): "icmpv6_type", ("icmpv6", "code"): "icmpv6_code",
            ("meta", "l4proto"): "inet_proto", ("meta", "mark"): "mark",
            ("meta", "length"): "integer", ("meta", "nfproto"): "nf_proto",
            ("meta", "iifname"): "ifname", ("meta", "oifname"): "ifname",
            ("meta", "protocol"): "ether_type",
            ("ct", "state"): "ct_state", ("ct", "status"): "ct_status", ("ct", "mark"): "mark",
            ("ct", "direction"): "ct_dir"}
_BITMASK = {"tcp_flag", "ct_state", "ct_status"}
CT_DIRS = {"original": 0, "reply": 1}
# Selectors whose value may differ between packets of one flow with the same TCP flags:
# a rule reading one is not replayed by the per-flow path (flowtable.py).
FLOW_VARIANT = frozenset({("ip", "ttl"), ("ip", "length"), ("ip6", "hoplimit"),
                          ("ip6", "length"), ("udp", "length"), ("meta", "length")})
SET_TYPES = {"ipv4_addr", "ipv6_addr", "inet_service", "inet_proto", "ifname", "mark",
             "icmp_type", "icmpv6_type", "integer"}
_MAXV = {"ipv4_addr": 2**32 - 1, "ipv6_addr": 2**128 - 1, "inet_service": 65535,
         "inet_proto": 255, "mark": 2**32 - 1, "icmp_type": 255, "icmpv6_type": 255,
         "integer": 2**32 - 1, "tcp_flag": 255, "nf_proto": 255, "ether_type": 65535,
         "icmp_code": 255, "icmpv6_code": 255, "ct_state": 255, "ct_status": 2**32 - 1,
         "ct_dir": 1}


class Ctx:
    """Per packet, per base chain: the packet, its pktinfo and the hook state."""

    __slots__ = ("pkt", "d", "st", "pf", "l4", "th")

    def __init__(self, pkt: PacketBuf, st: HookState) -> None:
        self.pkt = pkt
        self.d = pkt.data
        self.st = st
        self.pf = st.pf
        self.l4, self.th = pktinfo(pkt.data, st.pf)


def _u16(c: Ctx, at: int, proto: int | None) -> int | None:
    if (proto is not None and c.l4 != proto) or c.th < 0 or c.th + at + 2 > len(c.d):
        return None
    return (c.d[c.th + at] << 8) | c.d[c.th + at + 1]


def _extractor(sel: tuple[str, str]) -> Callable[[Ctx], Any]:
    fb = int.from_bytes
    a, b = sel
    if a == "ip":
        if b == "saddr":
            return lambda c: fb(c.d[12:16], "big") if c.pf == 4 else None
        if b == "daddr":
            return lambda c: fb(c.d[16:20], "big") if c.pf == 4 else None
        if b == "protocol":
            return lambda c: c.d[9] if c.pf == 4 else None
        if b == "ttl":
            return lambda c: c.d[8] if c.pf == 4 else None
        return lambda c: len(c.d) if c.pf == 4 else None
    if a == "ip6":
        if b == "saddr":
            return lambda c: fb(c.d[8:24], "big") if c.pf == 6 else None
        if b == "daddr":
            return lambda c: fb(c.d[24:40], "big") if c.pf == 6 else None
        if b == "nexthdr":
            return lambda c: c.d[6] if c.pf == 6 else None
        if b == "hoplimit":
            return lambda c: c.d[7] if c.pf == 6 else None
        return lambda c: len(c.d) - 40 if c.pf == 6 else None
    if a in ("tcp", "udp", "th"):
        proto = {"tcp": 6, "udp": 17, "th": None}[a]
        if b == "sport":
            return lambda c: _u16(c, 0, proto)
        if b == "dport":
            return lambda c: _u16(c, 2, proto)
        if b == "length":
            return lambda c: _u16(c, 4, 17)
        return lambda c: c.d[c.th + 13] if c.l4 == 6 and 0 <= c.th and c.th + 14 <= len(c.d) \
            else None
    if a in ("icmp", "icmpv6"):
        pf, proto, k = (4, 1, 0) if a == "icmp" else (6, 58, 0)
        k = 0 if b == "type" else 1
        return lambda c: c.d[c.th + k] if c.pf == pf and c.l4 == proto and 0 <= c.th \
            and c.th + 2 <= len(c.d) else None
    if a == "ct":
        if b == "state":
            return lambda c: ct_state_bits(c.pkt)
        if b == "status":
            return lambda c: c.pkt.ct.status if c.pkt.ct is not None else None
        if b == "mark":
            return lambda c: c.pkt.ct.mark if c.pkt.ct is not None else None
        return lambda c: (1 if c.pkt.ctinfo >= IP_CT_IS_REPLY else 0) \
            if c.pkt.ct is not None else None
    # meta
    if b == "l4proto":
        return lambda c: c.l4 if c.l4 >= 0 else None
    if b == "mark":
        return lambda c: c.pkt.mark
    if b == "length":
        return lambda c: len(c.d)
    if b == "nfproto":
        return lambda c: 2 if c.pf == 4 else 10
    if b == "protocol":
        return lambda c: 0x0800 if c.pf == 4 else 0x86DD
    if b == "iifname":
        return lambda c: c.st.indev.name if c.st.indev is not None else ""
    return lambda c: c.st.outdev.name if c.st.outdev is not None else ""


class Compiler:
    def __init__(self, file: str) -> None:
        self.file = file

    def err(self, line: int, col: int, msg: str) -> NftError:
        return NftError(self.file, line, col, msg)

    # -- values -----------------------------------------------------------------------
    def value(self, ty: str, e: Elem) -> tuple[int, int] | str:
        """One element as an interval (lo, hi), or an ifname pattern."""
        t = e.text
        if ty == "ifname":
            if t.startswith('"'):
                t = t[1:-1]
            if not t or len(t.rstrip("*")) > 15:
                raise self.err(e.line, e.col, f"{e.text}: not an interface name")
            return t
        if t.startswith('"'):
            raise self.err(e.line, e.col, f"{t}: a string where a {ty} is expected")
        one = self._scalar(ty, t)
        if one is not None:
            return one
        if "-" in t:
            lo_s, _, hi_s = t.partition("-")
            lo, hi = self._scalar(ty, lo_s), self._scalar(ty, hi_s)
            if lo is not None and hi is not None:
                if lo[0] > hi[1]:
                    raise self.err(e.line, e.col, f"{t}: range's start is above its end")
                return lo[0], hi[1]
        raise self.err(e.line, e.col, f"{t}: not a valid {ty} value")

    def _scalar(self, ty: str, t: str) -> tuple[int, int] | None:
        names = {"inet_service": SERVICES, "inet_proto": PROTOS, "icmp_type": ICMP_TYPES,
                 "icmpv6_type": ICMPV6_TYPES, "tcp_flag": TCP_FLAGS, "nf_proto": NFPROTO,
                 "ether_type": ETHER, "icmp_code": ICMP_CODE_NAMES,
                 "icmpv6_code": ICMPV6_CODE_NAMES, "ct_state": STATE_NAMES,
                 "ct_status": STATUS_NAMES, "ct_dir": CT_DIRS}.get(ty, {})
        if t in names:
            return names[t], names[t]
        if ty in _BITMASK and "|" in t:
            v = 0
            for p in t.split("|"):
                if p not in names:
                    return None
                v |= names[p]
            return v, v
        if ty in ("ipv4_addr", "ipv6_addr"):
            try:
                net = ipaddress.ip_network(t, strict=False)
            except ValueError:
                return None
            if net.version != (4 if ty == "ipv4_addr" else 6):
                return None
            return int(net.network_address), int(net.broadcast_address)
        if re.fullmatch(r"0x[0-9a-fA-F]+|\d+", t):
            v = int(t, 0)
            if v > _MAXV.get(ty, 2**32 - 1):
                return None
            return v, v
        return None

    def values(self, ty: str, elems: list[Elem]) -> list[Any]:
        return [self.value(ty, e) for e in elems]

    # -- matches ----------------------------------------------------------------------
    def match(self, m: Match, sets: dict[str, NSet], setvals: dict[str, list[Any]],
              line: int) -> tuple[Any, ...]:
        """An op ("match", selector, extractor, expression, constants) for _gen_chain."""
        ty = SEL_TYPE[m.selector]
        get = _extractor(m.selector)
        if isinstance(m.value, tuple):
            name = m.value[1]
            s = sets.get(name)
            if s is None or s.map_to is not None:
                raise self.err(m.line, m.col, f"no set named '{name}'"
                               + (" (it is a map: use vmap)" if s is not None else ""))
            if s.type != ty and not (ty == "integer"):
                raise self.err(m.line, m.col, f"set '{name}' holds {s.type}, the expression "
                               f"'{' '.join(m.selector)}' is {ty}")
            vals = setvals[name]
        else:
            vals = self.values(ty, m.value)
        neg = m.op == "!="
        if ty in _BITMASK:
            bits = 0
            for lo, _hi in vals:
                bits |= lo
            if m.mask is not None:
                mask = 0
                for e in m.mask:
                    v = self.value(ty, e)
                    mask |= v[0]                                    # type: ignore[index]
                pred = (lambda x: x & mask != bits) if neg else (lambda x: x & mask == bits)
            elif m.op == "any":
                pred = lambda x: x & bits != 0                      # noqa: E731
            else:
                exact = frozenset(lo for lo, _ in vals)
                pred = (lambda x: x not in exact) if neg else (lambda x: x in exact)
        elif ty == "ifname":
            exact = frozenset(v for v in vals if not v.endswith("*"))
            prefixes = tuple(v[:-1] for v in vals if v.endswith("*"))
            if prefixes:
                def isin(x: str) -> bool:
                    return x in exact or x.startswith(prefixes)
            else:
                isin = exact.__contains__
            pred = (lambda x: not isin(x)) if neg else isin
        elif m.op in ("<", ">", "<=", ">="):
            if len(vals) != 1 or vals[0][0] != vals[0][1]:
                raise self.err(m.line, m.col, f"'{m.op}' takes a single value")
            k = vals[0][0]
            pred = {"<": lambda x: x < k, ">": lambda x: x > k, "<=": lambda x: x <= k,
                    ">=": lambda x: x >= k}[m.op]
        else:
            isin = _membership(vals)
            pred = (lambda x: not isin(x)) if neg else isin

        # The inline form for the generated chain code: X is the field's value.
        consts: dict[str, Any] = {"P": pred}
        expr = "P(X)"
        if ty in _BITMASK:
            if m.mask is not None:
                expr = f"X & {mask} {'!=' if neg else '=='} {bits}"
            elif m.op == "any":
                expr = f"X & {bits}"
        elif ty != "ifname" and m.op in ("<", ">", "<=", ">="):
            expr = f"X {m.op} {k}"
        elif ty == "ifname" and not prefixes:
            consts = {"S": exact}
            expr = f"X {'not in' if neg else 'in'} S"
        elif ty != "ifname" and all(lo == hi for lo, hi in vals):
            if len(vals) == 1:
                expr = f"X {'!=' if neg else '=='} {vals[0][0]}"
            else:
                consts = {"S": frozenset(lo for lo, _ in vals)}
                expr = f"X {'not in' if neg else 'in'} S"
        return ("match", m.selector, get, expr, consts)


def _membership(vals: list[tuple[int, int]]) -> Callable[[int], bool]:
    if all(lo == hi for lo, hi in vals):
        if len(vals) == 1:
            k = vals[0][0]
            return lambda x: x == k
        return frozenset(lo for lo, _ in vals).__contains__
    merged: list[list[int]] = []
    for lo, hi in sorted(vals):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    starts = [lo for lo, _ in merged]
    ends = [hi for _, hi in merged]

    def isin(x: int) -> bool:
        i = bisect.bisect_right(starts, x) - 1
        return i >= 0 and x <= ends[i]
    return isin


_DISPLAY_NAMES = {"icmp_code": {v: k for k, v in ICMP_CODE_NAMES.items()},
                  "icmpv6_code": {v: k for k, v in ICMPV6_CODE_NAMES.items()}}


def _display_value(ty: str, text: str) -> str:
    """An element as nft lists it: services as numbers, marks in hex, codes by name."""
    if ty == "inet_service":
        return "-".join(str(SERVICES.get(p, p)) for p in text.split("-")) \
            if not text.startswith("-") else text
    if ty == "mark" and re.fullmatch(r"0x[0-9a-fA-F]+|\d+", text):
        return f"0x{int(text, 0):08x}"
    names = _DISPLAY_NAMES.get(ty)
    if names is not None and text.isdigit() and int(text) in names:
        return names[int(text)]
    return text


# Types whose anonymous sets nft lists sorted by value, a one-element set as the value.
_SORTED_SETS = {"inet_service", "mark", "icmp_code", "icmpv6_code", "icmp_type", "icmpv6_type",
                "inet_proto", "ipv4_addr", "ipv6_addr", "integer"}
_NAMED = {"inet_service": SERVICES, "icmp_type": ICMP_TYPES, "icmpv6_type": ICMPV6_TYPES,
          "inet_proto": PROTOS, "icmp_code": ICMP_CODE_NAMES, "icmpv6_code": ICMPV6_CODE_NAMES}


def _elem_key(ty: str, text: str) -> int:
    """The value an element sorts by (its low end for a range or prefix)."""
    names = _NAMED.get(ty)
    if names is not None and text in names:
        return names[text]
    lo = text if text.startswith("-") else text.split("-")[0]
    if ty in ("ipv4_addr", "ipv6_addr"):
        return int(ipaddress.ip_network(lo, strict=False).network_address)
    if names is not None and lo in names:
        return names[lo]
    return int(lo, 0)


def _display_match(m: Match) -> str:
    """A match as nft lists it: numbers for services, hex marks, code names, and an
    anonymous set's elements sorted by value (a one-element set as the bare value)."""
    ty = SEL_TYPE[m.selector]
    if ty not in _SORTED_SETS or isinstance(m.value, tuple):
        return m.text
    sel = m.text.split(" ", 2)
    head = " ".join(m.selector)
    texts = [e.text for e in m.value]
    if len(texts) > 1:
        try:
            texts.sort(key=lambda t: _elem_key(ty, t))
        except ValueError:
            pass                                # not all numeric: keep the source order
    if ty in ("inet_service", "mark", "icmp_code", "icmpv6_code"):
        vals = [_display_value(ty, t) for t in texts]
    else:
        vals = texts
    op = "" if m.op == "==" else m.op + " "
    vt = vals[0] if len(vals) == 1 else "{ " + ", ".join(vals) + " }"
    return f"{head} {op}{vt}" if sel else m.text


_STD_PRIO = (("raw", -300, None), ("mangle", -150, None), ("dstnat", -100, "prerouting"),
             ("filter", 0, None), ("security", 50, None), ("srcnat", 100, "postrouting"))


def priority_text(prio: int, hook: str | None) -> str:
    """nft's prio2str: a standard name (where the hook allows it), +/- up to 10."""
    for name, base, only in _STD_PRIO:
        if only is not None and hook != only:
            continue
        off = prio - base
        if off == 0:
            return name
        if -10 <= off <= 10:
            return f"{name} {'+' if off > 0 else '-'} {abs(off)}"
    return str(prio)


class CRule:
    """A compiled rule: its ops (for _gen_chain) and, for the listing, text and counters."""

    __slots__ = ("ops", "parts", "counters", "comment", "handle")

    def __init__(self) -> None:
        self.ops: list[tuple[Any, ...]] = []
        self.parts: list[Any] = []          # str, or a [packets, bytes] counter
        self.counters: list[list[int]] = []
        self.comment: str | None = None
        self.handle = 0

    def text(self) -> str:
        out = []
        for p in self.parts:
            out.append(p if isinstance(p, str) else f"counter packets {p[0]} bytes {p[1]}")
        if self.comment is not None:
            out.append(f'comment "{self.comment}"')
        return " ".join(out)


class CChain:
    __slots__ = ("name", "ast", "rules", "run", "entry", "table")

    def __init__(self, name: str, ast: Chain, table: CTable) -> None:
        self.name, self.ast, self.table = name, ast, table
        self.rules: list[CRule] = []
        self.run: Callable[[Ctx], int] = lambda c: CONT
        self.entry: HookEntry | None = None


class CTable:
    def __init__(self, ast: Table) -> None:
        self.ast = ast
        self.family, self.name = ast.family, ast.name
        self.chains: dict[str, CChain] = {}


class Ruleset:
    """A loaded ruleset: ``install(nf)`` registers its base chains, ``list()`` prints it
    as ``nft list ruleset`` does, with live counters."""

    def __init__(self, tables: list[CTable], text: str, file: str = "<ruleset>") -> None:
        self.tables = tables
        self.source = text
        self.file = file
        self.log_tokens = float(LOG_BURST)
        self.log_stamp: int | None = None
        self.log_suppressed = 0
        self.uses_ct = False             # a ct match or statement: conntrack must run

    def install(self, nf: Netfilter) -> None:
        if self.uses_ct:
            conntrack_register(nf)
        nat_hooks: dict[int, set[str]] = {}
        for t in self.tables:
            pf = {"ip": 4, "ip6": 6, "inet": 0}[t.family]
            for ch in t.chains.values():
                if ch.entry is not None and ch.ast.hook is not None:
                    nf.register(pf, HOOK_NAMES[ch.ast.hook], ch.entry)
                    if ch.ast.type == "nat":
                        for fam in ((4, 6) if pf == 0 else (pf,)):
                            nat_hooks.setdefault(fam, set()).add(ch.ast.hook)
        # nf_nat_ipv4/6_register_fn: once a family has a nat chain, NAT runs at all four
        # NAT hooks (a masquerade-only ruleset must still un-NAT replies at PREROUTING).
        from .nat import nat_entry   # noqa: PLC0415
        self.nat_helpers = []
        for fam, have in sorted(nat_hooks.items()):
            for hook, prio in (("prerouting", -100), ("output", -100), ("postrouting", 100),
                               ("input", 100)):
                if hook not in have:
                    e = HookEntry(nat_entry(lambda c: CONT, Ctx, NF_ACCEPT, "nf_nat"), prio,
                                  f"nf_nat ipv{fam} {hook}", flow_safe=True)
                    self.nat_helpers.append(e)
                    nf.register(fam, HOOK_NAMES[hook], e)
        nf.ruleset = self

    def entries(self) -> list[HookEntry]:
        return [ch.entry for t in self.tables for ch in t.chains.values()
                if ch.entry is not None] + list(getattr(self, "nat_helpers", []))

    def recompile(self) -> Ruleset:
        """The same ruleset compiled again: fresh counters and limiter state."""
        return compile_ruleset(self.source, self.file)

    def log_allow(self, now: int) -> bool:
        if self.log_stamp is not None:
            self.log_tokens = min(float(LOG_BURST), self.log_tokens
                                  + (now - self.log_stamp) * LOG_PER_SEC / SECOND)
        self.log_stamp = now
        if self.log_tokens >= 1:
            self.log_tokens -= 1
            return True
        self.log_suppressed += 1
        return False

    def list(self) -> str:
        out: list[str] = []
        for t in self.tables:
            out.append(f"table {t.family} {t.name} {{")
            blocks: list[list[str]] = []
            for s in t.ast.sets.values():
                kw = "map" if s.map_to else "set"
                b = [f"\t{kw} {s.name} {{",
                     f"\t\ttype {s.type}" + (f" : {s.map_to}" if s.map_to else "")]
                if s.flags:
                    b.append("\t\tflags " + ",".join(s.flags))
                if s.elements:
                    b.append("\t\telements = { " + ", ".join(
                        e.text + (f" : {e.verdict[0]}" + (f" {e.verdict[1]}" if e.verdict[1]
                                                          else "") if e.verdict else "")
                        for e in s.elements) + " }")
                b.append("\t}")
                blocks.append(b)
            for ch in t.chains.values():
                b = [f"\tchain {ch.name} {{"]
                a = ch.ast
                if a.hook is not None:
                    b.append(f"\t\ttype {a.type} hook {a.hook} priority "
                         f"{priority_text(a.priority or 0, a.hook)}; "
                             f"policy {a.policy};")
                for r in ch.rules:
                    b.append("\t\t" + r.text())
                b.append("\t}")
                blocks.append(b)
            for i, b in enumerate(blocks):
                if i:
                    out.append("")
                out.extend(b)
            out.append("}")
        return "\n".join(out) + ("\n" if out else "")

    def counters(self) -> list[dict[str, Any]]:
        """Every rule's counters, in order: the data behind ``nft list ruleset``."""
        rows = []
        for t in self.tables:
            for ch in t.chains.values():
                for i, r in enumerate(ch.rules):
                    for c in r.counters:
                        rows.append({"family": t.family, "table": t.name, "chain": ch.name,
                                     "rule": i, "packets": c[0], "bytes": c[1]})
        return rows


def compile_ruleset(text: str, file: str = "<ruleset>") -> Ruleset:
    """Parse and compile; raises NftError.  Pure: nothing is registered until install."""
    tables_ast = parse(text, file)
    comp = Compiler(file)
    seen: set[tuple[str, str]] = set()
    tables: list[CTable] = []
    ruleset = Ruleset(tables, text, file)
    for ta in tables_ast:
        key = (ta.family, ta.name)
        if key in seen:
            raise comp.err(ta.line, 1, f"table {ta.family} {ta.name} defined twice")
        seen.add(key)
        ct = CTable(ta)
        tables.append(ct)
        setvals: dict[str, list[Any]] = {}
        for s in ta.sets.values():
            if s.type not in SET_TYPES:
                raise comp.err(s.line, 1, f"set type '{s.type}' is not supported "
                               "(" + ", ".join(sorted(SET_TYPES)) + ")")
            setvals[s.name] = comp.values(s.type, s.elements)
            if s.type not in ("ipv4_addr", "ipv6_addr", "ifname") or s.map_to:
                continue
            if "interval" not in s.flags:
                for e, v in zip(s.elements, setvals[s.name]):
                    if isinstance(v, tuple) and v[0] != v[1]:
                        raise comp.err(e.line, e.col, f"{e.text}: set '{s.name}' needs "
                                       "'flags interval' for prefixes and ranges")
        for name, ca in ta.chains.items():
            ct.chains[name] = CChain(name, ca, ct)
        _check_jumps(comp, ta)
        handle = 0
        for ch in ct.chains.values():
            for ra in ch.ast.rules:
                handle += 1
                ch.rules.append(_compile_rule(comp, ruleset, ct, ch, ra, setvals, handle))
            ch.run = _gen_chain(ch)
            if ch.ast.hook is not None:
                ch.entry = _base_entry(ch)
                if ch.ast.type == "nat":
                    ruleset.uses_ct = True       # NAT lives on conntrack entries
    return ruleset


def _targets(ch: Chain, sets: dict[str, NSet]) -> list[tuple[str, int, int]]:
    out = []
    for r in ch.rules:
        for it in r.items:
            if isinstance(it, Stmt):
                if it.kind in ("jump", "goto"):
                    out.append((it.args["chain"], it.args["line"], it.args["ccol"]))
                elif it.kind == "vmap":
                    mp = it.args["map"]
                    elems = sets[mp[1]].elements if isinstance(mp, tuple) and mp[1] in sets \
                        else (mp if isinstance(mp, list) else [])
                    for e in elems:
                        if e.verdict and e.verdict[1]:
                            out.append((e.verdict[1], e.line, e.col))
    return out


def _check_jumps(comp: Compiler, ta: Table) -> None:
    for ch in ta.chains.values():
        for target, line, col in _targets(ch, ta.sets):
            t = ta.chains.get(target)
            if t is None:
                raise comp.err(line, col, f"no chain named '{target}' in table "
                               f"{ta.family} {ta.name}")
            if t.hook is not None:
                raise comp.err(line, col, f"cannot jump to base chain '{target}'")
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target, line, col in _targets(ta.chains[name], ta.sets):
            if state.get(target) == 1:
                raise comp.err(line, col, "jump loop: " + " -> ".join(path + [target]))
            if state.get(target) is None:
                visit(target, path + [target])
        state[name] = 2
    for name in ta.chains:
        if state.get(name) is None:
            visit(name, [name])


_NAT_HOOKS = {"snat": ("postrouting", "input"), "masquerade": ("postrouting",),
              "dnat": ("prerouting", "output"), "redirect": ("prerouting", "output")}
_NAT_PORTS = re.compile(r"(\d+)(?:-(\d+))?")
_NAT_FLAGS = {"random": 4, "persistent": 8, "fully-random": 16}
_NAT_FLAG_ORDER = ("random", "fully-random", "persistent")      # as nft lists them
_L4_SELECTORS = {"tcp", "udp", "udplite", "sctp", "dccp"}


def _nat_family(comp: Compiler, t: CTable, a: dict[str, Any], before: list[Any]) -> str:
    """The address family of a snat/dnat: the statement's ``ip``/``ip6``, else the
    table's, else (inet) what an earlier match of the rule implies, as nft's
    stmt_evaluate_nat_family."""
    fam = a.get("family")
    if t.family in ("ip", "ip6"):
        if fam is not None and fam != t.family:
            raise comp.err(a["line"], a["col"], f"conflicting protocols specified: "
                           f"{t.family} vs. {fam}")
        return t.family
    if fam is not None:
        return fam
    for m in before:
        if isinstance(m, Match):
            if m.selector[0] in ("ip", "icmp"):
                return "ip"
            if m.selector[0] in ("ip6", "icmpv6"):
                return "ip6"
            if m.selector == ("meta", "nfproto") and m.op == "==" and \
                    isinstance(m.value, list) and len(m.value) == 1:
                v = getattr(m.value[0], "text", m.value[0])
                if v in ("ipv4", "ipv6"):
                    return "ip" if v == "ipv4" else "ip6"
    raise comp.err(a["line"], a["col"], "ip or ip6 must be specified with address for "
                   "inet tables")


def _has_l4_match(before: list[Any]) -> bool:
    return any(isinstance(m, Match) and (m.selector[0] in _L4_SELECTORS or m.selector in (
        ("meta", "l4proto"), ("ip", "protocol"), ("ip6", "nexthdr"))) for m in before)


def _nat_stmt(comp: Compiler, t: CTable, ch: CChain, it: Stmt,
              before: list[Any]) -> tuple[Callable[[Ctx], int], str]:
    """snat/dnat/masquerade/redirect: checked against the chain, compiled to nat.py;
    the step and its listing (nft's: canonical addresses, ``[ADDR]:PORT`` for IPv6 with
    ports, the family word only in inet tables, flags in nft's order)."""
    from .nat import NF_NAT_RANGE_MAP_IPS, NF_NAT_RANGE_PROTO_SPECIFIED, NatRange, \
        nat_step  # noqa: PLC0415
    k, a = it.kind, it.args
    line, col = a["line"], a["col"]
    if ch.ast.hook is not None:
        if ch.ast.type != "nat":
            raise comp.err(line, col, f"{k} is only allowed in a nat chain "
                           f"(chain {ch.name} is type {ch.ast.type})")
        if ch.ast.hook not in _NAT_HOOKS[k]:
            raise comp.err(line, col, f"{k} is not allowed at hook {ch.ast.hook} (only "
                           + ", ".join(_NAT_HOOKS[k]) + ")")
    flags = 0
    for f in a["flags"]:
        flags |= _NAT_FLAGS[f]
    lo_a = hi_a = None
    lo_p = hi_p = 0
    addr_txt = port_txt = ""
    fam = None
    if a.get("addr") is not None:
        lo, hi, bracketed = a["addr"]
        al, ac = a["aline"], a["acol"]
        if k in ("masquerade", "redirect"):
            raise comp.err(al, ac, f"'{a['to']}': {k} takes only ports (to :PORT[-PORT])")
        fam = _nat_family(comp, t, a, before)
        addrs: list[Any] = []
        try:
            if fam == "ip":
                if bracketed:
                    raise ValueError("expected an IPv4 address (brackets are for IPv6)")
                try:
                    addrs = [ipaddress.IPv4Address(x) for x in (lo, hi or lo)]
                except ValueError:
                    try:
                        ipaddress.IPv6Address(lo)
                    except ValueError:
                        raise ValueError("expected ADDR[-ADDR][:PORT[-PORT]] (IPv4)") \
                            from None
                    raise ValueError("an IPv6 address in an ip "
                                     + ("table" if t.family == "ip" else "nat statement")) \
                        from None
            else:
                try:
                    addrs = [ipaddress.IPv6Address(x) for x in (lo, hi or lo)]
                except ValueError:
                    try:
                        ipaddress.IPv4Address(lo)
                    except ValueError:
                        raise ValueError("expected an IPv6 address or range, ports after "
                                         "[ADDR]") from None
                    raise ValueError("an IPv4 address in an ip6 "
                                     + ("table" if t.family == "ip6" else "nat statement")) \
                        from None
            lo_a, hi_a = addrs[0].packed, addrs[1].packed
            if hi_a < lo_a:
                raise ValueError("the address range is reversed")
        except ValueError as e:
            raise comp.err(al, ac, f"'{a['to']}': {e}") from None
        flags |= NF_NAT_RANGE_MAP_IPS
        addr_txt = str(addrs[0]) + (f"-{addrs[1]}" if hi else "")
    elif a["to"] is not None and k in ("snat", "dnat"):
        raise comp.err(a["tline"], a["tcol"], f"'{a['to']}': {k} needs an address")
    if a.get("ports") is not None:
        pl, pc = a["pline"], a["pcol"]
        m = _NAT_PORTS.fullmatch(a["ports"])
        if not m:
            raise comp.err(pl, pc, f"'{a['to']}': expected ports 1-65535, low-high")
        lo_p = int(m.group(1))
        hi_p = int(m.group(2)) if m.group(2) else lo_p
        if not 0 < lo_p <= hi_p <= 65535:
            raise comp.err(pl, pc, f"'{a['to']}': expected ports 1-65535, low-high")
        if not _has_l4_match(before):
            raise comp.err(pl, pc, "transport protocol mapping is only valid after "
                           "transport protocol match")
        flags |= NF_NAT_RANGE_PROTO_SPECIFIED
        port_txt = f"{lo_p}-{hi_p}" if m.group(2) else str(lo_p)
    elif a["to"] is not None and k in ("masquerade", "redirect"):
        raise comp.err(a["tline"], a["tcol"], f"'{a['to']}': expected :PORT[-PORT]")
    text = k
    if fam is not None and t.family == "inet":
        text += f" {fam}"
    if addr_txt or port_txt:
        if fam == "ip6" and port_txt:
            lo_t, _, hi_t = addr_txt.partition("-")
            addr_txt = f"[{lo_t}]" + (f"-[{hi_t}]" if hi_t else "")
        text += f" to {addr_txt}" + (f":{port_txt}" if port_txt else "")
    fl = [f for f in _NAT_FLAG_ORDER if f in a["flags"]]
    if fl:
        text += " " + ",".join(fl)
    step = nat_step(k, NatRange(lo_a, hi_a, lo_p, hi_p, flags))
    if fam is not None and t.family == "inet":
        want = 4 if fam == "ip" else 6
        inner = step

        def step(cx: Ctx) -> int:                             # nft_nat_inet_eval
            return inner(cx) if cx.st.pf == want else NEXT
    return step, text


def _base_entry(ch: CChain) -> HookEntry:
    policy = NF_ACCEPT if ch.ast.policy == "accept" else NF_DROP
    run = ch.run
    t = ch.table
    name = f"nft {t.family} {t.name} {ch.name}"
    if ch.ast.type == "nat":
        from .nat import nat_entry   # noqa: PLC0415
        return HookEntry(nat_entry(run, Ctx, policy, name),
                         ch.ast.priority or 0, name, flow_safe=True)
    note = {"table": f"{t.family} {t.name}", "chain": ch.name, "rule": "policy drop"}

    def entry(pkt: PacketBuf, st: HookState) -> int:
        v = run(Ctx(pkt, st))
        if v < 0:
            if policy == NF_DROP:
                st.note = note
            return policy
        return v
    return HookEntry(entry, ch.ast.priority or 0, name, flow_safe=True)


def _compile_rule(comp: Compiler, rs: Ruleset, t: CTable, ch: CChain, ra: Rule,
                  setvals: dict[str, list[Any]], handle: int) -> CRule:
    """A rule as ops for _gen_chain: ("match", ...), ("counter", cnt), ("mark", v),
    ("call", fn) (fn returns None: go on, NEXT: the rule ends, or a verdict),
    ("do", fn) (a side effect), ("ret", code), ("drop", note), ("jump"|"goto", chain)."""
    cr = CRule()
    cr.comment, cr.handle = ra.comment, handle
    ops: list[tuple[Any, ...]] = []
    chains = t.chains
    drop_note = {"table": f"{t.family} {t.name}", "chain": ch.name, "rule": ""}
    terminal = None
    for it in ra.items:
        line, col = (ra.line, 1) if isinstance(it, Match) else (it.args.get("line", ra.line),
                                                                it.args.get("col", 1))
        if terminal is not None:
            raise comp.err(line, col, f"statement after the terminal '{terminal}' "
                           "has no effect")
        if isinstance(it, Match):
            if it.selector[0] == "ct":
                rs.uses_ct = True
            ops.append(comp.match(it, t.ast.sets, setvals, ra.line))
            prev = ra.items[len(ops) - 2] if len(ops) >= 2 else None
            if isinstance(prev, Match) and prev.selector == ("meta", "l4proto") \
                    and prev.op == "==" and it.selector[0] in ("tcp", "udp") \
                    and isinstance(prev.value, list) and len(prev.value) == 1 \
                    and prev.value[0].text == it.selector[0] and cr.parts \
                    and cr.parts[-1] == prev.text:
                cr.parts.pop()          # nft lists the implied dependency only once
            cr.parts.append(_display_match(it))
            continue
        k, a = it.kind, it.args
        if k == "counter":
            cnt = [0, 0]
            cr.counters.append(cnt)
            cr.parts.append(cnt)
            ops.append(("counter", cnt))
            continue
        cr.parts.append(it.text)
        if k == "limit":
            ops.append(("call", _limit_step(a["rate"], _UNIT_NS[a["unit"]], a["burst"],
                                            a["over"])))
        elif k == "log":
            ops.append(("do", _log_step(rs, a.get("prefix", ""), t, ch)))
        elif k == "mark_set":
            v = comp.value("mark", Elem(a["value"], a["line"], a["col"]))
            ops.append(("mark", v[0]))                              # type: ignore[index]
            cr.parts[-1] = f"meta mark set 0x{v[0]:08x}"            # type: ignore[index]
        elif k == "ct_mark_set":
            v = comp.value("mark", Elem(a["value"], a["line"], a["col"]))
            ops.append(("do", _ct_mark_step(v[0])))                 # type: ignore[index]
            cr.parts[-1] = f"ct mark set 0x{v[0]:08x}"              # type: ignore[index]
            rs.uses_ct = True
        elif k == "notrack":
            ops.append(("do", _notrack_step))
            rs.uses_ct = True
        elif k == "reject":
            _reject_deps(t.family, ra, a, ops, cr)
            ops.append(("call", _reject_step(comp, t.family, a, drop_note)))
        elif k == "vmap":
            ops.append(("call", _vmap_step(comp, it, t, setvals, chains, drop_note, ra.line)))
        elif k in ("snat", "dnat", "masquerade", "redirect"):
            fn, cr.parts[-1] = _nat_stmt(comp, t, ch, it, ra.items[:ra.items.index(it)])
            ops.append(("call", fn))
            rs.uses_ct = True
        elif k == "maxseg":
            from .maxseg import maxseg_step   # noqa: PLC0415
            ops.append(("do", maxseg_step(a["size"])))
        elif k == "accept":
            ops.append(("ret", NF_ACCEPT))
        elif k == "drop":
            ops.append(("drop", drop_note))
        elif k == "return":
            ops.append(("ret", CONT))
        elif k == "continue":
            ops.append(("ret", None))
        elif k == "queue":
            ops.append(("ret", nf_queue_verdict(a["num"], a["bypass"])))
        elif k in ("jump", "goto"):
            ops.append((k, chains[a["chain"]]))
        if k in ("accept", "drop", "return", "continue", "queue", "jump", "goto", "vmap",
                 "reject", "snat", "dnat", "masquerade", "redirect"):
            terminal = k
    cr.ops = ops
    drop_note["rule"] = re.sub(r"counter packets \d+ bytes \d+", "counter", cr.text())
    return cr


def _gen_chain(ch: CChain) -> Callable[[Ctx], int]:
    """One Python function per chain, generated once: each field a rule reads is
    extracted once per packet at the top (``meta mark`` is read live, as a rule may set
    it); each rule is nested ifs over its ops; falling out of a rule is "next rule"."""
    ns: dict[str, Any] = {"NEXT": NEXT}
    fields: dict[tuple[str, str], str] = {}
    body: list[str] = []
    top: list[str] = ["def run(c):", "    d = c.d", "    n = len(d)",
                      "    fc = getattr(c.st.router, 'flow_rec', None)"]
    uid = [0]

    def const(v: Any) -> str:
        uid[0] += 1
        name = f"K{uid[0]}"
        ns[name] = v
        return name

    def gen(ops: list[tuple[Any, ...]], ind: int) -> None:
        pad = "    " * ind
        if not ops:
            body.append(pad + "pass")
            return
        op, rest = ops[0], ops[1:]
        kind = op[0]
        if kind == "match":
            _, sel, get, expr, consts = op
            if sel == ("meta", "mark"):
                var = "c.pkt.mark"
            elif sel in (("ct", "mark"), ("ct", "state")):
                var = f"{const(get)}(c)"          # live: a rule may set it (notrack, ct mark)
            else:
                var = fields.get(sel)
                if var is None:
                    var = fields[sel] = f"x{len(fields)}"
                    top.append(f"    {var} = {const(get)}(c)")
            for cname, cval in consts.items():
                expr = expr.replace(cname + "(", const(cval) + "(") if cname == "P" \
                    else re.sub(rf"\b{cname}\b", const(cval), expr)
            expr = re.sub(r"\bX\b", var, expr)
            guard = "" if var == "c.pkt.mark" or sel == ("ct", "state") \
                else f"{var} is not None and "
            if sel in FLOW_VARIANT:
                body.append(f"{pad}if fc is not None: fc.append(None)")
            body.append(f"{pad}if {guard}{expr}:")
            gen(rest, ind + 1)
        elif kind == "counter":
            k = const(op[1])
            body.append(f"{pad}{k}[0] += 1; {k}[1] += n")
            body.append(f"{pad}if fc is not None: fc.append({k})")
            gen(rest, ind) if rest else None
        elif kind == "mark":
            body.append(f"{pad}c.pkt.mark = {op[1]}")
            gen(rest, ind) if rest else None
        elif kind == "do":
            if not getattr(op[1], "flow_safe", False):
                body.append(f"{pad}if fc is not None: fc.append(None)")
            body.append(f"{pad}{const(op[1])}(c)")
            gen(rest, ind) if rest else None
        elif kind == "call":
            if not getattr(op[1], "flow_safe", False):
                body.append(f"{pad}if fc is not None: fc.append(None)")
            body.append(f"{pad}v = {const(op[1])}(c)")
            body.append(f"{pad}if v is None:")
            gen(rest, ind + 1)
            body.append(f"{pad}elif v != NEXT:")
            body.append(f"{pad}    return v")
        elif kind == "ret":
            body.append(pad + ("pass" if op[1] is None else f"return {op[1]}"))
        elif kind == "drop":
            body.append(f"{pad}c.st.note = {const(op[1])}")
            body.append(f"{pad}return {NF_DROP}")
        elif kind == "jump":
            body.append(f"{pad}v = {const(op[1])}.run(c)")
            body.append(f"{pad}if v != {CONT}:")
            body.append(f"{pad}    return v")
        elif kind == "goto":
            body.append(f"{pad}return {const(op[1])}.run(c)")

    for i, r in enumerate(ch.rules):
        body.append(f"    # rule {i}: {r.text()[:60]!r}"[:100])
        gen(r.ops, 1)
    body.append(f"    return {CONT}")
    src = "\n".join(top + body) + "\n"
    exec(compile(src, f"<nft chain {ch.table.family} {ch.table.name} {ch.name}>", "exec"), ns)
    run = ns["run"]
    run.source = src                                            # for debugging
    return run  # type: ignore[no-any-return]


def _reject_deps(family: str, ra: Rule, a: dict[str, Any], ops: list[tuple[Any, ...]],
                 cr: CRule) -> None:
    """The dependencies nft adds to a reject (and how it lists the rule): ``with tcp
    reset`` implies ``meta l4proto tcp``; in an inet table ``with icmp`` implies
    ``meta nfproto ipv4`` and ``with icmpv6`` ``meta nfproto ipv6``; a plain reject after
    an ip / ip6 match is listed as the family's port-unreachable."""
    w = a.get("with")
    sels = {it.selector[0] for it in ra.items if isinstance(it, Match)}
    if w == ("tcp", "reset"):
        if "tcp" not in sels:
            ops.insert(len(ops) - (len(cr.parts) - len(cr.parts)),
                       ("match", ("meta", "l4proto"), _extractor(("meta", "l4proto")),
                        "X == 6", {}))
        cr.parts[:] = [p for p in cr.parts if p != "meta l4proto tcp"]
        return
    if family != "inet":
        return
    if w is None:
        if "ip" in sels:
            cr.parts[-1] = "reject with icmp port-unreachable"
        elif "ip6" in sels:
            cr.parts[-1] = "reject with icmpv6 port-unreachable"
        return
    fam = {"icmp": 4, "icmpv6": 6}.get(w[0])
    if fam is None or ("ip" if fam == 4 else "ip6") in sels:
        return
    ops.append(("match", ("meta", "nfproto"), _extractor(("meta", "nfproto")),
                f"X == {2 if fam == 4 else 10}", {}))
    if len(cr.parts) > 1:
        cr.parts.insert(0, f"meta nfproto {'ipv4' if fam == 4 else 'ipv6'}")


def _ct_mark_step(v: int) -> Callable[[Ctx], None]:
    """nft_ct_set_eval(NFT_CT_MARK): no entry (untracked, invalid) -> nothing."""
    def step(c: Ctx) -> None:
        if c.pkt.ct is not None:
            c.pkt.ct.mark = v
    step.flow_safe = True           # type: ignore[attr-defined]  (a change stops the probe)
    return step


def _notrack_step(c: Ctx) -> None:
    """nft_notrack_eval(): only before conntrack ran (an entry already set stays)."""
    if c.pkt.ct is None:
        c.pkt.ctinfo = IP_CT_UNTRACKED


def _counter_step(cnt: list[int]) -> Callable[[Ctx], None]:
    def step(c: Ctx) -> None:
        cnt[0] += 1
        cnt[1] += len(c.d)
    return step


def _limit_step(rate: int, unit_ns: int, burst: int, over: bool) -> Callable[[Ctx], int | None]:
    cost = unit_ns // rate
    tmax = cost * burst
    st = [tmax, None]                       # tokens, last

    def step(c: Ctx) -> int | None:
        now = c.st.now
        last = st[1]
        tokens = st[0] + (now - last if last is not None else 0)
        if tokens > tmax:
            tokens = tmax
        st[1] = now
        delta = tokens - cost
        if delta >= 0:
            st[0] = delta
            return NEXT if over else None   # within the rate
        st[0] = tokens
        return None if over else NEXT
    return step


def _log_step(rs: Ruleset, prefix: str, t: CTable, ch: CChain) -> Callable[[Ctx], None]:
    from ...wire.addr import ip4_str  # noqa: PLC0415
    from ...wire.ipv6 import ip6_str  # noqa: PLC0415

    def step(c: Ctx) -> None:
        st = c.st
        if not rs.log_allow(st.now):
            return
        d = c.d
        f: dict[str, Any] = {"prefix": prefix, "table": f"{t.family} {t.name}",
                             "chain": ch.name, "hook": st.hook.name.lower(),
                             "in": st.indev.name if st.indev else "",
                             "out": st.outdev.name if st.outdev else "", "len": len(d)}
        if c.pf == 4:
            f["src"], f["dst"] = ip4_str(d[12:16]), ip4_str(d[16:20])
        else:
            f["src"] = ip6_str(int.from_bytes(d[8:24], "big"))
            f["dst"] = ip6_str(int.from_bytes(d[24:40], "big"))
        f["proto"] = c.l4
        if c.l4 in (6, 17) and 0 <= c.th and c.th + 4 <= len(d):
            f["spt"] = (d[c.th] << 8) | d[c.th + 1]
            f["dpt"] = (d[c.th + 2] << 8) | d[c.th + 3]
        st.router.events.append(Event("nft.log", f))
    return step


def _reject_step(comp: Compiler, family: str, a: dict[str, Any],
                 note: dict[str, str]) -> Callable[[Ctx], int]:
    kind, name = a.get("with", ("icmpx" if family == "inet" else
                                ("icmp" if family == "ip" else "icmpv6"), "port-unreachable"))
    line, col = a.get("tline", a["line"]), a.get("tcol", a["col"])
    if kind == "tcp":
        def step(c: Ctx) -> int:
            send_reset(c.st.router, c.pkt, c.pf, c.l4, c.th, c.st.now)
            c.st.note = note
            return NF_DROP
        return step
    table = {"icmp": ICMP_CODES, "icmpv6": ICMPV6_CODES, "icmpx": ICMPX}[kind]
    if name not in table:
        raise comp.err(line, col, f"'{name}' is not an {kind} reject type: "
                       + ", ".join(table))
    if kind == "icmp" and family == "ip6" or kind == "icmpv6" and family == "ip":
        raise comp.err(line, col, f"reject with {kind} in a table of family {family}")
    if kind == "icmpx":
        c4, c6 = ICMPX[name]
    elif kind == "icmp":
        c4, c6 = ICMP_CODES[name], -1
    else:
        c4, c6 = -1, ICMPV6_CODES[name]

    def rstep(c: Ctx) -> int:
        code = c4 if c.pf == 4 else c6
        if code >= 0:
            send_unreach(c.st.router, c.pkt, c.pf, code, c.st.now)
        c.st.note = note
        return NF_DROP
    return rstep


def _verdict_step(k: str, target: str | None, chains: dict[str, CChain], a: dict[str, Any],
                  note: dict[str, str]) -> Callable[[Ctx], int]:
    if k == "accept":
        return lambda c: NF_ACCEPT
    if k == "drop":
        def drop(c: Ctx) -> int:
            c.st.note = note
            return NF_DROP
        return drop
    if k == "return":
        return lambda c: CONT
    if k == "continue":
        return lambda c: NEXT
    if k == "queue":
        v = nf_queue_verdict(a["num"], a["bypass"])
        return lambda c: v
    if k == "jump":
        sub = chains[target]                                        # type: ignore[index]

        def jump(c: Ctx) -> int:
            v = sub.run(c)
            return NEXT if v == CONT else v
        return jump
    if k == "goto":
        sub = chains[target]                                        # type: ignore[index]
        return lambda c: sub.run(c)
    return lambda c: NEXT     # vmap: replaced by the caller


def _vmap_step(comp: Compiler, it: Stmt, t: CTable, setvals: dict[str, list[Any]],
               chains: dict[str, CChain], note: dict[str, str], line: int
               ) -> Callable[[Ctx], int | None]:
    sel = it.args["sel"]
    ty = SEL_TYPE[sel]
    mp = it.args["map"]
    if isinstance(mp, tuple):
        s = t.ast.sets.get(mp[1])
        if s is None or s.map_to != "verdict":
            raise comp.err(it.args["line"], it.args["col"], f"no verdict map named '{mp[1]}'")
        if s.type != ty:
            raise comp.err(it.args["line"], it.args["col"],
                           f"map '{mp[1]}' is keyed by {s.type}, the expression is {ty}")
        elems = s.elements
    else:
        elems = mp
    entries: list[tuple[Any, Callable[[Ctx], int]]] = []
    for e in elems:
        v = comp.value(ty, e)
        assert e.verdict is not None
        entries.append((v, _verdict_step(e.verdict[0], e.verdict[1], chains, {}, note)))
    get = _extractor(sel)
    single: dict[Any, Callable[[Ctx], int]] = {}
    ranges: list[tuple[int, int, Callable[[Ctx], int]]] = []
    for v, fn in entries:
        if isinstance(v, str):
            single.setdefault(v, fn)
        elif v[0] == v[1]:
            single.setdefault(v[0], fn)
        else:
            ranges.append((v[0], v[1], fn))

    def step(c: Ctx) -> int | None:
        x = get(c)
        if x is None:
            return NEXT
        fn = single.get(x)
        if fn is None:
            for lo, hi, f in ranges:
                if lo <= x <= hi:
                    fn = f
                    break
            else:
                return None
        return fn(c)
    step.flow_safe = sel not in FLOW_VARIANT   # type: ignore[attr-defined]
    return step


def load_ruleset(nf: Netfilter, text: str, file: str = "<ruleset>") -> Ruleset:
    """Compile *text* and register its base chains on *nf* (a router being built)."""
    rs = compile_ruleset(text, file)
    rs.install(nf)
    return rs
