"""NAT tuple allocation: get_unique_tuple(), find_appropriate_src(),
find_best_ips_proto() and nf_nat_l4proto_unique_tuple() (net/netfilter/nf_nat_core.c,
nf_nat_proto.c), for nat.py's setup_info.

Port allocation (get_unique_tuple, nf_nat_l4proto_unique_tuple): a SNAT keeps the
original tuple when it lies in the range and its reply is unused (nf_nat_used_tuple:
the inverse is in the table for another entry); when it is out of the range, the
mapping a live entry from the same source address and port already has is reused if
unused (find_appropriate_src over ``ConnTrack.nat_bysource``, the kernel's
nf_nat_bysource: every SRC-bound entry, stale ones pruned, rebuilt when it outgrows the
table); else the address is chosen in the range (a fold of source and destination, the
destination left out with ``persistent``: one address per client), the port (the
ICMP echo id) kept when in range and free, else searched from an offset (0, or a
random one from the router's rng with ``random``/``fully-random``; ``fully-random``
also skips keeping the original) over at most NF_NAT_MAX_ATTEMPTS=128 candidates, then
halving, as the kernel.  Without a port range, a source port keeps its class (1-511,
600-1023, 1024-65535) and a DNAT never changes the destination port.

Invariants: no entry is changed here (``bysource_add`` only maintains the index);
randomness only through the caller's *rand*; ``ConnTrack.nat_bysource`` holds at most
about twice as many keys as the table has entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .conntrack import Conn, ConnTrack, Tuple, invert

NF_NAT_MANIP_SRC, NF_NAT_MANIP_DST = 0, 1
IPS_SRC_NAT_DONE, IPS_DST_NAT_DONE = 128, 256
PORTED = (6, 17, 136, 132, 33)
# struct nf_nat_range2 flags
NF_NAT_RANGE_MAP_IPS = 1
NF_NAT_RANGE_PROTO_SPECIFIED = 2
NF_NAT_RANGE_PROTO_RANDOM = 4
NF_NAT_RANGE_PERSISTENT = 8
NF_NAT_RANGE_PROTO_RANDOM_FULLY = 16
NF_NAT_RANGE_PROTO_RANDOM_ALL = NF_NAT_RANGE_PROTO_RANDOM | NF_NAT_RANGE_PROTO_RANDOM_FULLY
NF_NAT_MAX_ATTEMPTS = 128

@dataclass(frozen=True, slots=True)
class NatRange:
    """struct nf_nat_range2 (IPv4 addresses as 4 bytes)."""

    min_addr: bytes | None = None
    max_addr: bytes | None = None
    min_port: int = 0
    max_port: int = 0
    flags: int = 0


def used_tuple(ct: ConnTrack, t: Tuple, c: Conn) -> bool:
    """nf_nat_used_tuple(): the reply to *t* already belongs to another entry."""
    rep = invert(t)
    if rep is None:
        return False
    other = ct.hash.get(rep)
    return other is not None and other is not c


def _with(t: Tuple, mtype: int, addr: bytes | None = None, port: int | None = None) -> Tuple:
    pf, src, dst, p, sp, dp = t
    icmp = p == 1 or p == 58
    if mtype == NF_NAT_MANIP_SRC:
        src = addr if addr is not None else src
        if port is not None:
            sp = port
    else:
        dst = addr if addr is not None else dst
        if port is not None:
            if icmp:
                sp = port                  # the echo id is the "port" both ways
            else:
                dp = port
    return (pf, src, dst, p, sp, dp)


def _key(t: Tuple, mtype: int) -> int:
    return t[4] if mtype == NF_NAT_MANIP_SRC or t[3] in (1, 58) else t[5]


def _in_range(t: Tuple, rng: NatRange, mtype: int) -> bool:
    if rng.flags & NF_NAT_RANGE_MAP_IPS and rng.min_addr is not None:
        a = t[1] if mtype == NF_NAT_MANIP_SRC else t[2]
        if not rng.min_addr <= a <= (rng.max_addr or rng.min_addr):
            return False
    return _proto_in_range(t, rng, mtype)


def _proto_in_range(t: Tuple, rng: NatRange, mtype: int) -> bool:
    if not rng.flags & NF_NAT_RANGE_PROTO_SPECIFIED or (t[3] not in PORTED
                                                        and t[3] not in (1, 58)):
        return True
    return rng.min_port <= _key(t, mtype) <= rng.max_port


def _fold(*parts: bytes) -> int:
    """A deterministic stand-in for the kernel's jhash (Python's bytes hash is salted)."""
    h = 0x9E3779B9
    for p in parts:
        for b in p:
            h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def _best_ip(t: Tuple, rng: NatRange, mtype: int) -> Tuple:
    """find_best_ips_proto(): the address for this connection within the range."""
    if not rng.flags & NF_NAT_RANGE_MAP_IPS or rng.min_addr is None:
        return t
    lo = int.from_bytes(rng.min_addr, "big")
    hi = int.from_bytes(rng.max_addr or rng.min_addr, "big")
    if lo == hi:
        return _with(t, mtype, rng.min_addr)
    # jhash of the source, seeded with the destination unless persistent (both manips)
    parts = (t[1],) if rng.flags & NF_NAT_RANGE_PERSISTENT else (t[1], t[2])
    j = _fold(*parts)
    a = lo + (j * (hi - lo + 1) >> 32)
    return _with(t, mtype, a.to_bytes(len(rng.min_addr), "big"))


def _unique_proto(ct: ConnTrack, t: Tuple, rng: NatRange, mtype: int, c: Conn,
                  rand: Callable[[], int]) -> Tuple:
    """nf_nat_l4proto_unique_tuple()."""
    p = t[3]
    if p == 1 or p == 58:
        if rng.flags & NF_NAT_RANGE_PROTO_SPECIFIED:
            lo, size = rng.min_port, rng.max_port - rng.min_port + 1
        else:
            lo, size = 0, 65536
    elif p in PORTED:
        if rng.flags & NF_NAT_RANGE_PROTO_SPECIFIED:
            lo, size = rng.min_port, rng.max_port - rng.min_port + 1
        else:
            if mtype == NF_NAT_MANIP_DST:
                return t                        # a DNAT without ports keeps the port
            k = t[4]
            if k < 512:
                lo, size = 1, 511
            elif k < 1024:
                lo, size = 600, 424
            else:
                lo, size = 1024, 64512
    else:
        return t
    if rng.flags & NF_NAT_RANGE_PROTO_RANDOM_ALL:
        off = rand() & 0xFFFF
    else:
        off = 0
    attempts = min(size, NF_NAT_MAX_ATTEMPTS)
    cand = t
    while True:
        for _ in range(attempts):
            cand = _with(t, mtype, port=lo + off % size)
            off += 1
            if not used_tuple(ct, cand, c):
                return cand
        if attempts >= size or attempts < 16:
            return cand                          # confirm will fail: insert_failed
        attempts //= 2
        off = rand() & 0xFFFF


def _src_key(t: Tuple) -> tuple[int, int, bytes, int]:
    return (t[0], t[3], t[1], t[4])


def bysource_add(ct: ConnTrack, c: Conn) -> None:
    """nf_nat_setup_info's hlist_add_head(nf_nat_bysource): *c* got its SRC binding.
    Entries no longer in the table are pruned from the key's list here, and the whole
    index is rebuilt from the table once it has more than twice as many keys as the
    table has entries (so it stays bounded by the table)."""
    idx = ct.nat_bysource
    key = _src_key(c.orig)
    lst = [o for o in idx.get(key, ()) if ct.hash.get(o.orig) is o]
    lst.append(c)
    idx[key] = lst
    if len(idx) > 2 * len(ct) + 64:
        fresh: dict[tuple, list[Conn]] = {}
        for o in ct.entries():
            if o.status & IPS_SRC_NAT_DONE:
                fresh.setdefault(_src_key(o.orig), []).append(o)
        fresh.setdefault(key, []).append(c)
        ct.nat_bysource = fresh


def find_appropriate_src(ct: ConnTrack, orig: Tuple, rng: NatRange,
                         c: Conn) -> Tuple | None:
    """find_appropriate_src(): a live entry from the same source address and port (same
    protocol) already mapped into *rng*: the same mapping for this connection, towards
    its own destination (newest entry first, as the kernel's hlist)."""
    for o in reversed(ct.nat_bysource.get(_src_key(orig), ())):
        if o is c or ct.hash.get(o.orig) is not o:
            continue
        inv = invert(o.reply)
        if inv is None:
            continue
        res = (orig[0], inv[1], orig[2], orig[3], inv[4], orig[5])
        if _in_range(res, rng, NF_NAT_MANIP_SRC):
            return res
    return None


def unique_tuple(ct: ConnTrack, orig: Tuple, rng: NatRange, mtype: int, c: Conn,
                 rand: Callable[[], int]) -> Tuple:
    """get_unique_tuple(): 1) a SNAT keeps the original tuple when in range and unused,
    else reuses the source's current mapping (find_appropriate_src) when unused;
    2) the address from the range; 3) the port."""
    if mtype == NF_NAT_MANIP_SRC and not rng.flags & NF_NAT_RANGE_PROTO_RANDOM_ALL:
        if _in_range(orig, rng, mtype):
            if not used_tuple(ct, orig, c):
                return orig
        else:
            found = find_appropriate_src(ct, orig, rng, c)
            if found is not None and not used_tuple(ct, found, c):
                return found
    t = _best_ip(orig, rng, mtype)
    if not rng.flags & NF_NAT_RANGE_PROTO_RANDOM_ALL:
        if rng.flags & NF_NAT_RANGE_PROTO_SPECIFIED:
            if _proto_in_range(t, rng, mtype) and (rng.min_port == rng.max_port
                                                  or not used_tuple(ct, t, c)):
                return t
        elif not used_tuple(ct, t, c):
            return t
    return _unique_proto(ct, t, rng, mtype, c, rand)
