"""DHCPv4 server, one per interface with ``dhcp:`` configured (RFC 2131, options RFC 2132).

Where packets come in.  Clients without an address send from 0.0.0.0 to
255.255.255.255, which the IPv4 receive path treats as martian or as a broadcast
nobody listens to; the kernel's DHCP servers (dnsmasq, ISC dhcpd) read such packets
from packet sockets for that reason.  ``dhcp4_hook`` is the equivalent: called at
the top of ip_route_input (core/ip/rcv.py), before the martian checks, it takes UDP
datagrams to port 67 arriving on a DHCP-enabled port and addressed to the limited
broadcast, a subnet broadcast or one of the router's addresses, and answers them
here.  Everything else goes on through the normal path.

Protocol (RFC 2131 sections 3 and 4.3):
* clients are keyed by the client identifier (option 61) when present, else by
  chaddr (section 4.2);
* DISCOVER -> OFFER: the client's static address, else its current lease, else
  the requested address (option 50) if free, else the first free pool address
  from a position hashed from the client key (so a client tends to get the same
  address even without a lease record); the offer is held OFFER_HOLD;
* REQUEST in SELECTING (server identifier present): ours -> ACK if the requested
  address is the one offered (or free and allowed), else NAK; another server's ->
  our offer is withdrawn, no answer;
* REQUEST in INIT-REBOOT (requested address, ciaddr 0), RENEWING/REBINDING (ciaddr):
  ACK when the address is allowed for this client and not leased to another, NAK
  otherwise (the server is authoritative for its pools, as dnsmasq's
  --dhcp-authoritative);
* DECLINE marks the address unusable for one lease time; RELEASE frees it;
  INFORM gets an ACK with the configuration options and no lease (section 3.4);
* relayed requests (giaddr set, arriving on a DHCP-enabled port) are served from
  the pool of the DHCP-enabled interface whose subnet holds giaddr;
* replies (section 4.1): to giaddr port 67 through a relay; else to ciaddr
  (unicast, ARP as usual) when set; else broadcast when the client set the
  broadcast flag, and always for a NAK; else unicast to yiaddr at chaddr with no
  ARP (the client cannot answer ARP yet);
* options sent: 53, 54, 51, 58 (T1 = lease/2), 59 (T2 = 7/8 lease), 1, 28, 3, 6,
  15, 61 echoed (RFC 6842); configuration options in the order of the client's
  parameter request list (55) first.

Bounds: at most one lease per address of the pool (plus the static addresses),
and one address per client key, so the table never exceeds the pool.  Offers,
bound leases and declined addresses expire through the core's timer queue: one
timer per server (key ``("dhcp4", ifindex)``) at its earliest expiry, re-armed
lazily.  Malformed DHCP is dropped as ``dhcp_malformed``, a client no address
could be found for as ``dhcp_no_address``; no exception leaves this module.
Lease events (``dhcp.lease``, ``.expired``, ``.released``, ``.declined``,
``.no_address``) go through a per-server token bucket (20, then 1 per second).

Persistence is the shell's: ``export_leases`` / ``import_leases`` translate
between the core's ``now`` and wall-clock expiry times; ``Dhcp4Server.changes``
counts lease changes so the shell knows when to write the lease file.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...wire import dhcp4 as d
from ...wire.addr import ip4_str
from ...wire.checksum import inet_checksum, ones_sum
from ...wire.errors import MalformedError
from ...wire.ipv4 import IP_MF, IP_OFFSET, set_checksum
from ..actions import Event
from ..drops import DropReason
from ..ip.output import ip_local_out
from ..time import SECOND, Instant

if TYPE_CHECKING:
    from ..packet import PacketBuf
    from ..port import Port
    from ..router import Router

OFFER_HOLD = 60 * SECOND
EVENT_BURST = 20                     # lease events logged back to back ...
EVENT_EVERY = SECOND                 # ... then one per second
MAX_POOL = 65536
MAX_HOSTNAME = 63
IPPROTO_UDP = 17
LIMITED_BROADCAST = 0xFFFFFFFF
_CONFIG_OPTS = (d.OPT_SUBNET_MASK, d.OPT_BROADCAST, d.OPT_ROUTER, d.OPT_DNS, d.OPT_DOMAIN)


@dataclass(frozen=True, slots=True)
class Dhcp4Params:
    """One interface's DHCP configuration, as control/dhcp.py builds it."""

    server_addr: int                      # server identifier: our address in the subnet
    prefixlen: int
    pool_first: int
    pool_last: int
    lease_time: int = 3600                # seconds
    router: int | None = None             # option 3 (None: not sent)
    dns: tuple[int, ...] = ()             # option 6
    domain: str | None = None             # option 15
    static: tuple[tuple[bytes, int], ...] = ()   # (MAC, address)

    @property
    def mask(self) -> int:
        return (0xFFFFFFFF << (32 - self.prefixlen)) & 0xFFFFFFFF

    @property
    def broadcast(self) -> int:
        return (self.server_addr & self.mask) | (~self.mask & 0xFFFFFFFF)


