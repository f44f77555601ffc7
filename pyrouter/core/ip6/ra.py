"""Router Advertisements for the hosts on a port (RFC 4861 sections 6.2.2-6.2.6, RFC 8106).

The kernel leaves this to a daemon (radvd); pyrouter does it itself, per port with
``ra`` configured, once the port's link-local address has passed DAD:

* unsolicited RAs at intervals drawn uniformly from [MinRtrAdvInterval,
  MaxRtrAdvInterval]; the first MAX_INITIAL_RTR_ADVERTISEMENTS (3) at most
  MAX_INITIAL_RTR_ADVERT_INTERVAL (16 s) apart;
* a Router Solicitation is answered after a random delay of at most
  MAX_RA_DELAY_TIME (0.5 s): unicast to a sender with an address (as radvd's
  AdvRASolicitedUnicast), else multicast, and multicast RAs stay at least
  MIN_DELAY_BETWEEN_RAS (3 s) apart;
* contents: Cur Hop Limit, M/O flags, Router Lifetime, Reachable Time, Retrans
  Timer, our source lladdr, the MTU option when configured, one Prefix Information
  option per configured prefix (by default every global prefix of the port with
  L=1 A=1) and RDNSS when configured; from the link-local address to ff02::1 with
  hop limit 255.

Timers: ("ra", ifindex) in the core's TimerQueue; ``RaState.deadline`` is the live one.
Invariant: at most one pending deadline per port; nothing is sent on a port that is
down or has no usable link-local address.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...wire import ndisc as nd
from ...wire.ipv6 import ALL_NODES
from ..time import SECOND
from .icmp6 import send_icmp6
from .sysctl import RaConfig, RaPrefix

if TYPE_CHECKING:
    from ..router import Router

MAX_INITIAL_RTR_ADVERTISEMENTS = 3
MAX_INITIAL_RTR_ADVERT_INTERVAL = 16 * SECOND
MAX_RA_DELAY_TIME = SECOND // 2
MIN_DELAY_BETWEEN_RAS = 3 * SECOND


@dataclass(slots=True)
class RaState:
    initial_left: int = MAX_INITIAL_RTR_ADVERTISEMENTS
    deadline: int | None = None
    last_mcast: int | None = None
    unicast_to: list[int] | None = None      # pending solicited unicast answers
    sent: int = 0


def _interval(r: Router, cfg: RaConfig, st: RaState) -> int:
    lo, hi = cfg.min_rtr_adv_interval * SECOND, cfg.max_rtr_adv_interval * SECOND
    ival = int(lo + r.rng.random() * (hi - lo))
    if st.initial_left > 0:
        ival = min(ival, MAX_INITIAL_RTR_ADVERT_INTERVAL)
    return ival


def _arm(r: Router, ifindex: int, st: RaState, deadline: int) -> None:
    st.deadline = deadline
    r.timers.schedule(deadline, ("ra", ifindex))


def ra_start(r: Router, ifindex: int, now: int) -> None:
    """The link-local address became usable: advertise now (the first initial RA)."""
    if ifindex not in r.sysctl6.ra:
        return
    st = r.ra_state.setdefault(ifindex, RaState())
    _arm(r, ifindex, st, now)


def ra_solicited(r: Router, ifindex: int, src: int, now: int) -> None:
    st = r.ra_state.get(ifindex)
    if st is None:
        return                                   # not advertising yet (DAD running)
    delay = int(r.rng.random() * MAX_RA_DELAY_TIME)
    if src:
        st.unicast_to = (st.unicast_to or []) + [src]
        if len(st.unicast_to) > 64:              # bound: the oldest pending answers go
            del st.unicast_to[:-64]
        r.timers.schedule(now + delay, ("ra-unicast", ifindex))
        return
    at = now + delay
    if st.last_mcast is not None:
        at = max(at, st.last_mcast + MIN_DELAY_BETWEEN_RAS)
    if st.deadline is None or at < st.deadline:
        _arm(r, ifindex, st, at)


def ra_timer(r: Router, ifindex: int, deadline: int, now: int) -> None:
    cfg = r.sysctl6.ra.get(ifindex)
    st = r.ra_state.get(ifindex)
    if cfg is None or st is None or st.deadline != deadline:
        return
    st.deadline = None
    send_ra(r, ifindex, ALL_NODES, cfg, now)
    st.last_mcast = now
    if st.initial_left > 0:
        st.initial_left -= 1
    _arm(r, ifindex, st, now + _interval(r, cfg, st))


def ra_unicast_timer(r: Router, ifindex: int, now: int) -> None:
    cfg = r.sysctl6.ra.get(ifindex)
    st = r.ra_state.get(ifindex)
    if cfg is None or st is None or not st.unicast_to:
        return
    for dst in st.unicast_to:
        send_ra(r, ifindex, dst, cfg, now)
    st.unicast_to = None


def ra_message(r: Router, ifindex: int, cfg: RaConfig, lifetime: int | None = None) -> bytes:
    port = r.ports[ifindex]
    opts = bytearray(bytes([nd.ND_OPT_SOURCE_LL_ADDR, 1]) + port.mac)
    if cfg.mtu:
        opts += nd.mtu_option(cfg.mtu)
    if cfg.prefixes is not None:
        prefixes = cfg.prefixes
    else:
        dev = r.in6.get(ifindex)
        seen: list[RaPrefix] = []
        for a in dev.addrs if dev else ():
            if a.linklocal or a.plen != 64:
                continue
            net = a.addr & ~((1 << 64) - 1)
            if all(p.prefix != net for p in seen):
                seen.append(RaPrefix(net, 64))
        prefixes = tuple(seen)
    for p in prefixes:
        flags = (nd.PI_ONLINK if p.on_link else 0) | (nd.PI_AUTONOMOUS if p.autonomous else 0)
        opts += nd.prefix_option(p.prefix, p.plen, flags, p.valid_lifetime,
                                 p.preferred_lifetime)
    if cfg.rdnss:
        opts += nd.rdnss_option(list(cfg.rdnss), cfg.rdnss_lifetime
                                or int(3 * cfg.max_rtr_adv_interval))
    flags = (nd.RA_MANAGED if cfg.managed else 0) | (nd.RA_OTHER if cfg.other_config else 0)
    return nd.build_ra(cfg.cur_hop_limit, flags,
                       cfg.default_lifetime if lifetime is None else lifetime,
                       cfg.reachable_time, cfg.retrans_timer, bytes(opts))


def send_ra(r: Router, ifindex: int, dst: int, cfg: RaConfig, now: int,
            lifetime: int | None = None) -> bool:
    port = r.ports.get(ifindex)
    dev = r.in6.get(ifindex)
    ll = dev.linklocal() if dev else None
    if port is None or not port.up or ll is None:
        return False
    st = r.ra_state.get(ifindex)
    if st is not None:
        st.sent += 1
    return send_icmp6(r, ra_message(r, ifindex, cfg, lifetime), dst, ll, 134, now,
                      oif=ifindex, hop_limit=255)


def ra_shutdown(r: Router, now: int) -> None:
    """RFC 4861 6.2.5: a final RA with Router Lifetime 0 on every advertising port."""
    for ifindex, cfg in r.sysctl6.ra.items():
        if ifindex in r.ra_state:
            send_ra(r, ifindex, ALL_NODES, cfg, now, lifetime=0)
