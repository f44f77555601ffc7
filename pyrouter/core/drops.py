"""Drop reasons and the router's counters (the SNMP MIB counters of /proc/net/snmp).

DropReason is part of the public interface, like Linux's SKB_DROP_REASON_*
and Click's reason_texts: names are stable snake_case, new members are
appended, none is ever renumbered or renamed.  Every packet the core discards
is counted under exactly one reason.
"""

from __future__ import annotations

from enum import Enum


class DropReason(Enum):
    ETH_TRUNCATED = "eth_truncated"
    OTHERHOST = "otherhost"
    UNHANDLED_ETHERTYPE = "unhandled_ethertype"
    VLAN_UNSUPPORTED = "vlan_unsupported"
    IPV6_DISABLED = "ipv6_disabled"
    ARP_MALFORMED = "arp_malformed"
    IP_TRUNCATED = "ip_truncated"
    IP_BAD_VERSION = "ip_bad_version"
    IP_BAD_IHL = "ip_bad_ihl"
    IP_BAD_TOTAL_LEN = "ip_bad_total_len"
    IP_CSUM_ERROR = "ip_csum_error"
    MARTIAN_SRC = "martian_src"
    MARTIAN_DST = "martian_dst"
    PKT_NOT_HOST = "pkt_not_host"
    TTL_EXCEEDED = "ttl_exceeded"
    NO_ROUTE = "no_route"
    ROUTE_BLACKHOLE = "route_blackhole"
    ROUTE_UNREACHABLE = "route_unreachable"
    ROUTE_PROHIBIT = "route_prohibit"
    FRAG_NEEDED = "frag_needed"
    IP_OPTIONS_ERROR = "ip_options_error"
    NEIGH_FAILED = "neigh_failed"
    NEIGH_QUEUE_FULL = "neigh_queue_full"
    ICMP_CSUM_ERROR = "icmp_csum_error"
    ICMP_MALFORMED = "icmp_malformed"
    UDP_CSUM_ERROR = "udp_csum_error"
    UDP_MALFORMED = "udp_malformed"
    UDP_NO_PORT = "udp_no_port"
    PROTO_UNREACHABLE = "proto_unreachable"
    REASM_TIMEOUT = "reasm_timeout"
    REASM_OVERLAP = "reasm_overlap"
    REASM_TOO_BIG = "reasm_too_big"
    REASM_MEM = "reasm_mem"
    TX_RING_FULL = "tx_ring_full"
    PORT_DOWN = "port_down"
    INTERNAL_ERROR = "internal_error"
    ARP_NOT_FOR_US = "arp_not_for_us"
    ICMP_IGNORED = "icmp_ignored"
    TCP_MALFORMED = "tcp_malformed"
    TCP_CSUM_ERROR = "tcp_csum_error"
    TCP_NO_SOCKET = "tcp_no_socket"
    NEIGH_TABLE_FULL = "neigh_table_full"
    BROADCAST_IGNORED = "broadcast_ignored"
    IP_NOPROTO_LOCAL = "ip_noproto_local"
    NEIGH_DEAD = "neigh_dead"
    REASM_DUP = "reasm_dup"
    RP_FILTER = "rp_filter"
    SOURCE_ROUTE = "source_route"
    IP6_TRUNCATED = "ip6_truncated"
    IP6_BAD_ADDR = "ip6_bad_addr"
    IP6_EXTHDR_BAD = "ip6_exthdr_bad"
    MCAST6_NOT_JOINED = "mcast6_not_joined"
    IP6_LINKLOCAL_DST = "ip6_linklocal_dst"
    IP6_LINKLOCAL_SRC = "ip6_linklocal_src"
    IP6_ADDR_TENTATIVE = "ip6_addr_tentative"
    IP6_NO_SOURCE = "ip6_no_source"
    NDISC_BAD_HOPLIMIT = "ndisc_bad_hoplimit"
    NDISC_MALFORMED = "ndisc_malformed"
    NDISC_NOT_FOR_US = "ndisc_not_for_us"
    NDISC_NA_OURS = "ndisc_na_for_our_address"
    NDISC_RA_IGNORED = "ndisc_ra_ignored"
    NDISC_RS_IGNORED = "ndisc_rs_ignored"
    NDISC_REDIRECT_IGNORED = "ndisc_redirect_ignored"
    PORT_PROTOCOL_ERROR = "port_protocol_error"    # a port's peer broke its framing (shell)
    ARP_INVALID_ADDR = "arp_invalid_addr"
    ARP_PROXY_QUEUE_FULL = "arp_proxy_queue_full"
    DHCP_MALFORMED = "dhcp_malformed"
    DHCP_NO_ADDRESS = "dhcp_no_address"
    DNS_MALFORMED = "dns_malformed"
    DNS_PENDING_FULL = "dns_pending_full"
    NF_DROP = "nf_drop"                        # a netfilter hook entry (rule, policy) dropped it
    NF_QUEUE_FULL = "nf_queue_full"
    NF_QUEUE_NO_CONSUMER = "nf_queue_no_consumer"
    NF_REPEAT_LOOP = "nf_repeat_loop"
    NF_PLUGIN_ERROR = "nf_plugin_error"        # a hook plugin raised; on_error: drop
    NF_PLUGIN_SLOW = "nf_plugin_slow"          # a plugin disabled for overrunning its budget
    NF_QUEUE_TIMEOUT = "nf_queue_timeout"      # no consumer verdict in time, fail-closed
    CT_TABLE_FULL = "ct_table_full"            # conntrack table full, nothing to early-drop
    CT_INSERT_FAILED = "ct_insert_failed"      # confirm clashed with an entry of the same tuple
    NAT_UNTRANSLATABLE = "nat_untranslatable"  # NAT could not rewrite (short header, no address)


