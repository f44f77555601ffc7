"""Services the router offers on its own addresses (DHCPv4 server), sans-IO like the rest
of the core: packets and ``now`` in, frames and events out."""
