"""What hook code sees of a packet: the transport header's place (nft_pktinfo) and the
safe view handed to Python plugins.

``pktinfo(pkt, pf)`` follows nft_set_pktinfo_ipv4/ipv6: the upper-layer protocol
(IPv6 extension headers walked: hop-by-hop, routing, destination options, fragment)
and its offset; -1 for a non-first fragment or a truncated chain, so transport
matches never read past the packet.

``PacketView`` gives a plugin parsed headers (addresses as strings, protocol, ports,
TTL, length), the metadata (hook, family, in/out port names, mark), and two ways to
change the packet: ``set_bytes(off, data)`` inside the packet only, then
``fix_checksums()`` (IPv4 header and TCP/UDP/ICMP checksums recomputed).
Invariant: a view never lets a plugin grow the packet or write outside it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...wire.addr import ip4_str
from ...wire.checksum import inet_checksum
from ...wire.ipv4 import set_checksum
from ...wire.ipv6 import ip6_str
from ..actions import Event

if TYPE_CHECKING:
    from ..packet import PacketBuf
    from .hooks import HookState

_EXT6 = (0, 43, 60, 51)


def pktinfo(data: bytearray, pf: int) -> tuple[int, int]:
    """(l4proto, thoff); thoff -1 when there is no transport header to match."""
    if pf == 4:
        if len(data) < 20:
            return -1, -1
        proto = data[9]
        if ((data[6] << 8) | data[7]) & 0x1FFF:
            return proto, -1
        return proto, (data[0] & 0x0F) << 2
    n = len(data)
    if n < 40:
        return -1, -1
    nh, off = data[6], 40
    for _ in range(16):
        if nh in _EXT6:
            if off + 8 > n:
                return -1, -1
            nxt = data[off]
            off += (data[off + 1] + 2) << 2 if nh == 51 else (data[off + 1] + 1) << 3
            nh = nxt
            continue
        if nh == 44:
            if off + 8 > n:
                return -1, -1
            frag_off = ((data[off + 2] << 8) | data[off + 3]) & 0xFFF8
            nh = data[off]
            if frag_off:
                return nh, -1
            off += 8
            continue
        return nh, off if off <= n else -1
    return -1, -1


class PacketView:
    """A plugin's window on one packet at one hook (see the module docstring)."""

    __slots__ = ("_pkt", "_st", "family", "hook", "l4proto", "thoff")
    # Also: event(name, **fields) -> an Event "plugin.<name>" for the log.

    def __init__(self, pkt: PacketBuf, st: HookState) -> None:
        self._pkt, self._st = pkt, st
        self.family = st.pf
        self.hook = st.hook.name.lower()
        self.l4proto, self.thoff = pktinfo(pkt.data, st.pf)

    @property
    def data(self) -> bytes:
        return bytes(self._pkt.data)

    def __len__(self) -> int:
        return len(self._pkt.data)

    @property
    def now(self) -> int:
        return self._st.now

    @property
    def iif(self) -> str | None:
        return self._st.indev.name if self._st.indev is not None else None

    @property
    def oif(self) -> str | None:
        return self._st.outdev.name if self._st.outdev is not None else None

    @property
    def mark(self) -> int:
        return self._pkt.mark

    @mark.setter
    def mark(self, v: int) -> None:
        self._pkt.mark = int(v) & 0xFFFFFFFF

    @property
    def saddr(self) -> str:
        d = self._pkt.data
        return ip4_str(d[12:16]) if self.family == 4 else ip6_str(int.from_bytes(d[8:24], "big"))

    @property
    def daddr(self) -> str:
        d = self._pkt.data
        return ip4_str(d[16:20]) if self.family == 4 else ip6_str(int.from_bytes(d[24:40],
                                                                                  "big"))

    @property
    def ttl(self) -> int:
        return self._pkt.data[8] if self.family == 4 else self._pkt.data[7]

    def _port(self, at: int) -> int | None:
        d, o = self._pkt.data, self.thoff
        if self.l4proto not in (6, 17) or o < 0 or o + 4 > len(d):
            return None
        return (d[o + at] << 8) | d[o + at + 1]

    @property
    def sport(self) -> int | None:
        return self._port(0)

    @property
    def dport(self) -> int | None:
        return self._port(2)

    @property
    def payload(self) -> bytes:
        """The transport payload (after the UDP/TCP header), b"" when there is none."""
        d, o = self._pkt.data, self.thoff
        if o < 0:
            return b""
        if self.l4proto == 17:
            return bytes(d[o + 8:]) if o + 8 <= len(d) else b""
        if self.l4proto == 6 and o + 13 <= len(d):
            return bytes(d[o + ((d[o + 12] >> 4) << 2):])
        return b""

    def event(self, name: str, **fields: object) -> None:
        """Report something: an Event ``plugin.<name>`` (logged by the shell)."""
        self._st.router.events.append(Event(f"plugin.{name}", dict(fields)))

    def set_bytes(self, off: int, data: bytes) -> None:
        d = self._pkt.data
        if off < 0 or off + len(data) > len(d):
            raise ValueError("write outside the packet")
        d[off:off + len(data)] = data

    def fix_checksums(self) -> None:
        """Recompute the IPv4 header checksum and the TCP/UDP/ICMP(v6) checksum."""
        d, o, p = self._pkt.data, self.thoff, self.l4proto
        if self.family == 4:
            set_checksum(d, 0, (d[0] & 0x0F) << 2)
        if o < 0:
            return
        at = {6: 16, 17: 6, 1: 2, 58: 2}.get(p)
        if at is None or o + at + 2 > len(d):
            return
        n = len(d) - o
        d[o + at] = d[o + at + 1] = 0
        if p == 1:
            c = inet_checksum(memoryview(d)[o:])
        elif self.family == 4:
            c = inet_checksum(memoryview(d)[o:], int.from_bytes(d[12:16], "big")
                              + int.from_bytes(d[16:20], "big") + p + n)
        else:
            c = inet_checksum(memoryview(d)[o:], int.from_bytes(d[8:24], "big")
                              + int.from_bytes(d[24:40], "big") + p + n)
        if p == 17 and c == 0:
            c = 0xFFFF
        d[o + at], d[o + at + 1] = c >> 8, c & 0xFF
