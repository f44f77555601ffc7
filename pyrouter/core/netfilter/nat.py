"""NAT on top of conntrack, IPv4 and IPv6: nf_nat_setup_info(), nf_nat_packet() and
nf_nat_icmp_reply_translation() (net/netfilter/nf_nat_core.c, nf_nat_proto.c).

A connection's NAT is decided once, on its first packet (ctinfo NEW), by the nat-type
chains of the hook (``nat_entry`` wraps a compiled nft chain): a snat/dnat/masquerade/
redirect statement calls ``setup_info``, which picks the new tuple and rewrites the
entry's *reply* tuple to its inverse (so the answer to the translated packet finds the
entry); a hook whose chains decided nothing gets the null binding (the same address,
the port changed only if the tuple would clash, as alloc_null_binding).  Every packet
of the connection is then rewritten by ``nat_packet`` in both directions: at PREROUTING
and OUTPUT the destination (NF_NAT_MANIP_DST), at POSTROUTING and INPUT the source
(NF_NAT_MANIP_SRC), towards the inverse of the other direction's tuple.

Port allocation (get_unique_tuple and find_appropriate_src) is nat_alloc.py.

Checksums are updated incrementally (RFC 1624, wire/checksum.py csum_replace*): the IPv4
header for addresses, TCP and UDP for the pseudo-header addresses and the ports (a UDP
checksum of zero over IPv4 stays zero, a computed zero is sent as 0xFFFF), ICMP for the
echo id.  An ICMP error RELATED to a NATed connection gets its embedded header rewritten
back to what its sender saw (with its IPv4, TCP/UDP checksums; a TCP header cut at 8
bytes keeps its checksum, as tcp_manip_pkt) and the ICMP checksum recomputed, then the
outer addresses rewritten.  A redirect about a connection that is NATed or not yet
bound both ways is dropped instead (the hairpin case: a DNATed packet leaving by the
port it came in on is marked for a redirect by ip_forward, as the kernel's
IPSKB_DOREDIRECT, which ignores NAT; the redirect carries the entry and dies here).

Masquerade uses the egress port's address (inet_select_addr toward the next hop) and
remembers (ifindex, address) on the entry; ``masq_cleanup`` (after a reload) kills the
entries whose port or address went away (masq_inet_event / masq_device_event), and
``masq_device_down`` (Router.set_link, a port going down) those masqueraded through it.

IPv6 (nf_nat_ipv6_manip_pkt): no header checksum; TCP, UDP and ICMPv6 checksums follow
the addresses (RFC 1624 per 16-bit word); masquerade and redirect take the port's
non-link-local address with the longest prefix in common with the peer (a simplified
ipv6_dev_get_saddr); ICMPv6 errors are translated like ICMP ones, their checksum
recomputed over the new pseudo-header.

IPv6 snat/dnat take ports like IPv4 (``[addr]:port``, parsed by nft_parse.py); a port
mapping needs an earlier transport match, as nft.
At OUTPUT a translated destination routes the packet again (``local_reroute``, as
nf_nat_ipv4_local_fn: ip_route_me_harder / ip6_route_me_harder in ip/output.py and
ip6/output.py; the source stays).
Invariants: nothing here raises on a short packet (a transport header too short to
rewrite drops the packet with DropReason.NAT_UNTRANSLATABLE); the table is not grown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from ...wire.checksum import csum_replace2, csum_replace4, inet_checksum
from ..drops import DropReason
from .conntrack import (DIR_ORIGINAL, DIR_REPLY, IP_CT_IS_REPLY, IP_CT_NEW,
                        IP_CT_RELATED, IP_CT_RELATED_REPLY, IPS_CONFIRMED, IPS_DST_NAT,
                        IPS_SRC_NAT, Conn, Tuple, invert)
from .hooks import NF_ACCEPT, NF_DROP, Hook, HookState
from .nat_alloc import (  # noqa: F401  (the range flags and NatRange: nft_compile's API)
    IPS_DST_NAT_DONE, IPS_SRC_NAT_DONE, NF_NAT_MANIP_DST, NF_NAT_MANIP_SRC,
    NF_NAT_RANGE_MAP_IPS, NF_NAT_RANGE_PERSISTENT, NF_NAT_RANGE_PROTO_RANDOM,
    NF_NAT_RANGE_PROTO_RANDOM_FULLY, NF_NAT_RANGE_PROTO_SPECIFIED, PORTED as _PORTED, NatRange,
    bysource_add, unique_tuple)
from .view import pktinfo

if TYPE_CHECKING:
    from ..packet import PacketBuf
    from ..router import Router

IPS_NAT_MASK = IPS_SRC_NAT | IPS_DST_NAT
IPS_NAT_DONE_MASK = IPS_SRC_NAT_DONE | IPS_DST_NAT_DONE
ICMP_REDIRECT, NDISC_REDIRECT = 5, 137
_ECHO_LIKE = frozenset({0, 8, 13, 14, 15, 16, 17, 18})


def maniptype(hook: int) -> int:
    """HOOK2MANIP(): PREROUTING and OUTPUT change the destination."""
    return NF_NAT_MANIP_DST if hook in (Hook.PRE_ROUTING, Hook.LOCAL_OUT) else NF_NAT_MANIP_SRC


def initialized(c: Conn, mtype: int) -> bool:
    return bool(c.status & (IPS_SRC_NAT_DONE if mtype == NF_NAT_MANIP_SRC else IPS_DST_NAT_DONE))


# -- nf_nat_setup_info ------------------------------------------------------------------
def setup_info(r: Router, c: Conn, rng: NatRange, mtype: int) -> int:
    """nf_nat_setup_info(): bind *c* (still unconfirmed) for *mtype*; a verdict."""
    if initialized(c, mtype) or c.status & IPS_CONFIRMED:
        return NF_ACCEPT
    if rng.min_addr is None or len(rng.min_addr) == (4 if c.orig[0] == 4 else 16):
        curr = invert(c.reply)
        if curr is not None:
            new = unique_tuple(r.nf.conntrack, curr, rng, mtype, c,
                               lambda: r.rng.getrandbits(16))
            if new != curr:
                rep = invert(new)
                if rep is not None:
                    c.reply = rep
                    c.status |= IPS_SRC_NAT if mtype == NF_NAT_MANIP_SRC else IPS_DST_NAT
    if mtype == NF_NAT_MANIP_SRC:
        c.status |= IPS_SRC_NAT_DONE
        bysource_add(r.nf.conntrack, c)
    else:
        c.status |= IPS_DST_NAT_DONE
    return NF_ACCEPT


def null_binding(r: Router, c: Conn, mtype: int) -> int:
    """nf_nat_alloc_null_binding(): the same address, a port only to avoid a clash."""
    t = invert(c.reply) or c.orig
    a = t[1] if mtype == NF_NAT_MANIP_SRC else t[2]
    return setup_info(r, c, NatRange(a, a, flags=NF_NAT_RANGE_MAP_IPS), mtype)


# -- packet rewriting -------------------------------------------------------------------
def _w16(d: bytearray, at: int) -> int:
    return (d[at] << 8) | d[at + 1]


def _p16(d: bytearray, at: int, v: int) -> None:
    d[at] = v >> 8
    d[at + 1] = v & 0xFF


def manip_pkt(d: bytearray, off: int, target: Tuple, mtype: int, inner: bool = False) -> bool:
    """nf_nat_ipv4_manip_pkt() on the IPv4 header at *off*: False when the transport
    header is too short to rewrite.  *target* gives the new source (SRC) or
    destination (DST) address and port."""
    if len(d) < off + 20:
        return False
    ihl = (d[off] & 0x0F) << 2
    th = off + ihl
    p = d[off + 9]
    first = not (_w16(d, off + 6) & 0x1FFF)
    aoff = off + (12 if mtype == NF_NAT_MANIP_SRC else 16)
    old_a = int.from_bytes(d[aoff:aoff + 4], "big")
    new_a = int.from_bytes(target[1] if mtype == NF_NAT_MANIP_SRC else target[2], "big")
    if first and target[3] == p:
        if p in _PORTED:
            if len(d) < th + 8:
                return False
            poff = th + (0 if mtype == NF_NAT_MANIP_SRC else 2)
            old_p = _w16(d, poff)
            new_p = target[4] if mtype == NF_NAT_MANIP_SRC else target[5]
            coff = -1
            if p == 6 and len(d) >= th + 20:
                coff = th + 16
            elif p in (17, 136):
                coff = th + 6
            if coff >= 0:
                chk = _w16(d, coff)
                if not (p == 17 and chk == 0):          # UDP over IPv4: zero stays zero
                    chk = csum_replace4(chk, old_a, new_a)
                    chk = csum_replace2(chk, old_p, new_p)
                    if p == 17 and chk == 0:
                        chk = 0xFFFF
                    _p16(d, coff, chk)
            _p16(d, poff, new_p)
        elif p == 1:
            if len(d) < th + 8:
                return False
            if d[th] in _ECHO_LIKE:
                old_id = _w16(d, th + 4)
                _p16(d, th + 2, csum_replace2(_w16(d, th + 2), old_id, target[4]))
                _p16(d, th + 4, target[4])
    _p16(d, off + 10, csum_replace4(_w16(d, off + 10), old_a, new_a))
    d[aoff:aoff + 4] = new_a.to_bytes(4, "big")
    return True


def _sum16(b: bytes) -> int:
    return sum((b[i] << 8) | b[i + 1] for i in range(0, len(b), 2))


def _csum_replace_bytes(check: int, old: bytes, new: bytes) -> int:
    """RFC 1624 over a run of 16-bit words (an IPv6 address)."""
    for i in range(0, len(old), 2):
        check = csum_replace2(check, (old[i] << 8) | old[i + 1], (new[i] << 8) | new[i + 1])
    return check


def manip_pkt6(d: bytearray, off: int, target: Tuple, mtype: int) -> bool:
    """nf_nat_ipv6_manip_pkt() on the IPv6 header at *off* (no header checksum; TCP, UDP
    and ICMPv6 checksums cover the addresses)."""
    if len(d) < off + 40:
        return False
    view = d[off:] if off else d
    p, th = pktinfo(view, 6)
    aoff = off + (8 if mtype == NF_NAT_MANIP_SRC else 24)
    old_a = bytes(d[aoff:aoff + 16])
    new_a = target[1] if mtype == NF_NAT_MANIP_SRC else target[2]
    if th >= 0:
        th += off
        coff = -1
        if p in _PORTED and target[3] == p:
            if len(d) < th + 8:
                return False
            poff = th + (0 if mtype == NF_NAT_MANIP_SRC else 2)
            old_p = _w16(d, poff)
            new_p = target[4] if mtype == NF_NAT_MANIP_SRC else target[5]
            if p == 6 and len(d) >= th + 20:
                coff = th + 16
            elif p in (17, 136):
                coff = th + 6
            if coff >= 0 and _w16(d, coff):
                chk = csum_replace2(_csum_replace_bytes(_w16(d, coff), old_a, new_a),
                                    old_p, new_p)
                _p16(d, coff, chk or 0xFFFF if p == 17 else chk)
            _p16(d, poff, new_p)
        elif p == 58 and len(d) >= th + 8:
            chk = _csum_replace_bytes(_w16(d, th + 2), old_a, new_a)
            if d[th] in (128, 129) and target[3] == 58:
                chk = csum_replace2(chk, _w16(d, th + 4), target[4])
                _p16(d, th + 4, target[4])
            _p16(d, th + 2, chk)
        elif p in _PORTED:
            return False
    d[aoff:aoff + 16] = new_a
    return True


def _manip(d: bytearray, off: int, target: Tuple, mtype: int) -> bool:
    return manip_pkt(d, off, target, mtype) if target[0] == 4 else \
        manip_pkt6(d, off, target, mtype)


def nat_packet(c: Conn, ctinfo: int, hook: int, d: bytearray) -> bool:
    """nf_nat_packet(): rewrite one packet of a bound connection; False to drop."""
    mtype = maniptype(hook)
    bit = IPS_SRC_NAT if mtype == NF_NAT_MANIP_SRC else IPS_DST_NAT
    direction = DIR_REPLY if ctinfo >= IP_CT_IS_REPLY else DIR_ORIGINAL
    if direction == DIR_REPLY:
        bit ^= IPS_NAT_MASK
    if not c.status & bit:
        return True
    target = invert(c.orig if direction == DIR_REPLY else c.reply)
    if target is None:
        return True
    return _manip(d, 0, target, mtype)


def icmp_reply_translation(c: Conn, ctinfo: int, hook: int, d: bytearray) -> bool:
    """nf_nat_icmp_reply_translation(): an ICMP error about a NATed connection.  A
    redirect about a connection whose NAT is not finished (both DONE bits) or not null
    is dropped: the hosts would start talking past the translation ("Redirects on
    non-null nats must be dropped"); a hairpin's first packet is always such a case."""
    th = (d[0] & 0x0F) << 2 if c.orig[0] == 4 else pktinfo(d, 6)[1]
    if 0 <= th < len(d) and d[th] == (ICMP_REDIRECT if c.orig[0] == 4 else NDISC_REDIRECT) \
            and ((c.status & IPS_NAT_DONE_MASK) != IPS_NAT_DONE_MASK
                 or c.status & IPS_NAT_MASK):
        return False
    mtype = maniptype(hook)
    bit = IPS_SRC_NAT if mtype == NF_NAT_MANIP_SRC else IPS_DST_NAT
    direction = DIR_REPLY if ctinfo >= IP_CT_IS_REPLY else DIR_ORIGINAL
    if direction == DIR_REPLY:
        bit ^= IPS_NAT_MASK
    if not c.status & bit:
        return True
    other = c.reply if direction == DIR_ORIGINAL else c.orig
    if other[0] == 6:
        return _icmp6_reply_translation(d, other, mtype)
    th = (d[0] & 0x0F) << 2
    if len(d) < th + 8 + 20:
        return False
    # The embedded packet went the other way: the opposite manip puts it back.
    if not manip_pkt(d, th + 8, other, NF_NAT_MANIP_DST if mtype == NF_NAT_MANIP_SRC
                     else NF_NAT_MANIP_SRC, inner=True):
        return False
    d[th + 2] = d[th + 3] = 0
    _p16(d, th + 2, inet_checksum(d[th:]))
    target = invert(other)
    if target is None:
        return True
    target = (target[0], target[1], target[2], 1, 0, 0)
    return manip_pkt(d, 0, target, mtype)


def _icmp6_reply_translation(d: bytearray, other: Tuple, mtype: int) -> bool:
    """The IPv6 half of nf_nat_icmp_reply_translation (nf_nat_icmpv6_reply_translation)."""
    _, th = pktinfo(d, 6)
    if th < 0 or len(d) < th + 8 + 40:
        return False
    inv = NF_NAT_MANIP_DST if mtype == NF_NAT_MANIP_SRC else NF_NAT_MANIP_SRC
    if not manip_pkt6(d, th + 8, other, inv):
        return False
    target = invert(other)
    if target is None:
        return True
    aoff = 8 if mtype == NF_NAT_MANIP_SRC else 24
    d[aoff:aoff + 16] = target[1] if mtype == NF_NAT_MANIP_SRC else target[2]
    d[th + 2] = d[th + 3] = 0
    seg = bytes(d[th:])
    total = _sum16(bytes(d[8:40])) + len(seg) + 58
    _p16(d, th + 2, inet_checksum(seg, total))
    return True


# -- hook entry for nat chains ----------------------------------------------------------
def nat_entry(run: Callable[[Any], int], make_ctx: Callable[[Any, Any], Any], policy: int,
              name: str) -> Callable[[PacketBuf, HookState], int]:
    """nf_nat_inet_fn() around a compiled nat chain: the chain only sees the first
    packet of a connection; every packet is then translated."""

    def entry(pkt: PacketBuf, st: HookState) -> int:
        c = pkt.ct
        if c is None:
            return NF_ACCEPT
        mtype = maniptype(st.hook)
        ci = pkt.ctinfo
        d = pkt.data
        if ci in (IP_CT_RELATED, IP_CT_RELATED_REPLY) and \
                (d[9] == 1 if st.pf == 4 else pktinfo(d, 6)[0] == 58):
            if not icmp_reply_translation(c, ci, st.hook, d):
                st.reason = DropReason.NAT_UNTRANSLATABLE
                return NF_DROP
            return local_reroute(pkt, st) if st.hook == Hook.LOCAL_OUT else NF_ACCEPT
        if ci in (IP_CT_NEW, IP_CT_RELATED, IP_CT_RELATED_REPLY) and not initialized(c, mtype):
            v = run(make_ctx(pkt, st))
            if v < 0:
                v = policy
            if v & 0xFF == NF_DROP:
                return NF_DROP
            if not initialized(c, mtype):
                null_binding(st.router, c, mtype)
        if not nat_packet(c, ci, st.hook, pkt.data):
            st.reason = DropReason.NAT_UNTRANSLATABLE
            return NF_DROP
        if st.hook == Hook.LOCAL_OUT:
            return local_reroute(pkt, st)
        return NF_ACCEPT
    return entry


def local_reroute(pkt: PacketBuf, st: HookState) -> int:
    """nf_nat_ipv4_local_fn / nf_nat_ipv6_local_fn after the translation: when this
    direction's destination is not where the other direction comes from (a DNAT at
    OUTPUT), the packet is routed again (ip_route_me_harder)."""
    c = pkt.ct
    if ci_dir(pkt.ctinfo) == DIR_ORIGINAL:
        here, other = c.orig, c.reply
    else:
        here, other = c.reply, c.orig
    if here[2] == other[1]:
        return NF_ACCEPT
    if st.pf == 4:
        from ..ip.output import ip_route_me_harder  # noqa: PLC0415 (ip imports netfilter)
        ok = ip_route_me_harder(st.router, pkt)
    else:
        from ..ip6.output import ip6_route_me_harder  # noqa: PLC0415
        ok = ip6_route_me_harder(st.router, pkt)
    if not ok:
        st.reason = DropReason.NO_ROUTE
        return NF_DROP
    return NF_ACCEPT


def ci_dir(ctinfo: int) -> int:
    """CTINFO2DIR()."""
    return DIR_REPLY if ctinfo >= IP_CT_IS_REPLY else DIR_ORIGINAL


def nat_step(kind: str, rng: NatRange) -> Callable[[Any], int]:
    """The snat/dnat/masquerade/redirect statements (nft_nat_eval, nft_masq_eval,
    nft_redir_eval): bind the connection, the verdict is accept."""

    def step(cx: Any) -> int:
        pkt, st = cx.pkt, cx.st
        c = pkt.ct
        if c is None or pkt.ctinfo not in (IP_CT_NEW, IP_CT_RELATED,
                                                          IP_CT_RELATED_REPLY):
            return NF_ACCEPT
        mtype = maniptype(st.hook)
        want = NF_NAT_MANIP_SRC if kind in ("snat", "masquerade") else NF_NAT_MANIP_DST
        if mtype != want:
            return NF_ACCEPT
        rg = rng
        if kind == "masquerade":
            port = st.outdev
            if port is None:
                return NF_DROP
            if st.pf == 6:
                ab6 = _addr6(port, bytes(pkt.data[24:40]))
                if ab6 is None:
                    st.reason = DropReason.NAT_UNTRANSLATABLE
                    return NF_DROP
                ab = ab6
            else:
                nh = pkt.nexthop or int.from_bytes(pkt.data[16:20], "big")
                a = port.primary_addr4(toward=nh)
                if a is None:
                    st.reason = DropReason.NAT_UNTRANSLATABLE
                    return NF_DROP
                ab = a.to_bytes(4, "big")
            rg = NatRange(ab, ab, rng.min_port, rng.max_port, rng.flags | NF_NAT_RANGE_MAP_IPS)
            c.masq = (port.ifindex, ab)
        elif kind == "redirect":
            if st.hook == Hook.LOCAL_OUT:
                ab = bytes((127, 0, 0, 1)) if st.pf == 4 else bytes(15) + b"\x01"
            else:
                port = st.indev
                if st.pf == 6:
                    ab6 = _addr6(port, bytes(pkt.data[8:24])) if port is not None else None
                    a = None
                else:
                    ab6 = None
                    a = port.primary_addr4() if port is not None else None
                if a is None and ab6 is None:
                    st.reason = DropReason.NAT_UNTRANSLATABLE
                    return NF_DROP
                ab = ab6 if ab6 is not None else a.to_bytes(4, "big")  # type: ignore[union-attr]
            rg = NatRange(ab, ab, rng.min_port, rng.max_port, rng.flags | NF_NAT_RANGE_MAP_IPS)
        return setup_info(st.router, c, rg, mtype)
    return step


def _addr6(port: Any, toward: bytes) -> bytes | None:
    """A simplified ipv6_dev_get_saddr(): the port's non-link-local address sharing the
    longest prefix with *toward*, else None."""
    want = int.from_bytes(toward, "big")
    best, blen = None, -1
    for a, _plen in port.addrs6:
        if a >> 118 == 0x3FA:                 # fe80::/10
            continue
        common = 128 - (a ^ want).bit_length()
        if common > blen:
            best, blen = a, common
    return best.to_bytes(16, "big") if best is not None else None


def masq_device_down(r: Router, ifindex: int) -> int:
    """masq_device_event(NETDEV_DOWN): the port went down (Router.set_link): kill every
    entry masqueraded through it (device_cmp on the masq ifindex; other entries through
    the port stay); the count killed."""
    ct = r.nf.conntrack
    n = 0
    for c in ct.entries():
        if c.masq is not None and c.masq[0] == ifindex:
            ct.kill(c)
            n += 1
    return n


def masq_cleanup(r: Router) -> int:
    """masq_inet_event()/masq_device_event(): kill masqueraded entries whose port or
    address is gone; the count killed."""
    ct = r.nf.conntrack
    n = 0
    for c in ct.entries():
        m = c.masq
        if m is None:
            continue
        port = r.ports.get(m[0])
        a = int.from_bytes(m[1], "big")
        if port is None or all(x != a for x, _ in (port.addrs4 if len(m[1]) == 4
                                                   else port.addrs6)):
            ct.kill(c)
            n += 1
    return n
