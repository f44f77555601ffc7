"""Packet tracing (core/trace.py Tracer, Router._receive_traced / note) and explain
(core/trace.explain + control/explain.build_frame)."""

from __future__ import annotations

import copy
import json
import struct
from typing import Any

import pytest

from pyrouter.control.explain import PLACEHOLDER_MAC, build_frame
from pyrouter.core.trace import Tracer, explain

from .helpers import (
    GW, H1, H2, H4, LAN, MS, R_IP, R_MAC, SECOND, SMALL, WAN, ZERO_MAC, Net, arp,
    echo, expect_arp, expect_error, expect_icmp, expect_ipv4, fragment, frame_from,
    icmp, ipv4, ones_sum, parse_eth, parse_ipv4, ping, pseudo, tcp, udp_frame,
)


OTHER_MAC = bytes.fromhex("02aaaaaaaaaa")


def records(n: Net) -> list[dict[str, Any]]:
    return [ev.fields for ev in n.events if ev.name == "sock.trace"]


def stages(rec: dict[str, Any]) -> list[str]:
    return [s["stage"] for s in rec["steps"]]


def step(rec: dict[str, Any], stage: str) -> dict[str, Any]:
    found = [s for s in rec["steps"] if s["stage"] == stage]
    assert len(found) == 1, (stage, rec["steps"])
    return {k: v for k, v in found[0].items() if k != "stage"}


def traced_net(ident: int = 7, **kw: Any) -> Net:
    n = Net()
    n.reachable(H1)
    n.reachable(H2)
    n.router.tracer = Tracer(lambda f: True, ident=ident, **kw)
    return n


# --------------------------------------------------------------------------
# Records of single packets
# --------------------------------------------------------------------------

def test_forwarded_packet() -> None:
    n = traced_net()
    frame = ping(H1, H2.ip, ttl=9)
    tx = n.send(LAN, frame)
    expect_ipv4(tx[0], src=H1.ip, dst=H2.ip, ttl=8, ifindex=WAN, eth_dst=H2.mac)
    [rec] = records(n)
    json.dumps(rec)
    assert (rec["tracer"], rec["iif"], rec["len"]) == (7, "lan0", len(frame))
    assert stages(rec) == ["eth_rcv", "ip_rcv", "fib_lookup", "ip_forward", "neigh_output",
                           "xmit"]
    assert step(rec, "eth_rcv") == {"dev": "lan0", "src_mac": "02:10:00:00:00:10",
                                    "dst_mac": "02:00:00:00:01:01", "pkt_type": "HOST",
                                    "ethertype": "0x0800"}
    assert step(rec, "ip_rcv") == {"src": H1.ip, "dst": H2.ip, "proto": 1, "ttl": 9, "len": 60,
                                   "ihl": 20, "id": 0x1234, "flags_frag": "0x0000",
                                   "checks": "ok"}
    assert step(rec, "fib_lookup") == {"table": 254, "route": "10.0.2.0/24", "type": "unicast",
                                       "metric": 0, "dev": "wan0"}
    assert step(rec, "ip_forward") == {"ttl_out": 8, "mtu": 1500, "out": "wan0",
                                       "fragment": False}
    assert step(rec, "neigh_output") == {"dev": "wan0", "nexthop": H2.ip, "state": "REACHABLE",
                                         "lladdr": "02:20:00:00:00:20"}
    assert step(rec, "xmit") == {"dev": "wan0", "len": 74, "dst_mac": "02:20:00:00:00:20",
                                 "ethertype": "0x0800"}
    assert n.router.fast_forwarded == 0              # a traced frame takes the slow path
    assert n.router.trace is None


def test_forwarded_via_gateway_to_an_unresolved_neighbour() -> None:
    n = traced_net()
    tx = n.send(LAN, ping(H1, "10.9.3.3"))
    expect_arp(tx[0], op=1, tpa=GW.ip, ifindex=WAN)
    [rec] = records(n)
    assert stages(rec) == ["eth_rcv", "ip_rcv", "fib_lookup", "ip_forward", "neigh_output",
                           "xmit", "neigh_queued"]
    assert step(rec, "fib_lookup")["gateway"] == GW.ip
    assert step(rec, "neigh_output") == {"dev": "wan0", "nexthop": GW.ip, "state": "NONE",
                                         "lladdr": None}
    assert step(rec, "xmit")["ethertype"] == "0x0806"
    assert step(rec, "xmit")["dst_mac"] == "ff:ff:ff:ff:ff:ff"
    assert step(rec, "neigh_queued") == {"state": "INCOMPLETE"}


