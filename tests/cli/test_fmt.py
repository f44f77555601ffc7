"""The CLI's human output (cli/fmt.py): iproute2's wording for routes, ``route get``,
tcpdump-style frame lines, ping and traceroute lines."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from pyrouter.cli import fmt
from pyrouter.core import introspect

from ..core.helpers import (
    GW, H1, H2, LAN, R_IP, R_MAC, SMALL, TOPOLOGY, ZERO_MAC, Net, arp, echo, frame_from, icmp,
    ip2int, ipv4, ping, tcp, udp,
)


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def rt(**kw: Any) -> dict[str, Any]:
    d = {"type": "unicast", "family": 4, "table": "main", "protocol": "static",
         "scope": "universe", "metric": 0}
    d.update(kw)
    return d


# --------------------------------------------------------------------------
# route_line: ip route show
# --------------------------------------------------------------------------

@pytest.mark.parametrize("route,show_table,line", [
    (rt(dst="10.0.1.0/24", dev="lan0", protocol="kernel", scope="link", prefsrc="10.0.1.1"),
     False, "10.0.1.0/24 dev lan0 proto kernel scope link src 10.0.1.1"),
    (rt(dst="10.9.0.0/16", dev="wan0", gateway="10.0.2.254"),
     False, "10.9.0.0/16 via 10.0.2.254 dev wan0 proto static"),
    (rt(dst="0.0.0.0/0", dev="wan0", gateway="10.0.2.254"),
     False, "default via 10.0.2.254 dev wan0 proto static"),
    (rt(dst="10.1.2.3/32", dev="wan0", gateway="10.0.2.254"),
     False, "10.1.2.3 via 10.0.2.254 dev wan0 proto static"),
    (rt(dst="10.5.0.0/16", dev="small0", scope="link", metric=7),
     False, "10.5.0.0/16 dev small0 proto static scope link metric 7"),
    (rt(dst="10.8.0.0/16", dev="wan0", gateway="10.0.2.254", mtu=1280),
     False, "10.8.0.0/16 via 10.0.2.254 dev wan0 proto static mtu 1280"),
    (rt(dst="10.8.0.0/16", dev="wan0", gateway="10.0.2.254", metric=20, mtu=1280,
        prefsrc="10.0.2.1"),
     False, "10.8.0.0/16 via 10.0.2.254 dev wan0 proto static src 10.0.2.1 metric 20 mtu 1280"),
    (rt(dst="10.7.0.0/16", dev="wan0", gateway="10.0.2.254", protocol="boot"),
     False, "10.7.0.0/16 via 10.0.2.254 dev wan0"),
    (rt(type="unreachable", dst="198.51.100.0/24"),
     False, "unreachable 198.51.100.0/24 proto static"),
    (rt(type="prohibit", dst="203.0.113.0/24"), False, "prohibit 203.0.113.0/24 proto static"),
    (rt(type="blackhole", dst="192.0.2.0/24"), False, "blackhole 192.0.2.0/24 proto static"),
    (rt(type="blackhole", dst="0.0.0.0/0", metric=5),
     False, "blackhole default proto static metric 5"),
    (rt(type="local", dst="10.0.1.1/32", dev="lan0", table="local", protocol="kernel",
        scope="host", prefsrc="10.0.1.1"),
     False, "local 10.0.1.1 dev lan0 proto kernel scope host src 10.0.1.1"),
    (rt(type="local", dst="10.0.1.1/32", dev="lan0", table="local", protocol="kernel",
        scope="host", prefsrc="10.0.1.1"),
     True, "local 10.0.1.1 dev lan0 table local proto kernel scope host src 10.0.1.1"),
    (rt(type="broadcast", dst="10.0.1.255/32", dev="lan0", table="local", protocol="kernel",
        scope="link", prefsrc="10.0.1.1"),
     True, "broadcast 10.0.1.255 dev lan0 table local proto kernel scope link src 10.0.1.1"),
    (rt(dst="10.9.0.0/16", dev="wan0", gateway="10.0.2.254"),
     True, "10.9.0.0/16 via 10.0.2.254 dev wan0 proto static"),          # main: never named
    (rt(dst="10.7.0.0/16", dev="wan0", gateway="10.0.2.254", table="default"),
     True, "10.7.0.0/16 via 10.0.2.254 dev wan0 table default proto static"),
    (rt(dst="10.6.0.0/16", dev="wan0", gateway="10.0.2.254", table="100"),
     True, "10.6.0.0/16 via 10.0.2.254 dev wan0 table 100 proto static"),
    (rt(type="unreachable", dst="10.6.0.0/16", table="100"),
     True, "unreachable 10.6.0.0/16 table 100 proto static"),
    (rt(dst="10.0.4.0/24", dev="small0", protocol="kernel", scope="link", prefsrc="10.0.4.1",
        flags=["dead", "linkdown"]),
     False, "10.0.4.0/24 dev small0 proto kernel scope link src 10.0.4.1 dead linkdown"),
    (rt(dst="10.5.0.0/16", dev="small0", scope="link", metric=7, flags=["dead", "linkdown"]),
     False, "10.5.0.0/16 dev small0 proto static scope link metric 7 dead linkdown"),
    (rt(family=6, dst="::/0", dev="wan0", gateway="fe80::1"),
     False, "default via fe80::1 dev wan0 proto static"),
    (rt(family=6, dst="2001:db8::1/128", dev="wan0"),
     False, "2001:db8::1 dev wan0 proto static"),
    (rt(family=6, dst="2001:db8::/64", dev="wan0", protocol="kernel", metric=256),
     False, "2001:db8::/64 dev wan0 proto kernel metric 256"),
])
def test_route_line(route: dict[str, Any], show_table: bool, line: str) -> None:
    assert fmt.route_line(route, show_table) == line


def test_route_line_flags_come_before_mtu() -> None:
    route = rt(dst="10.8.0.0/16", dev="small0", gateway="10.0.4.254", mtu=1280,
               flags=["dead", "linkdown"])
    assert fmt.route_line(route) == \
        "10.8.0.0/16 via 10.0.4.254 dev small0 proto static dead linkdown mtu 1280"


CONFIG = TOPOLOGY + """\
  - {to: 10.8.0.0/16, via: 10.0.2.254, mtu: 1280}
  - {to: 10.7.0.0/16, via: 10.0.2.254, table: 253}
  - {to: 10.5.0.0/16, dev: small0, metric: 7}
  - {to: default, via: 10.0.2.254, metric: 100}
