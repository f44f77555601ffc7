"""Build the frame that ``pyrouter explain`` runs through the router (pure).

A description names the ingress interface and the packet: ``src``, ``dst``,
``proto`` (icmp, udp, tcp or a number), ``sport``/``dport``, ``ttl``, ``size``
(bytes of L4 payload, like ping's -s), ``df``, ``tos``, ``icmp_type``,
``tcp_flags`` (letters of FSRPAU).  The frame is addressed to the ingress
port's MAC from the sender's known MAC (or a placeholder), as a host on that
link would send it.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Any

from ..wire.checksum import inet_checksum
from ..wire.ipv4 import IP_DF, set_checksum

if TYPE_CHECKING:
    from ..core.router import Router

PLACEHOLDER_MAC = bytes.fromhex("02000000eeee")
PROTOS = {"icmp": 1, "tcp": 6, "udp": 17}
TCP_FLAGS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20}


def _num(args: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    v = args.get(key, default)
    try:
        n = int(v)
    except (TypeError, ValueError):
        raise ValueError(f"{key}: not a number: {v!r}") from None
    if not lo <= n <= hi:
        raise ValueError(f"{key}: must be from {lo} to {hi}")
    return n


def build_frame(r: Router, args: dict[str, Any]) -> tuple[int, bytes, dict[str, Any]]:
    iif = args.get("iif")
    port = r.ports_by_name.get(str(iif)) if iif is not None else None
    if port is None:
        raise ValueError(f"iif: no interface named {iif!r}")
    try:
        dst = IPv4Address(str(args["dst"]))
        src = IPv4Address(str(args["src"])) if args.get("src") else None
    except (KeyError, ValueError) as e:
        raise ValueError(f"src/dst: an IPv4 address is needed ({e})") from None
    if src is None:
        # A host on that link: the first address of the port's first subnet that isn't ours.
        if not port.addrs4:
            raise ValueError("src: needed (the ingress port has no IPv4 address)")
        a, plen = port.addrs4[0]
        net = a & ((0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF)
        cand = net + 1 if net + 1 != a else net + 2
        src = IPv4Address(cand)
    proto_arg = str(args.get("proto", "icmp")).lower()
    proto = PROTOS.get(proto_arg)
    if proto is None:
        proto = _num({"proto": proto_arg}, "proto", 0, 0, 255)
    ttl = _num(args, "ttl", 64, 0, 255)
    size = _num(args, "size", 56, 0, 65000)
    tos = _num(args, "tos", 0, 0, 255)
    sport = _num(args, "sport", 40000, 0, 65535)
    dport = _num(args, "dport", 33434, 0, 65535)
    df = args.get("df", False)
    if not isinstance(df, bool):
        raise ValueError("df: true or false")
    payload = bytes(size)
    pseudo = int(src) + int(dst) + proto
    if proto == 1:
        icmp_type = _num(args, "icmp_type", 8, 0, 255)
        l4 = bytearray(struct.pack("!BBHHH", icmp_type, 0, 0, 0x1234, 1) + payload)
        c = inet_checksum(l4)
        l4[2:4] = c.to_bytes(2, "big")
    elif proto == 17:
        l4 = bytearray(struct.pack("!HHHH", sport, dport, 8 + size, 0) + payload)
        c = inet_checksum(l4, pseudo + len(l4)) or 0xFFFF
        l4[6:8] = c.to_bytes(2, "big")
    elif proto == 6:
        flags = 0
        for ch in str(args.get("tcp_flags", "S")).upper():
            if ch not in TCP_FLAGS:
                raise ValueError(f"tcp_flags: unknown flag {ch!r} (use F S R P A U)")
            flags |= TCP_FLAGS[ch]
        l4 = bytearray(struct.pack("!HHIIBBHHH", sport, dport, 1000, 0, 5 << 4, flags, 65535,
                                   0, 0) + payload)
        c = inet_checksum(l4, pseudo + len(l4))
        l4[16:18] = c.to_bytes(2, "big")
    else:
        l4 = bytearray(payload)
    total = 20 + len(l4)
    if total > 65535:
        raise ValueError("size: the packet would exceed 65535 bytes")
    ip = bytearray(20)
    struct.pack_into("!BBHHHBBH4s4s", ip, 0, 0x45, tos, total, 0x4242,
                     IP_DF if df else 0, ttl, proto, 0, src.packed, dst.packed)
    set_checksum(ip, 0, 20)
    e = r.neigh4.get(port.ifindex, int(src))
    smac = e.lladdr if e is not None and e.lladdr else PLACEHOLDER_MAC
    frame = port.mac + smac + b"\x08\x00" + bytes(ip) + bytes(l4)
    desc = {"iif": port.name, "src": str(src), "dst": str(dst), "proto": proto, "ttl": ttl,
            "len": total, "df": df, "tos": tos}
    if proto in (6, 17):
        desc.update(sport=sport, dport=dport)
    return port.ifindex, frame, desc
