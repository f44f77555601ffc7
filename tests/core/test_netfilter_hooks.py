"""Netfilter hooks (core/netfilter/hooks.py): places in the path, priority order, each
verdict, queues with reinjection, and the router's own ICMP errors passing OUTPUT."""

from __future__ import annotations

from pyrouter.core.netfilter.hooks import (NF_ACCEPT, NF_DROP, NF_REPEAT, NF_STOLEN, Hook,
                                           HookEntry, nf_queue_verdict)

from .helpers import (H1, H2, LAN, R_IP, WAN, Net, expect_error, expect_ipv4, frame_from,
                      ipv4, ping, udp)


def _net() -> Net:
    net = Net()
    net.reachable(H2)
    net.reachable(H1)
    return net


def _udp_l3(ttl: int = 64, dport: int = 5000) -> bytes:
    return ipv4(H1.ip, H2.ip, udp(H1.ip, H2.ip, dport=dport), proto=17, ttl=ttl)


def _record(log: list, tag: str, verdict: int = NF_ACCEPT):
    def fn(pkt, st):
        log.append((tag, st.hook, st.pf, st.indev.name if st.indev else None,
                    st.outdev.name if st.outdev else None))
        return verdict
    return fn


def test_forwarded_packet_passes_prerouting_forward_postrouting_in_order() -> None:
    net = _net()
    log: list = []
    for h in Hook:
        net.router.nf.register(4, h, HookEntry(_record(log, h.name), 0))
    tx = net.send(LAN, frame_from(H1, _udp_l3()))
    assert len(tx) == 1 and tx[0][0] == WAN
    assert log == [("PRE_ROUTING", Hook.PRE_ROUTING, 4, "lan0", None),
                   ("FORWARD", Hook.FORWARD, 4, "lan0", "wan0"),
                   ("POST_ROUTING", Hook.POST_ROUTING, 4, "lan0", "wan0")]


def test_local_delivery_passes_input_and_the_reply_output_postrouting() -> None:
    net = _net()
    log: list = []
    for h in Hook:
        net.router.nf.register(4, h, HookEntry(_record(log, h.name), 0))
    tx = net.send(LAN, ping(H1, R_IP[LAN]))
    assert len(tx) == 1
    assert [e[0] for e in log] == ["PRE_ROUTING", "LOCAL_IN", "LOCAL_OUT", "POST_ROUTING"]
    assert log[1][3] == "lan0" and log[2][4] == "lan0" and log[3][3] is None


def test_entries_run_in_priority_order_ties_in_registration_order() -> None:
    net = _net()
    log: list = []
    nf = net.router.nf
    for tag, prio in (("filter", 0), ("srcnat", 100), ("raw", -300), ("filter2", 0),
                      ("mangle", -150), ("security", 50), ("conntrack", -200),
                      ("dstnat", -100)):
        nf.register(4, Hook.FORWARD, HookEntry(_record(log, tag), prio))
    net.send(LAN, frame_from(H1, _udp_l3()))
    assert [e[0] for e in log] == ["raw", "conntrack", "mangle", "dstnat", "filter", "filter2",
                                   "security", "srcnat"]


def test_drop_stops_later_entries_and_is_counted_nf_drop() -> None:
    net = _net()
    log: list = []
    nf = net.router.nf
    nf.register(4, Hook.FORWARD, HookEntry(_record(log, "a", NF_DROP), -10))
    nf.register(4, Hook.FORWARD, HookEntry(_record(log, "b"), 10))
    before = net.drops().get("nf_drop", 0)
    assert net.send(LAN, frame_from(H1, _udp_l3())) == []
    assert [e[0] for e in log] == ["a"]
    assert net.drops()["nf_drop"] == before + 1


def test_stolen_packet_is_forgotten_not_counted() -> None:
    net = _net()
    kept: list = []

    def steal(pkt, st):
        kept.append(bytes(pkt.data))
        return NF_STOLEN
    net.router.nf.register(4, Hook.FORWARD, HookEntry(steal, 0))
    before = sum(net.drops().values())
    assert net.send(LAN, frame_from(H1, _udp_l3())) == []
    assert len(kept) == 1 and sum(net.drops().values()) == before


def test_repeat_calls_the_same_entry_again_and_is_bounded() -> None:
    net = _net()
    calls = []

    def twice(pkt, st):
        calls.append(1)
        return NF_REPEAT if len(calls) < 3 else NF_ACCEPT
    net.router.nf.register(4, Hook.FORWARD, HookEntry(twice, 0))
    assert len(net.send(LAN, frame_from(H1, _udp_l3()))) == 1
    assert len(calls) == 3
    net.router.nf.clear()
    net.router.nf.register(4, Hook.FORWARD, HookEntry(lambda p, s: NF_REPEAT, 0))
    assert net.send(LAN, frame_from(H1, _udp_l3())) == []
    assert net.drops()["nf_repeat_loop"] == 1


