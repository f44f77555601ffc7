"""ICMPv6 the router originates (net/ipv6/icmp.c icmp6_send, icmpv6_echo_reply; RFC 4443).

icmpv6_send(pkt, type, code, info):
* not about a packet to a multicast address or not addressed to us at L2, except
  Packet Too Big and Parameter Problem code 2 for an option whose top bits are 10
  (RFC 4443 2.4 e.3, e.4);
* not to an unspecified or multicast source;
* never about an ICMPv6 error, nor about a truncated ICMPv6 header
  (is_ineligible, walking the extension headers);
* rate limits: types in the ratemask (every error but Packet Too Big; the kernel's
  default "0-1,3-127") spend a token of the host-wide bucket shared with IPv4, then
  the per-destination bucket whose interval, icmp_ratelimit, is halved for every 32
  bits the route to the destination is shorter than /128 (icmpv6_xrlim_allow);
* source: the offending packet's destination when that is ours, else selected on the
  input port toward the offending source; hop limit 64, traffic class 0;
* at most 1280 bytes in all (IPV6_MIN_MTU), quoting as much of the packet as fits.

Invariant: returns whether a message was queued; never raises on packet contents.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...wire.icmpv6 import (ICMPV6_DEST_UNREACH, ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST,
                            ICMPV6_PARAMPROB, ICMPV6_PKT_TOOBIG, ICMPV6_TIME_EXCEED)
from ...wire.ipv6 import IPPROTO_ICMPV6, IPV6_MIN_MTU, is_multicast6
from ..netfilter.conntrack import attach as nf_ct_attach
from ..drops import DropReason
from ..packet import PacketBuf, PktType
from ..route.flow import FlowKey
from ..time import MILLISECOND
from .addrconf import ipv6_dev_get_saddr
from .exthdrs import PARAMPROB, skip_exthdr
from .output import ip6_local_out

if TYPE_CHECKING:
    from ..router import Router

ICMPV6_NOROUTE = 0
ICMPV6_ADM_PROHIBITED = 1
ICMPV6_NOT_NEIGHBOUR = 2          # "beyond scope of source address"
ICMPV6_ADDR_UNREACH = 3
ICMPV6_PORT_UNREACH = 4
ICMPV6_EXC_HOPLIMIT = 0
ICMPV6_EXC_FRAGTIME = 1
ICMPV6_HDR_FIELD = 0
ICMPV6_UNK_NEXTHDR = 1
ICMPV6_UNK_OPTION = 2
ICMPV6_HDR_INCOMP = 3

__all__ = ["ICMPV6_DEST_UNREACH", "ICMPV6_ECHO_REPLY", "ICMPV6_ECHO_REQUEST",
           "ICMPV6_PARAMPROB", "ICMPV6_PKT_TOOBIG", "ICMPV6_TIME_EXCEED", "icmpv6_send",
           "icmpv6_echo_reply", "send_icmp6"]

PEER_KEY6 = 1 << 128              # keeps IPv6 peers apart from IPv4 ones in the limiter

_OUT = {ICMPV6_DEST_UNREACH: "Icmp6OutDestUnreachs", ICMPV6_PKT_TOOBIG: "Icmp6OutPktTooBigs",
        ICMPV6_TIME_EXCEED: "Icmp6OutTimeExcds", ICMPV6_PARAMPROB: "Icmp6OutParmProblems",
        ICMPV6_ECHO_REPLY: "Icmp6OutEchoReplies", 133: "Icmp6OutRouterSolicits",
        134: "Icmp6OutRouterAdvertisements", 135: "Icmp6OutNeighborSolicits",
        136: "Icmp6OutNeighborAdvertisements", 137: "Icmp6OutRedirects"}


def _ineligible(data: bytearray) -> bool:
    """is_ineligible(): the packet is (or may be) an ICMPv6 error.  A fragment without
    the ICMPv6 type is eligible (RFC 8200 4.5: it cannot be known to be an error)."""
    frag: list[int] = []
    off, nexthdr = skip_exthdr(data, 40, data[6], frag)
    if off < 0:
        return False
    if nexthdr != IPPROTO_ICMPV6:
        return False
    if off >= len(data):
        return not (frag and frag[0])
    return data[off] < 128


def icmpv6_send(r: Router, pkt: PacketBuf, icmp_type: int, code: int, info: int,
                now: int) -> bool:
    if r.trace is not None:
        r.note("icmpv6_send", type=icmp_type, code=code, info=info)
    data = pkt.data
    if len(data) < 40:
        return False
    dst = int.from_bytes(data[24:40], "big")
    src = int.from_bytes(data[8:24], "big")
    saddr = dst if dst in r.local6 else None
    if is_multicast6(dst) or pkt.pkt_type is not PktType.HOST:
        if not (icmp_type == ICMPV6_PKT_TOOBIG or (icmp_type == ICMPV6_PARAMPROB
                                                  and code == ICMPV6_UNK_OPTION
                                                  and pkt.opt_unrec)):
            return _suppressed(r, "destination multicast or not PACKET_HOST")
        saddr = None
    if src == 0 or is_multicast6(src):
        return _suppressed(r, "source unspecified or multicast")
    if _ineligible(data):
        return _suppressed(r, "about an ICMPv6 error")
    limited = icmp_type < 128 and icmp_type != ICMPV6_PKT_TOOBIG and not pkt.local_out
    limiter = r.icmp_limiter
    if limited:
        if not limiter.global_allow(now):
            r.counters.snmp["Icmp6OutRateLimitGlobal"] += 1
            return _suppressed(r, "icmp_msgs_per_sec")
        if not _xrlim_allow(r, src, now):
            r.counters.snmp["Icmp6OutRateLimitHost"] += 1
            return _suppressed(r, "icmpv6 ratelimit")
        limiter.consume()
    room = IPV6_MIN_MTU - 40 - 8
    msg = bytearray(8) + data[:room]
    msg[0], msg[1] = icmp_type, code
    msg[4:8] = (info & 0xFFFFFFFF).to_bytes(4, "big")
    oif = pkt.iif if src >> 118 == 0x3FA else None
    if saddr is None:
        saddr = ipv6_dev_get_saddr(r, pkt.iif, src)
    return send_icmp6(r, bytes(msg), src, saddr, icmp_type, now, oif=oif,
                      nfct=nf_ct_attach(pkt) if pkt.ct is not None else None)


def tlv_failed(r: Router, pkt: PacketBuf, port: Any, verdict: int, code: int, ptr: int,
               now: int) -> None:
    """An options header (exthdrs.parse_tlv) said discard: counted, and answered with
    Parameter Problem when the option's rules ask for it."""
    r.counters.snmp["Ip6InHdrErrors"] += 1
    if verdict == PARAMPROB:
        pkt.opt_unrec = code == 2
        icmpv6_send(r, pkt, ICMPV6_PARAMPROB, code, ptr, now)
    r.drop(DropReason.IP6_EXTHDR_BAD, port)


