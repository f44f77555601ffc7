"""FIB nexthop exceptions (the kernel's fib_nh_exception): what the router has learned
about one destination behind one nexthop, here the path MTU.

Learning (__ip_rt_update_pmtu): an ICMP Frag Needed about a packet the router sent
lowers the path MTU toward that destination, never raises it; below min_pmtu
(552) the value is clamped to 552 and locked; a route whose mtu is locked never
learns; a repeat of the same value within the first half of the lifetime changes
nothing.  An exception lives ip_rt_mtu_expires (600 s) and is forgotten lazily
when looked up after that.  The router's own traffic uses the learned MTU; a
forwarded packet only when ip_forward_use_pmtu is set (off by default).

Bound: at most MAX_EXCEPTIONS entries, least recently updated evicted first (the
kernel: 2048 buckets per nexthop, chains reclaimed past depth 5).  Any FIB change
flushes them all (the kernel flushes the exceptions of the nexthops it changes).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from ..time import SECOND

MIN_PMTU = 552
MTU_EXPIRES = 600 * SECOND
MAX_EXCEPTIONS = 8192


@dataclass(slots=True)
class NexthopException:
    oif: int
    gateway: int
    daddr: int
    pmtu: int
    locked: bool
    expires: int


class ExceptionTable:
    def __init__(self, min_pmtu: int = MIN_PMTU, expires: int = MTU_EXPIRES) -> None:
        self.min_pmtu = min_pmtu
        self.expires = expires
        self.entries: OrderedDict[tuple[int, int, int], NexthopException] = OrderedDict()
        self.generation = 0

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, oif: int, gateway: int, daddr: int, now: int) -> NexthopException | None:
        key = (oif, gateway, daddr)
        e = self.entries.get(key)
        if e is not None and now >= e.expires:
            del self.entries[key]
            self.generation += 1
            return None
        return e

    def update_pmtu(self, oif: int, gateway: int, daddr: int, mtu: int, path_mtu: int,
                    route_locked: bool, now: int) -> NexthopException | None:
        """__ip_rt_update_pmtu(); *path_mtu* is what the route gives today (ipv4_mtu)."""
        if route_locked or path_mtu < mtu:
            return None
        lock = False
        if mtu < self.min_pmtu:
            lock = True
            mtu = min(path_mtu, self.min_pmtu)
        key = (oif, gateway, daddr)
        e = self.get(oif, gateway, daddr, now)
        if e is not None and e.pmtu == mtu and not lock and now < e.expires - self.expires // 2:
            return e
        if e is None:
            if len(self.entries) >= MAX_EXCEPTIONS:
                self.entries.popitem(last=False)
            e = NexthopException(oif, gateway, daddr, mtu, lock, now + self.expires)
        else:
            e.pmtu, e.locked, e.expires = mtu, lock, now + self.expires
            self.entries.pop(key)
        self.entries[key] = e
        self.generation += 1
        return e

    def flush(self) -> None:
        if self.entries:
            self.entries.clear()
            self.generation += 1
