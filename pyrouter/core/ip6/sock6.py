"""The router's own ping over IPv6 (``pyrouter ping fd00::2``), as ip/sock.py for IPv4.

An ICMPv6 Echo Request built here goes out through ip6_local_out (route lookup,
source selection, NDISC, fragmentation), and what comes back is matched like a
socket would: an Echo Reply by its identifier, an ICMPv6 error by the Echo Request it
quotes (our source address and a registered identifier).  Each match is an Event
``sock.icmp`` with the same fields as IPv4's (hop limit under ``ttl``).

Invariant: only identifiers registered in ``Router.sockets["icmp6"]`` match.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from ...wire.ipv6 import IPPROTO_ICMPV6, ip6_str
from ..actions import Event
from ..packet import PacketBuf
from .exthdrs import skip_exthdr
from .output import ip6_local_out

if TYPE_CHECKING:
    from ..router import Router


def send_echo6(r: Router, dst: int, ident: int, seq: int, now: int, size: int = 56,
               hop_limit: int = 64, src: int | None = None, oif: int | None = None) -> bool:
    """An Echo Request of *size* data bytes (the first 8 carry *now*, as ping's timeval);
    the checksum is filled by ip6_local_out."""
    data = now.to_bytes(8, "big", signed=False)[: min(8, size)]
    data += bytes((i + 8) & 0xFF for i in range(max(0, size - 8)))
    msg = struct.pack("!BBHHH", 128, 0, 0, ident, seq) + data
    return ip6_local_out(r, dst, src, IPPROTO_ICMPV6, msg, now, hop_limit=hop_limit, oif=oif)


def icmp6_for_us(r: Router, pkt: PacketBuf, off: int, now: int) -> None:
    data = pkt.data
    idents = r.sockets.get("icmp6")
    if not idents or len(data) < off + 8:
        return
    t, code = data[off], data[off + 1]
    info: dict[str, Any] = {"type": t, "code": code, "from": ip6_str(data[8:24]),
                            "ttl": data[7], "len": len(data), "now": now}
    if t == 129:
        ident, seq = struct.unpack_from("!HH", data, off + 4)
        if ident not in idents:
            return
        info.update(kind="echo_reply", ident=ident, seq=seq, bytes=len(data) - off)
        if len(data) >= off + 16:
            info["sent"] = int.from_bytes(data[off + 8:off + 16], "big")
        r.events.append(Event("sock.icmp", info))
        return
    if t >= 128:
        return
    q = off + 8
    if len(data) < q + 40 or int.from_bytes(data[q + 8:q + 24], "big") not in r.local6:
        return
    quoted = bytes(data[q:])
    l4, proto = skip_exthdr(quoted, 40, quoted[6])
    if l4 < 0 or proto != IPPROTO_ICMPV6 or len(quoted) < l4 + 8 or quoted[l4] != 128:
        return
    ident, seq = struct.unpack_from("!HH", quoted, l4 + 4)
    if ident not in idents:
        return
    info.update(kind="error", ident=ident, seq=seq, orig_dst=ip6_str(quoted[24:40]))
    if t == 2:
        info["mtu"] = int.from_bytes(data[off + 4:off + 8], "big")
    r.events.append(Event("sock.icmp", info))
