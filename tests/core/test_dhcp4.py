"""DHCPv4 server (core/services/dhcp4.py): crafted client messages, virtual time.

The client side is built and parsed here with struct (no pyrouter.wire), so a
codec bug cannot hide in both the server and its test.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field
from ipaddress import IPv4Address

import pytest

from pyrouter.control.build import build
from pyrouter.control.load import ConfigError, parse
from pyrouter.core import SECOND
from pyrouter.core.services.dhcp4 import dhcp4_show, export_leases, import_leases

from .helpers import BCAST_MAC, Net, arp, checksum, eth, expect_ipv4, ipv4, parse_eth, udp

CONFIG = """\
interfaces:
  lan0:
    addresses: [10.0.1.1/24]
    macaddress: "02:00:00:00:01:01"
    dhcp:
      pool: [10.0.1.100, 10.0.1.103]
      lease_time: 600
      dns: [10.0.1.53, 192.0.2.53]
      domain: lab.example
      static: [{mac: "52:54:00:00:00:99", address: 10.0.1.10}]
  wan0:
    addresses: [10.0.2.1/24]
    macaddress: "02:00:00:00:02:01"
"""
R_MAC = bytes.fromhex("020000000101")
LAN, WAN = 1, 2
MAGIC = b"\x63\x82\x53\x63"

DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = 1, 2, 3, 4, 5, 6, 7, 8


def a2i(a: str) -> int:
    return int(IPv4Address(a))


def dhcp_payload(mtype: int, mac: bytes, *, xid: int = 0x1234, flags: int = 0,
                 ciaddr: str = "0.0.0.0", giaddr: str = "0.0.0.0",
                 opts: list[tuple[int, bytes]] = (), cookie: bytes = MAGIC,
                 end: bool = True) -> bytes:
    fixed = struct.pack("!BBBBIHHIIII16s64s128s", 1, 1, 6, 0, xid, 0, flags, a2i(ciaddr), 0, 0,
                        a2i(giaddr), mac.ljust(16, b"\0"), b"", b"")
    body = bytes((53, 1, mtype))
    for code, val in opts:
        body += bytes((code, len(val))) + val
    if end:
        body += b"\xff"
    return fixed + cookie + body


def client_frame(payload: bytes, mac: bytes, *, src: str = "0.0.0.0",
                 dst: str = "255.255.255.255", eth_dst: bytes = BCAST_MAC,
                 sport: int = 68, dport: int = 67) -> bytes:
    return eth(eth_dst, mac, 0x0800,
               ipv4(src, dst, udp(src, dst, sport, dport, payload), ttl=64))


@dataclass
class Reply:
    eth_dst: bytes
    ip_src: str
    ip_dst: str
    sport: int
    dport: int
    op: int
    xid: int
    flags: int
    ciaddr: str
    yiaddr: str
    giaddr: str
    chaddr: bytes
    options: dict[int, bytes] = field(default_factory=dict)
    order: list[int] = field(default_factory=list)

    @property
    def type(self) -> int:
        return self.options[53][0]

    def addr_opt(self, code: int) -> list[str]:
        v = self.options[code]
        return [str(IPv4Address(v[i:i + 4])) for i in range(0, len(v), 4)]

    def u32(self, code: int) -> int:
        return struct.unpack("!I", self.options[code])[0]


def parse_reply(frame: bytes) -> Reply:
    e = parse_eth(frame)
    assert e.type == 0x0800
    ip = expect_ipv4(frame, proto=17)
    seg = frame[14 + 20:]
    sport, dport, ulen, csum = struct.unpack_from("!HHHH", seg)
    assert ulen == len(seg)
    src, dst = IPv4Address(ip.src).packed, IPv4Address(ip.dst).packed
    pseudo = sum(struct.unpack("!HHHH", src + dst)) + 17 + ulen
    assert csum != 0 and checksum(seg, pseudo) == 0, "UDP checksum"
    msg = seg[8:]
    assert len(msg) >= 300, "BOOTP minimum size"
    (op, _ht, _hl, _hops, xid, _secs, flags, ciaddr, yiaddr, _siaddr, giaddr,
     chaddr) = struct.unpack_from("!BBBBIHHIIII16s", msg)
    assert msg[236:240] == MAGIC
    opts: dict[int, bytes] = {}
    order = []
    i = 240
    while msg[i] != 255:
        if msg[i] == 0:
            i += 1
            continue
        code, n = msg[i], msg[i + 1]
        opts[code] = msg[i + 2:i + 2 + n]
        order.append(code)
        i += 2 + n
    return Reply(e.dst, ip.src, ip.dst, sport, dport, op, xid, flags,
                 str(IPv4Address(ciaddr)), str(IPv4Address(yiaddr)), str(IPv4Address(giaddr)),
                 chaddr[:6], opts, order)


def learn(net: Net, mac: bytes, addr: str) -> None:
    """The host ARPs for the router: the router now has it in its neighbour table."""
    assert len(net.send(LAN, arp(1, mac, addr, bytes(6), "10.0.1.1"))) == 1


def mac_n(n: int) -> bytes:
    return bytes.fromhex(f"5254000000{n:02x}")


class Client:
    """One DHCP client on lan0, doing the RFC 2131 exchanges against a Net."""

    def __init__(self, net: Net, mac: bytes, xid: int = 0x1000) -> None:
        self.net, self.mac, self.xid = net, mac, xid
        self.addr: str | None = None

    def send(self, mtype: int, **kw: object) -> list[tuple[int, bytes]]:
        frame_kw = {k: kw.pop(k) for k in ("src", "dst", "eth_dst") if k in kw}
        self.xid += 1
        return self.net.send(LAN, client_frame(dhcp_payload(mtype, self.mac, xid=self.xid, **kw),
                                               self.mac, **frame_kw))

    def one(self, tx: list[tuple[int, bytes]]) -> Reply:
        assert len(tx) == 1, tx
        assert tx[0][0] == LAN
        rep = parse_reply(tx[0][1])
        assert rep.op == 2 and rep.xid == self.xid and rep.chaddr == self.mac
        assert (rep.sport, rep.dport) == (67, 68)
        return rep

    def dora(self, opts: list[tuple[int, bytes]] = ()) -> Reply:
        offer = self.one(self.send(DISCOVER, flags=0x8000, opts=list(opts)))
        assert offer.type == OFFER
        ack = self.one(self.send(REQUEST, flags=0x8000, opts=[
            (50, IPv4Address(offer.yiaddr).packed), (54, offer.options[54]), *opts]))
        assert ack.type == ACK and ack.yiaddr == offer.yiaddr
        self.addr = ack.yiaddr
        return ack


@pytest.fixture
def net() -> Net:
    return Net(CONFIG)


def test_discover_broadcast_flag_gets_broadcast_offer_with_all_options(net: Net) -> None:
    c = Client(net, mac_n(1))
    rep = c.one(c.send(DISCOVER, flags=0x8000))
    assert rep.type == OFFER
    assert rep.eth_dst == BCAST_MAC and rep.ip_dst == "255.255.255.255"
    assert rep.ip_src == "10.0.1.1"
    assert 100 <= IPv4Address(rep.yiaddr).packed[3] <= 103
    assert rep.ciaddr == "0.0.0.0"
    assert rep.addr_opt(54) == ["10.0.1.1"]
    assert rep.u32(51) == 600 and rep.u32(58) == 300 and rep.u32(59) == 525
    assert rep.addr_opt(1) == ["255.255.255.0"]
    assert rep.addr_opt(3) == ["10.0.1.1"]             # default router: the interface address
    assert rep.addr_opt(6) == ["10.0.1.53", "192.0.2.53"]
    assert rep.options[15] == b"lab.example"
    assert rep.addr_opt(28) == ["10.0.1.255"]
    assert rep.order[:2] == [53, 54]


def test_offer_without_broadcast_flag_is_unicast_to_chaddr_without_arp(net: Net) -> None:
    c = Client(net, mac_n(2))
    tx = c.send(DISCOVER)
    assert len(tx) == 1                                 # no ARP request before it
    rep = c.one(tx)
    assert rep.eth_dst == mac_n(2)
    assert rep.ip_dst == rep.yiaddr and rep.flags == 0


def test_dora_binds_a_lease_and_show_lists_it(net: Net) -> None:
    c = Client(net, mac_n(3))
    ack = c.dora(opts=[(12, b"vm-three")])
    shown = dhcp4_show(net.router, net.now)
    assert shown[0]["dev"] == "lan0" and shown[0]["pool"] == ["10.0.1.100", "10.0.1.103"]
    (lease,) = shown[0]["leases"]
    assert lease == {"addr": ack.yiaddr, "mac": "52:54:00:00:00:03", "state": "bound",
                     "hostname": "vm-three", "client_id": "00525400000003",
                     "expires": 600, "static": False}
    assert [e.name for e in net.events if e.name.startswith("dhcp")] == ["dhcp.lease"]


def test_same_client_gets_same_address_and_different_clients_different(net: Net) -> None:
    a, b = Client(net, mac_n(4)), Client(net, mac_n(5))
    first = a.dora().yiaddr
    other = b.dora().yiaddr
    assert first != other
    again = a.one(a.send(DISCOVER, flags=0x8000))
    assert again.yiaddr == first


def test_client_identifier_is_the_key_not_chaddr(net: Net) -> None:
    cid = (61, b"\x01" + mac_n(6))
    a = Client(net, mac_n(6))
    first = a.dora(opts=[cid]).yiaddr
    b = Client(net, mac_n(7))                         # new NIC, same client identifier
    rep = b.one(b.send(DISCOVER, flags=0x8000, opts=[cid]))
    assert rep.yiaddr == first
    assert rep.options[61] == cid[1]                   # echoed (RFC 6842)


def test_requested_address_in_discover_is_honoured_when_free(net: Net) -> None:
    c = Client(net, mac_n(8))
    rep = c.one(c.send(DISCOVER, flags=0x8000, opts=[(50, IPv4Address("10.0.1.102").packed)]))
    assert rep.yiaddr == "10.0.1.102"
    rep = c.one(c.send(DISCOVER, flags=0x8000, opts=[(50, IPv4Address("10.0.1.200").packed)]))
    assert rep.yiaddr == "10.0.1.102"                  # outside the pool: not given


def test_request_for_another_server_withdraws_the_offer_silently(net: Net) -> None:
    c = Client(net, mac_n(9))
    offer = c.one(c.send(DISCOVER, flags=0x8000))
    tx = c.send(REQUEST, flags=0x8000, opts=[(50, IPv4Address(offer.yiaddr).packed),
                                             (54, IPv4Address("10.0.1.250").packed)])
    assert tx == []
    assert dhcp4_show(net.router, net.now)[0]["leases"] == []


def test_request_for_an_address_not_allowed_is_nakked_by_broadcast(net: Net) -> None:
    c = Client(net, mac_n(10))
    # INIT-REBOOT with an address from another network: NAK, broadcast (giaddr 0).
    rep = c.one(c.send(REQUEST, opts=[(50, IPv4Address("192.168.7.7").packed)]))
    assert rep.type == NAK
    assert rep.eth_dst == BCAST_MAC and rep.ip_dst == "255.255.255.255"
    assert rep.yiaddr == "0.0.0.0" and rep.addr_opt(54) == ["10.0.1.1"]
    assert 51 not in rep.options and 3 not in rep.options


def test_request_for_an_address_leased_to_another_client_is_nakked(net: Net) -> None:
    a, b = Client(net, mac_n(11)), Client(net, mac_n(12))
    taken = a.dora().yiaddr
    rep = b.one(b.send(REQUEST, opts=[(50, IPv4Address(taken).packed)]))
    assert rep.type == NAK


def test_init_reboot_for_a_free_pool_address_is_acked(net: Net) -> None:
    """Authoritative: a client that remembers an address the server has no record of
    (lease file lost) keeps it if nobody else holds it."""
    c = Client(net, mac_n(13))
    rep = c.one(c.send(REQUEST, flags=0x8000, opts=[(50, IPv4Address("10.0.1.101").packed)]))
    assert rep.type == ACK and rep.yiaddr == "10.0.1.101"


def test_renewing_is_unicast_from_ciaddr_and_answered_to_ciaddr(net: Net) -> None:
    c = Client(net, mac_n(14))
    addr = c.dora().yiaddr
    net.now += 300 * SECOND                            # T1
    tx = c.send(REQUEST, ciaddr=addr, src=addr, dst="10.0.1.1", eth_dst=R_MAC)
    # The client has an address now: the router ARPs for it like for any host.
    assert len(tx) == 1 and parse_eth(tx[0][1]).type == 0x0806
    tx = net.send(LAN, arp(2, c.mac, addr, R_MAC, "10.0.1.1", eth_dst=R_MAC))
    rep = c.one(tx)
    assert rep.type == ACK and rep.eth_dst == c.mac
    assert rep.ip_dst == addr and rep.ciaddr == addr and rep.yiaddr == addr
    assert dhcp4_show(net.router, net.now)[0]["leases"][0]["expires"] == 600


def test_rebinding_broadcast_from_ciaddr_is_answered_by_unicast(net: Net) -> None:
    c = Client(net, mac_n(15))
    addr = c.dora().yiaddr
    learn(net, c.mac, addr)
    rep = c.one(c.send(REQUEST, ciaddr=addr, src=addr))
    assert rep.type == ACK and rep.ip_dst == addr


def test_leases_expire_through_the_timer_queue(net: Net) -> None:
    c = Client(net, mac_n(16))
    addr = c.dora().yiaddr
    net.run_until(net.now + 599 * SECOND)
    assert len(dhcp4_show(net.router, net.now)[0]["leases"]) == 1
    net.run_until(net.now + 2 * SECOND)
    assert dhcp4_show(net.router, net.now)[0]["leases"] == []
    assert any(e.name == "dhcp.expired" and e.fields["addr"] == addr for e in net.events)


def test_an_unanswered_offer_is_released_after_the_hold_time(net: Net) -> None:
    c = Client(net, mac_n(17))
    c.one(c.send(DISCOVER, flags=0x8000))
    assert dhcp4_show(net.router, net.now)[0]["leases"][0]["state"] == "offered"
    net.run_until(net.now + 61 * SECOND)
    assert dhcp4_show(net.router, net.now)[0]["leases"] == []


def test_static_lease_by_mac(net: Net) -> None:
    c = Client(net, bytes.fromhex("525400000099"))
    ack = c.dora()
    assert ack.yiaddr == "10.0.1.10"
    other = Client(net, mac_n(18))
    rep = other.one(other.send(REQUEST, opts=[(50, IPv4Address("10.0.1.10").packed)]))
    assert rep.type == NAK                             # reserved for its MAC


def test_pool_exhaustion_is_a_named_drop_and_the_table_stays_bounded(net: Net) -> None:
    clients = [Client(net, mac_n(0x20 + i)) for i in range(4)]
    got = {c.dora().yiaddr for c in clients}
    assert got == {"10.0.1.100", "10.0.1.101", "10.0.1.102", "10.0.1.103"}
    for i in range(50):
        late = Client(net, mac_n(0x40 + i))
        assert late.send(DISCOVER, flags=0x8000) == []
    assert net.drops()["dhcp_no_address"] == 50
    assert len(net.router.dhcp4[LAN].leases) == 4


def test_lease_events_are_rate_limited(net: Net) -> None:
    """A client flood (exhausted pool) cannot flood the log: 20 events, then 1/s."""
    for i in range(4):
        Client(net, mac_n(0x30 + i)).dora()
    for i in range(200):
        Client(net, bytes.fromhex(f"5254000001{i:02x}")).send(DISCOVER, flags=0x8000)
    names = [e.name for e in net.events if e.name.startswith("dhcp.")]
    assert len(names) == 20 and names.count("dhcp.no_address") == 16
    net.now += 3 * SECOND
    Client(net, bytes.fromhex("525400000201")).send(DISCOVER, flags=0x8000)
    last = net.events[-1]
    assert last.name == "dhcp.no_address" and last.fields["suppressed"] == 184
    assert net.drops()["dhcp_no_address"] == 201


def test_release_frees_the_address(net: Net) -> None:
    c = Client(net, mac_n(0x50))
    addr = c.dora().yiaddr
    assert c.send(RELEASE, ciaddr=addr, src=addr, dst="10.0.1.1", eth_dst=R_MAC,
                  opts=[(54, IPv4Address("10.0.1.1").packed)]) == []
    assert dhcp4_show(net.router, net.now)[0]["leases"] == []


def test_decline_takes_the_address_out_of_the_pool(net: Net) -> None:
    c = Client(net, mac_n(0x51))
    addr = c.dora().yiaddr
    assert c.send(DECLINE, opts=[(50, IPv4Address(addr).packed),
                                 (54, IPv4Address("10.0.1.1").packed)]) == []
    (lease,) = dhcp4_show(net.router, net.now)[0]["leases"]
    assert lease["state"] == "declined"
    again = c.one(c.send(DISCOVER, flags=0x8000))
    assert again.yiaddr != addr


def test_inform_gets_options_without_a_lease(net: Net) -> None:
    c = Client(net, mac_n(0x52))
    learn(net, c.mac, "10.0.1.77")
    rep = c.one(c.send(INFORM, ciaddr="10.0.1.77", src="10.0.1.77", dst="10.0.1.1",
                       eth_dst=R_MAC))
    assert rep.type == ACK and rep.yiaddr == "0.0.0.0" and rep.ip_dst == "10.0.1.77"
    assert 51 not in rep.options and 58 not in rep.options
    assert rep.addr_opt(6) == ["10.0.1.53", "192.0.2.53"]
    assert dhcp4_show(net.router, net.now)[0]["leases"] == []


def test_parameter_request_list_orders_the_options(net: Net) -> None:
    c = Client(net, mac_n(0x53))
    rep = c.one(c.send(DISCOVER, flags=0x8000, opts=[(55, bytes([15, 6, 3, 1]))]))
    cfg = [o for o in rep.order if o in (1, 3, 6, 15, 28)]
    assert cfg[:4] == [15, 6, 3, 1]


def test_relay_reply_goes_to_giaddr_port_67(net: Net) -> None:
    # A relay at 10.0.1.5 forwards a client's DISCOVER by unicast to the router.
    relay_mac = mac_n(0x60)
    learn(net, relay_mac, "10.0.1.5")
    payload = dhcp_payload(DISCOVER, mac_n(0x61), xid=77, giaddr="10.0.1.5")
    tx = net.send(LAN, client_frame(payload, relay_mac, src="10.0.1.5", dst="10.0.1.1",
                                    eth_dst=R_MAC, sport=67))
    assert len(tx) == 1
    rep = parse_reply(tx[0][1])
    assert rep.eth_dst == relay_mac and rep.ip_dst == "10.0.1.5"
    assert (rep.sport, rep.dport) == (67, 67) and rep.giaddr == "10.0.1.5"


def test_relayed_request_is_served_from_the_pool_of_the_relay_subnet() -> None:
    net = Net(CONFIG.replace("    addresses: [10.0.2.1/24]\n",
                             "    addresses: [10.0.2.1/24]\n"
                             "    dhcp: {pool: [10.0.2.100, 10.0.2.101]}\n"))
    relay_mac = mac_n(0x62)
    learn(net, relay_mac, "10.0.1.5")
    # The relay on lan0 relays for clients of 10.0.2.0/24 (giaddr there).
    assert len(net.send(WAN, arp(1, mac_n(0x64), "10.0.2.9", bytes(6), "10.0.2.1"))) == 1
    payload = dhcp_payload(DISCOVER, mac_n(0x63), xid=78, giaddr="10.0.2.9")
    tx = net.send(LAN, client_frame(payload, relay_mac, src="10.0.1.5", dst="10.0.1.1",
                                    eth_dst=R_MAC, sport=67))
    assert len(tx) == 1
    rep = parse_reply(tx[0][1])
    assert rep.yiaddr in ("10.0.2.100", "10.0.2.101")
    assert rep.ip_dst == "10.0.2.9" and rep.addr_opt(54) == ["10.0.2.1"]
    # giaddr in a subnet no pool serves: nothing to offer.
    payload = dhcp_payload(DISCOVER, mac_n(0x63), xid=79, giaddr="10.0.7.1")
    assert net.send(LAN, client_frame(payload, relay_mac, src="10.0.1.5", dst="10.0.1.1",
                                      eth_dst=R_MAC, sport=67)) == []
    assert net.drops()["dhcp_no_address"] == 1


def test_nak_echoes_the_client_identifier(net: Net) -> None:
    c = Client(net, mac_n(0x65))
    cid = b"\x01" + mac_n(0x65)
    rep = c.one(c.send(REQUEST, opts=[(50, IPv4Address("192.168.7.7").packed), (61, cid)]))
    assert rep.type == NAK and rep.options[61] == cid


@pytest.mark.parametrize("payload", [
    b"",
    b"\x01" * 100,
    dhcp_payload(DISCOVER, mac_n(1), cookie=b"\x00\x00\x00\x00"),
    dhcp_payload(DISCOVER, mac_n(1))[:239],
    dhcp_payload(DISCOVER, mac_n(1), opts=[(12, b"x" * 5)])[:-4],      # option past the end
    dhcp_payload(DISCOVER, mac_n(1))[:240],                             # no message type
    dhcp_payload(99, mac_n(1)),                                         # unknown type
], ids=["empty", "short", "cookie", "truncated", "option-overrun", "bootp", "type-99"])
def test_malformed_dhcp_is_a_named_drop(net: Net, payload: bytes) -> None:
    tx = net.send(LAN, client_frame(payload, mac_n(1)))
    assert tx == []
    assert net.drops() == {"dhcp_malformed": 1}


def test_dhcp_with_a_bad_udp_checksum_is_dropped(net: Net) -> None:
    seg = bytearray(udp("0.0.0.0", "255.255.255.255", 68, 67, dhcp_payload(DISCOVER, mac_n(1))))
    seg[6] ^= 0x55
    tx = net.send(LAN, eth(BCAST_MAC, mac_n(1), 0x0800, ipv4("0.0.0.0", "255.255.255.255",
                                                                bytes(seg))))
    assert tx == [] and net.drops() == {"udp_csum_error": 1}


def test_random_bytes_never_escape_as_exceptions(net: Net) -> None:
    rng = random.Random(7)
    base = dhcp_payload(REQUEST, mac_n(1), opts=[(50, bytes(4)), (61, b"\x01abc")])
    for _ in range(400):
        p = bytearray(base)
        for _ in range(rng.randint(1, 8)):
            p[rng.randrange(len(p))] = rng.randrange(256)
        net.send(LAN, client_frame(bytes(p[:rng.randint(200, len(p))]), mac_n(1)))
    assert net.drops().get("internal_error", 0) == 0
    assert len(net.router.dhcp4[LAN].leases) <= 5


def test_interface_without_dhcp_keeps_the_old_behaviour(net: Net) -> None:
    tx = net.send(WAN, client_frame(dhcp_payload(DISCOVER, mac_n(1)), mac_n(1)))
    assert tx == [] and net.drops() == {"udp_no_port": 1}


def test_dhcp_to_another_address_is_routed_not_answered(net: Net) -> None:
    """A unicast request to a server elsewhere (a relay's, say) is forwarded."""
    assert len(net.send(WAN, arp(1, mac_n(0x70), "10.0.2.9", bytes(6), "10.0.2.1"))) == 1
    tx = net.send(LAN, client_frame(dhcp_payload(DISCOVER, mac_n(0x71), giaddr="10.0.1.1"),
                                    mac_n(0x71), src="10.0.1.50", dst="10.0.2.9",
                                    eth_dst=R_MAC, sport=67))
    assert len(tx) == 1 and tx[0][0] == WAN
    assert expect_ipv4(tx[0][1], dst="10.0.2.9", ttl=63)


def test_leases_export_and_import_keep_the_address(net: Net) -> None:
    c = Client(net, mac_n(0x80))
    addr = c.dora(opts=[(12, b"keep")]).yiaddr
    offset = 1_700_000_000 * SECOND
    saved = export_leases(net.router, offset)
    assert saved[0]["addr"] == addr and saved[0]["hostname"] == "keep"
    fresh = Net(CONFIG, now=0)
    fresh.now = 100 * SECOND
    # The new process's monotonic clock started elsewhere: the offset differs.
    n = import_leases(fresh.router, saved + [{"dev": "lan0", "addr": "bogus"}, {"x": 1},
                                             {**saved[0], "dev": "nope"}],
                      fresh.now, offset - 50 * SECOND)
    assert n == 1
    (lease,) = dhcp4_show(fresh.router, fresh.now)[0]["leases"]
    assert lease["addr"] == addr and lease["expires"] == 600 + 50 - 100
    c2 = Client(fresh, mac_n(0x80))
    assert c2.one(c2.send(DISCOVER, flags=0x8000)).yiaddr == addr
    # Expired entries are not loaded.
    assert import_leases(Net(CONFIG).router, saved, 0, offset + 10_000 * SECOND) == 0


def test_reload_keeps_leases_that_the_new_config_allows(net: Net) -> None:
    c = Client(net, mac_n(0x90))
    addr = c.dora().yiaddr
    new = build(parse(CONFIG.replace("lease_time: 600", "lease_time: 900")), random.Random(2),
                net.now)
    net.router.adopt(new)
    (lease,) = dhcp4_show(net.router, net.now)[0]["leases"]
    assert lease["addr"] == addr and lease["state"] == "bound"
    assert net.router.dhcp4[LAN].params.lease_time == 900
    net.run_until(net.now + 601 * SECOND)              # the old expiry still holds
    assert dhcp4_show(net.router, net.now)[0]["leases"] == []
    # A pool that no longer holds the address drops the lease on reload.
    c.dora()
    narrowed = build(parse(CONFIG.replace("10.0.1.100, 10.0.1.103", "10.0.1.150, 10.0.1.151")),
                     random.Random(3), net.now)
    net.router.adopt(narrowed)
    assert dhcp4_show(net.router, net.now)[0]["leases"] == []


@pytest.mark.parametrize(("change", "path"), [
    ("pool: [10.0.1.100, 10.0.1.103]", None),
    ("pool: [10.0.9.100, 10.0.9.103]", "interfaces.lan0.dhcp.pool"),
    ("pool: [10.0.1.103, 10.0.1.100]", "interfaces.lan0.dhcp.pool"),
    ('static: [{mac: "52:54:00:00:00:99", address: 10.0.1.1}]',
     "interfaces.lan0.dhcp.static[0].address"),
    ('static: [{mac: "52:54:00:00:00:99", address: 10.0.3.1}]',
     "interfaces.lan0.dhcp.static[0].address"),
    ('static: [{mac: "52:54:00:00:00:99", address: 10.0.1.10}, '
     '{mac: "52:54:00:00:00:99", address: 10.0.1.11}]', "interfaces.lan0.dhcp.static[1].mac"),
])
def test_config_checks(change: str, path: str | None) -> None:
    key = change.split(":")[0]
    lines = [ln for ln in CONFIG.splitlines() if not ln.strip().startswith(key + ":")]
    i = next(j for j, ln in enumerate(lines) if ln.strip() == "dhcp:")
    lines.insert(i + 1, "      " + change)
    text = "\n".join(lines) + "\n"
    if path is None:
        build(parse(text), random.Random(0))
        return
    with pytest.raises(ConfigError) as ei:
        build(parse(text), random.Random(0))
    assert ei.value.path == path


def test_unknown_dhcp_key_is_rejected() -> None:
    with pytest.raises(ConfigError) as ei:
        parse(CONFIG.replace("lease_time: 600", "lease_tim: 600"))
    assert "lease_tim" in str(ei.value)
