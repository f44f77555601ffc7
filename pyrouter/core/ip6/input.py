"""ip6_input(): packets addressed to the router (net/ipv6/ip6_input.c ip6_input_finish,
ip6_protocol_deliver_rcu), walking the extension headers after Hop-by-Hop.

Per next header, in order:
* Destination Options: TLVs as exthdrs.parse_tlv (unknown options by their top bits);
* Routing: dropped on a multicast or not-PACKET_HOST packet; types 2, 3 and 4 (MIPv6,
  RPL, SRv6: not enabled) dropped whatever Segments Left says; others ignored when
  Segments Left is 0, else (type 0, deprecated by RFC 5095, and unknown types)
  Parameter Problem code 0 at the Routing Type field;
* Fragment: reassembled (reasm.py), then the walk goes on in the whole packet;
* Hop-by-Hop anywhere but first, ESP, AH and any other unknown protocol ->
  Parameter Problem code 1 pointing at the next-header field that names it
  (Ip6InUnknownProtos); No Next Header (59) -> consumed;
* ICMPv6 (icmpv6_rcv): checksum, then echo, NDISC (ndisc.py), MLD queries (mld.py),
  errors counted; Packet Too Big about our own packet lowers the path MTU (pmtu6.py);
* UDP: checksum (zero is invalid over IPv6), then Port Unreachable (code 4);
* TCP: checksum, then a reset (tcp_v6_send_reset), never for a RST.

Netfilter LOCAL_IN runs first (ip6_input), then ip6_input_finish walks the headers.

Invariant: every packet ends delivered, answered or counted under one DropReason.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from ...wire.checksum import ones_sum
from ...wire.ipv6 import (IPPROTO_DSTOPTS, IPPROTO_FRAGMENT, IPPROTO_ICMPV6, IPPROTO_NONE,
                          IPPROTO_ROUTING, IPPROTO_TCP6, IPPROTO_UDP6)
from ..drops import DropReason
from ..netfilter.hooks import Hook, nf_hook
from ..packet import PacketBuf, PktType
from .exthdrs import OK, parse_tlv
from .icmp6 import (ICMPV6_DEST_UNREACH, ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST,
                    ICMPV6_HDR_FIELD, ICMPV6_PARAMPROB, ICMPV6_PORT_UNREACH,
                    ICMPV6_UNK_NEXTHDR, icmpv6_echo_reply, icmpv6_send, tlv_failed)
from .output import ip6_local_out
from .mld import mld_query_rcv
from .ndisc import ndisc_rcv
from .pmtu6 import learn_from_pkt_toobig
from .sock6 import icmp6_for_us

if TYPE_CHECKING:
    from ..port import Port
    from ..router import Router

_TCP = struct.Struct("!HHIIBBHHH")
_IN = {1: "Icmp6InDestUnreachs", 2: "Icmp6InPktTooBigs", 3: "Icmp6InTimeExcds",
       4: "Icmp6InParmProblems", 128: "Icmp6InEchos", 129: "Icmp6InEchoReplies",
       133: "Icmp6InRouterSolicits", 134: "Icmp6InRouterAdvertisements",
       135: "Icmp6InNeighborSolicits", 136: "Icmp6InNeighborAdvertisements",
       137: "Icmp6InRedirects"}


def ip6_input(r: Router, pkt: PacketBuf, port: Port, now: int, mcast: bool = False,
              anycast: bool = False) -> None:
    """NF_HOOK(NF_INET_LOCAL_IN) then ip6_input_finish (as the kernel, before reassembly)."""
    hooks = r.nf.v6[1]
    if hooks and not nf_hook(r, hooks, Hook.LOCAL_IN, 6, pkt, port, None, now,
                             lambda t: ip6_input_finish(r, pkt, port, t, mcast, anycast)):
        return
    ip6_input_finish(r, pkt, port, now, mcast, anycast)


def ip6_input_finish(r: Router, pkt: PacketBuf, port: Port, now: int,
                     mcast: bool = False, anycast: bool = False) -> None:
    snmp = r.counters.snmp
    data = pkt.data
    nh_field = 6
    nexthdr = data[6]
    off = 40
    if nexthdr == 0:                       # Hop-by-Hop, already processed in ipv6_rcv
        nh_field = 40
        nexthdr = data[40]
        off = 40 + ((data[41] + 1) << 3)
    while True:
        if nexthdr == IPPROTO_DSTOPTS or nexthdr == IPPROTO_ROUTING:
            if off + 8 > len(data) or off + ((data[off + 1] + 1) << 3) > len(data):
                snmp["Ip6InHdrErrors"] += 1
                r.drop(DropReason.IP6_EXTHDR_BAD, port)
                return
            hdrlen = (data[off + 1] + 1) << 3
            if nexthdr == IPPROTO_DSTOPTS:
                v, code, ptr, _ = parse_tlv(data, off, hdrlen, False, mcast,
                                            r.sysctl6.max_dst_opts_number)
                if v != OK:
                    tlv_failed(r, pkt, port, v, code, ptr, now)
                    return
            else:                           # Routing header: ipv6_rthdr_rcv()
                rtype, segs = data[off + 2], data[off + 3]
                if mcast or pkt.pkt_type is not PktType.HOST:
                    snmp["Ip6InAddrErrors"] += 1
                    r.drop(DropReason.SOURCE_ROUTE, port)
                    return
                if rtype in (2, 3, 4):
                    # MIPv6 (type 2: we are no home agent), RPL (3) and SRv6 (4) are not
                    # enabled: dropped whatever Segments Left says, as the kernel.
                    snmp["Ip6InHdrErrors"] += 1
                    r.drop(DropReason.SOURCE_ROUTE, port)
                    return
                if segs:
                    snmp["Ip6InHdrErrors"] += 1
                    icmpv6_send(r, pkt, ICMPV6_PARAMPROB, ICMPV6_HDR_FIELD, off + 2, now)
                    r.drop(DropReason.SOURCE_ROUTE, port)
                    return
            nh_field = off
            nexthdr = data[off]
            off += hdrlen
            continue
        if nexthdr == IPPROTO_FRAGMENT:
            whole, noff = r.reasm6.add(r, pkt, off, nh_field, now)
            if r.trace is not None:
                r.note("ipv6_frag_rcv", complete=whole is not None, queues=len(r.reasm6))
            if whole is None:
                return
            if whole is pkt:               # atomic fragment
                nh_field, nexthdr, off = off, data[off], noff
                pkt.frag_max_size = len(data)        # IP6SKB_FRAGMENTED
                continue
            pkt, data = whole, whole.data
            nexthdr = data[nh_field]
            off = noff
            continue
        break
    snmp["Ip6InDelivers"] += 1
    if r.trace is not None:
        r.note("ip6_input", nexthdr=nexthdr, len=len(data), multicast=mcast)
    if nexthdr == IPPROTO_ICMPV6:
        icmpv6_rcv(r, pkt, port, off, now, mcast)
    elif nexthdr == IPPROTO_UDP6:
        udp6_rcv(r, pkt, off, now, mcast or anycast)
    elif nexthdr == IPPROTO_TCP6:
        tcp6_rcv(r, pkt, off, now, mcast or anycast)
    elif nexthdr == IPPROTO_NONE:
        pass
    else:
        snmp["Ip6InUnknownProtos"] += 1
        icmpv6_send(r, pkt, ICMPV6_PARAMPROB, ICMPV6_UNK_NEXTHDR, nh_field, now)
        r.drop(DropReason.PROTO_UNREACHABLE, port)


def _pseudo(data: bytearray, proto: int, length: int) -> int:
    return int.from_bytes(data[8:24], "big") + int.from_bytes(data[24:40], "big") \
        + proto + length


def icmpv6_rcv(r: Router, pkt: PacketBuf, port: Port, off: int, now: int, mcast: bool) -> None:
    snmp = r.counters.snmp
    snmp["Icmp6InMsgs"] += 1
    data = pkt.data
    n = len(data) - off
    if n < 4:
        snmp["Icmp6InErrors"] += 1
        r.drop(DropReason.ICMP_MALFORMED, port)
        return
    if ones_sum(memoryview(data)[off:], _pseudo(data, IPPROTO_ICMPV6, n)) != 0xFFFF:
        snmp["Icmp6InCsumErrors"] += 1
        snmp["Icmp6InErrors"] += 1
        r.drop(DropReason.ICMP_CSUM_ERROR, port)
        return
    t = data[off]
    name = _IN.get(t)
    if name:
        snmp[name] += 1
    if t == ICMPV6_ECHO_REQUEST:
        s = r.sysctl6
        if s.icmp_echo_ignore_all or (mcast and s.icmp_echo_ignore_multicast):
            r.drop(DropReason.ICMP_IGNORED, port)
            return
        icmpv6_echo_reply(r, pkt, off, now)
    elif 133 <= t <= 137:
        ndisc_rcv(r, pkt, port, off, now)
    elif t == 130:
        snmp["Icmp6InMLDQueries"] += 1
        mld_query_rcv(r, port.ifindex, data, off, now)
    elif t == ICMPV6_ECHO_REPLY:
        if not mcast:
            icmp6_for_us(r, pkt, off, now)     # our own ping (pyrouter ping fd00::2)
    elif t in (131, 132, 143):
        pass                               # other listeners' MLD reports
    elif t < 128:
        snmp["Icmp6InErrors"] += 1
        if not mcast:
            if t == 2:
                learn_from_pkt_toobig(r, pkt, off, now)
            icmp6_for_us(r, pkt, off, now)
    else:
        r.drop(DropReason.ICMP_IGNORED, port)


def udp6_rcv(r: Router, pkt: PacketBuf, off: int, now: int, mcast: bool) -> None:
    snmp = r.counters.snmp
    data = pkt.data
    n = len(data) - off
    ulen = (data[off + 4] << 8) | data[off + 5] if n >= 8 else 0
    if n < 8 or ulen < 8 or ulen > n:
        snmp["Udp6InErrors"] += 1
        r.drop(DropReason.UDP_MALFORMED)
        return
    if ones_sum(memoryview(data)[off:off + ulen], _pseudo(data, IPPROTO_UDP6, ulen)) != 0xFFFF \
            or not ((data[off + 6] << 8) | data[off + 7]):
        snmp["Udp6InCsumErrors"] += 1
        snmp["Udp6InErrors"] += 1
        r.drop(DropReason.UDP_CSUM_ERROR)
        return
    snmp["Udp6NoPorts"] += 1
    if not mcast:
        icmpv6_send(r, pkt, ICMPV6_DEST_UNREACH, ICMPV6_PORT_UNREACH, 0, now)
    r.drop(DropReason.UDP_NO_PORT)


def tcp6_rcv(r: Router, pkt: PacketBuf, off: int, now: int, mcast: bool) -> None:
    snmp = r.counters.snmp
    data = pkt.data
    n = len(data) - off
    snmp["TcpInSegs"] += 1
    if n < 20 or not 20 <= (data[off + 12] >> 4) * 4 <= n:
        snmp["TcpInErrs"] += 1
        r.drop(DropReason.TCP_MALFORMED)
        return
    if ones_sum(memoryview(data)[off:], _pseudo(data, IPPROTO_TCP6, n)) != 0xFFFF:
        snmp["TcpInCsumErrors"] += 1
        snmp["TcpInErrs"] += 1
        r.drop(DropReason.TCP_CSUM_ERROR)
        return
    if pkt.pkt_type is not PktType.HOST or mcast:
        r.drop(DropReason.PKT_NOT_HOST)
        return
    sport, dport, seq, ack, _doff, flags, _win, _csum, _urg = _TCP.unpack_from(data, off)
    r.drop(DropReason.TCP_NO_SOCKET)
    if flags & 0x04:
        return
    if flags & 0x10:
        rseq, rack, rflags = ack, 0, 0x04
    else:
        doff = (data[off + 12] >> 4) * 4
        seglen = n - doff + (1 if flags & 0x02 else 0) + (1 if flags & 0x01 else 0)
        rseq, rack, rflags = 0, (seq + seglen) & 0xFFFFFFFF, 0x14
    src = int.from_bytes(data[8:24], "big")
    dst = int.from_bytes(data[24:40], "big")
    seg = bytearray(20)
    _TCP.pack_into(seg, 0, dport, sport, rseq, rack, 5 << 4, rflags, 0, 0, 0)
    oif = pkt.iif if src >> 118 == 0x3FA else None
    if ip6_local_out(r, src, dst, IPPROTO_TCP6, bytes(seg), now, oif=oif):
        snmp["TcpOutRsts"] += 1


