"""FIB: routing tables with longest-prefix match, as the kernel's fib_table/fib_alias.

Each table keeps, per address family, ``dict[prefixlen, dict[masked network,
list[Route]]]`` and the prefix lengths in use, longest first.  A lookup probes
one dict per prefix length in use, longest first; within a prefix, routes are
ordered by metric (lower wins, RT-05) and the first whose nexthop is usable
wins (dead nexthops are skipped, RT-15).

Route types and what an *input* lookup result means (fib_props, ip_error()):
unicast forward, local deliver, broadcast deliver (never forward), blackhole
silent drop, unreachable ICMP host-unreachable (code 1), prohibit ICMP
packet-filtered (code 13), throw: continue with the next rule.

Invariants: a table never holds two routes with the same (prefix, metric,
type, nexthop); ``plens`` is sorted descending and has no empty buckets.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

RT_TABLE_DEFAULT = 253
RT_TABLE_MAIN = 254
RT_TABLE_LOCAL = 255


class RouteType(Enum):
    UNICAST = "unicast"
    LOCAL = "local"
    BROADCAST = "broadcast"
    BLACKHOLE = "blackhole"
    UNREACHABLE = "unreachable"
    PROHIBIT = "prohibit"
    THROW = "throw"


class Scope(Enum):
    UNIVERSE = 0
    LINK = 253
    HOST = 254


@dataclass(frozen=True, slots=True)
class Route:
    """One FIB entry.  Addresses are ints; ``family`` is 4 or 6."""

    family: int
    dst: int
    plen: int
    type: RouteType = RouteType.UNICAST
    oif: int = 0                  # 0 = no device (reject routes)
    gateway: int | None = None
    metric: int = 0
    prefsrc: int | None = None
    mtu: int = 0                  # 0 = use the device MTU
    mtu_locked: bool = False      # `mtu lock N`: path MTU discovery never lowers it
    scope: Scope = Scope.UNIVERSE
    table: int = RT_TABLE_MAIN
    proto: str = "static"         # kernel | static | boot | ...
    advmss: int = 0               # RTAX_ADVMSS (kept and shown; no TCP terminates here)
    paths: tuple[Route, ...] = ()  # multipath: one single-nexthop Route per path
    weights: tuple[int, ...] = ()
    mp: bool = False              # this Route is one path of a multipath route


def mask_of(family: int, plen: int) -> int:
    bits = 32 if family == 4 else 128
    return ((1 << bits) - 1) ^ ((1 << (bits - plen)) - 1)


class FibTable:
    """One routing table (both families)."""

    __slots__ = ("id", "_buckets", "_plens")

    def __init__(self, table_id: int) -> None:
        self.id = table_id
        self._buckets: dict[int, dict[int, dict[int, list[Route]]]] = {4: {}, 6: {}}
        self._plens: dict[int, list[int]] = {4: [], 6: []}

    def insert(self, route: Route) -> None:
        by_plen = self._buckets[route.family]
        bucket = by_plen.get(route.plen)
        if bucket is None:
            bucket = by_plen[route.plen] = {}
            self._plens[route.family] = sorted(by_plen, reverse=True)
        routes = bucket.get(route.dst)
        if routes is None:
            bucket[route.dst] = [route]
            return
        if route in routes:
            return
        routes.append(route)
        routes.sort(key=lambda r: r.metric)

    def delete(self, route: Route) -> bool:
        by_plen = self._buckets[route.family]
        bucket = by_plen.get(route.plen)
        if not bucket or route not in bucket.get(route.dst, []):
            return False
        routes = bucket[route.dst]
        routes.remove(route)
        if not routes:
            del bucket[route.dst]
        if not bucket:
            del by_plen[route.plen]
            self._plens[route.family] = sorted(by_plen, reverse=True)
        return True

    def lookup(self, family: int, addr: int, usable: object = None) -> Route | None:
        """Longest-prefix match; *usable* (callable on Route) filters dead nexthops."""
        by_plen = self._buckets[family]
        bits = 32 if family == 4 else 128
        full = (1 << bits) - 1
        for plen in self._plens[family]:
            routes = by_plen[plen].get(addr & (full ^ ((1 << (bits - plen)) - 1)))
            if routes:
                for r in routes:
                    if usable is None or usable(r):  # type: ignore[operator]
                        return r
        return None

    def routes(self, family: int | None = None) -> list[Route]:
        out: list[Route] = []
        for fam in (4, 6) if family is None else (family,):
            for plen in self._plens[fam]:
                for rs in self._buckets[fam][plen].values():
                    out.extend(rs)
        return out

    def __len__(self) -> int:
        return sum(len(rs) for fam in (4, 6) for b in self._buckets[fam].values()
                   for rs in b.values())
