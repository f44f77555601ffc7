"""The config file's schema (pydantic v2): what operators write, validated strictly.

The ``interfaces`` and ``routes`` shapes are fixed by the foundation issue
(netplan-like); every model forbids unknown keys and is frozen.  Semantic
checks that need more than one field (a gateway must be on-link, a route's dev
must exist) live in control/build.py, which runs before anything is touched.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Interface, IPv6Interface, ip_address, ip_interface, ip_network
from typing import Annotated, Literal

from pydantic import (
    AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, field_validator,
    model_validator,
)

from ..wire.addr import mac_from_str
from .schema6 import Ipv6Knobs, RaConfigModel, V6Addr
from .schema_ports import PortKind, QemuPort
from .dhcp import DhcpGlobal, Dhcp4ServerConfig
from .dns import DnsConfig
from .schema_nf import ConntrackConfig, NfQueueConfig, NftablesConfig, PluginConfig

_IFNAME = re.compile(r"^[A-Za-z0-9_.\-]{1,15}$")


def _interface(v: object) -> IPv4Interface | IPv6Interface:
    if not isinstance(v, str) or "/" not in v:
        raise ValueError("an address with its prefix length, e.g. 10.0.1.1/24")
    return ip_interface(v)


def _address(v: object) -> object:
    if not isinstance(v, str):
        raise ValueError("an IP address, e.g. 10.0.1.254")
    return ip_address(v)


def _destination(v: object) -> str:
    if v == "default":
        return "default"
    if not isinstance(v, str):
        raise ValueError("'default' or a prefix such as 10.0.9.0/24")
    net = ip_network(v, strict=True)
    return str(net)


IfAddr = Annotated[IPv4Interface | IPv6Interface, BeforeValidator(_interface)]
IpAddr = Annotated[object, BeforeValidator(_address)]
Destination = Annotated[str, BeforeValidator(_destination)]



class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class PeerRoute(_Model):
    to: Destination
    via: IpAddr


class Peer(_Model):
    """The kernel side of a TAP moved into a namespace (a lab/test convenience)."""

    addresses: list[IfAddr] = Field(default_factory=list)
    routes: list[PeerRoute] = Field(default_factory=list)


class NeighKnobs(_Model):
    """A port's neighbour parameters (net.ipv4.neigh.<dev>.*): kernel names, units and
    defaults (``ucast_solicit``/``mcast_solicit``/``app_solicit`` are accepted too);
    locktime and proxy_delay are in the kernel's 1/100 s."""

    base_reachable_time_ms: int = Field(default=30000, ge=1000, le=3_600_000)
    retrans_time_ms: int = Field(default=1000, ge=10, le=3_600_000)
    delay_first_probe_time: int = Field(default=5, ge=1, le=3600)
    gc_stale_time: int = Field(default=60, ge=1, le=86400)
    ucast_probes: int = Field(default=3, ge=0, le=255,
                              validation_alias=AliasChoices("ucast_probes", "ucast_solicit"))
    mcast_probes: int = Field(default=3, ge=0, le=255,
                              validation_alias=AliasChoices("mcast_probes", "mcast_solicit"))
    app_probes: int = Field(default=0, ge=0, le=255,
                            validation_alias=AliasChoices("app_probes", "app_solicit"))
    locktime: int = Field(default=100, ge=0, le=360_000)
    unres_qlen_bytes: int = Field(default=212992, ge=0, le=64 * 1024 * 1024)
    proxy_delay: int = Field(default=80, ge=0, le=360_000)
    proxy_qlen: int = Field(default=64, ge=0, le=65535)


class NeighTable(_Model):
    """Table-wide neighbour knobs (net.ipv4.neigh.default.gc_*)."""

    gc_thresh1: int = Field(default=128, ge=0, le=1_000_000)
    gc_thresh2: int = Field(default=512, ge=0, le=1_000_000)
    gc_thresh3: int = Field(default=1024, ge=1, le=1_000_000)
    gc_interval: int = Field(default=30, ge=1, le=86400)   # s; unused, as in the kernel

    @model_validator(mode="after")
    def _order(self) -> NeighTable:
        if not self.gc_thresh1 <= self.gc_thresh2 <= self.gc_thresh3:
            raise ValueError("gc_thresh1 <= gc_thresh2 <= gc_thresh3")
        return self


def _lladdr(v: object) -> str:
    if not isinstance(v, str):
        raise ValueError("a MAC address such as 02:00:00:00:00:01")
    mac = mac_from_str(v)
    if mac[0] & 1 or mac == bytes(6):
        raise ValueError("a unicast, non-zero MAC address")
    return v


class StaticNeighbour(_Model):
    """``ip neigh replace TO lladdr MAC dev DEV nud permanent``."""

    to: IpAddr
    lladdr: Annotated[str, BeforeValidator(_lladdr)]
    dev: str


