"""NAT on conntrack (core/netfilter/nat.py) and MSS clamping (maxseg.py) on crafted
frames: masquerade/SNAT both directions with valid checksums, port clash allocation,
DNAT port forward, ICMP echo id, ICMP error translation with the embedded header, the
UDP zero checksum, MSS clamping (rt mtu and a fixed size), and the ruleset checks."""

from __future__ import annotations

import struct

import pytest

from pyrouter.core import SECOND
from pyrouter.core.drops import DropReason
from pyrouter.core.netfilter.nft_compile import compile_ruleset
from pyrouter.core.netfilter.nft_parse import NftError

from .helpers import (H1, H1B, H2, H4, LAN, TCP_ACK, TCP_SYN, WAN, checksum, echo,
                      expect_ipv4, frame_from, icmp, ipv4, pseudo, tcp, udp)
from .test_netfilter_nft import nft_net

WAN_IP = "10.0.2.1"


def ruleset(post: str = "", pre: str = "", fwd: str = "") -> str:
    return f"""
table ip nat {{
  chain pre {{
    type nat hook prerouting priority dstnat; policy accept;
    {pre}
  }}
  chain post {{
    type nat hook postrouting priority srcnat; policy accept;
    {post}
  }}
}}
table inet filter {{
  chain forward {{
    type filter hook forward priority filter; policy accept;
    {fwd}
  }}
}}
"""


def _net(rs: str):
    net = nft_net(rs)
    for p in net.router.ports.values():       # the harness may rename ports
        rs = rs.replace(f'"{p.name.rstrip("0123456789")}0"', f'"{p.name}"')
    return nft_net(rs)


def l4_ok(ip) -> None:
    """The transport checksum over the pseudo-header is valid (or UDP's zero)."""
    seg = ip.payload
    if ip.proto == 17 and seg[6:8] == b"\0\0":
        return
    if ip.proto == 1:
        assert checksum(seg) == 0
        return
    assert checksum(seg, pseudo(ip.src, ip.dst, ip.proto, len(seg))) == 0


def ports(ip) -> tuple[int, int]:
    return struct.unpack("!HH", ip.payload[:4])


def send_udp(net, host, dst, sport=40000, dport=33434, csum=None, ttl=64):
    l3 = ipv4(host.ip, dst, udp(host.ip, dst, sport=sport, dport=dport, csum=csum),
              proto=17, ttl=ttl)
    return l3, net.send(host.port, frame_from(host, l3))


MASQ = ruleset(post='oifname "wan0" masquerade')


def test_masquerade_udp_both_directions_and_checksums() -> None:
    net = _net(MASQ)
    _, out = send_udp(net, H1, H2.ip)
    ip = expect_ipv4(out[0], src=WAN_IP, dst=H2.ip, ifindex=WAN)
    assert ports(ip) == (40000, 33434)              # the source port was free: kept
    l4_ok(ip)
    c = net.router.nf.conntrack.entries()[0]
    assert c.reply[1:] == (H2.ip and bytes([10, 0, 2, 20]), bytes([10, 0, 2, 1]), 17,
                           33434, 40000)
    _, back = send_udp(net, H2, WAN_IP, sport=33434, dport=40000)
    ip = expect_ipv4(back[0], src=H2.ip, dst=H1.ip, ifindex=LAN)
    assert ports(ip) == (33434, 40000)
    l4_ok(ip)


def test_port_clash_gets_another_port_and_replies_find_each_host() -> None:
    net = _net(MASQ)
    net.reachable(H1B)
    _, a = send_udp(net, H1, H2.ip)
    _, b = send_udp(net, H1B, H2.ip)                # same sport, same server: clash
    pa, pb = ports(expect_ipv4(a[0], src=WAN_IP))[0], ports(expect_ipv4(b[0], src=WAN_IP))[0]
    assert pa == 40000 and pb != 40000 and 1024 <= pb <= 65535
    l4_ok(expect_ipv4(b[0]))
    _, back = send_udp(net, H2, WAN_IP, sport=33434, dport=pb)
    ip = expect_ipv4(back[0], dst=H1B.ip, ifindex=LAN)
    assert ports(ip) == (33434, 40000)
    _, back = send_udp(net, H2, WAN_IP, sport=33434, dport=pa)
    expect_ipv4(back[0], dst=H1.ip, ifindex=LAN)


def test_snat_port_range_allocation() -> None:
    net = _net(ruleset(post=f'oifname "wan0" meta l4proto udp snat to {WAN_IP}:2000-2001'))
    net.reachable(H1B)
    got = []
    for host in (H1, H1B):
        _, out = send_udp(net, host, H2.ip)
        got.append(ports(expect_ipv4(out[0], src=WAN_IP))[0])
    assert sorted(got) == [2000, 2001]


def test_dnat_port_forward_tcp() -> None:
    net = _net(ruleset(pre=f'iifname "wan0" tcp dport 8080 dnat to {H1.ip}:80'))
    l3 = ipv4(H2.ip, WAN_IP, tcp(H2.ip, WAN_IP, sport=50000, dport=8080), proto=6)
    out = net.send(WAN, frame_from(H2, l3))
    ip = expect_ipv4(out[0], src=H2.ip, dst=H1.ip, ifindex=LAN)
    assert ports(ip) == (50000, 80)
    l4_ok(ip)
    l3 = ipv4(H1.ip, H2.ip, tcp(H1.ip, H2.ip, sport=80, dport=50000, flags=TCP_SYN | TCP_ACK,
                                ack=1001), proto=6)
    out = net.send(LAN, frame_from(H1, l3))
    ip = expect_ipv4(out[0], src=WAN_IP, dst=H2.ip, ifindex=WAN)
    assert ports(ip) == (8080, 50000)
    l4_ok(ip)


