"""fib_validate_source(): is this packet's source acceptable on the port it came in on?

As net/ipv4/fib_frontend.c does it, for the input route of a packet:

* rp_filter off, only the default rules, and not a packet leaving by the port
  it came in on (with send_redirects): the only check is that the source is
  not one of our own addresses (-EINVAL, a martian source);
* otherwise the full check: look the *source* up as a destination (the reverse
  route, flow from the packet's destination, iif = the packet's output port or
  lo).  No route or a reject route (fib_lookup() fails): -EXDEV under
  rp_filter, else fine.  Another route that is not unicast (our own address,
  a broadcast address): -EINVAL.  A
  unicast route through the input port: fine, and 1 when it has no gateway
  (the source is on-link: what lets a redirect be sent).  Through another port:
  -EXDEV in strict mode (1), fine in loose mode (2).

Returns 1, 0, EINVAL or EXDEV (negative).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .fib import RouteType
from .flow import FlowKey

if TYPE_CHECKING:
    from ..port import Port
    from ..router import Router

EINVAL = -22
EXDEV = -18
_REJECT = frozenset({RouteType.BLACKHOLE, RouteType.UNREACHABLE, RouteType.PROHIBIT})


def fib_validate_source(r: Router, port: Port, src: int, dst: int, tos: int, oif: int) -> int:
    rpf = r.sysctl.rp_filter
    if not rpf and not r.fib.custom_rules and (port.ifindex != oif or not r.sysctl.send_redirects):
        return EINVAL if src in r.local4 else 0
    rt = r.fib.lookup(FlowKey(4, src, dst, iif=oif, tos=tos), r.route_usable)
    if rt is None or rt.type in _REJECT:
        # fib_lookup() fails for no route and for reject routes alike: "last_resort".
        return EXDEV if rpf else 0
    if rt.type is not RouteType.UNICAST:
        return EINVAL
    if rt.oif == port.ifindex:
        return 1 if rt.gateway is None else 0
    if not port.addrs4:
        return EXDEV if rpf else 0
    if rpf == 1:
        return EXDEV
    return 0
