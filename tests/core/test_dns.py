"""DNS forwarder (core/services/dns.py): crafted queries and answers, virtual time."""

from __future__ import annotations

import random
import struct

import pytest

from pyrouter.control.build import build
from pyrouter.control.load import ConfigError, parse
from pyrouter.core import SECOND
from pyrouter.core.services.dns import dns_show

from .helpers import Net, arp, eth, expect_icmp, expect_ipv4, ipv4, udp

CONFIG = """\
interfaces:
  lan0:
    addresses: [10.0.1.1/24]
    macaddress: "02:00:00:00:01:01"
    dhcp: {pool: [10.0.1.100, 10.0.1.110]}
  wan0:
    addresses: [10.0.2.1/24]
    macaddress: "02:00:00:00:02:01"
dns:
  upstream: [10.0.2.53, "10.0.2.54:5353"]
  listen: [lan0]
  max_pending: 4
  timeout: 5
"""
LAN, WAN = 1, 2
R_LAN, R_WAN = bytes.fromhex("020000000101"), bytes.fromhex("020000000201")
CLIENT, CLIENT_MAC = "10.0.1.10", bytes.fromhex("021000000010")
UP1_MAC, UP2_MAC = bytes.fromhex("0220000000a1"), bytes.fromhex("0220000000a2")


def query(ident: int, name: bytes = b"\x03www\x07example\x00") -> bytes:
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + name + b"\x00\x01\x00\x01"


def answer(q: bytes, addr: bytes = b"\xc0\x00\x02\x07") -> bytes:
    ident = q[:2]
    return (ident + struct.pack("!HHHHH", 0x8180, 1, 1, 0, 0) + q[12:]
            + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + addr)


@pytest.fixture
def net() -> Net:
    n = Net(CONFIG)
    # The client and both upstreams are known neighbours (they ARPed for the router).
    assert len(n.send(LAN, arp(1, CLIENT_MAC, CLIENT, bytes(6), "10.0.1.1"))) == 1
    assert len(n.send(WAN, arp(1, UP1_MAC, "10.0.2.53", bytes(6), "10.0.2.1"))) == 1
    assert len(n.send(WAN, arp(1, UP2_MAC, "10.0.2.54", bytes(6), "10.0.2.1"))) == 1
    return n


def ask(net: Net, ident: int, sport: int = 40000, dst: str = "10.0.1.1",
        payload: bytes | None = None, port: int = LAN) -> list[tuple[int, bytes]]:
    p = query(ident) if payload is None else payload
    return net.send(port, eth(R_LAN if port == LAN else R_WAN, CLIENT_MAC, 0x0800,
                              ipv4(CLIENT, dst, udp(CLIENT, dst, sport, 53, p))))


def forwarded(tx: list[tuple[int, bytes]], upstream: str = "10.0.2.53",
              uport: int = 53) -> tuple[int, bytes]:
    assert len(tx) == 1 and tx[0][0] == WAN
    ip = expect_ipv4(tx[0][1], src="10.0.2.1", dst=upstream, proto=17)
    seg = tx[0][1][14 + 20:]
    sport, dport, _ulen, csum = struct.unpack_from("!HHHH", seg)
    assert dport == uport and 32768 <= sport <= 60999 and csum != 0
    assert ip.total_len == len(tx[0][1]) - 14
    return sport, seg[8:]


def reply_from(net: Net, upstream: str, uport: int, to_port: int, msg: bytes,
               mac: bytes = UP1_MAC) -> list[tuple[int, bytes]]:
    return net.send(WAN, eth(R_WAN, mac, 0x0800,
                             ipv4(upstream, "10.0.2.1", udp(upstream, "10.0.2.1", uport, to_port,
                                                            msg))))


def test_query_is_forwarded_with_a_new_id_and_the_answer_comes_back(net: Net) -> None:
    q = query(0x1111)
    port, sent = forwarded(ask(net, 0x1111, sport=41000))
    new_id = struct.unpack("!H", sent[:2])[0]
    assert sent[2:] == q[2:]                       # the rest passes through untouched
    tx = reply_from(net, "10.0.2.53", 53, port, answer(sent))
    assert len(tx) == 1 and tx[0][0] == LAN
    expect_ipv4(tx[0][1], src="10.0.1.1", dst=CLIENT, proto=17, eth_dst=CLIENT_MAC)
    seg = tx[0][1][34:]
    sport, dport = struct.unpack_from("!HH", seg)
    assert (sport, dport) == (53, 41000)
    assert seg[8:] == answer(q)                    # the client's ID restored
    assert new_id != 0x1111 or port != 41000       # (random: not simply copied)
    shown = dns_show(net.router)
    assert shown is not None and shown["pending"] == 0
    assert shown["stats"]["queries"] == 1 and shown["stats"]["answers"] == 1


def test_answers_from_elsewhere_or_with_another_id_are_not_taken(net: Net) -> None:
    port, sent = forwarded(ask(net, 0x2222))
    # Wrong source address (an off-path spoofer on the WAN): not ours, Port Unreachable.
    spoofer = bytes.fromhex("022000000099")
    assert len(net.send(WAN, arp(1, spoofer, "10.0.2.99", bytes(6), "10.0.2.1"))) == 1
    tx = reply_from(net, "10.0.2.99", 53, port, answer(sent), mac=spoofer)
    assert len(tx) == 1
    expect_icmp(tx[0][1], type=3, code=3)
    # Wrong ID.
    bad = bytearray(answer(sent))
    bad[0] ^= 0xFF
    reply_from(net, "10.0.2.53", 53, port, bytes(bad))
    assert dns_show(net.router)["pending"] == 1
    tx = reply_from(net, "10.0.2.53", 53, port, answer(sent))
    assert len(tx) == 1 and tx[0][0] == LAN


