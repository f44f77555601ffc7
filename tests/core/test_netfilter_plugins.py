"""Python hook plugins (core/netfilter/plugins.py, control/nf_build.py): registration
from the config, the packet view, modifying bytes with checksums fixed, exceptions
counted with the declared failure verdict, the SIP/RTP example; reload swaps the
ruleset atomically (Router.adopt)."""

from __future__ import annotations

import random
import sys
import types

import pytest
import trio
from trio.testing import MockClock

from pyrouter.control.build import build
from pyrouter.control.load import ConfigError, parse
from pyrouter.core import SECOND
from pyrouter.core.netfilter.hooks import Hook

from .helpers import (H1, H2, LAN, MS, TOPOLOGY, WAN, Net, expect_ipv4, frame_from, ipv4,
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


# ---------------------------------------------------------------------------
# The time bound: every call timed (a fake clock here), slow calls counted, a plugin
# that overruns its budget too often disabled with its failure verdict.
# ---------------------------------------------------------------------------

class FakeClock:
    """A perf_counter_ns stand-in: each plugin call 'takes' what the plugin says."""

    def __init__(self) -> None:
        self.t = 0

    def __call__(self) -> int:
        return self.t


def _timed(net: Net, cost_ms: list[float]) -> FakeClock:
    clock = FakeClock()
    pl = net.router.nf.plugins[0]
    pl.clock = clock
    fn = pl.fn

    def costly(p):
        clock.t += int(cost_ms[0] * MS)
        return fn(p)
    pl.fn = costly
    return clock


def _slow_net(extra: str = "", on_error: str = "accept") -> Net:
    seen: list = []
    _module("nfplug_slow", look=lambda p: seen.append(p.dport))
    net = _net(f"  - {{module: nfplug_slow, function: look, hook: forward, "
               f"on_error: {on_error}{extra}}}\n")
    net.seen = seen                                   # type: ignore[attr-defined]
    return net


def test_calls_within_budget_are_timed_and_never_slow() -> None:
    net = _slow_net(", budget_ms: 5")
    _timed(net, [4.9])
    for _ in range(20):
        assert len(_send(net)) == 1
    st = net.router.nf.plugins[0].stats()
    assert (st["calls"], st["slow"], st["disabled"], st["budget_ms"]) == (20, 0, False, 5.0)
    assert st["time_ms"] == pytest.approx(98.0) and st["max_ms"] == pytest.approx(4.9)
    assert st["verdicts"]["accept"] == 20
    assert not [e for e in net.events if e.name.startswith("nf.plugin")]


@pytest.mark.parametrize("on_error,out,reason", [("accept", 1, None),
                                                 ("drop", 0, "nf_plugin_slow")])
def test_a_plugin_over_budget_too_often_is_disabled_with_its_failure_verdict(
        on_error: str, out: int, reason: str | None) -> None:
    net = _slow_net(", budget_ms: 2, max_slow: 3", on_error)
    _timed(net, [10.0])
    for i in range(4):               # slow calls 1..3 fill the bucket, the 4th trips it
        assert len(_send(net)) == 1  # the verdict of a call that ran is its own
        assert net.router.nf.plugins[0].disabled == (i == 3)
    for _ in range(5):
        assert len(_send(net)) == out
    pl = net.router.nf.plugins[0]
    assert net.seen == [9] * 4 and pl.calls == 4            # no longer called
    assert (pl.slow, pl.skipped, pl.trips) == (4, 5, 1)
    names = [e.name for e in net.events if e.name.startswith("nf.plugin")]
    assert names == ["nf.plugin_slow"] * 4 + ["nf.plugin_disabled"]
    dis = [e for e in net.events if e.name == "nf.plugin_disabled"][0].fields
    assert dis["verdict"] == on_error and dis["retry_after_s"] is None
    if reason:
        assert net.drops()[reason] == 5
    assert net.router.snapshot()["netfilter"]["plugins"][0]["disabled"] is True


def test_slow_calls_leak_away_a_plugin_slow_once_a_second_keeps_running() -> None:
    net = _slow_net(", budget_ms: 1, max_slow: 2")
    _timed(net, [3.0])
    for i in range(30):
        net.now += SECOND
        assert len(_send(net)) == 1
    pl = net.router.nf.plugins[0]
    assert pl.slow == 30 and not pl.disabled and pl.calls == 30
    evs = [e for e in net.events if e.name == "nf.plugin_slow"]
    assert len(evs) == 30 and evs[0].fields["ms"] == 3.0          # 1/s: within the budget


def test_retry_after_tries_one_call_again_half_open() -> None:
    net = _slow_net(", budget_ms: 1, max_slow: 1, retry_after_s: 10", "drop")
    cost = [5.0]
    _timed(net, cost)
    _send(net)
    _send(net)
    pl = net.router.nf.plugins[0]
    assert pl.disabled and pl.calls == 2
    net.now += 9 * SECOND
    assert _send(net) == [] and pl.calls == 2                    # still open
    net.now += SECOND
    assert len(_send(net)) == 1 and pl.calls == 3                # tried, still slow ...
    assert pl.disabled and pl.trips == 2                         # ... so open again
    net.now += 10 * SECOND
    cost[0] = 0.5
    for _ in range(5):
        assert len(_send(net)) == 1
    assert not pl.disabled and pl.calls == 8


def test_reload_gives_a_disabled_plugin_a_fresh_start() -> None:
    net = _slow_net(", budget_ms: 1, max_slow: 1")
    _timed(net, [5.0])
    _send(net)
    _send(net)
    assert net.router.nf.plugins[0].disabled
    net.router.adopt(build(parse(net.config), random.Random(5)))
    assert not net.router.nf.plugins[0].disabled and net.router.nf.plugins[0].calls == 0


def test_budget_config_is_checked() -> None:
    for bad, key in (("budget_ms: 0", "budget_ms"), ("max_slow: 0", "max_slow"),
                     ("retry_after_s: -1", "retry_after_s")):
        with pytest.raises(ConfigError) as ei:
            parse(TOPOLOGY + f"plugins:\n  - {{module: m, function: f, hook: input, {bad}}}\n")
        assert ei.value.path.startswith(f"plugins[0].{key}")


def test_plugin_and_queue_counters_reach_the_metrics_and_show_stats() -> None:
    from pyrouter.cli import fmt  # noqa: PLC0415
    from pyrouter.shell.metrics import render  # noqa: PLC0415

    net = _slow_net(", budget_ms: 1, max_slow: 1")
    _timed(net, [2.0])
    _send(net)
    _send(net)
    net.router.nf.bind_queue(4, maxlen=8, consumer=lambda p: None, name="m.f")
    snap = net.router.snapshot()
    text = render(snap, {})
    assert 'pyrouter_nf_plugin_calls_total{plugin="nfplug_slow.look",hook="forward"} 2' in text
    assert 'pyrouter_nf_plugin_slow_calls_total{plugin="nfplug_slow.look",hook="forward"} 2' \
        in text
    assert 'pyrouter_nf_plugin_disabled{plugin="nfplug_slow.look",hook="forward"} 1' in text
    assert 'pyrouter_nf_queue_waiting{queue="4"} 0' in text
    assert 'pyrouter_nf_queue_timeouts_total{queue="4"} 0' in text
    shown = fmt.stats({"snmp": {}, "drops": {}, "netfilter": snap["netfilter"]})
    assert "#plugin nfplug_slow.look (forward)  DISABLED" in shown
    assert "#queue 4 consumer m.f" in shown


# ---------------------------------------------------------------------------
# Queues from the config: consumers imported, bounded waiting, the failure verdict
# after timeout_ms (router timers, virtual time), reload.
# ---------------------------------------------------------------------------

QRULES = ("nftables:\n  ruleset: |\n    table ip q {\n      chain fwd {\n"
          "        type filter hook forward priority 0; policy accept;\n"
          "        udp dport 9 queue num 1\n      }\n    }\n")


def _qnet(queues: str, rules: str = QRULES) -> Net:
    _module("nfq_c", judge=lambda p: "accept", hang=lambda p: None)
    net = Net(config=TOPOLOGY + rules + "nf_queues:\n" + queues)
    net.reachable(H1)
    net.reachable(H2)
    return net


def test_nf_queues_config_binds_consumers_and_rejects_bad_entries() -> None:
    net = _qnet("  - {num: 1, module: nfq_c, function: judge, maxlen: 4, timeout_ms: 250}\n")
    q = net.router.nf.queues[1]
    assert (q.maxlen, q.fail_open, q.timeout, q.name, q.configured) == (
        4, False, 250 * MS, "nfq_c.judge", True)
    assert q.consumer(None) == "accept"
    base = TOPOLOGY + "nf_queues:\n"
    with pytest.raises(ConfigError) as ei:
        build(parse(base + "  - {num: 1, module: nfq_c, function: judge}\n"
                    "  - {num: 1, module: nfq_c, function: hang}\n"), random.Random(0))
    assert ei.value.path == "nf_queues[1].num"
    with pytest.raises(ConfigError) as ei:
        build(parse(base + "  - {num: 2, module: nfq_c, function: nope}\n"), random.Random(0))
    assert ei.value.path == "nf_queues[0].function"
    with pytest.raises(ConfigError) as ei:
        build(parse(base + "  - {num: 2, module: no.such, function: f}\n"), random.Random(0))
    assert ei.value.path == "nf_queues[0].module"
    for bad, key in (("num: 70000", "num"), ("num: 1, timeout_ms: 0", "timeout_ms"),
                     ("num: 1, maxlen: 0", "maxlen"), ("num: 1, fail: 1", "fail")):
        with pytest.raises(ConfigError) as ei:
            parse(base + f"  - {{module: m, function: f, {bad}}}\n")
        assert ei.value.path.startswith(f"nf_queues[0].{key}"), ei.value.path


@pytest.mark.parametrize("fail_open", [False, True])
def test_a_queued_packet_without_a_verdict_gets_the_failure_verdict_at_its_timeout(
        fail_open: bool) -> None:
    net = _qnet(f"  - {{num: 1, module: nfq_c, function: hang, timeout_ms: 300, "
                f"fail_open: {str(fail_open).lower()}}}\n")
    nf = net.router.nf
    assert _send(net, 9) == []
    assert len(_send(net, 10)) == 1                    # not queued by the rule
    (item,) = nf.pending(1)
    assert net.run_until(299 * MS) == []
    out = net.run_until(300 * MS)
    q = nf.queues[1]
    assert q.timeouts == 1 and not nf.pending(1)
    if fail_open:
        assert [(t, i) for t, i, _ in out] == [(300 * MS, WAN)]
        expect_ipv4(out[0][2], src=H1.ip, dst=H2.ip, ttl=63)
    else:
        assert out == [] and net.drops()["nf_queue_timeout"] == 1
    ev = [e for e in net.events if e.name == "nf.queue_timeout"]
    assert ev[0].fields == {"queue": 1, "consumer": "nfq_c.hang", "timeouts": 1,
                            "verdict": "accept" if fail_open else "drop"}
    assert not nf.reinject(net.router, item.id, 1, net.now)      # too late
    assert net.router.snapshot()["netfilter"]["queues"][0]["timeouts"] == 1


def test_a_verdict_in_time_wins_and_the_stale_timer_does_nothing() -> None:
    net = _qnet("  - {num: 1, module: nfq_c, function: judge, timeout_ms: 300}\n")
    nf = net.router.nf
    _send(net, 9)
    _send(net, 9)
    a, b = nf.pending(1)
    net.now = 100 * MS
    assert nf.reinject(net.router, a.id, 1, net.now)             # accept
    assert nf.reinject(net.router, b.id, 0, net.now)             # drop
    assert len(net.drain()) == 1
    assert net.run_until(SECOND) == [] and nf.queues[1].timeouts == 0
    q = nf.queues[1].stats()
    assert (q["accepted"], q["rejected"], q["waiting"], q["total"]) == (1, 1, 0, 2)


def test_queue_timeouts_survive_timer_compaction_and_stay_bounded() -> None:
    net = _qnet("  - {num: 1, module: nfq_c, function: hang, maxlen: 50, timeout_ms: 500}\n")
    for _ in range(60):
        _send(net, 9)
    assert len(net.router.nf.pending(1)) == 50 and net.drops()["nf_queue_full"] == 10
    net.router._compact_timers()
    net.run_until(SECOND)
    assert net.router.nf.queues[1].timeouts == 50 and net.drops()["nf_queue_timeout"] == 50


def test_consumers_are_woken_with_fresh_packets_only() -> None:
    net = _qnet("  - {num: 1, module: nfq_c, function: judge}\n")
    nf = net.router.nf
    woke: list = []
    _send(net, 9)                                      # nobody runs consumers: not fresh
    assert nf.take_fresh() == []
    nf.wakeup = lambda: woke.append(1)
    _send(net, 9)
    _send(net, 9)
    fresh = nf.take_fresh()
    assert len(woke) == 2 and len(fresh) == 2 and nf.take_fresh() == []
    nf.reinject(net.router, fresh[0].id, 1, net.now)
    assert fresh[0].done and not fresh[1].done
    _send(net, 9)
    nf.reinject(net.router, nf.pending(1)[-1].id, 1, net.now)
    assert nf.take_fresh() == []                       # answered before handed out


def test_reload_updates_queues_and_a_removed_queue_still_times_out() -> None:
    net = _qnet("  - {num: 1, module: nfq_c, function: hang, timeout_ms: 400}\n")
    nf = net.router.nf
    _send(net, 9)
    (old,) = nf.pending(1)
    net.router.adopt(build(parse(net.config.replace("timeout_ms: 400", "timeout_ms: 900")),
                           random.Random(4)))
    assert nf.queues[1].timeout == 900 * MS and nf.pending(1) == [old]
    _send(net, 9)
    net.router.adopt(build(parse(TOPOLOGY + QRULES), random.Random(5)))
    assert 1 not in nf.queues
    assert _send(net, 9) == [] and net.drops()["nf_queue_no_consumer"] == 1
    second = nf._orphans and max(nf._orphans)
    assert nf.reinject(net.router, second, 1, net.now)         # a late verdict still counts
    assert len(net.drain()) == 1
    net.run_until(400 * MS)
    assert net.drops()["nf_queue_timeout"] == 1 and not nf._orphans


def test_explain_copies_queue_parameters_not_the_waiting_packets() -> None:
    import copy  # noqa: PLC0415

    net = _qnet("  - {num: 1, module: nfq_c, function: hang, maxlen: 3}\n")
    _send(net, 9)
    twin = copy.deepcopy(net.router.nf)
    assert twin.queues[1].maxlen == 3 and twin.queues[1].consumer is not None
    assert twin.pending(1) == [] and len(net.router.nf.pending(1)) == 1


# ---------------------------------------------------------------------------
# The shell's consumer runner (shell/nfqueue.py) on trio's MockClock: the core's
# virtual time is trio's, so a consumer's sleep and the queue timeout race for real.
# ---------------------------------------------------------------------------

class _Tx:
    def __init__(self, app) -> None:
        self.app, self.out = app, []

    def flush(self) -> None:
        r = self.app.router
        self.out += [(int(trio.current_time() * SECOND), i, bytes(f)) for i, f in r.tx]
        self.app.events += r.events
        r.tx, r.events = [], []


class _Log:
    def __init__(self) -> None:
        self.lines: list = []

    def warning(self, event: str, **kw) -> None:
        self.lines.append((event, kw))

    info = error = warning


def _runner_app(net: Net):
    from pyrouter.shell.app import TimerTask  # noqa: PLC0415

    app = types.SimpleNamespace(router=net.router, log=_Log(), events=[])
    app.tx = _Tx(app)
    app.timers = TimerTask(app)
    return app


def _run_shell(net: Net, body) -> types.SimpleNamespace:
    """Run *body(app, send)* beside the runner and the timer task, on a MockClock."""
    from pyrouter.shell.nfqueue import QueueRunner  # noqa: PLC0415

    app = _runner_app(net)

    async def main() -> None:
        async with trio.open_nursery() as n:
            await n.start(app.timers.run)
            app.runner = QueueRunner(app)
            await n.start(app.runner.run)

            def send(dport: int = 9) -> None:
                l3 = ipv4(H1.ip, H2.ip, udp(H1.ip, H2.ip, dport=dport, data=b"q" * 8), proto=17)
                net.router.receive(LAN, frame_from(H1, l3), int(trio.current_time() * SECOND))
                app.tx.flush()
                app.timers.rearm()
            await body(app, send)
            n.cancel_scope.cancel()
    trio.run(main, clock=MockClock(autojump_threshold=0))
    return app


def _consumers(**fns) -> None:
    _module("nfq_t", **fns)


async def _later_accept(p):
    await trio.sleep(0.2)
    return "accept"


async def _later_drop(p):
    await trio.sleep(0.1)
    return "drop"


async def _never(p):
    await trio.sleep_forever()


async def _raises(p):
    await trio.sleep(0.05)
    raise RuntimeError("lookup failed")


def test_an_async_consumer_accepts_a_queued_packet_later() -> None:
    _consumers(later=_later_accept)
    net = _qnet("  - {num: 1, module: nfq_t, function: later, timeout_ms: 1000}\n")

    async def body(app, send) -> None:
        send(9)
        send(10)                                     # not queued: out at once
        await trio.sleep(0.1)
        assert len(net.router.nf.pending(1)) == 1 and app.runner.running == 1
        await trio.sleep(0.5)
    app = _run_shell(net, body)
    assert [(t, i) for t, i, _ in app.tx.out] == [(0, WAN), (200 * MS, WAN)]
    ip = expect_ipv4(app.tx.out[1][2], src=H1.ip, dst=H2.ip, ttl=63)
    assert ip.payload[2:4] == b"\x00\x09"
    q = net.router.nf.queues[1]
    assert (q.accepted, q.timeouts, q.errors, len(q.waiting)) == (1, 0, 0, 0)


def test_a_consumer_that_drops_and_many_packets_waiting_at_once() -> None:
    _consumers(later=_later_drop)
    net = _qnet("  - {num: 1, module: nfq_t, function: later}\n")

    async def body(app, send) -> None:
        for _ in range(20):
            send(9)
        await trio.sleep(0.05)
        assert app.runner.running == 20              # one task per waiting packet
        await trio.sleep(0.2)
    app = _run_shell(net, body)
    assert app.tx.out == [] and net.drops()["nf_drop"] == 20
    assert net.router.nf.queues[1].rejected == 20


@pytest.mark.parametrize("fail_open", [False, True])
def test_a_hung_consumer_is_cancelled_and_the_timeout_decides(fail_open: bool) -> None:
    _consumers(never=_never)
    net = _qnet(f"  - {{num: 1, module: nfq_t, function: never, timeout_ms: 300, "
                f"fail_open: {str(fail_open).lower()}}}\n")

    async def body(app, send) -> None:
        send(9)
        await trio.sleep(1)
        assert app.runner.running == 0               # its task gave up at the deadline
    app = _run_shell(net, body)
    q = net.router.nf.queues[1]
    assert q.timeouts == 1 and not q.waiting
    if fail_open:
        assert [(t, i) for t, i, _ in app.tx.out] == [(300 * MS, WAN)]
    else:
        assert app.tx.out == [] and net.drops()["nf_queue_timeout"] == 1
    assert [e.name for e in app.events] == ["nf.queue_timeout"]


@pytest.mark.parametrize("fail_open", [False, True])
def test_a_consumer_that_raises_is_counted_logged_and_gets_the_failure_verdict(
        fail_open: bool) -> None:
    _consumers(bad=_raises, worse=lambda p: 42)
    net = _qnet(f"  - {{num: 1, module: nfq_t, function: bad, "
                f"fail_open: {str(fail_open).lower()}}}\n"
                f"  - {{num: 2, module: nfq_t, function: worse}}\n",
                QRULES.replace("udp dport 9 queue num 1",
                               "udp dport 9 queue num 1\n        udp dport 8 queue num 2"))

    async def body(app, send) -> None:
        send(9)
        send(8)
        await trio.sleep(0.5)
    app = _run_shell(net, body)
    nf = net.router.nf
    assert (nf.queues[1].errors, nf.queues[2].errors) == (1, 1)
    assert [ev for ev, _ in app.log.lines] == ["nf.queue_consumer_error"] * 2
    assert sorted(kw["error"] for _, kw in app.log.lines) == [
        "RuntimeError('lookup failed')", "TypeError('returned 42, not a verdict')"]
    assert len(app.tx.out) == (1 if fail_open else 0)
    assert net.drops()["nf_plugin_error"] == (1 if not fail_open else 0) + 1


def test_a_sync_consumer_and_a_consumer_that_rewrites_the_packet() -> None:
    def mark(p):
        p.set_bytes(p.thoff + 8, b"Z")
        p.fix_checksums()
        return "accept"
    _consumers(mark=mark)
    net = _qnet("  - {num: 1, module: nfq_t, function: mark}\n")

    async def body(app, send) -> None:
        send(9)
        await trio.sleep(0.01)
    app = _run_shell(net, body)
    ip = expect_ipv4(app.tx.out[0][2], src=H1.ip, dst=H2.ip, ttl=63)
    assert ip.payload == udp(H1.ip, H2.ip, dport=9, data=b"Z" + b"q" * 7)


def test_flowgate_example_approves_a_new_flow_after_a_lookup_and_caches(tmp_path,
                                                                      monkeypatch) -> None:
    from pyrouter.plugins import flowgate  # noqa: PLC0415

    policy = tmp_path / "gate.txt"
    policy.write_text(f"# test policy\ndelay_ms 150\ndeny {H2.ip} 10\n")
    monkeypatch.setenv("PYROUTER_FLOWGATE_FILE", str(policy))
    flowgate._cache.clear()
    flowgate._policy["checked"] = -1e18
    for k in flowgate.stats:
        flowgate.stats[k] = 0
    net = _qnet("  - {num: 1, module: pyrouter.plugins.flowgate, function: consumer}\n",
                QRULES.replace("udp dport 9 queue", "udp dport { 9, 10 } queue"))

    async def body(app, send) -> None:
        # The policy file, read as _load's worker thread would (no thread under the
        # MockClock: autojump would move virtual time while it runs).
        mtime, deny, delay = flowgate._read(str(policy))
        assert deny == {(H2.ip, 10)} and delay == 0.15
        flowgate._policy.update(checked=trio.current_time(), mtime=mtime, deny=deny,
                                delay=delay)
        app.t0 = int(trio.current_time() * SECOND)
        send(9)
        send(10)
        await trio.sleep(0.3)
        send(9)                                      # same destination and port: cached
        await trio.sleep(0.01)
    app = _run_shell(net, body)
    assert [(t - app.t0, i) for t, i, _ in app.tx.out] == [(150 * MS, WAN), (300 * MS, WAN)]
    assert net.drops()["nf_drop"] == 1
    assert flowgate.stats == {"lookups": 2, "cached": 1, "allowed": 1, "denied": 1}


def test_flowgate_flows_arriving_while_the_policy_loads_wait_for_it(tmp_path,
                                                                   monkeypatch) -> None:
    """At start the policy is not read yet: the first flows must wait for it rather than
    be judged by an empty one (which would let a denied destination through)."""
    from pyrouter.plugins import flowgate  # noqa: PLC0415

    policy = tmp_path / "gate.txt"
    policy.write_text(f"deny {H2.ip}\n")
    monkeypatch.setenv("PYROUTER_FLOWGATE_FILE", str(policy))
    flowgate._cache.clear()
    flowgate._policy.update(checked=-1e18, mtime=None, deny=set(), delay=0.0)
    reads: list = []

    async def slow_thread(fn, *args):                # the worker thread, in virtual time
        reads.append(args)
        await trio.sleep(0.1)
        return fn(*args)
    monkeypatch.setattr(flowgate.trio.to_thread, "run_sync", slow_thread)
    net = _qnet("  - {num: 1, module: pyrouter.plugins.flowgate, function: consumer}\n",
                QRULES.replace("udp dport 9 queue", "udp dport { 9, 10, 11 } queue"))

    async def body(app, send) -> None:
        for port in (9, 10, 11):
            send(port)
        await trio.sleep(0.5)
    app = _run_shell(net, body)
    assert app.tx.out == [] and net.drops()["nf_drop"] == 3
    assert len(reads) == 1 and not flowgate._loading
