"""IPv6 / ICMPv6 / NDISC frame builders and checkers for the IPv6 core tests.

Written with ``struct`` and ``ipaddress`` only (no ``pyrouter.wire``), so a codec bug
cannot hide itself in both the router and its test.  ``Net6`` is ``helpers.Net``
with the dual-stack topology below, started and run past DAD (``ready``).

Topology (MACs as in helpers.py)::

    H1 2001:db8:1::10 --- lan0 2001:db8:1::1/64 (ifindex 1, ra: configured)
    H2 2001:db8:2::20 --- wan0 2001:db8:2::1/64 (ifindex 2)  GW6 2001:db8:2::fe
    H4 2001:db8:4::40 --- small0 2001:db8:4::1/64, mtu 1400 (ifindex 3)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import Any

from pyrouter.core import SECOND
from tests.core.helpers import MS, Net, ones_sum

LAN, WAN, SMALL = 1, 2, 3

CONFIG6 = """\
ipv6:
  ndisc_notify: true
interfaces:
  lan0:
    addresses: [10.0.1.1/24, 2001:db8:1::1/64]
    macaddress: "02:00:00:00:01:01"
    ra:
      max_rtr_adv_interval: 30
      min_rtr_adv_interval: 10
      mtu: 1500
      managed: true
      rdnss: ["2001:db8:1::53"]
  wan0:
    addresses: [10.0.2.1/24, 2001:db8:2::1/64]
    macaddress: "02:00:00:00:02:01"
  small0:
    addresses: [10.0.4.1/24, 2001:db8:4::1/64]
    macaddress: "02:00:00:00:04:01"
    mtu: 1400
routes:
  - {to: "2001:db8:9::/48", via: "2001:db8:2::fe"}
  - {to: "2001:db8:dead::/48", type: unreachable}
  - {to: "2001:db8:beef::/48", type: prohibit}
  - {to: "2001:db8:b1ac::/48", type: blackhole}
  - {to: "2001:db8:11::/48", via: "2001:db8:1::fe"}
  - {to: "2001:db8:77::/48", via: "2001:db8:2::fe", mtu: 1000}
