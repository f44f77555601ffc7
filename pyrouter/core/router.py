"""Router: the sans-IO dataplane.  Frames, time and randomness go in; frames and events come out.

API (smoltcp's shape):
* ``receive(ifindex, frame, now)``: one Ethernet frame from a port;
* ``tick(now)``: run the timers that are due; ``poll_at()``: when next;
* ``drain()``: the frames to transmit and events to log since the last drain;
* control: ``add_port``, ``add_address``, ``add_route``, ``set_link``;
* ``snapshot()``: counters and tables for the operator.

The fast path.  Most forwarded packets are plain: an IPv4 frame addressed to
the port's MAC, no options, TTL > 1, fits the egress MTU, to a destination
whose route is unicast and whose neighbour is REACHABLE.  For those,
``receive`` consults the forwarding cache (destination address -> egress port,
prebuilt Ethernet header, MTU), validates the header (lengths, checksum,
martian source), decrements the TTL with the RFC 1624 update and queues the
frame: no PacketBuf, no route lookup.  Anything else, or any doubt, takes the
slow path (eth_rcv), which does the full kernel sequence and refills the cache.
The cache is bounded (FWD_CACHE_MAX, cleared when full) and cleared on every
FIB or neighbour-state change, so it never answers differently from the slow
path: a neighbour leaving REACHABLE sends its traffic through the slow path,
which runs the NUD machine (STALE -> DELAY -> PROBE) as Linux does.  While netfilter
entries sit on the forwarding hooks the destination entries are never made; the same
cache then holds per-flow entries (12/36-byte keys, netfilter/flowtable.py) made only
from slow-path runs that proved the flow's next packets get the same treatment.

Invariants: nothing here reads a clock or does I/O; no exception caused by
packet contents escapes ``receive``; every discarded packet is counted under
one DropReason.
"""

from __future__ import annotations

from typing import Any

from ..wire.addr import ip4_str
from ..wire.ipv6 import ALL_NODES, ALL_ROUTERS, eui64_linklocal, ip6_str, solicited_node
from ..wire.icmpv4 import ICMP_DEST_UNREACH, ICMP_HOST_UNREACH
from .actions import Event
from .drops import Counters, DropReason
from .ip.fragment import Reassembler
from .ip.icmp import icmp_send
from .ip.icmp_limit import IcmpLimiter
from .ip.redirect import RedirectLimiter
from .ip6 import addrconf
from .ip6.addrconf import Inet6Dev
from .ip6.mld import mld_schedule, mld_timer
from .ip6.ndisc import Ndisc6, ndisc_proxy_timer
from .ip6.ra import RaState, ra_shutdown, ra_start, ra_timer, ra_unicast_timer, send_ra
from .ip6.reasm import Reassembler6
from .ip6.sysctl import Ipv6Sysctl
from .link.arp import PROXY_KEY, arp_announce_port, arp_proxy_timer, arp_solicit
from .link.ethernet import eth_rcv
from .link.neighbour import (
    NeighbourEntry, NeighbourTable, NeighParams, NeighTableParams, NudState, xmit_queued,
)
from .netfilter.flowtable import eligible4, eligible6, forward4, forward6, probe
from .netfilter.hooks import Netfilter
from .packet import PacketBuf
from .port import Port
from .route.exceptions import ExceptionTable
from .route.fib import RT_TABLE_LOCAL, RT_TABLE_MAIN, Route, RouteType, Scope
from .route.lookup import Fib
from .services.dhcp4 import dhcp4_adopt, dhcp4_alive_timers, dhcp4_timer
from .services.dns import dns_adopt, dns_alive_timers, dns_timer
from .sysctl import Ipv4Sysctl
from .time import SECOND, Instant, TimerQueue
from .trace import Tracer

FWD_CACHE_MAX = 4096

_from_bytes = int.from_bytes
_NEIGH_DROPS = {"queue_full": DropReason.NEIGH_QUEUE_FULL,
                "table_full": DropReason.NEIGH_TABLE_FULL, "dead": DropReason.NEIGH_DEAD,
                "failed": DropReason.NEIGH_FAILED}


