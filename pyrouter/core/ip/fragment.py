"""IPv4 reassembly for packets addressed to the router (net/ipv4/ip_fragment.c).

Queues are keyed by (src, dst, id, proto) (DEFRAG-03).  A datagram completes
when its first and last fragments are in and the bytes in between are all
there; a fragment that partly overlaps held data drops the whole datagram
(Linux since the FragmentSmack fix, DEFRAG-05) while one that lies wholly
inside held data is a duplicate and is ignored; a non-last fragment whose
length is not a multiple of 8 is trimmed, as ip_frag_queue() does.  After
ipfrag_time (30 s by default) an incomplete queue is freed and, if its first fragment
was seen, ICMP Time Exceeded code 1 quotes it (DEFRAG-07).  Memory is bounded:
above ipfrag_high_thresh (4 MiB) the oldest queues are evicted until below
ipfrag_low_thresh (3 MiB) (DEFRAG-08).  A datagram over 65535 bytes fails.

Invariants: ``mem`` equals the summed payload bytes of all queues; each
queue's fragments are sorted by offset and never overlap.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...wire.icmpv4 import ICMP_EXC_FRAGTIME, ICMP_TIME_EXCEEDED
from ...wire.ipv4 import IP_DF, IP_MF, IP_OFFSET, set_checksum
from ..drops import DropReason
from ..packet import PacketBuf
from ..time import SECOND
from .icmp import icmp_send

if TYPE_CHECKING:
    from ..router import Router

IPFRAG_HIGH_THRESH = 4 * 1024 * 1024
IPFRAG_LOW_THRESH = 3 * 1024 * 1024
FRAG_OVERHEAD = 256      # per-fragment accounting overhead, like skb truesize


@dataclass(slots=True)
class FragQueue:
    key: tuple[int, int, int, int]
    deadline: int
    iif: int
    frags: list[tuple[int, bytes]] = field(default_factory=list)   # (offset, payload)
    first: PacketBuf | None = None          # the offset-0 fragment, header and all
    len: int = 0                            # highest end seen; the total once last_in
    last_in: bool = False
    meat: int = 0
    mem: int = 0
    max_size: int = 0


def _runs(frags: list[tuple[int, bytes]]) -> list[tuple[int, int]]:
    """Contiguous runs ``(start, end)`` of the sorted fragments (the kernel's frag runs)."""
    runs: list[tuple[int, int]] = []
    for o, p in frags:
        if runs and runs[-1][1] == o:
            runs[-1] = (runs[-1][0], o + len(p))
        else:
            runs.append((o, o + len(p)))
    return runs


class Reassembler:
    def __init__(self) -> None:
        self.queues: OrderedDict[tuple[int, int, int, int], FragQueue] = OrderedDict()
        self.mem = 0

    def __len__(self) -> int:
        return len(self.queues)

    def _free(self, q: FragQueue) -> None:
        self.queues.pop(q.key, None)
        self.mem -= q.mem

    def add(self, r: Router, pkt: PacketBuf, now: int) -> PacketBuf | None:
        """ip_defrag(): queue a fragment; return the whole datagram when complete."""
        r.counters.snmp["IpReasmReqds"] += 1
        data = pkt.data
        ihl = pkt.ihl
        frag = (data[6] << 8) | data[7]
        offset = (frag & IP_OFFSET) << 3
        payload = bytes(data[ihl:])
        end = offset + len(payload)
        key = (int.from_bytes(data[12:16], "big"), int.from_bytes(data[16:20], "big"),
               (data[4] << 8) | data[5], data[9])
        q = self.queues.get(key)
        if q is None:
            self._evict(r, now)
            q = self.queues[key] = FragQueue(key, now + r.sysctl.ipfrag_time * SECOND, pkt.iif)
            r.timers.schedule(q.deadline, ("frag", key))
        if end > 65535 - ihl:
            return self._fail(r, q, DropReason.REASM_TOO_BIG)
        # ip_frag_queue(): the last fragment fixes the length; a non-last one is
        # trimmed to a multiple of 8; anything past a known end is corruption.
        if not frag & IP_MF:
            if end < q.len or (q.last_in and end != q.len):
                return self._fail(r, q, DropReason.REASM_OVERLAP)
            q.last_in = True
            q.len = end
        else:
            if end & 7:
                end &= ~7
                payload = payload[:end - offset]
            if end > q.len:
                if q.last_in:
                    return self._fail(r, q, DropReason.REASM_OVERLAP)
                q.len = end
        if end == offset:
            return self._fail(r, q, DropReason.REASM_OVERLAP)
        # inet_frag_queue_insert(): inside a run of data already held -> a
        # duplicate, ignored; any partial overlap -> the whole datagram goes
        # (RFC 5722 as amended, applied to IPv4 by Linux).
        for ro, re_ in _runs(q.frags):
            if end <= ro or offset >= re_:
                continue
            if offset >= ro and end <= re_:
                r.drop(DropReason.REASM_DUP)
                return None
            return self._fail(r, q, DropReason.REASM_OVERLAP)
        q.frags.append((offset, payload))
        q.frags.sort(key=lambda f: f[0])
        q.meat += len(payload)
        size = len(payload) + FRAG_OVERHEAD
        q.mem += size
        self.mem += size
        q.max_size = max(q.max_size, len(data))
        if offset == 0:
            q.first = pkt
        if q.first is None or not q.last_in or q.meat != q.len:
            return None
        # Complete: rebuild from the first fragment's header.
        first = q.first
        hdr = bytearray(first.data[:first.ihl])
        total_len = first.ihl + q.len
        hdr[2], hdr[3] = total_len >> 8, total_len & 0xFF
        keep_df = ((hdr[6] << 8) | hdr[7]) & IP_DF
        hdr[6], hdr[7] = keep_df >> 8, 0
        set_checksum(hdr, 0, first.ihl)
        whole = hdr + b"".join(p for _, p in q.frags)
        self._free(q)
        r.counters.snmp["IpReasmOKs"] += 1
        return PacketBuf(whole, iif=first.iif, pkt_type=first.pkt_type, ihl=first.ihl,
                         mark=first.mark, route=first.route, frag_max_size=q.max_size)

    def _fail(self, r: Router, q: FragQueue, reason: DropReason) -> None:
        self._free(q)
        r.counters.snmp["IpReasmFails"] += 1
        r.drop(reason)
        return None

    def _evict(self, r: Router, now: int) -> None:
        """ip_evictor(): above the high threshold, free the oldest queues."""
        if self.mem <= IPFRAG_HIGH_THRESH:
            return
        while self.queues and self.mem > IPFRAG_LOW_THRESH:
            _, q = self.queues.popitem(last=False)
            self.mem -= q.mem
            r.counters.snmp["IpReasmFails"] += 1
            r.drop(DropReason.REASM_MEM)

    def timer(self, r: Router, key: tuple[int, int, int, int], deadline: int,
              now: int) -> None:
        """ip_expire(): free the queue; Time Exceeded/reassembly if the first came."""
        q = self.queues.get(key)
        if q is None or q.deadline != deadline:
            return
        self._free(q)
        r.counters.snmp["IpReasmFails"] += 1
        r.drop(DropReason.REASM_TIMEOUT)
        if q.first is not None:
            icmp_send(r, q.first, ICMP_TIME_EXCEEDED, ICMP_EXC_FRAGTIME, 0, now)
