"""The kernel knobs the core honours, named as the sysctls they stand in for
(net.ipv4.*), with the kernel's defaults."""

from __future__ import annotations

from dataclasses import dataclass

from .ip.icmp_limit import IcmpLimits


@dataclass(frozen=True, slots=True)
class Ipv4Sysctl:
    ip_default_ttl: int = 64
    icmp_echo_ignore_all: bool = False
    icmp_echo_ignore_broadcasts: bool = True
    icmp_ratelimit: int = 1000          # ms; 0 disables the per-destination limit
    icmp_ratemask: int = 0x1818
    icmp_msgs_per_sec: int = 1000
    icmp_msgs_burst: int = 50
    send_redirects: bool = True
    rp_filter: int = 0                  # 0 off, 1 strict, 2 loose (RFC 3704)
    ip_forward_use_pmtu: bool = False   # forwarded packets honour learned path MTUs
    fib_multipath_hash_policy: int = 0  # 0: L3 (addresses), 1: L4 (5-tuple)
    log_martians: bool = False
    ipfrag_time: int = 30               # seconds an incomplete datagram is kept
    ignore_routes_with_linkdown: bool = False
    accept_redirects: bool = False      # the kernel turns it off when forwarding
    route_min_pmtu: int = 552           # net.ipv4.route.min_pmtu
    route_mtu_expires: int = 600        # net.ipv4.route.mtu_expires, seconds
    arp_notify: bool = True             # gratuitous ARP on start/address/MAC change
                                        # (the kernel's default is 0: docs/architecture.md)

    def icmp_limits(self) -> IcmpLimits:
        return IcmpLimits(self.icmp_ratelimit, self.icmp_ratemask, self.icmp_msgs_per_sec,
                          self.icmp_msgs_burst)
