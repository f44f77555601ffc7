"""A small DNS forwarder on the router's addresses (UDP port 53), as dnsmasq without a cache.

A query (UDP to port 53 of one of the router's addresses, arriving on a port the
forwarder listens on, from a source in one of that port's subnets) is sent on to
the preferred upstream server from the router's own address, with a fresh random
ID and a random source port, and remembered in the pending table under (source
port, ID).  The upstream's answer,
recognised by its source (the upstream's address and port) and that pair, goes
back to the client from the address it asked, with the client's ID; the rest of
the message is passed through untouched (EDNS, TC and all).  The random port and
ID (RFC 5452) are drawn from the router's rng.

Bounds: the pending table holds at most ``max_pending`` queries; when it is full
the oldest is evicted (its answer, if it comes, is then refused like any datagram
to a closed port).  Each query waits ``timeout`` seconds; one timer per forwarder
(key ``("dns",)``) at the oldest deadline expires them, and a timeout makes the
next upstream the preferred one.  Queries that are not DNS queries are dropped as
``dns_malformed``; UDP over IPv4 only, no TCP (a client retrying over TCP after a
truncated answer gets a reset, as from a host with nothing on TCP port 53).

Entry: ``dns_udp_rcv``, called by udp_rcv (core/ip/local.py) for a checked UDP
datagram to the router before it would answer Port Unreachable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...wire.addr import ip4_str
from ...wire.checksum import inet_checksum
from ...wire.dns import DNS_PORT, DnsHeader, with_id
from ...wire.errors import MalformedError
from ..drops import DropReason
from ..ip.output import ip_local_out
from ..route.fib import RouteType
from ..route.flow import FlowKey
from ..time import SECOND, Instant

if TYPE_CHECKING:
    from ..packet import PacketBuf
    from ..router import Router

IPPROTO_UDP = 17
EPHEMERAL_LO, EPHEMERAL_HI = 32768, 60999        # net.ipv4.ip_local_port_range


@dataclass(frozen=True, slots=True)
class DnsParams:
    listen: frozenset[int]                       # ifindexes whose queries are answered
    upstreams: tuple[tuple[int, int], ...]       # (address, port)
    max_pending: int = 1024
    timeout: int = 5                             # seconds


@dataclass(slots=True)
class Pending:
    client: int
    cport: int
    cid: int
    local: int                                   # the router address the client asked
    upstream: int                                # index into params.upstreams
    deadline: Instant


@dataclass(slots=True)
class DnsForwarder:
    params: DnsParams
    pending: dict[tuple[int, int], Pending] = field(default_factory=dict)
    preferred: int = 0
    deadline: Instant | None = None
    stats: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("queries", "answers", "timeouts", "evicted", "no_route"), 0))

    def arm(self, r: Router) -> None:
        if not self.pending:
            self.deadline = None
            return
        first = next(iter(self.pending.values())).deadline
        if self.deadline is None or first < self.deadline:
            self.deadline = first
            r.timers.schedule(first, ("dns",))

    def expire(self, r: Router, now: Instant) -> None:
        # Insertion order is deadline order (one timeout for all queries).
        while self.pending:
            key, p = next(iter(self.pending.items()))
            if p.deadline > now:
                break
            del self.pending[key]
            self.stats["timeouts"] += 1
            if p.upstream == self.preferred:
                self.preferred = (self.preferred + 1) % len(self.params.upstreams)
        self.deadline = None
        self.arm(r)


def _seg(sport: int, dport: int, payload: bytes, saddr: int, daddr: int) -> bytes:
    n = 8 + len(payload)
    seg = bytearray(sport.to_bytes(2, "big") + dport.to_bytes(2, "big") + n.to_bytes(2, "big")
                    + b"\0\0" + payload)
    c = inet_checksum(seg, saddr + daddr + IPPROTO_UDP + n) or 0xFFFF
    seg[6], seg[7] = c >> 8, c & 0xFF
    return bytes(seg)


def _source_for(r: Router, daddr: int) -> int | None:
    """The source address ip_local_out would pick (needed first for the UDP checksum)."""
    route = r.fib.lookup(FlowKey(4, daddr, 0, proto=IPPROTO_UDP), r.route_usable)
    if route is None or route.type not in (RouteType.UNICAST, RouteType.LOCAL):
        return None
    if route.type is RouteType.LOCAL:
        return daddr
    port = r.ports.get(route.oif)
    if port is None:
        return None
    nexthop = route.gateway if route.gateway is not None else daddr
    return route.prefsrc or port.primary_addr4(toward=nexthop)


def _on_link(r: Router, ifindex: int, src: int) -> bool:
    """Only clients in a subnet of the port they ask on (dnsmasq's --local-service): the
    forwarder is never an open resolver for the far side of a gateway."""
    port = r.ports.get(ifindex)
    if port is None:
        return False
    for addr, plen in port.addrs4:
        mask = (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF
        if (addr ^ src) & mask == 0:
            return True
    return False


def dns_udp_rcv(r: Router, pkt: PacketBuf, off: int, ulen: int, broadcast: bool,
                now: Instant) -> bool:
    """True when the datagram was the forwarder's (a query or an upstream's answer)."""
    fwd: DnsForwarder | None = r.dns
    if fwd is None or broadcast or pkt.local_out:
        return False
    data = pkt.data
    sport = (data[off] << 8) | data[off + 1]
    dport = (data[off + 2] << 8) | data[off + 3]
    src = int.from_bytes(data[12:16], "big")
    dst = int.from_bytes(data[16:20], "big")
    payload = memoryview(data)[off + 8:off + ulen]
    if dport == DNS_PORT and pkt.iif in fwd.params.listen and _on_link(r, pkt.iif, src):
        return _query(r, fwd, pkt, src, sport, dst, payload, now)
    if (src, sport) in fwd.params.upstreams and len(payload) >= 2:
        p = fwd.pending.get((dport, (payload[0] << 8) | payload[1]))
        if p is None or fwd.params.upstreams[p.upstream] != (src, sport):
            return False
        try:
            hdr = DnsHeader.parse(payload)
        except MalformedError:
            return False
        if not hdr.is_response:
            return False
        del fwd.pending[(dport, hdr.id)]
        fwd.stats["answers"] += 1
        fwd.preferred = p.upstream
        ip_local_out(r, p.client, p.local, IPPROTO_UDP,
                     _seg(DNS_PORT, p.cport, with_id(payload, p.cid), p.local, p.client), now)
        return True
    return False


def _query(r: Router, fwd: DnsForwarder, pkt: PacketBuf, src: int, sport: int, dst: int,
           payload: memoryview, now: Instant) -> bool:
    try:
        hdr = DnsHeader.parse(payload)
    except MalformedError:
        r.drop(DropReason.DNS_MALFORMED, r.ports.get(pkt.iif))
        return True
    if hdr.is_response or sport == 0:
        r.drop(DropReason.DNS_MALFORMED, r.ports.get(pkt.iif))
        return True
    fwd.stats["queries"] += 1
    idx = fwd.preferred % len(fwd.params.upstreams)
    up_addr, up_port = fwd.params.upstreams[idx]
    saddr = _source_for(r, up_addr)
    if saddr is None:
        fwd.stats["no_route"] += 1
        r.counters.snmp["IpOutNoRoutes"] += 1
        r.drop(DropReason.NO_ROUTE, r.ports.get(pkt.iif))
        return True
    for _ in range(8):
        key = (EPHEMERAL_LO + r.rng.randrange(EPHEMERAL_HI - EPHEMERAL_LO + 1),
               r.rng.getrandbits(16))
        if key not in fwd.pending:
            break
    else:
        r.drop(DropReason.DNS_PENDING_FULL, r.ports.get(pkt.iif))
        return True
    if len(fwd.pending) >= fwd.params.max_pending:
        del fwd.pending[next(iter(fwd.pending))]
        fwd.stats["evicted"] += 1
    fwd.pending[key] = Pending(src, sport, hdr.id, dst, idx,
                               now + fwd.params.timeout * SECOND)
    fwd.arm(r)
    ip_local_out(r, up_addr, saddr, IPPROTO_UDP,
                 _seg(key[0], up_port, with_id(payload, key[1]), saddr, up_addr), now)
    return True


def dns_timer(r: Router, deadline: Instant, now: Instant) -> None:
    if r.dns is not None and r.dns.deadline == deadline:
        r.dns.expire(r, now)


def dns_alive_timers(r: Router) -> set[tuple[Instant, Any]]:
    return {(r.dns.deadline, ("dns",))} if r.dns is not None and r.dns.deadline else set()


def dns_adopt(r: Router, new: Router) -> None:
    """Reload: queries in flight stay pending if the forwarder stays configured."""
    old: DnsForwarder | None = r.dns
    r.dns = new.dns
    if r.dns is not None and old is not None:
        r.dns.pending = {k: p for k, p in old.pending.items()
                         if p.upstream < len(r.dns.params.upstreams)}
        r.dns.stats = old.stats
        r.dns.deadline = None
        r.dns.arm(r)


def dns_show(r: Router) -> dict[str, Any] | None:
    fwd: DnsForwarder | None = r.dns
    if fwd is None:
        return None
    return {"listen": sorted(r.ports[i].name for i in fwd.params.listen if i in r.ports),
            "upstreams": [f"{ip4_str(a)}:{p}" for a, p in fwd.params.upstreams],
            "preferred": fwd.preferred, "pending": len(fwd.pending),
            "max_pending": fwd.params.max_pending, "stats": dict(fwd.stats)}