def test_packet_to_the_router() -> None:
    n = traced_net()
    tx = n.send(LAN, ping(H1, R_IP[WAN]))
    expect_icmp(tx[0], type=0, code=0, src=R_IP[WAN], dst=H1.ip, ifindex=LAN)
    [rec] = records(n)
    assert stages(rec) == ["eth_rcv", "ip_rcv", "fib_lookup", "ip_local_deliver",
                           "icmp_echo_reply", "ip_local_out", "neigh_output", "xmit"]
    assert step(rec, "fib_lookup") == {"table": 255, "route": "10.0.2.1/32", "type": "local",
                                       "metric": 0, "dev": "wan0"}
    assert step(rec, "ip_local_deliver") == {"proto": 1, "broadcast": False, "len": 60}
    assert step(rec, "ip_local_out") == {"src": R_IP[WAN], "dst": H1.ip, "proto": 1, "len": 60,
                                         "table": 254, "route": "10.0.1.0/24", "dev": "lan0"}
    assert step(rec, "xmit")["dev"] == "lan0"


def test_ttl_1_packet() -> None:
    n = traced_net()
    l3 = ipv4(H1.ip, H2.ip, echo(), proto=1, ttl=1)
    tx = n.send(LAN, frame_from(H1, l3))
    expect_error(tx[0], type=11, code=0, about=l3, src=R_IP[LAN], ifindex=LAN)
    [rec] = records(n)
    assert stages(rec) == ["eth_rcv", "ip_rcv", "fib_lookup", "icmp_send", "ip_local_out",
                           "neigh_output", "xmit", "drop"]
    assert step(rec, "ip_rcv")["ttl"] == 1
    assert step(rec, "icmp_send") == {"type": 11, "code": 0, "info": 0}
    assert step(rec, "ip_local_out")["len"] == 20 + 8 + 60
    assert step(rec, "drop") == {"reason": "ttl_exceeded"}


def test_no_route_packet() -> None:
    n = traced_net()
    l3 = ipv4(H1.ip, "8.8.8.8", echo(), proto=1)
    tx = n.send(LAN, frame_from(H1, l3))
    expect_error(tx[0], type=3, code=0, about=l3, src=R_IP[LAN], ifindex=LAN)
    [rec] = records(n)
    assert stages(rec) == ["eth_rcv", "ip_rcv", "fib_lookup", "icmp_send", "ip_local_out",
                           "neigh_output", "xmit", "drop"]
    assert step(rec, "fib_lookup") == {"result": "no route", "tables": [255, 254, 253]}
    assert step(rec, "icmp_send") == {"type": 3, "code": 0, "info": 0}
    assert step(rec, "drop") == {"reason": "no_route"}


def test_blackhole_packet_is_a_drop_only() -> None:
    n = traced_net()
    assert n.send(LAN, ping(H1, "192.0.2.1")) == []
    [rec] = records(n)
    assert stages(rec) == ["eth_rcv", "ip_rcv", "fib_lookup", "drop"]
    assert step(rec, "fib_lookup")["type"] == "blackhole"
    assert step(rec, "drop") == {"reason": "route_blackhole"}


def test_arp_request() -> None:
    n = traced_net()
    tx = n.send(LAN, arp(1, H1.mac, H1.ip, ZERO_MAC, R_IP[LAN]))
    expect_arp(tx[0], op=2, spa=R_IP[LAN], tpa=H1.ip, eth_dst=H1.mac)
    [rec] = records(n)
    assert rec["len"] == 60
    assert stages(rec) == ["eth_rcv", "arp_rcv", "xmit"]
    assert step(rec, "eth_rcv")["pkt_type"] == "BROADCAST"
    assert step(rec, "eth_rcv")["ethertype"] == "0x0806"
    assert step(rec, "arp_rcv") == {"op": "request", "sender": H1.ip, "target": R_IP[LAN],
                                    "sha": "02:10:00:00:00:10"}
    assert step(rec, "xmit") == {"dev": "lan0", "len": 42, "dst_mac": "02:10:00:00:00:10",
                                 "ethertype": "0x0806"}


