"""eth_rcv(): classify a frame at L2 and hand it to its protocol (eth_type_trans).

pkt_type: HOST when the destination MAC is the port's, BROADCAST for
ff:ff:ff:ff:ff:ff, MULTICAST when the I/G bit is set, OTHERHOST otherwise.
802.1Q-tagged frames are dropped (no VLAN sub-interfaces yet); IPv6 goes to
ip6/rcv.py unless disable_ipv6 is set; other ethertypes are counted as unhandled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...wire.addr import BROADCAST_MAC
from ...wire.ethernet import ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6
from ..drops import DropReason
from ..ip.rcv import ip_rcv
from ..ip6.rcv import ipv6_rcv
from ..packet import PktType
from .arp import arp_rcv

if TYPE_CHECKING:
    from ..port import Port
    from ..router import Router


def eth_rcv(r: Router, port: Port, frame: bytes, now: int) -> None:
    if len(frame) < ETH_HLEN:
        r.drop(DropReason.ETH_TRUNCATED, port)
        return
    dst = frame[0:6]
    if dst == port.mac:
        pkt_type = PktType.HOST
    elif dst == BROADCAST_MAC:
        pkt_type = PktType.BROADCAST
    elif dst[0] & 1:
        pkt_type = PktType.MULTICAST
    else:
        pkt_type = PktType.OTHERHOST
    etype = (frame[12] << 8) | frame[13]
    if r.trace is not None:
        r.note("eth_rcv", dev=port.name, src_mac=frame[6:12].hex(":"), dst_mac=dst.hex(":"),
               pkt_type=pkt_type.name, ethertype=f"0x{etype:04x}")
    if etype == ETH_P_IP:
        ip_rcv(r, port, frame, ETH_HLEN, pkt_type, now)
    elif etype == ETH_P_ARP:
        arp_rcv(r, port, frame, ETH_HLEN, pkt_type, now)
    elif etype == ETH_P_IPV6:
        if r.sysctl6.disable_ipv6:
            r.drop(DropReason.IPV6_DISABLED, port)
        else:
            ipv6_rcv(r, port, frame, ETH_HLEN, pkt_type, now)
    elif etype in (ETH_P_8021Q, ETH_P_8021AD):
        r.drop(DropReason.VLAN_UNSUPPORTED, port)
    else:
        r.drop(DropReason.UNHANDLED_ETHERTYPE, port)
