"""Output: ip_local_out() for the router's own packets, ip_output() with
fragmentation (ip_fragment), and neigh_output() onto the wire.

Netfilter: LOCAL_OUT runs in ip_local_out once the packet is built (so the router's
own ICMP errors pass OUTPUT, never FORWARD), POST_ROUTING at the top of ip_output
for forwarded and local packets alike, before fragmentation, as the kernel.

ip_local_out builds the IPv4 header (TTL from the ip_default_ttl sysctl, 64, DF clear
as the kernel's ICMP socket does, id from the router's ident counter), looks
up the output route (the route's preferred source, else the egress port's
address in the next hop's subnet, as inet_select_addr()), then ip_output.

ip_output: larger than the MTU (route mtu metric, else the device MTU) and DF
clear -> fragment (FRAG-03: 8-byte aligned pieces, MF on all but the last,
non-copied options replaced by NOPs after the first fragment); DF set ->
the caller already answered Frag Needed (ip_forward) so this only counts.

Invariants: every packet leaving here is at most the egress MTU; every frame
handed to ``Router.tx`` carries a complete Ethernet header.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from ...wire.addr import ip4_str
from ...wire.ipv4 import IP_DF, IP_MF, IP_OFFSET, set_checksum
from ..drops import DropReason
from ..netfilter.hooks import Hook, nf_hook
from ..packet import PacketBuf
from ..route.fib import Route, RouteType
from ..route.flow import FlowKey
from .pmtu import path_mtu

if TYPE_CHECKING:
    from ..port import Port
    from ..router import Router

_HDR = struct.Struct("!BBHHHBBH4s4s")
_ETH_IP = b"\x08\x00"


def ip_local_out(r: Router, daddr: int, saddr: int | None, proto: int, payload: bytes,
                 now: int, tos: int = 0, ttl: int | None = None, df: bool = False,
                 nfct: tuple[Any, int] | None = None) -> bool:
    """Send a packet the router originates; False when it has no route.  TTL defaults
    to the ip_default_ttl sysctl; *nfct* is nf_ct_attach()'s (conntrack entry, ctinfo)."""
    if ttl is None:
        ttl = r.sysctl.ip_default_ttl
    route = r.fib.lookup(FlowKey(4, daddr, saddr or 0, proto=proto), r.route_usable)
    if route is None or route.type not in (RouteType.UNICAST, RouteType.LOCAL):
        r.counters.snmp["IpOutNoRoutes"] += 1
        return False
    port = r.ports[route.oif]
    local = route.type is RouteType.LOCAL
    nexthop = daddr if local or route.gateway is None else route.gateway
    if route.gateway is not None and len(r.fnhe):
        e = r.fnhe.get(route.oif, route.gateway, daddr, now)
        if e is not None and e.redirect_gw:
            nexthop = e.redirect_gw                     # learned from an accepted redirect
    if saddr is None:
        saddr = daddr if local else (route.prefsrc or port.primary_addr4(toward=nexthop) or 0)
    total = 20 + len(payload)
    r.ip_ident = (r.ip_ident + 1) & 0xFFFF
    data = bytearray(total)
    _HDR.pack_into(data, 0, 0x45, tos, total, r.ip_ident, IP_DF if df else 0, ttl, proto, 0,
                   saddr.to_bytes(4, "big"), daddr.to_bytes(4, "big"))
    set_checksum(data, 0, 20)
    data[20:] = payload
    pkt = PacketBuf(data, iif=route.oif, oif=route.oif, local_out=True, route=route,
                    nexthop=nexthop)
    if nfct is not None:
        pkt.ct, pkt.ctinfo = nfct
    r.counters.snmp["IpOutRequests"] += 1
    if r.trace is not None:
        r.note("ip_local_out", src=ip4_str(saddr), dst=ip4_str(daddr), proto=proto, len=total,
               table=route.table, route=f"{ip4_str(route.dst)}/{route.plen}", dev=port.name)
    hooks = r.nf.v4[3]
    if hooks and not nf_hook(r, hooks, Hook.LOCAL_OUT, 4, pkt, None, port, now,
                             lambda t: _local_out_finish(r, pkt, route, port, nexthop, local, t)):
        return True
    _local_out_finish(r, pkt, route, port, nexthop, local, now)
    return True


def ip_route_me_harder(r: Router, pkt: PacketBuf) -> bool:
    """ip_route_me_harder(): route the packet again after OUTPUT changed its destination
    (a DNAT at the nat output hook): the lookup for the new destination, keeping the
    source; the new route, port and next hop replace the old ones on *pkt*.  False when
    there is none (the caller drops: the kernel's EHOSTUNREACH, IpOutNoRoutes)."""
    data = pkt.data
    daddr = int.from_bytes(data[16:20], "big")
    saddr = int.from_bytes(data[12:16], "big")
    if saddr not in r.local4:
        saddr = 0                   # a foreign source (a reset made for another address)
    route = r.fib.lookup(FlowKey(4, daddr, saddr, tos=data[1] & 0x1E, mark=pkt.mark,
                                 proto=data[9]), r.route_usable)
    if route is None or route.type not in (RouteType.UNICAST, RouteType.LOCAL):
        r.counters.snmp["IpOutNoRoutes"] += 1
        return False
    pkt.route = route
    pkt.oif = route.oif
    pkt.nexthop = daddr if route.type is RouteType.LOCAL or route.gateway is None \
        else route.gateway
    if r.trace is not None:
        r.note("ip_route_me_harder", dst=ip4_str(daddr), dev=r.ports[route.oif].name,
               route=f"{ip4_str(route.dst)}/{route.plen}")
    return True


