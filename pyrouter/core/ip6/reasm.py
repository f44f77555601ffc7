"""IPv6 reassembly for packets addressed to the router (net/ipv6/reassembly.c, RFC 8200 4.5).

Queues are keyed by (source, destination, identification).  Checks, as
ipv6_frag_rcv()/ip6_frag_queue():
* a fragment that is both first and last (an atomic fragment) is processed as a
  whole packet (RFC 6946);
* the first fragment must hold the whole header chain and the upper-layer header
  (RFC 7112; TCP 20, UDP 8, ICMPv6 8 bytes) -> else Parameter Problem code 3;
* an end past 65535 -> Parameter Problem code 0 at the Fragment Offset field;
* a non-last fragment whose length is not a multiple of 8 -> Parameter Problem
  code 0 pointing at the Payload Length field;
* a fragment without data, or any overlap, drops the whole datagram (RFC 5722); a
  pure duplicate is ignored.
After ip6frag_time (60 s) an incomplete queue is freed and, if its first fragment
was seen, Time Exceeded code 1 quotes it.  Memory is bounded like IPv4's (4 MiB
high, 3 MiB low threshold, oldest evicted first).

Invariant: ``mem`` is the summed payload bytes plus per-fragment overhead of all
queues; fragments of a queue never overlap.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..drops import DropReason
from ..packet import PacketBuf
from ..time import SECOND
from .exthdrs import skip_exthdr
from .icmp6 import (ICMPV6_EXC_FRAGTIME, ICMPV6_HDR_FIELD, ICMPV6_HDR_INCOMP, ICMPV6_PARAMPROB,
                    ICMPV6_TIME_EXCEED, icmpv6_send)

if TYPE_CHECKING:
    from ..router import Router

HIGH_THRESH = 4 * 1024 * 1024
LOW_THRESH = 3 * 1024 * 1024
FRAG_OVERHEAD = 256
_MIN_L4 = {6: 20, 17: 8, 58: 8}


@dataclass(slots=True)
class Frag6Queue:
    key: tuple[int, int, int]
    deadline: int
    iif: int
    frags: list[tuple[int, bytes]] = field(default_factory=list)
    first: PacketBuf | None = None
    unfrag: bytes = b""              # header + headers before the Fragment header
    nh_field: int = 6                # offset of the nexthdr byte naming the Fragment header
    nexthdr: int = 0
    len: int = 0
    last_in: bool = False
    mem: int = 0


class Reassembler6:
    def __init__(self) -> None:
        self.queues: OrderedDict[tuple[int, int, int], Frag6Queue] = OrderedDict()
        self.mem = 0

    def __len__(self) -> int:
        return len(self.queues)

    def _free(self, q: Frag6Queue) -> None:
        if self.queues.pop(q.key, None) is not None:
            self.mem -= q.mem

    def add(self, r: Router, pkt: PacketBuf, fh: int, nh_field: int,
            now: int) -> tuple[PacketBuf | None, int]:
        """ipv6_frag_rcv() for the Fragment header at *fh*: (whole packet, offset of
        the header that followed the Fragment header) once complete, else (None, 0).
        Errors are answered and counted here."""
        snmp = r.counters.snmp
        data = pkt.data
        if fh + 8 > len(data):
            snmp["Ip6InHdrErrors"] += 1
            r.drop(DropReason.IP6_EXTHDR_BAD)
            return None, 0
        nexthdr = data[fh]
        fo = (data[fh + 2] << 8) | data[fh + 3]
        offset = fo & 0xFFF8
        more = fo & 1
        ident = struct.unpack_from("!I", data, fh + 4)[0]
        if offset == 0 and not more:
            # Atomic fragment: the packet as if the Fragment header were not there.
            return pkt, fh + 8
        snmp["Ip6ReasmReqds"] += 1
        payload = bytes(data[fh + 8:])
        end = offset + len(payload)
        if offset == 0:
            # RFC 7112, checked first (ipv6_frag_rcv): the whole header chain and the
            # upper-layer header in the first fragment.
            off, l4 = skip_exthdr(data, fh + 8, nexthdr)
            if off < 0 or off + _MIN_L4.get(l4, 1) > len(data):
                snmp["Ip6InHdrErrors"] += 1
                icmpv6_send(r, pkt, ICMPV6_PARAMPROB, ICMPV6_HDR_INCOMP, 0, now)
                r.drop(DropReason.IP6_EXTHDR_BAD)
                return None, 0
        if end > 65535:                             # ip6_frag_queue(), in its order
            snmp["Ip6InHdrErrors"] += 1
            icmpv6_send(r, pkt, ICMPV6_PARAMPROB, ICMPV6_HDR_FIELD, fh + 2, now)
            r.drop(DropReason.REASM_TOO_BIG)
            return None, 0
        if more and len(payload) & 7:
            snmp["Ip6InHdrErrors"] += 1
            icmpv6_send(r, pkt, ICMPV6_PARAMPROB, ICMPV6_HDR_FIELD, 4, now)
            r.drop(DropReason.IP6_EXTHDR_BAD)
            return None, 0
        key = (int.from_bytes(data[8:24], "big"), int.from_bytes(data[24:40], "big"), ident)
        q = self.queues.get(key)
        if q is None:
            self._evict(r)
            q = self.queues[key] = Frag6Queue(key, now + r.sysctl6.ip6frag_time * SECOND,
                                              pkt.iif)
            r.timers.schedule(q.deadline, ("frag6", key))
        if end == offset:                           # no data: the whole queue goes
            return self._fail(r, q, DropReason.REASM_OVERLAP), 0
        if not more:
            if end < q.len or (q.last_in and end != q.len):
                return self._fail(r, q, DropReason.REASM_OVERLAP), 0
            q.last_in = True
            q.len = end
        elif end > q.len:
            if q.last_in:
                return self._fail(r, q, DropReason.REASM_OVERLAP), 0
            q.len = end
        for o, p in q.frags:
            e = o + len(p)
            if end <= o or offset >= e:
                continue
            if o == offset and e == end:
                r.drop(DropReason.REASM_DUP)
                return None, 0
            return self._fail(r, q, DropReason.REASM_OVERLAP), 0
        q.frags.append((offset, payload))
        q.frags.sort(key=lambda f: f[0])
        size = len(payload) + FRAG_OVERHEAD
        q.mem += size
        self.mem += size
        if offset == 0:
            q.first = pkt
            q.unfrag = bytes(data[:fh])
            q.nh_field = nh_field
            q.nexthdr = nexthdr
        if not (q.last_in and q.first is not None):
            return None, 0
        at = 0
        for o, p in q.frags:
            if o != at:
                return None, 0
            at = o + len(p)
        if at != q.len:
            return None, 0
        # ip6_frag_reasm(): unfragmentable part + payload, the Fragment header removed.
        self._free(q)
        whole = bytearray(q.unfrag)
        whole[q.nh_field] = q.nexthdr
        for _, p in q.frags:
            whole += p
        if len(whole) - 40 > 65535:
            snmp["Ip6ReasmFails"] += 1
            r.drop(DropReason.REASM_TOO_BIG)
            return None, 0
        struct.pack_into("!H", whole, 4, len(whole) - 40)
        snmp["Ip6ReasmOKs"] += 1
        first = q.first
        out = PacketBuf(whole, iif=first.iif, pkt_type=first.pkt_type, l2_src=first.l2_src,
                        frag_max_size=max(len(p) for _, p in q.frags))   # IP6SKB_FRAGMENTED
        return out, len(q.unfrag)

    def _fail(self, r: Router, q: Frag6Queue, reason: DropReason) -> None:
        self._free(q)
        r.counters.snmp["Ip6ReasmFails"] += 1
        r.drop(reason)

    def _evict(self, r: Router) -> None:
        if self.mem < HIGH_THRESH:
            return
        while self.queues and self.mem > LOW_THRESH:
            _, q = self.queues.popitem(last=False)
            self.mem -= q.mem
            r.counters.snmp["Ip6ReasmFails"] += 1
            r.drop(DropReason.REASM_MEM)

    def timer(self, r: Router, key: tuple[int, int, int], deadline: int, now: int) -> None:
        """ip6_frag_expire(): Time Exceeded code 1 when the first fragment came in."""
        q = self.queues.get(key)
        if q is None or q.deadline != deadline:
            return
        self._free(q)
        snmp = r.counters.snmp
        snmp["Ip6ReasmTimeout"] += 1
        snmp["Ip6ReasmFails"] += 1
        r.drop(DropReason.REASM_TIMEOUT)
        if q.first is not None:
            icmpv6_send(r, q.first, ICMPV6_TIME_EXCEED, ICMPV6_EXC_FRAGTIME, 0, now)