def test_fragmented_forward_and_suppressed_icmp() -> None:
    n = traced_net()
    n.reachable(H4)
    tx = n.send(LAN, frame_from(H1, ipv4(H1.ip, H4.ip, bytes(1480), proto=17)))
    assert len(tx) == 2
    [rec] = records(n)[-1:]
    assert stages(rec) == ["eth_rcv", "ip_rcv", "fib_lookup", "ip_forward", "ip_fragment",
                           "neigh_output", "xmit", "neigh_output", "xmit"]
    assert step(rec, "ip_forward") == {"ttl_out": 63, "mtu": 1400, "out": "small0",
                                       "fragment": True}
    assert step(rec, "ip_fragment") == {"mtu": 1400, "pieces": 2}
    # An ICMP error about an ICMP error is suppressed, and the trace says why.
    err = ipv4(H1.ip, H2.ip, icmp(11, 0, 0, bytes(28)), proto=1, ttl=1)
    assert n.send(LAN, frame_from(H1, err)) == []
    rec = records(n)[-1]
    assert stages(rec)[-3:] == ["icmp_send", "icmp_suppressed", "drop"]
    assert step(rec, "icmp_suppressed") == {"why": "about an ICMP error"}


def test_bad_checksum_and_other_host_frames() -> None:
    n = traced_net()
    assert n.send(LAN, frame_from(H1, ipv4(H1.ip, H2.ip, echo(), proto=1, csum=0x1111))) == []
    assert stages(records(n)[-1]) == ["eth_rcv", "drop"]
    assert step(records(n)[-1], "drop") == {"reason": "ip_csum_error"}
    assert n.send(LAN, frame_from(H1, ipv4(H1.ip, H2.ip, echo(), proto=1), eth_dst=OTHER_MAC)) == []
    rec = records(n)[-1]
    assert step(rec, "eth_rcv")["pkt_type"] == "OTHERHOST"
    assert step(rec, "drop") == {"reason": "otherhost"}


# --------------------------------------------------------------------------
# Tracing never changes a decision
# --------------------------------------------------------------------------

def _traffic() -> list[tuple[int, int, bytes]]:
    """(time, ifindex, frame): a mix that exercises every path."""
    seq: list[tuple[int, int, bytes]] = []
    t = 0
    frames = [
        (LAN, arp(1, H1.mac, H1.ip, ZERO_MAC, R_IP[LAN])),
        (WAN, arp(1, H2.mac, H2.ip, ZERO_MAC, R_IP[WAN])),
        (WAN, arp(2, H2.mac, H2.ip, R_MAC[WAN], R_IP[WAN], eth_dst=R_MAC[WAN])),
        (LAN, arp(2, H1.mac, H1.ip, R_MAC[LAN], R_IP[LAN], eth_dst=R_MAC[LAN])),
    ]
    for i in range(6):                                   # slow path, then the fast path
        frames.append((LAN, ping(H1, H2.ip, seq=i)))
        frames.append((WAN, frame_from(H2, ipv4(H2.ip, H1.ip, echo(seq=i, reply=True),
                                                 proto=1))))
    frames += [
        (LAN, ping(H1, R_IP[SMALL])),
        (LAN, ping(H1, H2.ip, ttl=1)),
        (LAN, ping(H1, "8.8.8.8")),
        (LAN, ping(H1, "198.51.100.1")),
        (LAN, ping(H1, "203.0.113.1")),
        (LAN, ping(H1, "192.0.2.1")),
        (LAN, ping(H1, H4.ip)),                          # unresolved: ARP, queued
        (LAN, udp_frame(H1, R_IP[LAN])),
        (LAN, frame_from(H1, ipv4(H1.ip, R_IP[LAN], tcp(H1.ip, R_IP[LAN]), proto=6))),
        (LAN, frame_from(H1, ipv4(H1.ip, H2.ip, bytes(1600), proto=17, df=True))),
        (LAN, frame_from(H1, ipv4(H1.ip, H2.ip, bytes(1600), proto=17))),
        (LAN, frame_from(H1, ipv4(H1.ip, H2.ip, echo(), proto=1, csum=1))),
        (LAN, frame_from(H1, ipv4(H1.ip, H2.ip, echo(), proto=1), eth_dst=OTHER_MAC)),
        (LAN, ping(H1, H2.ip, options=b"\x01\x01\x01\x00")),
        (LAN, b"\x00" * 10),
    ]
    frames += [(LAN, f) for f in (frame_from(H1, p) for p in fragment(
        ipv4(H1.ip, R_IP[LAN], echo(data=bytes(100)), proto=1, ident=77), 48))]
    for idx, f in frames:
        t += 10 * MS
        seq.append((t, idx, f))
    return seq


