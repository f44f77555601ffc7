"""Config schema for netfilter (issue 7): ``nftables:``, ``plugins:``, ``nf_queues:``.

    nftables: {file: rules.nft}          # relative to the config file, or
    nftables: {ruleset: "table inet f { ... }"}
    plugins:
      - {module: pyrouter.plugins.siplog, function: hook, hook: forward, priority: 0,
         family: inet, on_error: accept,
         budget_ms: 5, max_slow: 5, retry_after_s: null}   # the time bound (plugins.py)
    nf_queues:                           # consumers of ``queue num N`` (shell/nfqueue.py)
      - {num: 1, module: pyrouter.plugins.flowgate, function: consumer,
         maxlen: 1024, fail_open: false, timeout_ms: 1000}

    conntrack: {enabled: false, max: 65536, nf_conntrack_tcp_be_liberal: 0,
                nf_conntrack_tcp_loose: 1, nf_conntrack_tcp_max_retrans: 3,
                nf_conntrack_checksum: 1}

Exactly one of file/ruleset; the ruleset itself is parsed and compiled by
control/nf_build.py (errors name the file, line and column).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NftablesConfig(_Model):
    file: str | None = None
    ruleset: str | None = None

    @model_validator(mode="after")
    def _one(self) -> NftablesConfig:
        if (self.file is None) == (self.ruleset is None):
            raise ValueError("exactly one of 'file' or 'ruleset'")
        return self


class ConntrackConfig(_Model):
    """``conntrack: {enabled: true, max: 65536}``: track even when no rule uses ct
    (a ruleset with ct matches enables it anyway); ``max`` is nf_conntrack_max.  The
    TCP knobs carry the net.netfilter sysctl names and defaults:
    ``nf_conntrack_tcp_be_liberal`` (0: out-of-window packets are INVALID),
    ``nf_conntrack_tcp_loose`` (1: pick up connections mid-stream),
    ``nf_conntrack_tcp_max_retrans`` (3: retransmissions before the 300 s timeout),
    ``nf_conntrack_checksum`` (1: a TCP/UDP/ICMP packet with a bad checksum arriving at
    PREROUTING is INVALID)."""

    enabled: bool = False
    max: int = Field(65536, ge=1, le=16_777_216)
    nf_conntrack_tcp_be_liberal: int = Field(0, ge=0, le=1)
    nf_conntrack_tcp_loose: int = Field(1, ge=0, le=1)
    nf_conntrack_tcp_max_retrans: int = Field(3, ge=0, le=255)
    nf_conntrack_checksum: int = Field(1, ge=0, le=1)


class PluginConfig(_Model):
    module: str
    function: str
    hook: Literal["prerouting", "input", "forward", "output", "postrouting"]
    priority: int = Field(default=0, ge=-(2**31) + 1, le=2**31 - 2)
    family: Literal["ip", "ip6", "inet"] = "inet"
    on_error: Literal["accept", "drop"] = "accept"
    budget_ms: float = Field(default=5.0, gt=0, le=10_000)
    max_slow: int = Field(default=5, ge=1, le=1_000_000)
    retry_after_s: float | None = Field(default=None, gt=0, le=86_400)

    @field_validator("module", "function")
    @classmethod
    def _ident(cls, v: str) -> str:
        return _dotted(v)


class NfQueueConfig(_Model):
    """One queue number's consumer: ``module.function(view)``, sync or async (trio),
    returns the verdict; at most ``maxlen`` packets wait, each at most ``timeout_ms``,
    then (and when the queue is full, or the consumer raises) ``fail_open`` decides."""

    num: int = Field(ge=0, le=65535)
    module: str
    function: str
    maxlen: int = Field(default=1024, ge=1, le=65536)
    fail_open: bool = False
    timeout_ms: int = Field(default=1000, ge=1, le=600_000)

    @field_validator("module", "function")
    @classmethod
    def _ident(cls, v: str) -> str:
        return _dotted(v)


def _dotted(v: str) -> str:
    if not _DOTTED.match(v):
        raise ValueError(f"{v!r}: a dotted Python name")
    return v
