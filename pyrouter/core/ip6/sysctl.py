"""The net.ipv6.* knobs the core honours, under the kernel's names and with its defaults
(plus the router-advertisement settings a radvd-style daemon would hold).

Invariant: frozen; a reload replaces the whole object.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class RaPrefix:
    prefix: int
    plen: int
    on_link: bool = True
    autonomous: bool = True
    valid_lifetime: int = 2592000          # RFC 4861 AdvValidLifetime default (30 days)
    preferred_lifetime: int = 604800       # AdvPreferredLifetime default (7 days)


@dataclass(frozen=True, slots=True)
class RaConfig:
    """RFC 4861 section 6.2.1 router configuration variables of one interface."""

    max_rtr_adv_interval: float = 600.0
    min_rtr_adv_interval: float = 198.0
    default_lifetime: int = 1800
    managed: bool = False
    other_config: bool = False
    cur_hop_limit: int = 64
    reachable_time: int = 0                # ms
    retrans_timer: int = 0                 # ms
    mtu: int = 0                           # 0: no MTU option
    prefixes: tuple[RaPrefix, ...] | None = None   # None: every global prefix of the port
    rdnss: tuple[int, ...] = ()
    rdnss_lifetime: int = 0                # 0: 3 * max_rtr_adv_interval (RFC 8106 5.1)


@dataclass(frozen=True, slots=True)
class Ipv6Sysctl:
    forwarding: bool = True
    disable_ipv6: bool = False
    hop_limit: int = 64                    # net.ipv6.conf.all.hop_limit
    icmp_ratelimit: int = 1000             # ms, net.ipv6.icmp.ratelimit
    icmp_echo_ignore_all: bool = False
    icmp_echo_ignore_multicast: bool = False
    accept_dad: int = 1
    dad_transmits: int = 1
    rtr_solicit_delay: float = 1.0         # s: the random delay before the first DAD probe
    ndisc_notify: bool = True              # unsolicited NA when an address comes up
    mld_reports: bool = True               # MLDv2 reports for joined groups (no kernel knob)
    ip6frag_time: int = 60
    max_hbh_opts_number: int = 8
    max_dst_opts_number: int = 8
    ra: dict[int, RaConfig] = field(default_factory=dict)   # ifindex -> RA settings
    # ifindex -> addresses answered for on that port (the kernel's pneigh entries, as
    # `ip -6 neigh add proxy ADDR dev X` with proxy_ndp=1)
    proxy_ndp: dict[int, frozenset[int]] = field(default_factory=dict)
