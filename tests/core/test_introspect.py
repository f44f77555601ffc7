"""The operator's view (core/introspect.py): ip link / addr / route / neigh as data, and
``route get``, checked against what a real packet sent through the router then gets."""

from __future__ import annotations

import json

import pytest

from pyrouter.core import introspect
from pyrouter.core.ip.sock import send_echo
from pyrouter.core.link.neighbour import NudState

from .helpers import (
    BCAST_MAC, GW, H1, H2, H3, H4, H5, JUMBO, LAN, MS, R_IP, R_MAC, SECOND, SMALL, TOPOLOGY, WAN,
    ZERO_MAC, Host, Net, arp, echo, expect_arp, expect_error, expect_ipv4, frame_from, ip2int, ipv4,
    parse_eth, ping,
)

# The standard topology plus a route with an mtu metric, a metric, one in the
# "default" table (looked up by rule 32767) and one in table 100 (no rule uses it).
CONFIG = TOPOLOGY + """\
  - {to: 10.8.0.0/16, via: 10.0.2.254, mtu: 1280}
  - {to: 10.7.0.0/16, via: 10.0.2.254, table: 253}
  - {to: 10.6.0.0/16, via: 10.0.2.254, table: 100}
  - {to: 10.5.0.0/16, dev: small0, metric: 7}
"""


NH_MAC = bytes.fromhex("02ee00000001")


def net() -> Net:
    return Net(CONFIG)


def rget(n: Net, dst: str, src: str | None = None, iif: str | None = None,
         mark: int = 0) -> dict:
    res = introspect.route_get(n.router, ip2int(dst), ip2int(src) if src else None, iif, mark)
    json.dumps(res)                     # JSON-ready
    return res


# --------------------------------------------------------------------------
# links / addrs / routes
# --------------------------------------------------------------------------

def test_links_are_ip_link_data_with_counters() -> None:
    n = net()
    n.learn(H1)                                          # one frame in, one ARP reply out
    links = introspect.links(n.router)
    json.dumps(links)
    assert [(d["ifindex"], d["ifname"], d["mtu"]) for d in links] == [
        (1, "lan0", 1500), (2, "wan0", 1500), (3, "small0", 1400), (4, "jumbo0", 9000)]
    lan = links[0]
    assert lan["address"] == "02:00:00:00:01:01"
    assert lan["operstate"] == "UP"
    assert lan["stats"] == {"rx_packets": 1, "rx_bytes": 60, "rx_dropped": 0,
                            "tx_packets": 1, "tx_bytes": 42, "tx_dropped": 0}
    n.router.set_link(SMALL, False, n.now)
    assert introspect.links(n.router)[2]["operstate"] == "DOWN"


def test_addrs_are_ip_addr_data() -> None:
    n = net()
    n.router.add_address6(JUMBO, ip2int("10.0.0.0") << 96 | 1, 64, n.now)
    addrs = introspect.addrs(n.router)
    json.dumps(addrs)
    wan = addrs[1]
    assert (wan["ifindex"], wan["ifname"], wan["mtu"], wan["operstate"], wan["address"]) == (
        2, "wan0", 1500, "UP", "02:00:00:00:02:01")
    assert wan["addr_info"] == [
        {"family": "inet", "local": "10.0.2.1", "prefixlen": 24, "scope": "global",
         "broadcast": "10.0.2.255"},
        {"family": "inet", "local": "10.0.20.1", "prefixlen": 24, "scope": "global",
         "broadcast": "10.0.20.255"},
        {"family": "inet6", "local": "fe80::ff:fe00:201", "prefixlen": 64, "scope": "link"}]
    six = addrs[3]["addr_info"][2]
    assert six == {"family": "inet6", "local": "a00::1", "prefixlen": 64, "scope": "global"}


def test_addrs_no_broadcast_on_31_and_32() -> None:
    n = Net("""\
interfaces:
  p2p: {addresses: [192.0.2.0/31, 198.51.100.7/32], macaddress: "02:00:00:00:09:01"}
""")
    infos = introspect.addrs(n.router)[0]["addr_info"]
    assert [(a["local"], a["prefixlen"]) for a in infos] == [
        ("192.0.2.0", 31), ("198.51.100.7", 32), ("fe80::ff:fe00:901", 64)]
    assert all("broadcast" not in a for a in infos)


