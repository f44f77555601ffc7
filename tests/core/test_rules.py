"""Policy routing rules (route/lookup.py): selectors, actions, ordering, and what a
packet then gets; the forwarding cache stays out of the way once rules exist."""

from __future__ import annotations

import random

import pytest

from pyrouter.control.build import build
from pyrouter.control.load import ConfigError, parse
from pyrouter.core import SECOND
from pyrouter.core.introspect import route_get, rules
from pyrouter.core.route.flow import FlowKey

from .helpers import (
    H1,
    H1B,
    H2,
    LAN,
    TOPOLOGY,
    WAN,
    Net,
    frame_from,
    ip2int,
    ipv4,
    parse_ipv4,
    udp,
)

T100 = "  - {to: 10.0.2.0/24, type: unreachable, table: 100}\n"


def net(rules_yaml: str, routes: str = T100) -> Net:
    n = Net(TOPOLOGY + routes + "rules:\n" + rules_yaml)
    for h in (H1, H1B, H2):
        n.reachable(h)
    return n


def send_udp(n: Net, src_host, dport: int = 33434) -> list[tuple[int, bytes]]:
    return n.send(src_host.port, frame_from(src_host, ipv4(src_host.ip, H2.ip,
                                                           udp(src_host.ip, H2.ip, dport=dport))))


def verdict(tx: list[tuple[int, bytes]]) -> str:
    """'forwarded', 'icmp T/C' or 'silent'."""
    for i, f in tx:
        if f[12:14] != b"\x08\x00":
            continue
        ip = parse_ipv4(f[14:])
        if ip.proto == 1:
            return f"icmp {f[14 + ip.ihl]}/{f[15 + ip.ihl]}"
        if i == WAN:
            return "forwarded"
    return "silent"


def test_rule_by_source_and_the_others_untouched() -> None:
    n = net(f"  - {{priority: 100, from: {H1.ip}/32, table: 100}}\n")
    assert verdict(send_udp(n, H1)) == "icmp 3/1"           # table 100: unreachable route
    assert verdict(send_udp(n, H1B)) == "forwarded"          # main table


@pytest.mark.parametrize("action, want", [
    ("type: prohibit", "icmp 3/13"),
    ("type: unreachable", "icmp 3/0"),                      # -ENETUNREACH, not host
    ("type: blackhole", "silent"),
])
def test_rule_reject_actions(action: str, want: str) -> None:
    n = net(f"  - {{priority: 100, from: 10.0.1.0/24, {action}}}\n")
    assert verdict(send_udp(n, H1)) == want


def test_ipproto_and_port_range() -> None:
    n = net("  - {priority: 100, ipproto: udp, dport: 50-60, type: prohibit}\n")
    assert verdict(send_udp(n, H1, dport=53)) == "icmp 3/13"
    assert verdict(send_udp(n, H1, dport=61)) == "forwarded"


def test_iif_selects_by_ingress_port_and_lo_the_routers_own_traffic() -> None:
    n = net("  - {priority: 100, iif: lan0, table: 100}\n")
    assert verdict(send_udp(n, H1)) == "icmp 3/1"
    assert route_get(n.router, ip2int(H2.ip))["type"] == "unicast"    # output: iif lo
    n2 = net("  - {priority: 100, iif: lo, table: 100}\n")
    assert verdict(send_udp(n2, H1)) == "forwarded"
    assert route_get(n2.router, ip2int(H2.ip))["error"] == "No route to host"


def test_fwmark_with_mask() -> None:
    n = net("  - {priority: 100, fwmark: 0x10/0xf0, table: 100}\n")
    fib = n.router.fib
    dst = ip2int(H2.ip)
    assert fib.lookup(FlowKey(4, dst, mark=0x1F)).table == 100
    assert fib.lookup(FlowKey(4, dst, mark=0x20)).table == 254
    assert route_get(n.router, dst, mark=0x13)["error"] == "No route to host"


def test_suppress_prefixlength_ignores_the_default_route() -> None:
    routes = T100 + "  - {to: default, via: 10.0.2.254}\n"
    n = net("  - {priority: 100, table: main, suppress_prefixlength: 0}\n"
            "  - {priority: 200, table: 100}\n", routes)
    # 10.0.2.x: main has the /24, longer than /0: used.  8.8.8.8: main only has
    # the default route, suppressed, so rule 200 decides (nothing in 100 -> main again).
    assert n.router.fib.lookup(FlowKey(4, ip2int(H2.ip))).plen == 24
    r = n.router.fib.lookup(FlowKey(4, ip2int("8.8.8.8")))
    assert r is not None and r.plen == 0 and r.table == 254


