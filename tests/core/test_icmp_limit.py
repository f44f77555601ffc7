"""ICMP output rate limits, as the kernel applies them (core/ip/icmp_limit.py):
per destination 6 back-to-back then one per icmp_ratelimit, a host-wide bucket
(icmp_msgs_per_sec / icmp_msgs_burst), only for the types in icmp_ratemask,
never for Frag Needed; and the other net.ipv4 knobs of the `ipv4:` config."""

from __future__ import annotations

from .helpers import (
    H1,
    H2,
    H4,
    LAN,
    MS,
    R_IP,
    SECOND,
    TOPOLOGY,
    WAN,
    Host,
    Net,
    echo,
    frame_from,
    ipv4,
    parse_eth,
    parse_ipv4,
    udp,
)


def ttl1(host: Host, seq: int) -> bytes:
    return frame_from(host, ipv4(host.ip, H2.ip, udp(host.ip, H2.ip, dport=33434 + seq), ttl=1))


def icmp_types(tx: list[tuple[int, bytes]]) -> list[int]:
    out = []
    for _i, f in tx:
        if parse_eth(f).type == 0x0800:
            ip = parse_ipv4(f[14:])
            if ip.proto == 1:
                out.append(f[14 + ip.ihl])
    return out


def net(extra: str = "", **hosts: Host) -> Net:
    n = Net(TOPOLOGY + extra)
    n.reachable(H1)
    n.reachable(H2)
    return n


def test_six_back_to_back_then_one_per_second() -> None:
    n = net()
    sent = [icmp_types(n.send(LAN, ttl1(H1, i))) for i in range(10)]
    assert [len(s) for s in sent] == [1] * 6 + [0] * 4
    assert n.snmp("IcmpOutRateLimitHost") == 4
    assert n.drops()["ttl_exceeded"] == 10              # every packet is still dropped
    # 999 ms later the bucket holds less than one token; at 1 s it holds one.
    assert icmp_types(n.send(LAN, ttl1(H1, 11), at=n.now + 999 * MS)) == []
    assert icmp_types(n.send(LAN, ttl1(H1, 12), at=n.now + 1 * MS)) == [11]
    assert icmp_types(n.send(LAN, ttl1(H1, 13))) == []
    # After 6 s of silence the full burst is back.
    n.now += 6 * SECOND
    assert sum(len(icmp_types(n.send(LAN, ttl1(H1, 20 + i)))) for i in range(8)) == 6


def test_each_destination_has_its_own_bucket() -> None:
    n = net()
    h1b = Host("10.0.1.11", bytes.fromhex("021000000011"), LAN)
    n.reachable(h1b)
    a = sum(len(icmp_types(n.send(LAN, ttl1(H1, i)))) for i in range(8))
    b = sum(len(icmp_types(n.send(LAN, ttl1(h1b, i)))) for i in range(8))
    assert (a, b) == (6, 6)


def test_frag_needed_and_echo_replies_are_never_limited() -> None:
    n = net()
    n.reachable(H4)
    big = frame_from(H1, ipv4(H1.ip, H4.ip, udp(H1.ip, H4.ip, data=b"x" * 1450), df=True))
    assert sum(icmp_types(n.send(LAN, big)) == [3] for _ in range(20)) == 20
    pings = [icmp_types(n.send(LAN, frame_from(H1, ipv4(H1.ip, R_IP[LAN], echo(seq=i), proto=1))))
             for i in range(20)]
    assert pings == [[0]] * 20
    assert n.snmp("IcmpOutRateLimitHost") == 0


def test_ratelimit_zero_disables_the_per_destination_limit() -> None:
    n = net("ipv4: {icmp_ratelimit: 0}\n")
    assert sum(len(icmp_types(n.send(LAN, ttl1(H1, i)))) for i in range(30)) == 30


def test_ratemask_decides_which_types_are_limited() -> None:
    # Without bit 11 (Time Exceeded) in the mask, Time Exceeded is not limited.
    n = net(f"ipv4: {{icmp_ratemask: {0x1818 & ~(1 << 11)}}}\n")
    assert sum(len(icmp_types(n.send(LAN, ttl1(H1, i)))) for i in range(20)) == 20


def test_host_wide_bucket_limits_many_destinations() -> None:
    n = net("ipv4: {icmp_msgs_burst: 10, icmp_msgs_per_sec: 100}\n")
    hosts = [Host(f"10.0.1.{100 + i}", bytes([2, 0x10, 0, 0, 1, i]), LAN) for i in range(60)]
    for h in hosts:
        n.reachable(h)
    got = sum(len(icmp_types(n.send(LAN, ttl1(h, 0)))) for h in hosts)
    limited = n.snmp("IcmpOutRateLimitGlobal")
    assert got + limited == 60
    assert 5 <= got <= 30 and limited > 0           # ~burst, each message costs 0-2 credits
    # 20 ms later the bucket refills by msgs_per_sec * 20 ms = 2 credits at least.
    n.now += 20 * MS
    assert len(icmp_types(n.send(LAN, ttl1(hosts[0], 1)))) == 1


def test_peer_table_is_bounded() -> None:
    n = net()
    for i in range(6000):
        src = f"10.{(i >> 8) & 255}.{i & 255}.7"
        n.router.icmp_limiter.peer_allow(int.from_bytes(bytes(map(int, src.split("."))), "big"),
                                         n.now)
    assert len(n.router.icmp_limiter.peers) <= 4096


def test_ip_default_ttl_and_echo_ignore_all() -> None:
    n = net("ipv4: {ip_default_ttl: 32}\n")
    tx = n.send(LAN, frame_from(H1, ipv4(H1.ip, R_IP[LAN], echo(), proto=1)))
    assert parse_ipv4(tx[0][1][14:]).ttl == 32
    n2 = net("ipv4: {icmp_echo_ignore_all: true}\n")
    assert n2.send(LAN, frame_from(H1, ipv4(H1.ip, R_IP[WAN], echo(), proto=1))) == []
    assert n2.drops() == {"icmp_ignored": 1}
