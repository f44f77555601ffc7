"""NDISC at the router (RFC 4861; net/ipv6/ndisc.c ndisc_recv_ns/na, ndisc_solicit and the
NUD machine of net/core/neighbour.c) with crafted frames and virtual time."""

from __future__ import annotations

import struct
import time
from ipaddress import IPv6Address

import pytest

from tests.core.helpers import ones_sum
from tests.core.helpers6 import (
    ALL_NODES,
    H1,
    H2,
    LAN,
    R_IP6,
    R_LL,
    R_MAC,
    SECOND,
    WAN,
    Net6,
    a6,
    echo6,
    expect_error6,
    expect_icmp6,
    expect_ip6,
    frame6,
    icmp6_of,
    icmp6_pkt,
    mcast_mac,
    na_pkt,
    nd_options,
    ns_pkt,
    pseudo6,
    solicited,
    udp6_pkt,
)


@pytest.fixture
def net() -> Net6:
    n = Net6()
    n.ready()
    return n


def na_flags(m) -> tuple[bool, bool, bool]:
    f = m.body[0]
    return bool(f & 0x80), bool(f & 0x40), bool(f & 0x20)


# -- answering NS -------------------------------------------------------------------

@pytest.mark.parametrize("target", [R_IP6[LAN], R_LL[LAN]])
def test_multicast_ns_answered_with_solicited_override_na(net: Net6, target: str) -> None:
    src = H1.ll if target.startswith("fe80") else H1.ip
    out = net.send(LAN, frame6(H1, ns_pkt(src, solicited(target), target, H1.mac)))
    assert len(out) == 1
    m = expect_icmp6(out[0], type=136, code=0, src=target, dst=src, hlim=255, ifindex=LAN,
                     eth_dst=H1.mac)
    assert na_flags(m) == (True, True, True)
    assert m.body[1:4] == bytes(3)
    assert m.body[4:20] == a6(target)
    assert nd_options(m.body[20:]) == {2: [bytes([2, 1]) + R_MAC[LAN]]}
    e = net.router.neigh6.get(LAN, int(IPv6Address(src)))
    assert e is not None and e.lladdr == H1.mac


def test_unicast_nud_probe_answered_without_override_or_tllao(net: Net6) -> None:
    net.learn6(H1)
    for sll in (None, H1.mac):
        out = net.send(LAN, frame6(H1, ns_pkt(H1.ip, R_IP6[LAN], R_IP6[LAN], sll)))
        assert len(out) == 1
        m = expect_icmp6(out[0], type=136, code=0, src=R_IP6[LAN], dst=H1.ip, hlim=255,
                         eth_dst=H1.mac)
        assert na_flags(m) == (True, True, False)
        assert m.body[20:] == b""


def test_dad_ns_for_our_address_answered_to_all_nodes(net: Net6) -> None:
    target = R_IP6[LAN]
    out = net.send(LAN, frame6(H1, ns_pkt("::", solicited(target), target)))
    assert len(out) == 1
    m = expect_icmp6(out[0], type=136, code=0, src=target, dst=ALL_NODES, hlim=255,
                     ifindex=LAN, eth_dst=mcast_mac(ALL_NODES))
    r, s, o = na_flags(m)
    assert (s, o) == (False, True) and r
    assert m.body[4:20] == a6(target)
    assert nd_options(m.body[20:]) == {2: [bytes([2, 1]) + R_MAC[LAN]]}
    assert net.router.neigh6.entries == {} or all(
        k[1] != 0 for k in net.router.neigh6.entries)


def test_ns_for_another_ports_address_not_answered(net: Net6) -> None:
    out = net.send(LAN, frame6(H1, ns_pkt(H1.ip, solicited(R_IP6[WAN]), R_IP6[WAN], H1.mac)))
    assert out == []
    assert net.drops().get("mcast6_not_joined", 0) + net.drops().get("ndisc_not_for_us", 0) == 1


@pytest.mark.parametrize("hlim", [254, 64, 1])
def test_nd_with_hop_limit_not_255_dropped(net: Net6, hlim: int) -> None:
    t = R_IP6[LAN]
    out = net.send(LAN, frame6(H1, ns_pkt(H1.ip, solicited(t), t, H1.mac, hlim=hlim)))
    assert out == []
    assert net.drops() == {"ndisc_bad_hoplimit": 1}
    assert net.router.neigh6.get(LAN, int(IPv6Address(H1.ip))) is None


