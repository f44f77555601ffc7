"""MTU: Frag Needed for DF packets, fragmentation (ip_do_fragment) for the others."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP as ScapyIP
from scapy.layers.inet import defragment

from .helpers import (
    H1, H2, H4, H5, JUMBO, LAN, R_IP, R_MAC, SMALL, TOPOLOGY, Host, Net, arp, echo, expect_arp,
    expect_error, expect_ipv4, frame_from, ipv4, ping, udp,
)


def resolved(net: Net, *hosts: Host) -> None:
    """Every host in *hosts* known REACHABLE; the senders known too."""
    for h in hosts:
        net.reachable(h)


def test_df_packet_over_egress_mtu_gets_frag_needed_with_that_mtu() -> None:
    net = Net()
    resolved(net, H1, H4)
    l3 = ipv4(H1.ip, H4.ip, udp(H1.ip, H4.ip, data=b"d" * (1500 - 28)), df=True, ident=0x5151)
    assert len(l3) == 1500
    tx = net.send(LAN, frame_from(H1, l3))
    assert len(tx) == 1
    msg = expect_error(tx[0], type=3, code=4, src=R_IP[LAN], about=l3, ifindex=LAN,
                       eth_dst=H1.mac, mtu=1400)
    assert msg.quoted.ttl == 64 and msg.quoted.df      # checked before the TTL decrement
    assert msg.ip.total_len == 576
    assert net.drops() == {"frag_needed": 1}
    assert net.snmp("IpFragFails") == 1


def test_frag_needed_is_not_bypassed_by_the_fast_path() -> None:
    net = Net()
    resolved(net, H1, H4)
    for seq in range(3):                               # fill the forwarding cache for H4
        assert len(net.send(LAN, ping(H1, H4.ip, seq=seq))) == 1
    assert net.router.fast_forwarded >= 1
    before = net.router.fast_forwarded
    l3 = ipv4(H1.ip, H4.ip, udp(H1.ip, H4.ip, data=b"d" * 1472), df=True)
    tx = net.send(LAN, frame_from(H1, l3))
    expect_error(tx[0], type=3, code=4, src=R_IP[LAN], about=l3, mtu=1400)
    assert net.router.fast_forwarded == before


@pytest.mark.parametrize("size,fits", [(1400, True), (1401, False)])
def test_mtu_boundary(size: int, fits: bool) -> None:
    net = Net()
    resolved(net, H1, H4)
    l3 = ipv4(H1.ip, H4.ip, udp(H1.ip, H4.ip, data=b"b" * (size - 28)), df=True)
    tx = net.send(LAN, frame_from(H1, l3))
    assert len(tx) == 1
    if fits:
        ip = expect_ipv4(tx[0], ifindex=SMALL, total_len=size, ttl=63, df=True)
        assert ip.payload == l3[20:]
    else:
        expect_error(tx[0], type=3, code=4, src=R_IP[LAN], about=l3, mtu=1400)


def test_route_mtu_metric_is_used() -> None:
    net = Net(config=TOPOLOGY + "  - {to: 10.7.0.0/16, via: 10.0.2.254, mtu: 1280}\n")
    resolved(net, H1)
    l3 = ipv4(H1.ip, "10.7.0.1", udp(H1.ip, "10.7.0.1", data=b"m" * 1300), df=True)
    tx = net.send(LAN, frame_from(H1, l3))
    expect_error(tx[0], type=3, code=4, src=R_IP[LAN], about=l3, mtu=1280)


def check_fragments(tx: list[tuple[int, bytes]], original: bytes, *, mtu: int,
                    base_offset: int = 0, last_mf: bool = False) -> list:
    """The fragments of *original* as Linux's ip_do_fragment() cuts them."""
    orig = ScapyIP(original)
    frags = [expect_ipv4(t, ifindex=SMALL, eth_dst=H4.mac, eth_src=R_MAC[SMALL], src=orig.src,
                         dst=orig.dst, proto=orig.proto, tos=orig.tos, ident=orig.id,
                         ttl=orig.ttl - 1, df=False, max_len=mtu) for t in tx]
    assert len(frags) > 1
    expected_off = base_offset
    for i, f in enumerate(frags):
        last = i == len(frags) - 1
        assert f.frag_offset == expected_off, f"fragment {i}: offset {f.frag_offset}"
        assert f.mf == (last_mf or not last), f"fragment {i}: MF {f.mf}"
        if not last:
            assert len(f.payload) % 8 == 0, f"fragment {i}: {len(f.payload)} bytes"
            # ip_do_fragment fills every non-last fragment to the largest multiple of 8.
            assert len(f.payload) == (mtu - f.ihl) & ~7
        expected_off += len(f.payload)
    hlen = (original[0] & 0x0F) * 4
    assert b"".join(f.payload for f in frags) == original[hlen:]
    return frags


