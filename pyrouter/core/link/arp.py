"""ARP (RFC 826) as net/ipv4/arp.c arp_process() does it, with the kernel defaults
arp_ignore=0, arp_announce=0, arp_accept=0.

* Only Ethernet/IPv4 ARP, requests and replies; frames not addressed to us at
  L2 (PACKET_OTHERHOST) are dropped; multicast or loopback sender/target
  addresses are ignored, and so is a sender claiming one of our addresses.
* A DAD probe (sender IP 0.0.0.0) for one of our addresses is answered, and
  nothing is learned from it.
* A request for any of the router's addresses (arp_ignore=0: any address on
  any port) is answered from this port's MAC, and the sender is learned as
  STALE (neigh_event_ns: created if absent, override).
* Any other request or reply only updates an existing entry (arp_accept=0):
  REACHABLE for a reply unicast to us, STALE otherwise; a different lladdr
  replaces the old one only after locktime, or for a gratuitous ARP.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from ...wire.addr import BROADCAST_MAC, ZERO_MAC, ip4_str
from ...wire.arp import ARP_LEN, ARPOP_REPLY, ARPOP_REQUEST
from ..drops import DropReason
from ..packet import PktType
from .neighbour import NeighbourEntry, NudState

if TYPE_CHECKING:
    from ..port import Port
    from ..router import Router

_ARP = struct.Struct("!HHBBH6sI6sI")
_ARP_HDR = b"\x00\x01\x08\x00\x06\x04"
_ETH_ARP = b"\x08\x06"


def arp_rcv(r: Router, port: Port, frame: bytes, off: int, pkt_type: PktType,
            now: int) -> None:
    if pkt_type is PktType.OTHERHOST:
        r.drop(DropReason.OTHERHOST, port)
        return
    if len(frame) - off < ARP_LEN or frame[off:off + 6] != _ARP_HDR:
        r.drop(DropReason.ARP_MALFORMED, port)
        return
    _h, _p, _hl, _pl, op, sha, sip, _tha, tip = _ARP.unpack_from(frame, off)
    if op != ARPOP_REQUEST and op != ARPOP_REPLY:
        r.drop(DropReason.ARP_MALFORMED, port)
        return
    if sip >> 28 == 0xE or tip >> 28 == 0xE or tip >> 24 == 127 or sha[0] & 1:
        r.drop(DropReason.ARP_MALFORMED, port)
        return
    snmp = r.counters.snmp
    snmp["ArpInRequests" if op == ARPOP_REQUEST else "ArpInReplies"] += 1
    if r.trace is not None:
        r.note("arp_rcv", op="request" if op == ARPOP_REQUEST else "reply",
               sender=ip4_str(sip), target=ip4_str(tip), sha=sha.hex(":"))
    if sip in r.local4:
        # Someone claims one of our addresses: ip_route_input() fails on the
        # martian source, so nothing is answered and nothing is learned.
        r.drop(DropReason.MARTIAN_SRC, port)
        return
    ours = tip in r.local4
    if sip == 0:                                   # DAD probe (RFC 5227)
        if op == ARPOP_REQUEST and ours:
            arp_send(r, port, ARPOP_REPLY, dst_mac=sha, sip=tip, tha=sha, tip=0)
        return
    if op == ARPOP_REQUEST and ours:
        r.neigh4.update(port.ifindex, sip, sha, NudState.STALE, True, now, create=True)
        arp_send(r, port, ARPOP_REPLY, dst_mac=sha, sip=tip, tha=sha, tip=sip)
        return
    e = r.neigh4.get(port.ifindex, sip)
    if e is None:
        if not ours:
            r.drop(DropReason.ARP_NOT_FOR_US, port)
        return
    is_garp = tip == sip
    state = NudState.REACHABLE if op == ARPOP_REPLY and pkt_type is PktType.HOST \
        else NudState.STALE
    override = now >= e.updated + r.neigh4.params.locktime or is_garp
    r.neigh4.update(port.ifindex, sip, sha, state, override, now)


def arp_send(r: Router, port: Port, op: int, dst_mac: bytes, sip: int, tha: bytes,
             tip: int) -> None:
    frame = bytearray(14 + ARP_LEN)
    frame[0:6] = dst_mac
    frame[6:12] = port.mac
    frame[12:14] = _ETH_ARP
    _ARP.pack_into(frame, 14, 1, 0x0800, 6, 4, op, port.mac, sip, tha, tip)
    r.counters.snmp["ArpOutRequests" if op == ARPOP_REQUEST else "ArpOutReplies"] += 1
    r.xmit(port, bytes(frame))


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
