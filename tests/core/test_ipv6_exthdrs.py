"""IPv6 extension headers (RFC 8200 section 4; net/ipv6/exthdrs.c ip6_parse_tlv,
ipv6_rthdr_rcv; ip6_input.c unknown next header) with crafted frames."""

from __future__ import annotations

import pytest

from tests.core.helpers6 import (
    ALL_NODES,
    H1,
    H2,
    LAN,
    R_IP6,
    R_LL,
    WAN,
    Net6,
    echo6_body,
    expect_error6,
    expect_icmp6,
    expect_ip6,
    frame6,
    hbh,
    icmp6_msg,
    icmp6_pkt,
    ip6,
)


@pytest.fixture
def net() -> Net6:
    n = Net6()
    n.ready()
    n.learn6(H1)
    return n


def echo_behind(ext: bytes, first: int, dst: str = R_IP6[LAN], src: str = H1.ip) -> bytes:
    return icmp6_pkt(src, dst, 128, 0, echo6_body(), ext=ext, ext_nh=first)


def opt(t: int, data: bytes) -> bytes:
    return bytes([t, len(data)]) + data


# -- unknown next header -------------------------------------------------------------

@pytest.mark.parametrize("ext,first,ptr", [
    (b"", 253, 6),
    (hbh(253, b"\x01\x04\x00\x00\x00\x00"), 0, 40),
    (hbh(60, b"\x01\x04\x00\x00\x00\x00") + hbh(253, b"\x01\x04\x00\x00\x00\x00"), 0, 48),
    (hbh(253, b"\x01\x04\x00\x00\x00\x00"), 60, 40),
])
def test_unknown_next_header_param_prob_code_1(net: Net6, ext: bytes, first: int,
                                               ptr: int) -> None:
    pkt = ip6(H1.ip, R_IP6[LAN], first, ext + b"\x00" * 24)
    out = net.send(LAN, frame6(H1, pkt))
    assert len(out) == 1
    expect_error6(out[0], type=4, code=1, about=pkt, src=R_IP6[LAN], word=ptr, ifindex=LAN)
    assert net.snmp("Ip6InUnknownProtos") == 1


def test_hop_by_hop_not_first_is_unknown(net: Net6) -> None:
    """RFC 8200 4.1: Hop-by-Hop only right after the IPv6 header; elsewhere Param Prob
    code 1 at the field naming it."""
    pkt = ip6(H1.ip, R_IP6[LAN], 60, hbh(0, b"\x01\x04\x00\x00\x00\x00")
              + hbh(58, b"\x01\x04\x00\x00\x00\x00") + icmp6_msg(H1.ip, R_IP6[LAN], 128, 0,
                                                               echo6_body()))
    out = net.send(LAN, frame6(H1, pkt))
    assert len(out) == 1
    expect_error6(out[0], type=4, code=1, about=pkt, src=R_IP6[LAN], word=40)


# -- Hop-by-Hop options by their top two bits ------------------------------------------

def test_hbh_unknown_option_00_skipped(net: Net6) -> None:
    out = net.send(LAN, frame6(H1, echo_behind(hbh(58, opt(0x1E, b"\x00" * 4)), 0)))
    assert len(out) == 1
    m = expect_icmp6(out[0], type=129, src=R_IP6[LAN], dst=H1.ip)
    assert m.body == echo6_body()


def test_hbh_unknown_option_01_dropped(net: Net6) -> None:
    out = net.send(LAN, frame6(H1, echo_behind(hbh(58, opt(0x5E, b"\x00" * 4)), 0)))
    assert out == []
    assert net.drops().get("ip6_exthdr_bad") == 1


def test_hbh_unknown_option_10_param_prob_code_2(net: Net6) -> None:
    pkt = echo_behind(hbh(58, b"\x01\x00" + opt(0x9E, b"\x00\x00")), 0)  # PadN(0) first
    out = net.send(LAN, frame6(H1, pkt))
    assert len(out) == 1
    expect_error6(out[0], type=4, code=2, about=pkt, src=R_IP6[LAN], word=44, ifindex=LAN)


def test_hbh_unknown_option_10_to_multicast_still_answered(net: Net6) -> None:
    pkt = echo_behind(hbh(58, opt(0x9E, b"\x00" * 4)), 0, dst=ALL_NODES)
    out = net.send(LAN, frame6(H1, pkt))
    assert len(out) == 1
    expect_error6(out[0], type=4, code=2, about=pkt, src=R_IP6[LAN], word=42, ifindex=LAN)


def test_hbh_unknown_option_11_unicast_answered_multicast_not(net: Net6) -> None:
    pkt = echo_behind(hbh(58, opt(0xDE, b"\x00" * 4)), 0)
    out = net.send(LAN, frame6(H1, pkt))
    assert len(out) == 1
    expect_error6(out[0], type=4, code=2, about=pkt, src=R_IP6[LAN], word=42)
    out = net.send(LAN, frame6(H1, echo_behind(hbh(58, opt(0xDE, b"\x00" * 4)), 0,
                                               dst=ALL_NODES)))
    assert out == []