def _ns_with(src: str, dst: str, target: str, opts: bytes, code: int = 0) -> bytes:
    return icmp6_pkt(src, dst, 135, code, bytes(4) + a6(target) + opts, hlim=255)


@pytest.mark.parametrize("kind", ["zero-length", "overrun", "truncated", "bad-code",
                                  "sllao-from-dad", "dad-to-unicast", "multicast-target",
                                  "short-body"])
def test_malformed_nd_dropped(net: Net6, kind: str) -> None:
    t = R_IP6[LAN]
    sn = solicited(t)
    pkt = {
        "zero-length": _ns_with(H1.ip, sn, t, b"\x01\x00" + H1.mac),
        "overrun": _ns_with(H1.ip, sn, t, b"\x01\x02" + H1.mac),
        "truncated": _ns_with(H1.ip, sn, t, b"\x01"),
        "bad-code": _ns_with(H1.ip, sn, t, b"\x01\x01" + H1.mac, code=1),
        "sllao-from-dad": _ns_with("::", sn, t, b"\x01\x01" + H1.mac),
        "dad-to-unicast": _ns_with("::", t, t, b""),
        "multicast-target": _ns_with(H1.ip, ALL_NODES, "ff02::1", b""),
        "short-body": icmp6_pkt(H1.ip, sn, 135, 0, bytes(4) + a6(t)[:8], hlim=255),
    }[kind]
    out = net.send(LAN, frame6(H1, pkt))
    assert out == []
    assert net.drops() == {"ndisc_malformed": 1}
    assert net.router.neigh6.get(LAN, int(IPv6Address(H1.ip))) is None


def test_na_spoofing_our_address_ignored(net: Net6) -> None:
    net.events.clear()
    out = net.send(LAN, frame6(H1, na_pkt(H1.ip, ALL_NODES, R_IP6[LAN], o=True,
                                          tll=H1.mac)))
    assert out == []
    assert net.drops() == {"ndisc_na_for_our_address": 1}
    ev = [e for e in net.events if e.name == "ndisc.na_for_our_address"]
    assert len(ev) == 1 and ev[0].fields["target"] == R_IP6[LAN]
    # the address still works
    net.learn6(H1)
    out = net.send(LAN, frame6(H1, echo6(H1.ip, R_IP6[LAN])))
    assert len(out) == 1
    expect_icmp6(out[0], type=129, src=R_IP6[LAN])


def test_unsolicited_na_does_not_create_entry(net: Net6) -> None:
    out = net.send(LAN, frame6(H1, na_pkt(H1.ip, ALL_NODES, H1.ip, o=True, tll=H1.mac)))
    assert out == []
    assert net.router.neigh6.get(LAN, int(IPv6Address(H1.ip))) is None


def test_na_solicited_to_multicast_invalid(net: Net6) -> None:
    out = net.send(LAN, frame6(H1, na_pkt(H1.ip, ALL_NODES, H1.ip, s=True, tll=H1.mac)))
    assert out == []
    assert net.drops() == {"ndisc_malformed": 1}


# -- resolving a forwarded packet's next hop -------------------------------------------

def _forward_unresolved(net: Net6) -> tuple[bytes, list]:
    net.learn6(H1)
    pkt = udp6_pkt(H1.ip, H2.ip)
    out = net.send(LAN, frame6(H1, pkt))
    return pkt, out


def test_next_hop_resolution_multicast_ns(net: Net6) -> None:
    pkt, out = _forward_unresolved(net)
    assert len(out) == 1
    m = expect_icmp6(out[0], type=135, code=0, dst=solicited(H2.ip), hlim=255, ifindex=WAN,
                     eth_dst=mcast_mac(solicited(H2.ip)))
    assert m.ip.src in (R_IP6[WAN], R_LL[WAN])
    assert m.body[:4] == bytes(4) and m.body[4:20] == a6(H2.ip)
    assert nd_options(m.body[20:]) == {1: [bytes([1, 1]) + R_MAC[WAN]]}
    assert net.nstate(WAN, H2.ip) == "INCOMPLETE"
    # the solicited NA resolves it and the queued packet goes out
    out = net.send(WAN, frame6(H2, na_pkt(H2.ip, m.ip.src, H2.ip, s=True, o=True,
                                          tll=H2.mac)))
    assert len(out) == 1
    p = expect_ip6(out[0], src=H1.ip, dst=H2.ip, hlim=63, ifindex=WAN, eth_dst=H2.mac)
    assert p.raw[8:] == pkt[8:]
    assert net.nstate(WAN, H2.ip) == "REACHABLE"


