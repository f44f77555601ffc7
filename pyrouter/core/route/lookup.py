"""fib_lookup(): walk the policy rules in priority order (Linux fib_rules_lookup).

The default rule set is the kernel's: 0 lookup local, 32766 lookup main,
32767 lookup default; configured rules sit between them by priority (ties keep
config order).  A rule matches on source/destination prefix, input interface
(``lo``, ifindex 0 here, for the router's own traffic), output interface,
fwmark/mask, TOS, IP protocol and port ranges.  Its action is one of:

* lookup TABLE: a THROW result, or a route whose prefix length is at most the
  rule's suppress_prefixlength, is ignored and the walk goes on;
* goto PRIORITY: continue with the rule of exactly that priority (later in the
  list); with no such rule the goto is unresolved and the walk just goes on;
* blackhole / unreachable / prohibit: the lookup ends with -EINVAL (silent
  drop), -ENETUNREACH (net unreachable, code 0, like no route at all: not the
  host-unreachable of an *unreachable route*) or -EACCES (packet filtered), as
  fib4_rule_action() does.

Nothing found is "network unreachable" (-ENETUNREACH).  Nexthops on ports that
are down are skipped (RTNH_F_DEAD).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .fib import RT_TABLE_DEFAULT, RT_TABLE_LOCAL, RT_TABLE_MAIN, FibTable, Route, RouteType
from .flow import FlowKey

RULE_ACTIONS = ("lookup", "goto", "blackhole", "unreachable", "prohibit")


@dataclass(frozen=True, slots=True)
class PolicyRule:
    priority: int
    table: int = 0
    action: str = "lookup"
    goto: int = 0
    src: tuple[int, int] | None = None      # (network, prefix length)
    dst: tuple[int, int] | None = None
    iif: int | None = None                  # ifindex; 0 = lo (locally generated)
    oif: int | None = None
    fwmark: int | None = None
    fwmask: int = 0xFFFFFFFF
    tos: int | None = None
    ipproto: int | None = None
    sport: tuple[int, int] | None = None
    dport: tuple[int, int] | None = None
    suppress_prefixlength: int = -1
    family: int = 0                         # 0: both; 4 or 6 when a prefix is given

    def matches(self, flow: FlowKey) -> bool:
        """fib4_rule_match() + fib_rule_match()."""
        if self.family and flow.family != self.family:
            return False
        if self.src is not None and not _in(flow.src, self.src, flow.family):
            return False
        if self.dst is not None and not _in(flow.dst, self.dst, flow.family):
            return False
        if self.iif is not None and flow.iif != self.iif:
            return False
        if self.oif is not None and flow.oif != self.oif:
            return False
        if self.fwmark is not None and (flow.mark ^ self.fwmark) & self.fwmask:
            return False
        if self.tos is not None and flow.tos != self.tos:
            return False
        if self.ipproto is not None and flow.proto != self.ipproto:
            return False
        if self.sport is not None and not self.sport[0] <= flow.sport <= self.sport[1]:
            return False
        return self.dport is None or self.dport[0] <= flow.dport <= self.dport[1]


def _fmix32(h: int) -> int:
    """MurmurHash3's finaliser: a cheap, well-mixed 32-bit hash of *h*."""
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    return h ^ (h >> 16)


def _in(addr: int, net: tuple[int, int], family: int) -> bool:
    bits = 32 if family == 4 else 128
    plen = net[1]
    if plen == 0:
        return True
    return (addr ^ net[0]) >> (bits - plen) == 0


DEFAULT_RULES = (PolicyRule(0, RT_TABLE_LOCAL), PolicyRule(32766, RT_TABLE_MAIN),
                 PolicyRule(32767, RT_TABLE_DEFAULT))

_REJECT = {"blackhole": RouteType.BLACKHOLE, "prohibit": RouteType.PROHIBIT}


@dataclass(slots=True)
class Fib:
    """All tables plus the rules that order them."""

    tables: dict[int, FibTable] = field(default_factory=dict)
    rules: tuple[PolicyRule, ...] = DEFAULT_RULES
    generation: int = 0          # bumped on every change: caches compare it
    uses_ports: bool = False     # some rule (or L4 multipath hashing) needs the ports
    hash_seed: int = 0           # multipath hash key (the kernel's is random per boot)
    table_names: dict[int, str] = field(default_factory=dict)   # config tables: names
    multipath_hash_policy: int = 0

    @property
    def custom_rules(self) -> bool:
        return self.rules != DEFAULT_RULES

    def table(self, table_id: int) -> FibTable:
        t = self.tables.get(table_id)
        if t is None:
            t = self.tables[table_id] = FibTable(table_id)
        return t

    def insert(self, route: Route) -> None:
        self.table(route.table).insert(route)
        self.generation += 1

    def delete(self, route: Route) -> bool:
        ok = self.table(route.table).delete(route)
        self.generation += 1
        return ok

    def select_path(self, route: Route, flow: FlowKey, usable: object = None) -> Route:
        """fib_select_multipath(): hash the flow (L3: addresses; L4 with
        fib_multipath_hash_policy 1: addresses, protocol and ports) onto the live
        paths in proportion to their weights; a flow keeps its path while the set of
        live paths stays the same."""
        live = [(p, w) for p, w in zip(route.paths, route.weights, strict=True)
                if usable is None or usable(p)]  # type: ignore[operator]
        if not live:
            return route.paths[0]
        h = self.hash_seed ^ flow.src ^ (flow.dst * 0x9E3779B1)
        if self.multipath_hash_policy == 1:
            h ^= (flow.proto << 24) ^ (flow.sport << 16) ^ flow.dport
        h = _fmix32(h & 0xFFFFFFFF ^ (h >> 32) & 0xFFFFFFFF)
        point = h % sum(w for _, w in live)
        for p, w in live:
            if point < w:
                return p
            point -= w
        return live[-1][0]

    def set_rules(self, extra: list[PolicyRule]) -> None:
        """The default rules plus *extra*, ordered by priority (stable for ties)."""
        self.rules = tuple(sorted([*DEFAULT_RULES, *extra], key=lambda r: r.priority))
        self.uses_ports = any(r.sport is not None or r.dport is not None for r in self.rules)
        self.generation += 1

    def lookup(self, flow: FlowKey, usable: object = None) -> Route | None:
        rules = self.rules
        i, n = 0, len(rules)
        while i < n:
            rule = rules[i]
            i += 1
            if rule.priority != 0 and not rule.matches(flow):
                continue
            action = rule.action
            if action == "lookup":
                t = self.tables.get(rule.table)
                if t is None:
                    continue
                r = t.lookup(flow.family, flow.dst, usable)
                if r is None or r.type is RouteType.THROW or r.plen <= rule.suppress_prefixlength:
                    continue
                return self.select_path(r, flow, usable) if r.paths else r
            if action == "goto":
                # To the rule with exactly that priority; an unresolved goto falls through.
                for j in range(i, n):
                    if rules[j].priority == rule.goto:
                        i = j
                        break
                continue
            if action == "unreachable":
                return None          # fib4_rule_action: -ENETUNREACH, as if nothing matched
            return Route(flow.family, 0, 0, _REJECT[action], table=0, proto="rule")
        return None
