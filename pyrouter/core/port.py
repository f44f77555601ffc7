"""Port: what the core knows about one interface (Linux's net_device + in_device).

The fd lives in the shell; the core knows ifindex, name, MAC, MTU, addresses,
link state and counters (``ip -s link``).  Addresses are ``(addr, prefixlen)``
with IPv4 as ``int``; the first address of a subnet is its primary.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Port:
    ifindex: int
    name: str
    mac: bytes
    mtu: int = 1500
    addrs4: list[tuple[int, int]] = field(default_factory=list)   # (address, prefixlen)
    addrs6: list[tuple[int, int]] = field(default_factory=list)
    up: bool = True
    forwarding: bool = True
    proxy_arp: bool = False           # net.ipv4.conf.<port>.proxy_arp (core/link/arp.py)
    rx_packets: int = 0
    rx_bytes: int = 0
    rx_dropped: int = 0
    tx_packets: int = 0
    tx_bytes: int = 0
    tx_dropped: int = 0

    def primary_addr4(self, toward: int | None = None) -> int | None:
        """inet_select_addr(): an address of this port, preferring one whose
        subnet contains *toward*; the first (primary) address otherwise."""
        if not self.addrs4:
            return None
        if toward is not None:
            for addr, plen in self.addrs4:
                mask = (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF
                if (addr ^ toward) & mask == 0:
                    return addr
        return self.addrs4[0][0]

    def counters(self) -> dict[str, int]:
        return {"rx_packets": self.rx_packets, "rx_bytes": self.rx_bytes,
                "rx_dropped": self.rx_dropped, "tx_packets": self.tx_packets,
                "tx_bytes": self.tx_bytes, "tx_dropped": self.tx_dropped}