def test_next_hop_ns_source_is_link_local(net: Net6) -> None:
    _, out = _forward_unresolved(net)
    expect_icmp6(out[0], type=135, src=R_LL[WAN], dst=solicited(H2.ip))


def test_ns_source_is_the_queued_packets_source_when_ours(net: Net6) -> None:
    """ndisc_solicit(): the source of the packet waiting, when it is ours on the port."""
    out = net.send(WAN, frame6(H2, echo6(H2.ip, R_IP6[WAN]), eth_dst=R_MAC[WAN]))
    assert len(out) == 1
    m = expect_icmp6(out[0], type=135, src=R_IP6[WAN], dst=solicited(H2.ip), hlim=255)
    assert m.body[4:20] == a6(H2.ip)


def test_three_ns_then_address_unreachable(net: Net6) -> None:
    pkt, first = _forward_unresolved(net)
    t0 = net.now
    out = net.run_until(t0 + 3 * SECOND - 1)
    ns = icmp6_of(out, 135)
    assert [t - t0 for t, _, _ in ns] == [SECOND, 2 * SECOND]
    for item in ns:
        expect_icmp6(item[1:], type=135, dst=solicited(H2.ip), ifindex=WAN)
    assert len(icmp6_of(first, 135)) == 1
    out = net.run_until(t0 + 3 * SECOND)
    du = icmp6_of(out, 1)
    assert len(du) == 1 and du[0][0] == t0 + 3 * SECOND
    # it quotes the packet as queued, after ip6_forward decremented the hop limit
    sent = pkt[:7] + bytes([pkt[7] - 1]) + pkt[8:]
    expect_error6(du[0][1:], type=1, code=3, about=sent, src=R_IP6[LAN], ifindex=LAN,
                  eth_dst=H1.mac)
    assert icmp6_of(out, 135) == []
    assert net.nstate(WAN, H2.ip) == "FAILED"


def test_stale_delay_probe_timings(net: Net6) -> None:
    net.learn6(H1)
    net.learn6(H2)
    # confirm: REACHABLE, then with no traffic STALE after reachable_time (15-45 s)
    net.send(WAN, frame6(H2, na_pkt(H2.ip, R_IP6[WAN], H2.ip, s=True, tll=H2.mac)))
    assert net.nstate(WAN, H2.ip) == "REACHABLE"
    out = net.run_until(net.now + 50 * SECOND)
    assert net.nstate(WAN, H2.ip) == "STALE"
    assert [o for o in out if o[1] == WAN] == []
    # a packet to it: sent at once on the old address, DELAY
    out = net.send(LAN, frame6(H1, udp6_pkt(H1.ip, H2.ip)))
    assert len(out) == 1
    expect_ip6(out[0], dst=H2.ip, eth_dst=H2.mac, ifindex=WAN)
    t0 = net.now
    assert net.nstate(WAN, H2.ip) == "DELAY"
    assert [o for o in net.run_until(t0 + 5 * SECOND - 1) if o[1] == WAN] == []
    assert net.nstate(WAN, H2.ip) == "DELAY"
    out = net.run_until(t0 + 5 * SECOND)
    assert net.nstate(WAN, H2.ip) == "PROBE"
    ns = icmp6_of(out, 135)
    assert len(ns) == 1
    m = expect_icmp6(ns[0][1:], type=135, dst=H2.ip, hlim=255, ifindex=WAN, eth_dst=H2.mac)
    assert m.body[4:20] == a6(H2.ip)
    # unicast probes 1 s apart (ucast_probes 3), then FAILED
    out = net.run_until(t0 + 8 * SECOND - 1)
    assert [t - t0 for t, _, _ in icmp6_of(out, 135)] == [6 * SECOND, 7 * SECOND]
    assert all(f[0:6] == H2.mac for _, _, f in icmp6_of(out, 135))
    net.run_until(t0 + 8 * SECOND)
    assert net.nstate(WAN, H2.ip) == "FAILED"