@dataclass(slots=True)
class Lease:
    addr: int
    key: bytes                    # client identifier (b"\x01" + option 61) or b"\x00" + chaddr
    mac: bytes
    state: str                    # "offered", "bound" or "declined"
    expires: Instant
    hostname: str | None = None


@dataclass(slots=True)
class Dhcp4Server:
    ifindex: int
    params: Dhcp4Params
    leases: dict[int, Lease] = field(default_factory=dict)      # by address
    by_key: dict[bytes, int] = field(default_factory=dict)      # client key -> address
    static_by_mac: dict[bytes, int] = field(default_factory=dict)
    static_addrs: dict[int, bytes] = field(default_factory=dict)
    deadline: Instant | None = None
    changes: int = 0
    stats: dict[str, int] = field(default_factory=dict)
    ev_tokens: float = EVENT_BURST
    ev_stamp: Instant = 0
    ev_suppressed: int = 0

    def __post_init__(self) -> None:
        self.static_by_mac = dict(self.params.static)
        self.static_addrs = {a: m for m, a in self.params.static}
        self.stats = dict.fromkeys(
            ("discover", "offer", "request", "ack", "nak", "decline", "release", "inform"), 0)

    def event(self, r: Router, now: Instant, name: str, fields: dict[str, Any]) -> None:
        """Log-worthy lease changes, through a token bucket (clients drive them, so a
        flood of them must not flood the log); suppressed ones are counted in the next."""
        self.ev_tokens = min(EVENT_BURST, self.ev_tokens + (now - self.ev_stamp) / EVENT_EVERY)
        self.ev_stamp = now
        if self.ev_tokens < 1:
            self.ev_suppressed += 1
            return
        self.ev_tokens -= 1
        if self.ev_suppressed:
            fields = {**fields, "suppressed": self.ev_suppressed}
            self.ev_suppressed = 0
        r.events.append(Event(name, fields))

    # -- address policy ----------------------------------------------------------
    def allowed(self, addr: int, mac: bytes, local: set[int]) -> bool:
        """May this client (by MAC) hold *addr*?  Its static address only, if it has
        one; else a pool address that is nobody's static address and not ours."""
        p = self.params
        static = self.static_by_mac.get(mac)
        if static is not None:
            return addr == static
        return bool(p.pool_first <= addr <= p.pool_last and addr not in self.static_addrs
                    and addr not in local and addr != p.broadcast
                    and addr & ~p.mask & 0xFFFFFFFF)

    def free_for(self, addr: int, key: bytes) -> bool:
        lease = self.leases.get(addr)
        return lease is None or (lease.key == key and lease.state != "declined")

    def choose(self, key: bytes, mac: bytes, requested: int | None, local: set[int]) -> int | None:
        static = self.static_by_mac.get(mac)
        if static is not None:
            return static if self.free_for(static, key) else None
        cur = self.by_key.get(key)
        if cur is not None and self.allowed(cur, mac, local) and self.free_for(cur, key):
            return cur
        if requested is not None and self.allowed(requested, mac, local) \
                and self.free_for(requested, key):
            return requested
        p = self.params
        size = p.pool_last - p.pool_first + 1
        start = zlib.crc32(key) % size
        for i in range(size):
            a = p.pool_first + (start + i) % size
            if a not in self.leases and self.allowed(a, mac, local):
                return a
        return None

    # -- table changes -----------------------------------------------------------
    def put(self, r: Router, addr: int, key: bytes, mac: bytes, state: str, expires: Instant,
            hostname: str | None = None) -> Lease:
        old = self.by_key.get(key)
        if old is not None and old != addr:
            self.remove(old)
        other = self.leases.get(addr)
        if other is not None and other.key != key:
            self.by_key.pop(other.key, None)
        lease = Lease(addr, key, mac, state, expires, hostname)
        self.leases[addr] = lease
        if state != "declined":
            self.by_key[key] = addr
        else:
            self.by_key.pop(key, None)
        self.changes += 1
        self.arm(r, expires)
        return lease

    def remove(self, addr: int) -> None:
        lease = self.leases.pop(addr, None)
        if lease is not None:
            if self.by_key.get(lease.key) == addr:
                del self.by_key[lease.key]
            self.changes += 1

    def arm(self, r: Router, at: Instant) -> None:
        if self.deadline is None or at < self.deadline:
            self.deadline = at
            r.timers.schedule(at, ("dhcp4", self.ifindex))

    def expire(self, r: Router, now: Instant) -> None:
        for lease in [le for le in self.leases.values() if le.expires <= now]:
            self.remove(lease.addr)
            if lease.state == "bound":
                self.event(r, now, "dhcp.expired", {"dev": _dev(r, self.ifindex),
                                                    "addr": ip4_str(lease.addr),
                                                    "mac": lease.mac.hex(":")})
        self.deadline = None
        if self.leases:
            self.arm(r, min(le.expires for le in self.leases.values()))


