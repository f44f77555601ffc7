"""The reject statement's senders (net/ipv4/netfilter/nf_reject_ipv4.c, nf_reject_ipv6.c).

* ICMP / ICMPv6 unreachable: the router's own icmp_send / icmpv6_send about the packet
  (so the usual suppression rules and rate limits apply, as nf_send_unreach calls
  icmp_send in the kernel);
* TCP reset (nf_send_reset): from the packet's destination to its source, ports
  swapped; if the segment had ACK: seq = its ack, flags RST; otherwise seq 0,
  ack = seq + SYN + FIN + payload length, flags RST|ACK; never about a RST or a
  non-first fragment; TTL 64, DF set (nf_reject_iphdr_put), out through LOCAL_OUT,
  carrying the packet's conntrack entry as RELATED (nf_ct_attach).

Type names follow nft: icmp (net-, host-, prot-, port-unreachable, net-, host-,
admin-prohibited), icmpv6 (no-route, admin-prohibited, addr-unreachable,
port-unreachable, policy-fail, reject-route), icmpx (port-unreachable,
admin-prohibited, no-route, host-unreachable: mapped per family).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from ...wire.checksum import inet_checksum
from .conntrack import attach

if TYPE_CHECKING:
    from ..packet import PacketBuf
    from ..router import Router

ICMP_CODES = {"net-unreachable": 0, "host-unreachable": 1, "prot-unreachable": 2,
              "port-unreachable": 3, "net-prohibited": 9, "host-prohibited": 10,
              "admin-prohibited": 13}
ICMPV6_CODES = {"no-route": 0, "admin-prohibited": 1, "addr-unreachable": 3,
                "port-unreachable": 4, "policy-fail": 5, "reject-route": 6}
ICMPX = {"port-unreachable": (3, 4), "admin-prohibited": (13, 1), "no-route": (0, 0),
         "host-unreachable": (1, 3)}
_TCP = struct.Struct("!HHIIBBHHH")


def send_unreach(r: Router, pkt: PacketBuf, pf: int, code: int, now: int) -> None:
    if pf == 4:
        from ..ip.icmp import icmp_send  # noqa: PLC0415 (ip imports netfilter.hooks)

        icmp_send(r, pkt, 3, code, 0, now)
    else:
        from ..ip6.icmp6 import icmpv6_send  # noqa: PLC0415

        icmpv6_send(r, pkt, 1, code, 0, now)


def send_reset(r: Router, pkt: PacketBuf, pf: int, l4proto: int, thoff: int, now: int) -> None:
    d = pkt.data
    if l4proto != 6 or thoff < 0 or thoff + 20 > len(d):
        return
    sport, dport, seq, ack, doff, flags, _w, _c, _u = _TCP.unpack_from(d, thoff)
    if flags & 0x04:
        return
    if flags & 0x10:
        rseq, rack, rflags = ack, 0, 0x04
    else:
        hl = (doff >> 4) << 2
        seglen = len(d) - thoff - hl + (1 if flags & 0x02 else 0) + (1 if flags & 0x01 else 0)
        rseq, rack, rflags = 0, (seq + seglen) & 0xFFFFFFFF, 0x14
    seg = bytearray(20)
    _TCP.pack_into(seg, 0, dport, sport, rseq, rack, 5 << 4, rflags, 0, 0, 0)
    # nf_ct_attach(): the reset belongs to the packet's connection, RELATED (reply way).
    nfct = attach(pkt)
    if pf == 4:
        from ..ip.output import ip_local_out  # noqa: PLC0415

        src = int.from_bytes(d[12:16], "big")
        dst = int.from_bytes(d[16:20], "big")
        c = inet_checksum(seg, dst + src + 6 + 20)
        seg[16], seg[17] = c >> 8, c & 0xFF
        if ip_local_out(r, src, dst, 6, bytes(seg), now, ttl=64, df=True, nfct=nfct):
            r.counters.snmp["TcpOutRsts"] += 1
    else:
        from ..ip6.output import ip6_local_out  # noqa: PLC0415

        src = int.from_bytes(d[8:24], "big")
        dst = int.from_bytes(d[24:40], "big")
        oif = pkt.iif if src >> 118 == 0x3FA else None
        if ip6_local_out(r, src, dst, 6, bytes(seg), now, hop_limit=64, oif=oif, nfct=nfct):
            r.counters.snmp["TcpOutRsts"] += 1