def _run(trace: bool, until: int) -> tuple[list[Any], dict[str, Any], Net]:
    n = Net()
    if trace:
        n.router.tracer = Tracer(lambda f: True)
    out: list[Any] = []
    for t, idx, f in _traffic():
        out += n.run_until(t)
        out += [(t, i, fr) for i, fr in n.send(idx, f)]
    out += n.run_until(until)
    snap = n.router.snapshot()
    snap.pop("fast_forwarded")
    return out, snap, n


def test_tracing_never_changes_the_output() -> None:
    plain, snap_plain, n_plain = _run(False, 2 * SECOND)
    traced, snap_traced, n_traced = _run(True, 2 * SECOND)
    assert n_plain.router.fast_forwarded > 0 and n_traced.router.fast_forwarded == 0
    assert len(records(n_traced)) == len(_traffic())
    assert records(n_plain) == []
    assert traced == plain                               # byte-identical, same times and ports
    assert snap_traced == snap_plain                     # same counters, drops, neighbours


def test_tracing_never_changes_neighbour_timing_under_steady_traffic() -> None:
    def run(trace: bool) -> list[Any]:
        n = Net()
        n.reachable(H1)
        n.reachable(H2)
        if trace:
            n.router.tracer = Tracer(lambda f: True)
        out: list[Any] = []
        for i in range(1, 80):
            t = i * SECOND // 2
            out += n.run_until(t)
            out += [(t, *x) for x in n.send(LAN, ping(H1, H2.ip, seq=i))]
        return out

    assert run(True) == run(False)


def test_tracer_limit() -> None:
    n = traced_net(limit=2)
    for i in range(5):
        assert len(n.send(LAN, ping(H1, H2.ip, seq=i))) == 1
    assert len(records(n)) == 2
    assert n.router.tracer is not None and n.router.tracer.seen == 2
    # Past the limit frames are no longer traced, so the fast path (whose cache the
    # traced slow path filled) takes the other three.
    assert n.router.fast_forwarded == 3


def test_tracer_filter_selects_frames() -> None:
    n = traced_net()
    n.router.tracer = Tracer(lambda f: f[12:14] == b"\x08\x06", ident=3)
    n.send(LAN, ping(H1, H2.ip))
    n.send(LAN, arp(1, H1.mac, H1.ip, ZERO_MAC, R_IP[LAN]))
    n.send(LAN, ping(H1, H2.ip))
    recs = records(n)
    assert len(recs) == 1 and stages(recs[0])[1] == "arp_rcv" and recs[0]["tracer"] == 3
    assert n.router.tracer.seen == 1


def test_a_filter_that_raises_does_not_break_forwarding() -> None:
    def bad(frame: bytes) -> bool:
        raise IndexError("filter bug")

    n = traced_net()
    n.router.tracer = Tracer(bad)
    for i in range(3):
        tx = n.send(LAN, ping(H1, H2.ip, seq=i))
        expect_ipv4(tx[0], src=H1.ip, dst=H2.ip, ttl=63, ifindex=WAN)
    assert records(n) == []
    assert n.router.tracer.seen == 0
    assert n.router.fast_forwarded == 2
    assert n.drops() == {}


def test_no_tracer_no_records_and_no_trace_list() -> None:
    n = Net()
    n.reachable(H1)
    n.send(LAN, ping(H1, R_IP[LAN]))
    assert records(n) == [] and n.router.trace is None


