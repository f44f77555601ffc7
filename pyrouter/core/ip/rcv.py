"""ip_rcv(): validate an IPv4 packet, then route it (ip_route_input_slow()).

Checks in the kernel's order (ip_rcv_core, IP4-03..IP4-05): a full header,
version 4, ihl >= 5, header checksum, total length within the frame and at
least the header; L2 padding is trimmed to the total length.  Frames not
addressed to us at L2 (PACKET_OTHERHOST) are dropped before IP processing.

Route input (ip_route_input_slow):
* source multicast or limited broadcast -> martian source;
* destination limited broadcast (or 0.0.0.0 from 0.0.0.0) -> local broadcast delivery;
* source 0.0.0.0/8 -> martian source; destination 0.0.0.0/8 or 127/8 -> martian
  destination; source 127/8 -> martian source (class E sources are accepted,
  as in current kernels);
* then the FIB: local -> ip_local_deliver, broadcast -> local delivery as
  broadcast, unicast -> ip_forward, otherwise ip_error (ICMP code by route type,
  blackhole silent); for the first three the source is validated first
  (route/validate.py: one of our own addresses is a martian; rp_filter).
Before the martian checks, UDP to port 67 on a port with a DHCP server goes to
services/dhcp4.py ``dhcp4_hook`` (clients without an address send from 0.0.0.0).
Every drop is counted with its reason; no exception leaves this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...wire import icmpv4 as icmpw
from ...wire.addr import ip4_str
from ...wire.errors import MalformedError
from ...wire.ipv4 import check_header, set_checksum
from ..actions import Event
from ..drops import DropReason
from ..netfilter.hooks import Hook, nf_hook
from ..packet import PacketBuf, PktType
from ..route.fib import Route, RouteType
from ..route.flow import FlowKey
from ..route.validate import EXDEV, fib_validate_source
from ..services.dhcp4 import dhcp4_hook
from .forward import ip_forward
from .icmp import icmp_send, route_error_code
from .local import ip_local_deliver
from .options import OptionError, ip_options_compile

if TYPE_CHECKING:
    from ..port import Port
    from ..router import Router

_REASONS = {r.value: r for r in DropReason}
_ROUTE_DROP = {RouteType.BLACKHOLE: DropReason.ROUTE_BLACKHOLE,
               RouteType.UNREACHABLE: DropReason.ROUTE_UNREACHABLE,
               RouteType.PROHIBIT: DropReason.ROUTE_PROHIBIT}


def ip_rcv(r: Router, port: Port, frame: bytes, l3off: int, pkt_type: PktType,
           now: int) -> None:
    snmp = r.counters.snmp
    if pkt_type is PktType.OTHERHOST:
        r.drop(DropReason.OTHERHOST, port)
        return
    snmp["IpInReceives"] += 1
    try:
        ihl, total = check_header(frame, l3off, len(frame))
    except MalformedError as e:
        reason = _REASONS[e.reason]
        if e.detail.startswith("total length") and reason is DropReason.IP_TRUNCATED:
            snmp["IpExtInTruncatedPkts"] += 1        # frame shorter than tot_len
        else:
            snmp["IpInHdrErrors"] += 1
            if reason is DropReason.IP_CSUM_ERROR:
                snmp["IpExtInCsumErrors"] += 1
        r.drop(reason, port)
        return
    pkt = PacketBuf(bytearray(frame[l3off:l3off + total]), iif=port.ifindex,
                    pkt_type=pkt_type, ihl=ihl, l2_src=frame[6:12])
    if r.trace is not None:
        d = pkt.data
        r.note("ip_rcv", src=ip4_str(d[12:16]), dst=ip4_str(d[16:20]), proto=d[9], ttl=d[8],
               len=total, ihl=ihl, id=(d[4] << 8) | d[5], flags_frag=f"0x{(d[6] << 8) | d[7]:04x}",
               checks="ok")
    pre = r.nf.v4[0]
    if pre and not nf_hook(r, pre, Hook.PRE_ROUTING, 4, pkt, port, None, now,
                           lambda t: ip_route_input(r, pkt, port, t)):
        return
    ip_route_input(r, pkt, port, now)


def ip_route_input(r: Router, pkt: PacketBuf, port: Port, now: int) -> None:
    data = pkt.data
    if r.dhcp4 and data[9] == 17 and dhcp4_hook(r, port, pkt, now):
        return None              # a DHCP server's request: answered before the martian checks
    src = int.from_bytes(data[12:16], "big")
    dst = int.from_bytes(data[16:20], "big")
    s8 = src >> 24
    if 224 <= s8 < 240 or src == 0xFFFFFFFF:         # multicast or limited broadcast
        return _martian(r, port, data, now, DropReason.MARTIAN_SRC)
    if dst == 0xFFFFFFFF or (src == 0 and dst == 0):
        return ip_local_deliver(r, pkt, now, broadcast=True)
    if s8 == 0:
        return _martian(r, port, data, now, DropReason.MARTIAN_SRC)
    d8 = dst >> 24
    if d8 == 0 or d8 == 127:
        return _martian(r, port, data, now, DropReason.MARTIAN_DST)
    if s8 == 127:
        return _martian(r, port, data, now, DropReason.MARTIAN_SRC)
    if d8 >= 224 and d8 < 240:
        # Multicast: not joined to any group yet, and no multicast routing.
        r.drop(DropReason.MARTIAN_DST, port)
        return
    sport = dport = 0
    if r.fib.uses_ports and data[9] in (6, 17) and not ((data[6] << 8) | data[7]) & 0x1FFF \
            and len(data) >= pkt.ihl + 4:
        sport = (data[pkt.ihl] << 8) | data[pkt.ihl + 1]
        dport = (data[pkt.ihl + 2] << 8) | data[pkt.ihl + 3]
    route = r.fib.lookup(FlowKey(4, dst, src, iif=port.ifindex, tos=data[1] & 0x1E,
                                 mark=pkt.mark, proto=data[9], sport=sport, dport=dport),
                         r.route_usable)
    kind = route.type if route is not None else None
    pkt.route = route
    if r.trace is not None:
        r.note("fib_lookup", **route_note(r, route))
    tos = data[1] & 0x1E
    if kind is RouteType.LOCAL or kind is RouteType.BROADCAST:
        if _source_invalid(r, port, src, 0, tos, data, now) or \
                (pkt.ihl > 20 and _options_bad(r, pkt, now)):
            return None
        return ip_local_deliver(r, pkt, now, broadcast=kind is RouteType.BROADCAST)
    if kind is RouteType.UNICAST and route is not None and port.forwarding:
        if _source_invalid(r, port, src, route.oif, tos, data, now) or \
                (pkt.ihl > 20 and _options_bad(r, pkt, now)):
            return None
        return ip_forward(r, pkt, route, now)
    # ip_error(): ICMP chosen by the route type, only while forwarding is on.
    if route is None:
        r.counters.snmp["IpExtInNoRoutes"] += 1
        reason = DropReason.NO_ROUTE
    else:
        reason = _ROUTE_DROP.get(route.type, DropReason.NO_ROUTE)
    code = route_error_code(kind)
    if code is not None and port.forwarding and r.icmp_limiter.ip_error_allow(src, now):
        icmp_send(r, pkt, icmpw.ICMP_DEST_UNREACH, code, 0, now)
    r.drop(reason, port)


def route_note(r: Router, route: Route | None) -> dict[str, object]:
    """A route as a trace step shows it: table, prefix, type, device, gateway."""
    if route is None:
        return {"result": "no route", "tables": [rule.table for rule in r.fib.rules]}
    d: dict[str, object] = {"table": route.table, "route": f"{ip4_str(route.dst)}/{route.plen}",
                            "type": route.type.value, "metric": route.metric}
    port = r.ports.get(route.oif)
    if port is not None:
        d["dev"] = port.name
    if route.gateway is not None:
        d["gateway"] = ip4_str(route.gateway)
    return d


def _options_bad(r: Router, pkt: PacketBuf, now: int) -> bool:
    """ip_rcv_options(): compile the options (Parameter Problem if malformed) and drop
    source-routed packets (accept_source_route = 0)."""
    try:
        st = ip_options_compile(pkt.data, pkt.ihl, r.ms_of_day(now), r.local4)
    except OptionError as e:
        r.counters.snmp["IpInHdrErrors"] += 1
        if r.trace is not None:
            r.note("ip_options", error_at=e.pointer)
        icmp_send(r, pkt, icmpw.ICMP_PARAMETERPROB, 0, e.pointer, now)
        r.drop(DropReason.IP_OPTIONS_ERROR, r.ports.get(pkt.iif))
        return True
    if st.changed:
        set_checksum(pkt.data, 0, pkt.ihl)
    if st.srr:
        r.drop(DropReason.SOURCE_ROUTE, r.ports.get(pkt.iif))
        return True
    pkt.opts = st
    return False


def _source_invalid(r: Router, port: Port, src: int, oif: int, tos: int,
                    pkt_data: bytearray, now: int) -> bool:
    """fib_validate_source(), counted: a martian source or a reverse-path failure."""
    v = fib_validate_source(r, port, src, 0, tos, oif)
    if v >= 0:
        return False
    if v == EXDEV:
        r.counters.snmp["TcpExtIPReversePathFilter"] += 1
        r.drop(DropReason.RP_FILTER, port)
    else:
        _martian(r, port, pkt_data, now, DropReason.MARTIAN_SRC)
    return True


def _martian(r: Router, port: Port, data: bytearray, now: int, reason: DropReason) -> None:
    r.counters.snmp["IpInAddrErrors"] += 1
    r.drop(reason, port)
    if r.sysctl.log_martians and r.martian_log_allow(now):
        # ip_handle_martian_source() / "martian destination": logged when log_martians
        # is on, through a rate limit (the kernel's net_ratelimit: 10 per 5 s).
        r.events.append(Event("martian.source" if reason is DropReason.MARTIAN_SRC
                              else "martian.destination",
                              {"src": ip4_str(data[12:16]), "dst": ip4_str(data[16:20]),
                               "dev": port.name}))