def test_icmp_echo_through_masquerade_id_clash() -> None:
    net = _net(MASQ)
    net.reachable(H1B)
    ids = []
    for host in (H1, H1B):
        l3 = ipv4(host.ip, H2.ip, echo(ident=7), proto=1)
        ip = expect_ipv4(net.send(host.port, frame_from(host, l3))[0], src=WAN_IP)
        l4_ok(ip)
        ids.append(struct.unpack("!H", ip.payload[4:6])[0])
    assert ids[0] == 7 and ids[1] != 7
    l3 = ipv4(H2.ip, WAN_IP, echo(ident=ids[1], reply=True), proto=1)
    ip = expect_ipv4(net.send(WAN, frame_from(H2, l3))[0], dst=H1B.ip)
    assert struct.unpack("!H", ip.payload[4:6])[0] == 7
    l4_ok(ip)


def test_icmp_error_about_masqueraded_flow_is_translated_with_inner_header() -> None:
    net = _net(MASQ)
    net.reachable(H1B)
    send_udp(net, H1, H2.ip)
    orig, out = send_udp(net, H1B, H2.ip)           # this one is on another port
    sent = expect_ipv4(out[0])
    natport = ports(sent)[0]
    err = ipv4(H2.ip, WAN_IP, icmp(3, 3, data=sent.raw[:28]), proto=1)
    got = net.send(WAN, frame_from(H2, err))
    ip = expect_ipv4(got[0], src=H2.ip, dst=H1B.ip, ifindex=LAN)
    l4_ok(ip)                                       # the ICMP checksum was recomputed
    inner = ip.payload[8:]
    assert inner[12:16] == bytes([10, 0, 1, 11]) and inner[16:20] == bytes([10, 0, 2, 20])
    assert checksum(inner[:20]) == 0                # the embedded IPv4 header checksum
    assert struct.unpack("!HH", inner[20:24]) == (40000, 33434) and natport != 40000
    # the embedded UDP checksum (its data is cut off) is back to what H1B sent
    assert inner[26:28] == orig[26:28] and sent.raw[26:28] != orig[26:28]


def test_icmp_error_about_a_translated_echo_restores_the_inner_id() -> None:
    net = _net(MASQ)
    net.reachable(H1B)
    for host in (H1, H1B):
        l3 = ipv4(host.ip, H2.ip, echo(ident=7), proto=1, ttl=2)
        sent = expect_ipv4(net.send(host.port, frame_from(host, l3))[0], src=WAN_IP)
    assert struct.unpack("!H", sent.payload[4:6])[0] != 7     # H1B's echo got a new id
    # the next hop's Time Exceeded quotes the translated echo
    err = ipv4(H2.ip, WAN_IP, icmp(11, 0, data=sent.raw[:28]), proto=1)
    ip = expect_ipv4(net.send(WAN, frame_from(H2, err))[0], dst=H1B.ip, ifindex=LAN)
    l4_ok(ip)
    inner = ip.payload[8:]
    assert inner[12:16] == bytes([10, 0, 1, 11]) and checksum(inner[:20]) == 0
    assert inner[20] == 8 and struct.unpack("!H", inner[24:26])[0] == 7
    assert checksum(inner[20:28] + sent.raw[28:]) == 0        # the echo checksum follows


def test_router_time_exceeded_about_dnat_flow_shows_the_original_destination() -> None:
    net = _net(ruleset(pre=f'iifname "wan0" udp dport 5000 dnat to {H1.ip}:6000'))
    # TTL 1 arrives at the router: DNAT applied at PREROUTING, then TTL expires.
    l3 = ipv4(H2.ip, WAN_IP, udp(H2.ip, WAN_IP, sport=5001, dport=5000), proto=17, ttl=1)
    out = net.send(WAN, frame_from(H2, l3))
    ip = expect_ipv4(out[0], dst=H2.ip, ifindex=WAN)
    assert ip.proto == 1 and ip.payload[0] == 11
    inner = ip.payload[8:]
    # The quote says what H2 sent: to the router's address and port 5000.
    assert inner[16:20] == bytes([10, 0, 2, 1])
    assert struct.unpack("!HH", inner[20:24]) == (5001, 5000)
    assert checksum(inner[:20]) == 0
    l4_ok(ip)


def test_udp_zero_checksum_stays_zero() -> None:
    net = _net(MASQ)
    _, out = send_udp(net, H1, H2.ip, csum=0)
    ip = expect_ipv4(out[0], src=WAN_IP)
    assert ip.payload[6:8] == b"\0\0"


def _syn_with_mss(src, dst, mss: int) -> bytes:
    seg = bytearray(tcp(src.ip, dst.ip, flags=TCP_SYN))
    seg[12] = 6 << 4
    seg[20:20] = struct.pack("!BBH", 2, 4, mss)
    seg[16:18] = b"\0\0"
    seg[16:18] = struct.pack("!H", checksum(bytes(seg), pseudo(src.ip, dst.ip, 6, len(seg))))
    return ipv4(src.ip, dst.ip, bytes(seg), proto=6)


