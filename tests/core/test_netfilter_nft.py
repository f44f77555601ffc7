"""nftables rulesets (core/netfilter/nft_parse.py, nft_compile.py) on crafted frames:
matches, sets and maps, jump/goto/return, counters, limit on virtual time, log,
reject types, meta mark set, the listing, and parse errors with line and column."""

from __future__ import annotations

import textwrap

import pytest

from pyrouter.control.load import ConfigError
from pyrouter.core.netfilter.nft_compile import compile_ruleset
from pyrouter.core.netfilter.nft_parse import NftError

from .helpers import (H1, H2, LAN, R_IP, SECOND, TCP_ACK, TCP_RST, TCP_SYN, TOPOLOGY, WAN,
                      Net, expect_error, expect_ipv4, expect_tcp, frame_from, ipv4, ping, tcp,
                      udp)


def nft_net(ruleset: str, extra: str = "") -> Net:
    body = textwrap.indent(textwrap.dedent(ruleset).strip("\n"), "    ")
    net = Net(config=TOPOLOGY + "nftables:\n  ruleset: |\n" + body + "\n" + extra)
    net.reachable(H1)
    net.reachable(H2)
    return net


def fwd_tcp(net: Net, dport: int, flags: int = TCP_SYN, sport: int = 40000,
            src: str = H1.ip) -> list:
    l3 = ipv4(src, H2.ip, tcp(src, H2.ip, sport=sport, dport=dport, flags=flags), proto=6)
    return net.send(LAN, frame_from(H1, l3))


def fwd_udp(net: Net, dport: int, ttl: int = 64) -> tuple[bytes, list]:
    l3 = ipv4(H1.ip, H2.ip, udp(H1.ip, H2.ip, dport=dport), proto=17, ttl=ttl)
    return l3, net.send(LAN, frame_from(H1, l3))


FIREWALL = """
table inet filter {
  chain forward {
    type filter hook forward priority filter; policy accept;
    tcp dport 23 counter drop
    tcp dport 25 counter reject with tcp reset
    meta l4proto udp counter reject with icmp type port-unreachable
    counter
  }
}
"""


def test_stateless_firewall_verdicts_and_counters() -> None:
    net = nft_net(FIREWALL)
    assert fwd_tcp(net, 23) == []
    assert net.drops()["nf_drop"] == 1
    out = fwd_tcp(net, 25)
    assert len(out) == 1
    expect_tcp(out[0], src=H2.ip, dst=H1.ip, sport=25, dport=40000, seq=0, ack=1001,
               flags=TCP_RST | TCP_ACK, ttl=64, df=True)
    l3, out = fwd_udp(net, 53)
    assert len(out) == 1
    expect_error(out[0], type=3, code=3, about=_ttl_minus_one(l3), src=R_IP[LAN])
    assert len(fwd_tcp(net, 80)) == 1 and out[0][0] == LAN
    rows = net.router.nf.ruleset.counters()
    assert [(r["rule"], r["packets"]) for r in rows] == [(0, 1), (1, 1), (2, 1), (3, 1)]
    assert rows[3]["bytes"] == 40 and rows[0]["bytes"] == 40
    text = net.router.nf.ruleset.list()
    assert "tcp dport 23 counter packets 1 bytes 40 drop" in text
    assert "type filter hook forward priority filter; policy accept;" in text


def _ttl_minus_one(l3: bytes) -> bytes:
    """The packet as FORWARD saw it: TTL decremented, checksum updated."""
    from .helpers import parse_ipv4  # noqa: PLC0415
    ip = parse_ipv4(l3)
    return ipv4(ip.src, ip.dst, ip.payload, proto=ip.proto, ttl=ip.ttl - 1, ident=ip.ident,
                tos=ip.tos, df=ip.df)


def test_reject_with_tcp_reset_to_an_ack_segment_takes_its_ack_as_seq() -> None:
    net = nft_net(FIREWALL)
    l3 = ipv4(H1.ip, H2.ip, tcp(H1.ip, H2.ip, dport=25, seq=5, ack=777, flags=TCP_ACK), proto=6)
    out = net.send(LAN, frame_from(H1, l3))
    expect_tcp(out[0], src=H2.ip, dst=H1.ip, seq=777, flags=TCP_RST)
    # never a reset about a reset
    l3 = ipv4(H1.ip, H2.ip, tcp(H1.ip, H2.ip, dport=25, flags=TCP_RST), proto=6)
    assert net.send(LAN, frame_from(H1, l3)) == []


