"""Redirects *received* (__ip_do_redirect): only with accept_redirects (off on a router),
only from the gateway in use, only to a valid on-link neighbour; the router's own
traffic then uses the new gateway for 300 s and `route get` says so."""

from __future__ import annotations

from pyrouter.core.introspect import route_get
from pyrouter.core.ip.sock import send_echo

from .helpers import GW, H2, R_IP, SECOND, TOPOLOGY, WAN, Net, frame_from, icmp, ip2int, ipv4

FAR = "10.9.1.1"
ON = "ipv4: {accept_redirects: true}\n"


def net(extra: str = ON) -> Net:
    n = Net(TOPOLOGY + extra)
    n.reachable(GW)
    n.reachable(H2)
    return n


def redirect(n: Net, sender=GW, new_gw: str = H2.ip) -> None:
    quoted = ipv4(R_IP[WAN], FAR, b"\x08\x00" + bytes(30), proto=1)[:28]
    msg = ipv4(sender.ip, R_IP[WAN], icmp(5, 1, rest=ip2int(new_gw), data=quoted), proto=1)
    n.send(WAN, frame_from(sender, msg))


def next_hop_mac(n: Net) -> bytes:
    assert send_echo(n.router, ip2int(FAR), 9, 1, n.now)
    (_i, f), = n.drain()
    return f[0:6]


def test_accepted_and_used_and_shown() -> None:
    n = net()
    assert next_hop_mac(n) == GW.mac
    redirect(n)
    rg = route_get(n.router, ip2int(FAR), now=n.now)
    assert rg["gateway"] == H2.ip and rg["cache"]["redirected"] and rg["cache"]["expires"] == 300
    assert next_hop_mac(n) == H2.mac
    n.now += 301 * SECOND
    assert next_hop_mac(n) == GW.mac                       # expired


def test_ignored_by_default_and_from_anyone_but_the_gateway() -> None:
    n = net(extra="")
    redirect(n)
    assert next_hop_mac(n) == GW.mac
    n2 = net()
    redirect(n2, sender=H2, new_gw=H2.ip)
    assert next_hop_mac(n2) == GW.mac


def test_unresolved_new_gateway_is_probed_not_used() -> None:
    n = Net(TOPOLOGY + ON)
    n.reachable(GW)
    redirect(n)                                           # H2 unknown: ARP for it, ignore
    assert next_hop_mac(n) == GW.mac
    assert n.router.neigh4.get(WAN, ip2int(H2.ip)) is not None
