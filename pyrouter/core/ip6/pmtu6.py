"""IPv6 path MTU for the router's own packets (RFC 8201; net/ipv6/route.c
rt6_do_update_pmtu, ip6_update_pmtu).

A Packet Too Big quoting a packet one of our addresses sent lowers the path MTU toward
the quoted destination, never raises it and never below IPV6_MIN_MTU (1280: RFC 8201
dropped the atomic-fragment rule); a route whose mtu is locked never learns.  The value
lives in the same nexthop-exception table as IPv4's (route/exceptions.py; 128-bit keys
cannot meet 32-bit ones) for ip6_rt_mtu_expires (600 s) and is used by ip6_local_out;
forwarded packets keep the egress MTU, as ip6_forward's ip6_dst_mtu_maybe_forward().

Invariant: only packets we sent (source in local6) teach anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...wire.ipv6 import IPV6_MIN_MTU, ip6_str
from ..packet import PacketBuf
from ..route.fib import RouteType
from ..route.flow import FlowKey

if TYPE_CHECKING:
    from ..router import Router


def learn_from_pkt_toobig(r: Router, pkt: PacketBuf, off: int, now: int) -> None:
    data = pkt.data
    q = off + 8
    if len(data) < q + 40 or data[q] >> 4 != 6:
        return
    qsrc = int.from_bytes(data[q + 8:q + 24], "big")
    qdst = int.from_bytes(data[q + 24:q + 40], "big")
    if qsrc not in r.local6:
        return
    mtu = max(int.from_bytes(data[off + 4:off + 8], "big"), IPV6_MIN_MTU)
    route = r.fib.lookup(FlowKey(6, qdst, qsrc), r.route_usable)
    if route is None or route.type is not RouteType.UNICAST:
        return
    port = r.ports.get(route.oif)
    if port is None:
        return
    current = path_mtu6(r, route.oif, route.gateway or 0, qdst, route.mtu or port.mtu, now)
    e = r.fnhe.update_pmtu(route.oif, route.gateway or 0, qdst, mtu, current,
                           route.mtu_locked, now)
    if r.trace is not None:
        r.note("pmtu6_update", dst=ip6_str(qdst), mtu=mtu,
               learned=e.pmtu if e is not None else None)


def path_mtu6(r: Router, oif: int, gateway: int, daddr: int, default: int, now: int) -> int:
    if len(r.fnhe):
        e = r.fnhe.get(oif, gateway, daddr, now)
        if e is not None and e.pmtu:
            return e.pmtu
    return default
