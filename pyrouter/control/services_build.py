"""Semantic checks of the services' configuration (DHCPv4 server, control/dhcp.py; DNS
forwarder, control/dns.py) and the core/services objects built from it.

Checks (each a ConfigError with its key path, before anything is touched):
* DHCP: the pool lies in one IPv4 subnet of the interface, first <= last, at most
  65536 addresses; a static address is in that subnet and is not one of the
  router's addresses or the subnet's network/broadcast address; a MAC or static
  address appears once; the router option is an address of that subnet;
* DNS: ``listen`` names configured interfaces (default: those with a DHCP
  server, and there must be one); an upstream is not one of the router's own
  addresses (the forwarder would ask itself).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface
from typing import TYPE_CHECKING, Any

from ..core.services.dhcp4 import MAX_POOL, Dhcp4Params, Dhcp4Server
from ..core.services.dns import DnsForwarder, DnsParams
from ..wire.addr import mac_from_str
from .dhcp import Dhcp4ServerConfig
from .load import ConfigError

if TYPE_CHECKING:
    from ..core.router import Router


def _subnet_of(addresses: list[Any], first: IPv4Address, last: IPv4Address
               ) -> IPv4Interface | None:
    for a in addresses:
        if a.version == 4 and first in a.network and last in a.network:
            return a
    return None


def check_dhcp(name: str, itf: Any, file: str, local: set[Any]) -> None:
    """The semantic checks of one interface's ``dhcp`` section (see module docstring)."""
    dc: Dhcp4ServerConfig | None = itf.dhcp
    if dc is None:
        return
    where = f"interfaces.{name}.dhcp"
    first, last = dc.pool
    if int(first) > int(last):
        raise ConfigError(file, f"{where}.pool", f"{first} comes after {last}")
    if int(last) - int(first) + 1 > MAX_POOL:
        raise ConfigError(file, f"{where}.pool", f"more than {MAX_POOL} addresses")
    a = _subnet_of(itf.addresses, first, last)
    if a is None:
        raise ConfigError(file, f"{where}.pool",
                          f"{first}-{last} is not inside one IPv4 subnet of {name}")
    net = a.network
    if dc.router is not None and (dc.no_router or dc.router not in net):
        raise ConfigError(file, f"{where}.router",
                          "no_router is set" if dc.no_router else f"{dc.router} is not in {net}")
    macs: set[bytes] = set()
    addrs: set[IPv4Address] = set()
    for j, st in enumerate(dc.static):
        sw = f"{where}.static[{j}]"
        mac = mac_from_str(st.mac)
        if mac in macs:
            raise ConfigError(file, f"{sw}.mac", f"{st.mac} has a static lease already")
        if st.address in addrs:
            raise ConfigError(file, f"{sw}.address", f"{st.address} is given twice")
        macs.add(mac)
        addrs.add(st.address)
        if st.address not in net or st.address in (net.network_address, net.broadcast_address):
            raise ConfigError(file, f"{sw}.address", f"{st.address} is not a host of {net}")
        if st.address in local:
            raise ConfigError(file, f"{sw}.address", f"{st.address} is an address of this router")


def build_dhcp(r: Router, plans: list[Any]) -> None:
    """A Dhcp4Server on each port whose interface has ``dhcp`` (checked before)."""
    for p in plans:
        dc: Dhcp4ServerConfig | None = p.config.dhcp
        if dc is None:
            continue
        first, last = dc.pool
        a = _subnet_of(p.config.addresses, first, last)
        assert a is not None
        router = None if dc.no_router else int(dc.router) if dc.router is not None else int(a.ip)
        dns = tuple(int(x) for x in dc.dns)
        if not dns and r.dns is not None and p.ifindex in r.dns.params.listen:
            dns = (int(a.ip),)                  # the router's own forwarder
        params = Dhcp4Params(
            server_addr=int(a.ip), prefixlen=a.network.prefixlen, pool_first=int(first),
            pool_last=int(last), lease_time=dc.lease_time, router=router,
            dns=dns, domain=dc.domain.rstrip(".") if dc.domain else None,
            static=tuple((mac_from_str(s.mac), int(s.address)) for s in dc.static))
        r.dhcp4[p.ifindex] = Dhcp4Server(p.ifindex, params)


def check_dns(cfg: Any, plans: list[Any], file: str, local: set[Any]) -> None:
    dc = cfg.dns
    if dc is None:
        return
    names = {p.name for p in plans}
    for j, name in enumerate(dc.listen or []):
        if name not in names:
            raise ConfigError(file, f"dns.listen[{j}]", f"no interface named {name!r}")
    if dc.listen is None and not any(p.config.dhcp is not None for p in plans):
        raise ConfigError(file, "dns.listen", "no interface has a DHCP server to default to: "
                          "name the interfaces whose clients the forwarder answers")
    for j, (addr, _port) in enumerate(dc.upstreams()):
        if addr in local:
            raise ConfigError(file, f"dns.upstream[{j}]", f"{addr} is an address of this router")
        if addr.is_unspecified or addr.is_multicast or addr.is_loopback \
                or addr == IPv4Address("255.255.255.255"):
            raise ConfigError(file, f"dns.upstream[{j}]", f"{addr} cannot be a DNS server")


def build_dns(r: Router, cfg: Any, plans: list[Any]) -> None:
    """The forwarder (before the DHCP servers, whose default DNS option it is)."""
    dc = cfg.dns
    if dc is None:
        return
    listen = frozenset(p.ifindex for p in plans
                       if (p.config.dhcp is not None if dc.listen is None else p.name in dc.listen))
    r.dns = DnsForwarder(DnsParams(listen, tuple((int(a), port) for a, port in dc.upstreams()),
                                   dc.max_pending, dc.timeout))