def test_probe_answered_goes_reachable(net: Net6) -> None:
    net.learn6(H1)
    net.learn6(H2)                                 # DELAY (our NA used it)
    t0 = net.now
    net.run_until(t0 + 5 * SECOND)
    assert net.nstate(WAN, H2.ip) == "PROBE"
    net.send(WAN, frame6(H2, na_pkt(H2.ip, R_IP6[WAN], H2.ip, s=True)))   # no TLLAO
    assert net.nstate(WAN, H2.ip) == "REACHABLE"
    out = net.send(LAN, frame6(H1, udp6_pkt(H1.ip, H2.ip)))
    expect_ip6(out[0], dst=H2.ip, eth_dst=H2.mac)


def test_na_with_other_lladdr_without_override_keeps_entry(net: Net6) -> None:
    net.learn6(H2)
    net.send(WAN, frame6(H2, na_pkt(H2.ip, R_IP6[WAN], H2.ip, s=True, tll=H2.mac)))
    other = bytes.fromhex("02aabbccddee")
    net.send(WAN, frame6(H2, na_pkt(H2.ip, R_IP6[WAN], H2.ip, s=True, tll=other)))
    assert net.router.neigh6.get(WAN, int(IPv6Address(H2.ip))).lladdr == H2.mac
    net.send(WAN, frame6(H2, na_pkt(H2.ip, R_IP6[WAN], H2.ip, s=True, o=True, tll=other)))
    assert net.router.neigh6.get(WAN, int(IPv6Address(H2.ip))).lladdr == other


# -- a flood of NS from distinct sources ---------------------------------------------------

def _ns_flood(net: Net6, first: int, n: int) -> None:
    """*n* multicast NS with SLLAO for our LAN address from distinct sources
    2001:db8:1::1:0:<i>, built from one template with an incremental checksum."""
    r = net.router
    target = R_IP6[LAN]
    src0 = "2001:db8:1::1:0:0"
    template = bytearray(frame6(H1, ns_pkt(src0, solicited(target), target, H1.mac)))
    icmp = bytes(template[54:])
    base = ones_sum(icmp[:2] + b"\x00\x00" + icmp[4:],
                    pseudo6(src0, solicited(target), 58, len(icmp)))
    for i in range(first, first + n):
        s = base + (i >> 16) + (i & 0xFFFF)
        s = (s & 0xFFFF) + (s >> 16)
        s = (s & 0xFFFF) + (s >> 16)
        template[34:38] = i.to_bytes(4, "big")
        template[56:58] = struct.pack("!H", ~s & 0xFFFF)
        r.receive(LAN, bytes(template), net.now)
        if i % 512 == 0:
            r.drain()
            assert len(r.neigh6.entries) <= 1024
    net.drain()


def test_table_bounded_under_ns_flood(net: Net6) -> None:
    """100 000 NS from distinct sources: gc_thresh3 (1024) bounds the table; a confirmed
    neighbour (its timer holds a reference in the kernel) survives and forwarding to it
    goes on; once the flood's entries have FAILED (8 s) forced GC makes room for a new
    neighbour."""
    r = net.router
    net.learn6(H1)
    net.learn6(H2)
    net.send(WAN, frame6(H2, na_pkt(H2.ip, R_IP6[WAN], H2.ip, s=True, tll=H2.mac)))
    _ns_flood(net, 1, 100_000)
    assert len(r.neigh6.entries) <= 1024
    assert r.neigh6.stats["table_fulls"] > 0
    assert net.drops().get("ndisc_malformed", 0) == 0
    assert net.nstate(WAN, H2.ip) == "REACHABLE"
    out = net.send(LAN, frame6(H1, udp6_pkt(H1.ip, H2.ip)))
    assert len(out) == 1
    expect_ip6(out[0], src=H1.ip, dst=H2.ip, hlim=63, eth_dst=H2.mac, ifindex=WAN)
    # 10 s later the flood's entries have failed (nobody answered the probes)
    net.run_until(net.now + 10 * SECOND)
    assert len(r.neigh6.entries) <= 1024
    new = "2001:db8:2::77"
    out = net.send(LAN, frame6(H1, udp6_pkt(H1.ip, new)))
    ns = icmp6_of(out, 135)
    assert len(ns) == 1
    expect_icmp6(ns[0], type=135, dst=solicited(new), ifindex=WAN)
    out = net.send(WAN, frame6(H2, na_pkt(new, R_IP6[WAN], new, s=True, o=True, tll=H2.mac)))
    assert len(out) == 1
    expect_ip6(out[0], src=H1.ip, dst=new, hlim=63, ifindex=WAN)