@pytest.mark.parametrize("stmt,dst,expected", [
    ("tcp option maxseg size set rt mtu", H4, 1360),       # small0 has mtu 1400
    ("tcp option maxseg size set rt mtu", H2, 1460),       # 1500: unchanged
    ("tcp option maxseg size set 1200", H2, 1200),
])
def test_mss_clamp(stmt: str, dst, expected: int) -> None:
    net = _net(ruleset(fwd=f"tcp flags syn {stmt}"))
    if dst is not H2:
        net.reachable(dst)
    out = net.send(LAN, frame_from(H1, _syn_with_mss(H1, dst, 1460)))
    ip = expect_ipv4(out[0], dst=dst.ip)
    assert struct.unpack("!H", ip.payload[22:24])[0] == expected
    l4_ok(ip)
    # never raised: an MSS already below stays
    out = net.send(LAN, frame_from(H1, _syn_with_mss(H1, dst, 536)))
    assert struct.unpack("!H", expect_ipv4(out[0]).payload[22:24])[0] == 536


@pytest.mark.parametrize("text,msg", [
    ("table ip t { chain c { type filter hook postrouting priority 0; masquerade } }",
     "only allowed in a nat chain"),
    ("table ip t { chain c { type nat hook postrouting priority srcnat; dnat to 1.2.3.4 } }",
     "not allowed at hook postrouting"),
    ("table ip t { chain c { type nat hook forward priority 0; } }", "expected a nat hook"),
    ("table ip t { chain c { type nat hook prerouting priority dstnat; dnat to :80 } }",
     "needs an address"),
    ("table ip t { chain c { type nat hook prerouting priority dstnat; "
     "dnat to 1.2.3.4:90-80 } }", "expected ports"),
    ("table ip6 t { chain c { type nat hook postrouting priority srcnat; snat to 1::2::3 } }",
     "expected a port or port range"),
    ("table ip6 t { chain c { type nat hook postrouting priority srcnat; snat to 1.2.3.4 } }",
     "IPv4 address in an ip6 table"),
])
def test_ruleset_errors(text: str, msg: str) -> None:
    with pytest.raises(NftError) as e:
        compile_ruleset(text, "nat.nft")
    assert msg in str(e.value) and "nat.nft:1:" in str(e.value)


def test_listing_shows_nat_chain_and_statement() -> None:
    rs = compile_ruleset(MASQ)
    text = rs.list()
    assert "type nat hook postrouting priority srcnat; policy accept;" in text
    assert 'oifname "wan0" masquerade' in text


def test_masquerade_uses_the_egress_address_toward_the_next_hop_and_reload_drops_it() -> None:
    import random

    from pyrouter.control.build import build
    from pyrouter.control.load import parse

    from .helpers import H3

    net = _net(MASQ)
    net.reachable(H3)
    _, a = send_udp(net, H1, H2.ip)
    _, b = send_udp(net, H1, H3.ip)
    expect_ipv4(a[0], src=WAN_IP, dst=H2.ip)
    expect_ipv4(b[0], src="10.0.20.1", dst=H3.ip)   # wan0's address in H3's subnet
    ct = net.router.nf.conntrack
    assert len(ct) == 2
    # Reload without wan0's second address: its masqueraded entry goes, the other stays.
    text = net.config.replace("[10.0.2.1/24, 10.0.20.1/24]", "[10.0.2.1/24]")
    assert text != net.config
    ifx = {p.name: i for i, p in net.router.ports.items()}
    net.router.adopt(build(parse(text), random.Random(9), net.now, "<reload>", ifx))
    net.drain()
    assert [c.masq for c in ct.entries()] == [(WAN, bytes([10, 0, 2, 1]))]


def test_redirect_to_the_router_and_the_reset_comes_back_from_the_original_address() -> None:
    net = _net(ruleset(pre='iifname "lan0" tcp dport 80 redirect to :3128'))
    l3 = ipv4(H1.ip, H2.ip, tcp(H1.ip, H2.ip, sport=41000, dport=80), proto=6)
    out = net.send(LAN, frame_from(H1, l3))
    # nothing listens on 3128 (it reached the router: no such socket); the router's RST
    # is un-NATed to come from H2:80, and (a RST as the only reply) the entry is gone
    assert net.router.counters.drops.get(DropReason.TCP_NO_SOCKET) == 1
    assert net.router.nf.conntrack.stats["insert"] == 1 and len(net.router.nf.conntrack) == 0
    ip = expect_ipv4(out[0], src=H2.ip, dst=H1.ip, ifindex=LAN)
    assert ports(ip) == (80, 41000) and ip.payload[13] & 0x04
    l4_ok(ip)