"""

R_MAC = {LAN: bytes.fromhex("020000000101"), WAN: bytes.fromhex("020000000201"),
         SMALL: bytes.fromhex("020000000401")}
R_IP6 = {LAN: "2001:db8:1::1", WAN: "2001:db8:2::1", SMALL: "2001:db8:4::1"}


def eui64_ll(mac: bytes) -> str:
    iid = bytes([mac[0] ^ 2, mac[1], mac[2], 0xFF, 0xFE, mac[3], mac[4], mac[5]])
    return str(IPv6Address(b"\xfe\x80" + bytes(6) + iid))


R_LL = {i: eui64_ll(m) for i, m in R_MAC.items()}      # fe80::ff:fe00:101 ...
ALL_NODES = "ff02::1"
ALL_ROUTERS = "ff02::2"


@dataclass(frozen=True)
class Host6:
    ip: str
    mac: bytes
    port: int

    @property
    def ll(self) -> str:
        return eui64_ll(self.mac)


H1 = Host6("2001:db8:1::10", bytes.fromhex("021000000010"), LAN)
H1B = Host6("2001:db8:1::11", bytes.fromhex("021000000011"), LAN)
GW1 = Host6("2001:db8:1::fe", bytes.fromhex("0210000000fe"), LAN)
H2 = Host6("2001:db8:2::20", bytes.fromhex("022000000020"), WAN)
GW6 = Host6("2001:db8:2::fe", bytes.fromhex("0220000000fe"), WAN)
H4 = Host6("2001:db8:4::40", bytes.fromhex("024000000040"), SMALL)


def a6(s: str) -> bytes:
    return IPv6Address(s).packed


def s6(b: bytes) -> str:
    return str(IPv6Address(bytes(b)))


def solicited(s: str) -> str:
    return str(IPv6Address(a6("ff02::1:ff00:0")[:13] + a6(s)[13:]))


def mcast_mac(s: str) -> bytes:
    return b"\x33\x33" + a6(s)[12:]


# --------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------

def pseudo6(src: str, dst: str, nh: int, length: int) -> int:
    s = ones_sum(a6(src) + a6(dst))
    return s + (length >> 16) + (length & 0xFFFF) + nh


def csum6(src: str, dst: str, nh: int, data: bytes) -> int:
    return ~ones_sum(data, pseudo6(src, dst, nh, len(data))) & 0xFFFF


def ip6(src: str, dst: str, nh: int, payload: bytes = b"", *, hlim: int = 64, tc: int = 0,
        flow: int = 0, plen: int | None = None, version: int = 6) -> bytes:
    vtf = (version << 28) | (tc << 20) | flow
    return struct.pack("!IHBB16s16s", vtf, len(payload) if plen is None else plen, nh, hlim,
                       a6(src), a6(dst)) + payload


def icmp6_msg(src: str, dst: str, type_: int, code: int = 0, body: bytes = b"",
              csum: int | None = None) -> bytes:
    """A whole ICMPv6 message (type, code, checksum, body) with its checksum."""
    msg = bytearray(struct.pack("!BBH", type_, code, 0) + body)
    c = csum6(src, dst, 58, bytes(msg)) if csum is None else csum
    msg[2:4] = struct.pack("!H", c)
    return bytes(msg)


def echo6_body(ident: int = 0x4242, seq: int = 1, data: bytes = b"ping" * 8) -> bytes:
    return struct.pack("!HH", ident, seq) + data


def icmp6_pkt(src: str, dst: str, type_: int, code: int = 0, body: bytes = b"", *,
              hlim: int = 64, tc: int = 0, ext: bytes = b"", ext_nh: int | None = None) -> bytes:
    """An IPv6 packet carrying ICMPv6, optionally behind extension headers *ext*
    (whose first next-header is *ext_nh*; the last header must name 58)."""
    msg = icmp6_msg(src, dst, type_, code, body)
    if ext:
        return ip6(src, dst, ext_nh, ext + msg, hlim=hlim, tc=tc)
    return ip6(src, dst, 58, msg, hlim=hlim, tc=tc)


def echo6(src: str, dst: str, *, ident: int = 0x4242, seq: int = 1, data: bytes = b"ping" * 8,
          **kw: Any) -> bytes:
    return icmp6_pkt(src, dst, 128, 0, echo6_body(ident, seq, data), **kw)


def udp6(src: str, dst: str, sport: int = 40000, dport: int = 33434,
         data: bytes = b"x" * 16) -> bytes:
    seg = bytearray(struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data)
    c = csum6(src, dst, 17, bytes(seg)) or 0xFFFF
    seg[6:8] = struct.pack("!H", c)
    return bytes(seg)


def udp6_pkt(src: str, dst: str, data: bytes = b"x" * 16, **kw: Any) -> bytes:
    return ip6(src, dst, 17, udp6(src, dst, data=data), **kw)


def eth6(dst_mac: bytes, src_mac: bytes, l3: bytes) -> bytes:
    return dst_mac + src_mac + b"\x86\xdd" + l3


def frame6(host: Host6, l3: bytes, eth_dst: bytes | None = None) -> bytes:
    """*l3* sent by *host* on its port: to the router's MAC, or 33:33:.. for multicast."""
    if eth_dst is None:
        dst = l3[24:40]
        eth_dst = (b"\x33\x33" + dst[12:]) if dst[0] == 0xFF else R_MAC[host.port]
    return eth6(eth_dst, host.mac, l3)


