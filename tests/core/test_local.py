"""Local delivery: echo, UDP/TCP/unknown protocols, reassembly (ip_local_deliver)."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP as ScapyIP
from scapy.layers.inet import defragment

from .helpers import (
    ALL_ROUTER_IPS, BCAST_MAC, H1, H2, LAN, R_IP, R_MAC, SECOND, TCP_ACK, TCP_FIN, TCP_PSH,
    TCP_RST, TCP_SYN, WAN, Net, echo, expect_error, expect_icmp, expect_ipv4,
    expect_arp, expect_tcp, fragment, frame_from, icmp, ipv4, tcp, udp,
)


def net_with_h1() -> Net:
    net = Net()
    net.learn(H1)
    return net


# --------------------------------------------------------------------------
# Echo
# --------------------------------------------------------------------------

@pytest.mark.parametrize("owner,addr", ALL_ROUTER_IPS)
def test_echo_to_each_router_address_is_answered_from_it(owner: int, addr: str) -> None:
    net = net_with_h1()
    data = bytes(range(56))
    l3 = ipv4(H1.ip, addr, echo(ident=0x1111, seq=7, data=data), proto=1, ttl=33, tos=0x10)
    tx = net.send(LAN, frame_from(H1, l3))
    assert len(tx) == 1
    msg = expect_icmp(tx[0], type=0, code=0, src=addr, dst=H1.ip, ttl=64, df=False,
                      tos=0x10, ifindex=LAN, eth_dst=H1.mac, eth_src=R_MAC[LAN],
                      rest=(0x1111 << 16) | 7)
    assert msg.data == data
    assert net.snmp("IcmpInEchos") == 1 and net.snmp("IcmpOutEchoReps") == 1
    assert net.drops() == {}


def test_timestamp_request_gets_a_timestamp_reply() -> None:
    """icmp_timestamp(): type 14 code 0, id/seq and originate copied, receive = transmit =
    ms since midnight UTC (here the virtual clock, no wall offset); any request code;
    too short -> an InError; to broadcast -> ignored (icmp_echo_ignore_broadcasts)."""
    import struct
    net = net_with_h1()
    net.now = 3_600_123 * 1_000_000                  # 01:00:00.123 UTC on the virtual clock
    body = struct.pack("!III", 0x01020304, 0, 0)
    l3 = ipv4(H1.ip, R_IP[LAN], icmp(13, 5, (0x4242 << 16) | 9, body), proto=1)
    tx = net.send(LAN, frame_from(H1, l3))
    assert len(tx) == 1
    msg = expect_icmp(tx[0], type=14, code=0, src=R_IP[LAN], dst=H1.ip, rest=(0x4242 << 16) | 9)
    assert struct.unpack("!III", msg.data) == (0x01020304, 3_600_123, 3_600_123)
    assert net.snmp("IcmpInTimestamps") == 1 and net.snmp("IcmpOutTimestampReps") == 1
    short = ipv4(H1.ip, R_IP[LAN], icmp(13, 0, 0, b"\0\0"), proto=1)
    assert net.send(LAN, frame_from(H1, short)) == []
    assert net.snmp("IcmpInErrors") == 1
    bc = ipv4(H1.ip, "10.0.1.255", icmp(13, 0, 0, body), proto=1)
    assert net.send(LAN, frame_from(H1, bc, eth_dst=BCAST_MAC)) == []


def test_echo_with_ttl_1_to_the_router_is_answered() -> None:
    net = net_with_h1()
    tx = net.send(LAN, frame_from(H1, ipv4(H1.ip, R_IP[WAN], echo(), proto=1, ttl=1)))
    expect_icmp(tx[0], type=0, code=0, src=R_IP[WAN], dst=H1.ip)


def test_echo_in_an_l2_broadcast_frame_to_a_unicast_address_is_answered() -> None:
    """icmp_rcv() only ignores echo to an IP broadcast route (RTCF_BROADCAST)."""
    net = net_with_h1()
    tx = net.send(LAN, frame_from(H1, ipv4(H1.ip, R_IP[LAN], echo(), proto=1),
                                  eth_dst=BCAST_MAC))
    expect_icmp(tx[0], type=0, code=0, src=R_IP[LAN], dst=H1.ip, eth_dst=H1.mac)


@pytest.mark.parametrize("dst,eth_dst", [
    ("10.0.1.255", None), ("10.0.1.255", BCAST_MAC), ("255.255.255.255", BCAST_MAC),
    ("10.0.2.255", None), ("10.0.20.255", None),
])
def test_echo_to_a_broadcast_address_is_ignored(dst: str, eth_dst: bytes | None) -> None:
    """icmp_echo_ignore_broadcasts = 1."""
    net = net_with_h1()
    assert net.send(LAN, frame_from(H1, ipv4(H1.ip, dst, echo(), proto=1),
                                    eth_dst=eth_dst)) == []
    assert net.drops() == {"broadcast_ignored": 1}


def test_echo_with_bad_icmp_checksum_is_dropped() -> None:
    net = net_with_h1()
    assert net.send(LAN, frame_from(H1, ipv4(H1.ip, R_IP[LAN], echo(csum=0x1234),
                                             proto=1))) == []
    assert net.drops() == {"icmp_csum_error": 1}
    assert net.snmp("IcmpInCsumErrors") == 1


@pytest.mark.parametrize("msg", [
    echo(reply=True), icmp(3, 3, 0, bytes(28)), icmp(11, 0, 0, bytes(28)),
], ids=["echo-reply", "dest-unreach", "time-exceeded"])
def test_other_icmp_to_the_router_is_consumed_silently(msg: bytes) -> None:
    net = net_with_h1()
    assert net.send(LAN, frame_from(H1, ipv4(H1.ip, R_IP[LAN], msg, proto=1))) == []
    assert net.drops() == {}


def test_truncated_icmp_is_dropped() -> None:
    net = net_with_h1()
    assert net.send(LAN, frame_from(H1, ipv4(H1.ip, R_IP[LAN], b"\x08\x00\xf7", proto=1))) == []
    assert net.drops() == {"icmp_malformed": 1}


# --------------------------------------------------------------------------
# Reassembly
# --------------------------------------------------------------------------

def big_echo(dst: str = R_IP[LAN], size: int = 3000, ident: int = 0x2222) -> tuple[bytes, bytes]:
    data = bytes(i % 253 for i in range(size - 28))
    return data, ipv4(H1.ip, dst, echo(ident=0x77, seq=3, data=data), proto=1, ident=ident)


@pytest.mark.parametrize("order", [[0, 1, 2], [2, 1, 0], [1, 2, 0]])
def test_fragmented_echo_is_reassembled_and_the_reply_fragmented(order: list[int]) -> None:
    net = net_with_h1()
    data, l3 = big_echo()
    frags = fragment(l3, 1480)
    assert len(frags) == 3
    tx = []
    for i in order:
        tx += net.send(LAN, frame_from(H1, frags[i]))
    assert net.snmp("IpReasmOKs") == 1 and len(net.router.reasm) == 0
    # The 3000-byte reply does not fit lan0's 1500: fragmented, DF clear.
    assert len(tx) == 3
    pieces = [expect_ipv4(t, ifindex=LAN, eth_dst=H1.mac, src=R_IP[LAN], dst=H1.ip, proto=1,
                          ttl=64, df=False, max_len=1500) for t in tx]
    assert len({p.ident for p in pieces}) == 1
    assert [p.frag_offset for p in pieces] == [0, 1480, 2960]
    assert [p.mf for p in pieces] == [True, True, False]
    whole = defragment([ScapyIP(t[1][14:]) for t in tx])
    assert len(whole) == 1
    reply = bytes(whole[0])
    msg = expect_icmp((LAN, R_MAC[LAN] + H1.mac + b"\x08\x00" + reply), type=0, code=0,
                      src=R_IP[LAN], dst=H1.ip)
    assert msg.data == data and msg.rest == (0x77 << 16) | 3


def test_fragmented_udp_to_router_gets_port_unreachable_quoting_the_whole_datagram() -> None:
    net = net_with_h1()
    payload = udp(H1.ip, R_IP[LAN], data=b"u" * 2000)
    l3 = ipv4(H1.ip, R_IP[LAN], payload, ident=0x3333)
    tx = []
    for f in fragment(l3, 1480):
        tx += net.send(LAN, frame_from(H1, f))
    assert len(tx) == 1
    msg = expect_icmp(tx[0], type=3, code=3, src=R_IP[LAN], dst=H1.ip, max_len=576)
    q = msg.quoted
    assert (q.ident, q.mf, q.frag_offset, q.total_len) == (0x3333, False, 0, len(l3))


def test_exact_duplicate_fragment_is_ignored() -> None:
    net = net_with_h1()
    _, l3 = big_echo()
    f = fragment(l3, 1480)
    tx = []
    for piece in (f[0], f[0], f[1], f[1], f[2]):
        tx += net.send(LAN, frame_from(H1, piece))
    assert len(tx) == 3
    assert net.drops() == {"reasm_dup": 2}   # each duplicate skb is freed and counted


def test_overlapping_fragments_drop_the_datagram() -> None:
    net = net_with_h1()
    _, l3 = big_echo()
    f = fragment(l3, 1480)
    payload = l3[20:]
    overlap = ipv4(H1.ip, R_IP[LAN], payload[1000:2480], proto=1, ident=0x2222, mf=True,
                   frag_offset=1000)
    tx = net.send(LAN, frame_from(H1, f[0]))
    tx += net.send(LAN, frame_from(H1, overlap))
    assert net.drops() == {"reasm_overlap": 1}
    assert len(net.router.reasm) == 0 and net.router.reasm.mem == 0
    tx += net.send(LAN, frame_from(H1, f[1]))
    tx += net.send(LAN, frame_from(H1, f[2]))
    assert tx == []                                     # never completes
    assert net.snmp("IpReasmFails") == 1


def test_reassembly_timeout_sends_time_exceeded_when_first_fragment_came() -> None:
    net = net_with_h1()
    _, l3 = big_echo(ident=0x4444)
    f = fragment(l3, 1480)
    net.send(LAN, frame_from(H1, f[0]), at=0)
    net.send(LAN, frame_from(H1, f[2]), at=SECOND)
    assert net.run_until(30 * SECOND - 1) == []
    out = net.run_until(30 * SECOND)
    assert len(out) == 1
    t, idx, frame = out[0]
    assert t == 30 * SECOND                              # from the first fragment, not the last
    msg = expect_error((idx, frame), type=11, code=1, src=R_IP[LAN], about=f[0], ifindex=LAN,
                       eth_dst=H1.mac)
    assert msg.quoted.mf and msg.quoted.frag_offset == 0
    assert net.drops() == {"reasm_timeout": 1}
    assert len(net.router.reasm) == 0 and net.router.reasm.mem == 0


def test_reassembly_timeout_is_silent_without_the_first_fragment() -> None:
    net = net_with_h1()
    _, l3 = big_echo(ident=0x5555)
    f = fragment(l3, 1480)
    net.send(LAN, frame_from(H1, f[1]), at=0)
    net.send(LAN, frame_from(H1, f[2]), at=0)
    assert net.run_until(40 * SECOND) == []
    assert net.drops() == {"reasm_timeout": 1}
    assert len(net.router.reasm) == 0


def test_fragments_of_different_datagrams_do_not_mix() -> None:
    net = net_with_h1()
    _, a = big_echo(ident=1)
    _, b = big_echo(ident=2)
    fa, fb = fragment(a, 1480), fragment(b, 1480)
    tx = []
    for x, y in zip(fa, fb):
        tx += net.send(LAN, frame_from(H1, x))
        tx += net.send(LAN, frame_from(H1, y))
    assert len(tx) == 6 and net.snmp("IpReasmOKs") == 2


def test_oversized_reassembly_is_dropped() -> None:
    net = net_with_h1()
    last = ipv4(H1.ip, R_IP[LAN], b"x" * 100, proto=1, ident=9, frag_offset=65528)
    assert net.send(LAN, frame_from(H1, last)) == []
    assert net.drops() == {"reasm_too_big": 1}


def test_fragment_contained_in_received_data_is_a_duplicate() -> None:
    net = net_with_h1()
    _, l3 = big_echo()
    f = fragment(l3, 1480)
    inner = ipv4(H1.ip, R_IP[LAN], l3[20 + 8:20 + 16], proto=1, ident=0x2222, mf=True,
                 frag_offset=8)
    tx = net.send(LAN, frame_from(H1, f[0]))
    tx += net.send(LAN, frame_from(H1, inner))
    tx += net.send(LAN, frame_from(H1, f[1]))
    tx += net.send(LAN, frame_from(H1, f[2]))
    assert len(tx) == 3
    assert net.drops() == {"reasm_dup": 1}


def test_non_last_fragment_with_ragged_length_is_trimmed() -> None:
    net = net_with_h1()
    data, l3 = big_echo(size=1500)
    payload = l3[20:]
    first = ipv4(H1.ip, R_IP[LAN], payload[:1000] + b"JUNK", proto=1, ident=0x2222, mf=True)
    second = ipv4(H1.ip, R_IP[LAN], payload[1000:], proto=1, ident=0x2222, frag_offset=1000)
    tx = net.send(LAN, frame_from(H1, first))
    tx += net.send(LAN, frame_from(H1, second))
    assert len(tx) == 1
    expect_icmp(tx[0], type=0, code=0, src=R_IP[LAN], dst=H1.ip)


# --------------------------------------------------------------------------
# UDP, TCP, other protocols
# --------------------------------------------------------------------------

@pytest.mark.parametrize("owner,addr", ALL_ROUTER_IPS)
def test_udp_to_router_address_gets_port_unreachable_from_it(owner: int, addr: str) -> None:
    net = net_with_h1()
    l3 = ipv4(H1.ip, addr, udp(H1.ip, addr, dport=5353), ttl=9)
    tx = net.send(LAN, frame_from(H1, l3))
    assert len(tx) == 1
    expect_error(tx[0], type=3, code=3, src=addr, about=l3, ifindex=LAN, eth_dst=H1.mac)
    assert net.drops() == {"udp_no_port": 1}
    assert net.snmp("UdpNoPorts") == 1


def test_udp_without_checksum_gets_port_unreachable() -> None:
    net = net_with_h1()
    l3 = ipv4(H1.ip, R_IP[LAN], udp(H1.ip, R_IP[LAN], csum=0))
    tx = net.send(LAN, frame_from(H1, l3))
    expect_error(tx[0], type=3, code=3, src=R_IP[LAN], about=l3)


def test_udp_bad_checksum_is_silent() -> None:
    net = net_with_h1()
    good = udp(H1.ip, R_IP[LAN])
    bad = good[:6] + bytes([good[6] ^ 0xFF, good[7]]) + good[8:]
    assert net.send(LAN, frame_from(H1, ipv4(H1.ip, R_IP[LAN], bad))) == []
    assert net.drops() == {"udp_csum_error": 1}
    assert net.snmp("UdpInCsumErrors") == 1 and net.snmp("UdpNoPorts") == 0


@pytest.mark.parametrize("length", [7, 17, 200])
def test_udp_bad_length_is_malformed(length: int) -> None:
    net = net_with_h1()
    seg = udp(H1.ip, R_IP[LAN], data=b"y" * 8, csum=0, length=length)
    assert net.send(LAN, frame_from(H1, ipv4(H1.ip, R_IP[LAN], seg))) == []
    assert net.drops() == {"udp_malformed": 1}


def test_tcp_syn_gets_rst_ack() -> None:
    net = net_with_h1()
    seg = tcp(H1.ip, R_IP[WAN], sport=51000, dport=22, seq=0xFFFFFFFF, flags=TCP_SYN)
    tx = net.send(LAN, frame_from(H1, ipv4(H1.ip, R_IP[WAN], seg, proto=6, tos=0x08)))
    assert len(tx) == 1
    rst = expect_tcp(tx[0], src=R_IP[WAN], dst=H1.ip, sport=22, dport=51000, seq=0, ack=0,
                     flags=TCP_RST | TCP_ACK, ifindex=LAN, eth_dst=H1.mac, tos=0x08)
    # ack = seq + 1 (the SYN), modulo 2**32.
    assert rst.ack == 0 and rst.window == 0 and rst.payload == b""
    assert net.snmp("TcpOutRsts") == 1


@pytest.mark.parametrize("flags,data,extra", [
    (TCP_SYN, b"", 1), (TCP_SYN, b"0123456789", 11), (TCP_FIN, b"", 1),
    (TCP_SYN | TCP_FIN, b"ab", 4), (TCP_PSH, b"hello", 5),
])
def test_tcp_without_ack_gets_rst_ack_covering_the_segment(flags: int, data: bytes,
                                                           extra: int) -> None:
    net = net_with_h1()
    seg = tcp(H1.ip, R_IP[LAN], seq=1000, flags=flags, data=data)
    tx = net.send(LAN, frame_from(H1, ipv4(H1.ip, R_IP[LAN], seg, proto=6)))
    expect_tcp(tx[0], src=R_IP[LAN], dst=H1.ip, seq=0, ack=1000 + extra,
               flags=TCP_RST | TCP_ACK)


def test_tcp_ack_segment_gets_rst_with_their_ack_as_seq() -> None:
    net = net_with_h1()
    seg = tcp(H1.ip, R_IP[LAN], sport=40001, dport=443, seq=5, ack=0xDEADBEEF,
              flags=TCP_ACK | TCP_PSH, data=b"GET /")
    tx = net.send(LAN, frame_from(H1, ipv4(H1.ip, R_IP[LAN], seg, proto=6)))
    assert len(tx) == 1
    rst = expect_tcp(tx[0], src=R_IP[LAN], dst=H1.ip, sport=443, dport=40001, seq=0xDEADBEEF,
                     flags=TCP_RST)
    assert rst.ip.df                                     # the TCP control socket sets DF


def test_tcp_rst_is_never_answered() -> None:
    net = net_with_h1()
    seg = tcp(H1.ip, R_IP[LAN], flags=TCP_RST | TCP_ACK, ack=5)
    assert net.send(LAN, frame_from(H1, ipv4(H1.ip, R_IP[LAN], seg, proto=6))) == []
    assert net.drops() == {"tcp_no_socket": 1}


def test_tcp_bad_checksum_is_silent() -> None:
    net = net_with_h1()
    seg = tcp(H1.ip, R_IP[LAN], csum=0x0BAD)
    assert net.send(LAN, frame_from(H1, ipv4(H1.ip, R_IP[LAN], seg, proto=6))) == []
    assert net.drops() == {"tcp_csum_error": 1}


def test_tcp_to_broadcast_is_not_reset() -> None:
    net = net_with_h1()
    seg = tcp(H1.ip, "10.0.1.255")
    assert net.send(LAN, frame_from(H1, ipv4(H1.ip, "10.0.1.255", seg, proto=6))) == []


def test_tcp_in_l2_broadcast_frame_is_not_reset() -> None:
    net = net_with_h1()
    seg = tcp(H1.ip, R_IP[LAN])
    frame = frame_from(H1, ipv4(H1.ip, R_IP[LAN], seg, proto=6), eth_dst=BCAST_MAC)
    assert net.send(LAN, frame) == []


@pytest.mark.parametrize("proto", [0, 99, 253, 254])
def test_unknown_protocol_gets_protocol_unreachable(proto: int) -> None:
    net = net_with_h1()
    l3 = ipv4(H1.ip, R_IP[WAN], b"\x00" * 24, proto=proto)
    tx = net.send(LAN, frame_from(H1, l3))
    assert len(tx) == 1
    expect_error(tx[0], type=3, code=2, src=R_IP[WAN], about=l3, ifindex=LAN)
    assert net.drops() == {"proto_unreachable": 1}
    assert net.snmp("IpInUnknownProtos") == 1


def test_igmp_to_the_router_is_not_protocol_unreachable() -> None:
    net = net_with_h1()
    report = icmp(0x16, 0, 0xE0000016)                  # an IGMPv2 report, ICMP-like checksum
    assert net.send(LAN, frame_from(H1, ipv4(H1.ip, R_IP[LAN], report, proto=2, ttl=1))) == []


def test_local_delivery_to_other_port_address_from_wan() -> None:
    net = Net()
    net.learn(H2)
    l3 = ipv4(H2.ip, R_IP[LAN], udp(H2.ip, R_IP[LAN]))
    tx = net.send(WAN, frame_from(H2, l3))
    expect_error(tx[0], type=3, code=3, src=R_IP[LAN], about=l3, ifindex=WAN, eth_dst=H2.mac)


def test_reply_to_unknown_sender_waits_for_arp() -> None:
    net = Net()
    tx = net.send(LAN, frame_from(H1, ipv4(H1.ip, R_IP[LAN], echo(), proto=1)))
    assert len(tx) == 1
    expect_arp(tx[0], op=1, ifindex=LAN, eth_dst=BCAST_MAC, tpa=H1.ip, spa=R_IP[LAN])
    tx = net.confirm(H1)
    expect_icmp(tx[0], type=0, code=0, src=R_IP[LAN], dst=H1.ip, eth_dst=H1.mac)
    assert net.drops() == {}


def test_arp_for_a_local_reply_announces_the_reply_source() -> None:
    net = Net()
    tx = net.send(LAN, frame_from(H1, ipv4(H1.ip, R_IP[WAN], echo(), proto=1)))
    assert len(tx) == 1
    expect_arp(tx[0], op=1, ifindex=LAN, tpa=H1.ip, spa=R_IP[WAN])
