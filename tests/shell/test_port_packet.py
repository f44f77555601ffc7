"""AF_PACKET port helpers (shell/port_packet.py) on crafted frames: completing a partial
checksum (skb_checksum_help) and splitting TSO super-frames as tcp_gso_segment does,
checked against scapy's own checksums; the virtio_net_hdr decoding.  No root."""

from __future__ import annotations

import struct

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from pyrouter.shell.port_packet import (
    F_NEEDS_CSUM,
    GSO_TCPV4,
    GSO_TCPV6,
    GSO_UDP,
    VNET_HDR,
    complete_csum,
    decode,
    tcp_segment,
)
from pyrouter.wire.checksum import pseudo_header_v4

ETH = Ether(src="02:00:00:00:aa:01", dst="02:00:00:00:01:01")


def counters() -> dict[str, int]:
    return {"csum_completed": 0, "gso_segmented": 0}


def partial(pkt: Ether, l4: int, field: int) -> bytearray:
    """The frame as a CHECKSUM_PARTIAL skb carries it: the L4 checksum field holds the
    folded pseudo-header sum (~tcp_v4_check(len, saddr, daddr, 0))."""
    raw = bytearray(bytes(pkt))
    ip = pkt[IP]
    s = pseudo_header_v4(bytes(map(int, ip.src.split("."))), bytes(map(int, ip.dst.split("."))),
                         ip.proto, len(raw) - l4)
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    raw[l4 + field:l4 + field + 2] = s.to_bytes(2, "big")
    return raw


def test_complete_partial_tcp_and_udp_checksums() -> None:
    for pkt, field in ((ETH / IP(src="10.0.1.2", dst="10.0.2.2") / TCP(sport=1, dport=2)
                        / (b"x" * 1001), 16),
                       (ETH / IP(src="10.0.1.2", dst="10.0.2.2") / UDP(sport=1, dport=2)
                        / (b"y" * 333), 6)):
        good = bytes(pkt)
        raw = partial(pkt, 34, field)
        assert raw != good
        assert complete_csum(raw, 34, field)
        assert bytes(raw) == good
    assert not complete_csum(bytearray(60), 58, 16)          # offsets past the frame


def test_decode_completes_with_the_vnet_header() -> None:
    pkt = ETH / IP(src="10.0.1.2", dst="10.0.2.2") / TCP() / (b"z" * 100)
    raw = partial(pkt, 34, 16)
    c = counters()
    hdr = VNET_HDR.pack(F_NEEDS_CSUM, 0, 0, 0, 34, 16)
    assert decode(hdr + bytes(raw), c) == [bytes(pkt)] and c["csum_completed"] == 1
    assert decode(VNET_HDR.pack(0, 0, 0, 0, 0, 0) + bytes(pkt), c) == [bytes(pkt)]
    assert decode(VNET_HDR.pack(F_NEEDS_CSUM, 0, 0, 0, 200, 16) + bytes(pkt), c) is None
    assert decode(VNET_HDR.pack(0, GSO_UDP, 0, 1400, 0, 0) + bytes(pkt), c) is None
    assert decode(b"\x00" * 10, c) is None


def check_segments(segs: list[bytes], payload: bytes, mss: int, seq: int, v6: bool) -> None:
    assert len(segs) == -(-len(payload) // mss)
    got = b""
    for i, s in enumerate(segs):
        e = Ether(s)
        l3 = e[IPv6] if v6 else e[IP]
        tcp = e[TCP]
        # scapy recomputes checksums/lengths when they are deleted: they must match.
        ref = e.copy()
        del ref[TCP].chksum
        if v6:
            del ref[IPv6].plen
        else:
            del ref[IP].chksum, ref[IP].len
        assert bytes(ref) == s, f"segment {i}: checksums or lengths differ"
        assert tcp.seq == (seq + i * mss) & 0xFFFFFFFF
        last = i == len(segs) - 1
        assert bool(tcp.flags.F) == last and bool(tcp.flags.P) == last
        assert bool(tcp.flags.C) == (i == 0)
        if not v6:
            assert l3.id == (0xFFFE + i) & 0xFFFF
        got += bytes(tcp.payload)
    assert got == payload


def test_tso_super_frames_are_segmented_v4_and_v6() -> None:
    payload = bytes(range(256)) * 23                 # 5888 bytes: 4 full + 1 short segment
    mss = 1448
    seq = 0xFFFFF000                                 # wraps
    tcp = TCP(sport=40000, dport=5001, seq=seq, flags="PAFC",
              options=[("NOP", None), ("NOP", None), ("Timestamp", (1, 2))])
    v4 = ETH / IP(src="10.0.1.2", dst="10.0.2.2", id=0xFFFE, flags="DF") / tcp / payload
    check_segments(tcp_segment(bytes(v4), mss), payload, mss, seq, False)  # type: ignore[arg-type]
    v6 = ETH / IPv6(src="fd00:1::2", dst="fd00:2::2") / tcp / payload
    check_segments(tcp_segment(bytes(v6), mss), payload, mss, seq, True)   # type: ignore[arg-type]
    c = counters()
    hdr = VNET_HDR.pack(F_NEEDS_CSUM, GSO_TCPV4, 66, mss, 34, 16)
    assert len(decode(hdr + bytes(v4), c) or []) == 5 and c["gso_segmented"] == 1
    hdr6 = VNET_HDR.pack(F_NEEDS_CSUM, GSO_TCPV6, 86, mss, 54, 16)
    assert len(decode(hdr6 + bytes(v6), c) or []) == 5


def test_tso_refuses_what_it_cannot_split() -> None:
    udp = ETH / IP(src="10.0.1.2", dst="10.0.2.2") / UDP() / (b"u" * 3000)
    assert tcp_segment(bytes(udp), 1400) is None
    assert tcp_segment(bytes(ETH / IP() / TCP())[:40], 1400) is None
    assert tcp_segment(bytes(ETH / IP() / TCP() / b"x"), 0) is None
    assert struct.calcsize("=BBHHHH") == VNET_HDR.size == 10
