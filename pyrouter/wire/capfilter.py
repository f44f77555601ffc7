"""A tcpdump filter subset, compiled once to a fast predicate over Ethernet frames.

Follows pcap-filter(7) as libpcap 1.10 implements it for LINKTYPE_ETHERNET,
and aims to give, frame for frame, the verdict ``tcpdump -r FILE EXPR`` gives.

Grammar (``and``/``&&``, ``or``/``||``, ``not``/``!``, parentheses)::

    expr      := term { ('and' | 'or') term }     # equal precedence, left to right
    term      := 'not' term | '(' expr ')' | primitive
    primitive := [proto] [dir] ('host' ADDR | 'net' NET | 'port' N | 'portrange' N-M)
               | [proto] [dir] ADDR                # host is implied
               | 'ether' [dir] ['host'] MAC | 'ether' 'broadcast'
               | 'ip' | 'ip6' | 'arp' | 'rarp' | 'icmp' | 'icmp6' | 'tcp' | 'udp'
               | 'sctp' | 'vlan' [ID]
               | VALUE                             # after and/or: the last qualifiers
    proto     := ip | ip6 | arp | rarp (host, net) ; tcp | udp | sctp (port, portrange)
    dir       := src | dst | src or dst | src and dst

Semantics, libpcap's (checked against tcpdump in tests/wire/test_capfilter.py):

- ``and`` and ``or`` have *equal* precedence and group left to right:
  ``a or b and c`` is ``(a or b) and c``; ``not`` binds tighter than both.
- ``host``/``net`` with an IPv4 address look at IPv4 source/destination and at
  the ARP and RARP sender/target protocol addresses; with an IPv6 address at
  IPv6 only.  ``tcp``/``udp`` also match an IPv6 packet whose first header is a
  fragment header carrying them; IPv4 protocol tests ignore fragmentation.
- ``port``/``portrange`` match TCP, UDP and SCTP (like tcpdump) on IPv4
  packets that are not non-first fragments (ports read after ``ihl*4`` bytes),
  and on IPv6 packets whose *first* next header is the transport (no
  extension-header walk).  ``tcp port N`` is TCP only.
- ``vlan [ID]`` matches TPID 0x8100, 0x88a8 or 0x9100 and, as in tcpdump,
  moves every *later* primitive (in text order, whatever the nesting) 4 bytes
  further into the frame; ``ether`` primitives never move.  Without ``vlan``,
  ``ip`` etc. do not match tagged frames.
- A value alone after ``and``/``or`` reuses the qualifiers of the last
  primitive that took a value: ``port 80 or 443``, ``host a or not b``.

Invariants: the predicate never raises on any bytes-like frame; evaluation
is one call of a function generated and compiled here once per expression,
built only from integer and bytes constants, with no loop except in the rare
truncated-IPv6-address path (at most four 32-bit words).  Like a BPF program
without the optimizer (``tcpdump -O``), tests run left to right with short
circuits and a test that reads past the end of the captured bytes rejects the
frame as a whole (``not tcp`` is False for a 10-byte frame).  tcpdump's
optimizer may evaluate truncated frames differently; on complete headers
the verdicts are the same.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import AddressValueError, IPv6Address

__all__ = ["FilterError", "compile_filter", "filter_source"]


class FilterError(ValueError):
    """The expression cannot be compiled; ``pos`` is the 0-based offset of the fault."""

    def __init__(self, message: str, pos: int) -> None:
        super().__init__(f"{message} at column {pos + 1}")
        self.message = message
        self.pos = pos


# ------------------------------------------------------------------- IR
# A tree of tests mirroring libpcap's unoptimised BPF program.  Every load is
# bounds checked where it happens, so a short frame aborts exactly where BPF
# would.


@dataclass(frozen=True, slots=True)
class _Eq:
    """``frame[off:off+len(value)] == value`` (one BPF load; value <= 4 bytes or a MAC)."""
    off: int
    value: bytes


@dataclass(frozen=True, slots=True)
class _In:
    """The same load compared with several values (one ``jeq`` each)."""
    off: int
    values: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class _Masked:
    """``(load & mask) == value`` on a big-endian load of *size* bytes."""
    off: int
    size: int
    mask: int
    value: int


@dataclass(frozen=True, slots=True)
class _Words:
    """A 16-byte IPv6 address compare: four 32-bit loads in order, each masked."""
    off: int
    value: bytes
    mask: bytes


@dataclass(frozen=True, slots=True)
class _Port:
    """A 16-bit port test (``lo <= port <= hi``) at *off*, or after the IPv4
    header when *ihl_at* is set (``ldxb 4*([ihl_at]&0xf)`` then ``ldh [x+off]``)."""
    off: int
    lo: int
    hi: int
    ihl_at: int | None = None


@dataclass(frozen=True, slots=True)
class _And:
    a: _Node
    b: _Node


@dataclass(frozen=True, slots=True)
class _Or:
    a: _Node
    b: _Node


@dataclass(frozen=True, slots=True)
class _Not:
    a: _Node


_Node = _Eq | _In | _Masked | _Words | _Port | _And | _Or | _Not


def _all(*nodes: _Node) -> _Node:
    out = nodes[0]
    for n in nodes[1:]:
        out = _And(out, n)
    return out


def _any(*nodes: _Node) -> _Node:
    out = nodes[0]
    for n in nodes[1:]:
        out = _Or(out, n)
    return out


# ------------------------------------------------------------------- codegen

class _Gen:
    """Turns the IR into one Python expression over ``f`` (frame) and ``n`` (its length)."""

    def __init__(self) -> None:
        self.consts: dict[str, object] = {}
        self._names: dict[tuple[type, object], str] = {}

    def const(self, value: bytes | tuple[int, ...] | tuple[bytes, ...]) -> str:
        # Constants go in as names, never as text taken from the expression.
        key = (type(value), value)
        name = self._names.get(key)
        if name is None:
            name = self._names[key] = f"_k{len(self.consts)}"
            self.consts[name] = value
        return name

    def expr(self, node: _Node) -> str:
        if isinstance(node, (_And, _Or)):
            # A chain `a or b or c` (left-nested by the parser) becomes one flat
            # BoolOp: same order of evaluation, no recursion, no paren nesting.
            kind, operands, stack = type(node), [], [node]
            while stack:
                cur = stack.pop()
                if type(cur) is kind:
                    stack += [cur.b, cur.a]          # type: ignore[union-attr]
                else:
                    operands.append(self.expr(cur))
            op = " and " if kind is _And else " or "
            return f"({op.join(operands)})"
        if isinstance(node, _Not):
            return f"(not {self.expr(node.a)})"
        if isinstance(node, _Eq):
            o, size = node.off, len(node.value)
            if size == 1:
                return f"(f[{o}] == {node.value[0]})"       # IndexError aborts
            return f"(f[{o}:{o + size}] == {self.const(node.value)} if n >= {o + size} else _oob())"
        if isinstance(node, _In):
            o, size = node.off, len(node.values[0])
            if size == 1:
                return f"(f[{o}] in {self.const(tuple(v[0] for v in node.values))})"
            return (f"(f[{o}:{o + size}] in {self.const(node.values)}"
                    f" if n >= {o + size} else _oob())")
        if isinstance(node, _Masked):
            o, end = node.off, node.off + node.size
            return (f"((_ifb(f[{o}:{end}], 'big') & {node.mask}) == {node.value}"
                    f" if n >= {end} else _oob())")
        if isinstance(node, _Words):
            o = node.off
            v, m = self.const(node.value), self.const(node.mask)
            if node.mask == b"\xff" * 16:
                fast = f"f[{o}:{o + 16}] == {v}"
            else:
                mi = int.from_bytes(node.mask, "big")
                vi = int.from_bytes(node.value, "big")
                fast = f"(_ifb(f[{o}:{o + 16}], 'big') & {mi}) == {vi}"
            return f"({fast} if n >= {o + 16} else _words(f, n, {o}, {v}, {m}))"
        if isinstance(node, _Port):
            if node.ihl_at is None:
                guard = f"n >= {node.off + 2}"
                load = f"f[{node.off}:{node.off + 2}]"
            else:   # the walrus in the guard runs first and sets x for the test
                guard = f"n >= (x := ((f[{node.ihl_at}] & 15) << 2) + {node.off}) + 2"
                load = "f[x:x + 2]"
            if node.lo == node.hi:
                test = f"{load} == {self.const(node.lo.to_bytes(2, 'big'))}"
            else:
                test = f"{node.lo} <= _ifb({load}, 'big') <= {node.hi}"
            return f"({test} if {guard} else _oob())"
        raise TypeError(f"not a filter node: {node!r}")


def _oob() -> bool:
    """A load past the captured bytes: BPF returns 0, so the whole filter rejects."""
    raise IndexError


def _words(f: bytes, n: int, off: int, value: bytes, mask: bytes) -> bool:
    """The four-word IPv6 compare on a frame that ends inside it: the words
    that fit are compared in order, and reaching a missing one aborts."""
    for i in range(0, 16, 4):
        if off + i + 4 > n:
            raise IndexError
        w = int.from_bytes(f[off + i:off + i + 4], "big")
        if w & int.from_bytes(mask[i:i + 4], "big") != int.from_bytes(value[i:i + 4], "big"):
            return False
    return True


def _match_all(frame: bytes) -> bool:
    """The empty filter."""
    return True


def _build(node: _Node) -> tuple[str, dict[str, object]]:
    gen = _Gen()
    body = gen.expr(node)
    src = ("def _match(f):\n"
           "    n = len(f)\n"
           "    try:\n"
           f"        return {body}\n"
           "    except IndexError:\n"
           "        return False\n")
    namespace: dict[str, object] = {"__builtins__": {}, "len": len, "IndexError": IndexError,
                                    "_ifb": int.from_bytes, "_oob": _oob, "_words": _words}
    namespace.update(gen.consts)
    return src, namespace


# ------------------------------------------------------------------- lexer

_TOKEN = re.compile(r"\s*(?:(&&|\|\||[()!])|([A-Za-z0-9_.:/\-]+)|(\S))")

_AND = frozenset({"and", "&&"})
_OR = frozenset({"or", "||"})
_NOT = frozenset({"not", "!"})
_DIRS = frozenset({"src", "dst"})
_KINDS = frozenset({"host", "net", "port", "portrange"})
_ADDR_PROTOS = frozenset({"ip", "ip6", "arp", "rarp"})
_PORT_PROTOS = frozenset({"tcp", "udp", "sctp"})
_PROTO_NAMES = frozenset({"ip", "ip6", "arp", "rarp", "icmp", "icmp6", "tcp", "udp", "sctp"})
_KEYWORDS = (_AND | _OR | _NOT | _DIRS | _KINDS | _PROTO_NAMES
             | {"ether", "vlan", "broadcast", "(", ")"})


@dataclass(frozen=True, slots=True)
class _Tok:
    text: str
    pos: int


def _tokenize(expr: str) -> list[_Tok]:
    toks = []
    pos = 0
    while True:
        m = _TOKEN.match(expr, pos)
        if m is None or m.end() == pos:          # only trailing whitespace left
            break
        if m.group(3) is not None:
            raise FilterError(f"unexpected character {m.group(3)!r}", m.start(3))
        group = 1 if m.group(1) is not None else 2
        toks.append(_Tok(m.group(group), m.start(group)))
        pos = m.end()
    return toks


# ------------------------------------------------------------------- values

ETH_P_IP, ETH_P_ARP, ETH_P_RARP, ETH_P_IPV6 = 0x0800, 0x0806, 0x8035, 0x86DD
VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)
IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP = 1, 6, 17
IPPROTO_FRAGMENT, IPPROTO_ICMPV6, IPPROTO_SCTP = 44, 58, 132

_IP_PROTO = {"icmp": IPPROTO_ICMP, "tcp": IPPROTO_TCP, "udp": IPPROTO_UDP,
             "sctp": IPPROTO_SCTP, "icmp6": IPPROTO_ICMPV6}
_NUM = re.compile(r"0[xX][0-9a-fA-F]+|[0-9]+")
_MAC_FORMS = (re.compile(r"[0-9a-fA-F]{1,2}(:[0-9a-fA-F]{1,2}){5}"),
              re.compile(r"[0-9a-fA-F]{1,2}(-[0-9a-fA-F]{1,2}){5}"),
              re.compile(r"[0-9a-fA-F]{4}(\.[0-9a-fA-F]{4}){2}"),
              re.compile(r"[0-9a-fA-F]{12}"))
_V4_PART = re.compile(r"[0-9]{1,3}")


def _number(text: str) -> int | None:
    """libpcap's numbers: 0x hex, leading-zero octal, decimal; None if not one."""
    if not _NUM.fullmatch(text):
        return None
    if text[:2] in ("0x", "0X"):
        return int(text, 16)
    if len(text) > 1 and text[0] == "0":
        return int(text, 8) if all(c in "01234567" for c in text) else None
    return int(text)


