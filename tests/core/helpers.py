"""Builders and gVisor-style checkers for the sans-IO core tests.

Nothing here reads a clock or touches a device: a test builds a Router from a
YAML text (``make_router``), feeds it frames with ``Net.send`` (which wraps
``router.receive`` + ``router.drain``), drives virtual time with ``Net.run_until``
(which calls ``router.tick`` at every deadline the router asks for) and checks
what came out with the ``expect_*`` checkers.

The frame builders and the parsers below are written with ``struct`` on
purpose: they share no code with ``pyrouter.wire``, so a bug there cannot hide
itself in both the router and its test.  (scapy is used by some tests as a
second, independent reference.)

Checkers follow gVisor's ``checker`` package: ``expect_ipv4(frame, src=..., ttl=...)``
asserts every field it is given, always validates what every well-formed
packet must satisfy (header checksum, lengths, version), and returns the parsed
packet so that the test can look further.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any

from pyrouter.control.build import build
from pyrouter.control.load import parse
from pyrouter.control.schema6 import Ipv6Knobs
from pyrouter.core import SECOND
from pyrouter.core.router import Router

MS = SECOND // 1000

# --------------------------------------------------------------------------
# The standard topology
# --------------------------------------------------------------------------
#
#   H1 10.0.1.10 --- lan0 10.0.1.1/24 (ifindex 1)
#   H2 10.0.2.20 --- wan0 10.0.2.1/24 + 10.0.20.1/24 (ifindex 2)   GW 10.0.2.254, H3 10.0.20.30
#   H4 10.0.4.40 --- small0 10.0.4.1/24, mtu 1400 (ifindex 3)
#   H5 10.0.5.50 --- jumbo0 10.0.5.1/24, mtu 9000 (ifindex 4)

LAN, WAN, SMALL, JUMBO = 1, 2, 3, 4

TOPOLOGY = """\
interfaces:
  lan0:
    addresses: [10.0.1.1/24]
    macaddress: "02:00:00:00:01:01"
  wan0:
    addresses: [10.0.2.1/24, 10.0.20.1/24]
    macaddress: "02:00:00:00:02:01"
  small0:
    addresses: [10.0.4.1/24]
    macaddress: "02:00:00:00:04:01"
    mtu: 1400
  jumbo0:
    addresses: [10.0.5.1/24]
    macaddress: "02:00:00:00:05:01"
    mtu: 9000
routes:
  - {to: 10.9.0.0/16, via: 10.0.2.254}
  - {to: 198.51.100.0/24, type: unreachable}
  - {to: 203.0.113.0/24, type: prohibit}
  - {to: 192.0.2.0/24, type: blackhole}
"""

R_MAC = {LAN: bytes.fromhex("020000000101"), WAN: bytes.fromhex("020000000201"),
         SMALL: bytes.fromhex("020000000401"), JUMBO: bytes.fromhex("020000000501")}
R_IP = {LAN: "10.0.1.1", WAN: "10.0.2.1", SMALL: "10.0.4.1", JUMBO: "10.0.5.1"}
R_IP_WAN2 = "10.0.20.1"                     # wan0's second address (another subnet)
ALL_ROUTER_IPS = [(LAN, "10.0.1.1"), (WAN, "10.0.2.1"), (WAN, "10.0.20.1"),
                  (SMALL, "10.0.4.1"), (JUMBO, "10.0.5.1")]
BCAST_MAC = b"\xff" * 6
ZERO_MAC = b"\x00" * 6


@dataclass(frozen=True)
class Host:
    ip: str
    mac: bytes
    port: int


H1 = Host("10.0.1.10", bytes.fromhex("021000000010"), LAN)
H1B = Host("10.0.1.11", bytes.fromhex("021000000011"), LAN)
H2 = Host("10.0.2.20", bytes.fromhex("022000000020"), WAN)
GW = Host("10.0.2.254", bytes.fromhex("0220000000fe"), WAN)
H3 = Host("10.0.20.30", bytes.fromhex("022000000030"), WAN)
H4 = Host("10.0.4.40", bytes.fromhex("024000000040"), SMALL)
H5 = Host("10.0.5.50", bytes.fromhex("025000000050"), JUMBO)


def make_router(config: str = TOPOLOGY, seed: int = 1, now: int = 0) -> Router:
    """The router of *config*.  A config without an ``ipv6:`` section gets DAD,
    unsolicited NAs and MLD reports off, so IPv4 scenarios see no IPv6 chatter
    (tests/core/test_ipv6*.py cover those)."""
    cfg = parse(config)
    if "ipv6:" not in config:
        cfg = cfg.model_copy(update={"ipv6": Ipv6Knobs(accept_dad=0, ndisc_notify=False,
                                                        mld_reports=False)})
    return build(cfg, random.Random(seed), now=now)


def ip2int(ip: str) -> int:
    return int(IPv4Address(ip))


# --------------------------------------------------------------------------
# Checksums and raw builders (independent of pyrouter.wire)
# --------------------------------------------------------------------------

def ones_sum(data: bytes, initial: int = 0) -> int:
    """RFC 1071 ones' complement sum with end-around carry, word by word."""
    if len(data) % 2:
        data = data + b"\x00"
    s = initial
    for (w,) in struct.iter_unpack("!H", data):
        s += w
        s = (s & 0xFFFF) + (s >> 16)
    return s


