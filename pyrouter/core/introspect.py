"""What the operator sees: the router's state as plain data (``ip link``, ``ip addr``,
``ip route``, ``ip neigh``, ``nstat``) and ``route get`` (``ip route get``).

Everything here reads the Router and returns JSON-ready dicts; nothing changes
state.  ``route_get`` runs the same lookup a packet would (FlowKey into
Fib.lookup, the same nexthop and source selection as ip_local_out, the same
MTU as ip_forward) so that its answer is what a real packet then gets.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, Any

from .ip.pmtu import path_mtu
from .route.fib import RT_TABLE_DEFAULT, RT_TABLE_LOCAL, RT_TABLE_MAIN, Route, RouteType
from .route.flow import FlowKey
from .time import SECOND

if TYPE_CHECKING:
    from .router import Router

TABLE_NAMES = {RT_TABLE_LOCAL: "local", RT_TABLE_MAIN: "main", RT_TABLE_DEFAULT: "default"}


def addr_str(family: int, addr: int) -> str:
    return str(IPv4Address(addr) if family == 4 else IPv6Address(addr))


def table_name(table: int, r: Router | None = None) -> str:
    if r is not None and table in r.fib.table_names:
        return r.fib.table_names[table]
    return TABLE_NAMES.get(table, str(table))


def route_dict(r: Router, rt: Route) -> dict[str, Any]:
    port = r.ports.get(rt.oif)
    d: dict[str, Any] = {
        "type": rt.type.value, "dst": f"{addr_str(rt.family, rt.dst)}/{rt.plen}",
        "family": rt.family, "table": table_name(rt.table, r), "protocol": rt.proto,
        "scope": rt.scope.name.lower(), "metric": rt.metric,
    }
    if port is not None:
        d["dev"] = port.name
    if rt.gateway is not None:
        d["gateway"] = addr_str(rt.family, rt.gateway)
    if rt.prefsrc is not None:
        d["prefsrc"] = addr_str(rt.family, rt.prefsrc)
    if rt.mtu:
        d["mtu"] = rt.mtu
    if rt.advmss:
        d["advmss"] = rt.advmss
    if port is not None and not port.up:
        d["flags"] = ["dead", "linkdown"]
    if rt.paths:
        d.pop("dev", None)
        d["nexthops"] = [{"gateway": addr_str(p.family, p.gateway) if p.gateway is not None
                          else None, "dev": r.ports[p.oif].name if p.oif in r.ports else p.oif,
                          "weight": w, "dead": not r.route_usable(p)}
                         for p, w in zip(rt.paths, rt.weights, strict=True)]
    return d


def links(r: Router) -> list[dict[str, Any]]:
    return [{"ifindex": p.ifindex, "ifname": p.name, "address": p.mac.hex(":"), "mtu": p.mtu,
             "operstate": "UP" if p.up else "DOWN", "stats": p.counters()}
            for p in r.ports.values()]


def addrs(r: Router) -> list[dict[str, Any]]:
    out = []
    for p in r.ports.values():
        infos = []
        for a, plen in p.addrs4:
            mask = (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF
            info: dict[str, Any] = {"family": "inet", "local": addr_str(4, a), "prefixlen": plen,
                                    "scope": "global"}
            if plen < 31:
                info["broadcast"] = addr_str(4, (a & mask) | (~mask & 0xFFFFFFFF))
            infos.append(info)
        dev6 = r.in6.get(p.ifindex)
        for a6 in dev6.addrs if dev6 else ():
            info6: dict[str, Any] = {"family": "inet6", "local": addr_str(6, a6.addr),
                                     "prefixlen": a6.plen,
                                     "scope": "link" if a6.linklocal else "global"}
            if a6.state != "permanent":
                info6[a6.state] = True          # tentative / dadfailed, as iproute2's JSON
            infos.append(info6)
        out.append({"ifindex": p.ifindex, "ifname": p.name, "mtu": p.mtu,
                    "operstate": "UP" if p.up else "DOWN", "address": p.mac.hex(":"),
                    "addr_info": infos})
    return out


def route_objects(r: Router, table: str = "main", family: int = 4) -> list[Route]:
    """The routes of ``ip [-6] route show table X`` (``all`` for every table; family 0
    for both), as objects: a cheap list of references the caller may turn into dicts a
    chunk at a time."""
    out: list[Route] = []
    for tid in sorted(r.fib.tables, reverse=True):
        if table == "all" or table_name(tid, r) == table or str(tid) == table:
            out.extend(r.fib.tables[tid].routes(family or None))
    return out


def routes(r: Router, table: str = "main", family: int = 4) -> list[dict[str, Any]]:
    """``ip [-6] route show table X`` (``all`` for every table)."""
    return [route_dict(r, rt) for rt in route_objects(r, table, family)]


def rules(r: Router) -> list[dict[str, Any]]:
    """``ip rule``: priority, selectors and action of every rule, in order."""
    names = {p.ifindex: p.name for p in r.ports.values()}
    out = []
    for rule in r.fib.rules:
        fam = rule.family or 4
        d: dict[str, Any] = {"priority": rule.priority,
                             "src": f"{addr_str(fam, rule.src[0])}/{rule.src[1]}" if rule.src
                             else "all"}
        if rule.dst:
            d["dst"] = f"{addr_str(fam, rule.dst[0])}/{rule.dst[1]}"
        if rule.iif is not None:
            d["iif"] = "lo" if rule.iif == 0 else names.get(rule.iif, rule.iif)
        if rule.oif is not None:
            d["oif"] = names.get(rule.oif, rule.oif)
        if rule.fwmark is not None:
            d["fwmark"] = f"0x{rule.fwmark:x}" + (f"/0x{rule.fwmask:x}"
                                                   if rule.fwmask != 0xFFFFFFFF else "")
        if rule.tos is not None:
            d["tos"] = f"0x{rule.tos:02x}"
        if rule.ipproto is not None:
            d["ipproto"] = rule.ipproto
        for key in ("sport", "dport"):
            rng = getattr(rule, key)
            if rng is not None:
                d[key] = str(rng[0]) if rng[0] == rng[1] else f"{rng[0]}-{rng[1]}"
        if rule.action == "lookup":
            d["table"] = table_name(rule.table, r)
            if rule.suppress_prefixlength >= 0:
                d["suppress_prefixlength"] = rule.suppress_prefixlength
        elif rule.action == "goto":
            d["goto"] = rule.goto
        else:
            d["action"] = rule.action
        out.append(d)
    return out


def neighbours(r: Router, now: int) -> list[dict[str, Any]]:
    """``ip -s neigh``: state, lladdr, probes and the used/confirmed/updated ages in seconds
    (a never-confirmed entry shows its creation age plus 2 * base_reachable_time, as the
    kernel's entries start "confirmed" that long ago)."""
    out = []
    entries = [(4, e) for e in r.neigh4.entries.values()]
    entries += [(6, e) for e in r.neigh6.entries.values()]
    for fam, e in entries:
        port = r.ports.get(e.ifindex)
        d: dict[str, Any] = {"dst": addr_str(fam, e.addr), "dev": port.name if port else e.ifindex,
                             "state": e.state.value, "probes": e.probes,
                             "used": (now - e.used) // SECOND,
                             "confirmed": (now - e.confirmed) // SECOND,
                             "updated": (now - e.updated) // SECOND, "queued": len(e.queue)}
        if e.lladdr is not None:
            d["lladdr"] = e.lladdr.hex(":")
        if e.deadline is not None:
            d["timer_ms"] = max(0, (e.deadline - now) // 1_000_000)
        out.append(d)
    return out


def neigh_tables(r: Router) -> list[dict[str, Any]]:
    """``ip -s ntable show`` + /proc/net/stat/arp_cache: each neighbour table's thresholds,
    counts, statistics and the parameters of every port (kernel names and units)."""
    out = []
    for name, t in (("arp_cache", r.neigh4), ("ndisc_cache", getattr(r, "neigh6", None))):
        if t is None:
            continue
        states: dict[str, int] = {}
        for e in t.entries.values():
            states[e.state.value] = states.get(e.state.value, 0) + 1
        stats = dict(t.stats)
        stats["hash_grows"] = None           # a dict: nothing to grow (n/a)
        stats["entries"] = len(t.entries)
        parms = []
        for idx, p in sorted(((i, t.parms(i)) for i in r.ports), key=lambda x: x[0]):
            parms.append({
                "dev": r.ports[idx].name, "reachable_time_ms": t.reach_time(idx) // 1_000_000,
                "base_reachable_time_ms": p.base_reachable_time // 1_000_000,
                "retrans_time_ms": p.retrans_time // 1_000_000,
                "delay_first_probe_time": p.delay_first_probe_time // SECOND,
                "gc_stale_time": p.gc_stale_time // SECOND, "ucast_probes": p.ucast_probes,
                "mcast_probes": p.mcast_probes, "app_probes": p.app_probes,
                "locktime": p.locktime // (SECOND // 100),
                "unres_qlen_bytes": p.unres_qlen_bytes,
                "proxy_delay": p.proxy_delay // (SECOND // 100), "proxy_qlen": p.proxy_qlen,
                "proxy_arp": r.ports[idx].proxy_arp if t is r.neigh4 else None})
        out.append({"name": name, "gc_thresh1": t.table.gc_thresh1,
                    "gc_thresh2": t.table.gc_thresh2, "gc_thresh3": t.table.gc_thresh3,
                    "gc_interval": t.table.gc_interval // SECOND, "entries": len(t.entries),
                    "gc_entries": t.gc_entries, "states": states, "stats": stats,
                    "parms": parms})
    return out


def route_get(r: Router, dst: int, src: int | None = None, iif: str | None = None,
              mark: int = 0, now: int = 0) -> dict[str, Any]:
    """``ip route get DST [from SRC] [iif IF] [mark N]``.

    Without ``iif`` this is an output lookup (the router's own traffic); with
    it, an input lookup for a packet arriving on that port.  Errors are the
    kernel's: "Network is unreachable" (no route), "No route to host"
    (unreachable), "Permission denied" (prohibit), "Invalid argument" (blackhole).
    """
    in_port = None
    if iif is not None:
        in_port = r.ports_by_name.get(iif)
        if in_port is None:
            return {"error": f"Cannot find device \"{iif}\""}
    flow = FlowKey(4, dst, src or 0, iif=in_port.ifindex if in_port else 0, mark=mark)
    rt = r.fib.lookup(flow, r.route_usable)
    res: dict[str, Any] = {"dst": addr_str(4, dst)}
    if src is not None:
        res["from"] = addr_str(4, src)
    if in_port is not None:
        res["iif"] = in_port.name
    if mark:
        res["mark"] = mark
    if rt is None:
        res["error"] = "Network is unreachable"
        return res
    res["type"] = rt.type.value
    res["table"] = table_name(rt.table, r)
    res["prefix"] = f"{addr_str(4, rt.dst)}/{rt.plen}"
    errors = {RouteType.UNREACHABLE: "No route to host", RouteType.PROHIBIT: "Permission denied",
              RouteType.BLACKHOLE: "Invalid argument"}
    if rt.type in errors:
        res["error"] = errors[rt.type]
        return res
    port = r.ports.get(rt.oif)
    if port is not None:
        res["dev"] = port.name
        if rt.type is RouteType.UNICAST:
            nexthop = rt.gateway if rt.gateway is not None else dst
            if rt.gateway is not None:
                res["gateway"] = addr_str(4, rt.gateway)
            if in_port is None:          # an input lookup has no source to choose
                s = src if src is not None else (rt.prefsrc or port.primary_addr4(toward=nexthop))
                if s is not None:
                    res["prefsrc"] = addr_str(4, s)
            own = in_port is None               # the router's own traffic uses what it learned
            res["mtu"] = path_mtu(r, rt, port, dst, now,
                                  own or r.sysctl.ip_forward_use_pmtu)
            exc = r.fnhe.get(rt.oif, rt.gateway or 0, dst, now)
            if exc is not None:
                res["cache"] = {"expires": max(0, (exc.expires - now) // SECOND),
                                "mtu": exc.pmtu, "locked": exc.locked}
                if exc.redirect_gw and own:
                    res["gateway"] = addr_str(4, exc.redirect_gw)
                    res["cache"]["redirected"] = True
            e = r.neigh4.get(port.ifindex, nexthop)
            res["neigh"] = {"addr": addr_str(4, nexthop),
                            "state": e.state.value if e else "NONE",
                            "lladdr": e.lladdr.hex(":") if e and e.lladdr else None}
        elif rt.type is RouteType.LOCAL:
            res["prefsrc"] = addr_str(4, dst)
    return res


def route_get6(r: Router, dst: int, src: int | None = None,
               iif: str | None = None, now: int = 0) -> dict[str, Any]:
    """``ip -6 route get DST [from SRC] [iif IF]``: the lookup, source, MTU and neighbour
    an IPv6 packet gets (link-local destinations need ``iif``: they have no route)."""
    from .ip6.addrconf import ipv6_dev_get_saddr  # noqa: PLC0415

    in_port = r.ports_by_name.get(iif) if iif is not None else None
    if iif is not None and in_port is None:
        return {"error": f"Cannot find device \"{iif}\""}
    res: dict[str, Any] = {"dst": addr_str(6, dst)}
    if src is not None:
        res["from"] = addr_str(6, src)
    if in_port is not None:
        res["iif"] = in_port.name
    if dst in r.local6:
        res.update(type="local", table="local", prefix=f"{addr_str(6, dst)}/128")
        return res
    rt = r.fib.lookup(FlowKey(6, dst, src or 0, iif=in_port.ifindex if in_port else 0),
                      r.route_usable)
    if rt is None:
        res["error"] = "Network is unreachable"
        return res
    res.update(type=rt.type.value, table=table_name(rt.table, r),
               prefix=f"{addr_str(6, rt.dst)}/{rt.plen}")
    errors = {RouteType.UNREACHABLE: "Network is unreachable",
              RouteType.PROHIBIT: "Permission denied", RouteType.BLACKHOLE: "Invalid argument"}
    if rt.type in errors:
        res["error"] = errors[rt.type]
        return res
    port = r.ports.get(rt.oif)
    if port is None:
        return res
    res["dev"] = port.name
    nexthop = rt.gateway if rt.gateway is not None else dst
    if rt.gateway is not None:
        res["gateway"] = addr_str(6, rt.gateway)
    if in_port is None:
        s = src if src is not None else ipv6_dev_get_saddr(r, port.ifindex, dst)
        if s is not None:
            res["prefsrc"] = addr_str(6, s)
    res["mtu"] = max(rt.mtu or port.mtu, 1280)
    exc = r.fnhe.get(rt.oif, rt.gateway or 0, dst, now) if in_port is None else None
    if exc is not None and exc.pmtu:
        res["mtu"] = exc.pmtu
        res["cache"] = {"expires": max(0, (exc.expires - now) // SECOND), "mtu": exc.pmtu,
                        "locked": exc.locked}
    e = r.neigh6.get(port.ifindex, nexthop)
    res["neigh"] = {"addr": addr_str(6, nexthop), "state": e.state.value if e else "NONE",
                    "lladdr": e.lladdr.hex(":") if e and e.lladdr else None}
    return res
