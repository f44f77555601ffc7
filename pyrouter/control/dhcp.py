"""The DHCPv4 server's configuration schema (``interfaces.X.dhcp``, top-level ``dhcp``);
control/dhcp_build.py checks it and builds the core/services/dhcp4.py servers.

    interfaces:
      lan0:
        addresses: [10.0.1.1/24]
        dhcp:
          pool: [10.0.1.100, 10.0.1.199]   # first and last address handed out
          lease_time: 3600                 # seconds (60 .. 31536000)
          router: 10.0.1.1                 # option 3; default: the interface's address
                                           #   in the pool's subnet; null: none sent
          dns: [10.0.1.1]                  # option 6 (up to 8)
          domain: lab.example              # option 15
          static: [{mac: "52:54:00:12:34:56", address: 10.0.1.10}]
    dhcp:
      lease_file: /var/lib/pyrouter/dhcp4.leases   # leases kept across restarts
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from ..wire.addr import mac_from_str


def _v4(v: object) -> IPv4Address:
    if not isinstance(v, str):
        raise ValueError("an IPv4 address, e.g. 10.0.1.100")
    return IPv4Address(v)


V4 = Annotated[IPv4Address, BeforeValidator(_v4)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class StaticLease(_Model):
    mac: str
    address: V4

    @field_validator("mac")
    @classmethod
    def _mac(cls, v: str) -> str:
        mac = mac_from_str(v)
        if mac[0] & 1:
            raise ValueError("a multicast MAC cannot be a client's address")
        return v


class Dhcp4ServerConfig(_Model):
    pool: tuple[V4, V4]
    lease_time: int = Field(default=3600, ge=60, le=31_536_000)
    router: V4 | None = None
    no_router: bool = False             # send no option 3 at all
    dns: list[V4] = Field(default_factory=list, max_length=8)
    domain: str | None = None
    static: list[StaticLease] = Field(default_factory=list, max_length=4096)

    @field_validator("domain")
    @classmethod
    def _domain(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(
                r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
                r"(\.[A-Za-z0-9]([A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)*\.?", v):
            raise ValueError("a domain name such as lab.example")
        return v


class DhcpGlobal(_Model):
    lease_file: str | None = None