class Interface(_Model):
    addresses: list[IfAddr] = Field(default_factory=list)
    ra: RaConfigModel | None = None          # IPv6 Router Advertisements (schema6.py)
    proxy_ndp: list[V6Addr] = Field(default_factory=list)   # `ip -6 neigh add proxy ADDR`
    mtu: int | None = Field(default=None, ge=68, le=65535)
    macaddress: str | None = None
    netns: str | None = None
    peer: Peer | None = None
    # Port kinds (control/schema_ports.py; which keys go together: control/port_check.py).
    kind: PortKind = "tap"
    master: str | None = None          # tap: enslave the TAP to this existing Linux bridge
    qemu: QemuPort | None = None       # kind qemu: the QEMU socket backend
    device: str | None = None          # kind packet: the existing kernel interface

    @field_validator("master", "device")
    @classmethod
    def _ifname(cls, v: str | None) -> str | None:
        if v is not None and not _IFNAME.match(v):
            raise ValueError("an interface name: 1-15 characters of letters, digits, _ . -")
        return v
    neigh: NeighKnobs | None = None     # this port's neighbour parameters
    proxy_arp: bool = False             # net.ipv4.conf.<port>.proxy_arp
    dhcp: Dhcp4ServerConfig | None = None      # DHCPv4 server on this interface (control/dhcp.py)

    @field_validator("macaddress")
    @classmethod
    def _mac(cls, v: str | None) -> str | None:
        if v is None:
            return v
        mac = mac_from_str(v)
        if mac[0] & 1:
            raise ValueError("a multicast MAC cannot be an interface address")
        return v

    @field_validator("netns")
    @classmethod
    def _ns(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z0-9_.\-]{1,64}", v):
            raise ValueError("a network namespace name (letters, digits, _ . -)")
        return v


def _port_range(v: object) -> tuple[int, int] | None:
    if v is None:
        return None
    if isinstance(v, int) and not isinstance(v, bool):
        lo = hi = v
    elif isinstance(v, str) and re.fullmatch(r"\d{1,5}(-\d{1,5})?", v):
        a, _, b = v.partition("-")
        lo, hi = int(a), int(b or a)
    else:
        raise ValueError("a port or a range such as 1000-2000")
    if not 0 <= lo <= hi <= 65535:
        raise ValueError("ports are 0-65535, low-high")
    return (lo, hi)


def _fwmark(v: object) -> tuple[int, int] | None:
    if v is None:
        return None
    if isinstance(v, int) and not isinstance(v, bool):
        mark, mask = v, 0xFFFFFFFF
    elif isinstance(v, str) and re.fullmatch(r"(0x[0-9a-fA-F]+|\d+)(/(0x[0-9a-fA-F]+|\d+))?", v):
        a, _, b = v.partition("/")
        mark, mask = int(a, 0), int(b, 0) if b else 0xFFFFFFFF
    else:
        raise ValueError("a mark such as 0x10 or 0x10/0xff")
    if not (0 <= mark <= 0xFFFFFFFF and 0 <= mask <= 0xFFFFFFFF):
        raise ValueError("mark and mask are 32-bit")
    return (mark, mask)


def _prefix(v: object) -> str | None:
    if v is None or v == "all":
        return None
    if not isinstance(v, str):
        raise ValueError("a prefix such as 10.0.1.0/24, or 'all'")
    return str(ip_network(v, strict=True))


PROTO_NAMES = {"icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58, "ipv6-icmp": 58, "sctp": 132}


def _ipproto(v: object) -> int | None:
    if v is None:
        return None
    if isinstance(v, str) and v in PROTO_NAMES:
        return PROTO_NAMES[v]
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255:
        return v
    raise ValueError(f"a protocol name ({', '.join(PROTO_NAMES)}) or a number 0-255")


TABLE_IDS = {"local": 255, "main": 254, "default": 253}


def _table(v: object) -> int | str | None:
    """A table id, or a name: local/main/default, or one declared under ``tables:``
    (resolved in control/build.py)."""
    if v is None:
        return None
    if isinstance(v, str) and v in TABLE_IDS:
        return TABLE_IDS[v]
    if isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 0xFFFFFFFF:
        return v
    if isinstance(v, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\-]{0,31}", v):
        return v
    raise ValueError("a table number, local/main/default, or a name declared under tables:")


class NexthopConfig(_Model):
    """One path of a multipath route (``ip route add ... nexthop via X weight N``)."""

    via: IpAddr | None = None
    dev: str | None = None
    weight: int = Field(default=1, ge=1, le=256)


class RouteConfig(_Model):
    to: Destination
    via: IpAddr | None = None
    dev: str | None = None
    nexthops: list[NexthopConfig] | None = Field(default=None, min_length=1)
    src: IpAddr | None = None          # preferred source for the router's own traffic
    metric: int = Field(default=0, ge=0, le=0xFFFFFFFF)
    table: Annotated[int | str, BeforeValidator(_table)] = 254
    mtu: int | None = Field(default=None, ge=68, le=65535)
    mtu_lock: bool = False
    advmss: int | None = Field(default=None, ge=64, le=65535)
    type: Literal["unicast", "local", "broadcast", "blackhole", "unreachable", "prohibit",
                  "throw"] = "unicast"


class Control(_Model):
    """The operator's control socket (``pyrouter show ...`` talks to it)."""

    socket: str = "/run/pyrouter/pyrouter.sock"


class Metrics(_Model):
    """Prometheus text exposition over HTTP, off unless ``listen`` is given."""

    listen: str

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        m = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[0-9.]+|[A-Za-z0-9.\-]+):(\d{1,5})", v)
        if not m or not 0 < int(m.group(2)) < 65536:
            raise ValueError("HOST:PORT, e.g. 127.0.0.1:9101 or [::1]:9101")
        return v