def test_hostile_packets_through_nat_never_raise() -> None:
    """Mutated TCP/UDP/ICMP frames and ICMP errors with garbage quotes, both ways
    through masquerade and a DNAT: no entry ever raises (INTERNAL_ERROR stays 0)."""
    import random

    net = _net(ruleset(post='oifname "wan0" masquerade',
                       pre=f'iifname "wan0" dnat to {H1.ip}'))
    # Mutated bytes break checksums; with nf_conntrack_checksum=0 (as the sysctl) the
    # mutated packets still reach the lookups and the NAT code this test is about.
    net.router.nf.conntrack.checksum = 0
    rnd = random.Random(7)
    seeds = [ipv4(H1.ip, H2.ip, udp(H1.ip, H2.ip), proto=17),
             ipv4(H1.ip, H2.ip, tcp(H1.ip, H2.ip), proto=6),
             ipv4(H1.ip, H2.ip, echo(), proto=1)]
    quotes = [s[:28] for s in seeds] + [   # what masquerade sent, what H1 answers a DNAT
        ipv4(WAN_IP, H2.ip, udp(WAN_IP, H2.ip), proto=17)[:28],
        ipv4(WAN_IP, H2.ip, tcp(WAN_IP, H2.ip), proto=6)[:28],
        ipv4(WAN_IP, H2.ip, echo(), proto=1)[:28],
        ipv4(H1.ip, H2.ip, udp(H1.ip, H2.ip, sport=33434, dport=40000), proto=17)[:28]]
    for i in range(1500):
        if i % 3 == 2:
            q = bytearray(rnd.choice(quotes))
            for _ in range(rnd.randrange(4)):
                q[rnd.randrange(len(q))] = rnd.randrange(256)
            q = bytes(q[:rnd.randrange(20, 29)])
            src, dst, host = (H2.ip, WAN_IP, H2) if rnd.random() < 0.5 else (H1.ip, H2.ip, H1)
            l3 = ipv4(src, dst, icmp(rnd.choice([3, 11, 12]), 0, data=q), proto=1)
        else:
            l3b = bytearray(rnd.choice(seeds))
            for _ in range(rnd.randrange(3)):
                at = rnd.randrange(20, len(l3b))
                l3b[at] = rnd.randrange(256)
            host = H1
            if rnd.random() < 0.5:
                host = H2
                l3b[12:16], l3b[16:20] = bytes([10, 0, 2, 20]), bytes([10, 0, 2, 1])
                l3b[10:12] = b"\0\0"
                l3b[10:12] = struct.pack("!H", checksum(bytes(l3b[:20])))
            l3 = bytes(l3b[:rnd.randrange(20, len(l3b) + 1)])
            if len(l3) != len(l3b):
                l3 = bytearray(l3)
                l3[2:4] = struct.pack("!H", len(l3))
                l3[10:12] = b"\0\0"
                l3[10:12] = struct.pack("!H", checksum(bytes(l3[:20])))
                l3 = bytes(l3)
        net.send(host.port, frame_from(host, l3))
    assert net.router.counters.drops.get(DropReason.INTERNAL_ERROR, 0) == 0
    assert len(net.router.nf.conntrack) > 0
    assert net.router.nf.conntrack.stats["found"] > 100      # errors did match entries


NAT6 = """\
nftables:
  ruleset: |
    table ip6 nat {
      chain pre {
        type nat hook prerouting priority dstnat; policy accept;
        iifname "wan0" tcp dport 8080 dnat to 2001:db8:1::10
      }
      chain post {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan0" masquerade
      }
    }
"""


def _csum6_ok(ip) -> None:
    from .helpers6 import pseudo6
    seg = bytes(ip.payload)
    assert checksum(seg, pseudo6(ip.src, ip.dst, ip.nh, len(seg))) == 0


def test_ipv6_masquerade_udp_echo_and_icmpv6_error_both_ways() -> None:
    from .helpers6 import (CONFIG6, H1 as A, H1B as A2, H2 as B, Net6, echo6, echo6_body,
                           expect_ip6, frame6, icmp6_pkt, ip6, udp6)
    net = Net6(config=CONFIG6 + NAT6)
    net.ready()
    for h in (A, A2, B):
        net.learn6(h)
    r_wan = "2001:db8:2::1"
    out = net.send(LAN, frame6(A, ip6(A.ip, B.ip, 17, udp6(A.ip, B.ip, sport=4000,
                                                           dport=53))))
    ip = expect_ip6(out[0], src=r_wan, dst=B.ip)
    _csum6_ok(ip)
    assert struct.unpack("!HH", ip.payload[:4]) == (4000, 53)
    # the same source port from another LAN host: a new port
    out2 = net.send(LAN, frame6(A2, ip6(A2.ip, B.ip, 17, udp6(A2.ip, B.ip, sport=4000,
                                                             dport=53))))
    ip2 = expect_ip6(out2[0], src=r_wan)
    _csum6_ok(ip2)
    natport = struct.unpack("!H", ip2.payload[:2])[0]
    assert natport != 4000
    back = net.send(WAN, frame6(B, ip6(B.ip, r_wan, 17, udp6(B.ip, r_wan, sport=53,
                                                             dport=natport))))
    ipb = expect_ip6(back[0], src=B.ip, dst=A2.ip)
    _csum6_ok(ipb)
    assert struct.unpack("!HH", ipb.payload[:4]) == (53, 4000)
    # B's port unreachable about the translated datagram reaches A2, quote un-NATed
    l3_sent = ip6(r_wan, B.ip, 17, bytes(ip2.payload))
    err = net.send(WAN, frame6(B, icmp6_pkt(B.ip, r_wan, 1, 4, b"\0" * 4 + l3_sent)))
    ipe = expect_ip6(err[0], src=B.ip, dst=A2.ip)
    _csum6_ok(ipe)
    inner = bytes(ipe.payload[8:])
    assert inner[8:24] == bytes.fromhex("20010db8000100000000000000000011")
    assert struct.unpack("!HH", inner[40:44]) == (4000, 53)
    # ICMPv6 echo: id kept (free), checksum valid, the reply comes back
    out = net.send(LAN, frame6(A, echo6(A.ip, B.ip, ident=9)))
    ipx = expect_ip6(out[0], src=r_wan)
    _csum6_ok(ipx)
    rep = net.send(WAN, frame6(B, icmp6_pkt(B.ip, r_wan, 129, 0, echo6_body(9))))
    _csum6_ok(expect_ip6(rep[0], dst=A.ip))


def test_ipv6_dnat() -> None:
    from .helpers6 import CONFIG6, H1 as A, H2 as B, Net6, expect_ip6, frame6, ip6
    net = Net6(config=CONFIG6 + NAT6)
    net.ready()
    net.learn6(A)
    net.learn6(B)
    r_wan = "2001:db8:2::1"
    seg = tcp("10.0.0.1", "10.0.0.2", sport=50000, dport=8080)   # checksum redone below
    from .helpers6 import pseudo6
    seg = bytearray(seg)
    seg[16:18] = b"\0\0"
    seg[16:18] = struct.pack("!H", checksum(bytes(seg), pseudo6(B.ip, r_wan, 6, len(seg))))
    out = net.send(WAN, frame6(B, ip6(B.ip, r_wan, 6, bytes(seg))))
    ip = expect_ip6(out[0], src=B.ip, dst=A.ip)
    _csum6_ok(ip)
    assert struct.unpack("!HH", ip.payload[:4]) == (50000, 8080)


