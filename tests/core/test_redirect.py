"""ICMP Redirects (RFC 1812 5.2.7.2, ip_rt_send_redirect): sent when a packet leaves by
the port it came in on and its source is on-link with the next hop; the packet is
still forwarded; the kernel's back-off (20 ms << n, at most 9, reset after 20.48 s
of silence) holds."""

from __future__ import annotations

from .helpers import (
    H1,
    H1B,
    LAN,
    MS,
    R_IP,
    SECOND,
    TOPOLOGY,
    Net,
    frame_from,
    ipv4,
    parse_eth,
    parse_ipv4,
    udp,
)

# 10.0.7.0/24 is reached through H1B, a gateway on the LAN itself.
CONFIG = TOPOLOGY + "  - {to: 10.0.7.0/24, via: 10.0.1.11}\n"


def to_far(seq: int = 0, src: str = H1.ip) -> bytes:
    return frame_from(H1, ipv4(src, "10.0.7.7", udp(src, "10.0.7.7", dport=40000 + seq)))


def split(tx: list[tuple[int, bytes]]) -> tuple[list[bytes], list[bytes]]:
    """(redirects, forwarded) among the frames sent."""
    redirects, forwarded = [], []
    for _i, f in tx:
        if parse_eth(f).type != 0x0800:
            continue
        ip = parse_ipv4(f[14:])
        if ip.proto == 1 and f[14 + ip.ihl] == 5:
            redirects.append(f)
        elif ip.dst == "10.0.7.7":
            forwarded.append(f)
    return redirects, forwarded


def net(config: str = CONFIG) -> Net:
    n = Net(config)
    n.reachable(H1)
    n.reachable(H1B)
    return n


def test_redirect_to_the_onlink_gateway_and_still_forwarded() -> None:
    n = net()
    redirects, forwarded = split(n.send(LAN, to_far()))
    assert len(redirects) == 1 and len(forwarded) == 1
    f = redirects[0]
    ip = parse_ipv4(f[14:])
    assert (ip.src, ip.dst) == (R_IP[LAN], H1.ip)
    icmp = f[14 + ip.ihl:]
    assert icmp[0:2] == bytes([5, 1])                              # Redirect, host
    assert icmp[4:8] == bytes(map(int, H1B.ip.split(".")))         # the better gateway
    quoted = parse_ipv4(icmp[8:], strict=False)
    assert quoted.dst == "10.0.7.7" and quoted.ttl == 63           # after the TTL decrement
    assert parse_ipv4(forwarded[0][14:]).ttl == 63
    assert n.snmp("IcmpOutRedirects") == 1


def test_back_off_nine_then_silence() -> None:
    n = net()
    sent_at = []
    for i in range(40):                                # one packet a second
        r, fwd = split(n.send(LAN, to_far(i), at=i * SECOND))
        assert len(fwd) == 1
        if r:
            sent_at.append(i)
    # Gaps must exceed 20 ms << n: 1 s apart passes for n <= 5; then 1.28 s, 2.56 s, 5.12 s.
    assert sent_at == [0, 1, 2, 3, 4, 5, 7, 10, 16]
    # Steady traffic keeps it silent; 20.48 s of silence starts the count again.
    assert split(n.send(LAN, to_far(99), at=40 * SECOND + 20_480 * MS + 1))[0]


def test_no_redirect_when_source_is_not_onlink_or_disabled() -> None:
    n = net()
    # A source from elsewhere (routed in from the LAN): not on-link, no redirect.
    assert split(n.send(LAN, to_far(src="10.0.9.9")))[0] == []
    n2 = net(CONFIG + "ipv4: {send_redirects: false}\n")
    redirects, forwarded = split(n2.send(LAN, to_far()))
    assert redirects == [] and len(forwarded) == 1


def test_source_routed_packets_are_dropped_without_a_redirect() -> None:
    n = net()
    lsrr = bytes([131, 7, 4]) + bytes(4) + b"\x00"                # LSRR + EOL, 8 bytes
    l3 = ipv4(H1.ip, "10.0.7.7", udp(H1.ip, "10.0.7.7"), options=lsrr)
    redirects, forwarded = split(n.send(LAN, frame_from(H1, l3)))
    # accept_source_route = 0 (the default): source-routed packets are dropped outright.
    assert redirects == [] and forwarded == []
    assert n.drops() == {"source_route": 1}