class RuleConfig(_Model):
    """One policy routing rule, as ``ip rule add``: selectors, then one action."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    priority: int = Field(ge=1, le=0xFFFFFFFF)
    from_: Annotated[str | None, BeforeValidator(_prefix)] = Field(default=None, alias="from")
    to: Annotated[str | None, BeforeValidator(_prefix)] = None
    iif: str | None = None
    oif: str | None = None
    fwmark: Annotated[tuple[int, int] | None, BeforeValidator(_fwmark)] = None
    tos: int | None = Field(default=None, ge=0, le=255)
    ipproto: Annotated[int | None, BeforeValidator(_ipproto)] = None
    sport: Annotated[tuple[int, int] | None, BeforeValidator(_port_range)] = None
    dport: Annotated[tuple[int, int] | None, BeforeValidator(_port_range)] = None
    table: Annotated[int | str | None, BeforeValidator(_table)] = None
    goto: int | None = Field(default=None, ge=1, le=0xFFFFFFFF)
    type: Literal["blackhole", "unreachable", "prohibit"] | None = None
    suppress_prefixlength: int | None = Field(default=None, ge=0, le=128)


class Ipv4Knobs(_Model):
    """net.ipv4.* sysctls the router honours, under their kernel names and defaults."""

    ip_default_ttl: int = Field(default=64, ge=1, le=255)
    icmp_echo_ignore_all: bool = False
    icmp_echo_ignore_broadcasts: bool = True
    icmp_ratelimit: int = Field(default=1000, ge=0, le=3_600_000)
    icmp_ratemask: int = Field(default=0x1818, ge=0, le=0x7FFFF)
    icmp_msgs_per_sec: int = Field(default=1000, ge=0, le=1_000_000)
    icmp_msgs_burst: int = Field(default=50, ge=0, le=1_000_000)
    send_redirects: bool = True
    rp_filter: int = Field(default=0, ge=0, le=2)
    ip_forward_use_pmtu: bool = False
    fib_multipath_hash_policy: int = Field(default=0, ge=0, le=1)
    log_martians: bool = False
    ipfrag_time: int = Field(default=30, ge=1, le=3600)
    ignore_routes_with_linkdown: bool = False
    accept_redirects: bool = False
    route_min_pmtu: int = Field(default=552, ge=68, le=65535)
    route_mtu_expires: int = Field(default=600, ge=1, le=86400)
    arp_notify: bool = True      # kernel default 0; see docs/architecture.md


class Config(_Model):
    interfaces: dict[str, Interface] = Field(min_length=1)
    routes: list[RouteConfig] = Field(default_factory=list)
    routes_file: str | None = None      # bulk routes, ip-route lines (control/routes_file.py)
    rules: list[RuleConfig] = Field(default_factory=list)
    tables: dict[str, int] = Field(default_factory=dict)   # names, as /etc/iproute2/rt_tables

    @field_validator("tables")
    @classmethod
    def _tables(cls, v: dict[str, int]) -> dict[str, int]:
        for name, tid in v.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\-]{0,31}", name) or name in TABLE_IDS:
                raise ValueError(f"table name {name!r}: an identifier other than "
                                 "local/main/default")
            if not 1 <= tid <= 0xFFFFFFFF or tid in TABLE_IDS.values():
                raise ValueError(f"table {name!r}: an id from 1 to 4294967295, not 253-255")
        return v
    ipv4: Ipv4Knobs = Field(default_factory=Ipv4Knobs)
    ipv6: Ipv6Knobs = Field(default_factory=Ipv6Knobs)
    neigh: NeighTable = Field(default_factory=NeighTable)
    neighbours: list[StaticNeighbour] = Field(default_factory=list)
    control: Control = Field(default_factory=Control)
    metrics: Metrics | None = None
    dhcp: DhcpGlobal = Field(default_factory=DhcpGlobal)
    dns: DnsConfig | None = None        # DNS forwarder on the router's addresses (control/dns.py)
    nftables: NftablesConfig | None = None      # netfilter ruleset (control/nf_build.py)
    plugins: list[PluginConfig] = Field(default_factory=list)   # Python hook plugins
    nf_queues: list[NfQueueConfig] = Field(default_factory=list)   # QUEUE consumers
    conntrack: ConntrackConfig = Field(default_factory=ConntrackConfig)   # nf_conntrack

    @field_validator("interfaces")
    @classmethod
    def _names(cls, v: dict[str, Interface]) -> dict[str, Interface]:
        for name in v:
            if not _IFNAME.match(name):
                raise ValueError(f"interface name {name!r}: 1-15 characters of letters, "
                                 "digits, _ . -")
        return v
