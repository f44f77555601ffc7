"""The router's own probes: ping and traceroute sent through the local-output path.

Operators ping and traceroute *from* the router (``pyrouter ping``), and the
router comes to have its own traffic this way (PMTU learning needs it).  A
probe is an ICMP Echo Request or a UDP datagram built here and sent with
ip_local_out(), so it takes the same route lookup, neighbour resolution and
fragmentation as every other packet the router originates.

What comes back is matched like a socket would match it: an Echo Reply by
its identifier, an ICMP error by the header it quotes (our source address,
and the echo identifier or the UDP source port of a registered probe).  Each
match becomes an Event ``sock.icmp`` for the control socket to stream.

Invariants: only identifiers/ports registered in ``Router.sockets`` are
matched; nothing here keeps per-probe state (the caller does), so the table
cannot grow with traffic.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from ...wire import icmpv4 as icmpw
from ...wire.addr import ip4_str
from ...wire.checksum import inet_checksum
from ...wire.ipv4 import IPPROTO_ICMP, IPPROTO_UDP
from ..actions import Event
from ..packet import PacketBuf
from .output import ip_local_out
from .pmtu import quoted_from_us

if TYPE_CHECKING:
    from ..router import Router

_ECHO = struct.Struct("!BBHHH")
_UDP = struct.Struct("!HHHH")


def send_echo(r: Router, dst: int, ident: int, seq: int, now: int, size: int = 56,
              ttl: int = 64, df: bool = False, src: int | None = None, tos: int = 0) -> bool:
    """An Echo Request of *size* data bytes (the first 8 carry *now*, as ping's timeval)."""
    data = now.to_bytes(8, "big", signed=False)[: min(8, size)]
    data += bytes((i + 8) & 0xFF for i in range(max(0, size - 8)))
    msg = bytearray(_ECHO.size + len(data))
    _ECHO.pack_into(msg, 0, icmpw.ICMP_ECHO, 0, 0, ident, seq)
    msg[_ECHO.size:] = data
    c = inet_checksum(msg)
    msg[2], msg[3] = c >> 8, c & 0xFF
    return ip_local_out(r, dst, src, IPPROTO_ICMP, bytes(msg), now, tos=tos, ttl=ttl, df=df)


def send_udp_probe(r: Router, dst: int, sport: int, dport: int, now: int, size: int = 32,
                   ttl: int = 64, df: bool = False, src: int | None = None) -> bool:
    """A traceroute-style UDP probe (checksum 0 = none over IPv4, as allowed)."""
    payload = bytes(size)
    seg = _UDP.pack(sport, dport, 8 + size, 0) + payload
    return ip_local_out(r, dst, src, IPPROTO_UDP, seg, now, ttl=ttl, df=df)


def icmp_for_us(r: Router, pkt: PacketBuf, off: int, now: int) -> None:
    """An Echo Reply or ICMP error addressed to us: hand it to the probe that owns it."""
    data = pkt.data
    icmp_type, code = data[off], data[off + 1]
    info: dict[str, Any] = {"type": icmp_type, "code": code, "from": ip4_str(data[12:16]),
                            "ttl": data[8], "len": len(data), "now": now}
    if icmp_type == icmpw.ICMP_ECHOREPLY:
        if len(data) < off + 8:
            return
        ident, seq = struct.unpack_from("!HH", data, off + 4)
        if ident not in r.sockets["icmp"]:
            return
        info.update(kind="echo_reply", ident=ident, seq=seq, bytes=len(data) - off)
        if len(data) >= off + 16:
            info["sent"] = int.from_bytes(data[off + 8:off + 16], "big")
        r.events.append(Event("sock.icmp", info))
        return
    if not icmpw.is_error_type(icmp_type):
        return
    quoted = quoted_from_us(r, data, off)
    if quoted is None:
        return
    q = quoted[0]
    qihl = (data[q] & 0x0F) << 2
    if len(data) < q + qihl + 8:
        return
    t = q + qihl
    info["kind"] = "error"
    info["orig_dst"] = ip4_str(data[q + 16:q + 20])
    if icmp_type == icmpw.ICMP_DEST_UNREACH and code == icmpw.ICMP_FRAG_NEEDED:
        info["mtu"] = (data[off + 6] << 8) | data[off + 7]
    qproto = data[q + 9]
    if qproto == IPPROTO_ICMP and data[t] == icmpw.ICMP_ECHO:
        ident, seq = struct.unpack_from("!HH", data, t + 4)
        if ident not in r.sockets["icmp"]:
            return
        info.update(ident=ident, seq=seq)
    elif qproto == IPPROTO_UDP:
        sport, dport = struct.unpack_from("!HH", data, t)
        if sport not in r.sockets["udp"]:
            return
        info.update(sport=sport, dport=dport)
    else:
        return
    r.events.append(Event("sock.icmp", info))