@pytest.mark.parametrize("with_,code", [("icmp type host-unreachable", 1),
                                        ("icmp admin-prohibited", 13),
                                        ("icmpx type admin-prohibited", 13),
                                        ("icmpx no-route", 0), ("", 3)])
def test_reject_icmp_types(with_: str, code: int) -> None:
    rej = f"reject with {with_}" if with_ else "reject"
    net = nft_net(f"""
    table ip f {{
      chain fwd {{ type filter hook forward priority 0; policy accept;
        udp dport 9 {rej}
      }}
    }}""")
    l3, out = fwd_udp(net, 9)
    assert len(out) == 1
    expect_error(out[0], type=3, code=code, about=_ttl_minus_one(l3), src=R_IP[LAN])


def test_forward_drop_still_lets_the_router_send_time_exceeded() -> None:
    net = nft_net("""
    table inet filter {
      chain forward { type filter hook forward priority filter; policy drop; }
    }""")
    l3, out = fwd_udp(net, 33434, ttl=1)
    assert len(out) == 1
    expect_error(out[0], type=11, code=0, about=l3, src=R_IP[LAN])
    l3, out = fwd_udp(net, 33434, ttl=5)
    assert out == []


def test_input_and_output_chains() -> None:
    net = nft_net("""
    table ip f {
      chain input { type filter hook input priority 0; policy accept;
        icmp type echo-request counter drop }
      chain output { type filter hook output priority 0; policy accept;
        icmp type destination-unreachable drop }
    }""")
    assert net.send(LAN, ping(H1, R_IP[LAN])) == []
    l3 = ipv4(H1.ip, R_IP[LAN], udp(H1.ip, R_IP[LAN], dport=9), proto=17)
    assert net.send(LAN, frame_from(H1, l3)) == []        # port unreachable dropped at OUTPUT


SETS = """
table inet filter {
  set blocked { type ipv4_addr; flags interval; elements = { 10.0.1.128/25, 10.0.1.50 } }
  set ports { type inet_service; elements = { 1000-1999, 4444 } }
  map by_port { type inet_service : verdict; elements = { 7 : drop, 8 : jump web } }
  chain forward {
    type filter hook forward priority filter; policy accept;
    ip saddr @blocked counter drop
    tcp dport @ports counter drop
    tcp dport { 22, 80, 443 } counter accept
    tcp dport vmap @by_port
    udp dport vmap { 5000-5009 : drop, 6000 : goto web }
    tcp dport != 3000-3999 counter drop
    counter
  }
  chain web {
    tcp dport 8 counter return
    udp dport 6000 counter drop
  }
}
"""


def test_sets_maps_jump_goto_return() -> None:
    net = nft_net(SETS)
    assert fwd_tcp(net, 9, src="10.0.1.50") == []                 # @blocked, single
    assert fwd_tcp(net, 9, src="10.0.1.200") == []                # @blocked, interval
    assert fwd_tcp(net, 1500) == [] and fwd_tcp(net, 4444) == []  # @ports
    assert len(fwd_tcp(net, 443)) == 1                            # anonymous set, accept
    assert fwd_tcp(net, 7) == []                                  # named vmap drop
    # jump web: 'return' comes back, the next rules run: 8 is not in 3000-3999 -> drop
    assert fwd_tcp(net, 8) == []
    assert fwd_udp(net, 5005)[1] == []                            # vmap interval
    assert fwd_udp(net, 6000)[1] == []                            # goto web -> drop
    assert len(fwd_tcp(net, 3500)) == 1                           # falls to policy accept
    assert len(fwd_udp(net, 7000)[1]) == 1
    rows = {(r["chain"], r["rule"]): r["packets"] for r in net.router.nf.ruleset.counters()}
    assert rows == {("forward", 0): 2, ("forward", 1): 2, ("forward", 2): 1,
                    ("forward", 5): 1, ("forward", 6): 2, ("web", 0): 1, ("web", 1): 1}


def test_goto_does_not_come_back() -> None:
    net = nft_net("""
    table ip f {
      chain fwd { type filter hook forward priority 0; policy accept;
        tcp dport 1 goto sub
        tcp dport 1 drop
        tcp dport 2 jump sub
        tcp dport 2 drop
      }
      chain sub { counter }
    }""")
    assert len(fwd_tcp(net, 1)) == 1          # goto: sub falls off -> ends fwd -> policy
    assert fwd_tcp(net, 2) == []              # jump: back to fwd, the drop rule runs