def test_goto_skips_rules_and_throw_continues() -> None:
    routes = "  - {to: 10.0.2.0/24, type: throw, table: 100}\n" \
             "  - {to: 10.0.2.0/24, type: prohibit, table: 200}\n"
    n = net("  - {priority: 100, goto: 300}\n"
            "  - {priority: 200, type: blackhole}\n"
            "  - {priority: 300, table: 100}\n"
            "  - {priority: 400, table: 200}\n", routes)
    # goto jumps over the blackhole; table 100 throws; table 200 prohibits.
    assert verdict(send_udp(n, H1)) == "icmp 3/13"


def test_no_fast_path_with_custom_rules() -> None:
    n = net(f"  - {{priority: 100, from: {H1B.ip}/32, table: 100}}\n")
    for _ in range(5):
        n.now += 2 * SECOND      # route errors share a per-host ICMP budget (ip_error)
        assert verdict(send_udp(n, H1)) == "forwarded"
        assert verdict(send_udp(n, H1B)) == "icmp 3/1"
    assert n.router.fast_forwarded == 0


def test_show_rules_lists_defaults_and_configured_in_order() -> None:
    n = net("  - {priority: 100, from: 10.0.1.0/24, fwmark: 0x10/0xff, dport: 53, table: 100}\n")
    got = rules(n.router)
    assert [r["priority"] for r in got] == [0, 100, 32766, 32767]
    assert got[1] == {"priority": 100, "src": "10.0.1.0/24", "fwmark": "0x10/0xff",
                      "dport": "53", "table": "100"}
    assert got[2]["table"] == "main" and got[0]["table"] == "local"


@pytest.mark.parametrize("rule, path", [
    ("{priority: 100}", "rules[0]"),
    ("{priority: 100, table: 5, goto: 200}", "rules[0]"),
    ("{priority: 100, goto: 50}", "rules[0].goto"),
    ("{priority: 100, iif: nope, table: 5}", "rules[0].iif"),
    ("{priority: 100, dport: 70000, table: 5}", "rules[0].dport"),
    ("{priority: 100, fwmark: xyz, table: 5}", "rules[0].fwmark"),
    ("{priority: 0, table: 5}", "rules[0].priority"),
    ("{priority: 100, type: prohibit, suppress_prefixlength: 0}", "rules[0].suppress_prefixlength"),
])
def test_bad_rules_are_refused_with_their_key_path(rule: str, path: str) -> None:
    with pytest.raises(ConfigError) as e:
        build(parse(TOPOLOGY + "rules:\n  - " + rule + "\n"), random.Random(1))
    assert e.value.path == path, str(e.value)


def test_named_tables_local_route_type_and_advmss() -> None:
    text = (TOPOLOGY + "  - {to: 10.0.2.0/24, type: unreachable, table: vpn}\n"
            "  - {to: 10.88.0.0/16, via: 10.0.2.254, advmss: 1360}\n"
            "  - {to: 10.77.7.7/32, type: local, dev: lan0}\n"
            "tables: {vpn: 100}\n"
            f"rules:\n  - {{priority: 100, from: {H1.ip}/32, table: vpn}}\n")
    n = Net(text)
    n.reachable(H1)
    n.reachable(H2)
    assert verdict(send_udp(n, H1)) == "icmp 3/1"
    assert rules(n.router)[1]["table"] == "vpn"
    from pyrouter.core.introspect import routes as show_routes
    assert [r["dst"] for r in show_routes(n.router, "vpn")] == ["10.0.2.0/24"]
    assert [r["dst"] for r in show_routes(n.router, "100")] == ["10.0.2.0/24"]
    assert next(r for r in show_routes(n.router) if r["dst"] == "10.88.0.0/16")["advmss"] == 1360
    # The local route makes the router answer for 10.77.7.7 itself.
    tx = n.send(LAN, frame_from(H1, ipv4(H1.ip, "10.77.7.7", b"\x08\x00\xf7\xff\x00\x00\x00\x00",
                                          proto=1)))
    ip = parse_ipv4(tx[0][1][14:])
    assert (ip.src, ip.dst, ip.payload[0]) == ("10.77.7.7", H1.ip, 0)


@pytest.mark.parametrize("text, path", [
    ("routes: [{to: 10.0.9.0/24, type: unreachable, table: nope}]", "routes[0].table"),
    ("rules: [{priority: 5, table: nope}]", "rules[0].table"),
    ("routes: [{to: 10.9.9.9/32, type: local}]", "routes[0].dev"),
    ("tables: {main: 5}", "tables"),
    ("tables: {vpn: 254}", "tables"),
])
def test_bad_table_names_and_local_routes(text: str, path: str) -> None:
    base = TOPOLOGY.split("routes:")[0]
    with pytest.raises(ConfigError) as e:
        build(parse(base + text + "\n"), random.Random(1))
    assert e.value.path == path, str(e.value)