def checksum(data: bytes, initial: int = 0) -> int:
    return ~ones_sum(data, initial) & 0xFFFF


def pseudo(src: str, dst: str, proto: int, length: int) -> int:
    s, d = IPv4Address(src).packed, IPv4Address(dst).packed
    return sum(struct.unpack("!HHHH", s + d)) + proto + length


def ipv4(src: str, dst: str, payload: bytes = b"", *, proto: int = 17, ttl: int = 64,
         tos: int = 0, ident: int = 0x1234, df: bool = False, mf: bool = False,
         frag_offset: int = 0, options: bytes = b"", total_len: int | None = None,
         ihl: int | None = None, version: int = 4, csum: int | None = None,
         reserved_flag: bool = False) -> bytes:
    """An IPv4 packet; every field can be forced to a bad value for the error tests."""
    hl = 20 + len(options)
    if ihl is None:
        ihl = hl // 4
    if total_len is None:
        total_len = hl + len(payload)
    flags = (0x8000 if reserved_flag else 0) | (0x4000 if df else 0) | (0x2000 if mf else 0)
    hdr = bytearray(struct.pack("!BBHHHBBH4s4s", (version << 4) | ihl, tos, total_len, ident,
                                flags | (frag_offset >> 3), ttl, proto, 0,
                                IPv4Address(src).packed, IPv4Address(dst).packed) + options)
    c = checksum(bytes(hdr)) if csum is None else csum
    hdr[10:12] = struct.pack("!H", c)
    return bytes(hdr) + payload


def fragment(l3: bytes, size: int) -> list[bytes]:
    """Cut an IPv4 packet (no options) into fragments of *size* payload bytes (a
    multiple of 8), as the sending host's ip_fragment would."""
    assert size % 8 == 0
    vihl, tos, _total, ident, frag, ttl, proto = struct.unpack_from("!BBHHHBB", l3)
    assert vihl == 0x45
    src, dst = str(IPv4Address(l3[12:16])), str(IPv4Address(l3[16:20]))
    base, more = (frag & 0x1FFF) << 3, bool(frag & 0x2000)
    payload = l3[20:]
    out = []
    for off in range(0, len(payload), size):
        piece = payload[off:off + size]
        last = off + size >= len(payload)
        out.append(ipv4(src, dst, piece, proto=proto, ttl=ttl, tos=tos, ident=ident,
                        df=bool(frag & 0x4000), mf=more or not last, frag_offset=base + off))
    return out


def eth(dst: bytes, src: bytes, ethertype: int, payload: bytes, pad: bool = False) -> bytes:
    frame = dst + src + struct.pack("!H", ethertype) + payload
    if pad and len(frame) < 60:
        frame += b"\x00" * (60 - len(frame))
    return frame


