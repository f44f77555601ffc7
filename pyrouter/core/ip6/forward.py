"""ip6_forward(): net/ipv6/ip6_output.c, in the kernel's order.

1. forwarding on; the frame was addressed to us at L2 (PACKET_HOST);
2. hop limit <= 1 -> Time Exceeded code 0 (Ip6InHdrErrors);
3. out the port it came in on (and no Routing header was processed) -> a Redirect
   (ndisc_send_redirect; rate-limited per destination, 1 s, burst 6), the packet
   is still forwarded;  otherwise a source that is unspecified, multicast or
   loopback is dropped and a link-local source gets Destination Unreachable code
   2, "beyond scope of source address" (RFC 4443 3.1);
4. longer than the egress MTU (the route's mtu, else the port's; never below
   1280) -> Packet Too Big with that MTU: routers never fragment IPv6 (RFC 8200 5),
   except a datagram conntrack reassembled (netfilter/defrag6.py): too big only when
   its largest fragment was, and re-fragmented to that size on output, as the kernel;
5. hop limit decremented (no checksum in the IPv6 header) and neighbour output;
   a plain forward through a REACHABLE neighbour fills the forwarding cache, so the
   next packets to that destination take Router.receive's fast path.

Netfilter: FORWARD after the hop-limit decrement, then POST_ROUTING before neighbour
output (ip6_forward_finish -> ip6_output); the Time Exceeded / Packet Too Big above go
out through OUTPUT.  No forwarding-cache fill while a hook entry exists.

Invariant: the packet is either queued for output or counted as dropped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...wire.ipv6 import IPV6_MIN_MTU, is_multicast6
from ..drops import DropReason
from ..link.neighbour import CONNECTED
from ..netfilter.hooks import Hook, nf_hook
from ..packet import PacketBuf, PktType
from ..port import Port
from ..route.fib import Route
from .icmp6 import (ICMPV6_DEST_UNREACH, ICMPV6_EXC_HOPLIMIT, ICMPV6_NOT_NEIGHBOUR,
                    ICMPV6_PKT_TOOBIG, ICMPV6_TIME_EXCEED, PEER_KEY6, icmpv6_send)
from .ndisc import ndisc_send_redirect
from ..netfilter.defrag6 import unfragmentable
from .output import ip6_fragment, neigh_output6

if TYPE_CHECKING:
    from ..router import Router


def ip6_forward(r: Router, pkt: PacketBuf, route: Route, now: int) -> None:
    snmp = r.counters.snmp
    in_port = r.ports[pkt.iif]
    if pkt.pkt_type is not PktType.HOST:
        r.drop(DropReason.PKT_NOT_HOST, in_port)
        return
    data = pkt.data
    if data[7] <= 1:
        snmp["Ip6InHdrErrors"] += 1
        icmpv6_send(r, pkt, ICMPV6_TIME_EXCEED, ICMPV6_EXC_HOPLIMIT, 0, now)
        r.drop(DropReason.TTL_EXCEEDED, in_port)
        return
    port = r.ports[route.oif]
    dst = int.from_bytes(data[24:40], "big")
    nexthop = route.gateway if route.gateway is not None else dst
    if route.oif == pkt.iif and not pkt.srcrt:
        # inet_peer_xrlim_allow(peer(daddr), 1 s): the bucket ICMPv6 errors to that
        # address spend from too.
        if r.icmp_limiter.bucket(dst | PEER_KEY6, now, 10**9, 6 * 10**9):
            ndisc_send_redirect(r, pkt, port, nexthop, now)
    else:
        src = int.from_bytes(data[8:24], "big")
        if src == 0 or is_multicast6(src) or src == 1:
            snmp["Ip6InAddrErrors"] += 1         # ip6_forward's "error:" label
            r.drop(DropReason.MARTIAN_SRC, in_port)
            return
        if src >> 118 == 0x3FA:
            snmp["Ip6InAddrErrors"] += 1
            icmpv6_send(r, pkt, ICMPV6_DEST_UNREACH, ICMPV6_NOT_NEIGHBOUR, 0, now)
            r.drop(DropReason.IP6_LINKLOCAL_SRC, in_port)
            return
    mtu = max(route.mtu or port.mtu, IPV6_MIN_MTU)
    if len(data) > mtu and (not pkt.frag_max_size or pkt.frag_max_size > mtu):
        # ip6_pkt_too_big(): a packet conntrack reassembled (ignore_df) is too big only
        # when one of its fragments was.
        snmp["Ip6InTooBigErrors"] += 1
        snmp["Ip6FragFails"] += 1
        icmpv6_send(r, pkt, ICMPV6_PKT_TOOBIG, 0, mtu, now)
        r.drop(DropReason.FRAG_NEEDED, in_port)
        return
    data[7] -= 1
    if r.trace is not None:
        r.note("ip6_forward", hlim_out=data[7], mtu=mtu, out=port.name)
    hooks = r.nf.v6[2]
    if hooks and not nf_hook(r, hooks, Hook.FORWARD, 6, pkt, in_port, port, now,
                             lambda t: ip6_forward_finish(r, pkt, route, port, nexthop, mtu, t)):
        return
    ip6_forward_finish(r, pkt, route, port, nexthop, mtu, now)


def _forward_output(r: Router, port: Port, nexthop: int, pkt: PacketBuf, mtu: int,
                    now: int) -> None:
    """__ip6_finish_output(): a datagram conntrack reassembled leaves in fragments no
    larger than the largest one that came in (ip6_fragment with mtu = frag_max_size)."""
    fms = pkt.frag_max_size
    if fms and len(pkt.data) > fms:
        hlen, nh_field = unfragmentable(pkt.data)
        # No IPV6_MIN_MTU floor: a kernel router (6.x, compared by the differential
        # tests) sends 300-byte fragments on as 300-byte fragments.
        ip6_fragment(r, pkt, port, nexthop, min(mtu, fms), now, hlen, nh_field)
        return
    neigh_output6(r, port, nexthop, pkt.data, pkt, now)


def ip6_forward_finish(r: Router, pkt: PacketBuf, route: Route, port: Port, nexthop: int,
                       mtu: int, now: int) -> None:
    """After NF_INET_FORWARD: POST_ROUTING, then neighbour output."""
    data = pkt.data
    r.counters.snmp["Ip6OutForwDatagrams"] += 1
    hooks = r.nf.v6[4]
    if hooks and not nf_hook(r, hooks, Hook.POST_ROUTING, 6, pkt, r.ports.get(pkt.iif), port,
                             now, lambda t: _forward_output(r, port, nexthop, pkt, mtu, t)):
        return
    if pkt.frag_max_size:
        _forward_output(r, port, nexthop, pkt, mtu, now)
        return
    neigh_output6(r, port, nexthop, data, pkt, now)
    if route.oif != pkt.iif and not r.fib.custom_rules and not route.mp and data[6] != 0 \
            and not r.nf.fwd_bypass(6):
        # The forwarding cache (core/router.py), keyed by the destination alone: exact
        # while only the default rules exist and the route is not multipath.
        e = r.neigh6.get(port.ifindex, nexthop)
        if e is not None and e.state in CONNECTED and e.lladdr is not None:
            r.fwd_cache_fill(bytes(data[24:40]), port, e.lladdr + port.mac, mtu)
    elif r.flow_rec is not None and route.oif != pkt.iif:
        # A probed packet (netfilter/flowtable.py): where it went, for a per-flow entry.
        e = r.neigh6.get(port.ifindex, nexthop)
        if e is not None and e.state in CONNECTED and e.lladdr is not None:
            r.flow_fwd = (port, e.lladdr + port.mac, mtu)