def test_df_clear_packet_is_fragmented() -> None:
    net = Net()
    resolved(net, H5, H4)
    data = bytes(i % 251 for i in range(3000 - 28))
    l3 = ipv4(H5.ip, H4.ip, udp(H5.ip, H4.ip, data=data), ident=0xBEEF, tos=0x28)
    assert len(l3) == 3000
    tx = net.send(JUMBO, frame_from(H5, l3))
    frags = check_fragments(tx, l3, mtu=1400)
    assert [len(f.payload) for f in frags] == [1376, 1376, 228]
    assert net.snmp("IpFragOKs") == 1 and net.snmp("IpFragCreates") == 3
    # Independent reassembly with scapy gives back the original datagram (TTL - 1).
    whole = defragment([ScapyIP(t[1][14:]) for t in tx])
    assert len(whole) == 1
    assert bytes(whole[0].payload) == l3[20:]
    assert whole[0].id == 0xBEEF and whole[0].ttl == 63


def test_fragmenting_a_fragment_keeps_its_offset_and_mf() -> None:
    net = Net()
    resolved(net, H5, H4)
    payload = bytes(range(256)) * 10                          # 2560 bytes, middle piece
    l3 = ipv4(H5.ip, H4.ip, payload, ident=0x0A0A, mf=True, frag_offset=1480)
    tx = net.send(JUMBO, frame_from(H5, l3))
    check_fragments(tx, l3, mtu=1400, base_offset=1480, last_mf=True)


def test_fragmenting_a_last_fragment_clears_mf_only_at_the_end() -> None:
    net = Net()
    resolved(net, H5, H4)
    l3 = ipv4(H5.ip, H4.ip, b"L" * 2000, ident=0x0B0B, frag_offset=4000)
    tx = net.send(JUMBO, frame_from(H5, l3))
    check_fragments(tx, l3, mtu=1400, base_offset=4000, last_mf=False)


def test_fragment_options_copied_only_when_the_copy_flag_is_set() -> None:
    """ip_options_fragment(): options without the copied bit become NOPs after the first."""
    net = Net()
    resolved(net, H5, H4)
    router_alert = b"\x94\x04\x00\x00"                      # copied
    experimental = b"\x1e\x04\xaa\xbb"                      # option 30, not copied
    l3 = ipv4(H5.ip, H4.ip, b"o" * 3000, options=router_alert + experimental, ident=7)
    tx = net.send(JUMBO, frame_from(H5, l3))
    frags = check_fragments(tx, l3, mtu=1400)
    assert frags[0].header[20:] == router_alert + experimental
    for f in frags[1:]:
        assert f.ihl == 28
        assert f.header[20:] == router_alert + b"\x01" * 4


FUZZ = settings(max_examples=40, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(size=st.integers(1401, 8000), opts=st.sampled_from([b"", b"\x94\x04\x00\x00"]),
       ident=st.integers(0, 0xFFFF), tos=st.integers(0, 255))
def test_fragmentation_property(size: int, opts: bytes, ident: int, tos: int) -> None:
    net = Net()
    resolved(net, H5, H4)
    payload = (bytes(range(256)) * 32)[:size - 20 - len(opts)]
    l3 = ipv4(H5.ip, H4.ip, payload, ident=ident, options=opts, tos=tos)
    assert len(l3) == size
    tx = net.send(JUMBO, frame_from(H5, l3))
    check_fragments(tx, l3, mtu=1400)


def test_echo_request_too_big_for_small_port_with_df_from_jumbo() -> None:
    """Frag Needed goes back out of the ingress port, to the sender's MAC."""
    net = Net()
    resolved(net, H5)
    l3 = ipv4(H5.ip, H4.ip, echo(data=b"e" * 4000), proto=1, df=True)
    tx = net.send(JUMBO, frame_from(H5, l3))
    expect_error(tx[0], type=3, code=4, src=R_IP[JUMBO], about=l3, ifindex=JUMBO,
                 eth_dst=H5.mac, mtu=1400)


def test_fragments_wait_for_resolution_together() -> None:
    net = Net()
    resolved(net, H5)
    l3 = ipv4(H5.ip, H4.ip, b"w" * 3000, ident=0x0C0C)
    tx = net.send(JUMBO, frame_from(H5, l3))
    assert len(tx) == 1
    expect_arp(tx[0], op=1, ifindex=SMALL, tpa=H4.ip, spa=R_IP[SMALL])
    tx = net.send(SMALL, arp(2, H4.mac, H4.ip, R_MAC[SMALL], R_IP[SMALL], eth_dst=R_MAC[SMALL]))
    check_fragments(tx, l3, mtu=1400)


def test_h2_path_is_not_fragmented() -> None:
    net = Net()
    resolved(net, H5, H2)
    l3 = ipv4(H5.ip, H2.ip, b"q" * 1480)
    tx = net.send(JUMBO, frame_from(H5, l3))
    assert len(tx) == 1
    expect_ipv4(tx[0], ifindex=2, total_len=1500, mf=False, frag_offset=0)
