"""IPv4 options (ip/options.py): Record Route and Timestamp filled with the egress
address by a forwarding router, malformed options answered with Parameter Problem
at the right pointer, EOL padding normalised, source routes dropped."""

from __future__ import annotations

import pytest

from .helpers import H1, H2, LAN, R_IP, TOPOLOGY, WAN, Net, frame_from, ipv4, parse_ipv4, udp


def net() -> Net:
    n = Net(TOPOLOGY)
    n.reachable(H1)
    n.reachable(H2)
    n.router.wall_offset_ns = 3_600_000 * 1_000_000          # "01:00:00.000 UTC" at now=0
    return n


def send(n: Net, options: bytes, dst: str = H2.ip) -> list[tuple[int, bytes]]:
    return n.send(LAN, frame_from(H1, ipv4(H1.ip, dst, udp(H1.ip, dst), options=options)))


def a(ip: str) -> bytes:
    return bytes(map(int, ip.split(".")))


def test_record_route_gets_the_egress_address() -> None:
    n = net()
    rr = bytes([7, 11, 8]) + a(H1.ip) + bytes(4) + b"\x00"       # RR with one slot used
    tx = send(n, rr)
    assert len(tx) == 1 and tx[0][0] == WAN
    ip = parse_ipv4(tx[0][1][14:])                                # checksum verified here
    opts = ip.header[20:]
    assert opts[2] == 12                                           # pointer advanced
    assert opts[3:7] == a(H1.ip) and opts[7:11] == a(R_IP[WAN])


def test_full_record_route_is_forwarded_untouched() -> None:
    n = net()
    rr = bytes([7, 7, 8]) + a(H1.ip) + b"\x00"
    tx = send(n, rr)
    assert parse_ipv4(tx[0][1][14:]).header[20:28] == rr


def test_timestamp_and_address() -> None:
    n = net()
    ts = bytes([68, 12, 5, 0x01]) + bytes(8)                       # tsandaddr, one pair
    tx = send(n, ts)
    opts = parse_ipv4(tx[0][1][14:]).header[20:]
    assert opts[2] == 13
    assert opts[4:8] == a(R_IP[WAN])
    assert int.from_bytes(opts[8:12], "big") == 3_600_000           # ms since midnight


def test_timestamp_overflow_is_counted_then_a_problem() -> None:
    n = net()
    full = bytes([68, 8, 9, 0x00]) + bytes(4)                      # tsonly, no room
    opts = parse_ipv4(send(n, full)[0][1][14:]).header[20:]
    assert opts[3] >> 4 == 1
    tx = send(n, bytes([68, 8, 9, 0xF0]) + bytes(4))               # overflow already 15
    icmp = parse_ipv4(tx[0][1][14:])
    assert icmp.proto == 1 and icmp.payload[0] == 12 and icmp.payload[4] == 20 + 3


@pytest.mark.parametrize("options, pointer", [
    (bytes([7, 1, 4, 0]), 20),                 # length 1
    (bytes([7, 12, 4, 0]), 20),                # length past the end
    (bytes([7, 7, 3, 0, 0, 0, 0, 0]), 22),     # RR pointer < 4
    (bytes([7, 7, 4, 0, 0, 0, 0, 7, 3, 4, 0, 0]), 27),   # second RR
    (bytes([68, 3, 5, 0]), 21),                # TS too short
])
def test_malformed_options_get_parameter_problem(options: bytes, pointer: int) -> None:
    n = net()
    tx = send(n, options)
    assert len(tx) == 1 and tx[0][0] == LAN
    ip = parse_ipv4(tx[0][1][14:])
    assert (ip.src, ip.dst, ip.proto) == (R_IP[LAN], H1.ip, 1)
    assert ip.payload[0:2] == bytes([12, 0]) and ip.payload[4] == pointer
    assert n.drops() == {"ip_options_error": 1}
    assert n.snmp("IpInHdrErrors") == 1


def test_bytes_after_eol_become_eol() -> None:
    n = net()
    tx = send(n, bytes([1, 0, 9, 9]))
    assert parse_ipv4(tx[0][1][14:]).header[20:24] == bytes([1, 0, 0, 0])


def test_options_to_the_router_are_checked_too() -> None:
    n = net()
    tx = send(n, bytes([7, 1, 4, 0]), dst=R_IP[LAN])
    assert parse_ipv4(tx[0][1][14:]).payload[0] == 12
