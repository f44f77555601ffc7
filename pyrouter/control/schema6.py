"""The IPv6 parts of the config: ``ipv6:`` (net.ipv6.* knobs under their kernel names)
and ``interfaces.X.ra`` (Router Advertisements, RFC 4861 6.2.1 variables).

Invariant: a model that validates builds into core objects without further checks
but the cross-references (prefixes vs. the interface's addresses) made in build.py.
"""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


def _v6net(v: object) -> IPv6Network:
    if not isinstance(v, str):
        raise ValueError("an IPv6 prefix such as fd00:1::/64")
    try:
        return IPv6Network(v, strict=True)
    except ValueError as e:
        raise ValueError(f"an IPv6 prefix such as fd00:1::/64 ({e})") from None


def _v6addr(v: object) -> IPv6Address:
    if not isinstance(v, str):
        raise ValueError("an IPv6 address")
    try:
        return IPv6Address(v)
    except ValueError as e:
        raise ValueError(f"an IPv6 address ({e})") from None


V6Net = Annotated[IPv6Network, BeforeValidator(_v6net)]
V6Addr = Annotated[IPv6Address, BeforeValidator(_v6addr)]


class RaPrefixConfig(_Model):
    prefix: V6Net
    on_link: bool = True
    autonomous: bool = True
    valid_lifetime: int = Field(default=2592000, ge=0, le=0xFFFFFFFF)
    preferred_lifetime: int = Field(default=604800, ge=0, le=0xFFFFFFFF)

    @model_validator(mode="after")
    def _lifetimes(self) -> RaPrefixConfig:
        if self.preferred_lifetime > self.valid_lifetime:
            raise ValueError("preferred_lifetime must not exceed valid_lifetime (RFC 4861 4.6.2)")
        return self


class RaConfigModel(_Model):
    max_rtr_adv_interval: float = Field(default=600, ge=4, le=1800)
    min_rtr_adv_interval: float | None = Field(default=None, ge=3)
    default_lifetime: int | None = Field(default=None, ge=0, le=9000)
    managed: bool = False
    other_config: bool = False
    cur_hop_limit: int = Field(default=64, ge=0, le=255)
    reachable_time: int = Field(default=0, ge=0, le=3_600_000)
    retrans_timer: int = Field(default=0, ge=0, le=0xFFFFFFFF)
    mtu: int | None = Field(default=None, ge=1280, le=65535)
    prefixes: list[RaPrefixConfig] | None = None
    rdnss: list[V6Addr] = Field(default_factory=list)
    rdnss_lifetime: int | None = Field(default=None, ge=0, le=0xFFFFFFFF)

    @model_validator(mode="after")
    def _intervals(self) -> RaConfigModel:
        lo = self.min_rtr_adv_interval
        if lo is not None and lo > 0.75 * self.max_rtr_adv_interval:
            raise ValueError("min_rtr_adv_interval must be at most 0.75 * max_rtr_adv_interval "
                             "(RFC 4861 6.2.1)")
        lt = self.default_lifetime
        if lt not in (None, 0) and lt < self.max_rtr_adv_interval:   # type: ignore[operator]
            raise ValueError("default_lifetime must be 0 or at least max_rtr_adv_interval "
                             "(RFC 4861 6.2.1)")
        return self


class Ipv6Knobs(_Model):
    """net.ipv6.* sysctls the router honours, with the kernel's defaults, except
    ndisc_notify (on: unsolicited NAs when an address becomes usable, as issue #5 asks;
    the kernel's default is 0) and mld_reports (no kernel knob: the kernel always
    reports)."""

    forwarding: bool = True
    disable_ipv6: bool = False
    hop_limit: int = Field(default=64, ge=1, le=255)
    icmp_ratelimit: int = Field(default=1000, ge=0, le=3_600_000)
    icmp_echo_ignore_all: bool = False
    icmp_echo_ignore_multicast: bool = False
    accept_dad: int = Field(default=1, ge=0, le=2)
    dad_transmits: int = Field(default=1, ge=0, le=10)
    ndisc_notify: bool = True                # kernel default 0: the issue asks for announcements
    mld_reports: bool = True                 # pyrouter's own: MLDv2 reports (ip6/mld.py)
    ip6frag_time: int = Field(default=60, ge=1, le=3600)
    max_hbh_opts_number: int = Field(default=8, ge=0, le=255)
    max_dst_opts_number: int = Field(default=8, ge=0, le=255)