def test_queue_holds_the_packet_until_reinjected_with_accept() -> None:
    net = _net()
    nf = net.router.nf
    after: list = []
    nf.bind_queue(3, maxlen=2)
    nf.register(4, Hook.FORWARD, HookEntry(lambda p, s: nf_queue_verdict(3), 0))
    nf.register(4, Hook.FORWARD, HookEntry(_record(after, "later"), 5))
    assert net.send(LAN, frame_from(H1, _udp_l3(dport=1))) == []
    assert net.send(LAN, frame_from(H1, _udp_l3(dport=2))) == []
    waiting = nf.pending(3)
    assert len(waiting) == 2 and after == []
    # Full (maxlen 2), fail-closed: the third one is dropped.
    assert net.send(LAN, frame_from(H1, _udp_l3(dport=3))) == []
    assert net.drops()["nf_queue_full"] == 1
    assert nf.reinject(net.router, waiting[1].id, NF_ACCEPT, net.now)
    tx = net.drain()
    assert len(tx) == 1 and tx[0][0] == WAN
    ip = expect_ipv4(tx[0], src=H1.ip, dst=H2.ip, ttl=63)
    assert ip.payload[2:4] == b"\x00\x02"
    assert [e[0] for e in after] == ["later"]          # the remaining entries ran
    assert nf.reinject(net.router, waiting[0].id, NF_DROP, net.now)
    assert net.drain() == [] and net.drops()["nf_drop"] == 1
    assert not nf.reinject(net.router, waiting[0].id, NF_ACCEPT, net.now)   # gone


def test_queue_fail_open_and_bypass_accept_when_no_room_or_no_consumer() -> None:
    net = _net()
    nf = net.router.nf
    nf.register(4, Hook.FORWARD, HookEntry(lambda p, s: nf_queue_verdict(7), 0))
    assert net.send(LAN, frame_from(H1, _udp_l3())) == []      # no consumer bound
    assert net.drops()["nf_queue_no_consumer"] == 1
    nf.clear()
    nf.register(4, Hook.FORWARD, HookEntry(lambda p, s: nf_queue_verdict(7, bypass=True), 0))
    assert len(net.send(LAN, frame_from(H1, _udp_l3()))) == 1
    nf.clear()
    nf.bind_queue(8, maxlen=0, fail_open=True)
    nf.register(4, Hook.FORWARD, HookEntry(lambda p, s: nf_queue_verdict(8), 0))
    assert len(net.send(LAN, frame_from(H1, _udp_l3()))) == 1
    assert nf.queues[8].dropped == 1


def test_forward_drop_still_sends_the_routers_time_exceeded_through_output() -> None:
    net = _net()
    out: list = []
    nf = net.router.nf
    nf.register(4, Hook.FORWARD, HookEntry(lambda p, s: NF_DROP, 0))
    nf.register(4, Hook.LOCAL_OUT, HookEntry(_record(out, "out"), 0))
    l3 = _udp_l3(ttl=1)
    tx = net.send(LAN, frame_from(H1, l3))
    assert len(tx) == 1
    expect_error(tx[0], type=11, code=0, about=l3, src=R_IP[LAN])
    assert [e[0] for e in out] == ["out"]
    # A TTL-64 packet is dropped by FORWARD, nothing goes out.
    assert net.send(LAN, frame_from(H1, _udp_l3())) == []


def test_output_drop_suppresses_the_routers_own_icmp() -> None:
    net = _net()
    net.router.nf.register(4, Hook.LOCAL_OUT, HookEntry(lambda p, s: NF_DROP, 0))
    assert net.send(LAN, frame_from(H1, _udp_l3(ttl=1))) == []


def test_fast_path_is_bypassed_while_a_forward_entry_exists() -> None:
    net = _net()
    for _ in range(3):
        net.send(LAN, frame_from(H1, _udp_l3()))
    assert net.router.fast_forwarded >= 1                   # the cache works without hooks
    seen: list = []
    net.router.nf.register(4, Hook.FORWARD, HookEntry(_record(seen, "f"), 0))
    for _ in range(3):
        assert len(net.send(LAN, frame_from(H1, _udp_l3()))) == 1
    assert len(seen) == 3 and not net.router.fwd_cache


def test_ipv6_hooks_see_forwarded_and_own_packets() -> None:
    from .helpers6 import H1 as H61, H2 as H62, R_IP6, Net6, echo6, frame6, udp6_pkt  # noqa

    net = Net6()
    net.ready()
    net.learn6(H62)
    net.learn6(H61)
    log: list = []
    for h in Hook:
        net.router.nf.register(6, h, HookEntry(_record(log, h.name), 0))
    net.router.nf.register(4, Hook.FORWARD, HookEntry(lambda p, s: NF_DROP, 0))   # v4 only
    assert len(net.send(LAN, frame6(H61, udp6_pkt(H61.ip, H62.ip)))) == 1
    assert [e[0] for e in log] == ["PRE_ROUTING", "FORWARD", "POST_ROUTING"]
    assert all(e[2] == 6 for e in log)
    log.clear()
    assert len(net.send(LAN, frame6(H61, echo6(H61.ip, R_IP6[LAN])))) == 1
    assert [e[0] for e in log] == ["PRE_ROUTING", "LOCAL_IN", "LOCAL_OUT", "POST_ROUTING"]
    log.clear()
    net.router.nf.register(6, Hook.FORWARD, HookEntry(lambda p, s: NF_DROP, 0))
    out = net.send(LAN, frame6(H61, udp6_pkt(H61.ip, H62.ip, hlim=1)))
    assert len(out) == 1 and out[0][1][14 + 40] == 3        # Time Exceeded still sent


def test_an_entry_that_raises_is_an_internal_error_drop() -> None:
    net = _net()

    def bad(pkt, st):
        raise RuntimeError("bug")
    net.router.nf.register(4, Hook.PRE_ROUTING, HookEntry(bad, 0))
    assert net.send(LAN, frame_from(H1, _udp_l3())) == []
    assert net.drops()["internal_error"] == 1
