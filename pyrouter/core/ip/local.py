"""ip_local_deliver(): packets addressed to the router itself.

Fragments are reassembled first (IP4-12).  Then, by protocol:

* ICMP (icmp_rcv): bad checksum -> silent drop (ICMP4-10); type > 18 ->
  silent drop (ICMP4-11); echo request -> echo reply from the pinged address
  (ICMP4-13), except to broadcast (icmp_echo_ignore_broadcasts = 1); timestamp
  request -> timestamp reply (icmp_timestamp, same broadcast rule); echo
  replies and errors about the router's own probes go to ip/sock.py; other
  types are consumed (PMTU and redirect learning arrive with the routing issue).
* UDP: bad checksum -> silent drop; the DNS forwarder's queries and answers go to
  services/dns.py; otherwise no socket listens -> Port Unreachable (ICMP4-34) for
  unicast.
* TCP: no socket listens -> a reset, as tcp_v4_send_reset() (never for a RST,
  never to broadcast, nothing for frames not addressed to us at L2).
* IGMP: consumed (Linux always has the handler; group membership comes later).
* anything else -> Protocol Unreachable (ICMP4-33).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from ...wire import icmpv4 as icmpw
from ...wire import tcp as tcpw
from ...wire.checksum import inet_checksum, ones_sum
from ...wire.ipv4 import IP_MF, IP_OFFSET, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP
from ..drops import DropReason
from ..netfilter.hooks import Hook, nf_hook
from ..packet import PacketBuf, PktType
from ..services.dns import dns_udp_rcv
from .icmp import ICMP_TIMESTAMP, icmp_echo_reply, icmp_send, icmp_timestamp_reply
from .output import ip_local_out
from .pmtu import learn_from_frag_needed, learn_from_redirect
from .sock import icmp_for_us

if TYPE_CHECKING:
    from ..router import Router

IPPROTO_IGMP = 2
_TCP = struct.Struct("!HHIIBBHHH")


def ip_local_deliver(r: Router, pkt: PacketBuf, now: int, broadcast: bool = False) -> None:
    data = pkt.data
    if ((data[6] << 8) | data[7]) & (IP_MF | IP_OFFSET):
        whole = r.reasm.add(r, pkt, now)
        if r.trace is not None:
            r.note("ip_defrag", complete=whole is not None, queues=len(r.reasm))
        if whole is None:
            return
        pkt = whole
    hooks = r.nf.v4[1]
    if hooks and not nf_hook(r, hooks, Hook.LOCAL_IN, 4, pkt, r.ports.get(pkt.iif), None, now,
                             lambda t: ip_local_deliver_finish(r, pkt, t, broadcast)):
        return
    ip_local_deliver_finish(r, pkt, now, broadcast)


def ip_local_deliver_finish(r: Router, pkt: PacketBuf, now: int, broadcast: bool) -> None:
    data = pkt.data
    r.counters.snmp["IpInDelivers"] += 1
    proto = data[9]
    if r.trace is not None:
        r.note("ip_local_deliver", proto=proto, broadcast=broadcast, len=len(data))
    if proto == IPPROTO_ICMP:
        icmp_rcv(r, pkt, now, broadcast)
    elif proto == IPPROTO_UDP:
        udp_rcv(r, pkt, now, broadcast)
    elif proto == IPPROTO_TCP:
        tcp_rcv(r, pkt, now, broadcast)
    elif proto == IPPROTO_IGMP:
        pass                     # igmp_rcv(): always registered; no groups joined yet
    else:
        r.counters.snmp["IpInUnknownProtos"] += 1
        if not broadcast:
            icmp_send(r, pkt, icmpw.ICMP_DEST_UNREACH, icmpw.ICMP_PROT_UNREACH, 0, now)
        r.drop(DropReason.PROTO_UNREACHABLE)


def _pseudo(data: bytearray, proto: int, length: int) -> int:
    return int.from_bytes(data[12:16], "big") + int.from_bytes(data[16:20], "big") \
        + proto + length


def icmp_rcv(r: Router, pkt: PacketBuf, now: int, broadcast: bool) -> None:
    snmp = r.counters.snmp
    snmp["IcmpInMsgs"] += 1
    data, off = pkt.data, pkt.ihl
    if len(data) - off < icmpw.ICMP_HLEN:
        snmp["IcmpInErrors"] += 1
        r.drop(DropReason.ICMP_MALFORMED)
        return
    if ones_sum(data[off:]) != 0xFFFF:
        snmp["IcmpInCsumErrors"] += 1
        snmp["IcmpInErrors"] += 1
        r.drop(DropReason.ICMP_CSUM_ERROR)
        return
    t = data[off]
    if t > icmpw.NR_ICMP_TYPES:
        snmp["IcmpInErrors"] += 1
        r.drop(DropReason.ICMP_IGNORED)
        return
    if t == icmpw.ICMP_ECHO:
        snmp["IcmpInEchos"] += 1
        if r.sysctl.icmp_echo_ignore_all or (broadcast and r.sysctl.icmp_echo_ignore_broadcasts):
            r.drop(DropReason.BROADCAST_IGNORED if broadcast else DropReason.ICMP_IGNORED)
            return
        icmp_echo_reply(r, pkt, off, now)
    elif t == ICMP_TIMESTAMP:
        snmp["IcmpInTimestamps"] += 1
        if broadcast and r.sysctl.icmp_echo_ignore_broadcasts:
            r.drop(DropReason.BROADCAST_IGNORED)
            return
        icmp_timestamp_reply(r, pkt, off, now)
    else:
        if t == icmpw.ICMP_ECHOREPLY:
            snmp["IcmpInEchoReps"] += 1
        elif t == icmpw.ICMP_DEST_UNREACH:
            snmp["IcmpInDestUnreachs"] += 1
            if data[off + 1] == icmpw.ICMP_FRAG_NEEDED and not broadcast:
                learn_from_frag_needed(r, pkt, off, now)
        elif t == icmpw.ICMP_TIME_EXCEEDED:
            snmp["IcmpInTimeExcds"] += 1
        elif t == icmpw.ICMP_REDIRECT:
            snmp["IcmpInRedirects"] += 1
            if r.sysctl.accept_redirects and not broadcast:
                learn_from_redirect(r, pkt, off, now)
        if not broadcast:
            icmp_for_us(r, pkt, off, now)


def udp_rcv(r: Router, pkt: PacketBuf, now: int, broadcast: bool) -> None:
    snmp = r.counters.snmp
    data, off = pkt.data, pkt.ihl
    n = len(data) - off
    if n < 8:
        snmp["UdpInErrors"] += 1
        r.drop(DropReason.UDP_MALFORMED)
        return
    ulen = (data[off + 4] << 8) | data[off + 5]
    if ulen < 8 or ulen > n:
        snmp["UdpInErrors"] += 1
        r.drop(DropReason.UDP_MALFORMED)
        return
    csum = (data[off + 6] << 8) | data[off + 7]
    if csum and ones_sum(data[off:off + ulen], _pseudo(data, IPPROTO_UDP, ulen)) != 0xFFFF:
        snmp["UdpInCsumErrors"] += 1
        snmp["UdpInErrors"] += 1
        r.drop(DropReason.UDP_CSUM_ERROR)
        return
    if r.dns is not None and dns_udp_rcv(r, pkt, off, ulen, broadcast, now):
        snmp["UdpInDatagrams"] += 1
        return
    snmp["UdpNoPorts"] += 1
    if not broadcast:
        icmp_send(r, pkt, icmpw.ICMP_DEST_UNREACH, icmpw.ICMP_PORT_UNREACH, 0, now)
    r.drop(DropReason.UDP_NO_PORT)


def tcp_rcv(r: Router, pkt: PacketBuf, now: int, broadcast: bool) -> None:
    snmp = r.counters.snmp
    data, off = pkt.data, pkt.ihl
    n = len(data) - off
    snmp["TcpInSegs"] += 1
    if n < tcpw.TCP_HLEN or (data[off + 12] >> 4) * 4 < tcpw.TCP_HLEN \
            or (data[off + 12] >> 4) * 4 > n:
        snmp["TcpInErrs"] += 1
        r.drop(DropReason.TCP_MALFORMED)
        return
    if ones_sum(data[off:], _pseudo(data, IPPROTO_TCP, n)) != 0xFFFF:
        snmp["TcpInCsumErrors"] += 1
        snmp["TcpInErrs"] += 1
        r.drop(DropReason.TCP_CSUM_ERROR)
        return
    sport, dport, seq, ack, _doff, flags, _win, _csum, _urg = _TCP.unpack_from(data, off)
    if pkt.pkt_type is not PktType.HOST:
        r.drop(DropReason.PKT_NOT_HOST)              # tcp_v4_rcv(): only PACKET_HOST
        return
    r.drop(DropReason.TCP_NO_SOCKET)
    if flags & tcpw.RST or broadcast:
        return
    # tcp_v4_send_reset(): answer with seq = their ack if ACK was set, else RST|ACK.
    if flags & tcpw.ACK:
        rseq, rack, rflags = ack, 0, tcpw.RST
    else:
        doff = (data[off + 12] >> 4) * 4
        seglen = n - doff + (1 if flags & tcpw.SYN else 0) + (1 if flags & tcpw.FIN else 0)
        rseq, rack, rflags = 0, (seq + seglen) & 0xFFFFFFFF, tcpw.RST | tcpw.ACK
    src = int.from_bytes(data[12:16], "big")
    dst = int.from_bytes(data[16:20], "big")
    seg = bytearray(tcpw.TCP_HLEN)
    _TCP.pack_into(seg, 0, dport, sport, rseq, rack, 5 << 4, rflags, 0, 0, 0)
    c = inet_checksum(seg, dst + src + IPPROTO_TCP + tcpw.TCP_HLEN)
    seg[16], seg[17] = c >> 8, c & 0xFF
    if ip_local_out(r, src, dst, IPPROTO_TCP, bytes(seg), now, tos=data[1], df=True):
        snmp["TcpOutRsts"] += 1
