"""Python hook plugins (core/netfilter/plugins.py, control/nf_build.py): registration
from the config, the packet view, modifying bytes with checksums fixed, exceptions
counted with the declared failure verdict, the SIP/RTP example; reload swaps the
ruleset atomically (Router.adopt)."""

from __future__ import annotations

import random
import sys
import types

import pytest

from pyrouter.control.build import build
from pyrouter.control.load import ConfigError, parse
from pyrouter.core.netfilter.hooks import Hook

from .helpers import (H1, H2, LAN, TOPOLOGY, WAN, Net, expect_ipv4, frame_from, ipv4,
                      parse_ipv4, udp)

calls: list = []


def _module(name: str, **fns) -> None:
    m = types.ModuleType(name)
    for k, v in fns.items():
        setattr(m, k, v)
    sys.modules[name] = m


def _net(plugins: str) -> Net:
    net = Net(config=TOPOLOGY + "plugins:\n" + plugins)
    net.reachable(H1)
    net.reachable(H2)
    return net


def _send(net: Net, dport: int = 9, data: bytes = b"x" * 16) -> list:
    l3 = ipv4(H1.ip, H2.ip, udp(H1.ip, H2.ip, dport=dport, data=data), proto=17)
    return net.send(LAN, frame_from(H1, l3))


def test_plugin_sees_headers_and_metadata_and_its_verdict_counts() -> None:
    seen: list = []

    def look(p):
        seen.append((p.hook, p.family, p.iif, p.oif, p.saddr, p.daddr, p.l4proto, p.sport,
                     p.dport, p.ttl, len(p)))
        return "drop" if p.dport == 10 else None
    _module("nfplug_a", look=look)
    net = _net("  - {module: nfplug_a, function: look, hook: forward, family: ip}\n")
    assert len(_send(net, 9)) == 1
    assert seen == [("forward", 4, "lan0", "wan0", H1.ip, H2.ip, 17, 40000, 9, 63, 44)]
    assert _send(net, 10) == []
    assert net.drops()["nf_drop"] == 1
    assert net.router.nf.plugins[0].stats()["calls"] == 2


def test_plugin_rewrites_bytes_and_fixes_checksums() -> None:
    def rewrite(p):
        o = p.thoff + 8
        p.set_bytes(o, b"Y" * 4)
        p.fix_checksums()
        with pytest.raises(ValueError):
            p.set_bytes(len(p) - 1, b"ab")          # never outside the packet
    _module("nfplug_b", rewrite=rewrite)
    net = _net("  - {module: nfplug_b, function: rewrite, hook: postrouting}\n")
    out = _send(net)
    ip = expect_ipv4(out[0], src=H1.ip, dst=H2.ip, ttl=63, ifindex=WAN)
    assert ip.payload[8:12] == b"YYYY"
    assert ip.payload == udp(H1.ip, H2.ip, dport=9, data=b"YYYY" + b"x" * 12)  # checksum ok


@pytest.mark.parametrize("on_error,forwarded,reason", [("accept", 1, None),
                                                       ("drop", 0, "nf_plugin_error")])
def test_plugin_exceptions_are_counted_logged_and_get_the_failure_verdict(
        on_error: str, forwarded: int, reason: str | None) -> None:
    def boom(p):
        raise KeyError("oops")
    _module("nfplug_c", boom=boom, bad=lambda p: 42)
    net = _net(f"  - {{module: nfplug_c, function: boom, hook: prerouting, "
               f"on_error: {on_error}}}\n")
    for _ in range(12):
        assert len(_send(net)) == forwarded
    pl = net.router.nf.plugins[0]
    assert pl.errors == 12
    evs = [e for e in net.events if e.name == "nf.plugin_error"]
    assert len(evs) == 10 and "oops" in evs[0].fields["error"]     # rate-limited
    if reason:
        assert net.drops()[reason] == 12
    net2 = _net("  - {module: nfplug_c, function: bad, hook: forward, on_error: drop}\n")
    assert _send(net2) == [] and net2.router.nf.plugins[0].errors == 1