def test_ns_flood_cost_bounded_when_table_full(net: Net6) -> None:
    """With the table full of entries that cannot be collected, each NS from a new source
    must stay cheap (it was ~0.4 ms of forced-GC scanning before the kernel-style gc)."""
    _ns_flood(net, 1, 1024)                         # fill the table
    assert len(net.router.neigh6.entries) == 1024
    t = time.process_time()
    _ns_flood(net, 5000, 500)
    per_packet = (time.process_time() - t) / 500
    assert per_packet < 100e-6, f"{per_packet * 1e6:.0f} us per NS with the table full"


def test_na_without_override_other_lladdr_makes_reachable_stale(net: Net6) -> None:
    net.learn6(H2)
    net.send(WAN, frame6(H2, na_pkt(H2.ip, R_IP6[WAN], H2.ip, s=True, tll=H2.mac)))
    assert net.nstate(WAN, H2.ip) == "REACHABLE"
    other = bytes.fromhex("02aabbccddee")
    net.send(WAN, frame6(H2, na_pkt(H2.ip, R_IP6[WAN], H2.ip, s=True, tll=other)))
    e = net.router.neigh6.get(WAN, int(IPv6Address(H2.ip)))
    assert e.lladdr == H2.mac
    assert e.state.value == "STALE"


def test_unicast_ns_without_sllao_from_unknown_host_resolves_it(net: Net6) -> None:
    """No lladdr to learn: the NA waits for our own resolution of the sender."""
    out = net.send(LAN, frame6(H1, ns_pkt(H1.ip, R_IP6[LAN], R_IP6[LAN])))
    assert len(out) == 1
    m = expect_icmp6(out[0], type=135, dst=solicited(H1.ip), hlim=255, ifindex=LAN)
    assert m.body[4:20] == a6(H1.ip)
    out = net.send(LAN, frame6(H1, na_pkt(H1.ip, m.ip.src, H1.ip, s=True, o=True,
                                          tll=H1.mac)))
    assert len(out) == 1
    m = expect_icmp6(out[0], type=136, src=R_IP6[LAN], dst=H1.ip, eth_dst=H1.mac)
    assert na_flags(m) == (True, True, False)


def test_unknown_nd_options_ignored(net: Net6) -> None:
    """RFC 4861 4.6: receivers silently ignore options they do not recognise."""
    t = R_IP6[LAN]
    opts = bytes([1, 1]) + H1.mac + bytes([200, 2]) + bytes(14)
    out = net.send(LAN, frame6(H1, _ns_with(H1.ip, solicited(t), t, opts)))
    assert len(out) == 1
    expect_icmp6(out[0], type=136, src=t, dst=H1.ip, eth_dst=H1.mac)


@pytest.mark.parametrize("pieces", [1, 2])
def test_fragmented_ns_ignored(net: Net6, pieces: int) -> None:
    from tests.core.helpers6 import frag_hdr, ip6
    t = R_IP6[LAN]
    ns = ns_pkt(H1.ip, solicited(t), t, H1.mac, opts=bytes([200, 3]) + bytes(22))
    msg = ns[40:]
    if pieces == 1:
        frags = [ip6(H1.ip, solicited(t), 44, frag_hdr(58, 0, False, 5) + msg, hlim=255)]
    else:
        frags = [ip6(H1.ip, solicited(t), 44, frag_hdr(58, 0, True, 6) + msg[:24], hlim=255),
                 ip6(H1.ip, solicited(t), 44, frag_hdr(58, 24, False, 6) + msg[24:], hlim=255)]
    out = []
    for f in frags:
        out += net.send(LAN, frame6(H1, f))
    assert out == []


def test_dad_ns_to_another_joined_solicited_group_answered(net: Net6) -> None:
    # ff02::1:ff00:1 is joined on lan0 (2001:db8:1::1); the target is lan0's link-local
    out = net.send(LAN, frame6(H1, ns_pkt("::", solicited(R_IP6[LAN]), R_LL[LAN])))
    assert len(out) == 1
    expect_icmp6(out[0], type=136, src=R_LL[LAN], dst=ALL_NODES)
