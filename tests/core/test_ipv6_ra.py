"""Router Advertisements from the router (RFC 4861 6.2; radvd-style), Router
Solicitations, and RAs from others (ignored by a forwarding router)."""

from __future__ import annotations

import struct
from ipaddress import IPv6Address
from itertools import pairwise

import pytest

from tests.core.helpers6 import (
    ALL_NODES,
    CONFIG6,
    H1,
    H2,
    LAN,
    R_LL,
    R_MAC,
    SECOND,
    WAN,
    Net6,
    a6,
    expect_icmp6,
    frame6,
    icmp6_of,
    icmp6_pkt,
    mcast_mac,
    nd_options,
    rs_pkt,
)


def _ras(out: list, port: int = LAN) -> list:
    return [o for o in icmp6_of(out, 134) if o[1] == port]


def _ll_dad_done(out: list, port: int = LAN) -> int:
    """Time the port's link-local became usable: its DAD NS + retrans_time (1 s)."""
    for t, idx, f in icmp6_of(out, 135):
        if idx == port and f[62:78] == a6(R_LL[port]):
            return t + SECOND
    raise AssertionError("no DAD NS for the link-local")


@pytest.mark.parametrize("seed", [1, 7])
def test_first_ra_right_after_link_local_dad_then_intervals(seed: int) -> None:
    net = Net6(seed=seed)
    out = net.run_until(400 * SECOND)
    ras = _ras(out)
    assert ras[0][0] == _ll_dad_done(out)
    for _, idx, f in ras:
        expect_icmp6((idx, f), type=134, src=R_LL[LAN], dst=ALL_NODES, hlim=255)
    times = [t for t, _, _ in ras]
    gaps = [b - a for a, b in pairwise(times)]
    assert len(gaps) >= 12
    # MAX_INITIAL_RTR_ADVERTISEMENTS (3): the gaps after the first three are capped at 16 s
    assert all(10 * SECOND <= g <= 16 * SECOND for g in gaps[:2]), gaps[:3]
    assert all(10 * SECOND <= g <= 30 * SECOND for g in gaps[2:]), gaps
    assert max(gaps[2:]) > 16 * SECOND
    assert _ras(out, WAN) == [] and _ras(out, 3) == []


def test_ra_contents() -> None:
    net = Net6()
    out = net.run_until(3 * SECOND)
    ra = _ras(out)
    assert len(ra) == 1
    m = expect_icmp6(ra[0][1:], type=134, code=0, src=R_LL[LAN], dst=ALL_NODES, hlim=255,
                     ifindex=LAN, eth_dst=mcast_mac(ALL_NODES))
    cur_hlim, flags, lifetime, reachable, retrans = struct.unpack_from("!BBHII", m.body)
    assert (cur_hlim, flags, lifetime, reachable, retrans) == (64, 0x80, 90, 0, 0)
    opts = nd_options(m.body[12:])
    assert opts[1] == [bytes([1, 1]) + R_MAC[LAN]]
    assert opts[5] == [struct.pack("!BBHI", 5, 1, 0, 1500)]
    assert opts[3] == [struct.pack("!BBBBIII16s", 3, 4, 64, 0xC0, 2592000, 604800, 0,
                                   a6("2001:db8:1::"))]
    assert opts[25] == [struct.pack("!BBHI", 25, 3, 0, 90) + a6("2001:db8:1::53")]
    assert set(opts) == {1, 3, 5, 25}


def test_ra_with_configured_prefixes_and_defaults() -> None:
    cfg = CONFIG6.replace("""      max_rtr_adv_interval: 30
      min_rtr_adv_interval: 10
      mtu: 1500
      managed: true
      rdnss: ["2001:db8:1::53"]""", """      max_rtr_adv_interval: 30
      other_config: true
      default_lifetime: 0
      cur_hop_limit: 32
      prefixes:
        - {prefix: "2001:db8:1::/64", autonomous: false, valid_lifetime: 3600,
           preferred_lifetime: 1800}
        - {prefix: "2001:db8:aa::/64"}""")
    net = Net6(config=cfg)
    ra = _ras(net.run_until(3 * SECOND))
    m = expect_icmp6(ra[0][1:], type=134, src=R_LL[LAN], dst=ALL_NODES, hlim=255)
    cur_hlim, flags, lifetime = struct.unpack_from("!BBH", m.body)
    assert (cur_hlim, flags, lifetime) == (32, 0x40, 0)
    opts = nd_options(m.body[12:])
    assert sorted(opts[3]) == sorted([
        struct.pack("!BBBBIII16s", 3, 4, 64, 0x80, 3600, 1800, 0, a6("2001:db8:1::")),
        struct.pack("!BBBBIII16s", 3, 4, 64, 0xC0, 2592000, 604800, 0, a6("2001:db8:aa::"))])
    assert 5 not in opts and 25 not in opts