def test_plugin_config_errors() -> None:
    with pytest.raises(ConfigError) as ei:
        build(parse(TOPOLOGY + "plugins:\n  - {module: no.such.mod, function: f, "
                    "hook: forward}\n"), random.Random(0))
    assert ei.value.path == "plugins[0].module"
    _module("nfplug_d")
    with pytest.raises(ConfigError) as ei:
        build(parse(TOPOLOGY + "plugins:\n  - {module: nfplug_d, function: f, "
                    "hook: forward}\n"), random.Random(0))
    assert ei.value.path == "plugins[0].function"
    with pytest.raises(ConfigError) as ei:
        parse(TOPOLOGY + "plugins:\n  - {module: m, function: f, hook: sideways}\n")
    assert ei.value.path.startswith("plugins[0].hook")


def test_siplog_example_reports_calls_and_rtp_flows() -> None:
    from pyrouter.plugins import siplog  # noqa: PLC0415

    siplog.flows.clear()
    net = _net("  - {module: pyrouter.plugins.siplog, function: hook, hook: forward}\n")
    sdp = "v=0\r\nc=IN IP4 10.0.2.20\r\nm=audio 40002 RTP/AVP 0\r\n"
    invite = ("INVITE sip:bob@example.org SIP/2.0\r\nCall-ID: abc@h1\r\nFrom: <sip:alice>\r\n"
              "To: <sip:bob>\r\nContent-Type: application/sdp\r\n\r\n" + sdp).encode()
    assert len(_send(net, 5060, invite)) == 1
    assert len(_send(net, 40002, b"\x80" * 20)) == 1
    names = [(e.name, e.fields.get("call_id")) for e in net.events if e.name.startswith("plugin")]
    assert names == [("plugin.sip", "abc@h1"), ("plugin.rtp_flow", "abc@h1")]
    assert siplog.flows[("10.0.2.20", 40002)]["packets"] == 1


def test_reload_swaps_the_ruleset_atomically_and_counters_restart() -> None:
    cfg1 = TOPOLOGY + ("nftables:\n  ruleset: |\n    table ip f {\n      chain fwd {\n"
                       "        type filter hook forward priority 0; policy accept;\n"
                       "        udp dport 9 counter drop\n      }\n    }\n")
    net = Net(config=cfg1)
    net.reachable(H1)
    net.reachable(H2)
    assert _send(net, 9) == []
    assert net.router.nf.ruleset.counters()[0]["packets"] == 1
    new = build(parse(cfg1.replace("udp dport 9", "udp dport 10")), random.Random(2))
    net.router.adopt(new)
    assert len(_send(net, 9)) == 1 and _send(net, 10) == []
    assert net.router.nf.ruleset.counters()[0]["packets"] == 1     # the new rule's own count
    assert net.router.nf.v4[Hook.FORWARD][0].name == "nft ip f fwd"
    net.router.adopt(build(parse(TOPOLOGY), random.Random(3)))     # ruleset removed
    assert not any(net.router.nf.v4) and net.router.nf.ruleset is None
    assert len(_send(net, 10)) == 1


def test_pcaprec_example_writes_one_file_per_flow(tmp_path, monkeypatch) -> None:
    from pyrouter.plugins import pcaprec  # noqa: PLC0415
    from pyrouter.wire.pcap import read_records  # noqa: PLC0415

    monkeypatch.setenv("PYROUTER_FLOW_DIR", str(tmp_path))
    pcaprec.close_all()
    net = _net("  - {module: pyrouter.plugins.pcaprec, function: hook, hook: forward}\n")
    _send(net, 9)
    _send(net, 9)
    _send(net, 10)
    pcaprec.close_all()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [f"17-{H1.ip}_40000-{H2.ip}_10.pcap", f"17-{H1.ip}_40000-{H2.ip}_9.pcap"]
    recs = read_records((tmp_path / files[1]).read_bytes())
    assert len(recs) == 2
    ip = parse_ipv4(recs[0][1][14:])
    assert (ip.src, ip.dst, ip.ttl) == (H1.ip, H2.ip, 63)