def _dev(r: Router, ifindex: int) -> str:
    p = r.ports.get(ifindex)
    return p.name if p is not None else str(ifindex)


# -- receive ---------------------------------------------------------------------

def dhcp4_hook(r: Router, port: Port, pkt: PacketBuf, now: Instant) -> bool:
    """True when *pkt* was a DHCP request for this port's server (consumed: answered
    or dropped with a reason); False to let the normal receive path have it."""
    srv = r.dhcp4.get(port.ifindex)
    data = pkt.data
    if srv is None or data[9] != IPPROTO_UDP or ((data[6] << 8) | data[7]) & (IP_MF | IP_OFFSET):
        return False
    off = pkt.ihl
    if len(data) < off + 8 or data[off + 2] != 0 or data[off + 3] != d.DHCP_SERVER_PORT:
        return False
    dst = int.from_bytes(data[16:20], "big")
    if dst != LIMITED_BROADCAST and dst not in r.local4 and dst not in r.bcast4:
        return False                  # to another server: routed like any datagram
    snmp = r.counters.snmp
    snmp["IpInDelivers"] += 1
    ulen = (data[off + 4] << 8) | data[off + 5]
    if ulen < 8 or ulen > len(data) - off:
        snmp["UdpInErrors"] += 1
        r.drop(DropReason.UDP_MALFORMED, port)
        return True
    csum = (data[off + 6] << 8) | data[off + 7]
    if csum and ones_sum(data[off:off + ulen], int.from_bytes(data[12:16], "big") + dst
                         + IPPROTO_UDP + ulen) != 0xFFFF:
        snmp["UdpInCsumErrors"] += 1
        snmp["UdpInErrors"] += 1
        r.drop(DropReason.UDP_CSUM_ERROR, port)
        return True
    snmp["UdpInDatagrams"] += 1
    try:
        msg = d.DhcpMessage.parse(memoryview(data)[off + 8:off + ulen])
    except MalformedError:
        r.drop(DropReason.DHCP_MALFORMED, port)
        return True
    mtype = msg.msg_type
    if msg.op != d.BOOTREQUEST or mtype is None or msg.htype != 1 or msg.hlen != 6:
        # BOOTP without DHCP options, replies sent to a server, non-Ethernet clients.
        r.drop(DropReason.DHCP_MALFORMED, port)
        return True
    if r.trace is not None:
        r.note("dhcp4_rcv", dev=port.name, type=d.MESSAGE_TYPES.get(mtype, str(mtype)),
               xid=f"0x{msg.xid:08x}", chaddr=msg.hwaddr.hex(":"))
    handler = _HANDLERS.get(mtype)
    if handler is None:
        r.drop(DropReason.DHCP_MALFORMED, port)
        return True
    if msg.giaddr and not _in_subnet(srv, msg.giaddr):
        # Relayed: the pool is the one of the relay's subnet (RFC 2131 section 4.3.1).
        relayed = next((s for s in r.dhcp4.values() if _in_subnet(s, msg.giaddr)), None)
        if relayed is None:
            r.drop(DropReason.DHCP_NO_ADDRESS, port)
            return True
        srv = relayed
    handler(r, port, srv, msg, now)
    return True