def test_tcp_flags_prefixes_negation_ifnames_lengths_marks() -> None:
    net = nft_net("""
    table ip f {
      chain pre { type filter hook prerouting priority raw; policy accept;
        iifname "lan*" meta mark set 0x7 }
      chain fwd { type filter hook forward priority filter; policy drop;
        tcp flags syn / syn,ack tcp dport 1 drop
        tcp flags & (syn|ack) == syn|ack tcp dport 2 accept
        tcp flags syn tcp dport 3 accept
        ip daddr != 10.0.2.0/24 drop
        meta mark 0x7 oifname "wan0" meta length 40-60 tcp dport 4 accept
        ip saddr 10.0.1.0/24 udp dport 5 accept
      }
    }""")
    assert fwd_tcp(net, 1) == []
    assert len(fwd_tcp(net, 1, flags=TCP_SYN | TCP_ACK)) == 0      # no rule: policy drop
    assert len(fwd_tcp(net, 2, flags=TCP_SYN | TCP_ACK)) == 1
    assert fwd_tcp(net, 2, flags=TCP_SYN) == []
    assert len(fwd_tcp(net, 3, flags=TCP_SYN | TCP_ACK)) == 1     # implicit: any of syn
    assert len(fwd_tcp(net, 4)) == 1                               # mark set at prerouting
    assert len(fwd_udp(net, 5)[1]) == 1
    l3 = ipv4(H1.ip, "10.9.0.5", udp(H1.ip, "10.9.0.5", dport=5), proto=17)
    assert net.send(LAN, frame_from(H1, l3)) == []                 # != prefix -> drop


def test_limit_rate_uses_virtual_time() -> None:
    net = nft_net("""
    table ip f {
      chain fwd { type filter hook forward priority 0; policy drop;
        limit rate 2/second burst 3 packets counter accept
      }
    }""")
    got = [len(fwd_udp(net, 9)[1]) for _ in range(5)]
    assert got == [1, 1, 1, 0, 0]                  # the burst, then over the rate
    net.now += SECOND // 2                         # one token back (2/second)
    assert [len(fwd_udp(net, 9)[1]) for _ in range(2)] == [1, 0]
    net.now += 10 * SECOND                         # refill caps at the burst
    assert sum(len(fwd_udp(net, 9)[1]) for _ in range(5)) == 3


def test_limit_over_inverts() -> None:
    net = nft_net("""
    table ip f {
      chain fwd { type filter hook forward priority 0; policy accept;
        limit rate over 1/minute burst 1 packets drop
      }
    }""")
    assert [len(fwd_udp(net, 9)[1]) for _ in range(3)] == [1, 0, 0]


def test_log_emits_rate_limited_events() -> None:
    net = nft_net("""
    table ip f {
      chain fwd { type filter hook forward priority 0; policy accept;
        udp dport 9 log prefix "fw: " accept
      }
    }""")
    for _ in range(60):
        fwd_udp(net, 9)
    logs = [e for e in net.events if e.name == "nft.log"]
    assert len(logs) == 50                          # LOG_BURST, no time has passed
    assert logs[0].fields["prefix"] == "fw: " and logs[0].fields["dpt"] == 9
    assert logs[0].fields["src"] == H1.ip and logs[0].fields["in"] == "lan0"
    assert net.router.nf.ruleset.log_suppressed == 10


def test_ipv6_table_and_inet_reject() -> None:
    from .helpers6 import H1 as A, H2 as B, Net6, frame6, ip6, udp6  # noqa: PLC0415

    def udp6_pkt(src: str, dst: str, dport: int) -> bytes:
        return ip6(src, dst, 17, udp6(src, dst, dport=dport))

    net = Net6(config=__import__("tests.core.helpers6", fromlist=["CONFIG6"]).CONFIG6
               + "nftables:\n  ruleset: |\n    table inet f {\n      chain fwd {\n"
               "        type filter hook forward priority 0; policy accept;\n"
               "        ip6 saddr 2001:db8:1::/64 udp dport 9 reject\n"
               "        ip6 daddr 2001:db8:2::20 udp dport 10 drop\n      }\n    }\n")
    net.ready()
    net.learn6(A)
    net.learn6(B)
    out = net.send(LAN, frame6(A, udp6_pkt(A.ip, B.ip, dport=9)))
    assert len(out) == 1 and out[0][1][14 + 40] == 1 and out[0][1][14 + 41] == 4
    assert net.send(LAN, frame6(A, udp6_pkt(A.ip, B.ip, dport=10))) == []
    assert len(net.send(LAN, frame6(A, udp6_pkt(A.ip, B.ip, dport=11)))) == 1