def test_routes_main_table() -> None:
    n = net()
    routes = introspect.routes(n.router)
    json.dumps(routes)
    assert introspect.routes(n.router, "main") == routes
    assert all(d["table"] == "main" for d in routes)
    by_dst = {d["dst"]: d for d in routes}
    assert by_dst["10.0.1.0/24"] == {
        "type": "unicast", "dst": "10.0.1.0/24", "family": 4, "table": "main",
        "protocol": "kernel", "scope": "link", "metric": 0, "dev": "lan0",
        "prefsrc": "10.0.1.1"}
    assert by_dst["10.9.0.0/16"] == {
        "type": "unicast", "dst": "10.9.0.0/16", "family": 4, "table": "main",
        "protocol": "static", "scope": "universe", "metric": 0, "dev": "wan0",
        "gateway": "10.0.2.254"}
    assert by_dst["10.8.0.0/16"]["mtu"] == 1280
    assert by_dst["10.5.0.0/16"] == {
        "type": "unicast", "dst": "10.5.0.0/16", "family": 4, "table": "main",
        "protocol": "static", "scope": "link", "metric": 7, "dev": "small0"}
    for dst, kind in [("198.51.100.0/24", "unreachable"), ("203.0.113.0/24", "prohibit"),
                      ("192.0.2.0/24", "blackhole")]:
        assert by_dst[dst] == {"type": kind, "dst": dst, "family": 4, "table": "main",
                               "protocol": "static", "scope": "universe", "metric": 0}
    assert set(by_dst) == {"10.0.1.0/24", "10.0.2.0/24", "10.0.20.0/24", "10.0.4.0/24",
                           "10.0.5.0/24", "10.9.0.0/16", "10.8.0.0/16", "10.5.0.0/16",
                           "198.51.100.0/24", "203.0.113.0/24", "192.0.2.0/24"}


def test_routes_local_table() -> None:
    n = net()
    local = introspect.routes(n.router, "local")
    assert all(d["table"] == "local" and d["protocol"] == "kernel" for d in local)
    got = {(d["type"], d["dst"], d["dev"], d["scope"], d["prefsrc"]) for d in local}
    assert got == {
        ("local", "10.0.1.1/32", "lan0", "host", "10.0.1.1"),
        ("broadcast", "10.0.1.255/32", "lan0", "link", "10.0.1.1"),
        ("local", "10.0.2.1/32", "wan0", "host", "10.0.2.1"),
        ("broadcast", "10.0.2.255/32", "wan0", "link", "10.0.2.1"),
        ("local", "10.0.20.1/32", "wan0", "host", "10.0.20.1"),
        ("broadcast", "10.0.20.255/32", "wan0", "link", "10.0.20.1"),
        ("local", "10.0.4.1/32", "small0", "host", "10.0.4.1"),
        ("broadcast", "10.0.4.255/32", "small0", "link", "10.0.4.1"),
        ("local", "10.0.5.1/32", "jumbo0", "host", "10.0.5.1"),
        ("broadcast", "10.0.5.255/32", "jumbo0", "link", "10.0.5.1"),
    }


def test_routes_all_tables_local_first_and_named() -> None:
    n = net()
    every = introspect.routes(n.router, "all")
    tables = [d["table"] for d in every]
    # Highest table id first: local (255), main (254), default (253), then 100.
    assert tables == sorted(tables, key=["local", "main", "default", "100"].index)
    assert tables.count("local") == 10 and tables.count("main") == 11
    assert [d["dst"] for d in every if d["table"] == "default"] == ["10.7.0.0/16"]
    assert introspect.routes(n.router, "default") == [d for d in every
                                                       if d["table"] == "default"]
    assert [d["dst"] for d in introspect.routes(n.router, "100")] == ["10.6.0.0/16"]
    assert introspect.routes(n.router, "nosuch") == []


def test_routes_on_a_down_port_are_flagged_dead_linkdown() -> None:
    n = net()
    n.router.set_link(SMALL, False, n.now)
    by_dst = {d["dst"]: d for d in introspect.routes(n.router)}
    assert by_dst["10.0.4.0/24"]["flags"] == ["dead", "linkdown"]
    assert by_dst["10.5.0.0/16"]["flags"] == ["dead", "linkdown"]
    assert "flags" not in by_dst["10.0.1.0/24"]


