"""IPv6 output: ip6_local_out() for the router's own packets, ip6_fragment() for those
larger than the path, and neigh_output6() onto the wire (net/ipv6/ip6_output.c).

ip6_local_out builds the 40-byte header (hop limit from net.ipv6.conf.all.hop_limit
unless given; ND and RA messages pass 255), picks the egress: a given port (ND,
RA, replies to link-local or multicast addresses, which have no route), else the
FIB (family 6, through the policy rules); the source is the caller's or
addrconf's selection; the upper-layer checksum is filled over the pseudo-header.
A packet to one of our own addresses loops back into ip6_input.  Larger than the
MTU (the route's or port's, lowered by a learned path MTU: pmtu6.py): fragmented with a
Fragment header (RFC 8200 4.5; the router fragments only what it originates, never what
it forwards).

neigh_output6: multicast destinations map to 33:33:xx:xx:xx:xx (RFC 2464 7);
unicast ones go through the neighbour table (NDISC resolves, packets wait
bounded).

Netfilter: LOCAL_OUT once the packet is built, POST_ROUTING before fragmentation and
neighbour output (ip6_output), as the kernel.

Invariants: every frame handed to ``Router.xmit`` has a complete Ethernet header
and is at most the egress MTU; nothing here raises on packet contents.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from ...wire.checksum import inet_checksum
from ...wire.ipv6 import IPPROTO_FRAGMENT, IPV6_MIN_MTU, ip6_str, is_linklocal6, is_multicast6, \
    mcast_mac6
from ..drops import DropReason
from ..netfilter.hooks import Hook, nf_hook
from ..packet import PacketBuf
from ..route.fib import RouteType
from ..route.flow import FlowKey
from .addrconf import ipv6_dev_get_saddr
from .pmtu6 import path_mtu6

if TYPE_CHECKING:
    from ..port import Port
    from ..router import Router

_HDR = struct.Struct("!IHBB16s16s")
_ETH_IP6 = b"\x86\xdd"
_CSUM_AT = {58: 2, 17: 6, 6: 16}


def ip6_local_out(r: Router, daddr: int, saddr: int | None, nexthdr: int, payload: bytes,
                  now: int, hop_limit: int | None = None, oif: int | None = None,
                  tclass: int = 0, nfct: tuple[Any, int] | None = None) -> bool:
    """Send a packet the router originates; False when there is no route or source;
    *nfct* is nf_ct_attach()'s (conntrack entry, ctinfo)."""
    snmp = r.counters.snmp
    nexthop = daddr
    mtu = 0
    if oif is None and (is_linklocal6(daddr) or is_multicast6(daddr)):
        snmp["Ip6OutNoRoutes"] += 1
        return False
    if oif is None:
        route = r.fib.lookup(FlowKey(6, daddr, saddr or 0, proto=nexthdr), r.route_usable)
        if route is None or route.type not in (RouteType.UNICAST, RouteType.LOCAL):
            snmp["Ip6OutNoRoutes"] += 1
            return False
        oif = route.oif
        if route.type is RouteType.UNICAST and route.gateway is not None:
            nexthop = route.gateway
        mtu = route.mtu
    port = r.ports.get(oif)
    if port is None:
        snmp["Ip6OutNoRoutes"] += 1
        return False
    if saddr is None:
        saddr = ipv6_dev_get_saddr(r, oif, daddr)
        if saddr is None:
            r.drop(DropReason.IP6_NO_SOURCE)
            return False
    if hop_limit is None:
        hop_limit = r.sysctl6.hop_limit
    plen = len(payload)
    data = bytearray(40 + plen)
    _HDR.pack_into(data, 0, (6 << 28) | (tclass << 20), plen, nexthdr, hop_limit,
                   saddr.to_bytes(16, "big"), daddr.to_bytes(16, "big"))
    data[40:] = payload
    at = _CSUM_AT.get(nexthdr)
    if at is not None and plen >= at + 2:
        data[40 + at] = data[41 + at] = 0
        c = inet_checksum(memoryview(data)[40:], saddr + daddr + nexthdr + plen)
        if nexthdr == 17 and c == 0:
            c = 0xFFFF
        data[40 + at], data[41 + at] = c >> 8, c & 0xFF
    snmp["Ip6OutRequests"] += 1
    if r.trace is not None:
        r.note("ip6_local_out", src=ip6_str(saddr), dst=ip6_str(daddr), nexthdr=nexthdr,
               len=len(data), dev=port.name)
    pkt = PacketBuf(data, iif=oif, oif=oif, local_out=True)
    if nfct is not None:
        pkt.ct, pkt.ctinfo = nfct
    hooks = r.nf.v6[3]
    if hooks and not nf_hook(r, hooks, Hook.LOCAL_OUT, 6, pkt, None, port, now,
                             lambda t: _local_out_finish(r, pkt, port, nexthop, mtu, t)):
        return True
    return _local_out_finish(r, pkt, port, nexthop, mtu, now)