def icmp(type_: int, code: int = 0, rest: int = 0, data: bytes = b"",
         csum: int | None = None) -> bytes:
    msg = bytearray(struct.pack("!BBHI", type_, code, 0, rest) + data)
    c = checksum(bytes(msg)) if csum is None else csum
    msg[2:4] = struct.pack("!H", c)
    return bytes(msg)


def echo(ident: int = 0x4242, seq: int = 1, data: bytes = b"ping" * 8, reply: bool = False,
         csum: int | None = None) -> bytes:
    return icmp(0 if reply else 8, 0, (ident << 16) | seq, data, csum)


def udp(src: str, dst: str, sport: int = 40000, dport: int = 33434, data: bytes = b"x" * 16,
        csum: int | None = None, length: int | None = None) -> bytes:
    ulen = 8 + len(data) if length is None else length
    seg = bytearray(struct.pack("!HHHH", sport, dport, ulen, 0) + data)
    if csum is None:
        c = checksum(bytes(seg), pseudo(src, dst, 17, len(seg)))
        csum = c or 0xFFFF
    seg[6:8] = struct.pack("!H", csum)
    return bytes(seg)


TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK = 0x01, 0x02, 0x04, 0x08, 0x10


def tcp(src: str, dst: str, sport: int = 40000, dport: int = 80, seq: int = 1000,
        ack: int = 0, flags: int = TCP_SYN, data: bytes = b"", window: int = 64240,
        csum: int | None = None) -> bytes:
    seg = bytearray(struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, window, 0, 0)
                    + data)
    c = checksum(bytes(seg), pseudo(src, dst, 6, len(seg))) if csum is None else csum
    seg[16:18] = struct.pack("!H", c)
    return bytes(seg)


def arp(op: int, sha: bytes, spa: str, tha: bytes, tpa: str, *, eth_dst: bytes = BCAST_MAC,
        eth_src: bytes | None = None, htype: int = 1, ptype: int = 0x0800, hlen: int = 6,
        plen: int = 4, pad: bool = True) -> bytes:
    body = struct.pack("!HHBBH6s4s6s4s", htype, ptype, hlen, plen, op, sha,
                       IPv4Address(spa).packed, tha, IPv4Address(tpa).packed)
    return eth(eth_dst, eth_src or sha, 0x0806, body, pad=pad)


def arp_fast(op: int, sha: bytes, spa: int, tpa: int, eth_dst: bytes = BCAST_MAC) -> bytes:
    """The same as ``arp`` with int addresses, for floods (no ipaddress objects)."""
    return (eth_dst + sha + b"\x08\x06"
            + struct.pack("!HHBBH6sI6sI", 1, 0x0800, 6, 4, op, sha, spa, ZERO_MAC, tpa)
            + b"\x00" * 18)


def frame_from(host: Host, l3: bytes, *, eth_dst: bytes | None = None, pad: bool = False) -> bytes:
    """An IPv4 frame sent by *host* to the router port it sits on."""
    return eth(R_MAC[host.port] if eth_dst is None else eth_dst, host.mac, 0x0800, l3, pad=pad)


def ping(host: Host, dst: str, *, ident: int = 0x4242, seq: int = 1, data: bytes = b"ping" * 8,
         **ip_kw: Any) -> bytes:
    """An Echo Request frame from *host* to *dst* (through or to the router)."""
    return frame_from(host, ipv4(host.ip, dst, echo(ident, seq, data), proto=1, **ip_kw))


def udp_frame(host: Host, dst: str, *, data: bytes = b"x" * 16, dport: int = 33434,
              **ip_kw: Any) -> bytes:
    return frame_from(host, ipv4(host.ip, dst, udp(host.ip, dst, dport=dport, data=data),
                                 proto=17, **ip_kw))


# --------------------------------------------------------------------------
# Parsers
# --------------------------------------------------------------------------

@dataclass
class Eth:
    dst: bytes
    src: bytes
    type: int
    payload: bytes


@dataclass
class IP:
    version: int
    ihl: int
    tos: int
    total_len: int
    ident: int
    reserved: bool
    df: bool
    mf: bool
    frag_offset: int        # in bytes
    ttl: int
    proto: int
    checksum: int
    src: str
    dst: str
    header: bytes
    payload: bytes
    raw: bytes
    eth: Eth | None = None
    ifindex: int | None = None


