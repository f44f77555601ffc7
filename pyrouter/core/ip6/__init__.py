"""IPv6: receive, extension headers, forwarding, ICMPv6, NDISC, reassembly, RAs (net/ipv6)."""
