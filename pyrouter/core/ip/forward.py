"""ip_forward(): the ordered checks of net/ipv4/ip_forward.c (FWD-01..FWD-11).

1. forwarding enabled on the input port (else silent drop, FWD-01);
2. the frame was addressed to us at L2 (pkt_type HOST, FWD-04);
3. TTL <= 1 -> Time Exceeded (code 0), quoting the received TTL (FWD-05);
4. longer than the egress MTU with DF set -> Frag Needed with that MTU (FWD-07);
5. decrement TTL with the incremental checksum (FWD-08);
6. out the port it came in on, source and next hop on-link there -> ICMP
   Redirect (host) to the next hop, with the kernel's back-off (ip/redirect.py);
   the packet is still forwarded (FWD-09);
7. ip_output: fragment if needed, then neighbour output.

The FORWARD hook (core/netfilter) runs after the TTL decrement and the redirect, as
NF_HOOK(NFPROTO_IPV4, NF_INET_FORWARD) in ip_forward(); ip_forward_finish() does
the rest.  The Time Exceeded and Frag Needed sent above go out through OUTPUT, so a
FORWARD drop never suppresses them.  A successful forward through a REACHABLE neighbour
fills the router's forwarding cache so that later packets to the same
destination take the fast path (core/router.py); with netfilter hooks on the way, a
probed packet tells netfilter/flowtable.py where it went instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...wire import icmpv4 as icmpw
from ...wire.addr import ip4_str
from ...wire.ipv4 import IP_DF, decrease_ttl, set_checksum
from ..drops import DropReason
from ..link.neighbour import CONNECTED
from ..netfilter.hooks import Hook, nf_hook
from ..packet import PacketBuf, PktType
from ..port import Port
from ..route.fib import Route
from .icmp import icmp_send
from .options import ip_forward_options
from .output import ip_output
from .pmtu import path_mtu

if TYPE_CHECKING:
    from ..router import Router

ICMP_REDIR_HOST = 1


def _maybe_redirect(r: Router, pkt: PacketBuf, port: Port, nexthop: int, now: int) -> None:
    """RTCF_DOREDIRECT + ip_rt_send_redirect(): source and next hop on-link together,
    no source-route option, and the back-off allows it."""
    data = pkt.data
    src = int.from_bytes(data[12:16], "big")
    onlink = any((src ^ a) & m == 0 and (nexthop ^ a) & m == 0
                 for a, m in ((a, (0xFFFFFFFF << (32 - p)) & 0xFFFFFFFF) for a, p in port.addrs4))
    if not onlink or (pkt.opts is not None and pkt.opts.srr):
        return                  # (source-routed packets are dropped at ip_rcv anyway)
    if r.redirects.allow(src, now):
        if r.trace is not None:
            r.note("ip_rt_send_redirect", gateway=ip4_str(nexthop))
        icmp_send(r, pkt, icmpw.ICMP_REDIRECT, ICMP_REDIR_HOST, nexthop, now)


def ip_forward(r: Router, pkt: PacketBuf, route: Route, now: int) -> None:
    in_port = r.ports[pkt.iif]
    if not in_port.forwarding:
        r.drop(DropReason.NO_ROUTE, in_port)
        return
    if pkt.pkt_type is not PktType.HOST:
        r.drop(DropReason.PKT_NOT_HOST, in_port)
        return
    data = pkt.data
    if data[8] <= 1:
        r.counters.snmp["IpInHdrErrors"] += 1
        icmp_send(r, pkt, icmpw.ICMP_TIME_EXCEEDED, icmpw.ICMP_EXC_TTL, 0, now)
        r.drop(DropReason.TTL_EXCEEDED, in_port)
        return
    port = r.ports[route.oif]
    mtu = path_mtu(r, route, port, int.from_bytes(data[16:20], "big"), now,
                   r.sysctl.ip_forward_use_pmtu)
    if len(data) > mtu and ((data[6] << 8) | data[7]) & IP_DF:
        r.counters.snmp["IpFragFails"] += 1
        icmp_send(r, pkt, icmpw.ICMP_DEST_UNREACH, icmpw.ICMP_FRAG_NEEDED, mtu, now)
        r.drop(DropReason.FRAG_NEEDED, in_port)
        return
    decrease_ttl(data, 0)
    if r.trace is not None:
        r.note("ip_forward", ttl_out=data[8], mtu=mtu, out=port.name,
               fragment=len(data) > mtu)
    nexthop = route.gateway if route.gateway is not None else int.from_bytes(data[16:20], "big")
    if route.oif == pkt.iif and r.sysctl.send_redirects:
        _maybe_redirect(r, pkt, port, nexthop, now)
    pkt.nexthop = nexthop                       # for masquerade's inet_select_addr
    hooks = r.nf.v4[2]
    if hooks and not nf_hook(r, hooks, Hook.FORWARD, 4, pkt, in_port, port, now,
                             lambda t: ip_forward_finish(r, pkt, route, port, nexthop, mtu, t)):
        return
    ip_forward_finish(r, pkt, route, port, nexthop, mtu, now)


def ip_forward_finish(r: Router, pkt: PacketBuf, route: Route, port: Port, nexthop: int,
                      mtu: int, now: int) -> None:
    data = pkt.data
    if pkt.opts is not None:
        # ip_forward_options(): Record Route / Timestamp get this hop's egress address.
        src = route.prefsrc or port.primary_addr4(toward=nexthop) or 0
        if ip_forward_options(data, pkt.opts, src, r.ms_of_day(now)):
            set_checksum(data, 0, pkt.ihl)
    r.counters.snmp["IpForwDatagrams"] += 1
    ip_output(r, pkt, route, port, nexthop, now)
    if len(data) <= mtu and route.oif != pkt.iif and not r.fib.custom_rules \
            and not r.sysctl.rp_filter and not route.mp and not r.nf.fwd_bypass(4):
        # The forwarding cache is keyed by destination alone: exact only while the
        # default rules are the only ones, no reverse-path check depends on the source and
        # the route is not multipath (whose path depends on the flow); no netfilter
        # entry sits on a hook forwarded packets pass (the fast path has no hooks).
        e = r.neigh4.get(port.ifindex, nexthop)
        if e is not None and e.state in CONNECTED and e.lladdr is not None:
            r.fwd_cache_fill(bytes(data[16:20]), port, e.lladdr + port.mac, mtu)
    elif r.flow_rec is not None and len(data) <= mtu and route.oif != pkt.iif:
        # A probed packet (netfilter/flowtable.py): where it went, for a per-flow entry.
        e = r.neigh4.get(port.ifindex, nexthop)
        if e is not None and e.state in CONNECTED and e.lladdr is not None:
            r.flow_fwd = (port, e.lladdr + port.mac, mtu)