class Router:
    def __init__(self, rng: Any, now: Instant = 0,
                 neigh_params: NeighParams | None = None,
                 sysctl: Ipv4Sysctl | None = None, sysctl6: Ipv6Sysctl | None = None,
                 neigh_table: NeighTableParams | None = None) -> None:
        self.rng = rng
        self.created_at = now
        self.sysctl = sysctl or Ipv4Sysctl()
        self.sysctl6 = sysctl6 or Ipv6Sysctl()
        self.icmp_limiter = IcmpLimiter(self.sysctl.icmp_limits(), rng)
        self.redirects = RedirectLimiter()
        self.fnhe = ExceptionTable(self.sysctl.route_min_pmtu,
                                   self.sysctl.route_mtu_expires * SECOND)
        self.ports: dict[int, Port] = {}
        self.ports_by_name: dict[str, Port] = {}
        self.fib = Fib()
        self.fib.hash_seed = rng.getrandbits(32)
        self.timers = TimerQueue()
        self.counters = Counters()
        self.neigh4 = NeighbourTable(self, self.timers, rng, neigh_params, neigh_table, now=now)
        # Delayed proxy ARP replies (core/link/arp.py): (due, ifindex, ARP body, pkt_type).
        self.arp_proxy_queue: list[tuple[int, int, bytes, Any]] = []
        self.arp_proxy_deadline: Instant | None = None
        self.reasm = Reassembler()
        # IPv6 (core/ip6): per-port addresses and groups, NDISC's table, reassembly, RAs.
        self.in6: dict[int, Inet6Dev] = {}
        self.local6: set[int] = set()          # usable IPv6 addresses (DAD passed)
        self.addrs6_all: set[int] = set()      # every configured one, tentative included
        self.anycast6: set[int] = set()        # Subnet-Router anycast of our prefixes
        self.mld_due: dict[int, list[int]] = {}   # ip6/mld.py: pending report deadlines
        self.neigh6 = NeighbourTable(Ndisc6(self), self.timers, rng, neigh_params, neigh_table,
                                     kind="neigh6", family=6, now=now)
        self.reasm6 = Reassembler6()
        self.ra_state: dict[int, RaState] = {}
        self.ndisc_proxy_queue: list[tuple[int, int, int, int]] = []   # (due, ifindex, src, target)
        self.proxy_groups6: dict[int, frozenset[int]] = {
            idx: frozenset(solicited_node(a) for a in addrs)
            for idx, addrs in self.sysctl6.proxy_ndp.items()}
        self.ip6_ident = rng.getrandbits(32)
        self.local4: set[int] = set()          # the router's IPv4 addresses
        self.local4_bytes: set[bytes] = set()  # the same, packed (fast path)
        self.bcast4: set[int] = set()          # subnet broadcast addresses
        self.tx: list[tuple[int, bytes | bytearray]] = []
        self.events: list[Event] = []
        self.fwd_cache: dict[bytes, tuple[int, bytes, int, Port]] = {}
        self.fast_forwarded = 0
        self.fast_forwarded6 = 0
        # netfilter/flowtable.py: per-flow entries (12/36-byte keys in fwd_cache), the
        # probe's recorder and result, and what they forwarded.
        self.flow_rec: list[Any] | None = None
        self.flow_fwd: tuple[Port, bytes, int] | None = None
        self.flow_forwarded = 0
        self.flow_forwarded6 = 0
        self.flow_mismatch = 0
        self.wall_offset_ns = 0                # wall clock minus ``now`` (set by the shell)
        self._martian_tokens = 10.0
        self._martian_stamp = now
        self.sockets: dict[str, set[int]] = {"icmp": set(), "udp": set(),   # ip/sock.py
                                             "icmp6": set()}                # ip6/sock6.py
        self.tracer: Tracer | None = None      # core/trace.py
        self.nf = Netfilter(self.fwd_cache)    # core/netfilter: hooks, ruleset, queues
        self.trace: list[dict[str, Any]] | None = None
        self.ip_ident = rng.getrandbits(16)
        self.dhcp4: dict[int, Any] = {}        # ifindex -> services/dhcp4.py Dhcp4Server
        self.dns: Any = None                   # services/dns.py DnsForwarder, if configured
        self.timers.schedule(now + self.neigh4.gc_period(), ("neigh-gc",))

    # -- dataplane ---------------------------------------------------------
    def receive(self, ifindex: int, frame: bytes, now: Instant) -> None:
        port = self.ports.get(ifindex)
        if port is None:
            return
        n = len(frame)
        port.rx_packets += 1
        port.rx_bytes += n
        if not port.up:
            self.drop(DropReason.PORT_DOWN, port)
            return
        if self.tracer is not None and self.tracer.wants(frame):
            self._receive_traced(port, frame, now)
            return
        # Fast path (see module docstring).  Each test below, when false,
        # only means "take the slow path", never "drop".
        if n >= 34 and frame[14] == 0x45 and frame[12] == 8 and frame[13] == 0:
            ent = self.fwd_cache.get(frame[30:34])
            if ent is not None:
                total = (frame[16] << 8) | frame[17]
                ttl = frame[22]
                s0 = frame[26]
                if (ttl > 1 and 20 <= total <= n - 14 and total <= ent[2]
                        and 0 < s0 < 224 and s0 != 127 and ent[0] != ifindex
                        and frame[0:6] == port.mac
                        and frame[26:30] not in self.local4_bytes
                        and not _from_bytes(frame[14:34], "big") % 0xFFFF):
                    out = bytearray(frame) if total == n - 14 else bytearray(frame[:14 + total])
                    out[0:12] = ent[1]
                    out[22] = ttl - 1
                    # RFC 1624 eqn. 3 for the TTL word dropping by 0x0100.
                    s = (~((out[24] << 8) | out[25]) & 0xFFFF) + 0xFEFF
                    s = (s & 0xFFFF) + (s >> 16)
                    s = ~s & 0xFFFF
                    out[24] = s >> 8
                    out[25] = s & 0xFF
                    oport = ent[3]
                    oport.tx_packets += 1
                    oport.tx_bytes += len(out)
                    self.tx.append((ent[0], out))
                    self.fast_forwarded += 1
                    return
            elif self.nf.flow4 and eligible4(frame, n):
                fl = self.fwd_cache.get(frame[26:38])
                if fl is not None and forward4(self, fl, port, frame, n, now):
                    return
                probe(self, port, frame, now, 4)
                return
        elif n >= 54 and frame[12] == 0x86 and frame[13] == 0xDD and frame[14] >> 4 == 6:
            ent = self.fwd_cache.get(frame[38:54])
            if ent is not None:
                # IPv6: no header checksum; the source must be a global unicast
                # address (not ::/8, multicast or link-local) and no Hop-by-Hop header.
                hlim = frame[21]
                total = 54 + ((frame[18] << 8) | frame[19])
                s0 = frame[22]
                if (hlim > 1 and total <= n and total - 14 <= ent[2] and frame[20] != 0
                        and 0 < s0 < 0xFF and not (s0 == 0xFE and frame[23] & 0xC0 == 0x80)
                        and ent[0] != ifindex and frame[0:6] == port.mac):
                    out = bytearray(frame) if total == n else bytearray(frame[:total])
                    out[0:12] = ent[1]
                    out[21] = hlim - 1
                    oport = ent[3]
                    oport.tx_packets += 1
                    oport.tx_bytes += len(out)
                    self.tx.append((ent[0], out))
                    self.fast_forwarded6 += 1
                    return
            elif self.nf.flow6 and eligible6(frame, n):
                fl = self.fwd_cache.get(frame[22:58])
                if fl is not None and forward6(self, fl, port, frame, n, now):
                    return
                probe(self, port, frame, now, 6)
                return
        eth_rcv(self, port, frame, now)

    def _receive_traced(self, port: Port, frame: bytes, now: Instant) -> None:
        steps: list[dict[str, Any]] = []
        self.trace = steps
        try:
            eth_rcv(self, port, frame, now)
        finally:
            self.trace = None
            tracer = self.tracer
            self.events.append(Event("sock.trace", {
                "tracer": tracer.ident if tracer else 0, "iif": port.name, "len": len(frame),
                "steps": steps}))

    def note(self, stage: str, **fields: Any) -> None:
        """Record a decision in the current trace (callers check ``self.trace`` first)."""
        if self.trace is not None:
            fields["stage"] = stage
            self.trace.append(fields)

    def tick(self, now: Instant) -> None:
        for deadline, key in self.timers.pop_due(now):
            kind = key[0]
            if kind == "neigh":
                self.neigh4.timer((key[1], key[2]), deadline, now)
            elif kind == "neigh6":
                self.neigh6.timer((key[1], key[2]), deadline, now)
            elif kind == "frag":
                self.reasm.timer(self, key[1], deadline, now)
            elif kind == "frag6":
                self.reasm6.timer(self, key[1], deadline, now)
            elif kind == "dad":
                addrconf.dad_timer(self, key[1], key[2], deadline, now)
            elif kind == "ra":
                ra_timer(self, key[1], deadline, now)
            elif kind == "ra-unicast":
                ra_unicast_timer(self, key[1], now)
            elif kind == "ndisc-proxy":
                ndisc_proxy_timer(self, now)
            elif kind == "mld":
                mld_timer(self, key[1], deadline, now)
            elif kind == "neigh-gc":
                self.neigh4.periodic_gc(now)
                self.neigh6.periodic_gc(now)
                self.timers.schedule(now + self.neigh4.gc_period(), key)
            elif kind == "arp-proxy":
                arp_proxy_timer(self, deadline, now)
            elif kind == "dhcp4":
                dhcp4_timer(self, key[1], deadline, now)
            elif kind == "dns":
                dns_timer(self, deadline, now)
            elif kind == "ct":
                self.nf.conntrack.timer(self, key[1], deadline, now)
            elif kind == "nfq":
                self.nf.queue_timer(self, key[1], key[2], now)
        # Stale heap entries (re-armed timers) are skipped lazily; bound the heap.
        if len(self.timers) > 8 * (len(self.neigh4.entries) + len(self.neigh6.entries)
                                   + len(self.reasm) + len(self.reasm6)
                                   + len(self.nf.conntrack) + self.nf.queued() + 16):
            self._compact_timers()

    def _compact_timers(self) -> None:
        kind = self.neigh4.kind
        alive = {(e.deadline, (kind, e.ifindex, e.addr))
                 for e in self.neigh4.entries.values() if e.deadline is not None}
        alive |= {(e.deadline, ("neigh6", e.ifindex, e.addr))
                  for e in self.neigh6.entries.values() if e.deadline is not None}
        alive |= {(q.deadline, ("frag", q.key)) for q in self.reasm.queues.values()}
        alive |= {(q.deadline, ("frag6", q.key)) for q in self.reasm6.queues.values()}
        alive |= {(a.deadline, ("dad", d.ifindex, a.addr)) for d in self.in6.values()
                  for a in d.addrs if a.deadline is not None}
        alive |= {(st.deadline, ("ra", idx)) for idx, st in self.ra_state.items()
                  if st.deadline is not None}
        alive |= {(d, k) for d, k in ((e[0], e[2]) for e in self.timers._heap)
                  if k[0] in ("neigh-gc", "ra-unicast", "ndisc-proxy")}
        alive |= {(d, ("mld", idx)) for idx, ds in self.mld_due.items() for d in ds}
        if self.arp_proxy_deadline is not None:
            alive.add((self.arp_proxy_deadline, PROXY_KEY))
        alive |= dhcp4_alive_timers(self) | dns_alive_timers(self)
        alive |= self.nf.conntrack.alive_timers()
        alive |= self.nf.alive_timers()
        self.timers.compact(alive)

    def poll_at(self) -> Instant | None:
        return self.timers.next_deadline()

    def drain(self) -> tuple[list[tuple[int, bytes | bytearray]], list[Event]]:
        tx, ev = self.tx, self.events
        self.tx, self.events = [], []
        return tx, ev

    # -- helpers the stages call ---------------------------------------------
    def drop(self, reason: DropReason, port: Port | None = None) -> None:
        self.counters.drops[reason] += 1
        if port is not None:
            port.rx_dropped += 1
        if self.trace is not None:
            self.trace.append({"stage": "drop", "reason": reason.value})

    def xmit(self, port: Port, frame: bytes | bytearray) -> None:
        if not port.up:
            # No carrier: the device drops what it is given (dev_queue_xmit).
            port.tx_dropped += 1
            self.drop(DropReason.PORT_DOWN)
            return
        port.tx_packets += 1
        port.tx_bytes += len(frame)
        self.tx.append((port.ifindex, frame))
        if self.trace is not None:
            self.trace.append({"stage": "xmit", "dev": port.name, "len": len(frame),
                               "dst_mac": bytes(frame[0:6]).hex(":"),
                               "ethertype": f"0x{(frame[12] << 8) | frame[13]:04x}"})

    def martian_log_allow(self, now: Instant) -> bool:
        """net_ratelimit(): 10 messages of burst, one more every 0.5 s."""
        self._martian_tokens = min(10.0, self._martian_tokens
                                   + (now - self._martian_stamp) / (SECOND / 2))
        self._martian_stamp = now
        if self._martian_tokens >= 1:
            self._martian_tokens -= 1
            return True
        return False

    def ms_of_day(self, now: Instant) -> int:
        """Milliseconds since midnight UTC (RFC 791 timestamps), from the shell's offset."""
        return ((now + self.wall_offset_ns) // 1_000_000) % 86_400_000

    def route_usable(self, route: Route) -> bool:
        """A nexthop on a port without carrier (the kernel's RTNH_F_LINKDOWN) is still
        used unless ignore_routes_with_linkdown is set, as in the kernel; a multipath
        route lives while one of its paths does."""
        if route.paths:
            return any(self.route_usable(p) for p in route.paths)
        if route.oif == 0:
            return True
        p = self.ports.get(route.oif)
        return p is not None and (p.up or not self.sysctl.ignore_routes_with_linkdown)

    def fwd_cache_fill(self, dst: bytes, port: Port, l2: bytes, mtu: int) -> None:
        if len(self.fwd_cache) >= FWD_CACHE_MAX:
            self.fwd_cache.clear()
        self.fwd_cache[dst] = (port.ifindex, l2, mtu, port)

    def flow_cache_fill(self, key: bytes, entry: list[Any]) -> None:
        """A per-flow entry (netfilter/flowtable.py), under the same bound."""
        if len(self.fwd_cache) >= FWD_CACHE_MAX:
            self.fwd_cache.clear()
        self.fwd_cache[key] = entry

    # -- NeighOwner ------------------------------------------------------------
    def neigh_solicit(self, entry: NeighbourEntry, unicast: bool, now: Instant) -> None:
        arp_solicit(self, entry, unicast)

    def neigh_resolved(self, entry: NeighbourEntry, queued: list[tuple[bytes, Any]]) -> None:
        xmit_queued(self, entry, b"\x08\x00", queued)

    def neigh_failed(self, entry: NeighbourEntry, queued: list[tuple[bytes, Any]],
                     now: Instant) -> None:
        """arp_error_report(): each queued packet gets Host Unreachable."""
        if queued:
            self.events.append(Event("neigh.failed", {
                "ifindex": entry.ifindex, "addr": ip4_str(entry.addr), "queued": len(queued)}))
        for l3, ctx in queued:
            self.drop(DropReason.NEIGH_FAILED)
            if isinstance(ctx, PacketBuf):
                err = PacketBuf(bytearray(l3), iif=ctx.iif, pkt_type=ctx.pkt_type,
                                ihl=(l3[0] & 0x0F) << 2)
                icmp_send(self, err, ICMP_DEST_UNREACH, ICMP_HOST_UNREACH, 0, now)

    def neigh_dropped(self, entry: NeighbourEntry | None, why: str) -> None:
        self.drop(_NEIGH_DROPS[why])

    def neigh_changed(self) -> None:
        self.fwd_cache.clear()

    # -- control -------------------------------------------------------------
    def add_port(self, port: Port) -> None:
        """register_netdevice() + addrconf: the port gets its IPv6 link-local address
        (and the fe80::/64 route) at once, starting DAD."""
        self.ports[port.ifindex] = port
        self.ports_by_name[port.name] = port
        if not self.sysctl6.disable_ipv6:
            self.add_address6(port.ifindex, 0, 64, self.created_at)

    def add_address6(self, ifindex: int, addr: int, plen: int, now: int) -> None:
        """ipv6_add_addr() + the routes the kernel adds with it: the address itself in
        table local, its prefix in main (metric 256, proto kernel).  *addr* 0 means the
        port's link-local address."""
        port = self.ports[ifindex]
        if port.mtu < 1280:
            # ipv6_add_dev() refuses a device below IPV6_MIN_MTU: no IPv6 on this port.
            self.events.append(Event("addrconf.mtu_too_small", {"port": port.name,
                                                                "mtu": port.mtu}))
            return
        if addr == 0:
            addr = eui64_linklocal(port.mac)
        if ifindex not in self.in6:
            self.in6[ifindex] = Inet6Dev(ifindex)
            self.in6[ifindex].groups |= {ALL_NODES, ALL_ROUTERS}
        addrconf.add_addr6(self, ifindex, addr, plen, now)
        mld_schedule(self, ifindex, now)          # new solicited-node group: report it
        if (addr, plen) not in port.addrs6:
            port.addrs6.append((addr, plen))
        self.fib.insert(Route(6, addr, 128, RouteType.LOCAL, ifindex, scope=Scope.HOST,
                              table=RT_TABLE_LOCAL, prefsrc=addr, proto="kernel"))
        if plen < 128:
            mask = ((1 << 128) - 1) ^ ((1 << (128 - plen)) - 1)
            if plen < 127 and addr >> 118 != 0x3FA and self.sysctl6.forwarding:
                self.anycast6.add(addr & mask)
            self.fib.insert(Route(6, addr & mask, plen, RouteType.UNICAST, ifindex,
                                  metric=256, scope=Scope.LINK, table=RT_TABLE_MAIN,
                                  proto="kernel"))
        self.fwd_cache.clear()

    def add_address(self, ifindex: int, addr: int, plen: int) -> None:
        """inet_insert_ifa() + fib_add_ifaddr(): local, broadcast and prefix routes."""
        port = self.ports[ifindex]
        mask = (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF
        net = addr & mask
        # A second address in a subnet the port already has is a secondary: the
        # connected and broadcast routes stay the primary's (fib_add_ifaddr).
        secondary = any(a & mask == net and p == plen for a, p in port.addrs4)
        port.addrs4.append((addr, plen))
        self.local4.add(addr)
        self.local4_bytes.add(addr.to_bytes(4, "big"))
        self.fib.insert(Route(4, addr, 32, RouteType.LOCAL, ifindex, scope=Scope.HOST,
                              table=RT_TABLE_LOCAL, prefsrc=addr, proto="kernel"))
        if secondary:
            self.fwd_cache.clear()
            return
        if plen < 31:
            bcast = net | (~mask & 0xFFFFFFFF)
            self.bcast4.add(bcast)
            self.fib.insert(Route(4, bcast, 32, RouteType.BROADCAST, ifindex, scope=Scope.LINK,
                                  table=RT_TABLE_LOCAL, prefsrc=addr, proto="kernel"))
        if plen < 32:
            self.fib.insert(Route(4, net, plen, RouteType.UNICAST, ifindex, scope=Scope.LINK,
                                  table=RT_TABLE_MAIN, prefsrc=addr, proto="kernel"))
        self.fwd_cache.clear()

    def add_route(self, route: Route) -> None:
        self.fib.insert(route)
        self.fwd_cache.clear()
        self.fnhe.flush()

    def delete_route(self, route: Route) -> bool:
        ok = self.fib.delete(route)
        self.fwd_cache.clear()
        self.fnhe.flush()
        return ok

    def set_link(self, ifindex: int, up: bool, now: Instant, admin: bool = False) -> None:
        """Carrier change: on down, flush the port's neighbours (arp_ifdown).  *admin*:
        the router's own device was set down (NETDEV_DOWN, an AF_PACKET port's device),
        not the far end of its wire: masquerade also forgets the port's entries (the
        kernel keeps them on a mere carrier loss)."""
        port = self.ports[ifindex]
        if port.up == up:
            return
        port.up = up
        if not up:
            self.neigh4.flush_dev(ifindex)       # neigh_carrier_down(): PERMANENT stays
            self.neigh6.flush_dev(ifindex)
            if admin:
                from .netfilter.nat import masq_device_down  # noqa: PLC0415
                masq_device_down(self, ifindex)  # masq_device_event(NETDEV_DOWN)
        else:
            # addrconf_notify(NETDEV_CHANGE), device already configured: resend the MLD
            # reports ("we might have roamed"); addresses keep their DAD outcome.
            if ifindex in self.in6:
                mld_schedule(self, ifindex, now)
            st = self.ra_state.get(ifindex)
            if st is not None:
                # The initial RA burst again, so hosts on the link learn us at once.
                st.initial_left = 3
                ra_start(self, ifindex, now)
        self.fwd_cache.clear()
        self.fnhe.flush()
        self.events.append(Event("link.up" if up else "link.down", {"port": port.name}))

    # -- neighbours: static entries, announcements ---------------------------------
    def add_static_neighbour(self, ifindex: int, family: int, addr: int, lladdr: bytes,
                             now: Instant = 0) -> None:
        """``ip [-6] neigh replace ADDR lladdr MAC dev X nud permanent``."""
        (self.neigh4 if family == 4 else self.neigh6).add_permanent(ifindex, addr, lladdr, now)

    def announce(self, now: Instant, why: str = "start") -> None:
        """Gratuitous ARP for every address of every port that is up (arp_notify)."""
        if self.sysctl.arp_notify:
            for port in self.ports.values():
                arp_announce_port(self, port, None, why)

    def adopt(self, new: Router, recreated: frozenset[str] = frozenset()) -> dict[str, Any]:
        """Take over the configuration of *new* (built from a reloaded config), keeping
        learned state that is still valid: counters, neighbour entries and
        reassembly queues of ports that survive with the same ifindex.  Ports in
        *recreated* (new TAP device) lose their neighbours.  Runs between two
        frames, so no packet ever sees half of each configuration."""
        gone = [p for p in self.ports.values()
                if new.ports.get(p.ifindex) is None or new.ports[p.ifindex].name != p.name
                or p.name in recreated]
        gone_idx = {p.ifindex for p in gone}
        for p in gone:
            self.neigh4.flush_dev(p.ifindex, keep_permanent=False)
            self.neigh4.drop_params(p.ifindex)
            self.neigh6.flush_dev(p.ifindex, keep_permanent=False)
            self.neigh6.drop_params(p.ifindex)
        self._adopt6(new, gone)
        announce: list[tuple[Port, list[int] | None, str]] = []
        for idx, np in new.ports.items():
            op = self.ports.get(idx)
            if op is not None and idx not in gone_idx:
                for attr in ("rx_packets", "rx_bytes", "rx_dropped", "tx_packets", "tx_bytes",
                             "tx_dropped", "up"):
                    setattr(np, attr, getattr(op, attr))
                if op.mac != np.mac:
                    # NETDEV_CHANGEADDR: neigh_changeaddr() flushes the port's entries
                    # (static ones come back from the config below), then arp_notify.
                    self.neigh4.flush_dev(idx, keep_permanent=False)
                    announce.append((np, None, "mac_change"))
                else:
                    had = {a for a, _ in op.addrs4}
                    added = [a for a, _ in np.addrs4 if a not in had]
                    if added:
                        announce.append((np, added, "address_added"))
            else:
                announce.append((np, None, "port_added"))
        self._adopt_neighbours(new)
        added = [n for n in new.ports_by_name if n not in self.ports_by_name]
        self.ports, self.ports_by_name = new.ports, new.ports_by_name
        new.fib.hash_seed = self.fib.hash_seed       # flows keep their paths across reloads
        self.fib = new.fib
        self.local4, self.local4_bytes, self.bcast4 = new.local4, new.local4_bytes, new.bcast4
        self.sysctl = new.sysctl
        self.icmp_limiter.limits = new.icmp_limiter.limits
        if self.sysctl.arp_notify:
            for port, addrs, why in announce:
                arp_announce_port(self, port, addrs, why)
        self.fnhe.flush()
        self.fnhe.min_pmtu, self.fnhe.expires = new.fnhe.min_pmtu, new.fnhe.expires
        self.nf.adopt(new.nf)                  # the new ruleset and plugins, in one step
        from .netfilter.nat import masq_cleanup  # noqa: PLC0415
        masq_cleanup(self)                     # masquerade entries of a vanished address
        self.fwd_cache.clear()
        dhcp4_adopt(self, new)
        dns_adopt(self, new)
        removed = [p.name for p in gone
                   if p.name not in recreated and p.name not in new.ports_by_name]
        summary = {"added": added, "removed": removed, "recreated": sorted(recreated),
                   "routes": sum(len(t) for t in self.fib.tables.values())}
        self.events.append(Event("reload.applied", summary))
        return summary

    def _adopt6(self, new: Router, gone: list[Port]) -> None:
        """IPv6 part of adopt(): addresses that survive keep their DAD outcome; new
        ones continue the DAD the new router started (its timers move here)."""
        gone_idx = {p.ifindex for p in gone}
        for idx, ndev in new.in6.items():
            odev = None if idx in gone_idx else self.in6.get(idx)
            for i, a in enumerate(ndev.addrs):
                old = odev.find(a.addr) if odev else None
                if old is not None and old.state != addrconf.TENTATIVE:
                    ndev.addrs[i] = old
                elif a.deadline is not None:
                    self.timers.schedule(a.deadline, ("dad", idx, a.addr))
        self.in6 = new.in6
        self.local6 = {a.addr for d in self.in6.values() for a in d.addrs
                       if a.state == addrconf.PERMANENT}
        self.addrs6_all = new.addrs6_all
        self.anycast6 = new.anycast6
        for idx in list(self.ra_state):
            if idx not in gone_idx and idx not in new.sysctl6.ra and idx in self.sysctl6.ra:
                # RFC 4861 6.2.5: a port that stops advertising says so (lifetime 0).
                send_ra(self, idx, ALL_NODES, self.sysctl6.ra[idx], new.created_at, lifetime=0)
        self.sysctl6 = new.sysctl6
        self.proxy_groups6 = new.proxy_groups6
        for idx in list(self.ra_state):
            if idx in gone_idx or idx not in self.sysctl6.ra:
                del self.ra_state[idx]
        for idx in self.sysctl6.ra:
            dev = self.in6.get(idx)
            if idx not in self.ra_state and dev is not None and dev.linklocal() is not None:
                ra_start(self, idx, new.created_at)

    def shutdown(self, now: Instant) -> None:
        """Before the ports close: final RAs with Router Lifetime 0 (RFC 4861 6.2.5)."""
        ra_shutdown(self, now)

    def _adopt_neighbours(self, new: Router) -> None:
        """Neighbour parameters and static entries of a reloaded config (learned entries
        stay; a port whose parameters did not change keeps its reachable_time)."""
        for t, nt in ((self.neigh4, new.neigh4), (self.neigh6, new.neigh6)):
            t.params, t.table = nt.params, nt.table
            for idx, p in nt.dev_params.items():
                if t.dev_params.get(idx) != p:
                    t.set_params(idx, p)
            for idx in [i for i in t.dev_params if i not in nt.dev_params]:
                t.drop_params(idx)
            want = {k: e for k, e in nt.entries.items() if e.state is NudState.PERMANENT}
            for k, e in list(t.entries.items()):
                if e.state is NudState.PERMANENT and k not in want:
                    t.delete(*k)
            for (idx, addr), ne in want.items():
                e = t.get(idx, addr)
                if ne.lladdr is not None and (e is None or e.state is not NudState.PERMANENT
                                              or e.lladdr != ne.lladdr):
                    t.add_permanent(idx, addr, ne.lladdr, ne.updated)

    # -- operator view -----------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        snmp = dict(self.counters.snmp)
        v4 = self.fast_forwarded + self.flow_forwarded
        v6 = self.fast_forwarded6 + self.flow_forwarded6
        snmp["IpInReceives"] += v4
        snmp["IpForwDatagrams"] += v4
        snmp["Ip6InReceives"] += v6
        snmp["Ip6OutForwDatagrams"] += v6
        return {
            "drops": self.counters.drop_dict(),
            "snmp": snmp,
            "fast_forwarded": self.fast_forwarded,
            "fast_forwarded6": self.fast_forwarded6,
            "flow_forwarded": self.flow_forwarded,
            "flow_forwarded6": self.flow_forwarded6,
            "flow_mismatch": self.flow_mismatch,
            "flow_entries": sum(1 for v in self.fwd_cache.values() if isinstance(v, list)),
            "interfaces": {p.name: p.counters() for p in self.ports.values()},
            "neighbours": [
                {"port": self.ports[e.ifindex].name if e.ifindex in self.ports else e.ifindex,
                 "addr": ip4_str(e.addr), "lladdr": e.lladdr.hex(":") if e.lladdr else None,
                 "state": e.state.value, "probes": e.probes, "queued": len(e.queue)}
                for e in self.neigh4.entries.values()] + [
                {"port": self.ports[e.ifindex].name if e.ifindex in self.ports else e.ifindex,
                 "addr": ip6_str(e.addr), "lladdr": e.lladdr.hex(":") if e.lladdr else None,
                 "state": e.state.value, "probes": e.probes, "queued": len(e.queue)}
                for e in self.neigh6.entries.values()],
            "neigh_stats": dict(self.neigh4.stats),
            "ndisc_stats": dict(self.neigh6.stats),
            "reasm6_queues": len(self.reasm6), "reasm6_mem": self.reasm6.mem,
            "neigh_table": {"entries": len(self.neigh4.entries),
                            "gc_entries": self.neigh4.gc_entries,
                            "gc_thresh3": self.neigh4.table.gc_thresh3,
                            "proxy_queue": len(self.arp_proxy_queue)},
            "reasm_queues": len(self.reasm), "reasm_mem": self.reasm.mem,
            "netfilter": self.nf.stats(),
        }
