"""The test helpers themselves: builders agree with scapy, checkers can fail."""

from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP as ScapyICMP
from scapy.layers.inet import IP as ScapyIP
from scapy.layers.inet import TCP as ScapyTCP
from scapy.layers.inet import UDP as ScapyUDP
from scapy.layers.l2 import ARP as ScapyARP
from scapy.layers.l2 import Ether

from .helpers import (
    H1, H2, LAN, R_IP, R_MAC, ZERO_MAC, arp, echo, expect_arp, expect_icmp, expect_ipv4,
    fragment, frame_from, ipv4, parse_ipv4, tcp, udp,
)


def test_ipv4_udp_builder_matches_scapy() -> None:
    ours = ipv4(H1.ip, H2.ip, udp(H1.ip, H2.ip, 1234, 53, b"hello"), ttl=7, tos=0x10,
                ident=99, df=True)
    ref = bytes(ScapyIP(src=H1.ip, dst=H2.ip, ttl=7, tos=0x10, id=99, flags="DF")
                / ScapyUDP(sport=1234, dport=53) / b"hello")
    assert ours == ref


def test_tcp_and_icmp_builders_match_scapy() -> None:
    ours = ipv4(H1.ip, H2.ip, tcp(H1.ip, H2.ip, 1, 2, seq=3, ack=4, flags=0x12, window=5),
                proto=6, ident=1)
    ref = bytes(ScapyIP(src=H1.ip, dst=H2.ip, id=1) / ScapyTCP(sport=1, dport=2, seq=3, ack=4,
                                                              flags="SA", window=5))
    assert ours == ref
    ours = ipv4(H1.ip, H2.ip, echo(ident=7, seq=8, data=b"abc"), proto=1, ident=1)
    ref = bytes(ScapyIP(src=H1.ip, dst=H2.ip, id=1) / ScapyICMP(id=7, seq=8) / b"abc")
    assert ours == ref


def test_arp_builder_matches_scapy() -> None:
    ours = arp(1, H1.mac, H1.ip, ZERO_MAC, R_IP[LAN], pad=False)
    ref = bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src=H1.mac.hex(":"))
                / ScapyARP(op=1, hwsrc=H1.mac.hex(":"), psrc=H1.ip, hwdst="00:00:00:00:00:00",
                           pdst=R_IP[LAN]))
    assert ours == ref


def test_fragment_builder_round_trips() -> None:
    l3 = ipv4(H1.ip, H2.ip, bytes(range(200)) * 10, ident=5)
    frags = fragment(l3, 800)
    assert [parse_ipv4(f).frag_offset for f in frags] == [0, 800, 1600]
    assert [parse_ipv4(f).mf for f in frags] == [True, True, False]
    assert b"".join(parse_ipv4(f).payload for f in frags) == l3[20:]


def test_checkers_reject_wrong_values() -> None:
    frame = frame_from(H1, ipv4(H1.ip, R_IP[LAN], echo(), proto=1, ttl=5))
    expect_ipv4((LAN, frame), src=H1.ip, ttl=5, ifindex=LAN, eth_dst=R_MAC[LAN])
    with pytest.raises(AssertionError, match="ttl"):
        expect_ipv4((LAN, frame), ttl=6)
    with pytest.raises(AssertionError, match="ifindex"):
        expect_ipv4((LAN, frame), ifindex=2)
    with pytest.raises(AssertionError, match="icmp.type"):
        expect_icmp((LAN, frame), type=0, code=0, ttl=5)
    bad = bytearray(frame)
    bad[14 + 10] ^= 1
    with pytest.raises(AssertionError, match="checksum"):
        expect_ipv4((LAN, bytes(bad)))
    with pytest.raises(AssertionError, match="arp.op"):
        expect_arp((LAN, arp(1, H1.mac, H1.ip, ZERO_MAC, R_IP[LAN])), op=2)
    with pytest.raises(AssertionError, match="quoted"):
        msg = frame_from(H1, ipv4(H1.ip, R_IP[LAN], bytes([3, 1, 0xFC, 0xFE]) + bytes(4),
                                  proto=1))
        expect_icmp((LAN, msg), type=3, code=1, ttl=64, quote=b"\x45")
