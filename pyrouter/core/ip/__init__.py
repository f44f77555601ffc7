"""The IPv4 journey: ip_rcv -> route input -> ip_forward | ip_local_deliver -> ip_output."""