def hbh(nh: int, options: bytes) -> bytes:
    """A Hop-by-Hop / Destination Options header; *options* is padded to 8n-2 by the caller."""
    assert (len(options) + 2) % 8 == 0, "options must fill the header to 8n bytes"
    return bytes([nh, (len(options) + 2) // 8 - 1]) + options


def frag_hdr(nh: int, offset: int, more: bool, ident: int) -> bytes:
    return struct.pack("!BBHI", nh, 0, offset | int(more), ident)


def fragment6(l3: bytes, size: int, ident: int = 0xABCD) -> list[bytes]:
    """Cut an IPv6 packet (no extension headers) into fragments of *size* bytes."""
    hdr, payload = l3[:40], l3[40:]
    nh = hdr[6]
    out = []
    for off in range(0, len(payload), size):
        piece = payload[off:off + size]
        more = off + size < len(payload)
        body = frag_hdr(nh, off, more, ident) + piece
        h = bytearray(hdr)
        h[4:6] = struct.pack("!H", len(body))
        h[6] = 44
        out.append(bytes(h) + body)
    return out


# -- NDISC ---------------------------------------------------------------------------

def ll_opt(kind: int, mac: bytes) -> bytes:
    return bytes([kind, 1]) + mac


def ns_pkt(src: str, dst: str, target: str, sll: bytes | None = None, *, hlim: int = 255,
           opts: bytes = b"") -> bytes:
    body = bytes(4) + a6(target) + (ll_opt(1, sll) if sll else b"") + opts
    return icmp6_pkt(src, dst, 135, 0, body, hlim=hlim)


def na_pkt(src: str, dst: str, target: str, *, r: bool = False, s: bool = False,
           o: bool = False, tll: bytes | None = None, hlim: int = 255) -> bytes:
    flags = (0x80 if r else 0) | (0x40 if s else 0) | (0x20 if o else 0)
    body = bytes([flags, 0, 0, 0]) + a6(target) + (ll_opt(2, tll) if tll else b"")
    return icmp6_pkt(src, dst, 136, 0, body, hlim=hlim)


def rs_pkt(src: str, sll: bytes | None = None, hlim: int = 255) -> bytes:
    return icmp6_pkt(src, ALL_ROUTERS, 133, 0, bytes(4) + (ll_opt(1, sll) if sll else b""),
                     hlim=hlim)


# --------------------------------------------------------------------------
# Parsers and checkers
# --------------------------------------------------------------------------

@dataclass
class IP6:
    tc: int
    flow: int
    plen: int
    nh: int
    hlim: int
    src: str
    dst: str
    payload: bytes
    raw: bytes
    eth_dst: bytes
    eth_src: bytes
    ifindex: int | None


@dataclass
class ICMP6:
    type: int
    code: int
    rest: bytes          # the 4 bytes after the checksum
    body: bytes          # everything after the checksum
    ip: IP6

    @property
    def word(self) -> int:
        return struct.unpack("!I", self.rest)[0]

    @property
    def data(self) -> bytes:
        return self.body[4:]


def parse_ip6(item: Any) -> IP6:
    idx, frame = (item[0], bytes(item[1])) if isinstance(item, tuple) else (None, bytes(item))
    assert len(frame) >= 54, f"frame of {len(frame)} bytes"
    assert frame[12:14] == b"\x86\xdd", f"ethertype {frame[12:14].hex()}"
    l3 = frame[14:]
    vtf, plen, nh, hlim = struct.unpack_from("!IHBB", l3)
    assert vtf >> 28 == 6, f"version {vtf >> 28}"
    assert plen == len(l3) - 40, f"payload length {plen} != {len(l3) - 40}"
    return IP6((vtf >> 20) & 0xFF, vtf & 0xFFFFF, plen, nh, hlim, s6(l3[8:24]), s6(l3[24:40]),
               l3[40:], l3, frame[0:6], frame[6:12], idx)


def expect_ip6(item: Any, *, src: str | None = None, dst: str | None = None,
               hlim: int | None = None, nh: int | None = None, tc: int | None = None,
               ifindex: int | None = None, eth_dst: bytes | None = None,
               max_len: int | None = None) -> IP6:
    p = parse_ip6(item)
    for name, want in (("src", src), ("dst", dst), ("hlim", hlim), ("nh", nh), ("tc", tc),
                       ("ifindex", ifindex), ("eth_dst", eth_dst)):
        if want is not None:
            got = getattr(p, name)
            if name in ("src", "dst"):
                want = str(IPv6Address(want))
            assert got == want, f"ip6.{name}: got {got!r}, want {want!r}"
    if p.ifindex is not None and p.dst.startswith("ff"):
        assert p.eth_dst == mcast_mac(p.dst), "multicast IPv6 not sent to 33:33:xx"
    assert p.eth_src in R_MAC.values(), f"eth src {p.eth_src.hex()} is not a router port"
    if p.ifindex is not None:
        assert p.eth_src == R_MAC[p.ifindex], "frame not from the egress port's MAC"
    if max_len is not None:
        assert len(p.raw) <= max_len, f"IPv6 packet of {len(p.raw)} bytes > {max_len}"
    return p


def expect_icmp6(item: Any, *, type: int, code: int | None = None, src: str | None = None,
                 dst: str | None = None, hlim: int | None = None, **kw: Any) -> ICMP6:
    p = expect_ip6(item, src=src, dst=dst, hlim=hlim, nh=58, **kw)
    assert len(p.payload) >= 8 or type in (133,), "ICMPv6 message too short"
    assert ones_sum(p.payload, pseudo6(p.src, p.dst, 58, len(p.payload))) == 0xFFFF, \
        "bad ICMPv6 checksum"
    m = ICMP6(p.payload[0], p.payload[1], p.payload[4:8], p.payload[4:], p)
    assert m.type == type, f"icmp6.type {m.type}, want {type}"
    if code is not None:
        assert m.code == code, f"icmp6.code {m.code}, want {code}"
    return m


def expect_error6(item: Any, *, type: int, code: int, about: bytes, src: str,
                  word: int = 0, **kw: Any) -> ICMP6:
    """An ICMPv6 error as Linux sends it (icmp6_send): hop limit 64, tclass 0, to the
    offending source, <= 1280 bytes, quoting as much of *about* as fits."""
    m = expect_icmp6(item, type=type, code=code, src=src, dst=s6(about[8:24]), hlim=64,
                     tc=0, max_len=1280, **kw)
    assert m.word == word, f"icmp6 word {m.word:#x}, want {word:#x}"
    room = 1280 - 48
    assert m.data == about[:room], (f"quoted {len(m.data)} bytes, want the first "
                                    f"{min(room, len(about))} of the offending packet")
    return m


def nd_options(body: bytes) -> dict[int, list[bytes]]:
    out: dict[int, list[bytes]] = {}
    i = 0
    while i < len(body):
        t, ln = body[i], body[i + 1] * 8
        assert ln, "zero-length ND option"
        out.setdefault(t, []).append(body[i:i + ln])
        i += ln
    assert i == len(body), "ND options overrun"
    return out


def icmp6_of(out: list[Any], type_: int) -> list[Any]:
    """The items of *out* ((ifindex, frame) or (t, ifindex, frame)) carrying ICMPv6 *type_*."""
    res = []
    for item in out:
        f = item[-1]
        if len(f) >= 62 and f[12:14] == b"\x86\xdd" and f[20] == 58 and f[54] == type_:
            res.append(item)
    return res


def tx(item: Any) -> tuple[int, bytes]:
    """(ifindex, frame) of an item of ``send`` or ``run_until`` output."""
    return (item[-2], item[-1])


class Net6(Net):
    """helpers.Net on CONFIG6; ``ready()`` runs past DAD and returns what was sent."""

    def __init__(self, config: str = CONFIG6, seed: int = 1) -> None:
        super().__init__(config=config, seed=seed)

    def ready(self, until: int = 3 * SECOND) -> list[tuple[int, int, bytes]]:
        out = self.run_until(until)
        assert all(a.state == "permanent" for d in self.router.in6.values() for a in d.addrs)
        return out

    def learn6(self, host: Host6, addr: str | None = None) -> None:
        """The host resolves the router (multicast NS with SLLAO): the router learns it
        STALE and answers (which uses the entry: DELAY)."""
        src = addr or host.ip
        target = R_IP6[host.port] if not src.startswith("fe80") else R_LL[host.port]
        out = self.send(host.port, frame6(host, ns_pkt(src, solicited(target), target,
                                                       host.mac)))
        assert len(icmp6_of(out, 136)) == 1, out
        e = self.router.neigh6.get(host.port, int(IPv6Address(src)))
        # the NA to it went out through the entry: STALE -> DELAY (neigh_resolve_output)
        assert e is not None and e.state.value in ("STALE", "DELAY"), e

    def nstate(self, port: int, addr: str) -> str | None:
        e = self.router.neigh6.get(port, int(IPv6Address(addr)))
        return None if e is None else e.state.value


__all__ = ["MS", "SECOND"]
