"""Control: YAML -> schema -> core objects.  Errors name the file, the key path and why;
a valid file builds the routes Linux installs for the same addresses."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from pyrouter.control.build import build, check, plan_ports
from pyrouter.control.load import ConfigError, load, parse
from pyrouter.core.route.fib import RT_TABLE_LOCAL, RT_TABLE_MAIN, Route, RouteType, Scope
from pyrouter.wire.addr import stable_mac

FILE = "lab.yaml"

BASE = """\
interfaces:
  lan0:
    addresses: [10.0.1.1/24]
  wan0:
    addresses: [10.0.2.1/24]
"""


def error(text: str) -> ConfigError:
    """The ConfigError that parsing + building *text* raises."""
    with pytest.raises(ConfigError) as ei:
        build(parse(text, FILE), random.Random(0), now=0, file=FILE)
    err = ei.value
    assert err.file == FILE
    assert str(err).startswith(f"{FILE}: ")
    if err.path:
        assert str(err) == f"{FILE}: {err.path}: {err.reason}"
    return err


def ip(a: str) -> int:
    return int(IPv4Address(a))


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------

@pytest.mark.parametrize("addr,why", [
    ("10.0.1.300/24", "10.0.1.300/24"),
    ("10.0.1.1", "prefix length"),
    ("10.0.1.1/33", "10.0.1.1/33"),
    ("lan", "prefix length"),
])
def test_bad_address(addr: str, why: str) -> None:
    err = error(f"interfaces:\n  lan0:\n    addresses: [10.0.1.1/24, {addr}]\n")
    assert err.path == "interfaces.lan0.addresses[1]"
    assert why in err.reason


@pytest.mark.parametrize("addr", ["224.0.0.1/24", "127.0.0.1/8", "0.0.0.0/0",
                                  "255.255.255.255/32"])
def test_address_that_cannot_be_an_interface_address(addr: str) -> None:
    err = error(f"interfaces:\n  lan0:\n    addresses: [{addr}]\n")
    assert err.path == "interfaces.lan0.addresses[0]"
    assert "cannot be an interface address" in err.reason


@pytest.mark.parametrize("text,path", [
    (BASE.replace("    addresses: [10.0.2.1/24]", "    adresses: [10.0.2.1/24]"),
     "interfaces.wan0.adresses"),
    (BASE + "rutes: []\n", "rutes"),
    (BASE + "routes:\n  - {to: default, via: 10.0.1.254, gw: 1}\n", "routes[0].gw"),
    (BASE.replace("  lan0:\n", "  lan0:\n    peer: {addresses: [10.0.1.2/24], x: 1}\n"),
     "interfaces.lan0.peer.x"),
])
def test_unknown_key(text: str, path: str) -> None:
    err = error(text)
    assert (err.path, err.reason) == (path, "unknown key")


@pytest.mark.parametrize("mtu,why", [(67, "greater than or equal to 68"),
                                     (65536, "less than or equal to 65535"),
                                     (0, "greater than or equal to 68")])
def test_interface_mtu_out_of_range(mtu: int, why: str) -> None:
    err = error(BASE.replace("  wan0:\n", f"  wan0:\n    mtu: {mtu}\n"))
    assert err.path == "interfaces.wan0.mtu"
    assert why in err.reason


def test_route_mtu_out_of_range() -> None:
    err = error(BASE + "routes:\n  - {to: 10.9.0.0/16, via: 10.0.1.254}\n"
                       "  - {to: 10.8.0.0/16, via: 10.0.1.254, mtu: 20}\n")
    assert err.path == "routes[1].mtu"


def test_interface_mtu_bounds_accepted() -> None:
    r = build(parse(BASE.replace("  wan0:\n", "  wan0:\n    mtu: 68\n")
                    .replace("  lan0:\n", "  lan0:\n    mtu: 65535\n")), random.Random(0))
    assert (r.ports[1].mtu, r.ports[2].mtu) == (65535, 68)


@pytest.mark.parametrize("index", [0, 2])
def test_gateway_not_on_link(index: int) -> None:
    routes = ["  - {to: 10.7.0.0/16, via: 10.0.2.9}\n"] * 3
    routes[index] = "  - {to: 10.9.0.0/16, via: 10.1.0.1}\n"
    err = error(BASE + "routes:\n" + "".join(routes))
    assert err.path == f"routes[{index}].via"
    assert "10.1.0.1" in err.reason and "not in a connected subnet" in err.reason


def test_gateway_on_link_but_not_on_the_named_dev() -> None:
    err = error(BASE + "routes:\n  - {to: 10.9.0.0/16, via: 10.0.1.254, dev: wan0}\n")
    assert err.path == "routes[0].via"
    assert "wan0" in err.reason


def test_gateway_equal_to_subnet_broadcast_is_refused() -> None:
    err = error(BASE + "routes:\n  - {to: 10.9.0.0/16, via: 10.0.1.255}\n")
    assert err.path == "routes[0].via"


def test_unknown_dev() -> None:
    err = error(BASE + "routes:\n  - {to: 10.9.0.0/16, dev: lan0}\n"
                       "  - {to: 10.8.0.0/16, dev: eth7}\n")
    assert err.path == "routes[1].dev"
    assert "eth7" in err.reason


@pytest.mark.parametrize("kind", ["blackhole", "unreachable", "prohibit"])
def test_reject_route_with_via(kind: str) -> None:
    err = error(BASE + f"routes:\n  - {{to: 10.9.0.0/16, type: {kind}, via: 10.0.1.254}}\n")
    assert err.path == "routes[0].via"
    assert kind in err.reason


@pytest.mark.parametrize("kind", ["blackhole", "unreachable", "prohibit"])
def test_reject_route_with_dev(kind: str) -> None:
    err = error(BASE + f"routes:\n  - {{to: 10.9.0.0/16, type: {kind}, dev: lan0}}\n")
    assert err.path == "routes[0].dev"


def test_unicast_route_needs_via_or_dev() -> None:
    err = error(BASE + "routes:\n  - {to: 10.9.0.0/16}\n")
    assert err.path == "routes[0]"


def test_unknown_route_type() -> None:
    err = error(BASE + "routes:\n  - {to: 10.9.0.0/16, type: nat}\n")
    assert err.path == "routes[0].type"


def test_route_destination_with_host_bits() -> None:
    err = error(BASE + "routes:\n  - {to: 10.9.0.1/16, via: 10.0.1.254}\n")
    assert err.path == "routes[0].to" and "host bits" in err.reason


def test_duplicate_address_across_interfaces() -> None:
    err = error(BASE.replace("[10.0.2.1/24]", "[10.0.2.1/24, 10.0.1.1/16]"))
    assert err.path == "interfaces.wan0.addresses[1]"
    assert "10.0.1.1" in err.reason and "lan0" in err.reason


def test_duplicate_address_on_one_interface() -> None:
    err = error(BASE.replace("[10.0.1.1/24]", "[10.0.1.1/24, 10.0.1.1/24]"))
    assert err.path == "interfaces.lan0.addresses[1]"


def test_duplicate_mac() -> None:
    err = error(BASE.replace("  lan0:\n", "  lan0:\n    macaddress: '02:00:00:00:00:01'\n")
                .replace("  wan0:\n", "  wan0:\n    macaddress: '02:00:00:00:00:01'\n"))
    assert err.path == "interfaces.wan0.macaddress"


@pytest.mark.parametrize("mac,why", [("zz:00:00:00:00:00", "not a MAC"),
                                     ("01:00:5e:00:00:01", "multicast"),
                                     ("02:00:00:00:00", "not a MAC")])
def test_bad_mac(mac: str, why: str) -> None:
    err = error(BASE.replace("  lan0:\n", f"  lan0:\n    macaddress: '{mac}'\n"))
    assert err.path == "interfaces.lan0.macaddress" and why in err.reason


def test_interface_name_too_long() -> None:
    err = error("interfaces:\n  averyveryverylongname: {}\n")
    assert err.path == "interfaces" and "averyveryverylongname" in err.reason


def test_peer_needs_netns() -> None:
    err = error(BASE.replace("  lan0:\n", "  lan0:\n    peer: {addresses: [10.0.1.2/24]}\n"))
    assert err.path == "interfaces.lan0.peer"


@pytest.mark.parametrize("text,line,column", [
    ("interfaces:\n  lan0:\n    addresses: [10.0.1.1/24\n  wan0: {}\n", 4, 7),
    ("interfaces:\n  lan0:\n   addresses: x\n  bad: : :\n", 4, 8),
    ("interfaces:\n\tlan0: {}\n", 2, 1),
])
def test_invalid_yaml_reports_line_and_column(text: str, line: int, column: int) -> None:
    err = error(text)
    assert err.path == ""
    assert err.reason.startswith(f"line {line}, column {column}: not valid YAML")


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just text\n"])
def test_top_level_must_be_a_mapping(text: str) -> None:
    err = error(text)
    assert err.path == "" and "mapping" in err.reason


def test_no_interfaces() -> None:
    assert error("interfaces: {}\n").path == "interfaces"
    assert error("routes: []\n").path == "interfaces"


def test_load_names_the_file(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("interfaces:\n  lan0:\n    mtu: 10\n")
    with pytest.raises(ConfigError) as ei:
        load(p)
    assert ei.value.file == str(p) and ei.value.path == "interfaces.lan0.mtu"
    assert str(ei.value).startswith(f"{p}: interfaces.lan0.mtu: ")


def test_load_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as ei:
        load(p)
    assert ei.value.file == str(p) and ei.value.path == ""
    assert "No such file" in ei.value.reason


def test_check_refuses_before_anything_is_built() -> None:
    cfg = parse(BASE + "routes:\n  - {to: 10.9.0.0/16, via: 10.5.0.1}\n")
    with pytest.raises(ConfigError):
        check(cfg, FILE)


# --------------------------------------------------------------------------
# What a valid file builds
# --------------------------------------------------------------------------

VALID = """\
interfaces:
  lan0:
    addresses: [10.0.1.1/24, "fd00:1::1/64"]
    macaddress: "02:00:00:00:01:01"
  wan0:
    addresses: [10.0.2.1/24, 192.168.7.5/31, 172.16.0.9/32]
    mtu: 9000
  spare0: {}
