"""MSS clamping: nft's ``tcp option maxseg size set rt mtu | N`` (nft_exthdr_tcp_set_eval
with NFT_RT_TCPMSS, net/netfilter/nft_exthdr.c, nft_rt.c).

On a TCP segment carrying an MSS option (kind 2, length 4), the value is lowered to
the target: a fixed N, or ``rt mtu``: the MTU of the route the packet takes (the
route's mtu metric, else the egress port's) minus 40 (IPv4 + TCP headers; 60 for
IPv6), as get_tcpmss().  It is never raised ("increase can cause connection to stall"),
and the TCP checksum is updated incrementally (RFC 1624).  Write the rule with ``tcp
flags syn`` as nft users do; the statement itself looks at any TCP segment.

Invariants: a malformed option list (a length below 2 or past the header) stops the
walk without change; nothing here raises on a short packet.
"""

from __future__ import annotations

from typing import Any, Callable

from ...wire.checksum import csum_replace2


def clamp(d: bytearray, th: int, mss: int) -> bool:
    """Lower the MSS option of the TCP header at *th* to *mss*; True if changed."""
    if th < 0 or th + 20 > len(d):
        return False
    end = th + ((d[th + 12] >> 4) << 2)
    if end > len(d):
        return False
    i = th + 20
    while i < end:
        kind = d[i]
        if kind == 0:
            return False
        if kind == 1:
            i += 1
            continue
        if i + 1 >= end or d[i + 1] < 2 or i + d[i + 1] > end:
            return False
        if kind == 2 and d[i + 1] == 4:
            old = (d[i + 2] << 8) | d[i + 3]
            if old <= mss:
                return False
            d[i + 2], d[i + 3] = mss >> 8, mss & 0xFF
            chk = (d[th + 16] << 8) | d[th + 17]
            chk = csum_replace2(chk, old, mss)
            d[th + 16], d[th + 17] = chk >> 8, chk & 0xFF
            return True
        i += d[i + 1]
    return False


def maxseg_step(size: int | None) -> Callable[[Any], None]:
    """The compiled statement: *size* None means ``rt mtu``."""

    def step(c: Any) -> None:
        if c.l4 != 6 or c.th < 0:
            return
        mss = size
        if mss is None:
            route = c.pkt.route
            port = c.st.outdev
            mtu = getattr(route, "mtu", 0) or (port.mtu if port is not None else 0)
            if not mtu:
                return
            mss = mtu - (40 if c.pf == 4 else 60)
            if mss <= 0:
                return
        clamp(c.d, c.th, mss)
    return step