def _xrlim_allow(r: Router, daddr: int, now: int) -> bool:
    tmo = r.sysctl6.icmp_ratelimit * MILLISECOND
    if tmo <= 0:
        return True
    route = r.fib.lookup(FlowKey(6, daddr, 0), r.route_usable)
    if route is not None and route.plen < 128:
        tmo >>= (128 - route.plen) >> 5
    return r.icmp_limiter.bucket(daddr | PEER_KEY6, now, tmo, 6 * tmo)


def _suppressed(r: Router, why: str) -> bool:
    if r.trace is not None:
        r.note("icmp_suppressed", why=why)
    return False


def send_icmp6(r: Router, msg: bytes, daddr: int, saddr: int | None, icmp_type: int,
               now: int, oif: int | None = None, hop_limit: int | None = None,
               tclass: int = 0, nfct: Any = None) -> bool:
    ok = ip6_local_out(r, daddr, saddr, IPPROTO_ICMPV6, msg, now, hop_limit=hop_limit,
                       oif=oif, tclass=tclass, nfct=nfct)
    if ok:
        snmp = r.counters.snmp
        snmp["Icmp6OutMsgs"] += 1
        if icmp_type < 128:
            snmp["Icmp6OutErrors"] += 1
        name = _OUT.get(icmp_type)
        if name:
            snmp[name] += 1
    return ok


def icmpv6_echo_reply(r: Router, pkt: PacketBuf, off: int, now: int) -> bool:
    """icmpv6_echo_reply(): from the pinged address when it is a unicast one of ours,
    else (multicast) from a source selected toward the sender; traffic class copied."""
    data = pkt.data
    src = int.from_bytes(data[8:24], "big")
    dst = int.from_bytes(data[24:40], "big")
    if r.trace is not None:
        r.note("icmpv6_echo_reply")
    msg = bytearray(data[off:])
    msg[0] = ICMPV6_ECHO_REPLY
    saddr = dst if dst in r.local6 else None
    oif = pkt.iif if src >> 118 == 0x3FA else None
    if saddr is None:
        saddr = ipv6_dev_get_saddr(r, pkt.iif, src)
    tclass = ((data[0] & 0x0F) << 4) | (data[1] >> 4)
    return send_icmp6(r, bytes(msg), src, saddr, ICMPV6_ECHO_REPLY, now, oif=oif,
                      tclass=tclass)