def test_introspection_changes_nothing() -> None:
    n = net()
    n.reachable(H1)
    before = json.dumps(n.router.snapshot(), sort_keys=True)
    introspect.links(n.router)
    introspect.addrs(n.router)
    introspect.routes(n.router, "all")
    introspect.neighbours(n.router, n.now)
    for dst in ("10.9.1.1", "10.0.2.20", "10.0.1.1", "8.8.8.8"):
        rget(n, dst)
        rget(n, dst, H1.ip, "lan0")
    assert json.dumps(n.router.snapshot(), sort_keys=True) == before
    assert n.drain() == []


# --------------------------------------------------------------------------
# neighbours (ip -s neigh) in virtual time
# --------------------------------------------------------------------------

def test_neighbour_ages_and_timers_in_virtual_time() -> None:
    n = net()
    r = n.router
    n.learn(H1)                                      # STALE at t=0, never confirmed
    n.now = 1 * SECOND
    n.learn(H2)
    n.confirm(H2)                                    # REACHABLE, confirmed at t=1 s
    n.now = 4 * SECOND
    n.send(LAN, ping(H1, H4.ip))                      # H4: INCOMPLETE at t=4 s, 1 probe
    t = 4 * SECOND + 250 * MS
    neigh = {d["dst"]: d for d in introspect.neighbours(r, t)}
    json.dumps(neigh)
    h1 = neigh[H1.ip]
    # Never confirmed: "confirmed" 2 * base_reachable_time before creation (neigh_alloc).
    assert h1 == {"dst": H1.ip, "dev": "lan0", "state": "STALE", "probes": 0, "used": 4,
                  "confirmed": 64, "updated": 4, "queued": 0, "lladdr": "02:10:00:00:00:10"}
    h2 = neigh[H2.ip]
    assert (h2["state"], h2["dev"], h2["lladdr"]) == ("REACHABLE", "wan0", "02:20:00:00:00:20")
    assert (h2["used"], h2["confirmed"], h2["updated"]) == (3, 3, 3)
    reach = r.neigh4.reach_time(2)
    assert h2["timer_ms"] == (1 * SECOND + reach - t) // 1_000_000
    h4 = neigh[H4.ip]
    assert h4 == {"dst": H4.ip, "dev": "small0", "state": "INCOMPLETE", "probes": 4,
                  "used": 0, "confirmed": 60, "updated": 0, "queued": 1, "timer_ms": 750}
    # A deadline already passed (the timer has not run yet) shows 0, never negative.
    assert {d["dst"]: d for d in introspect.neighbours(r, 6 * SECOND)}[H4.ip]["timer_ms"] == 0


def test_neighbour_after_failure_and_timer_progress() -> None:
    n = net()
    n.send(LAN, ping(H1, H4.ip))
    n.run_until(1500 * MS)                           # second probe sent at 1 s
    h4 = {d["dst"]: d for d in introspect.neighbours(n.router, n.now)}[H4.ip]
    assert (h4["state"], h4["probes"], h4["timer_ms"]) == ("INCOMPLETE", 5, 500)
    n.run_until(3 * SECOND)
    h4 = {d["dst"]: d for d in introspect.neighbours(n.router, n.now)}[H4.ip]
    assert (h4["state"], h4["queued"], h4["updated"]) == ("FAILED", 0, 0)
    assert "timer_ms" not in h4 and "lladdr" not in h4


# --------------------------------------------------------------------------
# route get: values
# --------------------------------------------------------------------------

def test_route_get_via_gateway() -> None:
    n = net()
    assert rget(n, "10.9.1.1") == {
        "dst": "10.9.1.1", "type": "unicast", "table": "main", "prefix": "10.9.0.0/16",
        "dev": "wan0", "gateway": "10.0.2.254", "prefsrc": "10.0.2.1", "mtu": 1500,
        "neigh": {"addr": "10.0.2.254", "state": "NONE", "lladdr": None}}
    n.reachable(GW)
    assert rget(n, "10.9.1.1")["neigh"] == {"addr": "10.0.2.254", "state": "REACHABLE",
                                            "lladdr": "02:20:00:00:00:fe"}


