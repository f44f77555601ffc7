"""A recursive-descent parser for the nftables ruleset language (the filter subset).

Grammar (nft(8) "RULESET", "CHAINS", "SETS", "MAPS", "STATEMENTS"), as accepted here:

    file      := (command | table)* ;  command := 'flush' 'ruleset'
    table     := 'table' [ip|ip6|inet] NAME '{' (chain | set | map)* '}'
    chain     := 'chain' NAME '{' ['type' filter 'hook' HOOK 'priority' PRIO ';'
                 ['policy' (accept|drop) ';']] rule* '}'
    set       := 'set' NAME '{' ('type' T | 'flags' F,... | 'elements' '=' '{' E,... '}'
                 | 'counter' | 'comment' STR) * '}'      (map: 'type' T ':' verdict)
    rule      := item+ ['comment' STR]     (ended by a newline, ';' or '}')
    item      := selector [op] rhs | selector 'vmap' (map | @name)
               | counter | limit rate [over] N/unit [burst N packets] | log [prefix S]
               | accept | drop | reject [with ...] | queue [num N] [bypass]
               | meta mark set N | jump C | goto C | return | continue

Selectors: ip saddr/daddr/protocol, ip6 saddr/daddr/nexthdr, tcp|udp sport/dport,
tcp flags, icmp type/code, icmpv6 type/code, meta l4proto/mark/length/nfproto/
iifname/oifname (iifname, oifname, mark also bare), ``ct state/status/mark/direction``,
``ct mark set`` and ``notrack``; nat chains with snat/dnat/masquerade/redirect (nat.py;
IPv6 with ports in brackets, ``dnat to [2001:db8::10]:80``, ranges ``[a]-[b]:p1-p2``),
``tcp option maxseg size set rt mtu | N`` (MSS clamping, maxseg.py).

Every error is an NftError with file, line, column and what was expected.  The
result is a plain AST (dataclasses); nft_compile.py turns it into closures.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any


class NftError(Exception):
    def __init__(self, file: str, line: int, col: int, msg: str) -> None:
        self.file, self.line, self.col, self.msg = file, line, col, msg
        super().__init__(f"{file}:{line}:{col}: {msg}")


@dataclass(slots=True)
class Tok:
    kind: str          # "word", "str", "punct", "nl", "eof"
    text: str
    line: int
    col: int


_PUNCT2 = ("==", "!=", "<=", ">=")
_PUNCT1 = "{}();,=!@<>&|^/+[]"
_WORD = re.compile(r"[A-Za-z0-9_.\-:*$]+")


def tokenize(text: str, file: str) -> list[Tok]:
    out: list[Tok] = []
    line, lstart, i, n = 1, 0, 0, len(text)
    while i < n:
        ch = text[i]
        col = i - lstart + 1
        if ch == "\\" and text.startswith("\n", i + 1):
            i += 2
            line += 1
            lstart = i
            continue
        if ch == "\n":
            out.append(Tok("nl", "\n", line, col))
            i += 1
            line += 1
            lstart = i
            continue
        if ch in " \t\r":
            i += 1
            continue
        if ch == "#":
            while i < n and text[i] != "\n":
                i += 1
            continue
        if ch == '"':
            j = text.find('"', i + 1)
            if j < 0 or "\n" in text[i:j]:
                raise NftError(file, line, col, "unterminated string")
            out.append(Tok("str", text[i + 1:j], line, col))
            i = j + 1
            continue
        if text[i:i + 2] in _PUNCT2:
            out.append(Tok("punct", text[i:i + 2], line, col))
            i += 2
            continue
        m = _WORD.match(text, i)
        if m:
            w = m.group()
            if w.startswith("-") and len(w) > 1 and ":" in w and _ipv6ish(w[1:]):
                # "[a]-b": a nat range from a bracketed to a bare IPv6 address
                out.append(Tok("word", "-", line, col))
                out.append(Tok("word", w[1:], line, col + 1))
            elif ":" in w and not _ipv6ish(w):
                # "22:accept" -> 22 : accept (a map element); IPv6 addresses stay whole.
                parts = w.split(":")
                off = i
                for k, p in enumerate(parts):
                    if p:
                        out.append(Tok("word", p, line, off - lstart + 1))
                    off += len(p)
                    if k < len(parts) - 1:
                        out.append(Tok("punct", ":", line, off - lstart + 1))
                        off += 1
            else:
                out.append(Tok("word", w, line, col))
            i = m.end()
            continue
        if ch in _PUNCT1:
            out.append(Tok("punct", ch, line, col))
            i += 1
            continue
        raise NftError(file, line, col, f"unexpected character {ch!r}")
    out.append(Tok("eof", "", line, i - lstart + 1))
    return out


def _ipv6ish(w: str) -> bool:
    for part in w.split("-"):
        a = part.split("/")[0]
        try:
            ipaddress.IPv6Address(a)
        except ValueError:
            return False
    return True


# -- AST -------------------------------------------------------------------------------

@dataclass(slots=True)
class Match:
    selector: tuple[str, str]     # ("ip", "saddr"), ("meta", "l4proto"), ...
    op: str                       # "==", "!=", "<", ">", "<=", ">=", "&"(flags any)
    value: Any                    # list of elements, or ("@", name)
    mask: Any = None              # tcp flags X / MASK, or & MASK == X
    text: str = ""
    line: int = 0                 # where the selector starts
    col: int = 0


@dataclass(slots=True)
class Stmt:
    kind: str                     # counter, limit, log, accept, drop, reject, queue,
    args: dict[str, Any] = field(default_factory=dict)  # mark_set, jump, goto, return, vmap
    text: str = ""


@dataclass(slots=True)
class Rule:
    items: list[Match | Stmt]
    comment: str | None
    line: int


@dataclass(slots=True)
class Chain:
    name: str
    line: int
    type: str | None = None
    hook: str | None = None
    priority: int | None = None
    priority_text: str = ""
    policy: str = "accept"
    rules: list[Rule] = field(default_factory=list)


@dataclass(slots=True)
class NSet:
    name: str
    line: int
    type: str = ""
    map_to: str | None = None      # "verdict" for a verdict map
    flags: list[str] = field(default_factory=list)
    elements: list[Any] = field(default_factory=list)   # raw element tokens (parsed later)
    text_elements: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Table:
    family: str
    name: str
    line: int
    chains: dict[str, Chain] = field(default_factory=dict)
    sets: dict[str, NSet] = field(default_factory=dict)


@dataclass(slots=True)
class Elem:
    """One element as written: a value, a range lo-hi, a prefix, maybe ': verdict'."""

    text: str
    line: int
    col: int
    verdict: tuple[str, str | None] | None = None


SELECTORS = {
    "ip": {"saddr", "daddr", "protocol", "ttl", "length"},
    "ip6": {"saddr", "daddr", "nexthdr", "hoplimit", "length"},
    "tcp": {"sport", "dport", "flags"},
    "udp": {"sport", "dport", "length"},
    "th": {"sport", "dport"},
    "icmp": {"type", "code"},
    "icmpv6": {"type", "code"},
    "meta": {"l4proto", "mark", "length", "nfproto", "iifname", "oifname", "protocol"},
    "ct": {"state", "status", "mark", "direction"},
}
_CT_FLAGS = {("ct", "state"), ("ct", "status")}      # bitmask types, like tcp flags
BARE_META = {"iifname", "oifname", "mark", "l4proto", "nfproto"}
UNSUPPORTED = {"fib": "fib expressions", "synproxy": "synproxy", "flow": "flowtables",
               "flowtable": "flowtables", "quota": "quota", "dup": "dup", "fwd": "fwd",
               "numgen": "numgen", "jhash": "jhash", "osf": "osf", "socket": "socket",
               "tproxy": "tproxy", "exthdr": "exthdr", "rt": "rt expressions",
               "ether": "ether expressions", "vlan": "vlan expressions", "arp": "arp",
               "sctp": "sctp", "dccp": "dccp", "udplite": "udplite", "ah": "ah", "esp": "esp",
               "comp": "comp", "mh": "mh", "rtclass": "rtclass", "iif": "iif (use iifname)",
               "oif": "oif (use oifname)", "update": "set update statements",
               "add": "add statements in rules"}
OPS = {"==": "==", "!=": "!=", "<": "<", ">": ">", "<=": "<=", ">=": ">=",
       "eq": "==", "ne": "!=", "lt": "<", "gt": ">", "le": "<=", "ge": ">="}
NAT_STMTS = {"snat", "dnat", "masquerade", "redirect"}
VERDICTS = {"accept", "drop", "continue", "return", "jump", "goto", "queue"}
_STMT_START = {"counter", "limit", "log", "accept", "drop", "reject", "queue", "jump", "goto",
               "return", "continue", "comment", "notrack"}


class Parser:
    def __init__(self, text: str, file: str = "<ruleset>") -> None:
        self.file = file
        self.toks = tokenize(text, file)
        self.i = 0

    # -- token helpers ------------------------------------------------------------------
    def peek(self, k: int = 0) -> Tok:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def next(self) -> Tok:
        t = self.toks[self.i]
        if t.kind != "eof":
            self.i += 1
        return t

    def err(self, t: Tok, msg: str) -> NftError:
        got = "end of file" if t.kind == "eof" else ("end of line" if t.kind == "nl"
                                                     else repr(t.text))
        return NftError(self.file, t.line, t.col, f"{msg}, got {got}")

    def expect(self, text: str) -> Tok:
        t = self.next()
        if t.text != text or t.kind == "str":
            raise self.err(t, f"expected '{text}'")
        return t

    def word(self, what: str) -> Tok:
        t = self.next()
        if t.kind not in ("word", "str"):
            raise self.err(t, f"expected {what}")
        return t

    def skip_nl(self) -> None:
        while self.peek().kind == "nl" or (self.peek().kind == "punct"
                                           and self.peek().text == ";"):
            self.next()

    def at_end_of_stmt(self) -> bool:
        t = self.peek()
        return t.kind in ("nl", "eof") or (t.kind == "punct" and t.text in (";", "}"))

    # -- grammar ------------------------------------------------------------------------
    def parse(self) -> list[Table]:
        tables: list[Table] = []
        while True:
            self.skip_nl()
            t = self.peek()
            if t.kind == "eof":
                return tables
            if t.text == "flush":
                self.next()
                self.expect("ruleset")
                continue
            if t.text == "add" and self.peek(1).text == "table":
                self.next()
            if t.text != "table" and not (t.text == "add" and self.peek(1).text == "table"):
                raise self.err(t, "expected 'table' or 'flush ruleset'")
            tables.append(self.table())

    def table(self) -> Table:
        start = self.expect("table")
        fam = "ip"
        t = self.peek()
        if t.text in ("ip", "ip6", "inet") and self.peek(1).kind in ("word", "str"):
            fam = self.next().text
        elif t.text in ("arp", "bridge", "netdev") and self.peek(1).kind in ("word", "str"):
            raise NftError(self.file, t.line, t.col,
                           f"table family '{t.text}' is not supported (ip, ip6 or inet)")
        name = self.word("a table name").text
        tab = Table(fam, name, start.line)
        self.expect("{")
        while True:
            self.skip_nl()
            t = self.peek()
            if t.text == "}":
                self.next()
                return tab
            if t.text == "chain":
                c = self.chain()
                if c.name in tab.chains:
                    raise NftError(self.file, c.line, 1, f"chain '{c.name}' defined twice")
                tab.chains[c.name] = c
            elif t.text in ("set", "map"):
                s = self.set_()
                tab.sets[s.name] = s
            elif t.text == "flags":
                self.next()
                self.word("table flags")
            else:
                raise self.err(t, "expected 'chain', 'set', 'map' or '}'")

    def chain(self) -> Chain:
        start = self.expect("chain")
        c = Chain(self.word("a chain name").text, start.line)
        self.expect("{")
        while True:
            self.skip_nl()
            t = self.peek()
            if t.text == "}" and t.kind == "punct":
                self.next()
                return c
            if t.kind == "eof":
                raise self.err(t, "expected a rule or '}'")
            if t.text == "type" and t.kind == "word":
                self.next()
                ty = self.word("a chain type")
                if ty.text == "route":
                    raise NftError(self.file, ty.line, ty.col,
                                   f"chain type '{ty.text}' is not supported yet (filter, nat)")
                if ty.text not in ("filter", "nat"):
                    raise self.err(ty, "expected chain type 'filter' or 'nat'")
                c.type = ty.text
                self.expect("hook")
                h = self.word("a hook")
                if h.text not in ("prerouting", "input", "forward", "output", "postrouting"):
                    raise self.err(h, "expected a hook: prerouting, input, forward, output "
                                      "or postrouting")
                if c.type == "nat" and h.text == "forward":
                    raise self.err(h, "expected a nat hook: prerouting, input, output or "
                                      "postrouting")
                c.hook = h.text
                if self.peek().text == "device":
                    d = self.next()
                    raise NftError(self.file, d.line, d.col,
                                   "'device' is only for netdev chains (not supported)")
                self.expect("priority")
                c.priority, c.priority_text = self.priority()
                self.end_stmt()
                continue
            if t.text == "policy" and t.kind == "word":
                self.next()
                p = self.word("a policy")
                if p.text not in ("accept", "drop"):
                    raise self.err(p, "expected policy 'accept' or 'drop'")
                c.policy = p.text
                self.end_stmt()
                continue
            c.rules.append(self.rule())

    def priority(self) -> tuple[int, str]:
        from .hooks import PRIO_NAMES   # noqa: PLC0415

        t = self.word("a priority (a number or filter, raw, mangle, dstnat, srcnat, "
                      "security)")
        m = re.fullmatch(r"([a-z]+)?([+-]?\d+)?", t.text)
        if not m or not (m.group(1) or m.group(2)):
            raise self.err(t, "expected a priority")
        name, num = m.group(1), m.group(2)
        if name is not None and name not in PRIO_NAMES:
            raise self.err(t, "expected a priority name: " + ", ".join(PRIO_NAMES))
        base = PRIO_NAMES[name] if name else 0
        off = int(num) if num else 0
        if name and num is None and self.peek().text in ("+", "-"):
            sign = self.next().text
            n = self.word("a priority offset")
            if not n.text.isdigit():
                raise self.err(n, "expected a number after the priority's +/-")
            off = int(n.text) * (1 if sign == "+" else -1)
        text = (name or "") + (f" {'+' if off > 0 else '-'} {abs(off)}" if name and off else
                               ("" if name else str(off)))
        return base + off, text

    def end_stmt(self) -> None:
        t = self.peek()
        if t.kind == "punct" and t.text == ";":
            self.next()
        elif t.kind not in ("nl",) and not (t.kind == "punct" and t.text == "}"):
            raise self.err(t, "expected ';' or a new line")

    def set_(self) -> NSet:
        kw = self.next()
        s = NSet(self.word(f"a {kw.text} name").text, kw.line)
        self.expect("{")
        while True:
            self.skip_nl()
            t = self.peek()
            if t.text == "}":
                self.next()
                break
            if t.text == "type":
                self.next()
                ty = self.word("a set type")
                s.type = ty.text
                if self.peek().text == ":":
                    self.next()
                    s.map_to = self.word("a map value type").text
                    if s.map_to != "verdict":
                        v = self.toks[self.i - 1]
                        raise NftError(self.file, v.line, v.col,
                                       "only verdict maps are supported yet")
                elif kw.text == "map":
                    raise self.err(self.peek(), "expected ':' and the map's value type")
                self.end_stmt()
            elif t.text == "typeof":
                raise NftError(self.file, t.line, t.col, "'typeof' sets are not supported "
                               "yet; use 'type'")
            elif t.text == "flags":
                self.next()
                while True:
                    f = self.word("set flags")
                    if f.text not in ("interval", "constant", "dynamic", "timeout"):
                        raise self.err(f, "expected a set flag (interval, constant)")
                    s.flags.append(f.text)
                    if self.peek().text != ",":
                        break
                    self.next()
                self.end_stmt()
            elif t.text in ("counter", "auto-merge"):
                self.next()
                self.end_stmt()
            elif t.text == "comment":
                self.next()
                self.word("a comment string")
                self.end_stmt()
            elif t.text == "elements":
                self.next()
                self.expect("=")
                s.elements = self.elements(kw.text == "map")
                self.end_stmt()
            elif t.text in ("size", "policy", "timeout", "gc-interval"):
                self.next()
                self.word(t.text)
                self.end_stmt()
            else:
                raise self.err(t, "expected type, flags, elements or '}'")
        if not s.type:
            raise NftError(self.file, s.line, 1, f"{kw.text} '{s.name}' has no type")
        return s

    def elements(self, is_map: bool) -> list[Elem]:
        self.expect("{")
        out: list[Elem] = []
        while True:
            self.skip_nl_only()
            t = self.peek()
            if t.text == "}" and t.kind == "punct":
                self.next()
                return out
            e = self.element()
            if is_map:
                self.expect(":")
                v = self.word("a verdict")
                if v.text not in VERDICTS:
                    raise self.err(v, "expected a verdict (accept, drop, jump NAME, goto NAME,"
                                      " return, continue)")
                target = None
                if v.text in ("jump", "goto"):
                    target = self.word("a chain name").text
                e.verdict = (v.text, target)
            out.append(e)
            self.skip_nl_only()
            t = self.peek()
            if t.text == ",":
                self.next()
            elif t.text != "}":
                raise self.err(t, "expected ',' or '}'")

    def skip_nl_only(self) -> None:
        while self.peek().kind == "nl":
            self.next()

    def element(self) -> Elem:
        t = self.next()
        if t.kind == "str":
            return Elem('"' + t.text + '"', t.line, t.col)
        if t.kind != "word":
            raise self.err(t, "expected a value")
        text = t.text
        # a prefix written 10.0.0.0 / 8 or a list of flags a|b
        while self.peek().kind == "punct" and (self.peek().text == "|" or (
                self.peek().text == "/" and ("." in text or ":" in text))):
            text += self.next().text + self.word("a value").text
        return Elem(text, t.line, t.col)

    def rule(self) -> Rule:
        first = self.peek()
        items: list[Match | Stmt] = []
        comment = None
        while not self.at_end_of_stmt():
            t = self.peek()
            if t.text == "comment":
                self.next()
                comment = self.word("a comment string").text
                continue
            items.append(self.item())
        if self.peek().text == ";":
            self.next()
        if not items:
            raise self.err(first, "expected a rule")
        return Rule(items, comment, first.line)

    def item(self) -> Match | Stmt:
        t = self.peek()
        w = t.text
        if t.kind != "word":
            raise self.err(t, "expected a match or a statement")
        if w == "tcp" and self.peek(1).text == "option":
            return self.maxseg()
        if w in NAT_STMTS:
            return self.nat()
        if w in UNSUPPORTED:
            raise NftError(self.file, t.line, t.col, f"{UNSUPPORTED[w]} not supported yet")
        if w in SELECTORS or w in BARE_META:
            return self.match_or_set()
        if w in _STMT_START:
            return self.statement()
        raise self.err(t, "expected a match (ip, ip6, tcp, udp, icmp, icmpv6, meta, ct, "
                          "iifname, oifname) or a statement (counter, limit, log, accept, "
                          "drop, reject, queue, jump, goto, return, notrack)")

    def match_or_set(self) -> Match | Stmt:
        t = self.next()
        if t.text in BARE_META:
            sel = ("meta", t.text)
        else:
            f = self.word(f"a {t.text} field")
            if f.text not in SELECTORS[t.text]:
                raise self.err(f, f"expected a {t.text} field: "
                                  + ", ".join(sorted(SELECTORS[t.text])))
            sel = (t.text, f.text)
        # As nft lists it: iifname/oifname bare, every other meta key with "meta".
        text = sel[1] if sel in (("meta", "iifname"), ("meta", "oifname")) else " ".join(sel)
        nt = self.peek()
        if nt.text == "set":
            self.next()
            if sel not in (("meta", "mark"), ("ct", "mark")):
                raise NftError(self.file, nt.line, nt.col, f"'{' '.join(sel)} set' is not "
                               "supported yet (meta mark set, ct mark set)")
            v = self.word("a mark value")
            return Stmt("mark_set" if sel[0] == "meta" else "ct_mark_set",
                        {"value": v.text, "line": v.line, "col": v.col},
                        f"{sel[0]} mark set {v.text}")
        if nt.text == "vmap":
            self.next()
            if self.peek().text == "@":
                self.next()
                name = self.word("a map name").text
                return Stmt("vmap", {"sel": sel, "map": ("@", name), "line": nt.line,
                                     "col": nt.col}, f"{text} vmap @{name}")
            elems = self.elements(True)
            return Stmt("vmap", {"sel": sel, "map": elems, "line": nt.line, "col": nt.col},
                        f"{text} vmap {_elems_text(elems)}")
        op = "=="
        mask = None
        if nt.text == "&" and nt.kind == "punct":
            self.next()
            mask = self._flag_list()
            o = self.next()
            if o.text not in OPS:
                raise self.err(o, "expected '==' or '!=' after the mask")
            op = OPS[o.text]
        elif nt.text in OPS and (nt.kind == "punct" or nt.text.isalpha()):
            op = OPS[self.next().text]
        elif nt.text == "!" and nt.kind == "punct":
            raise self.err(nt, "expected '!=' (negation is written '!=')")
        if self.at_end_of_stmt():
            raise self.err(self.peek(), f"expected a value after '{text}'")
        v = self.peek()
        if v.text == "@":
            self.next()
            name = self.word("a set name").text
            value: Any = ("@", name)
            vtext = f"@{name}"
        elif v.text == "{":
            value = self.elements(False)
            vtext = _elems_text(value)
        else:
            value = [self.element()]
            while self.peek().text == "," and (sel == ("tcp", "flags") or sel in _CT_FLAGS):
                self.next()
                value.append(self.element())
            vtext = ",".join(e.text for e in value)
        if sel == ("tcp", "flags") and self.peek().text == "/":
            self.next()
            mask = self._flag_list()
        m = Match(sel, op, value, mask, line=t.line, col=t.col)
        if isinstance(value, tuple):
            m.line, m.col = v.line, v.col          # point at the @set
        opt = "" if op == "==" else op + " "
        if mask is not None and nt.text == "&":
            flags = ",".join(x for e in value for x in e.text.split("|"))
            m.text = f"{text} {flags} / {','.join(e.text for e in mask)}" if op == "==" \
                else f"{text} & {'|'.join(e.text for e in mask)} {op} {vtext}"
        elif mask is not None:
            m.text = f"{text} {vtext} / {','.join(e.text for e in mask)}"
        else:
            m.text = f"{text} {opt}{vtext}"
        if (sel == ("tcp", "flags") or sel in _CT_FLAGS) and mask is None and op == "==" \
                and v.text != "{":
            m.op = "any"       # implicit bitmask match: (flags & v) != 0
        return m

    def _flag_list(self) -> list[Elem]:
        paren = self.peek().text == "("
        if paren:
            self.next()
        out = [self.element()]
        while self.peek().text in (",", "|"):
            self.next()
            out.append(self.element())
        if paren:
            self.expect(")")
        return [Elem(x, e.line, e.col) for e in out for x in e.text.split("|")]

    def maxseg(self) -> Stmt:
        """``tcp option maxseg size set (rt mtu | N)`` (nft_exthdr_tcp_set / TCPMSS)."""
        t = self.next()
        self.expect("option")
        o = self.word("a tcp option")
        if o.text != "maxseg":
            raise NftError(self.file, o.line, o.col,
                           f"tcp option '{o.text}' is not supported (maxseg only)")
        self.expect("size")
        s = self.peek()
        if s.text != "set":
            raise NftError(self.file, s.line, s.col,
                           "matching on tcp option maxseg is not supported (only 'size set')")
        self.next()
        v = self.word("'rt mtu' or a size")
        if v.text == "rt":
            self.expect("mtu")
            return Stmt("maxseg", {"line": t.line, "col": t.col, "size": None},
                        "tcp option maxseg size set rt mtu")
        if not v.text.isdigit() or not 0 < int(v.text) <= 65535:
            raise self.err(v, "expected 'rt mtu' or a size 1-65535")
        return Stmt("maxseg", {"line": t.line, "col": t.col, "size": int(v.text)},
                    f"tcp option maxseg size set {int(v.text)}")

    def nat(self) -> Stmt:
        """snat/dnat ``[ip|ip6] to ADDR[-ADDR][:PORT[-PORT]]`` (IPv6 with ports in
        brackets: ``[ADDR][-[ADDR]][:PORT[-PORT]]``), masquerade/redirect ``[to
        :PORT[-PORT]]``, then flags persistent, random, fully-random (comma separated).
        Args: ``addr`` (lo, hi or None, bracketed) at aline/acol, ``ports`` text at
        pline/pcol; the compiler checks the values and writes the listing."""
        t = self.next()
        w = t.text
        args: dict[str, Any] = {"line": t.line, "col": t.col, "to": None, "flags": [],
                                "addr": None, "ports": None}
        if w in ("snat", "dnat") and self.peek().text in ("ip", "ip6"):
            args["family"] = self.next().text
        if self.peek().text == "to":
            self.next()
            first = self.peek()
            args["tline"], args["tcol"] = first.line, first.col
            args["aline"], args["acol"] = first.line, first.col
            txt = ""
            if first.kind == "punct" and first.text == "[":
                lo = self._bracketed_addr6()
                hi = None
                if self.peek().kind == "word" and self.peek().text == "-":
                    self.next()
                    nx = self.peek()
                    if nx.kind == "word" and _ipv6ish(nx.text):
                        hi = self.next().text             # [a]-b, as nft accepts
                    elif not (nx.kind == "punct" and nx.text == "["):
                        raise self.err(nx, "expected '[' and the range's last IPv6 "
                                       "address")
                    else:
                        hi = self._bracketed_addr6()
                args["addr"] = (lo, hi, True)
                txt = f"[{lo}]" + (f"-[{hi}]" if hi else "")
            elif not (first.kind == "punct" and first.text == ":"):
                a = self.word("an address, or :port")
                lo, _, hi = a.text.partition("-")
                args["addr"] = (lo, hi or None, False)
                txt = a.text
            if self.peek().kind == "punct" and self.peek().text == ":":
                self.next()
                p = self.word("a port or port range")
                args["ports"] = p.text
                args["pline"], args["pcol"] = p.line, p.col
                txt += ":" + p.text
            args["to"] = txt
        elif w in ("snat", "dnat"):
            raise self.err(self.peek(), f"expected 'to' after {w}")
        while self.peek().text in ("persistent", "random", "fully-random", ","):
            f = self.next().text
            if f != ",":
                args["flags"].append(f)
        text = w + (f" to {args['to']}" if args["to"] else "") \
            + (" " + ",".join(args["flags"]) if args["flags"] else "")
        return Stmt(w, args, text)

    def _bracketed_addr6(self) -> str:
        """``[ADDR]``: an IPv6 address in brackets (the form that can take a port)."""
        self.expect("[")
        a = self.next()
        try:
            if a.kind != "word":
                raise ValueError
            ipaddress.IPv6Address(a.text)
        except ValueError:
            raise self.err(a, "expected an IPv6 address in the brackets") from None
        self.expect("]")
        return a.text

    def statement(self) -> Stmt:
        t = self.next()
        w = t.text
        pos = {"line": t.line, "col": t.col}
        if w == "counter":
            if self.peek().text == "packets":
                self.next()
                self.word("a number")
                self.expect("bytes")
                self.word("a number")
            return Stmt("counter", pos, "counter")
        if w == "limit":
            self.expect("rate")
            over = False
            if self.peek().text == "over":
                self.next()
                over = True
            n = self.word("a rate, e.g. 10/second")
            if not n.text.isdigit():
                raise self.err(n, "expected a rate, e.g. 10/second")
            unit_bytes = None
            if self.peek().text in ("bytes", "kbytes", "mbytes"):
                unit_bytes = self.next().text
            self.expect("/")
            u = self.word("a time unit")
            if u.text not in ("second", "minute", "hour", "day", "week"):
                raise self.err(u, "expected second, minute, hour, day or week")
            burst = 5
            if self.peek().text == "burst":
                self.next()
                b = self.word("a burst")
                if not b.text.isdigit():
                    raise self.err(b, "expected a number")
                burst = int(b.text)
                if self.peek().text in ("packets", "bytes"):
                    self.next()
            if unit_bytes is not None:
                raise NftError(self.file, n.line, n.col, "byte rate limits are not "
                               "supported yet (packets only)")
            text = f"limit rate {'over ' if over else ''}{n.text}/{u.text}" \
                + (f" burst {burst} packets" if burst != 5 else "")
            return Stmt("limit", {**pos, "rate": int(n.text), "unit": u.text, "burst": burst,
                                  "over": over}, text)
        if w == "log":
            args: dict[str, Any] = dict(pos)
            parts = ["log"]
            while self.peek().text in ("prefix", "level", "flags", "group"):
                k = self.next().text
                v = self.word(f"a log {k}")
                args[k] = v.text
                parts.append(f'{k} "{v.text}"' if k == "prefix" else f"{k} {v.text}")
            return Stmt("log", args, " ".join(parts))
        if w in ("accept", "drop", "return", "continue", "notrack"):
            return Stmt(w, pos, w)
        if w in ("jump", "goto"):
            c = self.word("a chain name")
            return Stmt(w, {**pos, "chain": c.text, "ccol": c.col}, f"{w} {c.text}")
        if w == "queue":
            num, bypass = 0, False
            parts = ["queue"]
            while self.peek().text in ("num", "bypass", "fanout", "flags", "to"):
                k = self.next().text
                if k == "num" or k == "to":
                    v = self.word("a queue number")
                    if not v.text.isdigit() or int(v.text) > 65535:
                        raise self.err(v, "expected a queue number 0-65535")
                    num = int(v.text)
                elif k == "bypass":
                    bypass = True
                elif k == "flags":
                    f = self.word("queue flags")
                    bypass = bypass or "bypass" in f.text
            parts.append(f"to {num}")
            if bypass:
                parts.append("bypass")
            return Stmt("queue", {**pos, "num": num, "bypass": bypass}, " ".join(parts))
        if w == "reject":
            args = dict(pos)
            text = "reject"
            if self.peek().text == "with":
                self.next()
                k = self.word("icmp, icmpv6, icmpx or tcp")
                if k.text == "tcp":
                    self.expect("reset")
                    args["with"] = ("tcp", "reset")
                    text = "reject with tcp reset"
                elif k.text in ("icmp", "icmpv6", "icmpx"):
                    if self.peek().text == "type":
                        self.next()
                    ty = self.word(f"an {k.text} reject type")
                    args["with"] = (k.text, ty.text)
                    args["tline"], args["tcol"] = ty.line, ty.col
                    text = f"reject with {k.text} {ty.text}"
                else:
                    raise self.err(k, "expected icmp, icmpv6, icmpx or tcp reset")
            return Stmt("reject", args, text)
        raise self.err(t, "expected a statement")


def _elems_text(elems: list[Elem]) -> str:
    parts = []
    for e in elems:
        if e.verdict is not None:
            v = e.verdict[0] + (f" {e.verdict[1]}" if e.verdict[1] else "")
            parts.append(f"{e.text} : {v}")
        else:
            parts.append(e.text)
    return "{ " + ", ".join(parts) + " }"


def parse(text: str, file: str = "<ruleset>") -> list[Table]:
    return Parser(text, file).parse()