@dataclass
class ICMP:
    type: int
    code: int
    checksum: int
    rest: int
    data: bytes
    ip: IP

    @property
    def mtu(self) -> int:
        return self.rest & 0xFFFF

    @property
    def quoted(self) -> IP:
        """The quoted (offending) IP header, parsed without checking its total length."""
        return parse_ipv4(self.data, strict=False)


@dataclass
class ARP:
    htype: int
    ptype: int
    hlen: int
    plen: int
    op: int
    sha: bytes
    spa: str
    tha: bytes
    tpa: str
    eth: Eth


@dataclass
class TCP:
    sport: int
    dport: int
    seq: int
    ack: int
    doff: int
    flags: int
    window: int
    checksum: int
    urg: int
    payload: bytes
    ip: IP


def _unpack_tx(item: Any) -> tuple[int | None, bytes]:
    if isinstance(item, tuple):
        return item[0], bytes(item[1])
    return None, bytes(item)


def parse_eth(frame: bytes) -> Eth:
    assert len(frame) >= 14, f"frame of {len(frame)} bytes"
    dst, src, t = struct.unpack_from("!6s6sH", frame)
    return Eth(dst, src, t, frame[14:])


def parse_ipv4(data: bytes, strict: bool = True) -> IP:
    assert len(data) >= 20, f"IPv4 packet of {len(data)} bytes"
    vihl, tos, total, ident, frag, ttl, proto, csum, src, dst = struct.unpack_from(
        "!BBHHHBBH4s4s", data)
    ihl = (vihl & 0x0F) * 4
    if strict:
        assert vihl >> 4 == 4, f"version {vihl >> 4}"
        assert ihl >= 20, f"ihl {ihl}"
        right = checksum(data[:10] + bytes(2) + data[12:ihl])
        assert ones_sum(data[:ihl]) == 0xFFFF, \
            f"bad IPv4 header checksum {csum:#06x} (should be {right:#06x})"
        assert total == len(data), f"total length {total} != packet length {len(data)}"
    end = total if strict else len(data)
    return IP(vihl >> 4, ihl, tos, total, ident, bool(frag & 0x8000), bool(frag & 0x4000),
              bool(frag & 0x2000), (frag & 0x1FFF) << 3, ttl, proto, csum,
              str(IPv4Address(src)), str(IPv4Address(dst)), data[:ihl], data[ihl:end], data)


# --------------------------------------------------------------------------
# Checkers
# --------------------------------------------------------------------------

def _check(obj: Any, what: str, **expected: Any) -> None:
    for name, want in expected.items():
        if want is None:
            continue
        got = getattr(obj, name)
        assert got == want, f"{what}.{name}: got {got!r}, want {want!r}"


def expect_eth(item: Any, *, dst: bytes | None = None, src: bytes | None = None,
               type: int | None = None, ifindex: int | None = None) -> Eth:
    idx, frame = _unpack_tx(item)
    if ifindex is not None:
        assert idx == ifindex, f"sent on ifindex {idx}, want {ifindex}"
    e = parse_eth(frame)
    _check(e, "eth", dst=dst, src=src, type=type)
    return e


def expect_ipv4(item: Any, *, src: str | None = None, dst: str | None = None,
                ttl: int | None = None, tos: int | None = None, proto: int | None = None,
                df: bool | None = None, mf: bool | None = None, frag_offset: int | None = None,
                ident: int | None = None, total_len: int | None = None,
                max_len: int | None = None, eth_dst: bytes | None = None,
                eth_src: bytes | None = None, ifindex: int | None = None) -> IP:
    idx, _ = _unpack_tx(item)
    e = expect_eth(item, dst=eth_dst, src=eth_src, type=0x0800, ifindex=ifindex)
    ip = parse_ipv4(e.payload)
    assert not ip.reserved, "reserved (evil) bit set"
    _check(ip, "ip", src=src, dst=dst, ttl=ttl, tos=tos, proto=proto, df=df, mf=mf,
           frag_offset=frag_offset, ident=ident, total_len=total_len)
    if max_len is not None:
        assert ip.total_len <= max_len, f"ip.total_len {ip.total_len} > {max_len}"
    ip.eth, ip.ifindex = e, idx
    return ip