def test_route_get_connected_picks_the_address_in_the_subnet() -> None:
    n = net()
    res = rget(n, H3.ip)                              # wan0's second subnet
    assert (res["dev"], res["prefsrc"], res["prefix"]) == ("wan0", "10.0.20.1", "10.0.20.0/24")
    assert "gateway" not in res
    assert res["neigh"] == {"addr": H3.ip, "state": "NONE", "lladdr": None}


def test_route_get_mtu_metric_and_device_mtu() -> None:
    n = net()
    assert rget(n, "10.8.0.1")["mtu"] == 1280
    assert rget(n, H4.ip)["mtu"] == 1400
    assert rget(n, H5.ip)["mtu"] == 9000


def test_route_get_default_table_and_metric() -> None:
    n = net()
    res = rget(n, "10.7.0.1")
    assert (res["table"], res["prefix"], res["gateway"]) == ("default", "10.7.0.0/16",
                                                             "10.0.2.254")
    assert "error" in rget(n, "10.6.0.1")            # table 100: no rule looks there
    assert rget(n, "10.5.0.1")["dev"] == "small0"


def test_route_get_local() -> None:
    n = net()
    assert rget(n, "10.0.20.1") == {"dst": "10.0.20.1", "type": "local", "table": "local",
                                    "prefix": "10.0.20.1/32", "dev": "wan0",
                                    "prefsrc": "10.0.20.1"}


def test_route_get_broadcast() -> None:
    n = net()
    res = rget(n, "10.0.1.255")
    assert (res["type"], res["table"], res["prefix"], res["dev"]) == (
        "broadcast", "local", "10.0.1.255/32", "lan0")
    assert "error" not in res


@pytest.mark.parametrize("dst,kind,error", [
    ("198.51.100.9", "unreachable", "No route to host"),
    ("203.0.113.9", "prohibit", "Permission denied"),
    ("192.0.2.9", "blackhole", "Invalid argument"),
])
def test_route_get_reject_routes(dst: str, kind: str, error: str) -> None:
    n = net()
    res = rget(n, dst)
    assert res == {"dst": dst, "type": kind, "table": "main",
                   "prefix": f"{dst.rsplit('.', 1)[0]}.0/24", "error": error}


def test_route_get_no_route() -> None:
    assert rget(net(), "8.8.8.8") == {"dst": "8.8.8.8", "error": "Network is unreachable"}


def test_route_get_with_from_iif_and_mark() -> None:
    n = net()
    res = rget(n, H2.ip, H1.ip, "lan0", mark=5)
    assert (res["from"], res["iif"], res["mark"], res["dev"]) == (H1.ip, "lan0", 5, "wan0")
    # An input lookup has no source to choose (ip route get ... iif shows no "src").
    assert "prefsrc" not in res


def test_route_get_unknown_iif() -> None:
    assert rget(net(), H2.ip, H1.ip, "eth9") == {"error": 'Cannot find device "eth9"'}


def test_route_get_skips_dead_routes_with_ignore_routes_with_linkdown() -> None:
    n = Net(CONFIG + "ipv4: {ignore_routes_with_linkdown: true}\n")
    n.router.set_link(SMALL, False, n.now)
    assert rget(n, H4.ip) == {"dst": H4.ip, "error": "Network is unreachable"}


def test_route_get_keeps_linkdown_routes_by_default() -> None:
    n = net()
    n.router.set_link(SMALL, False, n.now)
    assert rget(n, H4.ip)["dev"] == "small0"


def test_route_get_from_without_iif_reports_the_source_the_packet_gets() -> None:
    n = net()
    n.reachable(H2)
    res = rget(n, H2.ip, "10.0.1.1")
    assert send_echo(n.router, ip2int(H2.ip), 7, 1, n.now, src=ip2int("10.0.1.1"))
    tx = n.drain()
    expect_ipv4(tx[0], src="10.0.1.1", dst=H2.ip, ifindex=WAN)
    assert res["prefsrc"] == "10.0.1.1"
    assert res["from"] == "10.0.1.1"


# --------------------------------------------------------------------------
# route get == what a real packet gets
# --------------------------------------------------------------------------

def _egress_of_first_packet(n: Net, tx: list[tuple[int, bytes]]) -> tuple[str, str]:
    """(device, next hop) from the ARP request the router sends to resolve it."""
    assert len(tx) == 1, tx
    a = expect_arp(tx[0], op=1, eth_dst=BCAST_MAC, tha=ZERO_MAC)
    return n.router.ports[tx[0][0]].name, a.tpa


