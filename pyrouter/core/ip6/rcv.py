"""ipv6_rcv(): validate an IPv6 packet, process Hop-by-Hop options, then route it
(net/ipv6/ip6_input.c ip6_rcv_core, ip6_rcv_finish; route.c ip6_route_input).

Checks in the kernel's order: not PACKET_OTHERHOST; a whole 40-byte header;
version 6; a multicast source, a loopback source or destination, an interface-local
(scope 1) or reserved-scope (0) multicast destination -> address error
(Ip6InHdrErrors); payload length within the frame (else Ip6InTruncatedPkts), padding
trimmed.  Then Hop-by-Hop options
(exthdrs.parse_tlv) when the first next header is 0.

Route input:
* multicast destination: delivered when the port has joined the group (all-nodes,
  all-routers, solicited-node of its addresses), else dropped (no multicast
  routing);
* one of the router's usable addresses (a link-local one only on its own port), or
  the Subnet-Router anycast address of one of its prefixes -> ip6_input; a tentative
  address -> dropped (RFC 4862 5.4);
* a link-local destination that is not ours -> dropped: never forwarded;
* FIB (family 6): unicast -> ip6_forward; local -> ip6_input; blackhole silent;
  unreachable/none -> Destination Unreachable code 0 (no route), prohibit -> code 1.

Netfilter PRE_ROUTING runs after Hop-by-Hop, before route input (ip6_rcv_finish).

Invariant: every discard is counted under one DropReason; nothing raises.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...wire.ipv6 import IPPROTO_HOPOPTS, ip6_str, is_multicast6, mcast_scope
from ..drops import DropReason
from ..netfilter.hooks import Hook, nf_hook
from ..packet import PacketBuf, PktType
from ..route.fib import RouteType
from ..route.flow import FlowKey
from .exthdrs import OK, parse_tlv
from .forward import ip6_forward
from .icmp6 import (ICMPV6_ADM_PROHIBITED, ICMPV6_DEST_UNREACH, ICMPV6_NOROUTE,
                    icmpv6_send, tlv_failed)
from .input import ip6_input

if TYPE_CHECKING:
    from ..port import Port
    from ..router import Router

_ROUTE_DROP = {RouteType.BLACKHOLE: DropReason.ROUTE_BLACKHOLE,
               RouteType.UNREACHABLE: DropReason.ROUTE_UNREACHABLE,
               RouteType.PROHIBIT: DropReason.ROUTE_PROHIBIT}


def ipv6_rcv(r: Router, port: Port, frame: bytes, off: int, pkt_type: PktType,
             now: int) -> None:
    snmp = r.counters.snmp
    if pkt_type is PktType.OTHERHOST:
        r.drop(DropReason.OTHERHOST, port)
        return
    snmp["Ip6InReceives"] += 1
    n = len(frame) - off
    if n < 40 or frame[off] >> 4 != 6:
        snmp["Ip6InHdrErrors"] += 1
        r.drop(DropReason.IP6_TRUNCATED if n < 40 else DropReason.IP_BAD_VERSION, port)
        return
    src = int.from_bytes(frame[off + 8:off + 24], "big")
    dst = int.from_bytes(frame[off + 24:off + 40], "big")
    # (v4-mapped addresses pass: since Linux 5.12 only TCP connection requests refuse
    # them, and the kernel never checked the destination.)
    if (is_multicast6(src) or dst == 1 or src == 1
            or (is_multicast6(dst) and mcast_scope(dst) <= 1)):
        snmp["Ip6InHdrErrors"] += 1
        r.drop(DropReason.IP6_BAD_ADDR, port)
        return
    plen = (frame[off + 4] << 8) | frame[off + 5]
    nexthdr = frame[off + 6]
    if plen == 0 and nexthdr == IPPROTO_HOPOPTS:
        plen = n - 40            # a jumbogram: the Jumbo option is refused below
    if plen > n - 40:
        snmp["Ip6InTruncatedPkts"] += 1
        r.drop(DropReason.IP6_TRUNCATED, port)
        return
    pkt = PacketBuf(bytearray(frame[off:off + 40 + plen]), iif=port.ifindex,
                    pkt_type=pkt_type, l2_src=frame[6:12])
    data = pkt.data
    if port.ifindex not in r.in6:
        r.drop(DropReason.IPV6_DISABLED, port)     # an MTU below 1280: no IPv6 there
        return
    if r.trace is not None:
        r.note("ipv6_rcv", src=ip6_str(src), dst=ip6_str(dst), nexthdr=nexthdr,
               hlim=data[7], len=len(data))
    if nexthdr == IPPROTO_HOPOPTS:
        if len(data) < 48 or len(data) < 40 + ((data[41] + 1) << 3):
            snmp["Ip6InHdrErrors"] += 1
            r.drop(DropReason.IP6_EXTHDR_BAD, port)
            return
        v, code, ptr, _ra = parse_tlv(data, 40, (data[41] + 1) << 3, True, is_multicast6(dst),
                                      r.sysctl6.max_hbh_opts_number,
                                      (frame[off + 4] << 8) | frame[off + 5])
        if v != OK:
            tlv_failed(r, pkt, port, v, code, ptr, now)
            return
    pre = r.nf.v6[0]
    if pre:
        if nf_hook(r, pre, Hook.PRE_ROUTING, 6, pkt, port, None, now,
                   lambda t: _route_input_again(r, pkt, port, t)):
            _route_input_again(r, pkt, port, now)     # a DNAT may have changed them
        return
    ip6_route_input(r, pkt, port, src, dst, now)


def _route_input_again(r: Router, pkt: PacketBuf, port: Port, now: int) -> None:
    """The okfn of a packet reinjected after PREROUTING: addresses read anew."""
    d = pkt.data
    ip6_route_input(r, pkt, port, int.from_bytes(d[8:24], "big"),
                    int.from_bytes(d[24:40], "big"), now)


def ip6_route_input(r: Router, pkt: PacketBuf, port: Port, src: int, dst: int,
                    now: int) -> None:
    snmp = r.counters.snmp
    if dst >> 120 == 0xFF:
        dev = r.in6.get(port.ifindex)
        if dev is not None and (dst in dev.groups or dst in r.proxy_groups6.get(port.ifindex, ())):
            return ip6_input(r, pkt, port, now, mcast=True)
        r.drop(DropReason.MCAST6_NOT_JOINED, port)
        return None
    if dst in r.local6:
        if dst >> 118 != 0x3FA or _on_port(r, port.ifindex, dst):
            return ip6_input(r, pkt, port, now)
    if dst in r.anycast6:
        # The Subnet-Router anycast address of one of our prefixes (RFC 4291 2.6.1;
        # addrconf_join_anycast): delivered, and answered from a unicast source.
        return ip6_input(r, pkt, port, now, anycast=True)
    if r.sysctl6.proxy_ndp and dst in r.sysctl6.proxy_ndp.get(port.ifindex, ()) \
            and _is_ndisc(pkt.data):
        # ip6_forward_proxy_check(): ND messages to a proxied address are ours to answer.
        return ip6_input(r, pkt, port, now)
    if dst >> 118 == 0x3FA:
        r.drop(DropReason.IP6_LINKLOCAL_DST, port)
        return None
    if dst in r.addrs6_all:
        r.drop(DropReason.IP6_ADDR_TENTATIVE, port)
        return None
    data = pkt.data
    route = r.fib.lookup(FlowKey(6, dst, src, iif=port.ifindex, proto=data[6]), r.route_usable)
    pkt.route = route
    kind = route.type if route is not None else None
    if r.trace is not None:
        r.note("fib6_lookup", result=kind.value if kind else "no route",
               route=f"{ip6_str(route.dst)}/{route.plen}" if route else None)
    if kind is RouteType.LOCAL:
        return ip6_input(r, pkt, port, now)
    if kind is RouteType.UNICAST and route is not None:
        if not r.sysctl6.forwarding:
            r.drop(DropReason.NO_ROUTE, port)
            return None
        return ip6_forward(r, pkt, route, now)
    if route is None:
        snmp["Ip6InNoRoutes"] += 1
        reason = DropReason.NO_ROUTE
    else:
        reason = _ROUTE_DROP.get(route.type, DropReason.NO_ROUTE)
    if kind is not RouteType.BLACKHOLE and r.sysctl6.forwarding:
        code = ICMPV6_ADM_PROHIBITED if kind is RouteType.PROHIBIT else ICMPV6_NOROUTE
        icmpv6_send(r, pkt, ICMPV6_DEST_UNREACH, code, 0, now)
    r.drop(reason, port)
    return None


def _is_ndisc(data: bytearray) -> bool:
    return data[6] == 58 and len(data) > 40 and 133 <= data[40] <= 137


def _on_port(r: Router, ifindex: int, addr: int) -> bool:
    dev = r.in6.get(ifindex)
    return dev is not None and dev.find(addr) is not None