def test_hbh_processed_for_forwarded_packets(net: Net6) -> None:
    """Hop-by-Hop is examined by every node on the path (ipv6_rcv, before routing)."""
    net.learn6(H2)
    pkt = echo_behind(hbh(58, opt(0x9E, b"\x00" * 4)), 0, dst=H2.ip)
    out = net.send(LAN, frame6(H1, pkt))
    assert len(out) == 1
    expect_error6(out[0], type=4, code=2, about=pkt, src=R_IP6[LAN], word=42, ifindex=LAN)
    ok = echo_behind(hbh(58, opt(0x1E, b"\x00" * 4)), 0, dst=H2.ip)
    out = net.send(LAN, frame6(H1, ok))
    assert len(out) == 1
    expect_ip6(out[0], dst=H2.ip, hlim=63, nh=0, ifindex=WAN)


def test_dstopts_unknown_option_10_param_prob(net: Net6) -> None:
    pkt = echo_behind(hbh(58, opt(0x9E, b"\x00" * 4)), 60)
    out = net.send(LAN, frame6(H1, pkt))
    assert len(out) == 1
    expect_error6(out[0], type=4, code=2, about=pkt, src=R_IP6[LAN], word=42)


@pytest.mark.parametrize("options", [
    b"\x01\x04\x00\x00\x01\x00",                       # PadN with a non-zero byte
    b"\x01\x0c" + bytes(12),                           # 14 bytes of PadN (> 7)
    b"\x00" * 14,                                      # 14 Pad1
    b"\x01\x02\x00\x00" + b"\x01\x03\x00\x00\x00" * 2,  # three legal PadN: 14 bytes
], ids=["padn-nonzero", "padn-14", "pad1-14", "padn-padn"])
def test_bad_padding_dropped(net: Net6, options: bytes) -> None:
    out = net.send(LAN, frame6(H1, echo_behind(hbh(58, options), 0)))
    assert out == []
    assert net.drops().get("ip6_exthdr_bad") == 1


def test_legal_padding_accepted(net: Net6) -> None:
    pkt = echo_behind(hbh(58, b"\x00" + b"\x01\x03\x00\x00\x00"), 0)
    out = net.send(LAN, frame6(H1, pkt))
    assert len(out) == 1
    expect_icmp6(out[0], type=129, src=R_IP6[LAN])


def test_truncated_hbh_dropped(net: Net6) -> None:
    pkt = ip6(H1.ip, R_IP6[LAN], 0, bytes([58, 1]) + b"\x01\x04" + bytes(4))   # says 16
    out = net.send(LAN, frame6(H1, pkt))
    assert out == []
    assert net.drops()


# -- Routing header --------------------------------------------------------------------

def rthdr(nh: int, rtype: int, segleft: int, addrs: int = 1) -> bytes:
    return bytes([nh, 2 * addrs, rtype, segleft]) + bytes(4) + b"\x20\x01" + bytes(14) * addrs


def test_routing_type0_with_segments_left_param_prob(net: Net6) -> None:
    pkt = echo_behind(rthdr(58, 0, 1), 43)
    out = net.send(LAN, frame6(H1, pkt))
    assert len(out) == 1
    expect_error6(out[0], type=4, code=0, about=pkt, src=R_IP6[LAN], word=42, ifindex=LAN)


def test_routing_type0_after_hbh_pointer(net: Net6) -> None:
    pkt = echo_behind(hbh(43, b"\x01\x04" + bytes(4)) + rthdr(58, 0, 1), 0)
    out = net.send(LAN, frame6(H1, pkt))
    assert len(out) == 1
    expect_error6(out[0], type=4, code=0, about=pkt, src=R_IP6[LAN], word=50)


@pytest.mark.parametrize("rtype", [0, 99])
def test_routing_segments_left_0_ignored(net: Net6, rtype: int) -> None:
    pkt = echo_behind(rthdr(58, rtype, 0), 43)
    out = net.send(LAN, frame6(H1, pkt))
    assert len(out) == 1
    m = expect_icmp6(out[0], type=129, src=R_IP6[LAN], dst=H1.ip)
    assert m.body == echo6_body()


def test_routing_type3_rpl_silently_dropped(net: Net6) -> None:
    out = net.send(LAN, frame6(H1, echo_behind(rthdr(58, 3, 1), 43)))
    assert out == []
    assert net.drops().get("source_route") == 1


def test_routing_type4_srh_dropped_even_with_segments_left_0(net: Net6) -> None:
    out = net.send(LAN, frame6(H1, echo_behind(rthdr(58, 4, 0), 43)))
    assert out == []


