"""IPv6 across a reload (Router.adopt / _adopt6): surviving addresses keep their DAD
outcome and stay usable, new ones run DAD, RAs follow the new settings."""

from __future__ import annotations

import random
import struct
from ipaddress import IPv6Address
from itertools import pairwise

import pytest

from pyrouter.control.build import build
from pyrouter.control.load import parse
from tests.core.helpers6 import (
    CONFIG6,
    H1,
    LAN,
    R_IP6,
    R_LL,
    SECOND,
    Net6,
    a6,
    echo6,
    expect_icmp6,
    frame6,
    icmp6_of,
    nd_options,
    ns_pkt,
    solicited,
)

NEW_ADDR = "2001:db8:1::2"


def reload(net: Net6, text: str) -> list:
    """Adopt *text*; returns what the router sent while adopting, as (time, ifindex, frame)."""
    ifx = {p.name: i for i, p in net.router.ports.items()}
    new = build(parse(text), random.Random(99), net.now, "<reload>", ifx)
    net.router.adopt(new)
    return [(net.now, i, f) for i, f in net.drain()]


def test_reload_keeps_addresses_and_runs_dad_for_new_ones() -> None:
    net = Net6()
    net.ready(30 * SECOND)
    net.learn6(H1)
    t0 = net.now
    reload(net, CONFIG6.replace("2001:db8:1::1/64]", f"2001:db8:1::1/64, {NEW_ADDR}/64]"))
    # old ones answer at once, no DAD for them
    out = net.send(LAN, frame6(H1, echo6(H1.ip, R_IP6[LAN])))
    assert len(out) == 1
    expect_icmp6(out[0], type=129, src=R_IP6[LAN])
    assert int(IPv6Address(NEW_ADDR)) not in net.router.local6
    out = net.run_until(t0 + 3 * SECOND)
    targets = [f[62:78] for _, _, f in icmp6_of(out, 135) if f[22:38] == bytes(16)]
    assert targets == [a6(NEW_ADDR)]
    assert int(IPv6Address(NEW_ADDR)) in net.router.local6
    out = net.send(LAN, frame6(H1, ns_pkt(H1.ip, solicited(NEW_ADDR), NEW_ADDR, H1.mac)))
    assert len(icmp6_of(out, 136)) == 1


def test_reload_changes_ra_contents() -> None:
    net = Net6()
    net.ready(5 * SECOND)
    reload(net, CONFIG6.replace("      managed: true\n", "      other_config: true\n")
           .replace("mtu: 1500\n", "mtu: 1400\n"))
    out = net.run_until(net.now + 40 * SECOND)
    ras = [o for o in icmp6_of(out, 134) if o[1] == LAN]
    assert ras
    m = expect_icmp6(ras[0][1:], type=134)
    assert m.body[1] == 0x40
    assert nd_options(m.body[12:])[5] == [struct.pack("!BBHI", 5, 1, 0, 1400)]
    gaps = [b[0] - a[0] for a, b in pairwise(ras)]
    assert all(g >= 3 * SECOND for g in gaps)


def test_reload_removing_ra_stops_advertising() -> None:
    net = Net6()
    net.ready(5 * SECOND)
    cfg = CONFIG6
    start = cfg.index("    ra:\n")
    end = cfg.index("  wan0:")
    reload(net, cfg[:start] + cfg[end:])
    out = net.run_until(net.now + 100 * SECOND)
    lifetimes = [struct.unpack_from("!H", f, 54 + 6)[0] for _, _, f in icmp6_of(out, 134)]
    assert all(lt == 0 for lt in lifetimes)           # at most final RAs, nothing periodic


def test_reload_removing_ra_sends_final_ra() -> None:
    net = Net6()
    net.ready(5 * SECOND)
    cfg = CONFIG6
    out = reload(net, cfg[:cfg.index("    ra:\n")] + cfg[cfg.index("  wan0:"):])
    out += net.run_until(net.now + SECOND)
    ras = icmp6_of(out, 134)
    assert len(ras) >= 1
    m = expect_icmp6(ras[0][1:], type=134, src=R_LL[LAN], hlim=255)
    assert struct.unpack_from("!H", m.body, 2)[0] == 0
