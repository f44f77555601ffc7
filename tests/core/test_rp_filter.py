"""fib_validate_source() (route/validate.py): our own address as a source is a martian
in every mode; rp_filter strict wants the reverse route through the input port,
loose any unicast reverse route; the forwarding cache stays out of the way."""

from __future__ import annotations

import pytest

from .helpers import H1, H2, LAN, R_IP, SECOND, TOPOLOGY, Net, frame_from, ipv4, udp

SPOOF = "10.0.2.77"            # reverse route: out wan0, not lan0
NOWHERE = "100.64.0.1"         # no reverse route at all (no default route)


def send(n: Net, src: str) -> list[tuple[int, bytes]]:
    return n.send(LAN, frame_from(H1, ipv4(src, H2.ip, udp(src, H2.ip))))


@pytest.mark.parametrize("mode, spoof_ok, nowhere_ok", [(0, True, True), (1, False, False),
                                                         (2, True, False)])
def test_modes(mode: int, spoof_ok: bool, nowhere_ok: bool) -> None:
    n = Net(TOPOLOGY + f"ipv4: {{rp_filter: {mode}}}\n")
    n.reachable(H1)
    n.reachable(H2)
    assert bool(send(n, SPOOF)) == spoof_ok
    assert bool(send(n, NOWHERE)) == nowhere_ok
    assert bool(send(n, H1.ip))                          # the honest source always passes
    dropped = (not spoof_ok) + (not nowhere_ok)
    assert n.drops().get("rp_filter", 0) == dropped
    assert n.snmp("TcpExtIPReversePathFilter") == dropped
    assert send(n, R_IP[LAN]) == []                       # our own address: martian
    assert n.drops()["martian_src"] == 1


def test_strict_mode_keeps_the_fast_path_out() -> None:
    n = Net(TOPOLOGY + "ipv4: {rp_filter: 1}\n")
    n.reachable(H1)
    n.reachable(H2)
    for _ in range(3):
        assert send(n, H1.ip)
        assert send(n, SPOOF) == []
    assert n.router.fast_forwarded == 0


def test_log_martians_is_rate_limited_and_off_by_default() -> None:
    n = Net(TOPOLOGY)
    n.reachable(H1)
    for _ in range(5):
        send(n, "127.0.0.9")
    assert not [e for e in n.events if e.name.startswith("martian")]
    n2 = Net(TOPOLOGY + "ipv4: {log_martians: true}\n")
    n2.reachable(H1)
    for _ in range(30):
        send(n2, "127.0.0.9")
    logged = [e for e in n2.events if e.name == "martian.source"]
    assert len(logged) == 10                                   # burst of net_ratelimit
    assert logged[0].fields == {"src": "127.0.0.9", "dst": H2.ip, "dev": "lan0"}
    assert n2.drops()["martian_src"] == 30
    n2.now += 5 * SECOND
    send(n2, "127.0.0.9")
    assert len([e for e in n2.events if e.name == "martian.source"]) == 11


def test_route_preferred_source() -> None:
    from pyrouter.core.introspect import route_get

    n = Net(TOPOLOGY.replace("  - {to: 10.9.0.0/16, via: 10.0.2.254}",
                             "  - {to: 10.9.0.0/16, via: 10.0.2.254, src: 10.0.5.1}"))
    assert route_get(n.router, int.from_bytes(bytes([10, 9, 1, 1]), "big"))["prefsrc"] == \
        "10.0.5.1"