def _in_subnet(srv: Dhcp4Server, addr: int) -> bool:
    p = srv.params
    return (addr ^ p.server_addr) & p.mask == 0


def _key(msg: d.DhcpMessage) -> bytes:
    cid = msg.options.get(d.OPT_CLIENT_ID)
    return b"\x01" + cid if cid else b"\x00" + msg.hwaddr


def _hostname(msg: d.DhcpMessage) -> str | None:
    v = msg.options.get(d.OPT_HOSTNAME)
    if not v:
        return None
    s = "".join(chr(c) for c in v[:MAX_HOSTNAME] if 0x21 <= c < 0x7F)
    return s or None


def _discover(r: Router, port: Port, srv: Dhcp4Server, msg: d.DhcpMessage, now: Instant) -> None:
    srv.stats["discover"] += 1
    key, mac = _key(msg), msg.hwaddr
    addr = srv.choose(key, mac, msg.opt_addr(d.OPT_REQUESTED_IP), r.local4)
    if addr is None:
        r.drop(DropReason.DHCP_NO_ADDRESS, port)
        srv.event(r, now, "dhcp.no_address", {"dev": port.name, "mac": mac.hex(":")})
        return
    lease = srv.leases.get(addr)
    if lease is not None and lease.key == key and lease.state == "bound":
        lease.mac = mac                               # keep the bound lease, offer it again
    else:
        srv.put(r, addr, key, mac, "offered", now + OFFER_HOLD, _hostname(msg))
    srv.stats["offer"] += 1
    _reply(r, port, srv, msg, d.DHCPOFFER, addr, now)


def _request(r: Router, port: Port, srv: Dhcp4Server, msg: d.DhcpMessage, now: Instant) -> None:
    srv.stats["request"] += 1
    key, mac = _key(msg), msg.hwaddr
    sid = msg.opt_addr(d.OPT_SERVER_ID)
    requested = msg.opt_addr(d.OPT_REQUESTED_IP)
    if sid is not None:                                          # SELECTING
        if sid != srv.params.server_addr:
            cur = srv.by_key.get(key)
            if cur is not None and srv.leases[cur].state == "offered":
                srv.remove(cur)                                  # it chose another server
            return
        addr = requested if requested is not None else msg.ciaddr
    else:                                       # INIT-REBOOT (requested) or RENEW/REBIND
        addr = requested if requested is not None and not msg.ciaddr else msg.ciaddr
    if not addr:
        r.drop(DropReason.DHCP_MALFORMED, port)
        return
    if not srv.allowed(addr, mac, r.local4) or not srv.free_for(addr, key):
        srv.stats["nak"] += 1
        if srv.by_key.get(key) == addr:
            srv.remove(addr)
        _reply(r, port, srv, msg, d.DHCPNAK, 0, now)
        return
    prev = srv.leases.get(addr)
    renewal = prev is not None and prev.state == "bound" and prev.key == key
    hostname = _hostname(msg) or (prev.hostname if prev is not None else None)
    srv.put(r, addr, key, mac, "bound", now + srv.params.lease_time * SECOND, hostname)
    srv.stats["ack"] += 1
    if not renewal:
        srv.event(r, now, "dhcp.lease", {"dev": port.name, "addr": ip4_str(addr),
                                          "mac": mac.hex(":"), "hostname": hostname,
                                          "lease_time": srv.params.lease_time})
    _reply(r, port, srv, msg, d.DHCPACK, addr, now)