def _local_out_finish(r: Router, pkt: PacketBuf, route: Route, port: Port, nexthop: int,
                      local: bool, now: int) -> None:
    """dst_output() after NF_INET_LOCAL_OUT: loopback delivery or ip_output (by the
    route ip_route_me_harder chose when OUTPUT's NAT moved the destination)."""
    if pkt.route is not route:
        route = pkt.route
        port = r.ports[route.oif]
        nexthop = pkt.nexthop
        local = route.type is RouteType.LOCAL
    if local:
        # To one of our own addresses: looped back into local delivery, as the
        # kernel's loopback device does.  The packet stays marked local_out, so
        # no ICMP error is ever generated about it.
        from .local import ip_local_deliver  # noqa: PLC0415 (local imports this module)

        ip_local_deliver(r, pkt, now)
        return
    ip_output(r, pkt, route, port, nexthop, now)


def route_mtu(route: Route, port: Port) -> int:
    """ip_dst_mtu_maybe_forward(): the route's mtu metric if set, else the device MTU."""
    return route.mtu or port.mtu


def ip_output(r: Router, pkt: PacketBuf, route: Route, port: Port, nexthop: int,
              now: int) -> None:
    """NF_HOOK_COND(POST_ROUTING) then ip_finish_output (fragment, neighbour output)."""
    hooks = r.nf.v4[4]
    if hooks and not nf_hook(r, hooks, Hook.POST_ROUTING, 4, pkt, r.ports.get(pkt.iif)
                             if not pkt.local_out else None, port, now,
                             lambda t: ip_finish_output(r, pkt, route, port, nexthop, t)):
        return
    ip_finish_output(r, pkt, route, port, nexthop, now)


def ip_finish_output(r: Router, pkt: PacketBuf, route: Route, port: Port, nexthop: int,
                     now: int) -> None:
    data = pkt.data
    if pkt.local_out:
        mtu = path_mtu(r, route, port, int.from_bytes(data[16:20], "big"), now, True)
    else:
        mtu = route_mtu(route, port)
        # A datagram conntrack reassembled leaves as fragments no larger than the
        # largest one received (ip_do_fragment: IPCB(skb)->frag_max_size).
        if pkt.frag_max_size and pkt.frag_max_size < mtu:
            mtu = pkt.frag_max_size
    if len(data) <= mtu:
        neigh_output(r, port, nexthop, data, pkt, now)
        return
    frag = (data[6] << 8) | data[7]
    if frag & IP_DF and not pkt.frag_max_size:
        r.counters.snmp["IpFragFails"] += 1
        r.drop(DropReason.FRAG_NEEDED)
        return
    ip_fragment(r, pkt, mtu, port, nexthop, now)


def ip_fragment(r: Router, pkt: PacketBuf, mtu: int, port: Port, nexthop: int,
                now: int) -> None:
    """ip_do_fragment() slow path (FRAG-03)."""
    data = pkt.data
    hlen = (data[0] & 0x0F) << 2
    frag = (data[6] << 8) | data[7]
    base_off = (frag & IP_OFFSET) << 3
    not_last = frag & IP_MF
    chunk = (mtu - hlen) & ~7
    if chunk <= 0:
        r.counters.snmp["IpFragFails"] += 1
        r.drop(DropReason.FRAG_NEEDED)
        return
    if r.trace is not None:
        r.note("ip_fragment", mtu=mtu, pieces=-(-(len(data) - hlen) // chunk))
    first_hdr = bytes(data[:hlen])
    later_hdr = options_fragment(first_hdr) if hlen > 20 else first_hdr
    payload = memoryview(data)[hlen:]
    left = len(payload)
    off = 0
    while left > 0:
        n = left if left <= mtu - hlen else chunk
        hdr = bytearray(first_hdr if off == 0 else later_hdr)
        flags = frag & (IP_DF | 0x8000)
        if left > n or not_last:
            flags |= IP_MF
        struct.pack_into("!H", hdr, 2, hlen + n)
        struct.pack_into("!H", hdr, 6, flags | ((base_off + off) >> 3))
        set_checksum(hdr, 0, hlen)
        piece = hdr + payload[off:off + n]
        neigh_output(r, port, nexthop, piece, pkt, now)
        r.counters.snmp["IpFragCreates"] += 1
        off += n
        left -= n
    r.counters.snmp["IpFragOKs"] += 1


def options_fragment(hdr: bytes) -> bytes:
    """ip_options_fragment(): options without the copied flag become NOPs."""
    out = bytearray(hdr)
    i, end = 20, len(hdr)
    while i < end:
        t = out[i]
        if t == 0:                      # EOL
            break
        if t == 1:                      # NOP
            i += 1
            continue
        if i + 1 >= end:
            break
        olen = out[i + 1]
        if olen < 2 or i + olen > end:
            break
        if not t & 0x80:
            out[i:i + olen] = b"\x01" * olen
        i += olen
    return bytes(out)


def neigh_output(r: Router, port: Port, nexthop: int, l3: bytes | bytearray, ctx: PacketBuf,
                 now: int) -> None:
    """Resolve *nexthop* on *port* and transmit, or queue while resolving."""
    if r.trace is not None:
        e = r.neigh4.get(port.ifindex, nexthop)
        r.note("neigh_output", dev=port.name, nexthop=ip4_str(nexthop),
               state=e.state.value if e else "NONE",
               lladdr=e.lladdr.hex(":") if e and e.lladdr else None)
    lladdr = r.neigh4.event_send(port.ifindex, nexthop, bytes(l3), ctx, now)
    if lladdr is None and r.trace is not None:
        e = r.neigh4.get(port.ifindex, nexthop)
        r.note("neigh_queued", state=e.state.value if e else "NONE")
    if lladdr is not None:
        r.xmit(port, lladdr + port.mac + _ETH_IP + l3)