def _v4_parts(text: str) -> list[int] | None:
    parts = text.split(".")
    if not 1 <= len(parts) <= 4 or not all(_V4_PART.fullmatch(p) for p in parts):
        return None
    vals = [int(p) for p in parts]
    return vals if all(v <= 255 for v in vals) else None


def _v4_host(text: str) -> bytes | None:
    parts = _v4_parts(text)
    return bytes(parts) if parts is not None and len(parts) == 4 else None


def _v6(text: str) -> bytes | None:
    if ":" not in text or "%" in text:
        return None
    try:
        return IPv6Address(text).packed
    except (AddressValueError, ValueError):
        return None


def _mac(text: str) -> bytes | None:
    if not any(r.fullmatch(text) for r in _MAC_FORMS):
        return None
    if ":" in text or "-" in text:
        return bytes(int(p, 16) for p in re.split(r"[:-]", text))
    return bytes.fromhex(text.replace(".", ""))


def _looks_like_address(text: str) -> bool:
    return _v4_host(text) is not None or _v6(text) is not None


# ------------------------------------------------------------------- parser

_MAX_DEPTH = 40


@dataclass(frozen=True, slots=True)
class _Qual:
    """The qualifiers of a primitive that took a value (reused by a bare value)."""
    proto: str | None        # ip ip6 arp rarp tcp udp sctp ether, or None
    proto_pos: int
    dir: str                 # src dst or and
    kind: str                # host net port portrange


