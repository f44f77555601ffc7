"""IPv6 extension headers (RFC 8200 section 4; net/ipv6/exthdrs.c).

``parse_tlv`` walks a Hop-by-Hop or Destination Options header (ip6_parse_tlv):
Pad1 and PadN (at most 7 bytes of padding in a row, PadN bytes all zero, else the
packet is dropped), Router Alert (hop-by-hop only; a length other than 2 drops) and
Jumbo Payload (misaligned or mis-sized: dropped; a length <= 65535: Parameter Problem
code 0 at its value; with a non-zero Payload Length: at the option; else dropped as
truncated, since no Ethernet frame carries a jumbogram);
an unknown option acts by its two top bits (ip6_tlvopt_unknown): 00 skip, 01
discard, 10 discard and Parameter Problem code 2 at the option (even to a
multicast destination), 11 the same but not to multicast.  More than
max_{hbh,dst}_opts_number non-padding options -> discard.

``skip_exthdr`` finds the upper-layer header past the extension headers
(ipv6_skip_exthdr); it stops at a non-first fragment.

Invariant: both only read inside the packet and never raise; a verdict is
returned for the caller to count.
"""

from __future__ import annotations

from ...wire.ipv6 import (IPPROTO_AH, IPPROTO_DSTOPTS, IPPROTO_FRAGMENT, IPPROTO_HOPOPTS,
                          IPPROTO_ROUTING)

OK = 0
DISCARD = 1            # silently (counted by the caller)
PARAMPROB = 2          # Parameter Problem (code, pointer) then discard

_EXT = frozenset({IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_DSTOPTS, IPPROTO_AH,
                  IPPROTO_FRAGMENT})


def parse_tlv(data: bytearray, off: int, hdrlen: int, hopopts: bool, dst_mcast: bool,
              max_opts: int, payload_len: int = 1) -> tuple[int, int, int, bool]:
    """(verdict, icmp code, pointer, router_alert) for the options header at *off*;
    *payload_len* is the IPv6 header's Payload Length field (0 for a jumbogram)."""
    i = off + 2
    end = off + hdrlen
    padlen = 0
    count = 0
    ra = False
    while i < end:
        t = data[i]
        if t == 0:                                   # Pad1
            padlen += 1
            i += 1
            if padlen > 7:
                return DISCARD, 0, 0, ra
            continue
        if i + 1 >= end:
            return DISCARD, 0, 0, ra
        olen = data[i + 1] + 2
        if i + olen > end:
            return DISCARD, 0, 0, ra
        if t == 1:                                   # PadN
            padlen += olen
            if padlen > 7 or any(data[i + 2:i + olen]):
                return DISCARD, 0, 0, ra
            i += olen
            continue
        padlen = 0
        count += 1
        if count > max_opts:
            return DISCARD, 0, 0, ra
        if hopopts and t == 5:                       # Router Alert (ipv6_hop_ra)
            if olen != 4:
                return DISCARD, 0, 0, ra             # "wrong RA length"
            ra = True
        elif hopopts and t == 0xC2:                  # Jumbo Payload (ipv6_hop_jumbo)
            if olen != 6 or i & 3 != 2:
                return DISCARD, 0, 0, ra             # "wrong jumbo opt length/alignment"
            jumbo = int.from_bytes(data[i + 2:i + 6], "big")
            if jumbo <= 65535:
                return PARAMPROB, 0, i + 2, ra
            if payload_len:
                return PARAMPROB, 0, i, ra
            return DISCARD, 0, 0, ra                 # longer than any Ethernet frame
        else:
            action = t >> 6
            if action == 1:
                return DISCARD, 0, 0, ra
            if action == 2 or (action == 3 and not dst_mcast):
                return PARAMPROB, 2, i, ra
            if action == 3:
                return DISCARD, 0, 0, ra
        i += olen
    return OK, 0, 0, ra


def skip_exthdr(data: bytes | bytearray, off: int, nexthdr: int,
                frag: list[int] | None = None) -> tuple[int, int]:
    """(offset of the upper-layer header, its protocol), or (-1, nexthdr) when the chain
    is truncated; a non-first fragment stops the walk at the Fragment header.  *frag*,
    when given, receives the Fragment header's offset/M field (ipv6_skip_exthdr's
    frag_offp)."""
    n = len(data)
    while nexthdr in _EXT:
        if off + 8 > n:
            return -1, nexthdr
        if nexthdr == IPPROTO_FRAGMENT:
            fo = (data[off + 2] << 8) | data[off + 3]
            if frag is not None:
                frag.append(fo & 0xFFF9)
            if fo & 0xFFF8:
                return off, nexthdr
            hdrlen = 8
        elif nexthdr == IPPROTO_AH:
            hdrlen = (data[off + 1] + 2) << 2
        else:
            hdrlen = (data[off + 1] + 1) << 3
        nexthdr = data[off]
        off += hdrlen
    return off, nexthdr