"""


def test_routes_of_a_real_router_as_ip_route_show() -> None:
    n = Net(CONFIG)
    lines = fmt.routes(introspect.routes(n.router)).splitlines()
    assert sorted(lines) == sorted([
        "default via 10.0.2.254 dev wan0 proto static metric 100",
        "10.0.1.0/24 dev lan0 proto kernel scope link src 10.0.1.1",
        "10.0.2.0/24 dev wan0 proto kernel scope link src 10.0.2.1",
        "10.0.20.0/24 dev wan0 proto kernel scope link src 10.0.20.1",
        "10.0.4.0/24 dev small0 proto kernel scope link src 10.0.4.1",
        "10.0.5.0/24 dev jumbo0 proto kernel scope link src 10.0.5.1",
        "10.5.0.0/16 dev small0 proto static scope link metric 7",
        "10.8.0.0/16 via 10.0.2.254 dev wan0 proto static mtu 1280",
        "10.9.0.0/16 via 10.0.2.254 dev wan0 proto static",
        "blackhole 192.0.2.0/24 proto static",
        "unreachable 198.51.100.0/24 proto static",
        "prohibit 203.0.113.0/24 proto static",
    ])
    every = fmt.routes(introspect.routes(n.router, "all"), show_table=True).splitlines()
    assert "local 10.0.1.1 dev lan0 table local proto kernel scope host src 10.0.1.1" in every
    assert ("broadcast 10.0.20.255 dev wan0 table local proto kernel scope link src 10.0.20.1"
            in every)
    assert "10.7.0.0/16 via 10.0.2.254 dev wan0 table default proto static" in every
    assert "10.9.0.0/16 via 10.0.2.254 dev wan0 proto static" in every
    n.router.set_link(SMALL, False, n.now)
    lines = fmt.routes(introspect.routes(n.router)).splitlines()
    assert "10.0.4.0/24 dev small0 proto kernel scope link src 10.0.4.1 dead linkdown" in lines


# --------------------------------------------------------------------------
# route get
# --------------------------------------------------------------------------

def rget(n: Net, dst: str, src: str | None = None, iif: str | None = None,
         mark: int = 0) -> str:
    return fmt.route_get(introspect.route_get(n.router, ip2int(dst),
                                              ip2int(src) if src else None, iif, mark))


def test_route_get_success() -> None:
    n = Net(CONFIG)
    assert rget(n, "10.9.1.1") == (
        "10.9.1.1 via 10.0.2.254 dev wan0 src 10.0.2.1\n"
        "    mtu 1500 route 10.9.0.0/16 neigh 10.0.2.254 NONE")
    n.reachable(GW)
    assert rget(n, "10.8.1.1") == (
        "10.8.1.1 via 10.0.2.254 dev wan0 src 10.0.2.1\n"
        "    mtu 1280 route 10.8.0.0/16 neigh 10.0.2.254 lladdr 02:20:00:00:00:fe REACHABLE")
    assert rget(n, "10.0.20.30") == (
        "10.0.20.30 dev wan0 src 10.0.20.1\n"
        "    mtu 1500 route 10.0.20.0/24 neigh 10.0.20.30 NONE")
    assert rget(n, "10.0.1.1") == ("local 10.0.1.1 dev lan0 table local src 10.0.1.1\n"
                                   "    route 10.0.1.1/32")
    assert rget(n, "10.0.1.255").splitlines()[0] == "broadcast 10.0.1.255 dev lan0 table local"
    assert rget(n, H2.ip, H1.ip, "lan0").splitlines()[0] == \
        "10.0.2.20 from 10.0.1.10 dev wan0 iif lan0"
    assert rget(n, H2.ip, "10.0.1.1").splitlines()[0] == \
        "10.0.2.20 from 10.0.1.1 dev wan0 src 10.0.1.1"
    assert "mark 0x20" in rget(n, H2.ip, H1.ip, "lan0", mark=0x20).splitlines()[0]


@pytest.mark.parametrize("dst,line", [
    ("8.8.8.8", "RTNETLINK answers: Network is unreachable"),
    ("198.51.100.1", ("RTNETLINK answers: No route to host  "
                     "(unreachable 198.51.100.0/24 table main)")),
    ("203.0.113.1", "RTNETLINK answers: Permission denied  (prohibit 203.0.113.0/24 table main)"),
    ("192.0.2.1", "RTNETLINK answers: Invalid argument  (blackhole 192.0.2.0/24 table main)"),
])
def test_route_get_errors(dst: str, line: str) -> None:
    n = Net(CONFIG.replace("  - {to: default, via: 10.0.2.254, metric: 100}\n", ""))
    assert rget(n, dst) == line


def test_route_get_default_table() -> None:
    n = Net(CONFIG.replace("  - {to: default, via: 10.0.2.254, metric: 100}\n", ""))
    assert rget(n, "10.7.0.1").startswith("10.7.0.1 via 10.0.2.254 dev wan0 table default ")


def test_route_get_unknown_device() -> None:
    out = rget(Net(), H2.ip, H1.ip, "eth9")
    assert 'Cannot find device "eth9"' in out and "\n" not in out


# --------------------------------------------------------------------------
# frame_summary (tcpdump -n style)
# --------------------------------------------------------------------------

TS = 1_700_000_000 * 10**9 + 123_456_789          # 2023-11-14 22:13:20.123456 UTC
HEAD = "22:13:20.123456 lan0 in "


def summary(frame: bytes, direction: str = "in") -> str:
    return fmt.frame_summary(TS, direction, "lan0", frame)


def test_frame_summary_arp() -> None:
    assert summary(arp(1, H1.mac, H1.ip, ZERO_MAC, R_IP[LAN])) == \
        f"{HEAD} ARP, Request who-has 10.0.1.1 tell 10.0.1.10, length 46"
    reply = arp(2, R_MAC[LAN], R_IP[LAN], H1.mac, H1.ip, eth_dst=H1.mac, pad=False)
    assert fmt.frame_summary(TS, "out", "lan0", reply) == \
        "22:13:20.123456 lan0 out ARP, Reply 10.0.1.1 is-at 02:00:00:00:01:01, length 28"


def test_frame_summary_icmp() -> None:
    assert summary(ping(H1, H2.ip, ttl=9)) == \
        f"{HEAD} IP 10.0.1.10 > 10.0.2.20: ICMP echo request, ttl 9, length 60"
    reply = frame_from(H1, ipv4(H1.ip, R_IP[LAN], echo(reply=True), proto=1))
    assert summary(reply).endswith("ICMP echo reply, ttl 64, length 60")
    te = frame_from(H1, ipv4(H1.ip, H2.ip, icmp(11, 0, 0, bytes(28)), proto=1))
    assert summary(te).endswith("ICMP time exceeded in-transit, ttl 64, length 56")
    un = frame_from(H1, ipv4(H1.ip, H2.ip, icmp(3, 3, 0, bytes(28)), proto=1))
    assert summary(un).endswith("ICMP unreachable code 3, ttl 64, length 56")
    ts = frame_from(H1, ipv4(H1.ip, H2.ip, icmp(13, 0, 0, bytes(12)), proto=1))
    assert summary(ts).endswith("ICMP type 13 code 0, ttl 64, length 40")


def test_frame_summary_udp_tcp_and_other_protocols() -> None:
    u = frame_from(H1, ipv4(H1.ip, H2.ip, udp(H1.ip, H2.ip, sport=5353, dport=53), proto=17))
    assert summary(u) == f"{HEAD} IP 10.0.1.10.5353 > 10.0.2.20.53: UDP, ttl 64, length 44"
    t = frame_from(H1, ipv4(H1.ip, H2.ip, tcp(H1.ip, H2.ip, sport=40000, dport=80), proto=6,
                            ttl=3))
    assert summary(t) == f"{HEAD} IP 10.0.1.10.40000 > 10.0.2.20.80: TCP, ttl 3, length 40"
    g = frame_from(H1, ipv4(H1.ip, H2.ip, bytes(8), proto=47))
    assert summary(g) == f"{HEAD} IP 10.0.1.10 > 10.0.2.20: proto 47, ttl 64, length 28"
    opts = frame_from(H1, ipv4(H1.ip, H2.ip, udp(H1.ip, H2.ip, sport=1, dport=2), proto=17,
                               options=b"\x01\x01\x01\x00"))
    assert ".1 > 10.0.2.20.2: UDP" in summary(opts)      # ports read after the options
    v6 = R_MAC[LAN] + H1.mac + b"\x86\xdd" + bytes(40)
    assert summary(v6) == f"{HEAD} IP6, length 40"
    other = R_MAC[LAN] + H1.mac + b"\x88\xcc" + bytes(20)
    assert summary(other) == f"{HEAD} ethertype 0x88cc, length 34"


def test_frame_summary_truncated() -> None:
    assert summary(b"\x01" * 13) == f"{HEAD} [truncated frame, 13 bytes]"
    assert summary(b"") == f"{HEAD} [truncated frame, 0 bytes]"
    short_arp = arp(1, H1.mac, H1.ip, ZERO_MAC, R_IP[LAN], pad=False)[:30]
    assert summary(short_arp) == f"{HEAD} ethertype 0x0806, length 30"
    short_ip = ping(H1, H2.ip)[:30]
    assert summary(short_ip) == f"{HEAD} ethertype 0x0800, length 30"
    # IPv4 header complete, ICMP header cut: reported as the bare protocol.
    cut = ping(H1, H2.ip)[:35]
    assert summary(cut) == f"{HEAD} IP 10.0.1.10 > 10.0.2.20: proto 1, ttl 64, length 60"
    cut_udp = frame_from(H1, ipv4(H1.ip, H2.ip, udp(H1.ip, H2.ip), proto=17))[:36]
    assert summary(cut_udp).endswith("proto 17, ttl 64, length 44")


def test_frame_summary_never_raises_on_junk() -> None:
    import random
    rnd = random.Random(5)
    for n in range(80):
        for et in (b"\x08\x00", b"\x08\x06", b"\x86\xdd"):
            f = bytes(rnd.getrandbits(8) for _ in range(12)) + et + bytes(
                rnd.getrandbits(8) for _ in range(n))
            assert fmt.frame_summary(TS, "in", "x", f).startswith("22:13:20.123456 x in ")


# --------------------------------------------------------------------------
# ping / traceroute lines
# --------------------------------------------------------------------------

@pytest.mark.parametrize("item,line", [
    ({"seq": 1, "from": "10.0.2.20", "ttl": 63, "bytes": 64, "rtt_ms": 0.1234},
     "64 bytes from 10.0.2.20: icmp_seq=1 ttl=63 time=0.123 ms"),
    ({"seq": 2, "timeout": True}, "no answer yet for icmp_seq=2"),
    ({"seq": 3, "error": "local error: message too long, mtu=1500"},
     "ping: local error: message too long, mtu=1500"),
    ({"seq": 4, "from": "10.0.2.254", "icmp_type": 11, "icmp_code": 0, "mtu": None},
     "From 10.0.2.254 icmp_seq=4 Time to live exceeded"),
    ({"seq": 5, "from": "10.0.2.254", "icmp_type": 3, "icmp_code": 0, "mtu": None},
     "From 10.0.2.254 icmp_seq=5 Destination Net Unreachable"),
    ({"seq": 6, "from": "10.0.2.254", "icmp_type": 3, "icmp_code": 1, "mtu": None},
     "From 10.0.2.254 icmp_seq=6 Destination Host Unreachable"),
    ({"seq": 7, "from": "10.0.2.20", "icmp_type": 3, "icmp_code": 3, "mtu": None},
     "From 10.0.2.20 icmp_seq=7 Destination Port Unreachable"),
    ({"seq": 8, "from": "10.0.2.254", "icmp_type": 3, "icmp_code": 13, "mtu": None},
     "From 10.0.2.254 icmp_seq=8 Packet filtered"),
    ({"seq": 9, "from": "10.0.2.254", "icmp_type": 3, "icmp_code": 4, "mtu": 1400},
     "From 10.0.2.254 icmp_seq=9 Frag needed and DF set (mtu = 1400)"),
    ({"seq": 10, "from": "10.0.2.254", "icmp_type": 12, "icmp_code": 0, "mtu": None},
     "From 10.0.2.254 icmp_seq=10 ICMP type 12 code 0"),
])
def test_ping_line(item: dict[str, Any], line: str) -> None:
    assert fmt.ping_line(item) == line


def test_ping_summary() -> None:
    assert fmt.ping_summary({"dst": "10.0.2.20", "transmitted": 4, "received": 3,
                             "loss_pct": 25.0, "rtt_ms": {"min": 0.1, "avg": 0.25,
                                                          "max": 0.5}}).splitlines() == [
        "--- 10.0.2.20 ping statistics ---",
        "4 packets transmitted, 3 received, 25% packet loss",
        "rtt min/avg/max = 0.100/0.250/0.500 ms"]
    assert fmt.ping_summary({"dst": "10.0.2.9", "transmitted": 3, "received": 0,
                             "loss_pct": 100.0}).splitlines() == [
        "--- 10.0.2.9 ping statistics ---", "3 packets transmitted, 0 received, 100% packet loss"]
    assert "33.3% packet loss" in fmt.ping_summary({"dst": "x", "transmitted": 3,
                                                    "received": 2, "loss_pct": 33.3})


def probe(frm: str, rtt: float, t: int = 11, c: int = 0) -> dict[str, Any]:
    return {"from": frm, "rtt_ms": rtt, "icmp_type": t, "icmp_code": c}


@pytest.mark.parametrize("item,line", [
    ({"hop": 1, "probes": [probe("10.0.2.254", 0.5), probe("10.0.2.254", 0.25),
                           probe("10.0.2.254", 1.0)]},
     " 1  10.0.2.254  0.500 ms  0.250 ms  1.000 ms"),
    ({"hop": 12, "probes": [probe("10.1.0.1", 1.0), probe("10.1.0.2", 2.0),
                            probe("10.1.0.2", 3.0)]},
     "12  10.1.0.1  1.000 ms  10.1.0.2  2.000 ms  3.000 ms"),
    ({"hop": 3, "probes": [probe("10.9.0.1", 1.0, 3, 3)]}, " 3  10.9.0.1  1.000 ms"),
    ({"hop": 3, "probes": [probe("10.9.0.1", 1.0, 0, 0)]}, " 3  10.9.0.1  1.000 ms"),
    ({"hop": 4, "probes": [probe("10.0.2.254", 1.0, 3, 1)]}, " 4  10.0.2.254  1.000 ms !H"),
    ({"hop": 4, "probes": [probe("10.0.2.254", 1.0, 3, 0)]}, " 4  10.0.2.254  1.000 ms !N"),
    ({"hop": 4, "probes": [probe("10.0.2.254", 1.0, 3, 13)]}, " 4  10.0.2.254  1.000 ms !X"),
    ({"hop": 4, "probes": [probe("10.0.2.254", 1.0, 3, 2)]}, " 4  10.0.2.254  1.000 ms !P"),
    ({"hop": 4, "probes": [probe("10.0.2.254", 1.0, 3, 4)]}, " 4  10.0.2.254  1.000 ms !F"),
])
def test_traceroute_line_markers(item: dict[str, Any], line: str) -> None:
    assert fmt.traceroute_line(item) == line


def test_traceroute_line_stars() -> None:
    stars = fmt.traceroute_line({"hop": 5, "probes": [None, None, None]})
    assert stars.split() == ["5", "*", "*", "*"] and stars.startswith(" 5  *")
    mixed = fmt.traceroute_line({"hop": 6, "probes": [None, probe("10.0.2.254", 2.0), None]})
    assert mixed.split() == ["6", "*", "10.0.2.254", "2.000", "ms", "*"]
    # A star does not hide the address of the next answer.
    again = fmt.traceroute_line({"hop": 7, "probes": [probe("10.0.2.254", 1.0), None,
                                                      probe("10.0.2.254", 3.0)]})
    assert again.split() == ["7", "10.0.2.254", "1.000", "ms", "*", "3.000", "ms"]


def test_traceroute_line_admin_prohibited_codes() -> None:
    for code in (9, 10):
        assert fmt.traceroute_line({"hop": 2, "probes": [probe("10.0.2.254", 1.0, 3, code)]}) \
            == " 2  10.0.2.254  1.000 ms !X"
    assert fmt.traceroute_line({"hop": 2, "probes": [probe("10.0.2.254", 1.0, 3, 11)]}) \
        == " 2  10.0.2.254  1.000 ms !<11>"


# --------------------------------------------------------------------------
# The other operator views, from a real router
# --------------------------------------------------------------------------

def test_neighbours_trace_and_explain_lines() -> None:
    from pyrouter.control.explain import build_frame
    from pyrouter.core.trace import Tracer, explain

    n = Net()
    n.learn(H1)
    n.now += 3 * 10**9
    lines = fmt.neighbours(introspect.neighbours(n.router, n.now)).splitlines()
    assert lines == ["10.0.1.10 dev lan0 lladdr 02:10:00:00:00:10 used 3/63/3 probes 0 STALE"]
    n.send(LAN, ping(H1, "10.0.4.40"))
    lines = fmt.neighbours(introspect.neighbours(n.router, n.now)).splitlines()
    assert "10.0.4.40 dev small0 used 0/60/0 probes 4 INCOMPLETE queued 1" in lines
    n.router.tracer = Tracer(lambda f: True)
    n.send(LAN, ping(H1, "8.8.8.8"))
    rec = next(e.fields for e in n.events if e.name == "sock.trace")
    text = fmt.trace_record(rec).splitlines()
    assert text[0] == "packet on lan0 (74 bytes)"
    assert text[1].split()[0] == "eth_rcv" and text[-1].split() == ["drop", "reason=no_route"]
    n.router.tracer = None
    idx, frame, desc = build_frame(n.router, {"iif": "lan0", "src": H1.ip, "dst": "10.0.2.20",
                                              "proto": "udp", "df": True})
    res = explain(n.router, idx, frame, n.now)
    res["packet"] = desc
    out = fmt.explain(res).splitlines()
    assert out[0] == ("explain: 10.0.1.10 > 10.0.2.20 proto 17 40000 > 33434 ttl 64 len 84 DF "
                      "arriving on lan0")
    assert out[-1] == "  => would transmit 42 bytes on wan0"
    idx, frame, desc = build_frame(n.router, {"iif": "lan0", "src": H1.ip, "dst": "192.0.2.1"})
    res = explain(n.router, idx, frame, n.now)
    res["packet"] = desc
    assert fmt.explain(res).splitlines()[-1] == "  => nothing would be transmitted"
