"""addrconf at the router: Duplicate Address Detection, unsolicited NA, tentative
addresses (RFC 4862 5.4; net/ipv6/addrconf.c addrconf_dad_*), with virtual time."""

from __future__ import annotations

from ipaddress import IPv6Address

import pytest

from tests.core.helpers6 import (
    ALL_NODES,
    CONFIG6,
    H1,
    LAN,
    R_IP6,
    R_LL,
    R_MAC,
    SECOND,
    WAN,
    Net6,
    a6,
    echo6,
    expect_icmp6,
    frame6,
    icmp6_of,
    mcast_mac,
    na_pkt,
    nd_options,
    ns_pkt,
    solicited,
)

OURS = [R_LL[1], R_IP6[1], R_LL[2], R_IP6[2], R_LL[3], R_IP6[3]]


def _dad_ns(out: list) -> dict[str, int]:
    """target -> time of each DAD NS (from ::) in *out*."""
    res: dict[str, int] = {}
    for t, idx, f in icmp6_of(out, 135):
        m = expect_icmp6((idx, f), type=135, code=0, src="::", hlim=255)
        target = str(IPv6Address(m.body[4:20]))
        assert m.ip.dst == solicited(target)
        assert m.ip.eth_dst == mcast_mac(solicited(target))
        assert 1 not in nd_options(m.body[20:]), "a DAD NS carries no source lladdr option"
        assert target not in res, "dad_transmits is 1"
        res[target] = t
    return res


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_dad_ns_from_unspecified_after_random_delay(seed: int) -> None:
    net = Net6(seed=seed)
    out = net.run_until(3 * SECOND)
    times = _dad_ns(out)
    assert sorted(times) == sorted(OURS)
    assert all(0 <= t < SECOND for t in times.values())
    assert len(set(times.values())) > 1              # random, not all at once


def test_address_usable_one_second_after_its_dad_ns() -> None:
    net = Net6()
    out = net.run_until(SECOND)
    t_ns = _dad_ns(out)[R_IP6[LAN]]
    addr = int(IPv6Address(R_IP6[LAN]))
    net.run_until(t_ns + SECOND - 1)
    assert addr not in net.router.local6
    # tentative: packets to it are dropped, NSes for it not answered
    before = net.drops().get("ip6_addr_tentative", 0)
    assert net.send(LAN, frame6(H1, echo6(H1.ip, R_IP6[LAN]))) == []
    assert net.send(LAN, frame6(H1, ns_pkt(H1.ip, solicited(R_IP6[LAN]), R_IP6[LAN],
                                           H1.mac))) == []
    assert net.drops().get("ip6_addr_tentative", 0) == before + 2
    out = net.run_until(t_ns + SECOND)
    assert addr in net.router.local6
    # unsolicited NA (ndisc_notify on) at that moment
    na = [o for o in icmp6_of(out, 136) if o[2][54 + 8:54 + 24] == a6(R_IP6[LAN])]
    assert len(na) == 1 and na[0][0] == t_ns + SECOND
    m = expect_icmp6(na[0][1:], type=136, code=0, src=R_IP6[LAN], dst=ALL_NODES, hlim=255,
                     ifindex=LAN, eth_dst=mcast_mac(ALL_NODES))
    assert m.body[0] == 0xA0                          # R=1 S=0 O=1
    assert nd_options(m.body[20:]) == {2: [bytes([2, 1]) + R_MAC[LAN]]}
    # and now it answers
    out = net.send(LAN, frame6(H1, ns_pkt(H1.ip, solicited(R_IP6[LAN]), R_IP6[LAN], H1.mac)))
    assert len(icmp6_of(out, 136)) == 1
    out = net.send(LAN, frame6(H1, echo6(H1.ip, R_IP6[LAN])))
    assert len(out) == 1
    expect_icmp6(out[0], type=129, src=R_IP6[LAN], dst=H1.ip)


def test_no_unsolicited_na_without_ndisc_notify() -> None:
    net = Net6(config=CONFIG6.replace("ndisc_notify: true", "ndisc_notify: false"))
    out = net.run_until(3 * SECOND)
    assert icmp6_of(out, 136) == []
    assert len(_dad_ns(out)) == 6


def test_ndisc_notify_is_on_by_default_and_can_be_switched_off() -> None:
    """A documented departure (docs/architecture.md): issue #5 asks for unsolicited NAs
    when an address comes up, so ndisc_notify defaults on (the kernel's default is 0);
    ``ndisc_notify: false`` restores the kernel's silence."""
    on = Net6(config=CONFIG6.replace("  ndisc_notify: true\n", "  accept_dad: 1\n"))
    assert icmp6_of(on.run_until(3 * SECOND), 136) != []
    off = Net6(config=CONFIG6.replace("  ndisc_notify: true\n", "  ndisc_notify: false\n"))
    assert icmp6_of(off.run_until(3 * SECOND), 136) == []