routes:
  - {to: default, via: 10.0.2.254, metric: 100}
  - {to: 10.9.0.0/16, via: 10.0.1.200, dev: lan0, mtu: 1400}
  - {to: 10.8.0.0/16, dev: wan0}
  - {to: 198.51.100.0/24, type: unreachable}
  - {to: 203.0.113.0/24, type: prohibit, table: 100}
  - {to: 192.0.2.0/24, type: blackhole, metric: 7}
"""


def routes(r, table: int) -> set[Route]:
    return set(r.fib.table(table).routes(4))


def test_ports_get_ifindex_in_order_macs_and_mtus() -> None:
    r = build(parse(VALID), random.Random(0))
    assert [(p.ifindex, p.name) for p in r.ports.values()] == \
        [(1, "lan0"), (2, "wan0"), (3, "spare0")]
    assert r.ports[1].mac == bytes.fromhex("020000000101")
    assert r.ports[2].mac == stable_mac("wan0") and r.ports[2].mac[0] & 0x03 == 0x02
    assert [p.mtu for p in r.ports.values()] == [1500, 9000, 1500]
    assert r.ports[1].addrs4 == [(ip("10.0.1.1"), 24)]
    assert r.ports[1].addrs6 and r.ports[3].addrs4 == []
    assert [p.ifindex for p in plan_ports(parse(VALID))] == [1, 2, 3]


def test_local_table_holds_local_and_broadcast_routes_as_linux() -> None:
    """ip route show table local: 'local A dev D proto kernel scope host src A' and
    'broadcast B dev D proto kernel scope link src A' (none for /31 and /32)."""
    r = build(parse(VALID), random.Random(0))
    want = set()
    for oif, addr in ((1, "10.0.1.1"), (2, "10.0.2.1"), (2, "192.168.7.5"), (2, "172.16.0.9")):
        want.add(Route(4, ip(addr), 32, RouteType.LOCAL, oif, scope=Scope.HOST,
                       table=RT_TABLE_LOCAL, prefsrc=ip(addr), proto="kernel"))
    for oif, bcast, src in ((1, "10.0.1.255", "10.0.1.1"), (2, "10.0.2.255", "10.0.2.1")):
        want.add(Route(4, ip(bcast), 32, RouteType.BROADCAST, oif, scope=Scope.LINK,
                       table=RT_TABLE_LOCAL, prefsrc=ip(src), proto="kernel"))
    assert routes(r, RT_TABLE_LOCAL) == want
    assert r.local4 == {ip(a) for a in ("10.0.1.1", "10.0.2.1", "192.168.7.5", "172.16.0.9")}
    assert r.bcast4 == {ip("10.0.1.255"), ip("10.0.2.255")}


def test_main_table_holds_connected_and_static_routes() -> None:
    r = build(parse(VALID), random.Random(0))
    connected = {
        Route(4, ip(net), plen, RouteType.UNICAST, oif, scope=Scope.LINK, table=RT_TABLE_MAIN,
              prefsrc=ip(src), proto="kernel")
        for oif, net, plen, src in ((1, "10.0.1.0", 24, "10.0.1.1"),
                                    (2, "10.0.2.0", 24, "10.0.2.1"),
                                    (2, "192.168.7.4", 31, "192.168.7.5"))}
    static = {
        Route(4, 0, 0, RouteType.UNICAST, 2, ip("10.0.2.254"), 100, scope=Scope.UNIVERSE),
        Route(4, ip("10.9.0.0"), 16, RouteType.UNICAST, 1, ip("10.0.1.200"), mtu=1400),
        Route(4, ip("10.8.0.0"), 16, RouteType.UNICAST, 2, None, scope=Scope.LINK),
        Route(4, ip("198.51.100.0"), 24, RouteType.UNREACHABLE),
        Route(4, ip("192.0.2.0"), 24, RouteType.BLACKHOLE, metric=7),
    }
    assert routes(r, RT_TABLE_MAIN) == connected | static
    assert routes(r, 100) == {Route(4, ip("203.0.113.0"), 24, RouteType.PROHIBIT, table=100)}


def test_lookups_on_the_built_fib() -> None:
    from pyrouter.core.route.flow import FlowKey

    r = build(parse(VALID), random.Random(0))

    def look(dst: str) -> Route | None:
        return r.fib.lookup(FlowKey(4, ip(dst)))

    assert look("10.0.1.1").type is RouteType.LOCAL
    assert look("10.0.1.255").type is RouteType.BROADCAST
    assert look("10.0.1.77").plen == 24
    assert look("10.9.1.1").gateway == ip("10.0.1.200")
    assert look("8.8.8.8").gateway == ip("10.0.2.254")
    assert look("198.51.100.1").type is RouteType.UNREACHABLE
    # table 100 is not consulted by the default rules: the default route applies.
    assert look("203.0.113.1").gateway == ip("10.0.2.254")


def test_secondary_address_in_same_subnet_adds_no_second_prefix_route() -> None:
    r = build(parse("interfaces:\n  lan0:\n    addresses: [10.0.1.1/24, 10.0.1.2/24]\n"),
              random.Random(0))
    connected = [x for x in routes(r, RT_TABLE_MAIN) if x.dst == ip("10.0.1.0")]
    assert len(connected) == 1 and connected[0].prefsrc == ip("10.0.1.1")
    assert {x.dst for x in routes(r, RT_TABLE_LOCAL) if x.type is RouteType.LOCAL} == \
        {ip("10.0.1.1"), ip("10.0.1.2")}


def test_config_is_frozen_and_normalised() -> None:
    cfg = parse(VALID)
    assert cfg.routes[0].to == "default" and cfg.routes[1].to == "10.9.0.0/16"
    assert cfg.interfaces["lan0"].addresses[0].network == IPv4Network("10.0.1.0/24")
    with pytest.raises(Exception):
        cfg.routes[0].metric = 5  # type: ignore[misc]


def test_the_lab_config_is_valid() -> None:
    lab = Path(__file__).resolve().parents[2] / "config" / "lab.yaml"
    if not lab.exists():
        pytest.skip("no config/lab.yaml")
    r = build(load(lab), random.Random(0), file=str(lab))
    assert len(r.ports) >= 2