def test_hook_priorities_named_with_offsets() -> None:
    rs = compile_ruleset("""
    table ip t {
      chain a { type filter hook forward priority filter - 5; }
      chain b { type filter hook forward priority mangle+1; }
      chain c { type filter hook forward priority -300; }
      chain d { type filter hook forward priority srcnat; }
    }""")
    prios = {ch.name: ch.entry.priority for ch in rs.tables[0].chains.values()}
    assert prios == {"a": -5, "b": -149, "c": -300, "d": 100}


@pytest.mark.parametrize("text,line,col,needle", [
    ("table ip t {\n  chain c {\n    tcp dport 22 acept\n  }\n}", 3, 18, "expected a match"),
    ("table ip t {\n  chain c {\n    tcp port 22 accept\n  }\n}", 3, 9, "expected a tcp field"),
    ("table ip t {\n  chain c { type filter hook forwrd priority 0; }\n}", 2, 30,
     "expected a hook"),
    ("table ip t {\n  chain c {\n    ct state establishd accept\n  }\n}", 3, 14,
     "not a valid ct_state value"),
    ("table ip t {\n  chain c {\n    ct zone 1 accept\n  }\n}", 3, 8, "expected a ct field"),
    ("table ip t {\n  chain c { type route hook output priority mangle; }\n}", 2, 18,
     "not supported yet"),
    ("table ip t {\n  chain c {\n    synproxy\n  }\n}", 3, 5, "not supported yet"),
    ("table ip t {\n  chain c {\n    tcp option window size set 10\n  }\n}", 3, 16,
     "maxseg only"),
    ("table ip t {\n  chain c {\n    jump nowhere\n  }\n}", 3, 10, "no chain named"),
    ("table ip t {\n  chain c {\n    tcp dport 99999 drop\n  }\n}", 3, 15, "not a valid"),
    ("table ip t {\n  chain c {\n    ip saddr 10.0.0.300 drop\n  }\n}", 3, 14, "not a valid"),
    ("table ip t {\n  chain a { jump b }\n  chain b { jump a }\n}", 3, 18, "jump loop"),
    ("table ip t {\n  chain c {\n    reject with icmp type bogus\n  }\n}", 3, 27,
     "not an icmp reject type"),
    ("table ip t {\n  chain c {\n    ip saddr @nope drop\n  }\n}", 3, 14, "no set named"),
    ("table ip t {\n  set s { type inet_service; }\n  chain c {\n    ip saddr @s drop\n  }\n}",
     4, 14, "holds inet_service"),
    ("table ip t {\n  chain c {\n    tcp dport 22 accept\n", 4, 1, "expected a rule or '}'"),
    ("table bridge t { }", 1, 7, "not supported"),
])
def test_parse_errors_name_line_column_and_what_was_expected(text: str, line: int, col: int,
                                                             needle: str) -> None:
    with pytest.raises(NftError) as ei:
        compile_ruleset(text, "rules.nft")
    e = ei.value
    assert (e.file, e.line, e.col) == ("rules.nft", line, col), str(e)
    assert needle in e.msg, str(e)
    assert str(e).startswith(f"rules.nft:{line}:{col}: ")


