"""Build core objects from a validated config (pure: no devices, no clock).

Semantic checks, each a ConfigError with its key path, all before the shell
touches a device:
* an address appears once across all interfaces;
* a route's ``dev`` names a configured interface;
* a unicast route needs ``via`` or ``dev``; reject types take neither ``via``
  nor ``dev`` (as ``ip route add unreachable ...``);
* a gateway must be on-link: inside a connected IPv4/IPv6 subnet (of ``dev``
  when given), or the kernel's "Nexthop has invalid gateway" applies;
* ``peer`` requires ``netns``;
* a rule has exactly one action (table, goto or type), a goto points to a later
  priority, and its interfaces exist (``iif lo`` means the router's own traffic);
* a static neighbour names a configured interface, appears once per interface,
  and is a unicast address that is not the router's own (IPv4: not 0/8, 127/8,
  multicast or broadcast).
Ports get ifindex 1..N in config order.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Any

from ..core.ip6.sysctl import Ipv6Sysctl, RaConfig, RaPrefix
from ..core.link.neighbour import NeighParams, NeighTableParams
from ..core.port import Port
from ..core.time import MILLISECOND, SECOND
from ..core.route.fib import Route, RouteType, Scope
from ..core.route.lookup import PolicyRule
from ..core.router import Router
from ..core.sysctl import Ipv4Sysctl
from ..wire.addr import mac_from_str, stable_mac
from .services_build import build_dhcp, build_dns, check_dhcp, check_dns
from .load import ConfigError
from .port_check import check_kinds
from .nf_build import build_netfilter
from .routes_file import parse_routes
from .schema import Config, Interface, NeighKnobs, NeighTable

DEFAULT_MTU = 1500


@dataclass(frozen=True, slots=True)
class PortPlan:
    """What the shell needs to open and set up one TAP."""

    ifindex: int
    name: str
    mac: bytes
    mtu: int
    netns: str | None
    config: Interface


def plan_ports(cfg: Config, ifindexes: dict[str, int] | None = None) -> list[PortPlan]:
    """Ports in config order.  *ifindexes* keeps the numbers of ports that exist
    already (a reload); new ports get numbers above every number in use."""
    ifindexes = ifindexes or {}
    next_free = max(ifindexes.values(), default=0) + 1
    out = []
    for name, itf in cfg.interfaces.items():
        idx = ifindexes.get(name)
        if idx is None:
            idx, next_free = next_free, next_free + 1
        mac = mac_from_str(itf.macaddress) if itf.macaddress else stable_mac(name)
        out.append(PortPlan(idx, name, mac, itf.mtu or DEFAULT_MTU, itf.netns, itf))
    return out


def check(cfg: Config, file: str = "<config>",
          ifindexes: dict[str, int] | None = None) -> list[PortPlan]:
    """All semantic checks; returns the port plan."""
    check_kinds(cfg, file)
    plans = plan_ports(cfg, ifindexes)
    seen: dict[Any, str] = {}
    macs: dict[bytes, str] = {}
    for p in plans:
        if p.mac in macs:
            raise ConfigError(file, f"interfaces.{p.name}.macaddress",
                              f"same MAC as interface {macs[p.mac]}")
        macs[p.mac] = p.name
        for j, a in enumerate(p.config.addresses):
            where = f"interfaces.{p.name}.addresses[{j}]"
            if a.ip in seen:
                raise ConfigError(file, where, f"{a.ip} is already on {seen[a.ip]}")
            if a.version == 4 and (a.ip.is_multicast or a.ip.is_loopback or a.ip.is_unspecified
                                   or a.ip == IPv4Address("255.255.255.255")):
                raise ConfigError(file, where, f"{a.ip} cannot be an interface address")
            seen[a.ip] = p.name
        if p.config.peer is not None and p.netns is None:
            raise ConfigError(file, f"interfaces.{p.name}.peer", "peer needs netns")
    for p in plans:
        check_dhcp(p.name, p.config, file, set(seen))
    check_dns(cfg, plans, file, set(seen))
    names = {p.name: p for p in plans}
    for i, rc in enumerate(cfg.routes):
        where = f"routes[{i}]"
        if rc.dev is not None and rc.dev not in names:
            raise ConfigError(file, f"{where}.dev", f"no interface named {rc.dev!r}")
        if rc.src is not None and rc.src not in seen:
            # "Invalid prefsrc address": it must be one of the router's own addresses.
            raise ConfigError(file, f"{where}.src", f"{rc.src} is not an address of this router")
        if rc.nexthops is not None:
            if rc.type != "unicast" or rc.via is not None or rc.dev is not None:
                raise ConfigError(file, f"{where}.nexthops",
                                  "a multipath route is unicast, with no via/dev of its own")
            dst = _dst_network(rc.to, rc.nexthops[0].via)
            for j, nh in enumerate(rc.nexthops):
                nw = f"{where}.nexthops[{j}]"
                if nh.dev is not None and nh.dev not in names:
                    raise ConfigError(file, f"{nw}.dev", f"no interface named {nh.dev!r}")
                if nh.via is None and nh.dev is None:
                    raise ConfigError(file, nw, "a nexthop needs 'via' or 'dev'")
                if nh.via is not None and (nh.via.version != dst.version   # type: ignore[attr-defined]
                                           or _onlink_port(plans, nh.via, nh.dev) is None):
                    raise ConfigError(file, f"{nw}.via",
                                      f"gateway {nh.via} is not in a connected subnet")
            continue
        if isinstance(rc.table, str) and rc.table not in cfg.tables:
            raise ConfigError(file, f"{where}.table", f"no table named {rc.table!r} under tables:")
        if rc.type in ("local", "broadcast"):
            if rc.via is not None:
                raise ConfigError(file, f"{where}.via", f"a {rc.type} route has no gateway")
            if rc.dev is None:
                raise ConfigError(file, f"{where}.dev", f"a {rc.type} route needs a device")
            continue
        if rc.type != "unicast":
            # blackhole/unreachable/prohibit/throw take neither gateway nor device.
            if rc.via is not None:
                raise ConfigError(file, f"{where}.via", f"a {rc.type} route has no gateway")
            if rc.dev is not None:
                raise ConfigError(file, f"{where}.dev", f"a {rc.type} route has no device")
            continue
        if rc.via is None and rc.dev is None:
            raise ConfigError(file, where, "a unicast route needs 'via' or 'dev'")
        dst = _dst_network(rc.to, rc.via)
        if rc.via is not None:
            if rc.via.version != dst.version:                       # type: ignore[attr-defined]
                raise ConfigError(file, f"{where}.via", "gateway and destination families differ")
            if _onlink_port(plans, rc.via, rc.dev) is None:
                raise ConfigError(file, f"{where}.via",
                                  f"gateway {rc.via} is not in a connected subnet"
                                  + (f" of {rc.dev}" if rc.dev else ""))
    for i, rule in enumerate(cfg.rules):
        where = f"rules[{i}]"
        actions = [a for a in ("table", "goto", "type") if getattr(rule, a) is not None]
        if len(actions) != 1:
            raise ConfigError(file, where, "a rule needs exactly one action: table, goto or type")
        if rule.goto is not None and rule.goto <= rule.priority:
            raise ConfigError(file, f"{where}.goto", "a goto must point to a later priority")
        for key in ("iif", "oif"):
            name = getattr(rule, key)
            if name is not None and name not in names and not (key == "iif" and name == "lo"):
                raise ConfigError(file, f"{where}.{key}", f"no interface named {name!r}")
        fams = {ip_network(p).version for p in (rule.from_, rule.to) if p is not None}
        if len(fams) > 1:
            raise ConfigError(file, where, "from and to are of different address families")
        if isinstance(rule.table, str) and rule.table not in cfg.tables:
            raise ConfigError(file, f"{where}.table",
                              f"no table named {rule.table!r} under tables:")
        if rule.suppress_prefixlength is not None and rule.table is None:
            raise ConfigError(file, f"{where}.suppress_prefixlength", "only with a table lookup")
    statics: set[tuple[str, Any]] = set()
    for i, sn in enumerate(cfg.neighbours):
        where = f"neighbours[{i}]"
        if sn.dev not in names:
            raise ConfigError(file, f"{where}.dev", f"no interface named {sn.dev!r}")
        a = sn.to
        if a in seen:
            raise ConfigError(file, f"{where}.to", f"{a} is an address of this router")
        if a.is_multicast or a.is_unspecified or a.is_loopback or (  # type: ignore[attr-defined]
                a.version == 4 and (int(a) >> 24 == 0 or a == IPv4Address("255.255.255.255"))):
            raise ConfigError(file, f"{where}.to", f"{a} cannot be a neighbour address")
        if (sn.dev, a) in statics:
            raise ConfigError(file, f"{where}.to", f"{a} on {sn.dev} is listed twice")
        statics.add((sn.dev, a))
    return plans


def neigh_params(k: NeighKnobs | None) -> NeighParams:
    """Config knobs (kernel units: ms, s, 1/100 s) as core NeighParams (ns)."""
    if k is None:
        return NeighParams()
    hz = SECOND // 100
    return NeighParams(
        base_reachable_time=k.base_reachable_time_ms * MILLISECOND,
        retrans_time=k.retrans_time_ms * MILLISECOND,
        delay_first_probe_time=k.delay_first_probe_time * SECOND,
        gc_stale_time=k.gc_stale_time * SECOND, ucast_probes=k.ucast_probes,
        mcast_probes=k.mcast_probes, app_probes=k.app_probes, locktime=k.locktime * hz,
        unres_qlen_bytes=k.unres_qlen_bytes, proxy_delay=k.proxy_delay * hz,
        proxy_qlen=k.proxy_qlen)


def neigh_table_params(t: NeighTable) -> NeighTableParams:
    return NeighTableParams(t.gc_thresh1, t.gc_thresh2, t.gc_thresh3, t.gc_interval * SECOND)


def build_rules(cfg: Config, plans: list[PortPlan]) -> list[PolicyRule]:
    """Config rules as core PolicyRules (ifindexes resolved; ``iif lo`` is 0)."""
    idx = {p.name: p.ifindex for p in plans}
    out = []
    for rule in cfg.rules:
        nets = {k: ip_network(v) for k, v in (("src", rule.from_), ("dst", rule.to)) if v}
        fam = next(iter({n.version for n in nets.values()}), 0)
        mark, mask = rule.fwmark if rule.fwmark is not None else (None, 0xFFFFFFFF)
        out.append(PolicyRule(
            priority=rule.priority,
            table=table_id(cfg, rule.table) if rule.table is not None else 0,
            action="lookup" if rule.table is not None else
                   ("goto" if rule.goto is not None else str(rule.type)),
            goto=rule.goto or 0,
            src=_net_pair(nets.get("src")),
            dst=_net_pair(nets.get("dst")),
            iif=None if rule.iif is None else (0 if rule.iif == "lo" else idx[rule.iif]),
            oif=None if rule.oif is None else idx[rule.oif],
            fwmark=mark, fwmask=mask, tos=rule.tos, ipproto=rule.ipproto,
            sport=rule.sport, dport=rule.dport,
            suppress_prefixlength=-1 if rule.suppress_prefixlength is None
            else rule.suppress_prefixlength,
            family=fam))
    return out


def table_id(cfg: Config, table: int | str) -> int:
    """A table's number; names come from the config's ``tables:`` (checked before)."""
    return cfg.tables[table] if isinstance(table, str) else table


def _multipath(rc: Any, plans: list[PortPlan], by_name: dict[str, PortPlan],
               table: int) -> Route:
    dst = _dst_network(rc.to, rc.nexthops[0].via)
    paths = []
    for nh in rc.nexthops:
        port = _onlink_port(plans, nh.via, nh.dev) if nh.via is not None else by_name[nh.dev]
        assert port is not None
        gw = int(nh.via) if nh.via is not None else None
        paths.append(Route(dst.version, int(dst.network_address), dst.prefixlen,
                           RouteType.UNICAST, port.ifindex, gw, rc.metric, None, rc.mtu or 0,
                           rc.mtu_lock, Scope.UNIVERSE if gw is not None else Scope.LINK,
                           table, "static", mp=True))
    return Route(dst.version, int(dst.network_address), dst.prefixlen, RouteType.UNICAST,
                 paths[0].oif, None, rc.metric, None, rc.mtu or 0, rc.mtu_lock, Scope.UNIVERSE,
                 table, "static", paths=tuple(paths),
                 weights=tuple(nh.weight for nh in rc.nexthops))


def _net_pair(net: IPv4Network | IPv6Network | None) -> tuple[int, int] | None:
    return None if net is None else (int(net.network_address), net.prefixlen)


def _dst_network(to: str, via: Any) -> IPv4Network | IPv6Network:
    if to == "default":
        return ip_network("::/0") if via is not None and via.version == 6 else \
            ip_network("0.0.0.0/0")
    return ip_network(to)


def _onlink_port(plans: list[PortPlan], gw: Any, dev: str | None) -> PortPlan | None:
    for p in plans:
        if dev is not None and p.name != dev:
            continue
        if gw.version == 6 and gw.is_link_local and dev is not None:
            return p                 # fe80::/64 is on-link on every port (with dev given)
        for a in p.config.addresses:
            net = a.network
            if a.version == gw.version and gw in net and gw != a.ip and not (
                    a.version == 4 and net.prefixlen < 31 and gw == net.broadcast_address):
                return p
    return None


def build_sysctl6(cfg: Config, plans: list[PortPlan]) -> Ipv6Sysctl:
    """``ipv6:`` plus each interface's ``ra`` and ``proxy_ndp``, keyed by ifindex."""
    ra: dict[int, RaConfig] = {}
    for p in plans:
        rc = p.config.ra
        if rc is None:
            continue
        hi = rc.max_rtr_adv_interval
        lo = rc.min_rtr_adv_interval if rc.min_rtr_adv_interval is not None else \
            (0.33 * hi if hi >= 9 else hi * 0.75)
        prefixes = None if rc.prefixes is None else tuple(
            RaPrefix(int(x.prefix.network_address), x.prefix.prefixlen, x.on_link, x.autonomous,
                     x.valid_lifetime, x.preferred_lifetime) for x in rc.prefixes)
        ra[p.ifindex] = RaConfig(
            hi, max(lo, 3.0), rc.default_lifetime if rc.default_lifetime is not None
            else min(int(3 * hi), 9000), rc.managed, rc.other_config, rc.cur_hop_limit,
            rc.reachable_time, rc.retrans_timer, rc.mtu or 0, prefixes,
            tuple(int(a) for a in rc.rdnss), rc.rdnss_lifetime or 0)
    return Ipv6Sysctl(**cfg.ipv6.model_dump(), ra=ra,
                      proxy_ndp={p.ifindex: frozenset(int(a) for a in p.config.proxy_ndp)
                                 for p in plans if p.config.proxy_ndp})