class _Parser:
    def __init__(self, expr: str) -> None:
        self.expr = expr
        self.toks = _tokenize(expr)
        self.i = 0
        self.lt = 12            # offset of the ethertype (moves with each vlan)
        self.nl = 14            # offset of the network header (moves with each vlan)
        self.last: _Qual | None = None
        self.depth = 0          # open parentheses and nots (bounded: Python's parser is)

    # -- token helpers

    def peek(self, k: int = 0) -> str | None:
        j = self.i + k
        return self.toks[j].text if j < len(self.toks) else None

    def pos(self) -> int:
        return self.toks[self.i].pos if self.i < len(self.toks) else len(self.expr)

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def fail(self, message: str, pos: int | None = None) -> FilterError:
        return FilterError(message, self.pos() if pos is None else pos)

    # -- grammar

    def parse(self) -> _Node:
        node = self.expr_()
        if self.i < len(self.toks):
            if self.peek() == ")":
                raise self.fail("unexpected ')'")
            raise self.fail("expected 'and', 'or' or the end of the expression")
        return node

    def expr_(self) -> _Node:
        node = self.term()
        while (op := self.peek()) in _AND or op in _OR:
            self.take()
            rhs = self.term()
            node = _And(node, rhs) if op in _AND else _Or(node, rhs)
        return node

    def term(self) -> _Node:
        t = self.peek()
        if t in _NOT or t == "(":
            if self.depth >= _MAX_DEPTH:
                raise self.fail(f"expression nested deeper than {_MAX_DEPTH} levels")
            self.depth += 1
            self.take()
            if t in _NOT:
                node: _Node = _Not(self.term())
            else:
                node = self.expr_()
                if self.peek() != ")":
                    raise self.fail("expected ')'")
                self.take()
                self.last = None      # tcpdump: no implied qualifiers after a parenthesis
            self.depth -= 1
            return node
        return self.primitive()

    def primitive(self) -> _Node:
        t = self.peek()
        if t is None or t in (")",) or t in _AND or t in _OR:
            raise self.fail("expected a primitive (host, net, port, portrange, ether, vlan, "
                            "ip, ip6, arp, icmp, icmp6, tcp, udp) or '(' or 'not'")
        if t == "vlan":
            return self.vlan()
        if t == "ether":
            return self.ether()
        proto, proto_pos = None, self.pos()
        if t in _PROTO_NAMES:
            if self.peek(1) in _DIRS or self.peek(1) in _KINDS:
                proto = self.take().text              # a qualifier: `tcp port 80`
            else:
                self.take()
                self.last = None
                return self.protocol(t)
        elif t in _DIRS or t in _KINDS:
            pass
        elif t in _KEYWORDS:
            raise self.fail(f"expected a primitive, not {t!r}")
        elif self.last is not None:                   # bare value: implied qualifiers
            return self.valued(self.last, self.take())
        elif _looks_like_address(t):
            return self.valued(_Qual(None, proto_pos, "or", "host"), self.take())
        else:
            raise self.fail(f"expected a primitive, not {t!r}")
        direction = self.direction()
        kind = "host"
        if self.peek() in _KINDS:
            kind = self.take().text
        elif self.peek() is None or self.peek() in _KEYWORDS:
            raise self.fail("expected host, net, port, portrange or an address")
        if proto is not None:
            allowed = _ADDR_PROTOS if kind in ("host", "net") else _PORT_PROTOS
            if proto not in allowed:
                raise self.fail(f"{proto!r} cannot qualify {kind!r}", proto_pos)
        qual = _Qual(proto, proto_pos, direction, kind)
        if self.peek() is None:
            raise self.fail(_EXPECTED[kind])
        return self.valued(qual, self.take())

    def direction(self) -> str:
        if self.peek() not in _DIRS:
            return "or"
        first = self.take().text
        other = "dst" if first == "src" else "src"
        op = self.peek()
        if (op in _AND or op in _OR) and self.peek(1) == other:
            self.take()
            self.take()
            return "and" if op in _AND else "or"
        return first

    def protocol(self, name: str) -> _Node:
        if name == "ip":
            return self.ethertype(ETH_P_IP)
        if name == "ip6":
            return self.ethertype(ETH_P_IPV6)
        if name == "arp":
            return self.ethertype(ETH_P_ARP)
        if name == "rarp":
            return self.ethertype(ETH_P_RARP)
        p = _IP_PROTO[name]
        if name == "icmp":
            return self.proto4(p)
        if name == "icmp6":
            return self.proto6(p)
        return _Or(self.proto4(p), self.proto6(p))

    def vlan(self) -> _Node:
        self.take()
        node: _Node = _In(self.lt, tuple(t.to_bytes(2, "big") for t in VLAN_TPIDS))
        t = self.peek()
        if t is not None and t not in _KEYWORDS:
            num = _number(t)
            if num is None:
                raise self.fail("expected a VLAN id")
            if num > 4095:
                raise self.fail(f"VLAN id {num} is > 4095")
            self.take()
            node = _And(node, _Masked(self.nl, 2, 0x0FFF, num))
        self.lt += 4
        self.nl += 4
        self.last = None
        return node

    def ether(self) -> _Node:
        ether_pos = self.take().pos
        if self.peek() == "broadcast":
            self.take()
            self.last = None
            return _Eq(0, b"\xff" * 6)
        if self.peek() not in _DIRS and self.peek() != "host":
            raise self.fail("expected host, src, dst or broadcast after 'ether'")
        direction = self.direction()
        if self.peek() == "host":
            self.take()
        if self.peek() is None:
            raise self.fail(_EXPECTED["ether"])
        return self.valued(_Qual("ether", ether_pos, direction, "host"), self.take())

    # -- valued primitives

    def valued(self, q: _Qual, tok: _Tok) -> _Node:
        self.last = q
        if q.proto == "ether":
            mac = _mac(tok.text)
            if mac is None:
                raise self.fail(_EXPECTED["ether"], tok.pos)
            return self.dirop(q.dir, _Eq(6, mac), _Eq(0, mac))
        if q.kind in ("port", "portrange"):
            return self.ports(q, tok)
        if q.kind == "host":
            v4, v6 = _v4_host(tok.text), _v6(tok.text)
            if v4 is not None:
                return self.host4(q, v4, 0xFFFF_FFFF, tok)
            if v6 is not None:
                return self.host6(q, v6, 128, tok)
            raise self.fail(_EXPECTED["host"], tok.pos)
        return self.net(q, tok)

    def dirop(self, direction: str, src: _Node, dst: _Node) -> _Node:
        if direction == "src":
            return src
        if direction == "dst":
            return dst
        return _And(src, dst) if direction == "and" else _Or(src, dst)

    def host4(self, q: _Qual, addr: bytes, mask: int, tok: _Tok) -> _Node:
        if q.proto == "ip6":
            raise self.fail("'ip6' needs an IPv6 address", tok.pos)
        if q.proto in _PORT_PROTOS:
            raise self.fail(f"{q.proto!r} cannot qualify a host", q.proto_pos)
        protos = [q.proto] if q.proto else ["ip", "arp", "rarp"]
        value = int.from_bytes(addr, "big")

        def test(off: int) -> _Node:
            if mask == 0xFFFF_FFFF:
                return _Eq(off, addr)
            return _Masked(off, 4, mask, value)

        parts = []
        for p in protos:
            if p == "ip":
                et, s, d = ETH_P_IP, self.nl + 12, self.nl + 16
            else:
                et, s, d = ETH_P_ARP if p == "arp" else ETH_P_RARP, self.nl + 14, self.nl + 24
            parts.append(_And(self.ethertype(et), self.dirop(q.dir, test(s), test(d))))
        return _any(*parts)

    def host6(self, q: _Qual, addr: bytes, plen: int, tok: _Tok) -> _Node:
        if q.proto not in (None, "ip6"):
            raise self.fail(f"{q.proto!r} needs an IPv4 address", tok.pos)
        mask = ((1 << 128) - (1 << (128 - plen))).to_bytes(16, "big")
        s = _Words(self.nl + 8, addr, mask)
        d = _Words(self.nl + 24, addr, mask)
        return _And(self.ethertype(ETH_P_IPV6), self.dirop(q.dir, s, d))

    def net(self, q: _Qual, tok: _Tok) -> _Node:
        text = tok.text
        addr_text, slash, len_text = text.partition("/")
        plen: int | None = None
        if slash:
            plen = _number(len_text)
            if plen is None:
                raise self.fail("expected a prefix length after '/'", tok.pos + len(addr_text) + 1)
        v6 = _v6(addr_text)
        if v6 is not None:
            plen = 128 if plen is None else plen
            if plen > 128:
                raise self.fail(f"mask length {plen} is > 128", tok.pos)
            if int.from_bytes(v6, "big") & ((1 << (128 - plen)) - 1):
                raise self.fail(f"non-network bits set in {text!r}", tok.pos)
            return self.host6(q, v6, plen, tok)
        parts = _v4_parts(addr_text)
        if parts is None:
            raise self.fail(_EXPECTED["net"], tok.pos)
        if plen is None:
            plen = 8 * len(parts)                 # tcpdump: `net 10` is 10.0.0.0/8
        if plen > 32:
            raise self.fail(f"mask length {plen} is > 32", tok.pos)
        addr = bytes(parts + [0] * (4 - len(parts)))
        mask = (0xFFFF_FFFF << (32 - plen)) & 0xFFFF_FFFF
        if int.from_bytes(addr, "big") & ~mask & 0xFFFF_FFFF:
            raise self.fail(f"non-network bits set in {text!r}", tok.pos)
        return self.host4(q, addr, mask, tok)

    def ports(self, q: _Qual, tok: _Tok) -> _Node:
        if q.kind == "port":
            lo = hi = self.port_number(tok.text, tok.pos, "port")
        else:
            a, dash, b = tok.text.partition("-")
            if _number(a) is None or not dash:
                raise self.fail(_EXPECTED["portrange"], tok.pos)
            if _number(b) is None:
                raise self.fail("expected a port number after '-'", tok.pos + len(a) + 1)
            lo = self.port_number(a, tok.pos, "portrange")
            hi = self.port_number(b, tok.pos + len(a) + 1, "portrange")
            lo, hi = min(lo, hi), max(lo, hi)
        protos = (IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP) if q.proto is None \
            else (_IP_PROTO[q.proto],)
        proto_test6 = _In(self.nl + 6, tuple(bytes([p]) for p in protos))
        proto_test4 = _In(self.nl + 9, tuple(bytes([p]) for p in protos))
        v6 = _all(self.ethertype(ETH_P_IPV6), proto_test6,
                  self.dirop(q.dir, _Port(self.nl + 40, lo, hi), _Port(self.nl + 42, lo, hi)))
        not_later_fragment = _Masked(self.nl + 6, 2, 0x1FFF, 0)
        v4 = _all(self.ethertype(ETH_P_IP), proto_test4, not_later_fragment,
                  self.dirop(q.dir, _Port(self.nl, lo, hi, ihl_at=self.nl),
                             _Port(self.nl + 2, lo, hi, ihl_at=self.nl)))
        return _Or(v6, v4)

    def port_number(self, text: str, pos: int, kind: str) -> int:
        num = _number(text)
        if num is None:
            raise self.fail(_EXPECTED[kind], pos)
        if num > 65535:
            raise self.fail(f"port {num} is > 65535", pos)
        return num

    # -- link and network layer tests at the current (vlan-shifted) offsets

    def ethertype(self, et: int) -> _Node:
        return _Eq(self.lt, et.to_bytes(2, "big"))

    def proto4(self, p: int) -> _Node:
        return _And(self.ethertype(ETH_P_IP), _Eq(self.nl + 9, bytes([p])))

    def proto6(self, p: int) -> _Node:
        nh = self.nl + 6
        return _And(self.ethertype(ETH_P_IPV6),
                    _Or(_Eq(nh, bytes([p])),
                        _And(_Eq(nh, bytes([IPPROTO_FRAGMENT])), _Eq(self.nl + 40, bytes([p])))))


_EXPECTED = {
    "host": "expected an IPv4 or IPv6 address",
    "net": "expected a network (address or address/length)",
    "port": "expected a port number",
    "portrange": "expected a port range N-M",
    "ether": "expected a MAC address",
}


# ------------------------------------------------------------------- API

def _parse(expr: str) -> _Node | None:
    if not expr.strip():
        return None
    return _Parser(expr).parse()


def filter_source(expr: str) -> str:
    """The Python source ``compile_filter`` generates for *expr* (for debugging)."""
    node = _parse(expr)
    if node is None:
        return "def _match(f):\n    return True\n"
    return _build(node)[0]


def compile_filter(expr: str) -> Callable[[bytes], bool]:
    """Compile a tcpdump-style *expr* into ``predicate(frame) -> bool``.

    Raises FilterError (a ValueError with ``.pos``) for an expression outside
    the subset.  An empty or blank expression matches every frame.
    """
    node = _parse(expr)
    if node is None:
        return _match_all
    src, namespace = _build(node)
    exec(compile(src, f"<capfilter {expr!r}>", "exec"), namespace)  # noqa: S102
    fn = namespace["_match"]
    assert callable(fn)
    return fn  # type: ignore[return-value]
