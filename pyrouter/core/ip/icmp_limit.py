"""ICMP output rate limiting, as net/ipv4/icmp.c and net/ipv4/inetpeer.c do it.

Two limits apply to an ICMP message the router originates, in this order:

1. the host-wide bucket (icmp_global_allow/icmp_global_consume): up to
   ``icmp_msgs_burst`` (50) messages of credit, refilled at
   ``icmp_msgs_per_sec`` (1000/s), never more often than every 20 ms; each
   message that gets through consumes a random 0-2 credits (the kernel's
   defence against using the limiter as a side channel);
2. the per-destination bucket (inet_peer_xrlim_allow): tokens in time units,
   ``icmp_ratelimit`` (1000 ms) per message, at most 6 x that (XRLIM_BURST_FACTOR),
   and a new peer starts full, so a host gets 6 back-to-back, then 1 per second.

ip_error() (ICMP for reject routes and missing routes) first checks the same
per-source bucket with its own cost (1 s) and burst (5 s), so each such error
spends two tokens: a host gets 2-3 back-to-back, then one every 2 s.

Only types whose bit is set in ``icmp_ratemask`` (0x1818: Destination
Unreachable, Source Quench, Time Exceeded, Parameter Problem) are limited;
Frag Needed (type 3 code 4) and unknown types (> 18) never are, and neither is
anything to or from ourselves (the kernel exempts loopback).

Invariant: the peer table holds at most MAX_PEERS entries; the least recently
used one is evicted first (the kernel's inet_peer is likewise bounded and
garbage-collected).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from ...wire.icmpv4 import ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, NR_ICMP_TYPES
from ..time import MILLISECOND, SECOND

XRLIM_BURST_FACTOR = 6
MAX_PEERS = 4096
IP_RT_ERROR_COST = SECOND
IP_RT_ERROR_BURST = 5 * SECOND


@dataclass(frozen=True, slots=True)
class IcmpLimits:
    """The sysctls, with the kernel's defaults."""

    icmp_ratelimit_ms: int = 1000
    icmp_ratemask: int = 0x1818
    icmp_msgs_per_sec: int = 1000
    icmp_msgs_burst: int = 50


class IcmpLimiter:
    def __init__(self, limits: IcmpLimits, rng: Any) -> None:
        self.limits = limits
        self.rng = rng
        self.credit = limits.icmp_msgs_burst
        self.stamp: int | None = None
        self.peers: OrderedDict[int, tuple[int, int]] = OrderedDict()  # daddr -> (tokens, last)

    def limited_type(self, icmp_type: int, code: int) -> bool:
        """icmpv4_mask_allow() inverted: is this message subject to limiting at all?"""
        if icmp_type > NR_ICMP_TYPES:
            return False
        if icmp_type == ICMP_DEST_UNREACH and code == ICMP_FRAG_NEEDED:
            return False
        return bool((1 << icmp_type) & self.limits.icmp_ratemask)

    def global_allow(self, now: int) -> bool:
        """icmp_global_allow()."""
        if self.credit > 0:
            return True
        if self.stamp is None:
            self.stamp = now - SECOND
        delta = min(now - self.stamp, SECOND)
        if delta < SECOND // 50:
            return False
        incr = self.limits.icmp_msgs_per_sec * delta // SECOND
        if not incr:
            return False
        self.stamp = now
        self.credit = min(self.credit + incr, self.limits.icmp_msgs_burst)
        return True

    def consume(self) -> None:
        """icmp_global_consume(): 0, 1 or 2 credits, at random."""
        self.credit -= self.rng.randrange(3)

    def bucket(self, daddr: int, now: int, cost: int, burst: int) -> bool:
        """The inet_peer token bucket (rate_tokens, rate_last) for *daddr*, shared by
        ip_error() and icmpv4_xrlim_allow() as in the kernel."""
        entry = self.peers.pop(daddr, None)
        if entry is None:
            tokens, last = 0, now - 60 * SECOND      # inet_getpeer(): rate_last = now - 60 s
            if len(self.peers) >= MAX_PEERS:
                self.peers.popitem(last=False)
        else:
            tokens, last = entry
        tokens = min(tokens + now - last, burst)
        ok = tokens >= cost
        if ok:
            tokens -= cost
        self.peers[daddr] = (tokens, now)
        return ok

    def peer_allow(self, daddr: int, now: int) -> bool:
        """inet_peer_xrlim_allow() with timeout = icmp_ratelimit."""
        timeout = self.limits.icmp_ratelimit_ms * MILLISECOND
        if timeout <= 0:
            return True
        return self.bucket(daddr, now, timeout, XRLIM_BURST_FACTOR * timeout)

    def ip_error_allow(self, saddr: int, now: int) -> bool:
        """ip_error()'s own check on the same bucket: ip_rt_error_cost 1 s, burst 5 s.
        A route error thus spends two tokens (this one, then icmp_send's)."""
        return self.bucket(saddr, now, IP_RT_ERROR_COST, IP_RT_ERROR_BURST)
