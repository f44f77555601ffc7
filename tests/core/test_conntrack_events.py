"""Conntrack events (conntrack -E): NEW at confirm, one UPDATE per packet that changed
the state or the status bits (delivered when the packet passes confirm), DESTROY when a
confirmed entry dies (expiry, RST kill, early drop); the -E line format; no events
while nobody listens; the explain copy reports none."""

from __future__ import annotations

import copy

from pyrouter.core.netfilter.conntrack import event_filter

from .helpers import H1, H2, SECOND, TCP_ACK, TCP_FIN, TCP_SYN, ipv4, frame_from, udp
from .test_conntrack import _net, seg


def listen(net):
    got: list[tuple[str, str]] = []
    net.router.nf.conntrack.listeners.append(lambda kind, c, line: got.append((kind, line)))
    return got


def test_tcp_lifecycle_events_in_conntrack_e_format() -> None:
    net = _net()
    got = listen(net)
    seg(net, H1, H2, 40000, 80, TCP_SYN)
    seg(net, H2, H1, 80, 40000, TCP_SYN | TCP_ACK, seq=5000, ack=1001)
    seg(net, H1, H2, 40000, 80, TCP_ACK, seq=1001, ack=5001)
    seg(net, H1, H2, 40000, 80, TCP_ACK, seq=1001, ack=5001)        # no change: no event
    seg(net, H1, H2, 40000, 80, TCP_FIN | TCP_ACK, seq=1001, ack=5001)
    t = f"src={H1.ip} dst={H2.ip} sport=40000 dport=80"
    r = f"src={H2.ip} dst={H1.ip} sport=80 dport=40000"
    assert got == [
        ("NEW", f"    [NEW] tcp      6 120 SYN_SENT {t} [UNREPLIED] {r}"),
        ("UPDATE", f" [UPDATE] tcp      6 60 SYN_RECV {t} {r}"),
        ("UPDATE", f" [UPDATE] tcp      6 432000 ESTABLISHED {t} {r} [ASSURED]"),
        ("UPDATE", f" [UPDATE] tcp      6 120 FIN_WAIT {t} {r} [ASSURED]"),
    ]
    net.run_until(net.now + 121 * SECOND)
    assert got[-1] == ("DESTROY", f"[DESTROY] tcp      6 FIN_WAIT {t} {r} [ASSURED]")


def test_udp_events_and_filter() -> None:
    net = _net()
    got = listen(net)

    def u(a, b, sp, dp, at):
        l3 = ipv4(a.ip, b.ip, udp(a.ip, b.ip, sport=sp, dport=dp), proto=17)
        return net.send(a.port, frame_from(a, l3), at=at)

    u(H1, H2, 5000, 53, 0)
    u(H2, H1, 53, 5000, SECOND)
    u(H1, H2, 5000, 53, 3 * SECOND)
    assert [k for k, _ in got] == ["NEW", "UPDATE", "UPDATE"]
    assert got[1][1].endswith(f"src={H2.ip} dst={H1.ip} sport=53 dport=5000")
    assert got[2][1].endswith("[ASSURED]") and " 120 " in got[2][1]
    c = net.router.nf.conntrack.entries()[0]
    assert event_filter("udp")(c) and not event_filter("tcp")(c)
    assert event_filter(None, H1.ip)(c) and not event_filter(None, H2.ip)(c)
    assert not event_filter(family="ipv6")(c)


def test_no_listener_no_pending_and_copy_is_silent() -> None:
    net = _net()
    seg(net, H1, H2, 40000, 80, TCP_SYN)
    seg(net, H2, H1, 80, 40000, TCP_SYN | TCP_ACK, seq=5000, ack=1001)
    c = net.router.nf.conntrack.entries()[0]
    assert c.ev == 0
    got = listen(net)
    dup = copy.deepcopy(net.router.nf)
    assert dup.conntrack.listeners == []
    dup.conntrack.flush()
    assert got == []
    net.router.nf.conntrack.flush()
    assert [k for k, _ in got] == ["DESTROY"]