def test_queries_on_a_port_not_listened_on_get_port_unreachable(net: Net) -> None:
    tx = ask(net, 0x3333, dst="10.0.2.1", port=WAN)
    assert len(tx) == 1
    expect_icmp(tx[0][1], type=3, code=3)


def test_clients_beyond_a_gateway_are_not_served(net: Net) -> None:
    """No open resolver: a query from outside lan0's subnet, arriving on lan0."""
    p = query(0x5555)
    src, dst = "198.51.100.7", "10.0.1.1"
    tx = net.send(LAN, eth(R_LAN, CLIENT_MAC, 0x0800, ipv4(src, dst, udp(src, dst, 40000, 53, p))))
    assert all(f[0] != WAN for f in tx)
    assert dns_show(net.router)["stats"]["queries"] == 0


def test_listen_defaults_to_the_interfaces_with_a_dhcp_server() -> None:
    no_listen = CONFIG.replace("  listen: [lan0]\n", "")
    r = build(parse(no_listen), random.Random(0))
    assert r.dns.params.listen == frozenset({LAN})
    with pytest.raises(ConfigError) as ei:
        build(parse(no_listen.replace("    dhcp: {pool: [10.0.1.100, 10.0.1.110]}\n", "")),
              random.Random(0))
    assert ei.value.path == "dns.listen"


def test_a_timeout_makes_the_next_upstream_preferred(net: Net) -> None:
    forwarded(ask(net, 1))
    net.run_until(net.now + 6 * SECOND)
    assert dns_show(net.router)["stats"]["timeouts"] == 1
    assert dns_show(net.router)["pending"] == 0
    port, sent = forwarded(ask(net, 2), upstream="10.0.2.54", uport=5353)
    tx = reply_from(net, "10.0.2.54", 5353, port, answer(sent), mac=UP2_MAC)
    assert len(tx) == 1 and tx[0][0] == LAN


def test_the_pending_table_is_bounded_and_evicts_the_oldest(net: Net) -> None:
    sent = [forwarded(ask(net, i, sport=42000 + i)) for i in range(6)]
    shown = dns_show(net.router)
    assert shown["pending"] == 4 and shown["stats"]["evicted"] == 2
    # The oldest one's answer is now refused like one to a closed port.
    port0, msg0 = sent[0]
    tx = reply_from(net, "10.0.2.53", 53, port0, answer(msg0))
    assert len(tx) == 1 and tx[0][0] == WAN
    expect_icmp(tx[0][1], type=3, code=3)
    port5, msg5 = sent[5]
    assert reply_from(net, "10.0.2.53", 53, port5, answer(msg5))[0][0] == LAN


@pytest.mark.parametrize("payload", [b"", b"\x00" * 11, answer(query(9))],
                         ids=["empty", "short", "a-response"])
def test_malformed_queries_are_a_named_drop(net: Net, payload: bytes) -> None:
    assert ask(net, 0, payload=payload) == []
    assert net.drops() == {"dns_malformed": 1}


def test_random_queries_never_raise(net: Net) -> None:
    rng = random.Random(3)
    for i in range(300):
        p = bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
        ask(net, 0, sport=1024 + i, payload=p)
    assert net.drops().get("internal_error", 0) == 0
    assert dns_show(net.router)["pending"] <= 4


def test_dhcp_hands_out_the_router_as_dns_server_when_it_forwards(net: Net) -> None:
    srv = net.router.dhcp4[LAN]
    assert srv.params.dns == (int.from_bytes(bytes([10, 0, 1, 1]), "big"),)


def test_reload_keeps_queries_in_flight(net: Net) -> None:
    port, sent = forwarded(ask(net, 0x4444))
    net.router.adopt(build(parse(CONFIG.replace("max_pending: 4", "max_pending: 8")),
                           random.Random(5), net.now))
    tx = reply_from(net, "10.0.2.53", 53, port, answer(sent))
    assert len(tx) == 1 and tx[0][0] == LAN


@pytest.mark.parametrize(("change", "path"), [
    ("listen: [lan0]", None),
    ("listen: [nope]", "dns.listen[0]"),
    ("upstream: [10.0.1.1]", "dns.upstream[0]"),
    ("upstream: [224.0.0.1]", "dns.upstream[0]"),
    ('upstream: ["10.0.2.53:0"]', "dns.upstream"),
    ("upstream: []", "dns.upstream"),
])
def test_config_checks(change: str, path: str | None) -> None:
    key = change.split(":")[0]
    lines = [ln for ln in CONFIG.splitlines() if not ln.strip().startswith(key + ":")
             or ln.startswith("    ")]
    lines.insert(lines.index("dns:") + 1, "  " + change)
    text = "\n".join(lines) + "\n"
    if path is None:
        build(parse(text), random.Random(0))
        return
    with pytest.raises(ConfigError) as ei:
        build(parse(text), random.Random(0))
    assert ei.value.path == path
