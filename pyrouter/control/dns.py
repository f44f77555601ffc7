"""The DNS forwarder's configuration schema (top-level ``dns``); control/services_build.py
checks it and builds core/services/dns.py's forwarder.

    dns:
      upstream: [10.0.2.254, "192.0.2.53:5353"]   # IPv4 servers, port 53 unless given
      listen: [lan0]        # interfaces whose clients are answered (default: those
                            #   with a DHCP server)
      max_pending: 1024     # queries in flight at most (the oldest is evicted)
      timeout: 5            # seconds an upstream has to answer

Only clients in a subnet of the interface they ask on are answered (never the far
side of a gateway: no open resolver).  With a forwarder listening on an interface,
that interface's DHCP server hands out the router's address as the DNS server
unless its ``dhcp.dns`` says otherwise.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address

from pydantic import BaseModel, ConfigDict, Field, field_validator


def _upstream(v: object) -> tuple[IPv4Address, int]:
    if not isinstance(v, str):
        raise ValueError("an IPv4 address, optionally with :port, e.g. 10.0.2.254:53")
    m = re.fullmatch(r"([0-9.]+)(?::(\d{1,5}))?", v)
    if m is None:
        raise ValueError(f"{v!r}: an IPv4 address, optionally with :port")
    port = int(m.group(2) or 53)
    if not 0 < port < 65536:
        raise ValueError(f"{v!r}: port 1-65535")
    return IPv4Address(m.group(1)), port


class DnsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    upstream: list[str] = Field(min_length=1, max_length=8)
    listen: list[str] | None = None
    max_pending: int = Field(default=1024, ge=1, le=65536)
    timeout: int = Field(default=5, ge=1, le=60)

    @field_validator("upstream")
    @classmethod
    def _ups(cls, v: list[str]) -> list[str]:
        for item in v:
            _upstream(item)
        return v

    def upstreams(self) -> list[tuple[IPv4Address, int]]:
        return [_upstream(u) for u in self.upstream]
