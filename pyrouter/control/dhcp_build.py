"""Semantic checks of the DHCPv4 server configuration (control/dhcp.py) and the
core/services/dhcp4.py servers built from it.

Checks (each a ConfigError with its key path, before anything is touched): the
pool lies in one IPv4 subnet of the interface, first <= last, at most 65536
addresses; a static address is in that subnet and is not one of the router's
addresses or the subnet's network/broadcast address; a MAC or static address
appears once; the router option is an address of that subnet.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface
from typing import TYPE_CHECKING, Any

from ..core.services.dhcp4 import MAX_POOL, Dhcp4Params, Dhcp4Server
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
        params = Dhcp4Params(
            server_addr=int(a.ip), prefixlen=a.network.prefixlen, pool_first=int(first),
            pool_last=int(last), lease_time=dc.lease_time, router=router,
            dns=tuple(int(x) for x in dc.dns), domain=dc.domain.rstrip(".") if dc.domain else None,
            static=tuple((mac_from_str(s.mac), int(s.address)) for s in dc.static))
        r.dhcp4[p.ifindex] = Dhcp4Server(p.ifindex, params)