def test_dad_failure_on_na_for_tentative_address() -> None:
    net = Net6()
    out = net.run_until(SECOND)
    t_ns = _dad_ns(out)[R_IP6[LAN]]
    net.run_until(t_ns + SECOND // 2)
    net.events.clear()
    other = bytes.fromhex("02deadbeef01")
    na = na_pkt(R_IP6[LAN], ALL_NODES, R_IP6[LAN], o=True, tll=other)
    assert net.send(LAN, frame6(H1, na)) == []
    ev = [e for e in net.events if e.name == "addrconf.dad_failed"]
    assert len(ev) == 1 and ev[0].fields["addr"] == R_IP6[LAN]
    out = net.run_until(5 * SECOND)
    addr = int(IPv6Address(R_IP6[LAN]))
    assert addr not in net.router.local6
    # never announced, never answers, never a source
    assert [o for o in icmp6_of(out, 136) if o[2][62:78] == a6(R_IP6[LAN])] == []
    assert net.send(LAN, frame6(H1, ns_pkt(H1.ip, solicited(R_IP6[LAN]), R_IP6[LAN],
                                           H1.mac))) == []
    assert net.send(LAN, frame6(H1, echo6(H1.ip, R_IP6[LAN]))) == []
    net.send(LAN, frame6(H1, ns_pkt(H1.ll, solicited(R_LL[LAN]), R_LL[LAN], H1.mac)))
    out = net.send(LAN, frame6(H1, echo6(H1.ip, ALL_NODES)))
    for item in out:
        assert item[1][22:38] != a6(R_IP6[LAN])
    # the other addresses are fine
    assert all(int(IPv6Address(a)) in net.router.local6 for a in OURS if a != R_IP6[LAN])


def test_dad_failure_on_dad_ns_from_another_node() -> None:
    net = Net6()
    out = net.run_until(SECOND)
    t_ns = _dad_ns(out)[R_IP6[WAN]]
    net.run_until(t_ns + 1)
    net.events.clear()
    assert net.send(WAN, frame6(H1, ns_pkt("::", solicited(R_IP6[WAN]), R_IP6[WAN]))) == []
    assert [e.fields["addr"] for e in net.events if e.name == "addrconf.dad_failed"] == \
        [R_IP6[WAN]]
    net.run_until(5 * SECOND)
    assert int(IPv6Address(R_IP6[WAN])) not in net.router.local6


def test_na_for_tentative_link_local_fails_it_and_no_ra() -> None:
    """Without a usable link-local no RA can be sent (RFC 4861 6.1.2 source rule)."""
    net = Net6()
    out = net.run_until(SECOND)
    t_ns = _dad_ns(out)[R_LL[LAN]]
    net.run_until(t_ns + 1)
    net.send(LAN, frame6(H1, na_pkt(R_LL[LAN], ALL_NODES, R_LL[LAN], o=True,
                                    tll=bytes.fromhex("02deadbeef02"))))
    out = net.run_until(60 * SECOND)
    assert icmp6_of(out, 134) == []


def test_accept_dad_0_addresses_usable_at_once() -> None:
    net = Net6(config=CONFIG6.replace("ndisc_notify: true", "accept_dad: 0"))
    assert {int(IPv6Address(a)) for a in OURS} <= net.router.local6
    out = net.run_until(3 * SECOND)
    assert _dad_ns(out) == {}


def test_dad_ns_carries_a_nonce() -> None:
    net = Net6()
    out = net.run_until(SECOND)
    for _, idx, f in icmp6_of(out, 135):
        m = expect_icmp6((idx, f), type=135, src="::")
        opts = nd_options(m.body[20:])
        assert 14 in opts and len(opts[14][0]) == 8


def test_mld_reports_when_joining_groups() -> None:
    net = Net6()
    out = net.run_until(3 * SECOND)
    reports = [(i, f) for _, i, f in out if f[12:14] == b"\x86\xdd" and f[38:54] == a6("ff02::16")]
    assert {i for i, _ in reports} == {1, 2, 3}


def test_dad_transmits_2_probes_one_second_apart() -> None:
    net = Net6(config=CONFIG6.replace("ndisc_notify: true", "ndisc_notify: true\n  dad_transmits: 2"))
    out = net.run_until(4 * SECOND)
    ns = [(t, f[62:78]) for t, _, f in icmp6_of(out, 135) if f[62:78] == a6(R_IP6[LAN])]
    assert len(ns) == 2 and ns[1][0] - ns[0][0] == SECOND
    na = [t for t, _, f in icmp6_of(out, 136) if f[62:78] == a6(R_IP6[LAN])]
    assert na == [ns[1][0] + SECOND]
