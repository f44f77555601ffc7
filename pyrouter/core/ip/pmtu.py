"""Path MTU: learning from ICMP Frag Needed (ipv4_update_pmtu) and the MTU a packet
gets (ipv4_mtu / ip_dst_mtu_maybe_forward).

A Frag Needed (type 3 code 4) addressed to us, quoting a packet one of our
addresses sent, lowers the path MTU toward the quoted destination in the
nexthop exception of the route we would use (route/exceptions.py).  The
router's own packets then use it; forwarded ones only with ip_forward_use_pmtu.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...wire.addr import ip4_str
from ..route.fib import Route, RouteType
from ..route.flow import FlowKey

if TYPE_CHECKING:
    from ..packet import PacketBuf
    from ..port import Port
    from ..router import Router


def path_mtu(r: Router, route: Route, port: Port, daddr: int, now: int,
             with_exceptions: bool) -> int:
    """ipv4_mtu(): a live learned PMTU, else the route's mtu metric, else the device's."""
    if with_exceptions and len(r.fnhe):
        e = r.fnhe.get(route.oif, route.gateway or 0, daddr, now)
        if e is not None and e.pmtu:
            return e.pmtu
    return route.mtu or port.mtu


def quoted_from_us(r: Router, data: bytearray, off: int) -> tuple[int, int, int] | None:
    """The IPv4 header an ICMP error at *off* quotes, if one of our addresses sent it:
    ``(quoted offset, source, destination)``; None otherwise."""
    q = off + 8
    if len(data) < q + 20 or data[q] >> 4 != 4:
        return None
    qsrc = int.from_bytes(data[q + 12:q + 16], "big")
    if qsrc not in r.local4:
        return None
    return q, qsrc, int.from_bytes(data[q + 16:q + 20], "big")


def learn_from_frag_needed(r: Router, pkt: PacketBuf, off: int, now: int) -> None:
    data = pkt.data
    quoted = quoted_from_us(r, data, off)
    if quoted is None:
        return
    _q, qsrc, qdst = quoted
    mtu = (data[off + 6] << 8) | data[off + 7]
    route = r.fib.lookup(FlowKey(4, qdst, qsrc), r.route_usable)
    if route is None or route.type is not RouteType.UNICAST:
        return
    port = r.ports.get(route.oif)
    if port is None:
        return
    before = len(r.fnhe), r.fnhe.generation
    e = r.fnhe.update_pmtu(route.oif, route.gateway or 0, qdst, mtu,
                           path_mtu(r, route, port, qdst, now, True), route.mtu_locked, now)
    if (len(r.fnhe), r.fnhe.generation) != before:
        r.fwd_cache.clear()
    if r.trace is not None:
        r.note("pmtu_update", dst=ip4_str(qdst), mtu=mtu,
               learned=e.pmtu if e is not None else None)


def learn_from_redirect(r: Router, pkt: PacketBuf, off: int, now: int) -> None:
    """__ip_do_redirect() for a Redirect about a packet one of our addresses sent."""
    data = pkt.data
    if (data[off + 1] & 7) > 3:
        return
    quoted = quoted_from_us(r, data, off)
    if quoted is None:
        return
    _q, qsrc, qdst = quoted
    old_gw = int.from_bytes(data[12:16], "big")          # who sent the redirect
    new_gw = int.from_bytes(data[off + 4:off + 8], "big")
    route = r.fib.lookup(FlowKey(4, qdst, qsrc), r.route_usable)
    if route is None or route.type is not RouteType.UNICAST or route.gateway != old_gw:
        return
    port = r.ports.get(route.oif)
    n8 = new_gw >> 24
    if port is None or new_gw == old_gw or n8 == 0 or 224 <= n8 < 240 \
            or new_gw == 0xFFFFFFFF or new_gw in r.local4 or new_gw in r.bcast4:
        r.counters.snmp["IcmpRedirectsRejected"] += 1
        return
    onlink = any((new_gw ^ a) >> (32 - p) == 0 for a, p in port.addrs4 if p)
    if not onlink:
        r.counters.snmp["IcmpRedirectsRejected"] += 1
        return
    e = r.neigh4.get(port.ifindex, new_gw)
    if e is None or e.lladdr is None or e.state.value in ("INCOMPLETE", "FAILED", "NONE"):
        # Not yet valid: start resolving it and ignore this redirect (neigh_event_send).
        r.neigh4.event_send(port.ifindex, new_gw, None, None, now)
        return
    r.fnhe.update_redirect(route.oif, route.gateway or 0, qdst, new_gw, now)
    if r.trace is not None:
        r.note("redirect_accepted", dst=ip4_str(qdst), gateway=ip4_str(new_gw))
