"""ARP (RFC 826) as net/ipv4/arp.c arp_rcv()/arp_process() do it, with the kernel
defaults arp_ignore=0, arp_announce=0, arp_accept=0, arp_filter=0.

Receive (arp_rcv_frame), in the kernel's order:

* frames not addressed to us at L2 (PACKET_OTHERHOST) are dropped;
* shorter than 28 bytes, ar_hln != 6 or ar_pln != 4, ar_hrd not Ethernet (1) or
  IEEE 802 (6, accepted on Ethernet as the kernel does), ar_pro not IPv4, or an
  opcode other than request/reply: ``arp_malformed``;
* a multicast or loopback target (TPA), or a multicast sender hardware address
  (a stricter check than the kernel's, so the cache never holds one):
  ``arp_invalid_addr``;
* a DAD probe (sender IP 0.0.0.0) for one of our addresses is answered, and
  nothing is learned from it (RFC 5227);
* a sender claiming one of our addresses, or a martian sender (0/8, 127/8,
  multicast, 255.255.255.255): ip_route_input() fails, nothing is answered or
  learned (``martian_src``); so does a reverse-path failure (``rp_filter``);
* a request for any of the router's addresses (arp_ignore=0: any address on any
  port) is answered from this port's MAC, and the sender is learned STALE
  (neigh_event_ns: created if absent, override);
* proxy ARP (``Port.proxy_arp``, forwarding on): a request for an address
  routed (unicast) out of a *different* port is answered with this port's MAC
  after the sender is learned STALE: at once when the request was unicast to
  us or proxy_delay is 0, else after a random delay in [0, proxy_delay) through
  a bounded queue (pneigh_enqueue(); proxy_qlen, ``arp_proxy_queue_full``);
* any other request or reply only updates an existing entry (arp_accept=0):
  REACHABLE for a reply unicast to us, STALE otherwise; a different lladdr
  replaces the old one only after locktime, or for a gratuitous ARP.

Send: replies go to the requester's sender hardware address; solicitations are
broadcast while INCOMPLETE and unicast in PROBE (arp_solicit); gratuitous ARP
(arp_announce_port) is a broadcast request with sender = target = our address
and a zero target hardware address, as inetdev_send_gratuitous_arp() sends it.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from ...wire.addr import BROADCAST_MAC, ZERO_MAC, ip4_str
from ...wire.arp import ARP_LEN, ARPOP_REPLY, ARPOP_REQUEST
from ..actions import Event
from ..drops import DropReason
from ..packet import PktType
from ..route.fib import RouteType
from ..route.flow import FlowKey
from ..route.validate import EXDEV, fib_validate_source
from .neighbour import NeighbourEntry, NudState

if TYPE_CHECKING:
    from ..port import Port
    from ..router import Router

_ARP = struct.Struct("!HHBBH6sI6sI")
_ETH_ARP = b"\x08\x06"
_ARPHRD_ETHER, _ARPHRD_IEEE802 = 1, 6
PROXY_KEY = ("arp-proxy",)


def _martian_sender(sip: int) -> bool:
    """ip_route_input_slow()'s martian sources: multicast, limited broadcast, 0/8, 127/8."""
    top = sip >> 24
    return sip >> 28 == 0xE or sip == 0xFFFFFFFF or top == 0 or top == 127


def arp_rcv(r: Router, port: Port, frame: bytes, off: int, pkt_type: PktType,
            now: int) -> None:
    arp_process(r, port, frame, off, pkt_type, now, False)