def _decline(r: Router, port: Port, srv: Dhcp4Server, msg: d.DhcpMessage, now: Instant) -> None:
    srv.stats["decline"] += 1
    sid = msg.opt_addr(d.OPT_SERVER_ID)
    addr = msg.opt_addr(d.OPT_REQUESTED_IP)
    key = _key(msg)
    if sid != srv.params.server_addr or addr is None or srv.by_key.get(key) != addr:
        return                                    # not about a lease of ours to this client
    srv.put(r, addr, key, msg.hwaddr, "declined", now + srv.params.lease_time * SECOND)
    srv.event(r, now, "dhcp.declined", {"dev": port.name, "addr": ip4_str(addr),
                                        "mac": msg.hwaddr.hex(":")})


def _release(r: Router, port: Port, srv: Dhcp4Server, msg: d.DhcpMessage, now: Instant) -> None:
    srv.stats["release"] += 1
    if msg.opt_addr(d.OPT_SERVER_ID) not in (None, srv.params.server_addr):
        return
    lease = srv.leases.get(msg.ciaddr)
    if lease is not None and lease.key == _key(msg) and lease.state == "bound":
        srv.remove(msg.ciaddr)
        srv.event(r, now, "dhcp.released", {"dev": port.name, "addr": ip4_str(msg.ciaddr),
                                            "mac": msg.hwaddr.hex(":")})


def _inform(r: Router, port: Port, srv: Dhcp4Server, msg: d.DhcpMessage, now: Instant) -> None:
    srv.stats["inform"] += 1
    if not msg.ciaddr:
        r.drop(DropReason.DHCP_MALFORMED, port)
        return
    srv.stats["ack"] += 1
    _reply(r, port, srv, msg, d.DHCPACK, 0, now, inform=True)


_HANDLERS = {d.DHCPDISCOVER: _discover, d.DHCPREQUEST: _request, d.DHCPDECLINE: _decline,
             d.DHCPRELEASE: _release, d.DHCPINFORM: _inform}


# -- transmit ----------------------------------------------------------------------