def test_config_errors_name_the_key_and_position(tmp_path) -> None:
    from pyrouter.control.build import build  # noqa: PLC0415
    from pyrouter.control.load import load  # noqa: PLC0415
    import random  # noqa: PLC0415

    (tmp_path / "r.nft").write_text("table ip t {\n  chain c { tcp dport x drop }\n}\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("interfaces:\n  lan0: {addresses: [10.0.1.1/24]}\nnftables: {file: r.nft}\n")
    with pytest.raises(ConfigError) as ei:
        build(load(cfg), random.Random(0), 0, str(cfg))
    assert ei.value.path == "nftables.file"
    assert f"{tmp_path / 'r.nft'}:2:23:" in ei.value.reason
    cfg.write_text("interfaces:\n  lan0: {addresses: [10.0.1.1/24]}\n"
                   "nftables: {file: r.nft, ruleset: 'x'}\n")
    with pytest.raises(ConfigError) as ei:
        load(cfg)
    assert "exactly one" in str(ei.value)


def test_expect_ipv4_helper_in_use() -> None:
    net = nft_net(FIREWALL)
    out = fwd_tcp(net, 80)
    expect_ipv4(out[0], src=H1.ip, dst=H2.ip, ttl=63, ifindex=WAN)


def test_explain_copy_does_not_touch_live_counters() -> None:
    import copy  # noqa: PLC0415

    net = nft_net(FIREWALL)
    shadow = copy.deepcopy(net.router)
    l3 = ipv4(H1.ip, H2.ip, tcp(H1.ip, H2.ip, dport=23), proto=6)
    shadow.receive(LAN, frame_from(H1, l3), net.now)
    assert shadow.nf.ruleset.counters()[0]["packets"] == 1
    assert net.router.nf.ruleset.counters()[0]["packets"] == 0
    assert fwd_tcp(net, 23) == [] and net.router.nf.ruleset.counters()[0]["packets"] == 1


def test_trace_names_the_table_chain_and_rule_that_dropped() -> None:
    from pyrouter.core.link.ethernet import eth_rcv  # noqa: PLC0415

    net = nft_net(FIREWALL)
    r = net.router
    r.trace = []
    l3 = ipv4(H1.ip, H2.ip, tcp(H1.ip, H2.ip, dport=23), proto=6)
    eth_rcv(r, r.ports[LAN], frame_from(H1, l3), net.now)
    steps, r.trace = r.trace, None
    nf = [s for s in steps if s["stage"] == "nf_drop"]
    assert nf and nf[0]["table"] == "inet filter" and nf[0]["chain"] == "forward"
    assert nf[0]["rule"] == "tcp dport 23 counter drop"
    assert {"stage": "drop", "reason": "nf_drop"} in steps


# -- robustness ----------------------------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as hst  # noqa: E402

_FUZZ = settings(max_examples=150, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow,
                                        HealthCheck.function_scoped_fixture])
_WORDS = ["table", "inet", "ip", "ip6", "chain", "set", "map", "type", "filter", "hook",
          "forward", "priority", "policy", "accept", "drop", "{", "}", ";", "\n", "tcp",
          "udp", "dport", "saddr", "10.0.0.0/8", "22", "1-2", ":", ",", "@s", "jump", "c",
          "goto", "return", "counter", "limit", "rate", "10/second", "reject", "with",
          "icmp", "icmpx", "vmap", "!=", "flags", "syn", "/", "elements", "=", "meta",
          "mark", "set", "0x1", '"x"', "log", "prefix", "ct", "fd00::/64", "&", "(", ")"]


@_FUZZ
@given(hst.lists(hst.sampled_from(_WORDS), max_size=40) | hst.text(max_size=200))
def test_any_text_compiles_or_raises_nft_error_only(words) -> None:
    text = " ".join(words) if isinstance(words, list) else words
    try:
        compile_ruleset(text, "fuzz.nft")
    except NftError:
        pass


_RICH = """
table inet filter {
  set s4 { type ipv4_addr; flags interval; elements = { 10.0.0.0/8 } }
  chain forward {
    type filter hook forward priority filter; policy accept;
    ip saddr @s4 tcp flags syn / syn,ack tcp dport { 1-1000 } counter
    ip6 saddr fd00::/8 udp sport 53 counter
    icmp type echo-request icmp code 0 counter
    icmpv6 type echo-request counter
    meta l4proto { tcp, udp } th dport 7 counter
    tcp dport vmap { 9 : jump c }
    meta length 0-100 counter
  }
  chain c { udp length 8-9 counter return }
}
"""


@_FUZZ
@given(proto=hst.sampled_from([1, 6, 17, 58, 0, 44, 255]), body=hst.binary(max_size=60),
       frag=hst.integers(0, 0x3FFF))