@pytest.mark.parametrize("dst", ["10.9.1.1", "10.8.3.4", "10.7.0.9", "10.5.0.9", H2.ip, H3.ip,
                                 H4.ip, H5.ip])
def test_route_get_input_matches_a_forwarded_packet(dst: str) -> None:
    n = net()
    n.learn(H1)
    res = rget(n, dst, H1.ip, "lan0")
    dev, nexthop = _egress_of_first_packet(n, n.send(LAN, ping(H1, dst)))
    assert dev == res["dev"]
    assert nexthop == res.get("gateway", dst) == res["neigh"]["addr"]
    assert res["neigh"]["state"] == "NONE"
    assert n.neigh_state(Host(nexthop, b"", n.router.ports_by_name[dev].ifindex)) == "INCOMPLETE"
    # The MTU: exactly mtu bytes with DF pass, mtu + 1 get Frag Needed quoting that mtu.
    mtu = res["mtu"]
    n2 = net()
    n2.learn(H1)
    port = n2.router.ports_by_name[dev]
    n2.router.neigh4.update(port.ifindex, ip2int(nexthop), NH_MAC, NudState.REACHABLE, True,
                            n2.now, create=True)
    fits = ipv4(H1.ip, dst, echo(data=bytes(mtu - 28)), proto=1, df=True)
    tx = n2.send(LAN, frame_from(H1, fits))
    expect_ipv4(tx[0], dst=dst, total_len=mtu, ifindex=port.ifindex,
                eth_dst=NH_MAC)
    too_big = ipv4(H1.ip, dst, echo(data=bytes(mtu - 27)), proto=1, df=True)
    tx = n2.send(LAN, frame_from(H1, too_big))
    expect_error(tx[0], type=3, code=4, about=too_big, src=R_IP[LAN], mtu=mtu, ifindex=LAN)


@pytest.mark.parametrize("dst", ["10.9.1.1", "10.8.3.4", H2.ip, H3.ip, H4.ip, H5.ip])
def test_route_get_output_matches_the_routers_own_packet(dst: str) -> None:
    n = net()
    res = rget(n, dst)
    assert send_echo(n.router, ip2int(dst), 0x77, 1, n.now)
    dev, nexthop = _egress_of_first_packet(n, n.drain())
    assert (dev, nexthop) == (res["dev"], res.get("gateway", dst))
    # Resolve the next hop: the queued echo leaves from prefsrc.
    port = n.router.ports_by_name[dev]
    tx = n.send(port.ifindex, arp(2, GW.mac, nexthop, R_MAC[port.ifindex], res["prefsrc"],
                                  eth_dst=R_MAC[port.ifindex]))
    ip = expect_ipv4(tx[0], src=res["prefsrc"], dst=dst, ttl=64, proto=1, ifindex=port.ifindex,
                     eth_dst=GW.mac)
    assert parse_eth(tx[0][1]).src == port.mac and ip.payload[0] == 8


@pytest.mark.parametrize("dst,code", [("198.51.100.9", 1), ("203.0.113.9", 13), ("8.8.8.8", 0)])
def test_route_get_errors_match_the_icmp_a_packet_gets(dst: str, code: int) -> None:
    n = net()
    n.learn(H1)
    assert "error" in rget(n, dst, H1.ip, "lan0")
    l3 = ipv4(H1.ip, dst, echo(), proto=1)
    tx = n.send(LAN, frame_from(H1, l3))
    expect_error(tx[0], type=3, code=code, about=l3, src=R_IP[LAN], ifindex=LAN)


def test_route_get_blackhole_matches_a_silent_drop() -> None:
    n = net()
    n.learn(H1)
    assert rget(n, "192.0.2.9", H1.ip, "lan0")["error"] == "Invalid argument"
    assert n.send(LAN, ping(H1, "192.0.2.9")) == []
    assert n.drops() == {"route_blackhole": 1}


def test_route_get_local_matches_delivery() -> None:
    n = net()
    n.learn(H1)
    res = rget(n, R_IP[WAN], H1.ip, "lan0")
    assert res["type"] == "local"
    tx = n.send(LAN, ping(H1, R_IP[WAN]))
    expect_ipv4(tx[0], src=res["prefsrc"], dst=H1.ip, proto=1, ifindex=LAN)