def test_a_masquerade_only_ruleset_still_un_nats_replies() -> None:
    """nf_nat registers at all four NAT hooks once any nat chain exists."""
    net = _net("""
table ip nat {
  chain post {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan0" masquerade
  }
}
""")
    _, out = send_udp(net, H1, H2.ip)
    expect_ipv4(out[0], src=WAN_IP)
    _, back = send_udp(net, H2, WAN_IP, sport=33434, dport=40000)
    ip = expect_ipv4(back[0], src=H2.ip, dst=H1.ip, ifindex=LAN)
    l4_ok(ip)


# -- hairpin NAT (a LAN host reaching a LAN server through the router's WAN address) ----
HAIRPIN = ruleset(pre=f'ip daddr {WAN_IP} tcp dport 8080 dnat to {H1.ip}:80',
                  post=f'ip saddr 10.0.1.0/24 ip daddr {H1.ip} masquerade')


def test_hairpin_both_ways_out_the_port_it_came_in_on_without_a_redirect() -> None:
    """H1B -> 10.0.2.1:8080 is DNATed to H1:80 and masqueraded: it leaves by lan0, where
    it came in.  ip_forward marks it for a redirect (source and next hop on-link), but
    the redirect carries the entry (nf_ct_attach) and nf_nat_icmp_reply_translation
    drops redirects about a NATed connection: only the translated packets leave."""
    net = _net(HAIRPIN)
    net.reachable(H1B)
    l3 = ipv4(H1B.ip, WAN_IP, tcp(H1B.ip, WAN_IP, sport=50000, dport=8080), proto=6)
    out = net.send(LAN, frame_from(H1B, l3))
    assert len(out) == 1, out                           # no ICMP redirect to H1B
    ip = expect_ipv4(out[0], src="10.0.1.1", dst=H1.ip, ifindex=LAN)
    assert ports(ip) == (50000, 80)
    l4_ok(ip)
    assert net.snmp("IcmpOutRedirects") == 1            # made (counted), then dropped
    assert net.router.counters.drops[DropReason.NAT_UNTRANSLATABLE] == 1
    # H1's answer goes to the router (the masqueraded source), back out lan0 to H1B
    # from the address H1B asked for
    l3 = ipv4(H1.ip, "10.0.1.1", tcp(H1.ip, "10.0.1.1", sport=80, dport=50000,
                                     flags=TCP_SYN | TCP_ACK, ack=1001), proto=6)
    out = net.send(LAN, frame_from(H1, l3), at=net.now + SECOND)
    assert len(out) == 1, out
    ip = expect_ipv4(out[0], src=WAN_IP, dst=H1B.ip, ifindex=LAN)
    assert ports(ip) == (8080, 50000)
    l4_ok(ip)
    assert net.router.counters.drops[DropReason.NAT_UNTRANSLATABLE] == 2
    # and the rest of the connection, after the redirect back-off has passed
    l3 = ipv4(H1B.ip, WAN_IP, tcp(H1B.ip, WAN_IP, sport=50000, dport=8080, flags=TCP_ACK,
                                  seq=1001, ack=1), proto=6)
    out = net.send(LAN, frame_from(H1B, l3), at=net.now + 2 * SECOND)
    assert len(out) == 1 and expect_ipv4(out[0], src="10.0.1.1", dst=H1.ip)


def test_redirect_about_an_un_nated_connection_goes_once_its_nat_is_done() -> None:
    """With a nat table loaded every connection is bound (the null binding); a redirect
    about its first packet (SRC binding not done yet at FORWARD) is dropped, a later
    one goes: the kernel's IPS_NAT_DONE_MASK test."""
    net = _net(ruleset(post=f'ip daddr {H1.ip} masquerade'))
    from .helpers import GW
    net.reachable(GW)

    def send(at: int) -> list:
        l3 = ipv4(H2.ip, "10.9.0.1", udp(H2.ip, "10.9.0.1", sport=4000, dport=53),
                  proto=17)
        return net.send(WAN, frame_from(H2, l3), at=at)

    out = send(net.now)
    assert len(out) == 1 and expect_ipv4(out[0], dst="10.9.0.1", ifindex=WAN)
    out = send(net.now + SECOND)
    assert len(out) == 2, out
    red = expect_ipv4(out[0], src=WAN_IP, dst=H2.ip, ifindex=WAN)
    assert red.payload[0] == 5 and red.payload[4:8] == bytes([10, 0, 2, 254])
    assert net.router.counters.drops[DropReason.NAT_UNTRANSLATABLE] == 1