def test_random_packets_through_a_rich_ruleset_never_raise(proto: int, body: bytes,
                                                           frag: int) -> None:
    import struct  # noqa: PLC0415

    from pyrouter.core.netfilter.hooks import Hook, HookState  # noqa: PLC0415
    from pyrouter.core.packet import PacketBuf  # noqa: PLC0415

    rs = compile_ruleset(_RICH)
    entry = rs.tables[0].chains["forward"].entry
    hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 1, frag, 64, proto,
                                0, bytes([10, 0, 0, 1]), bytes([10, 0, 2, 2])))
    for data, pf in ((hdr + body, 4), (bytearray(b"\x60" + bytes(5) + bytes([proto, 64])
                                                 + b"\xfd" + bytes(31)) + body, 6)):
        st = HookState(None, Hook.FORWARD, pf, None, None, 0)   # type: ignore[arg-type]
        assert entry.fn(PacketBuf(bytearray(data)), st) in (0, 1)


def test_reject_dependencies_as_nft_adds_them() -> None:
    """`reject with tcp reset` only matches TCP; in an inet table `reject with icmp` only
    IPv4 (nft inserts meta l4proto tcp / meta nfproto ipv4)."""
    net = nft_net("""
    table inet f {
      chain forward { type filter hook forward priority 0; policy accept;
        udp dport 7 counter reject with tcp reset
        reject with icmp type host-unreachable
      }
    }""")
    l3, out = fwd_udp(net, 7)
    assert len(out) == 1 and out[0][1][14 + 20] == 3 and out[0][1][14 + 21] == 1
    rows = net.router.nf.ruleset.counters()
    assert rows[0]["packets"] == 1          # counted, then the tcp reset did not match
    text = net.router.nf.ruleset.list()
    assert "reject with icmp host-unreachable" in text and "nfproto" not in text


def test_explain_shows_the_rule_that_would_drop() -> None:
    from pyrouter.core.trace import explain  # noqa: PLC0415

    net = nft_net(FIREWALL)
    l3 = ipv4(H1.ip, H2.ip, tcp(H1.ip, H2.ip, dport=23), proto=6)
    res = explain(net.router, LAN, frame_from(H1, l3), net.now)
    steps = res["steps"]
    assert any(s["stage"] == "nf_drop" and s["rule"] == "tcp dport 23 counter drop"
               for s in steps), steps
    assert net.router.nf.ruleset.counters()[0]["packets"] == 0     # nothing changed
    assert net.drain() == []


def test_pktinfo_walks_ipv6_extension_headers_and_skips_later_fragments() -> None:
    import struct  # noqa: PLC0415

    from pyrouter.core.netfilter.view import pktinfo  # noqa: PLC0415

    base = bytearray(40)
    base[0] = 0x60
    udp_hdr = struct.pack("!HHHH", 1, 53, 8, 0)
    hbh = bytes([44, 0, 1, 4, 0, 0, 0, 0])                       # -> Fragment
    first = struct.pack("!BBHI", 17, 0, 0x0001, 7)                # offset 0, M=1
    later = struct.pack("!BBHI", 17, 0, 0x0008 | 1, 7)            # offset 1 (8 bytes)
    d = bytearray(base)
    d[6] = 0
    assert pktinfo(d + hbh + first + udp_hdr, 6) == (17, 56)
    assert pktinfo(d + hbh + later + udp_hdr, 6) == (17, -1)
    assert pktinfo(d + hbh[:4], 6) == (-1, -1)                    # truncated chain
    v4 = bytearray(struct.pack("!BBHHHBBH4s4s", 0x46, 0, 28, 1, 0x2001, 64, 6, 0, bytes(4),
                               bytes(4)))
    assert pktinfo(v4, 4) == (6, -1)                              # a later IPv4 fragment
    v4[6:8] = b"\x20\x00"
    assert pktinfo(v4, 4) == (6, 24)                              # ihl 6: 24-byte header


def test_transport_matches_never_match_a_later_fragment() -> None:
    from .helpers import fragment  # noqa: PLC0415

    net = nft_net("""
    table ip f {
      chain forward { type filter hook forward priority 0; policy accept;
        udp dport 9 counter drop
        ip protocol udp counter
      }
    }""")
    l3 = ipv4(H1.ip, H2.ip, udp(H1.ip, H2.ip, dport=9, data=b"q" * 600), proto=17)
    frags = fragment(l3, 256)
    assert len(frags) >= 2
    outs = [net.send(LAN, frame_from(H1, f)) for f in frags]
    assert outs[0] == [] and all(len(o) == 1 for o in outs[1:])
    rows = net.router.nf.ruleset.counters()
    assert rows[0]["packets"] == 1 and rows[1]["packets"] == len(frags) - 1