def test_echo_to_link_local_behind_hbh(net: Net6) -> None:
    net.learn6(H1, H1.ll)
    pkt = echo_behind(hbh(58, opt(0x1E, b"\x00" * 4)), 0, dst=R_LL[LAN], src=H1.ll)
    out = net.send(LAN, frame6(H1, pkt))
    assert len(out) == 1
    expect_icmp6(out[0], type=129, src=R_LL[LAN], dst=H1.ll)


def test_echo_reply_to_ff02_1_with_dstopts(net: Net6) -> None:
    out = net.send(LAN, frame6(H1, echo_behind(hbh(58, opt(0x1E, b"\x00" * 4)), 60,
                                               dst=ALL_NODES)))
    assert len(out) == 1
    expect_icmp6(out[0], type=129, src=R_IP6[LAN], dst=H1.ip)


# -- option counts, Router Alert and Jumbo Payload ----------------------------------------

def test_max_hbh_opts_number(net: Net6) -> None:
    """net.ipv6.max_hbh_opts_number (8): a ninth non-padding option discards."""
    eight = opt(0x1E, b"") * 8 + b"\x01\x02\x00\x00"            # 16 + 4 + 2 = 22
    eight += b"\x00\x00"
    out = net.send(LAN, frame6(H1, echo_behind(hbh(58, eight), 0)))
    assert len(out) == 1
    nine = opt(0x1E, b"") * 9 + b"\x01\x02\x00\x00"             # 18 + 4 = 22
    out = net.send(LAN, frame6(H1, echo_behind(hbh(58, nine), 0)))
    assert out == []
    assert net.drops().get("ip6_exthdr_bad") == 1


def test_router_alert_accepted(net: Net6) -> None:
    out = net.send(LAN, frame6(H1, echo_behind(hbh(58, opt(5, b"\x00\x00") + b"\x01\x00"), 0)))
    assert len(out) == 1
    expect_icmp6(out[0], type=129, src=R_IP6[LAN])


def test_router_alert_wrong_length_dropped_silently(net: Net6) -> None:
    out = net.send(LAN, frame6(H1, echo_behind(hbh(58, opt(5, b"\x00\x00\x00\x00")), 0)))
    assert out == []
    assert net.drops().get("ip6_exthdr_bad") == 1


def test_jumbo_with_small_length_param_prob_at_its_value(net: Net6) -> None:
    """ipv6_hop_jumbo(): a jumbo length <= 65535 -> Param Prob code 0 at optoff + 2."""
    pkt = ip6(H1.ip, R_IP6[LAN], 0, hbh(58, opt(0xC2, (1000).to_bytes(4, "big")))
              + icmp6_msg(H1.ip, R_IP6[LAN], 128, 0, echo6_body()))
    out = net.send(LAN, frame6(H1, pkt))
    assert len(out) == 1
    expect_error6(out[0], type=4, code=0, about=pkt, src=R_IP6[LAN], word=44)


def test_jumbo_with_nonzero_payload_length_points_at_option(net: Net6) -> None:
    pkt = ip6(H1.ip, R_IP6[LAN], 0, hbh(58, opt(0xC2, (70000).to_bytes(4, "big")))
              + icmp6_msg(H1.ip, R_IP6[LAN], 128, 0, echo6_body()))
    out = net.send(LAN, frame6(H1, pkt))
    assert len(out) == 1
    expect_error6(out[0], type=4, code=0, about=pkt, src=R_IP6[LAN], word=42)


def test_misaligned_jumbo_dropped_silently(net: Net6) -> None:
    options = b"\x00" + opt(0xC2, (70000).to_bytes(4, "big")) + b"\x01\x05" + bytes(5)
    pkt = ip6(H1.ip, R_IP6[LAN], 0, hbh(58, options)
              + icmp6_msg(H1.ip, R_IP6[LAN], 128, 0, echo6_body()))
    assert net.send(LAN, frame6(H1, pkt)) == []


def test_truncated_jumbogram_dropped_silently(net: Net6) -> None:
    body = hbh(58, opt(0xC2, (70000).to_bytes(4, "big"))) + icmp6_msg(
        H1.ip, R_IP6[LAN], 128, 0, echo6_body())
    pkt = ip6(H1.ip, R_IP6[LAN], 0, body, plen=0)
    assert net.send(LAN, frame6(H1, pkt)) == []


def test_routing_type2_segments_left_0_discarded(net: Net6) -> None:
    assert net.send(LAN, frame6(H1, echo_behind(rthdr(58, 2, 0), 43))) == []


def test_routing_header_to_multicast_dropped(net: Net6) -> None:
    assert net.send(LAN, frame6(H1, echo_behind(rthdr(58, 0, 0), 43, dst=ALL_NODES))) == []
