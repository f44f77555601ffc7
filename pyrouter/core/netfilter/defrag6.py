"""nf_defrag_ipv6 (net/ipv6/netfilter/nf_defrag_ipv6_hooks.c, nf_conntrack_reasm.c):
IPv6 fragments are reassembled before connection tracking sees them.

``ipv6_defrag`` sits at PRE_ROUTING and LOCAL_OUT with priority -400
(NF_IP6_PRI_CONNTRACK_DEFRAG), registered together with conntrack.  A packet with a
Fragment header (offset or MF set) goes to the router's IPv6 reassembler
(ip6/reasm.py, the same bounded queues, limits and 60 s timeout, Time Exceeded when the
first fragment came); until the datagram is complete the hook steals it (NF_STOLEN);
then the whole packet goes on with ``frag_max_size`` = the largest fragment's size
(40 + its payload length, IP6CB(skb)->frag_max_size as nf_ct_frag6_reasm sets it).
An atomic fragment (offset 0, no MF) passes untouched.

On output (ip6/forward.py, ip6_pkt_too_big and __ip6_finish_output as the kernel): a
reassembled packet is Too Big only when frag_max_size exceeds the egress MTU, and it
leaves re-fragmented with fragments no larger than frag_max_size (``unfragmentable``
finds the headers that stay in front, ip6_find_1stfragopt).

Difference from the kernel: a malformed fragment is answered with the Parameter
Problem the local reassembler sends (nf_ct_frag6_gather drops it silently).

Invariant: the header walk is bounded (16 headers) and never reads past the packet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .hooks import NF_ACCEPT, NF_STOLEN, HookState

if TYPE_CHECKING:
    from ..packet import PacketBuf

PRIO_CONNTRACK_DEFRAG = -400
_SKIP = (0, 43, 60, 51)


def find_frag(d: bytearray) -> tuple[int, int]:
    """(offset of the Fragment header, offset of the byte naming it), or (-1, -1)."""
    n = len(d)
    if n < 40:
        return -1, -1
    nh, nh_field, off = d[6], 6, 40
    for _ in range(16):
        if nh == 44:
            return (off, nh_field) if off + 8 <= n else (-1, -1)
        if nh not in _SKIP or off + 8 > n:
            return -1, -1
        hdr = off
        length = (d[off + 1] + 2) << 2 if nh == 51 else (d[off + 1] + 1) << 3
        nh_field, nh, off = hdr, d[hdr], off + length
    return -1, -1


def unfragmentable(d: bytearray) -> tuple[int, int]:
    """ip6_find_1stfragopt(): (length of the part that stays in front of the Fragment
    header, offset of the next-header byte to point at it): the IPv6 header, Hop-by-Hop,
    Routing, and Destination Options only when a Routing header follows."""
    n = len(d)
    nh, nh_field, off = d[6], 6, 40
    for _ in range(16):
        if nh not in (0, 43, 60) or off + 8 > n:
            break
        length = (d[off + 1] + 1) << 3
        if nh == 60 and (off + length > n or d[off] != 43):
            break
        nh_field, nh, off = off, d[off], off + length
    return off, nh_field


def ipv6_defrag(pkt: PacketBuf, st: HookState) -> int:
    """The hook entry: steal fragments, hand on the whole datagram."""
    if pkt.ct is not None:
        return NF_ACCEPT
    d = pkt.data
    fh, nh_field = find_frag(d)
    if fh < 0 or not ((d[fh + 2] << 8) | d[fh + 3]) & 0xFFF9:
        return NF_ACCEPT                              # no fragment, or an atomic one
    r = st.router
    whole, noff = r.reasm6.add(r, pkt, fh, nh_field, st.now)
    if whole is None:
        return NF_STOLEN
    pkt.data = whole.data
    pkt.frag_max_size = noff + 8 + whole.frag_max_size
    return NF_ACCEPT