def ip6_route_me_harder(r: Router, pkt: PacketBuf) -> bool:
    """ip6_route_me_harder(): route the packet again after OUTPUT's NAT changed its
    destination; the route and next hop go on *pkt* (``_local_out_finish`` takes them).
    False when there is no route (the caller drops; Ip6OutNoRoutes)."""
    data = pkt.data
    daddr = int.from_bytes(data[24:40], "big")
    saddr = int.from_bytes(data[8:24], "big")
    if saddr not in r.local6:
        saddr = 0
    route = None
    if not (is_linklocal6(daddr) or is_multicast6(daddr)):
        route = r.fib.lookup(FlowKey(6, daddr, saddr, mark=pkt.mark, proto=data[6]),
                             r.route_usable)
    if route is None or route.type not in (RouteType.UNICAST, RouteType.LOCAL) \
            or route.oif not in r.ports:
        r.counters.snmp["Ip6OutNoRoutes"] += 1
        return False
    pkt.route = route
    pkt.oif = route.oif
    pkt.nexthop = route.gateway if route.type is RouteType.UNICAST and \
        route.gateway is not None else daddr
    return True


def _local_out_finish(r: Router, pkt: PacketBuf, port: Port, nexthop: int, mtu: int,
                      now: int) -> bool:
    """dst_output() after LOCAL_OUT: loopback, or POST_ROUTING then ip6_finish_output
    (by the route ip6_route_me_harder chose when OUTPUT's NAT moved the destination)."""
    data = pkt.data
    if pkt.route is not None:
        port = r.ports[pkt.route.oif]
        nexthop, mtu = pkt.nexthop, pkt.route.mtu
    daddr = int.from_bytes(data[24:40], "big")
    if daddr in r.local6:
        # Looped back, as the kernel's loopback device does; never an ICMP error about it.
        from .input import ip6_input  # noqa: PLC0415

        ip6_input(r, pkt, port, now)
        return True
    hooks = r.nf.v6[4]
    if hooks and not nf_hook(r, hooks, Hook.POST_ROUTING, 6, pkt, None, port, now,
                             lambda t: _finish_output(r, pkt, port, nexthop, mtu, t)):
        return True
    return _finish_output(r, pkt, port, nexthop, mtu, now)


def _finish_output(r: Router, pkt: PacketBuf, port: Port, nexthop: int, mtu: int,
                   now: int) -> bool:
    data = pkt.data
    mtu = max(mtu or port.mtu, IPV6_MIN_MTU)
    if len(r.fnhe):
        daddr = int.from_bytes(data[24:40], "big")
        mtu = path_mtu6(r, port.ifindex, nexthop if nexthop != daddr else 0, daddr, mtu, now)
    if len(data) > mtu:
        return ip6_fragment(r, pkt, port, nexthop, mtu, now)
    neigh_output6(r, port, nexthop, data, pkt, now)
    return True


def ip6_fragment(r: Router, pkt: PacketBuf, port: Port, nexthop: int, mtu: int,
                 now: int, hlen: int = 40, nh_field: int = 6) -> bool:
    """Fragment a packet: the first *hlen* bytes (the header, and for a forwarded
    datagram conntrack reassembled the headers ip6_find_1stfragopt keeps in front) are
    unfragmentable, *nh_field* is the next-header byte that then names the Fragment
    header; each piece carries one (RFC 8200 4.5)."""
    data = pkt.data
    # A random Identification per packet (RFC 7739; the kernel's ipv6_select_ident).
    r.ip6_ident = r.rng.getrandbits(32) or 1
    nexthdr = data[nh_field]
    payload = memoryview(data)[hlen:]
    chunk = (mtu - hlen - 8) & ~7
    if chunk <= 0:
        r.counters.snmp["Ip6FragFails"] += 1
        r.drop(DropReason.FRAG_NEEDED)
        return False
    off = 0
    n = len(payload)
    while off < n:
        size = min(chunk, n - off)
        more = off + size < n
        piece = bytearray(hlen + 8 + size)
        piece[0:hlen] = data[0:hlen]
        struct.pack_into("!H", piece, 4, hlen - 40 + 8 + size)
        piece[nh_field] = IPPROTO_FRAGMENT
        struct.pack_into("!BBHI", piece, hlen, nexthdr, 0, off | (1 if more else 0),
                         r.ip6_ident)
        piece[hlen + 8:] = payload[off:off + size]
        neigh_output6(r, port, nexthop, piece, pkt, now)
        r.counters.snmp["Ip6FragCreates"] += 1
        off += size
    r.counters.snmp["Ip6FragOKs"] += 1
    return True


def neigh_output6(r: Router, port: Port, nexthop: int, l3: bytes | bytearray,
                  ctx: PacketBuf | None, now: int) -> None:
    if nexthop >> 120 == 0xFF:
        r.xmit(port, mcast_mac6(nexthop) + port.mac + _ETH_IP6 + l3)
        return
    if r.trace is not None:
        e = r.neigh6.get(port.ifindex, nexthop)
        r.note("neigh_output", dev=port.name, nexthop=ip6_str(nexthop),
               state=e.state.value if e else "NONE",
               lladdr=e.lladdr.hex(":") if e and e.lladdr else None)
    lladdr = r.neigh6.event_send(port.ifindex, nexthop, bytes(l3), ctx, now)
    if lladdr is not None:
        r.xmit(port, lladdr + port.mac + _ETH_IP6 + l3)
