"""FIB nexthop exceptions (the kernel's fib_nh_exception): what the router has learned
about one destination behind one nexthop, here the path MTU.

Learning (__ip_rt_update_pmtu): an ICMP Frag Needed about a packet the router sent
lowers the path MTU toward that destination, never raises it; below min_pmtu
(552) the value is clamped to 552 and locked; a route whose mtu is locked never
learns; a repeat of the same value within the first half of the lifetime changes
nothing.  An exception lives ip_rt_mtu_expires (600 s) and is forgotten lazily
when looked up after that.  The router's own traffic uses the learned MTU; a
forwarded packet only when ip_forward_use_pmtu is set (off by default).

Redirects (__ip_do_redirect), only with accept_redirects (off on a router, as the
kernel turns it off when forwarding is enabled): a Redirect from the gateway the
router uses for a destination, naming another on-link unicast gateway whose
neighbour entry is valid, makes the router's own traffic to that destination use
the new gateway for ip_rt_gc_timeout (300 s).

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
REDIRECT_EXPIRES = 300 * SECOND      # ip_rt_gc_timeout


@dataclass(slots=True)
class NexthopException:
    oif: int
    gateway: int
    daddr: int
    pmtu: int                     # 0: none learned
    locked: bool
    expires: int
    redirect_gw: int = 0          # 0: no redirect learned


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
        if e is not None and e.pmtu == 0 and e.redirect_gw:
            e.pmtu, e.locked, e.expires = mtu, lock, now + self.expires
            self.entries.move_to_end(key)
            self.generation += 1
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

    def update_redirect(self, oif: int, gateway: int, daddr: int, new_gw: int,
                        now: int) -> NexthopException:
        """update_or_create_fnhe(..., new_gw, 0, false, now + ip_rt_gc_timeout)."""
        key = (oif, gateway, daddr)
        e = self.get(oif, gateway, daddr, now)
        if e is None:
            if len(self.entries) >= MAX_EXCEPTIONS:
                self.entries.popitem(last=False)
            e = NexthopException(oif, gateway, daddr, 0, False, now + REDIRECT_EXPIRES, new_gw)
        else:
            e.redirect_gw, e.expires = new_gw, max(e.expires, now + REDIRECT_EXPIRES)
            self.entries.pop(key)
        self.entries[key] = e
        self.generation += 1
        return e

    def flush(self) -> None:
        if self.entries:
            self.entries.clear()
            self.generation += 1