def test_port_down_kills_the_entries_masqueraded_through_it_only() -> None:
    """masq_device_event(NETDEV_DOWN): Router.set_link(down, admin=True) (the router's
    own device set down) forgets the entries that masquerade chose the port's address
    for; a DNAT entry through the same port and a masqueraded one through another port
    stay.  A carrier loss (the far end down) keeps them all, as the kernel."""
    from .helpers import SMALL
    net = _net(ruleset(post='oifname { "wan0", "small0" } masquerade',
                       pre=f'iifname "wan0" udp dport 5000 dnat to {H1.ip}'))
    net.reachable(H4)
    send_udp(net, H1, H2.ip)
    send_udp(net, H1, H4.ip)
    _, out = send_udp(net, H2, WAN_IP, sport=6000, dport=5000)
    expect_ipv4(out[0], src=H2.ip, dst=H1.ip)
    ct = net.router.nf.conntrack
    assert sorted(c.masq for c in ct.entries() if c.masq) == [
        (WAN, bytes([10, 0, 2, 1])), (SMALL, bytes([10, 0, 4, 1]))]
    net.router.set_link(WAN, False, net.now)
    assert len(ct) == 3
    net.router.set_link(WAN, True, net.now)
    net.router.set_link(WAN, False, net.now, admin=True)
    assert len(ct) == 2
    assert [c.masq for c in ct.entries() if c.masq] == [(SMALL, bytes([10, 0, 4, 1]))]
    assert [c.orig[2] for c in ct.entries() if not c.masq] == [bytes([10, 0, 2, 1])]
    # up again: the next packet of the flow is a new connection, masqueraded afresh
    net.router.set_link(WAN, True, net.now)
    net.reachable(H2)
    _, out = send_udp(net, H1, H2.ip)
    expect_ipv4(out[0], src=WAN_IP, dst=H2.ip)
    assert net.router.nf.conntrack.stats["insert"] == 4


# -- get_unique_tuple step 1: find_appropriate_src; persistent ranges -------------------
def test_a_source_keeps_its_mapping_towards_other_destinations() -> None:
    """find_appropriate_src: H1B:40000 was given port X (H1 holds 40000 toward H2); its
    next connection from the same port reuses X (endpoint-independent mapping) although
    40000 would be free toward that destination.  Toward H3 (masquerade picks wan0's
    other address) X is not in the range: the original port."""
    from .helpers import H3
    net = _net(MASQ)
    net.reachable(H1B)
    net.reachable(H3)
    send_udp(net, H1, H2.ip)
    _, b = send_udp(net, H1B, H2.ip)
    x = ports(expect_ipv4(b[0], src=WAN_IP))[0]
    assert x != 40000
    _, again = send_udp(net, H1B, H2.ip, dport=33435)
    ip = expect_ipv4(again[0], src=WAN_IP, dst=H2.ip)
    assert ports(ip) == (x, 33435)
    l4_ok(ip)
    _, other = send_udp(net, H1B, H3.ip)
    assert ports(expect_ipv4(other[0], src="10.0.20.1", dst=H3.ip)) == (40000, 33434)
    # H1's own next connection: its original tuple is free, kept
    _, h1 = send_udp(net, H1, H2.ip, dport=33436)
    assert ports(expect_ipv4(h1[0], src=WAN_IP)) == (40000, 33436)


def test_a_dead_mapping_is_not_reused_and_the_index_stays_bounded() -> None:
    net = _net(MASQ)
    net.reachable(H1B)
    send_udp(net, H1, H2.ip)
    _, b = send_udp(net, H1B, H2.ip)
    x = ports(expect_ipv4(b[0], src=WAN_IP))[0]
    net.run_until(net.now + 31 * SECOND)              # both unreplied UDP entries expire
    ct = net.router.nf.conntrack
    assert len(ct) == 0
    _, again = send_udp(net, H1B, H2.ip, dport=33435)
    assert ports(expect_ipv4(again[0], src=WAN_IP))[0] == 40000 != x
    for i in range(400):                              # many sources, each gone in turn
        send_udp(net, H1, H2.ip, sport=1024 + i)
        if i % 100 == 99:
            net.run_until(net.now + 31 * SECOND)
    assert len(ct) == 0 and len(ct.nat_bysource) <= 2 * 100 + 65
    send_udp(net, H1, H2.ip, sport=9999)              # the next binding rebuilds it
    assert len(ct) == 1 and len(ct.nat_bysource) == 1


@pytest.mark.parametrize("flags,same", [("persistent", True), ("", False)])
def test_persistent_gives_a_client_one_address_of_the_range(flags: str, same: bool) -> None:
    """snat to a range: the address is a hash of the source and, without persistent, of
    the destination too (find_best_ips_proto); persistent: one address per client."""
    from .helpers import GW
    net = _net(ruleset(post=f'oifname "wan0" snat to 10.0.2.100-10.0.2.163 {flags}'))
    net.reachable(GW)
    seen = set()
    for i in range(8):
        dst = f"10.9.0.{i + 1}"
        l3 = ipv4(H1.ip, dst, udp(H1.ip, dst, sport=40000 + i, dport=53), proto=17)
        ip = expect_ipv4(net.send(LAN, frame_from(H1, l3))[0], dst=dst, ifindex=WAN)
        seen.add(ip.src)
        l4_ok(ip)
    assert all(s.startswith("10.0.2.") and 100 <= int(s.rsplit(".", 1)[1]) <= 163
               for s in seen), seen
    assert (len(seen) == 1) is same, seen


def test_dnat_persistent_sends_a_client_to_one_backend() -> None:
    net = _net(ruleset(pre=f'iifname "wan0" dnat to 10.0.1.10-10.0.1.11 persistent'))
    net.reachable(H1B)
    from .helpers import H3
    net.reachable(H3)
    got = set()
    for i, dst in enumerate([WAN_IP, "10.0.20.1"] * 3):
        for host in (H2, H3):
            l3 = ipv4(host.ip, dst, udp(host.ip, dst, sport=5000 + i, dport=53), proto=17)
            ip = expect_ipv4(net.send(WAN, frame_from(host, l3))[0], ifindex=LAN)
            got.add((host.ip, ip.dst))
    assert len(got) == 2 and {h for h, _ in got} == {H2.ip, H3.ip}, got