def arp_process(r: Router, port: Port, frame: bytes, off: int, pkt_type: PktType,
                now: int, locally_enqueued: bool) -> None:
    if pkt_type is PktType.OTHERHOST:
        r.drop(DropReason.OTHERHOST, port)
        return
    if len(frame) - off < ARP_LEN:
        r.drop(DropReason.ARP_MALFORMED, port)
        return
    hrd, pro, hln, pln, op, sha, sip, tha, tip = _ARP.unpack_from(frame, off)
    if (hln != 6 or pln != 4 or pro != 0x0800 or (hrd != _ARPHRD_ETHER and hrd != _ARPHRD_IEEE802)
            or (op != ARPOP_REQUEST and op != ARPOP_REPLY)):
        r.drop(DropReason.ARP_MALFORMED, port)
        return
    if tip >> 28 == 0xE or tip >> 24 == 127 or sha[0] & 1:
        r.drop(DropReason.ARP_INVALID_ADDR, port)
        return
    snmp = r.counters.snmp
    if not locally_enqueued:
        snmp["ArpInRequests" if op == ARPOP_REQUEST else "ArpInReplies"] += 1
    if r.trace is not None:
        r.note("arp_rcv", op="request" if op == ARPOP_REQUEST else "reply",
               sender=ip4_str(sip), target=ip4_str(tip), sha=sha.hex(":"))
    neigh = r.neigh4
    ours = tip in r.local4
    if sip == 0:                                   # DAD probe (RFC 5227)
        snmp["ArpInDadProbes"] += 1
        if op == ARPOP_REQUEST and ours:
            arp_send(r, port, ARPOP_REPLY, dst_mac=sha, sip=tip, tha=sha, tip=0)
        return
    if sip in r.local4 or _martian_sender(sip):
        # Someone claims one of our addresses, or a martian sender:
        # ip_route_input() fails, so nothing is answered and nothing is learned.
        r.drop(DropReason.MARTIAN_SRC, port)
        return
    if op == ARPOP_REQUEST:
        if ours:
            if _source_rejected(r, port, sip, tip, 0):
                return
            neigh.update(port.ifindex, sip, sha, NudState.STALE, True, now, create=True)
            arp_send(r, port, ARPOP_REPLY, dst_mac=sha, sip=tip, tha=sha, tip=sip)
            return
        if port.proxy_arp and port.forwarding and tip not in r.bcast4:
            oif = _proxy_oif(r, port, sip, tip)
            if oif:
                if _source_rejected(r, port, sip, tip, oif):
                    return
                neigh.update(port.ifindex, sip, sha, NudState.STALE, True, now, create=True)
                delay = neigh.parms(port.ifindex).proxy_delay
                if locally_enqueued or pkt_type is PktType.HOST or delay == 0:
                    snmp["ArpOutProxyReplies"] += 1
                    arp_send(r, port, ARPOP_REPLY, dst_mac=sha, sip=tip, tha=sha, tip=sip)
                else:
                    _proxy_enqueue(r, port, frame, off, pkt_type, now, delay)
                return
    e = neigh.get(port.ifindex, sip)
    if e is None:
        if not ours:
            r.drop(DropReason.ARP_NOT_FOR_US, port)
        return
    # arp_is_garp(): tip == sip, and for a reply also tha == sha.
    is_garp = tip == sip and (op == ARPOP_REQUEST or tha == sha)
    if is_garp:
        snmp["ArpInGratuitous"] += 1
    state = NudState.REACHABLE if op == ARPOP_REPLY and pkt_type is PktType.HOST \
        else NudState.STALE
    override = now > e.updated + neigh.parms(port.ifindex).locktime or is_garp
    neigh.update(port.ifindex, sip, sha, state, override, now)


def _source_rejected(r: Router, port: Port, sip: int, tip: int, oif: int) -> bool:
    """fib_validate_source() as ip_route_input() runs it for the request."""
    v = fib_validate_source(r, port, sip, tip, 0, oif)
    if v >= 0:
        return False
    if v == EXDEV:
        r.counters.snmp["TcpExtIPReversePathFilter"] += 1
        r.drop(DropReason.RP_FILTER, port)
    else:
        r.drop(DropReason.MARTIAN_SRC, port)
    return True


def _proxy_oif(r: Router, port: Port, sip: int, tip: int) -> int:
    """arp_fwd_proxy(): the output port of a unicast route to *tip* when that is not
    the port the request came in on (0: not proxied)."""
    rt = r.fib.lookup(FlowKey(4, tip, sip, iif=port.ifindex), r.route_usable)
    if rt is None or rt.type is not RouteType.UNICAST:
        return 0
    oif = rt.oif
    if oif == port.ifindex or oif not in r.ports:
        return 0
    return oif