# --------------------------------------------------------------------------
# explain: build_frame
# --------------------------------------------------------------------------

def test_build_frame_defaults() -> None:
    n = Net()
    idx, frame, desc = build_frame(n.router, {"iif": "lan0", "dst": H2.ip})
    assert idx == LAN
    e = parse_eth(frame)
    assert (e.dst, e.src, e.type) == (R_MAC[LAN], PLACEHOLDER_MAC, 0x0800)
    ip = parse_ipv4(e.payload)
    # The first address of the port's subnet that is not the router's.
    assert (ip.src, ip.dst, ip.ttl, ip.proto, ip.tos, ip.df) == ("10.0.1.2", H2.ip, 64, 1, 0,
                                                                False)
    assert ip.total_len == 20 + 8 + 56
    assert ip.payload[0] == 8 and ones_sum(ip.payload) == 0xFFFF
    assert desc == {"iif": "lan0", "src": "10.0.1.2", "dst": H2.ip, "proto": 1, "ttl": 64,
                    "len": 84, "df": False, "tos": 0}


def test_build_frame_uses_the_senders_known_mac_and_options() -> None:
    n = Net()
    n.learn(H1)
    _, frame, desc = build_frame(n.router, {"iif": "lan0", "src": H1.ip, "dst": "10.9.1.1",
                                            "proto": "UDP", "sport": 5000, "dport": 53,
                                            "ttl": 3, "size": 10, "df": True, "tos": 0x10})
    assert parse_eth(frame).src == H1.mac
    ip = parse_ipv4(parse_eth(frame).payload)
    assert (ip.src, ip.ttl, ip.df, ip.tos, ip.proto, ip.total_len) == (H1.ip, 3, True, 0x10,
                                                                      17, 38)
    sport, dport, ulen, _ = struct.unpack_from("!HHHH", ip.payload)
    assert (sport, dport, ulen) == (5000, 53, 18)
    assert ones_sum(ip.payload, pseudo(H1.ip, "10.9.1.1", 17, 18)) == 0xFFFF
    assert desc["sport"] == 5000 and desc["dport"] == 53 and desc["df"] is True


def test_build_frame_tcp_flags_and_raw_protocol() -> None:
    n = Net()
    _, frame, desc = build_frame(n.router, {"iif": "wan0", "dst": R_IP[LAN], "proto": "tcp",
                                            "tcp_flags": "sa", "size": 0})
    ip = parse_ipv4(parse_eth(frame).payload)
    assert ip.src == "10.0.2.2" and ip.proto == 6
    assert ip.payload[13] == 0x12
    assert ones_sum(ip.payload, pseudo(ip.src, ip.dst, 6, len(ip.payload))) == 0xFFFF
    _, frame, desc = build_frame(n.router, {"iif": "wan0", "dst": H1.ip, "proto": "47",
                                            "size": 12})
    ip = parse_ipv4(parse_eth(frame).payload)
    assert (ip.proto, ip.payload) == (47, bytes(12))
    assert "sport" not in desc


@pytest.mark.parametrize("args,message", [
    ({"iif": "eth9", "dst": "10.0.2.20"}, "iif: no interface named 'eth9'"),
    ({"dst": "10.0.2.20"}, "iif: no interface named None"),
    ({"iif": "lan0"}, "src/dst: an IPv4 address is needed"),
    ({"iif": "lan0", "dst": "10.0.2"}, "src/dst: an IPv4 address is needed"),
    ({"iif": "lan0", "dst": "fe80::1"}, "src/dst: an IPv4 address is needed"),
    ({"iif": "lan0", "dst": "10.0.2.20", "src": "h1"}, "src/dst: an IPv4 address is needed"),
    ({"iif": "lan0", "dst": "10.0.2.20", "proto": "sctp"}, "proto: not a number: 'sctp'"),
    ({"iif": "lan0", "dst": "10.0.2.20", "proto": "256"}, "proto: must be from 0 to 255"),
    ({"iif": "lan0", "dst": "10.0.2.20", "size": 65001}, "size: must be from 0 to 65000"),
    ({"iif": "lan0", "dst": "10.0.2.20", "size": -1}, "size: must be from 0 to 65000"),
    ({"iif": "lan0", "dst": "10.0.2.20", "ttl": 256}, "ttl: must be from 0 to 255"),
    ({"iif": "lan0", "dst": "10.0.2.20", "ttl": "x"}, "ttl: not a number: 'x'"),
    ({"iif": "lan0", "dst": "10.0.2.20", "dport": 70000}, "dport: must be from 0 to 65535"),
    ({"iif": "lan0", "dst": "10.0.2.20", "proto": "tcp", "tcp_flags": "SZ"},
     "tcp_flags: unknown flag 'Z' (use F S R P A U)"),
])
def test_build_frame_rejects_bad_descriptions(args: dict[str, Any], message: str) -> None:
    n = Net()
    with pytest.raises(ValueError) as info:
        build_frame(n.router, args)
    assert str(info.value).startswith(message), str(info.value)


