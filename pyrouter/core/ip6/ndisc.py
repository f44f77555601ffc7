"""NDISC: IPv6 Neighbour Discovery for a router (net/ipv6/ndisc.c, RFC 4861).

Every ND message must arrive with hop limit 255 and code 0, unfragmented (RFC 6980),
and carry well-formed options (RFC 4861 6.1, 7.1.1, 7.1.2, 8.1); otherwise it is
dropped, counted.

* NS (ndisc_recv_ns): target not multicast; from :: only to a solicited-node group
  and without a source lladdr option (DAD).  For one of our addresses on this port:
  tentative + DAD NS from someone else -> our DAD failed; a DAD NS -> NA to all-nodes
  (S=0, O=1); otherwise the sender is learned STALE (created if absent when the NS
  was unicast or had an lladdr) and answered unicast with R=1, S=1, and O and the
  target lladdr option only when the NS was multicast (the kernel's inc_opt).
  A target in the port's proxy_ndp list (the kernel's pneigh entries) is answered as
  a proxy: O=0 (RFC 4861 7.2.8), R=0, and a multicast NS only after a random delay
  below proxy_delay (0.8 s, "MAX_ANYCAST_DELAY_TIME"), through a bounded queue.
* NA (ndisc_recv_na): target not multicast; S=1 to a multicast destination is
  invalid.  For one of our tentative addresses -> DAD failed; for a usable one ->
  ignored and counted (someone spoofs us).  Otherwise an existing entry is updated:
  S -> REACHABLE, else STALE; a different lladdr replaces the old only with O=1, and
  without it turns a REACHABLE entry STALE (RFC 4861 7.2.5, WEAK_OVERRIDE).
* RS: answered by the RA sender (ra.py) on ports with ``ra`` configured; the sender
  is learned STALE from its lladdr option.
* RA and Redirect: a forwarding router accepts neither (accept_ra needs 2,
  redirects are for hosts); validated, counted, dropped.

Sending: NS multicast to the solicited-node group while INCOMPLETE, unicast in
PROBE, from the queued packet's source when it is ours on the port (else the port's
link-local, as ndisc_send_ns), with our lladdr; DAD NS from :: with no option.  Redirects
(ndisc_send_redirect) only to an on-link source, for a link-local target or an
on-link destination, rate-limited per source, from our link-local, with the target
lladdr when known and as much of the packet as fits in 1280 bytes.

The NeighOwner adapter (``Ndisc6``) plugs this into the shared neighbour table.

Invariant: nothing here raises on packet contents; each discard has a reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...wire import ndisc as nd
from ...wire.ipv6 import ALL_NODES, SOLICITED_NODE_BASE, ip6_str, is_multicast6, solicited_node
from ..actions import Event
from ..drops import DropReason
from ..link.neighbour import VALID, NeighbourEntry, NudState, xmit_queued
from ..packet import PacketBuf
from ..route.flow import FlowKey
from ..time import SECOND
from .addrconf import PERMANENT, TENTATIVE, dad_failure, ipv6_dev_get_saddr
from .icmp6 import ICMPV6_ADDR_UNREACH, ICMPV6_DEST_UNREACH, PEER_KEY6, icmpv6_send, send_icmp6

if TYPE_CHECKING:
    from ..port import Port
    from ..router import Router


def ndisc_rcv(r: Router, pkt: PacketBuf, port: Port, off: int, now: int) -> None:
    data = pkt.data
    if pkt.frag_max_size:
        # RFC 6980 (ndisc_suppress_frag_ndisc): ND never arrives in fragments.
        r.drop(DropReason.NDISC_MALFORMED, port)
        return
    if data[7] != 255 or data[off + 1] != 0:
        r.drop(DropReason.NDISC_BAD_HOPLIMIT if data[7] != 255 else DropReason.NDISC_MALFORMED,
               port)
        return
    t = data[off]
    src = int.from_bytes(data[8:24], "big")
    dst = int.from_bytes(data[24:40], "big")
    fixed = {133: 8, 134: 16, 135: 24, 136: 24, 137: 40}[t]
    if len(data) - off < fixed:
        r.drop(DropReason.NDISC_MALFORMED, port)
        return
    try:
        opts = nd.parse_options(data, off + fixed, len(data))
    except nd.NdOptionError:
        r.drop(DropReason.NDISC_MALFORMED, port)
        return
    if t == 135:
        _recv_ns(r, pkt, port, off, src, dst, opts, now)
    elif t == 136:
        _recv_na(r, port, data, off, dst, opts, now)
    elif t == 133:
        _recv_rs(r, port, src, opts, now)
    elif t == 134:
        if src >> 118 != 0x3FA:
            r.drop(DropReason.NDISC_MALFORMED, port)
            return
        r.drop(DropReason.NDISC_RA_IGNORED, port)
    else:
        r.drop(DropReason.NDISC_REDIRECT_IGNORED, port)


def _learn(r: Router, port: Port, addr: int, lladdr: bytes | None, create: bool,
           now: int) -> bool:
    """neigh_event_ns(): a hint (STALE, override) from the sender's lladdr option.
    False when the table had no room (the kernel then sends no answer)."""
    if lladdr is None:
        return True               # the answer resolves the sender like any packet
    return r.neigh6.update(port.ifindex, addr, lladdr, NudState.STALE, True, now,
                           create=create) is not None or not create


def _recv_ns(r: Router, pkt: PacketBuf, port: Port, off: int, src: int, dst: int,
             opts: dict[int, list[bytes]], now: int) -> None:
    data = pkt.data
    target = int.from_bytes(data[off + 8:off + 24], "big")
    sll = nd.lladdr_option(opts, nd.ND_OPT_SOURCE_LL_ADDR)
    dad = src == 0
    inc = is_multicast6(dst)
    if is_multicast6(target) or (nd.ND_OPT_SOURCE_LL_ADDR in opts and sll is None):
        r.drop(DropReason.NDISC_MALFORMED, port)
        return
    if dad and (dst >> 24 != SOLICITED_NODE_BASE >> 24 or sll is not None):
        r.drop(DropReason.NDISC_MALFORMED, port)
        return
    if r.trace is not None:
        r.note("ndisc_recv_ns", target=ip6_str(target), src=ip6_str(src), dad=dad)
    dev = r.in6.get(port.ifindex)
    a = dev.find(target) if dev else None
    if a is None:
        if not dad and r.sysctl6.forwarding \
                and target in r.sysctl6.proxy_ndp.get(port.ifindex, ()):
            if not _learn(r, port, src, sll, not inc or sll is not None, now):
                return
            if inc:
                ndisc_proxy_enqueue(r, port.ifindex, src, target, now)
            else:
                ndisc_send_na(r, port, src, target, False, True, False, False, now)
            return
        r.drop(DropReason.NDISC_NOT_FOR_US, port)
        return
    if a.state == TENTATIVE:
        nonce = opts.get(nd.ND_OPT_NONCE)
        if dad and a.nonce and nonce and nonce[0][2:8] == a.nonce:
            r.drop(DropReason.IP6_ADDR_TENTATIVE, port)   # our own probe, looped back
            return
        if dad:
            dad_failure(r, port.ifindex, target, "NS for our tentative address")
        r.drop(DropReason.IP6_ADDR_TENTATIVE, port)
        return
    if a.state != PERMANENT:
        r.drop(DropReason.NDISC_NOT_FOR_US, port)
        return
    if dad:
        ndisc_send_na(r, port, ALL_NODES, target, True, False, True, True, now)
        return
    if not _learn(r, port, src, sll, not inc or sll is not None, now):
        return                                   # table full: no answer, as the kernel
    ndisc_send_na(r, port, src, target, True, True, inc, inc, now)


PROXY_DELAY = 8 * SECOND // 10
PROXY_QLEN = 64


def ndisc_proxy_enqueue(r: Router, ifindex: int, src: int, target: int, now: int) -> None:
    """pneigh_enqueue(): answer after a random delay; at most proxy_qlen waiting."""
    if len(r.ndisc_proxy_queue) >= PROXY_QLEN:
        r.drop(DropReason.NEIGH_QUEUE_FULL)
        return
    at = now + int(r.rng.random() * PROXY_DELAY)
    r.ndisc_proxy_queue.append((at, ifindex, src, target))
    r.timers.schedule(at, ("ndisc-proxy",))


def ndisc_proxy_timer(r: Router, now: int) -> None:
    due = [q for q in r.ndisc_proxy_queue if q[0] <= now]
    r.ndisc_proxy_queue = [q for q in r.ndisc_proxy_queue if q[0] > now]
    for _at, ifindex, src, target in due:
        port = r.ports.get(ifindex)
        if port is not None and target in r.sysctl6.proxy_ndp.get(ifindex, ()):
            ndisc_send_na(r, port, src, target, False, True, False, True, now)


def _recv_na(r: Router, port: Port, data: bytearray, off: int, dst: int,
             opts: dict[int, list[bytes]], now: int) -> None:
    flags = data[off + 4]
    target = int.from_bytes(data[off + 8:off + 24], "big")
    tll = nd.lladdr_option(opts, nd.ND_OPT_TARGET_LL_ADDR)
    if is_multicast6(target) or (is_multicast6(dst) and flags & nd.NA_SOLICITED) \
            or (nd.ND_OPT_TARGET_LL_ADDR in opts and tll is None):
        r.drop(DropReason.NDISC_MALFORMED, port)
        return
    if r.trace is not None:
        r.note("ndisc_recv_na", target=ip6_str(target), flags=f"0x{flags:02x}",
               lladdr=tll.hex(":") if tll else None)
    dev = r.in6.get(port.ifindex)
    a = dev.find(target) if dev else None
    if a is not None or target in r.local6:
        if a is not None and a.state == TENTATIVE:
            dad_failure(r, port.ifindex, target, "NA for our tentative address")
            r.drop(DropReason.IP6_ADDR_TENTATIVE, port)
            return
        r.events.append(Event("ndisc.na_for_our_address", {
            "dev": port.name, "target": ip6_str(target),
            "lladdr": tll.hex(":") if tll else None}))
        r.drop(DropReason.NDISC_NA_OURS, port)
        return
    e = r.neigh6.get(port.ifindex, target)
    if e is None:
        r.drop(DropReason.NDISC_NOT_FOR_US, port)
        return
    if tll is None:
        if e.state not in VALID or e.lladdr is None:
            r.drop(DropReason.NDISC_MALFORMED, port)
            return
        tll = e.lladdr
    state = NudState.REACHABLE if flags & nd.NA_SOLICITED else NudState.STALE
    r.neigh6.update(port.ifindex, target, tll, state, bool(flags & nd.NA_OVERRIDE), now,
                    weak_override=True)


def _recv_rs(r: Router, port: Port, src: int, opts: dict[int, list[bytes]], now: int) -> None:
    from .ra import ra_solicited  # noqa: PLC0415

    sll = nd.lladdr_option(opts, nd.ND_OPT_SOURCE_LL_ADDR)
    if (src == 0 and sll is not None) or (nd.ND_OPT_SOURCE_LL_ADDR in opts and sll is None):
        r.drop(DropReason.NDISC_MALFORMED, port)
        return
    if port.ifindex not in r.sysctl6.ra:
        r.drop(DropReason.NDISC_RS_IGNORED, port)
        return
    if src and sll is not None:
        r.neigh6.update(port.ifindex, src, sll, NudState.STALE, True, now, create=True)
    ra_solicited(r, port.ifindex, src, now)


# -- sending ---------------------------------------------------------------------------
def _nd_send(r: Router, port: Port, msg: bytes, daddr: int, saddr: int, now: int) -> None:
    send_icmp6(r, msg, daddr, saddr, msg[0], now, oif=port.ifindex, hop_limit=255)


def ndisc_send_ns(r: Router, port: Port, target: int, daddr: int, saddr: int, now: int,
                  dad: bool = False, nonce: bytes = b"") -> None:
    _nd_send(r, port, nd.build_ns(target, None if dad else port.mac, nonce), daddr,
             0 if dad else saddr, now)


def ndisc_send_na(r: Router, port: Port, daddr: int, target: int, router: bool,
                  solicited: bool, override: bool, inc_opt: bool, now: int) -> None:
    flags = (nd.NA_ROUTER if router else 0) | (nd.NA_SOLICITED if solicited else 0) | \
        (nd.NA_OVERRIDE if override else 0)
    saddr = target if target in r.local6 else ipv6_dev_get_saddr(r, port.ifindex, daddr)
    if saddr is None:
        return
    _nd_send(r, port, nd.build_na(target, flags, port.mac if inc_opt else None), daddr,
             saddr, now)


def ndisc_send_unsol_na(r: Router, port: Port, addr: int, now: int) -> None:
    ndisc_send_na(r, port, ALL_NODES, addr, True, False, True, True, now)


def ndisc_send_redirect(r: Router, pkt: PacketBuf, port: Port, target: int, now: int) -> None:
    data = pkt.data
    dst = int.from_bytes(data[24:40], "big")
    src = int.from_bytes(data[8:24], "big")
    if target != dst and target >> 118 != 0x3FA:
        return                    # "target address is not link-local unicast"
    dev = r.in6.get(port.ifindex)
    ll = dev.linklocal() if dev else None
    if ll is None:
        return
    back = r.fib.lookup(FlowKey(6, src, 0), r.route_usable)
    if src >> 118 != 0x3FA and (back is None or back.gateway is not None
                                or back.oif != port.ifindex):
        return                    # "destination is not a neighbour"
    if not r.icmp_limiter.bucket(src | PEER_KEY6, now, 10**9, 6 * 10**9):   # shared peer
        return
    e = r.neigh6.get(port.ifindex, target)
    tll = e.lladdr if e is not None and e.state in VALID else None
    room = 1280 - 40 - 40 - (8 if tll else 0) - 8
    msg = nd.build_redirect(target, dst, tll, bytes(data[:max(0, room)]))
    if r.trace is not None:
        r.note("ndisc_send_redirect", target=ip6_str(target), dst=ip6_str(dst))
    _nd_send(r, port, msg, src, ll, now)


class Ndisc6:
    """NeighOwner for the IPv6 table: NS to solicit, Address Unreachable on failure."""

    def __init__(self, r: Router) -> None:
        self.r = r

    def neigh_solicit(self, entry: NeighbourEntry, unicast: bool, now: int) -> None:
        r = self.r
        port = r.ports.get(entry.ifindex)
        if port is None:
            return
        saddr = None
        if entry.queue:
            s = int.from_bytes(entry.queue[-1][0][8:24], "big")
            dev = r.in6.get(port.ifindex)
            if dev is not None and (a := dev.find(s)) is not None and a.state == PERMANENT:
                saddr = s
        if saddr is None:
            # ndisc_send_ns() without a source: the port's link-local (ipv6_get_lladdr).
            dev = r.in6.get(port.ifindex)
            saddr = dev.linklocal() if dev else None
        if saddr is None:
            return
        if unicast and entry.lladdr:
            daddr = entry.addr
        else:
            daddr = solicited_node(entry.addr)
        ndisc_send_ns(r, port, entry.addr, daddr, saddr, now)

    def neigh_resolved(self, entry: NeighbourEntry, queued: list[tuple[bytes, Any]]) -> None:
        xmit_queued(self.r, entry, b"\x86\xdd", queued)

    def neigh_failed(self, entry: NeighbourEntry, queued: list[tuple[bytes, Any]],
                     now: int) -> None:
        """ndisc_error_report(): Address Unreachable for each queued packet."""
        r = self.r
        if queued:
            r.events.append(Event("neigh.failed", {
                "ifindex": entry.ifindex, "addr": ip6_str(entry.addr), "queued": len(queued)}))
        for l3, ctx in queued:
            r.drop(DropReason.NEIGH_FAILED)
            if isinstance(ctx, PacketBuf) and not ctx.local_out:
                err = PacketBuf(bytearray(l3), iif=ctx.iif, pkt_type=ctx.pkt_type,
                                local_out=ctx.local_out)
                icmpv6_send(r, err, ICMPV6_DEST_UNREACH, ICMPV6_ADDR_UNREACH, 0, now)

    def neigh_dropped(self, entry: NeighbourEntry | None, why: str) -> None:
        self.r.neigh_dropped(entry, why)

    def neigh_changed(self) -> None:
        self.r.fwd_cache.clear()