def _proxy_enqueue(r: Router, port: Port, frame: bytes, off: int, pkt_type: PktType,
                   now: int, delay: int) -> None:
    """pneigh_enqueue(): a random delay below proxy_delay; more than proxy_qlen waiting
    for this port and the request is dropped."""
    q = r.arp_proxy_queue
    limit = r.neigh4.parms(port.ifindex).proxy_qlen
    if sum(1 for item in q if item[1] == port.ifindex) > limit:
        r.drop(DropReason.ARP_PROXY_QUEUE_FULL, port)
        return
    when = now + int(r.rng.random() * delay)
    q.append((when, port.ifindex, bytes(frame[off:off + ARP_LEN]), pkt_type))
    nxt = min(item[0] for item in q)
    if r.arp_proxy_deadline is None or nxt < r.arp_proxy_deadline:
        r.arp_proxy_deadline = nxt
        r.timers.schedule(nxt, PROXY_KEY)


def arp_proxy_timer(r: Router, deadline: int, now: int) -> None:
    """neigh_proxy_process(): re-run arp_process() on every request that is due, marked
    LOCALLY_ENQUEUED so that it is answered at once (ports gone or down: dropped)."""
    if r.arp_proxy_deadline != deadline:
        return
    r.arp_proxy_deadline = None
    due = [item for item in r.arp_proxy_queue if item[0] <= now]
    r.arp_proxy_queue = [item for item in r.arp_proxy_queue if item[0] > now]
    for _when, ifindex, body, pkt_type in due:
        port = r.ports.get(ifindex)
        if port is None or not port.up:
            r.drop(DropReason.PORT_DOWN, port)
            continue
        arp_process(r, port, body, 0, pkt_type, now, True)
    if r.arp_proxy_queue:
        nxt = min(item[0] for item in r.arp_proxy_queue)
        r.arp_proxy_deadline = nxt
        r.timers.schedule(nxt, PROXY_KEY)


def arp_send(r: Router, port: Port, op: int, dst_mac: bytes, sip: int, tha: bytes,
             tip: int) -> None:
    frame = bytearray(14 + ARP_LEN)
    frame[0:6] = dst_mac
    frame[6:12] = port.mac
    frame[12:14] = _ETH_ARP
    _ARP.pack_into(frame, 14, 1, 0x0800, 6, 4, op, port.mac, sip, tha, tip)
    r.counters.snmp["ArpOutRequests" if op == ARPOP_REQUEST else "ArpOutReplies"] += 1
    r.xmit(port, bytes(frame))


def arp_announce_port(r: Router, port: Port, addrs: list[int] | None, why: str) -> None:
    """inetdev_send_gratuitous_arp(): one broadcast request per address of the port
    (or per address in *addrs*), sender = target = that address; logged as an Event."""
    sent = [a for a, _plen in port.addrs4 if addrs is None or a in addrs]
    if not sent or not port.up:
        return
    for a in sent:
        r.counters.snmp["ArpOutGratuitous"] += 1
        arp_send(r, port, ARPOP_REQUEST, dst_mac=BROADCAST_MAC, sip=a, tha=ZERO_MAC, tip=a)
    r.events.append(Event("arp.announce", {"port": port.name, "reason": why,
                                           "addresses": [ip4_str(a) for a in sent],
                                           "mac": port.mac.hex(":")}))


def arp_solicit(r: Router, e: NeighbourEntry, unicast: bool) -> None:
    """arp_solicit(): broadcast request while INCOMPLETE, unicast probe in PROBE.

    The sender address (arp_announce=0): the source of the newest queued packet
    when that is one of our addresses, else the port's address in the target's
    subnet (inet_select_addr).
    """
    port = r.ports.get(e.ifindex)
    if port is None:
        return
    sip = None
    if e.queue:
        src = int.from_bytes(e.queue[-1][0][12:16], "big")
        if src in r.local4:
            sip = src
    if sip is None:
        sip = port.primary_addr4(toward=e.addr)
    if sip is None:
        return
    dst = e.lladdr if unicast and e.lladdr else BROADCAST_MAC
    arp_send(r, port, ARPOP_REQUEST, dst_mac=dst, sip=sip, tha=ZERO_MAC, tip=e.addr)