def build(cfg: Config, rng: Any, now: int = 0, file: str = "<config>",
          ifindexes: dict[str, int] | None = None) -> Router:
    plans = check(cfg, file, ifindexes)
    r = Router(rng, now, sysctl=Ipv4Sysctl(**cfg.ipv4.model_dump()),
               sysctl6=build_sysctl6(cfg, plans), neigh_table=neigh_table_params(cfg.neigh))
    for p in plans:
        r.add_port(Port(p.ifindex, p.name, p.mac, p.mtu, proxy_arp=p.config.proxy_arp))
        # One set of per-port parameters for both tables (the kernel keeps two sysctl
        # trees, net.ipv4.neigh.<port> and net.ipv6.neigh.<port>, with the same defaults).
        r.neigh4.set_params(p.ifindex, neigh_params(p.config.neigh))
        r.neigh6.set_params(p.ifindex, neigh_params(p.config.neigh))
    for p in plans:
        for a in p.config.addresses:
            if a.version == 4:
                r.add_address(p.ifindex, int(a.ip), a.network.prefixlen)
            elif not cfg.ipv6.disable_ipv6:
                r.add_address6(p.ifindex, int(a.ip), a.network.prefixlen, now)
    build_dns(r, cfg, plans)
    build_dhcp(r, plans)
    r.fib.set_rules(build_rules(cfg, plans))
    r.fib.table_names = {tid: name for name, tid in cfg.tables.items()}
    by_name = {p.name: p for p in plans}
    r.fib.multipath_hash_policy = cfg.ipv4.fib_multipath_hash_policy
    if cfg.ipv4.fib_multipath_hash_policy == 1 and any(rc.nexthops for rc in cfg.routes):
        r.fib.uses_ports = True
    for rc in cfg.routes:
        if rc.nexthops is not None:
            r.add_route(_multipath(rc, plans, by_name, table_id(cfg, rc.table)))
            continue
        dst = _dst_network(rc.to, rc.via)
        kind = RouteType(rc.type)
        oif, gw = 0, None
        if kind is RouteType.UNICAST:
            port = _onlink_port(plans, rc.via, rc.dev) if rc.via is not None \
                else by_name[rc.dev]                                 # type: ignore[index]
            assert port is not None
            oif = port.ifindex
            gw = int(rc.via) if rc.via is not None else None         # type: ignore[arg-type]
        elif kind in (RouteType.LOCAL, RouteType.BROADCAST):
            oif = by_name[rc.dev].ifindex                              # type: ignore[index]
        scope = {RouteType.LOCAL: Scope.HOST, RouteType.BROADCAST: Scope.LINK}.get(
            kind, Scope.LINK if kind is RouteType.UNICAST and gw is None else Scope.UNIVERSE)
        prefsrc = int(rc.src) if rc.src is not None else None          # type: ignore[arg-type]
        r.add_route(Route(dst.version, int(dst.network_address), dst.prefixlen, kind, oif, gw,
                          rc.metric, prefsrc, rc.mtu or 0, rc.mtu_lock, scope,
                          table_id(cfg, rc.table), "static", advmss=rc.advmss or 0))
    by_idx = {p.name: p.ifindex for p in plans}
    for sn in cfg.neighbours:
        r.add_static_neighbour(by_idx[sn.dev], sn.to.version, int(sn.to),   # type: ignore
                               mac_from_str(sn.lladdr), now)
    if cfg.routes_file:
        path = Path(cfg.routes_file)
        if not path.is_absolute():
            path = Path(file).parent / path
        if not path.is_file():
            raise ConfigError(file, "routes_file", f"no such file: {path}")

        def onlink(gw: Any, dev: str | None) -> int | None:
            if gw is None:
                return by_name[dev].ifindex if dev in by_name else None
            p = _onlink_port(plans, gw, dev)
            return p.ifindex if p is not None else None

        for route in parse_routes(path, onlink, cfg.tables):
            r.fib.insert(route)
        r.fwd_cache.clear()
    build_netfilter(r, cfg, file)           # nftables ruleset and hook plugins (issue 7)
    return r
