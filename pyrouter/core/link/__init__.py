"""Link layer: Ethernet receive/transmit, the neighbour subsystem, ARP."""