def _options(srv: Dhcp4Server, req: d.DhcpMessage, mtype: int, inform: bool) -> dict[int, bytes]:
    p = srv.params
    opts: dict[int, bytes] = {d.OPT_MSG_TYPE: bytes((mtype,)),
                              d.OPT_SERVER_ID: d.u32_option(p.server_addr)}
    cid = req.options.get(d.OPT_CLIENT_ID)
    if mtype == d.DHCPNAK:
        if cid:
            opts[d.OPT_CLIENT_ID] = cid
        return opts
    if not inform:
        opts[d.OPT_LEASE_TIME] = d.u32_option(p.lease_time)
        opts[d.OPT_T1] = d.u32_option(p.lease_time // 2)
        opts[d.OPT_T2] = d.u32_option(p.lease_time * 7 // 8)
    have = {d.OPT_SUBNET_MASK: d.u32_option(p.mask), d.OPT_BROADCAST: d.u32_option(p.broadcast)}
    if p.router is not None:
        have[d.OPT_ROUTER] = d.u32_option(p.router)
    if p.dns:
        have[d.OPT_DNS] = d.addrs_option(p.dns)
    if p.domain:
        have[d.OPT_DOMAIN] = p.domain.encode("ascii")
    for code in req.options.get(d.OPT_PARAM_LIST, b""):
        if code in have:
            opts[code] = have.pop(code)
    for code in _CONFIG_OPTS:
        if code in have:
            opts[code] = have[code]
    if cid:
        opts[d.OPT_CLIENT_ID] = cid
    return opts


def _reply(r: Router, port: Port, srv: Dhcp4Server, req: d.DhcpMessage, mtype: int,
           yiaddr: int, now: Instant, inform: bool = False) -> None:
    """Build the reply and send it where RFC 2131 section 4.1 says."""
    nak = mtype == d.DHCPNAK
    msg = d.DhcpMessage(
        op=d.BOOTREPLY, htype=req.htype, hlen=req.hlen, xid=req.xid,
        flags=req.flags if not nak else req.flags | (d.BROADCAST_FLAG if req.giaddr else 0),
        ciaddr=req.ciaddr if (inform or mtype == d.DHCPACK) and not nak else 0,
        yiaddr=yiaddr, giaddr=req.giaddr, chaddr=req.chaddr,
        options=_options(srv, req, mtype, inform))
    payload = msg.emit()
    saddr = srv.params.server_addr
    if req.giaddr:
        _local_out(r, saddr, req.giaddr, d.DHCP_SERVER_PORT, payload, now)
    elif req.ciaddr and not nak:
        _local_out(r, saddr, req.ciaddr, d.DHCP_CLIENT_PORT, payload, now)
    elif nak or req.flags & d.BROADCAST_FLAG:
        _xmit_raw(r, port, saddr, LIMITED_BROADCAST, b"\xff" * 6, payload)
    else:
        _xmit_raw(r, port, saddr, yiaddr, req.hwaddr, payload)


def _udp(saddr: int, daddr: int, dport: int, payload: bytes) -> bytearray:
    n = 8 + len(payload)
    seg = bytearray(n)
    seg[0:8] = (d.DHCP_SERVER_PORT.to_bytes(2, "big") + dport.to_bytes(2, "big")
                + n.to_bytes(2, "big") + b"\0\0")
    seg[8:] = payload
    c = inet_checksum(seg, saddr + daddr + IPPROTO_UDP + n) or 0xFFFF
    seg[6], seg[7] = c >> 8, c & 0xFF
    return seg


def _local_out(r: Router, saddr: int, daddr: int, dport: int, payload: bytes,
               now: Instant) -> None:
    """To a client that has an address (or a relay): routed and ARPed as usual."""
    ip_local_out(r, daddr, saddr, IPPROTO_UDP, bytes(_udp(saddr, daddr, dport, payload)), now)


def _xmit_raw(r: Router, port: Port, saddr: int, daddr: int, dst_mac: bytes,
              payload: bytes) -> None:
    """Straight onto the port, no route lookup and no ARP: what a packet socket does."""
    seg = _udp(saddr, daddr, d.DHCP_CLIENT_PORT, payload)
    total = 20 + len(seg)
    r.ip_ident = (r.ip_ident + 1) & 0xFFFF
    ip = bytearray(20)
    ip[0], ip[1] = 0x45, 0x10                   # IPTOS_LOWDELAY, as dnsmasq
    ip[2:4] = total.to_bytes(2, "big")
    ip[4:6] = r.ip_ident.to_bytes(2, "big")
    ip[8], ip[9] = 64, IPPROTO_UDP
    ip[12:16] = saddr.to_bytes(4, "big")
    ip[16:20] = daddr.to_bytes(4, "big")
    set_checksum(ip, 0, 20)
    r.counters.snmp["IpOutRequests"] += 1
    if r.trace is not None:
        r.note("dhcp4_xmit", dev=port.name, dst=ip4_str(daddr), dst_mac=dst_mac.hex(":"))
    r.xmit(port, dst_mac + port.mac + b"\x08\x00" + ip + seg)


# -- timers, reload, persistence, operator view -----------------------------------

def dhcp4_timer(r: Router, ifindex: int, deadline: Instant, now: Instant) -> None:
    srv = r.dhcp4.get(ifindex)
    if srv is not None and srv.deadline == deadline:
        srv.expire(r, now)


def dhcp4_alive_timers(r: Router) -> set[tuple[Instant, Any]]:
    """The live timer entries, for Router._compact_timers."""
    return {(s.deadline, ("dhcp4", s.ifindex)) for s in r.dhcp4.values()
            if s.deadline is not None}


def dhcp4_adopt(r: Router, new: Router) -> None:
    """Reload: the new servers take the leases of the old ones on the same port that
    the new configuration still allows; timers move to the surviving router's queue."""
    old = r.dhcp4
    for idx, srv in new.dhcp4.items():
        prev = old.get(idx)
        if prev is None or r.ports.get(idx) is None or new.ports.get(idx) is None \
                or r.ports[idx].name != new.ports[idx].name:
            continue
        for lease in prev.leases.values():
            if lease.state == "declined" or srv.allowed(lease.addr, lease.mac, new.local4):
                srv.leases[lease.addr] = lease
                if lease.state != "declined":
                    srv.by_key[lease.key] = lease.addr
        srv.changes = prev.changes + 1
    r.dhcp4 = new.dhcp4
    for srv in r.dhcp4.values():
        srv.deadline = None
        if srv.leases:
            srv.arm(r, min(le.expires for le in srv.leases.values()))


def export_leases(r: Router, wall_offset_ns: int) -> list[dict[str, Any]]:
    """Bound leases with wall-clock expiry (ns since the epoch), for the lease file."""
    out = []
    for srv in r.dhcp4.values():
        for le in srv.leases.values():
            if le.state != "bound":
                continue
            out.append({"dev": _dev(r, srv.ifindex), "addr": ip4_str(le.addr),
                        "mac": le.mac.hex(":"), "client_id": le.key.hex(),
                        "hostname": le.hostname, "expires_ns": le.expires + wall_offset_ns})
    return out


def import_leases(r: Router, entries: list[Any], now: Instant, wall_offset_ns: int) -> int:
    """Load leases from the lease file; entries that are expired, malformed or no
    longer allowed by the configuration are skipped.  Returns how many were taken."""
    n = 0
    for e in entries:
        try:
            port = r.ports_by_name[e["dev"]]
            srv = r.dhcp4[port.ifindex]
            parts = [int(x) for x in str(e["addr"]).split(".")]
            if len(parts) != 4 or not all(0 <= x <= 255 for x in parts):
                continue
            addr = int.from_bytes(bytes(parts), "big")
            mac = bytes.fromhex(str(e["mac"]).replace(":", ""))
            key = bytes.fromhex(str(e["client_id"]))
            expires = int(e["expires_ns"]) - wall_offset_ns
            hostname = e.get("hostname")
        except (KeyError, ValueError, TypeError, AttributeError):
            continue
        if len(mac) != 6 or not key or expires <= now or addr in srv.leases \
                or key in srv.by_key or not srv.allowed(addr, mac, r.local4):
            continue
        srv.put(r, addr, key, mac, "bound", expires,
                hostname[:MAX_HOSTNAME] if isinstance(hostname, str) else None)
        n += 1
    return n


def dhcp4_show(r: Router, now: Instant) -> list[dict[str, Any]]:
    """``pyrouter show dhcp``: per server, its pool and leases (expiry in seconds)."""
    out = []
    for srv in r.dhcp4.values():
        p = srv.params
        out.append({
            "dev": _dev(r, srv.ifindex), "server": ip4_str(p.server_addr),
            "pool": [ip4_str(p.pool_first), ip4_str(p.pool_last)],
            "lease_time": p.lease_time, "stats": dict(srv.stats),
            "leases": [{"addr": ip4_str(le.addr), "mac": le.mac.hex(":"), "state": le.state,
                        "hostname": le.hostname, "client_id": le.key.hex(),
                        "expires": max(0, (le.expires - now) // SECOND),
                        "static": le.addr in srv.static_addrs}
                       for le in sorted(srv.leases.values(), key=lambda x: x.addr)]})
    return out