# -- IPv6 [addr]:port, nft's listing --------------------------------------------------
def _pre(fam: str, rules: str) -> str:
    return (f"table {fam} nat {{\n  chain pre {{\n    type nat hook prerouting priority "
            f"dstnat; policy accept;\n{rules}\n  }}\n}}\n")


def test_listing_matches_nft() -> None:
    """What ``nft list ruleset`` printed for the same input (nftables 1.x, checked in a
    namespace): the family word only in inet tables (also when a match implied it),
    canonical addresses, brackets only with a port, flags in nft's order."""
    given = [
        ("ip6", "tcp dport 8080 dnat ip6 to [2001:db8::10]:80",
         "tcp dport 8080 dnat to [2001:db8::10]:80"),
        ("ip6", "tcp dport 8081 dnat to [2001:db8::10]:80-90",
         "tcp dport 8081 dnat to [2001:db8::10]:80-90"),
        ("ip6", "tcp dport 8082 dnat to [2001:db8::10]-[2001:db8::20]:80",
         "tcp dport 8082 dnat to [2001:db8::10]-[2001:db8::20]:80"),
        ("ip6", "tcp dport 8083 dnat to 2001:db8::10-2001:db8::20",
         "tcp dport 8083 dnat to 2001:db8::10-2001:db8::20"),
        ("ip6", "tcp dport 8084 dnat to [2001:db8::10]", "tcp dport 8084 dnat to 2001:db8::10"),
        ("ip6", "tcp dport 8086 dnat to [2001:db8::10]:80 persistent,random",
         "tcp dport 8086 dnat to [2001:db8::10]:80 random,persistent"),
        ("ip6", "meta l4proto { tcp, udp } dnat to [2001:0db8:0::0010]:53",
         "meta l4proto { tcp, udp } dnat to [2001:db8::10]:53"),
        ("ip6", "tcp dport 4 redirect to :80 fully-random,persistent,random",
         "tcp dport 4 redirect to :80 random,fully-random,persistent"),
        ("ip6", "tcp dport 1 dnat to [::2]:80-80", "tcp dport 1 dnat to [::2]:80-80"),
        ("ip6", "tcp dport 1 dnat to [::5]-::6", "tcp dport 1 dnat to ::5-::6"),
        ("inet", "meta nfproto ipv6 tcp dport 8080 dnat ip6 to [2001:db8::10]:80",
         "meta nfproto ipv6 tcp dport 8080 dnat ip6 to [2001:db8::10]:80"),
        ("inet", "ip saddr 1.2.3.4 dnat to 10.0.0.1", "ip saddr 1.2.3.4 dnat ip to 10.0.0.1"),
        ("inet", "ip6 saddr ::1 tcp dport 1 dnat to [::2]:80",
         "ip6 saddr ::1 tcp dport 1 dnat ip6 to [::2]:80"),
        ("ip", "tcp dport 8080 dnat to 10.0.0.1-10.0.0.3:80-90",
         "tcp dport 8080 dnat to 10.0.0.1-10.0.0.3:80-90"),
        ("ip", "tcp dport 8081 dnat ip to 10.0.0.1", "tcp dport 8081 dnat to 10.0.0.1"),
    ]
    for fam, rule, want in given:
        text = compile_ruleset(_pre(fam, "    " + rule)).list()
        assert f"\t\t{want}\n" in text, (rule, text)


@pytest.mark.parametrize("fam,rule,msg,at", [
    ("ip6", "dnat to [2001:db8::1]:1000-2000",
     "transport protocol mapping is only valid after transport protocol match", "1000-"),
    ("ip6", "th dport 53 dnat to [2001:db8::1]:1000",
     "transport protocol mapping is only valid after transport protocol match", "1000"),
    ("ip6", "redirect to :80", "transport protocol mapping is only valid", "80"),
    ("ip6", "tcp dport 1 redirect to :1000-", "expected ports 1-65535", "1000-"),
    ("ip6", "tcp dport 1 dnat to [2001:db8::1", "expected ']'", None),
    ("ip6", "tcp dport 1 dnat to [10.0.0.1]:80", "expected an IPv6 address in the brackets",
     "10.0"),
    ("ip6", "tcp dport 1 dnat to [::1]:90-80", "expected ports 1-65535", "90-"),
    ("ip6", "tcp dport 1 dnat to [::1]:70000", "expected ports 1-65535", "70000"),
    ("ip6", "tcp dport 1 dnat to [::5]-[::1]", "the address range is reversed", "[::5]"),
    ("ip6", "tcp dport 1 dnat to [::5]-:80", "expected '[' and the range's last", ":80"),
    ("ip6", "tcp dport 1 dnat ip to 10.0.0.1", "conflicting protocols specified", "dnat"),
    ("ip", "tcp dport 1 dnat to [::1]:80", "brackets are for IPv6", "[::1]"),
    ("inet", "tcp dport 1 dnat to 10.0.0.1",
     "ip or ip6 must be specified with address for inet tables", "dnat"),
    ("inet", "tcp dport 1 dnat ip6 to 10.0.0.1:80", "an IPv4 address in an ip6 nat statement",
     "10.0"),
])
def test_ipv6_port_syntax_errors(fam: str, rule: str, msg: str, at: str | None) -> None:
    """Rejected with file:line:col of the offending token (the same inputs nft -c
    rejects; its messages where it has one for the case)."""
    with pytest.raises(NftError) as e:
        compile_ruleset(_pre(fam, "    " + rule), "nat6.nft")
    col = 5 + (rule.rindex(at) if at is not None else len(rule))
    assert msg in str(e.value) and f"nat6.nft:4:{col}:" in str(e.value), str(e.value)