def expect_icmp(item: Any, *, type: int, code: int, src: str | None = None,
                dst: str | None = None, ttl: int | None = 64, tos: int | None = None,
                df: bool | None = None, rest: int | None = None, mtu: int | None = None,
                ifindex: int | None = None, eth_dst: bytes | None = None,
                eth_src: bytes | None = None, max_len: int | None = None,
                quote: bytes | None = None) -> ICMP:
    """An ICMPv4 message; *quote* is the offending packet whose start it must carry."""
    ip = expect_ipv4(item, src=src, dst=dst, ttl=ttl, tos=tos, proto=1, df=df, mf=False,
                     frag_offset=0, ifindex=ifindex, eth_dst=eth_dst, eth_src=eth_src,
                     max_len=max_len)
    assert len(ip.payload) >= 8, "ICMP message shorter than its header"
    assert ones_sum(ip.payload) == 0xFFFF, "bad ICMP checksum"
    t, c, cs, r = struct.unpack_from("!BBHI", ip.payload)
    msg = ICMP(t, c, cs, r, ip.payload[8:], ip)
    _check(msg, "icmp", type=type, code=code, rest=rest)
    if mtu is not None:
        assert msg.rest >> 16 == 0, "unused half of the Frag Needed word is not zero"
        assert msg.mtu == mtu, f"icmp next-hop mtu {msg.mtu}, want {mtu}"
    if quote is not None:
        # RFC 1812 4.3.2.3: as much of the offending packet as fits in 576 bytes.
        room = 576 - 20 - 8
        assert msg.data == quote[:room], (
            f"quoted {len(msg.data)} bytes, want the first {min(room, len(quote))} of the "
            f"offending packet")
    return msg


def expect_error(item: Any, *, type: int, code: int, about: bytes, src: str, **kw: Any) -> ICMP:
    """An ICMP error as Linux sends it: TTL 64, DF clear, TOS 0xc0|(tos & 0x1e), <= 576
    bytes, quoting *about* (the offending packet as the router saw it)."""
    offending = parse_ipv4(about, strict=False)
    kw.setdefault("tos", 0xC0 | (offending.tos & 0x1E))
    return expect_icmp(item, type=type, code=code, src=src, dst=offending.src, ttl=64,
                       df=False, max_len=576, quote=about, **kw)


def expect_arp(item: Any, *, op: int, sha: bytes | None = None, spa: str | None = None,
               tha: bytes | None = None, tpa: str | None = None,
               eth_dst: bytes | None = None, eth_src: bytes | None = None,
               ifindex: int | None = None) -> ARP:
    e = expect_eth(item, dst=eth_dst, src=eth_src, type=0x0806, ifindex=ifindex)
    assert len(e.payload) >= 28, f"ARP body of {len(e.payload)} bytes"
    h, p, hl, pl, o, s_ha, s_pa, t_ha, t_pa = struct.unpack_from("!HHBBH6s4s6s4s", e.payload)
    a = ARP(h, p, hl, pl, o, s_ha, str(IPv4Address(s_pa)), t_ha, str(IPv4Address(t_pa)), e)
    _check(a, "arp", htype=1, ptype=0x0800, hlen=6, plen=4)
    _check(a, "arp", op=op, sha=sha, spa=spa, tha=tha, tpa=tpa)
    return a


def expect_tcp(item: Any, *, src: str, dst: str, sport: int | None = None,
               dport: int | None = None, seq: int | None = None, ack: int | None = None,
               flags: int | None = None, ttl: int | None = 64, **ip_kw: Any) -> TCP:
    ip = expect_ipv4(item, src=src, dst=dst, proto=6, ttl=ttl, **ip_kw)
    assert len(ip.payload) >= 20
    assert ones_sum(ip.payload, pseudo(src, dst, 6, len(ip.payload))) == 0xFFFF, \
        "bad TCP checksum"
    sp, dp, sq, ak, doff, fl, win, cs, urg = struct.unpack_from("!HHIIBBHHH", ip.payload)
    seg = TCP(sp, dp, sq, ak, (doff >> 4) * 4, fl, win, cs, urg, ip.payload[(doff >> 4) * 4:], ip)
    _check(seg, "tcp", sport=sport, dport=dport, seq=seq, ack=ack, flags=flags)
    return seg