def test_rs_answered_unicast_within_half_a_second() -> None:
    net = Net6()
    net.run_until(30 * SECOND)
    t0 = net.now
    assert net.send(LAN, frame6(H1, rs_pkt(H1.ll, H1.mac))) == []
    out = net.run_until(t0 + SECOND // 2)
    ra = _ras(out)
    assert len(ra) == 1
    assert t0 <= ra[0][0] <= t0 + SECOND // 2
    m = expect_icmp6(ra[0][1:], type=134, src=R_LL[LAN], dst=H1.ll, hlim=255, ifindex=LAN,
                     eth_dst=H1.mac)
    assert struct.unpack_from("!H", m.body, 2)[0] == 90
    e = net.router.neigh6.get(LAN, int(IPv6Address(H1.ll)))
    assert e is not None and e.lladdr == H1.mac


def test_rs_from_unspecified_answered_multicast() -> None:
    net = Net6()
    last = _ras(net.run_until(30 * SECOND))[-1][0]
    t0 = net.now
    net.send(LAN, frame6(H1, rs_pkt("::")))
    out = net.run_until(t0 + 4 * SECOND)
    ra = _ras(out)
    assert ra, "no answer to the RS"
    expect_icmp6(ra[0][1:], type=134, src=R_LL[LAN], dst=ALL_NODES, hlim=255)
    # within MAX_RA_DELAY_TIME, but not within MIN_DELAY_BETWEEN_RAS of the last one
    assert t0 <= ra[0][0] <= max(t0 + SECOND // 2, last + 3 * SECOND)
    assert ra[0][0] >= last + 3 * SECOND


def test_multicast_ras_at_least_3s_apart() -> None:
    first = _ras(Net6().run_until(3 * SECOND))[0][0]
    net = Net6()                                   # the same run, stopped at the first RA
    assert _ras(net.run_until(first))[0][0] == first
    net.send(LAN, frame6(H1, rs_pkt("::")), at=first + SECOND // 10)
    out = net.run_until(first + 4 * SECOND)
    ra = _ras(out)
    assert len(ra) == 1
    assert ra[0][0] >= first + 3 * SECOND


def test_rs_with_unspecified_source_and_sllao_dropped() -> None:
    net = Net6()
    net.run_until(30 * SECOND)
    t0 = net.now
    net.send(LAN, frame6(H1, rs_pkt("::", H1.mac)))
    assert _ras(net.run_until(t0 + SECOND)) == []
    assert net.drops().get("ndisc_malformed") == 1


def test_rs_on_port_without_ra_ignored() -> None:
    net = Net6()
    net.run_until(30 * SECOND)
    t0 = net.now
    assert net.send(WAN, frame6(H2, rs_pkt(H2.ll, H2.mac))) == []
    out = net.run_until(t0 + 2 * SECOND)
    assert icmp6_of(out, 134) == []
    assert net.drops().get("ndisc_rs_ignored") == 1


def test_rs_with_bad_hop_limit_ignored() -> None:
    net = Net6()
    net.run_until(30 * SECOND)
    t0 = net.now
    net.send(LAN, frame6(H1, rs_pkt(H1.ll, H1.mac, hlim=64)))
    assert [o for o in _ras(net.run_until(t0 + SECOND)) if o[2][0:6] == H1.mac] == []
    assert net.drops().get("ndisc_bad_hoplimit") == 1


def _ra_from(src: str) -> bytes:
    body = struct.pack("!BBHII", 64, 0, 1800, 0, 0) + bytes([1, 1]) + H1.mac
    return icmp6_pkt(src, ALL_NODES, 134, 0, body, hlim=255)


def test_ra_from_a_host_ignored() -> None:
    net = Net6()
    net.ready()
    routes = sum(len(t) for t in net.router.fib.tables.values())
    assert net.send(LAN, frame6(H1, _ra_from(H1.ll))) == []
    assert net.drops() == {"ndisc_ra_ignored": 1}
    assert net.router.neigh6.get(LAN, int(IPv6Address(H1.ll))) is None
    assert sum(len(t) for t in net.router.fib.tables.values()) == routes
    # from a global source it is not even a valid RA (RFC 4861 6.1.2)
    assert net.send(LAN, frame6(H1, _ra_from(H1.ip))) == []
    assert net.drops() == {"ndisc_ra_ignored": 1, "ndisc_malformed": 1}


def test_final_ra_with_zero_lifetime_on_shutdown() -> None:
    net = Net6()
    net.ready()
    net.router.shutdown(net.now)
    ra = _ras([(net.now, i, f) for i, f in net.drain()])
    assert len(ra) == 1
    m = expect_icmp6(ra[0][1:], type=134, src=R_LL[LAN], dst=ALL_NODES, hlim=255)
    assert struct.unpack_from("!H", m.body, 2)[0] == 0


def test_no_ras_while_link_down_and_initial_burst_after_up() -> None:
    net = Net6()
    net.ready(40 * SECOND)
    net.router.set_link(LAN, False, net.now)
    out = net.run_until(net.now + 100 * SECOND)
    assert _ras(out) == []
    t0 = net.now
    net.router.set_link(LAN, True, t0)
    out = net.run_until(t0 + 40 * SECOND)
    times = [t for t, _, _ in _ras(out)]
    assert times[0] - t0 <= SECOND // 2
    assert times[1] - times[0] <= 16 * SECOND and times[2] - times[1] <= 16 * SECOND
