"""ICMPv4 the router originates: errors (icmp_send) and echo replies (icmp_echo).

Follows net/ipv4/icmp.c __icmp_send() and RFC 1812 section 4.3.2:

* never about a packet that arrived as an L2 broadcast/multicast
  (``skb->pkt_type != PACKET_HOST``) or was addressed to an IP broadcast or
  multicast address (RFC 1812 4.3.2.7);
* only about the first fragment (offset 0);
* never about an ICMP error, and unknown ICMP types count as errors;
* at most 576 bytes in all (RFC 1812 4.3.2.3), quoting the offending header
  and as much of its data as fits;
* source: the offending packet's destination when that was one of the router's
  own addresses, otherwise the address the output route toward the offending
  source selects (icmp_errors_use_inbound_ifaddr = 0, the default);
* TOS ``(tos & IPTOS_TOS_MASK) | IPTOS_PREC_INTERNETCONTROL``, TTL 64, DF
  clear (the kernel's ICMP socket uses IP_PMTUDISC_DONT).

Rate limiting follows the kernel (core/ip/icmp_limit.py): the host-wide bucket
first, then the per-destination bucket, for the types in icmp_ratemask; a
limited message is counted (IcmpOutRateLimitGlobal / IcmpOutRateLimitHost) and
not sent.  Messages about our own looped-back packets are never limited.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...wire import icmpv4 as icmpw
from ...wire.checksum import inet_checksum
from ...wire.ipv4 import IP_OFFSET, IPPROTO_ICMP
from ..drops import DropReason
from ..netfilter.conntrack import attach as nf_ct_attach
from ..packet import PacketBuf, PktType
from ..route.fib import RouteType
from .output import ip_local_out

if TYPE_CHECKING:
    from ..router import Router

ICMP_MAX_ERROR_LEN = 576
IPTOS_TOS_MASK = 0x1E
IPTOS_PREC_INTERNETCONTROL = 0xC0

ICMP_TIMESTAMP, ICMP_TIMESTAMPREPLY = 13, 14
_OUT_COUNTER = {icmpw.ICMP_DEST_UNREACH: "IcmpOutDestUnreachs",
                icmpw.ICMP_TIME_EXCEEDED: "IcmpOutTimeExcds",
                icmpw.ICMP_PARAMETERPROB: "IcmpOutParmProbs",
                icmpw.ICMP_REDIRECT: "IcmpOutRedirects",
                icmpw.ICMP_ECHOREPLY: "IcmpOutEchoReps",
                ICMP_TIMESTAMPREPLY: "IcmpOutTimestampReps"}


def _is_bcast_or_mcast(r: Router, dst: int) -> bool:
    if dst >> 28 == 0xE or dst == 0xFFFFFFFF:
        return True
    return dst in r.bcast4


def icmp_send(r: Router, pkt: PacketBuf, icmp_type: int, code: int, info: int,
              now: int) -> bool:
    """Send an ICMP error about *pkt* (its data is the offending IPv4 packet).

    Returns True when an error was queued for output.
    """
    if r.trace is not None:
        r.note("icmp_send", type=icmp_type, code=code, info=info)
    data = pkt.data
    if pkt.pkt_type is not PktType.HOST:
        return _suppressed(r, "not PACKET_HOST")
    dst = int.from_bytes(data[16:20], "big")
    src = int.from_bytes(data[12:16], "big")
    if _is_bcast_or_mcast(r, dst):
        return _suppressed(r, "destination broadcast/multicast")
    if ((data[6] << 8) | data[7]) & IP_OFFSET:
        return _suppressed(r, "not the first fragment")
    ihl = (data[0] & 0x0F) << 2
    # "no ICMP error about an ICMP error"; a truncated ICMP header counts as one.
    if data[9] == IPPROTO_ICMP and (len(data) < ihl + 1 or icmpw.is_error_type(data[ihl])):
        return _suppressed(r, "about an ICMP error")
    if src == 0 or _is_bcast_or_mcast(r, src) or src >> 24 == 127:
        return _suppressed(r, "source unusable")
    limiter = r.icmp_limiter
    limited = not pkt.local_out and limiter.limited_type(icmp_type, code)
    if limited:
        if not limiter.global_allow(now):
            r.counters.snmp["IcmpOutRateLimitGlobal"] += 1
            return _suppressed(r, "icmp_msgs_per_sec")
        if src not in r.local4:
            if not limiter.peer_allow(src, now):
                r.counters.snmp["IcmpOutRateLimitHost"] += 1
                return _suppressed(r, "icmp_ratelimit")
            limiter.consume()
    saddr = dst if dst in r.local4 else None
    tos = (data[1] & IPTOS_TOS_MASK) | IPTOS_PREC_INTERNETCONTROL
    room = ICMP_MAX_ERROR_LEN - 20 - icmpw.ICMP_HLEN
    quoted = bytes(data[:room])
    rest = info & 0xFFFFFFFF
    if icmp_type == icmpw.ICMP_PARAMETERPROB:
        rest = (info & 0xFF) << 24
    msg = bytearray(icmpw.ICMP_HLEN + len(quoted))
    icmpw.IcmpRepr(icmp_type, code, rest, quoted).emit(msg)
    return _send_icmp(r, bytes(msg), src, saddr, tos, icmp_type, now,
                      nf_ct_attach(pkt) if pkt.ct is not None else None)


def _suppressed(r: Router, why: str) -> bool:
    if r.trace is not None:
        r.note("icmp_suppressed", why=why)
    return False


def icmp_echo_reply(r: Router, pkt: PacketBuf, icmp_off: int, now: int) -> bool:
    """icmp_echo(): answer an Echo Request addressed to us, from the pinged address."""
    data = pkt.data
    if r.trace is not None:
        r.note("icmp_echo_reply")
    msg = bytearray(data[icmp_off:])
    msg[0] = icmpw.ICMP_ECHOREPLY
    msg[2] = msg[3] = 0
    c = inet_checksum(msg)
    msg[2], msg[3] = c >> 8, c & 0xFF
    src = int.from_bytes(data[12:16], "big")
    dst = int.from_bytes(data[16:20], "big")
    return _send_icmp(r, bytes(msg), src, dst, data[1], icmpw.ICMP_ECHOREPLY, now)


def icmp_timestamp_reply(r: Router, pkt: PacketBuf, icmp_off: int, now: int) -> bool:
    """icmp_timestamp(): a Timestamp Reply (type 14, code 0) with the request's id and
    sequence, its originate timestamp and ours (ms since midnight UTC) as both receive
    and transmit; a request with less than the 4-byte originate field is an error."""
    data = pkt.data
    if len(data) - icmp_off < 12:
        r.counters.snmp["IcmpInErrors"] += 1
        r.drop(DropReason.ICMP_MALFORMED)
        return False
    ts = r.ms_of_day(now).to_bytes(4, "big")
    msg = bytearray(data[icmp_off:icmp_off + 12]) + ts + ts
    msg[0] = ICMP_TIMESTAMPREPLY
    msg[1] = msg[2] = msg[3] = 0
    c = inet_checksum(msg)
    msg[2], msg[3] = c >> 8, c & 0xFF
    src = int.from_bytes(data[12:16], "big")
    dst = int.from_bytes(data[16:20], "big")
    return _send_icmp(r, bytes(msg), src, dst, data[1], ICMP_TIMESTAMPREPLY, now)


def _send_icmp(r: Router, msg: bytes, daddr: int, saddr: int | None, tos: int,
               icmp_type: int, now: int, nfct: Any = None) -> bool:
    ok = ip_local_out(r, daddr, saddr, IPPROTO_ICMP, msg, now, tos=tos, nfct=nfct)
    if ok:
        r.counters.snmp["IcmpOutMsgs"] += 1
        name = _OUT_COUNTER.get(icmp_type)
        if name:
            r.counters.snmp[name] += 1
    return ok


def route_error_code(kind: RouteType | None) -> int | None:
    """ip_error(): the Destination Unreachable code for an input route result,
    or None for a silent drop (blackhole)."""
    if kind is None:
        return icmpw.ICMP_NET_UNREACH
    if kind is RouteType.UNREACHABLE:
        return icmpw.ICMP_HOST_UNREACH
    if kind is RouteType.PROHIBIT:
        return icmpw.ICMP_PKT_FILTERED
    return None