NAT6_PORTS = """\
nftables:
  ruleset: |
    table ip6 nat {
      chain pre {
        type nat hook prerouting priority dstnat; policy accept;
        iifname "wan0" tcp dport 8080 dnat to [2001:db8:1::10]:80
      }
      chain post {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan0" meta l4proto udp snat to [2001:db8:2::1]:2000-2001
      }
    }
"""


def _tcp6(src: str, dst: str, sport: int, dport: int, flags: int = TCP_SYN) -> bytes:
    from .helpers6 import pseudo6
    seg = bytearray(tcp("10.0.0.1", "10.0.0.2", sport=sport, dport=dport, flags=flags))
    seg[16:18] = b"\0\0"
    seg[16:18] = struct.pack("!H", checksum(bytes(seg), pseudo6(src, dst, 6, len(seg))))
    return bytes(seg)


def test_ipv6_dnat_and_snat_with_ports() -> None:
    from .helpers6 import (CONFIG6, H1 as A, H1B as A2, H2 as B, Net6, expect_ip6, frame6,
                           ip6, udp6)
    net = Net6(config=CONFIG6 + NAT6_PORTS)
    net.ready()
    for h in (A, A2, B):
        net.learn6(h)
    r_wan = "2001:db8:2::1"
    out = net.send(WAN, frame6(B, ip6(B.ip, r_wan, 6, _tcp6(B.ip, r_wan, 50000, 8080))))
    ip = expect_ip6(out[0], src=B.ip, dst=A.ip)
    _csum6_ok(ip)
    assert struct.unpack("!HH", ip.payload[:4]) == (50000, 80)
    back = net.send(LAN, frame6(A, ip6(A.ip, B.ip, 6, _tcp6(A.ip, B.ip, 80, 50000,
                                                             TCP_SYN | TCP_ACK))))
    ip = expect_ip6(back[0], src=r_wan, dst=B.ip)
    _csum6_ok(ip)
    assert struct.unpack("!HH", ip.payload[:4]) == (8080, 50000)
    got = []
    for h in (A, A2):
        o = net.send(LAN, frame6(h, ip6(h.ip, B.ip, 17, udp6(h.ip, B.ip, sport=4000,
                                                             dport=53))))
        ipu = expect_ip6(o[0], src=r_wan, dst=B.ip)
        _csum6_ok(ipu)
        got.append(struct.unpack("!H", ipu.payload[:2])[0])
    assert sorted(got) == [2000, 2001]


# -- DNAT at OUTPUT: the router's own packets are routed again (ip_route_me_harder) ---
def _out_nat(fam: str, rule: str) -> str:
    return (f"table {fam} nat {{\n  chain out {{\n    type nat hook output priority -100; "
            f"policy accept;\n    {rule}\n  }}\n}}\n")


def test_output_dnat_reroutes_the_routers_own_packet() -> None:
    """The router pings 10.0.2.99 (routed out wan0, source 10.0.2.1); the output nat
    chain moves it to H4, so it is routed again and leaves by small0 (the source stays,
    as ip_route_me_harder keeps it).  H4's reply is un-NATed at INPUT: the ping sees
    10.0.2.99 answer."""
    from pyrouter.core.ip.sock import send_echo

    from .helpers import SMALL, ip2int
    net = _net(_out_nat("ip", f"ip daddr 10.0.2.99 dnat to {H4.ip}"))
    net.reachable(H4)
    assert send_echo(net.router, ip2int("10.0.2.99"), 0x4242, 1, net.now)
    out = net.drain()
    assert len(out) == 1, out
    ip = expect_ipv4(out[0], src=WAN_IP, dst=H4.ip, ifindex=SMALL)
    l4_ok(ip)
    rep = ipv4(H4.ip, WAN_IP, echo(ident=0x4242, seq=1, reply=True,
                                   data=bytes(ip.payload[8:])), proto=1)
    net.send(SMALL, frame_from(H4, rep))
    c = net.router.nf.conntrack.entries()[0]
    assert c.orig[2] == bytes([10, 0, 2, 99]) and c.reply[1] == bytes([10, 0, 4, 40])
    assert c.packets == [1, 1]


def test_output_dnat_to_an_unroutable_address_is_dropped() -> None:
    from pyrouter.core.ip.sock import send_echo

    from .helpers import ip2int
    net = _net(_out_nat("ip", "ip daddr 10.0.2.99 dnat to 198.51.100.7"))
    assert send_echo(net.router, ip2int("10.0.2.99"), 0x4243, 1, net.now)
    assert net.drain() == []
    assert net.snmp("IpOutNoRoutes") == 1
    assert net.router.counters.drops[DropReason.NO_ROUTE] == 1


def test_output_dnat_reroutes_ipv6() -> None:
    from pyrouter.core.ip6.sock6 import send_echo6

    from .helpers6 import CONFIG6, Net6, expect_ip6
    h4 = "2001:db8:4::40"
    net = Net6(config=CONFIG6 + "nftables:\n  ruleset: |\n" + "".join(
        "    " + ln + "\n" for ln in _out_nat("ip6", f"ip6 daddr 2001:db8:2::99 dnat to {h4}")
        .splitlines()))
    net.ready()
    from .helpers6 import H4 as B4
    net.learn6(B4)
    assert send_echo6(net.router, int.from_bytes(bytes.fromhex(
        "20010db8000200000000000000000099"), "big"), 0x77, 1, net.now)
    out = net.drain()
    assert len(out) == 1, out
    ip = expect_ip6(out[0], src="2001:db8:2::1", dst=h4)
    assert out[0][0] == 3
    _csum6_ok(ip)