# Names of /proc/net/snmp counters kept by the core (Ip:, Icmp:, Udp:, Tcp:).
SNMP_COUNTERS = (
    "IpInReceives", "IpInHdrErrors", "IpInAddrErrors", "IpForwDatagrams", "IpInUnknownProtos",
    "IpInDiscards", "IpInDelivers", "IpOutRequests", "IpOutDiscards", "IpOutNoRoutes",
    "IpReasmReqds", "IpReasmOKs", "IpReasmFails", "IpFragOKs", "IpFragFails", "IpFragCreates",
    "IcmpInMsgs", "IcmpInErrors", "IcmpInCsumErrors", "IcmpInEchos", "IcmpInEchoReps",
    "IcmpInDestUnreachs", "IcmpInTimeExcds", "IcmpInRedirects", "IcmpRedirectsRejected",
    "IcmpOutMsgs", "IcmpOutEchoReps", "IcmpInTimestamps", "IcmpOutTimestampReps",
    "IcmpOutDestUnreachs", "IcmpOutTimeExcds", "IcmpOutParmProbs", "IcmpOutRedirects",
    "UdpInDatagrams", "UdpNoPorts", "UdpInErrors", "UdpInCsumErrors",
    "TcpInSegs", "TcpOutRsts", "TcpInErrs", "TcpInCsumErrors",
    "ArpInRequests", "ArpInReplies", "ArpOutRequests", "ArpOutReplies",
    "IpExtInTruncatedPkts", "IpExtInNoRoutes", "IpExtInCsumErrors",
    "IcmpOutRateLimitGlobal", "IcmpOutRateLimitHost", "TcpExtIPReversePathFilter",
    # /proc/net/snmp6
    "Ip6InReceives", "Ip6InHdrErrors", "Ip6InTooBigErrors", "Ip6InNoRoutes", "Ip6InAddrErrors",
    "Ip6InUnknownProtos", "Ip6InTruncatedPkts", "Ip6InDiscards", "Ip6InDelivers",
    "Ip6OutForwDatagrams", "Ip6OutRequests", "Ip6OutDiscards", "Ip6OutNoRoutes",
    "Ip6ReasmTimeout", "Ip6ReasmReqds", "Ip6ReasmOKs", "Ip6ReasmFails", "Ip6FragOKs",
    "Ip6FragFails", "Ip6FragCreates",
    "Icmp6InMsgs", "Icmp6InErrors", "Icmp6OutMsgs", "Icmp6OutErrors", "Icmp6InCsumErrors",
    "Icmp6InDestUnreachs", "Icmp6InPktTooBigs", "Icmp6InTimeExcds", "Icmp6InParmProblems",
    "Icmp6InEchos", "Icmp6InEchoReplies", "Icmp6InRouterSolicits",
    "Icmp6InRouterAdvertisements", "Icmp6InNeighborSolicits", "Icmp6InNeighborAdvertisements",
    "Icmp6InRedirects", "Icmp6OutDestUnreachs", "Icmp6OutPktTooBigs", "Icmp6OutTimeExcds",
    "Icmp6OutParmProblems", "Icmp6OutEchoReplies", "Icmp6OutRouterSolicits",
    "Icmp6OutRouterAdvertisements", "Icmp6OutNeighborSolicits",
    "Icmp6OutNeighborAdvertisements", "Icmp6OutRedirects", "Icmp6OutRateLimitGlobal",
    "Icmp6OutRateLimitHost", "Icmp6OutMLDv2Reports", "Icmp6InMLDQueries", "Udp6InErrors",
    "Udp6InCsumErrors", "Udp6NoPorts",
    "ArpInDadProbes", "ArpInGratuitous", "ArpOutProxyReplies", "ArpOutGratuitous",
)


class Counters:
    """Drop counters by reason plus SNMP-style counters, all plain ints."""

    __slots__ = ("drops", "snmp")

    def __init__(self) -> None:
        self.drops: dict[DropReason, int] = dict.fromkeys(DropReason, 0)
        self.snmp: dict[str, int] = dict.fromkeys(SNMP_COUNTERS, 0)

    def drop_dict(self) -> dict[str, int]:
        return {r.value: n for r, n in self.drops.items()}
