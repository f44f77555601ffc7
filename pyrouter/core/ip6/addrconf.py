"""addrconf: the router's IPv6 addresses per port (net/ipv6/addrconf.c, RFC 4862).

Every port gets a link-local address from its MAC (modified EUI-64,
addr_gen_mode 0) beside the configured ones.  Each address starts TENTATIVE and
runs Duplicate Address Detection (RFC 4862 5.4): after a random delay below
rtr_solicit_delay, dad_transmits Neighbour Solicitations from :: to the
solicited-node group (with a random Nonce option, enhanced_dad, RFC 7527: a probe
that comes back with our nonce is our own, looped back), one retrans_time apart;
with no answer one retrans_time
after the last, the address is usable (an unsolicited NA announces it when
ndisc_notify is on).  An NA for it, or a DAD NS from someone else, marks it
DADFAILED: it is never used (the kernel's IFA_F_DADFAILED).  accept_dad=0 or
dad_transmits=0 skips DAD.

A tentative address is neither a source nor a destination: packets to it are
dropped (RFC 4862 5.4 "silently discard"), NSes for it are not answered.

Multicast groups each port listens to (ipv6_dev_mc_inc): all-nodes ff02::1,
all-routers ff02::2 (forwarding) and the solicited-node group of each address.

Source address selection (ipv6_dev_get_saddr, RFC 6724 rules 1, 2, 5, 8
simplified): a usable address of the destination's scope, preferring the
outgoing port, then the longest common prefix.

Invariants: ``Router.local6`` holds exactly the usable (not tentative, not
failed) addresses of all ports; every port in ``Router.in6`` has a link-local.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...wire.ipv6 import ip6_str, is_linklocal6, solicited_node
from ..actions import Event
from ..time import SECOND

if TYPE_CHECKING:
    from ..router import Router

TENTATIVE = "tentative"
PERMANENT = "permanent"
DADFAILED = "dadfailed"


@dataclass(slots=True)
class Inet6Addr:
    addr: int
    plen: int
    state: str = TENTATIVE
    probes: int = 0
    deadline: int | None = None
    nonce: bytes = b""                 # enhanced DAD (RFC 7527): our probes' Nonce option

    @property
    def linklocal(self) -> bool:
        return is_linklocal6(self.addr)


@dataclass(slots=True)
class Inet6Dev:
    """inet6_dev: one port's IPv6 state."""

    ifindex: int
    addrs: list[Inet6Addr] = field(default_factory=list)
    groups: set[int] = field(default_factory=set)

    def find(self, addr: int) -> Inet6Addr | None:
        for a in self.addrs:
            if a.addr == addr:
                return a
        return None

    def usable(self) -> list[Inet6Addr]:
        return [a for a in self.addrs if a.state == PERMANENT]

    def linklocal(self) -> int | None:
        for a in self.addrs:
            if a.state == PERMANENT and a.linklocal:
                return a.addr
        return None


def add_addr6(r: Router, ifindex: int, addr: int, plen: int, now: int) -> None:
    """ipv6_add_addr() + addrconf_dad_start(); the routes come with it (the caller's
    FIB: local /128 in table local, the prefix in main)."""
    dev = r.in6[ifindex]
    if dev.find(addr) is not None:
        return
    a = Inet6Addr(addr, plen)
    dev.addrs.append(a)
    r.addrs6_all.add(addr)
    dev.groups.add(solicited_node(addr))
    s = r.sysctl6
    if not s.accept_dad or s.dad_transmits <= 0:
        _dad_completed(r, dev, a, now, announce=False)
        return
    a.probes = s.dad_transmits
    delay = int(r.rng.random() * s.rtr_solicit_delay * SECOND)
    _arm(r, dev, a, now + delay)


def _arm(r: Router, dev: Inet6Dev, a: Inet6Addr, deadline: int) -> None:
    a.deadline = deadline
    r.timers.schedule(deadline, ("dad", dev.ifindex, a.addr))


def dad_timer(r: Router, ifindex: int, addr: int, deadline: int, now: int) -> None:
    """addrconf_dad_work(): send the next probe, or declare the address unique."""
    from .ndisc import ndisc_send_ns  # noqa: PLC0415 (ndisc imports this module)

    dev = r.in6.get(ifindex)
    a = dev.find(addr) if dev else None
    if dev is None or a is None or a.deadline != deadline or a.state != TENTATIVE:
        return
    a.deadline = None
    if a.probes == 0:
        _dad_completed(r, dev, a, now, announce=r.sysctl6.ndisc_notify)
        if not any(x.state == TENTATIVE for d in r.in6.values() for x in d.addrs):
            r.events.append(Event("addrconf.ready", {"addresses": len(r.local6)}))
        return
    a.probes -= 1
    port = r.ports.get(ifindex)
    if port is not None and port.up:
        if not a.nonce:
            a.nonce = r.rng.getrandbits(48).to_bytes(6, "big")
        ndisc_send_ns(r, port, addr, solicited_node(addr), 0, now, dad=True, nonce=a.nonce)
    _arm(r, dev, a, now + r.neigh6.params.retrans_time)


def _dad_completed(r: Router, dev: Inet6Dev, a: Inet6Addr, now: int, announce: bool) -> None:
    from .ndisc import ndisc_send_unsol_na  # noqa: PLC0415
    from .ra import ra_start  # noqa: PLC0415

    a.state = PERMANENT
    r.local6.add(a.addr)
    r.fwd_cache.clear()
    port = r.ports.get(dev.ifindex)
    if port is not None and announce and port.up:
        ndisc_send_unsol_na(r, port, a.addr, now)
    if a.linklocal:
        ra_start(r, dev.ifindex, now)


def dad_failure(r: Router, ifindex: int, addr: int, why: str) -> None:
    """addrconf_dad_failure(): someone else has the address; never use it."""
    dev = r.in6.get(ifindex)
    a = dev.find(addr) if dev else None
    if a is None or a.state == DADFAILED:
        return
    a.state = DADFAILED
    a.deadline = None
    r.local6.discard(addr)
    r.fwd_cache.clear()
    port = r.ports.get(ifindex)
    r.events.append(Event("addrconf.dad_failed", {
        "dev": port.name if port else ifindex, "addr": ip6_str(addr), "why": why}))


def ipv6_dev_get_saddr(r: Router, ifindex: int | None, daddr: int) -> int | None:
    """A usable source for *daddr*: same scope, on the outgoing port first, then the
    longest common prefix."""
    want_ll = is_linklocal6(daddr)
    best: tuple[bool, int] | None = None
    chosen: int | None = None
    for idx, dev in r.in6.items():
        if want_ll and idx != ifindex:
            continue
        for a in dev.addrs:
            if a.state != PERMANENT or a.linklocal != want_ll:
                continue
            key = (idx == ifindex, min(128 - (a.addr ^ daddr).bit_length(), a.plen))
            if best is None or key > best:
                best, chosen = key, a.addr
    if chosen is None and not want_ll and ifindex is not None:
        # No global address anywhere: a link-local of the port (RFC 6724 rule 2
        # prefers an appropriate scope, but any source beats none).
        dev6 = r.in6.get(ifindex)
        return dev6.linklocal() if dev6 else None
    return chosen