def assert_valid_output(tx: list[tuple[int, Any]], router: Router) -> None:
    """Invariants of everything a router transmits (used by the fuzz tests)."""
    for idx, frame in tx:
        frame = bytes(frame)
        assert idx in router.ports, f"frame for unknown ifindex {idx}"
        assert len(frame) >= 14
        e = parse_eth(frame)
        assert e.src == router.ports[idx].mac, "frame not sent from the port's MAC"
        assert not e.dst[0] & 1 or e.dst == BCAST_MAC, "multicast destination MAC"
        if e.type == 0x0800:
            ip = parse_ipv4(e.payload)          # checksum and lengths
            assert ip.total_len <= router.ports[idx].mtu, "frame larger than the port MTU"
        else:
            assert e.type == 0x0806, f"unexpected ethertype {e.type:#06x}"
            expect_arp((idx, frame), op=e.payload[7], eth_src=router.ports[idx].mac)


# --------------------------------------------------------------------------
# A router plus virtual time
# --------------------------------------------------------------------------

@dataclass
class Net:
    """A router under test with its virtual clock; every call drains the output."""

    config: str = TOPOLOGY
    seed: int = 1
    now: int = 0
    router: Router = field(init=False)
    events: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.router = make_router(self.config, self.seed, self.now)

    # -- input / output ---------------------------------------------------
    def send(self, ifindex: int, frame: bytes, at: int | None = None) -> list[tuple[int, bytes]]:
        if at is not None:
            assert at >= self.now
            self.now = at
        self.router.receive(ifindex, frame, self.now)
        return self.drain()

    def drain(self) -> list[tuple[int, bytes]]:
        tx, ev = self.router.drain()
        self.events.extend(ev)
        return [(i, bytes(f)) for i, f in tx]

    def run_until(self, t: int) -> list[tuple[int, int, bytes]]:
        """Tick at every deadline up to *t*; return ``(time, ifindex, frame)`` sent."""
        out: list[tuple[int, int, bytes]] = []
        while True:
            nxt = self.router.poll_at()
            if nxt is None or nxt > t:
                break
            self.now = max(self.now, nxt)
            self.router.tick(self.now)
            out.extend((self.now, i, f) for i, f in self.drain())
        self.now = max(self.now, t)
        self.router.tick(self.now)
        out.extend((self.now, i, f) for i, f in self.drain())
        return out

    # -- counters -----------------------------------------------------------
    def drops(self) -> dict[str, int]:
        return {k: v for k, v in self.router.counters.drop_dict().items() if v}

    def snmp(self, name: str) -> int:
        return self.router.counters.snmp[name]

    # -- neighbours -----------------------------------------------------------
    def neigh(self, host: Host) -> Any:
        return self.router.neigh4.get(host.port, ip2int(host.ip))

    def neigh_state(self, host: Host) -> str | None:
        e = self.neigh(host)
        return None if e is None else e.state.value

    def learn(self, host: Host) -> None:
        """The host ARPs for the router's port address: the router learns it STALE."""
        tx = self.send(host.port, arp(1, host.mac, host.ip, ZERO_MAC, R_IP[host.port]))
        assert len(tx) == 1
        assert self.neigh_state(host) == "STALE"

    def confirm(self, host: Host) -> list[tuple[int, bytes]]:
        """A unicast ARP reply from the host to the router (confirms reachability)."""
        return self.send(host.port, arp(2, host.mac, host.ip, R_MAC[host.port], R_IP[host.port],
                                        eth_dst=R_MAC[host.port]))

    def reachable(self, host: Host) -> None:
        self.learn(host)
        self.confirm(host)
        assert self.neigh_state(host) == "REACHABLE"


def drop_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    keys = set(before) | set(after)
    return {k: after.get(k, 0) - before.get(k, 0) for k in keys
            if after.get(k, 0) != before.get(k, 0)}