def test_build_frame_needs_src_on_a_port_without_ipv4() -> None:
    n = Net("""\
interfaces:
  a: {addresses: [10.0.1.1/24]}
  bare: {}
""")
    with pytest.raises(ValueError, match="src: needed"):
        build_frame(n.router, {"iif": "bare", "dst": "10.0.1.9"})
    _, frame, _ = build_frame(n.router, {"iif": "bare", "dst": "10.0.1.9", "src": "10.0.3.3"})
    assert parse_ipv4(parse_eth(frame).payload).src == "10.0.3.3"


# --------------------------------------------------------------------------
# explain: same decision as a real packet, and no effect
# --------------------------------------------------------------------------

def _world() -> Net:
    n = Net()
    n.reachable(H1)
    n.reachable(H2)
    n.learn(GW)
    n.send(LAN, ping(H1, H2.ip))                         # fills the forwarding cache
    n.send(LAN, ping(H1, H4.ip))                         # H4 INCOMPLETE, one queued packet
    n.send(LAN, frame_from(H1, fragment(ipv4(H1.ip, R_IP[LAN], echo(data=bytes(64)), proto=1,
                                             ident=5), 32)[0]))    # a reassembly queue
    n.now += 100 * MS
    return n


def _state(n: Net) -> str:
    r = n.router
    return repr((r.snapshot(), sorted(r.neigh4.entries.items()), r.neigh4.generation,
                 r.neigh4.stats, sorted(r.fwd_cache), r.tx, r.events, sorted(r.reasm.queues),
                 r.reasm.mem, sorted(r.timers._heap), r.ip_ident, r.rng.getstate(),
                 [p.counters() for p in r.ports.values()], r.tracer, r.trace, r.fast_forwarded,
                 r.sockets))


DESCRIPTIONS = [
    {"iif": "lan0", "src": H1.ip, "dst": H2.ip},                            # fast path hit
    {"iif": "lan0", "src": H1.ip, "dst": "10.9.7.7", "proto": "udp"},      # via GW (STALE)
    {"iif": "lan0", "src": H1.ip, "dst": H4.ip},                           # queued
    {"iif": "lan0", "src": H1.ip, "dst": "10.0.5.50"},                     # new neighbour
    {"iif": "lan0", "src": H1.ip, "dst": R_IP[WAN]},                       # echo reply
    {"iif": "lan0", "src": H1.ip, "dst": H2.ip, "ttl": 1},                 # time exceeded
    {"iif": "lan0", "src": H1.ip, "dst": "8.8.8.8"},                       # net unreachable
    {"iif": "lan0", "src": H1.ip, "dst": "198.51.100.1"},
    {"iif": "lan0", "src": H1.ip, "dst": "203.0.113.1", "proto": "tcp"},
    {"iif": "lan0", "src": H1.ip, "dst": "192.0.2.1"},                     # blackhole
    {"iif": "lan0", "src": H1.ip, "dst": R_IP[LAN], "proto": "udp"},       # port unreachable
    {"iif": "lan0", "src": H1.ip, "dst": R_IP[LAN], "proto": "tcp"},       # RST
    {"iif": "lan0", "src": H1.ip, "dst": R_IP[LAN], "proto": 89},          # proto unreachable
    {"iif": "lan0", "src": H1.ip, "dst": H2.ip, "size": 1600, "df": True},  # frag needed
    {"iif": "lan0", "src": H1.ip, "dst": H2.ip, "size": 3000},             # fragmented
    {"iif": "lan0", "src": H1.ip, "dst": "10.0.1.255", "proto": "udp"},    # broadcast
    {"iif": "lan0", "src": R_IP[WAN], "dst": H2.ip},                       # martian source
    {"iif": "wan0", "src": H2.ip, "dst": H1.ip, "tos": 0x10},
]


