"""fib_lookup(): walk the policy rules in priority order (Linux fib_rules_lookup).

The default rule set is the kernel's: 0 lookup local, 32766 lookup main,
32767 lookup default.  A THROW result continues with the next rule; nothing
found is "network unreachable" (-ENETUNREACH).  Nexthops on ports that are down
are skipped (RTNH_F_DEAD).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .fib import RT_TABLE_DEFAULT, RT_TABLE_LOCAL, RT_TABLE_MAIN, FibTable, Route, RouteType
from .flow import FlowKey


@dataclass(frozen=True, slots=True)
class PolicyRule:
    priority: int
    table: int


DEFAULT_RULES = (PolicyRule(0, RT_TABLE_LOCAL), PolicyRule(32766, RT_TABLE_MAIN),
                 PolicyRule(32767, RT_TABLE_DEFAULT))


@dataclass(slots=True)
class Fib:
    """All tables plus the rules that order them."""

    tables: dict[int, FibTable] = field(default_factory=dict)
    rules: tuple[PolicyRule, ...] = DEFAULT_RULES
    generation: int = 0          # bumped on every change: caches compare it

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

    def lookup(self, flow: FlowKey, usable: object = None) -> Route | None:
        for rule in self.rules:
            t = self.tables.get(rule.table)
            if t is None:
                continue
            r = t.lookup(flow.family, flow.dst, usable)
            if r is None or r.type is RouteType.THROW:
                continue
            return r
        return None