@pytest.mark.parametrize("args", DESCRIPTIONS, ids=lambda a: f"{a['dst']}-{a.get('proto', '')}"
                         f"-{a.get('ttl', '')}-{a.get('size', '')}")
def test_explain_matches_a_real_packet_and_changes_nothing(args: dict[str, Any]) -> None:
    n = _world()
    r = n.router
    before = _state(n)
    idx, frame, _ = build_frame(r, args)
    res = explain(r, idx, frame, n.now)
    json.dumps(res)
    assert _state(n) == before
    # The real packet, sent afterwards, gets exactly what explain said.
    real = n.send(idx, frame)
    assert [(w["dev"], bytes.fromhex(w["frame"])) for w in res["would_transmit"]] == [
        (r.ports[i].name, f) for i, f in real]
    assert all(w["len"] == len(bytes.fromhex(w["frame"])) for w in res["would_transmit"])
    assert res["steps"][0]["stage"] == "eth_rcv"


def test_explain_steps_equal_a_traced_real_packet() -> None:
    n = _world()
    idx, frame, _ = build_frame(n.router, {"iif": "lan0", "src": H1.ip, "dst": "8.8.8.8"})
    res = explain(n.router, idx, frame, n.now)
    n.router.tracer = Tracer(lambda f: True, ident=1)
    n.send(idx, frame)
    assert res["steps"] == records(n)[-1]["steps"]
    assert stages(records(n)[-1])[-1] == "drop"


def test_explain_leaves_a_running_trace_alone() -> None:
    n = _world()
    n.router.tracer = tracer = Tracer(lambda f: True, ident=9, limit=5)
    idx, frame, _ = build_frame(n.router, {"iif": "lan0", "src": H1.ip, "dst": H2.ip})
    res = explain(n.router, idx, frame, n.now)
    assert res["steps"] and res["would_transmit"]
    assert n.router.tracer is tracer and tracer.seen == 0
    assert n.router.events == [] and n.router.tx == []


def test_explain_a_frame_on_a_down_port() -> None:
    n = _world()
    n.router.set_link(LAN, False, n.now)
    n.drain()
    before = _state(n)
    idx, frame, _ = build_frame(n.router, {"iif": "lan0", "src": H1.ip, "dst": H2.ip})
    assert explain(n.router, idx, frame, n.now) == {"steps": [], "would_transmit": []}
    assert _state(n) == before


def test_explain_an_arp_request_and_a_fragment() -> None:
    n = _world()
    before = _state(n)
    res = explain(n.router, WAN, arp(1, H2.mac, H2.ip, ZERO_MAC, R_IP[WAN]), n.now)
    assert [s["stage"] for s in res["steps"]] == ["eth_rcv", "arp_rcv", "xmit"]
    assert len(res["would_transmit"]) == 1
    last = fragment(ipv4(H1.ip, R_IP[LAN], echo(data=bytes(64)), proto=1, ident=5), 32)[1:]
    assert len(last) == 2
    res = explain(n.router, LAN, frame_from(H1, last[0]), n.now)
    assert step({"steps": res["steps"]}, "ip_defrag") == {"complete": False, "queues": 1}
    assert _state(n) == before
    # Still one queue with one fragment in the real router.
    assert len(n.router.reasm) == 1


def test_explain_is_deterministic_and_copy_safe() -> None:
    n = _world()
    idx, frame, _ = build_frame(n.router, {"iif": "lan0", "src": H1.ip, "dst": "10.0.5.50"})
    a = explain(n.router, idx, frame, n.now)
    b = explain(n.router, idx, frame, n.now)
    assert a == b
    shadow = copy.deepcopy(n.router)
    assert shadow.neigh4.owner is shadow                 # the copy's table talks to the copy
