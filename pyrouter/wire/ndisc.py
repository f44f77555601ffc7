"""Neighbour Discovery messages and options (RFC 4861 section 4, RFC 8106 RDNSS).

Bodies start after the 4-byte ICMPv6 header:

* RS (133): reserved(4), options;
* RA (134): cur hop limit(1) flags M O (1) router lifetime(2) reachable time(4)
  retrans timer(4), options;
* NS (135): reserved(4) target(16), options;
* NA (136): flags R S O (1) reserved(3) target(16), options;
* Redirect (137): reserved(4) target(16) destination(16), options.

Options are TLVs in units of 8 bytes: 1 source lladdr, 2 target lladdr, 3 prefix
information, 4 redirected header, 5 MTU, 14 nonce (RFC 7527), 25 RDNSS.  ``parse_options`` rejects a
zero length or one running past the end (RFC 4861 4.6: "Nodes MUST silently
discard an ND packet that contains an option with length zero"), so the caller
can drop the whole message with a reason.

Invariant: every builder returns a whole ICMPv6 message with its checksum field zero
(the output path fills it in over the pseudo-header).
"""

from __future__ import annotations

import struct

ND_OPT_SOURCE_LL_ADDR = 1
ND_OPT_TARGET_LL_ADDR = 2
ND_OPT_PREFIX_INFO = 3
ND_OPT_REDIRECT_HDR = 4
ND_OPT_MTU = 5
ND_OPT_NONCE = 14
ND_OPT_RDNSS = 25

NA_ROUTER = 0x80
NA_SOLICITED = 0x40
NA_OVERRIDE = 0x20
RA_MANAGED = 0x80
RA_OTHER = 0x40
PI_ONLINK = 0x80
PI_AUTONOMOUS = 0x40

_PI = struct.Struct("!BBBBIII16s")


class NdOptionError(ValueError):
    pass


def parse_options(buf: bytes | bytearray, off: int, end: int) -> dict[int, list[bytes]]:
    """Options by type, each value the whole option (type and length bytes included)."""
    out: dict[int, list[bytes]] = {}
    while off < end:
        if end - off < 2:
            raise NdOptionError("truncated option")
        olen = buf[off + 1] * 8
        if olen == 0 or off + olen > end:
            raise NdOptionError("bad option length")
        out.setdefault(buf[off], []).append(bytes(buf[off:off + olen]))
        off += olen
    return out


def lladdr_option(opts: dict[int, list[bytes]], kind: int) -> bytes | None:
    """The Ethernet address in a source/target lladdr option (8 bytes on Ethernet)."""
    v = opts.get(kind)
    if not v:
        return None
    o = v[0]
    return o[2:8] if len(o) == 8 else None


def _ll_opt(kind: int, mac: bytes) -> bytes:
    return bytes([kind, 1]) + mac


def build_ns(target: int, sll: bytes | None, nonce: bytes = b"") -> bytes:
    """An NS; *nonce* (6 bytes) adds the RFC 7527 Nonce option of an enhanced DAD probe."""
    return (b"\x87\x00\x00\x00\x00\x00\x00\x00" + target.to_bytes(16, "big")
            + (_ll_opt(ND_OPT_SOURCE_LL_ADDR, sll) if sll else b"")
            + (bytes([ND_OPT_NONCE, 1]) + nonce if nonce else b""))


def build_na(target: int, flags: int, tll: bytes | None) -> bytes:
    return (bytes([136, 0, 0, 0, flags, 0, 0, 0]) + target.to_bytes(16, "big")
            + (_ll_opt(ND_OPT_TARGET_LL_ADDR, tll) if tll else b""))


def build_rs(sll: bytes | None) -> bytes:
    return b"\x85\x00\x00\x00\x00\x00\x00\x00" + (
        _ll_opt(ND_OPT_SOURCE_LL_ADDR, sll) if sll else b"")


def prefix_option(prefix: int, plen: int, flags: int, valid: int, preferred: int) -> bytes:
    return _PI.pack(ND_OPT_PREFIX_INFO, 4, plen, flags, valid, preferred, 0,
                    prefix.to_bytes(16, "big"))


def mtu_option(mtu: int) -> bytes:
    return struct.pack("!BBHI", ND_OPT_MTU, 1, 0, mtu)


def rdnss_option(servers: list[int], lifetime: int) -> bytes:
    return struct.pack("!BBHI", ND_OPT_RDNSS, 1 + 2 * len(servers), 0, lifetime) + b"".join(
        s.to_bytes(16, "big") for s in servers)


def build_ra(hop_limit: int, flags: int, lifetime: int, reachable: int, retrans: int,
             options: bytes) -> bytes:
    return b"\x86\x00\x00\x00" + struct.pack(
        "!BBHII", hop_limit, flags, lifetime, reachable, retrans) + options


def build_redirect(target: int, dest: int, tll: bytes | None, quoted: bytes) -> bytes:
    """Redirect with a target lladdr option (when known) and the redirected header
    option quoting as much of the packet as fits (the caller trims *quoted*)."""
    body = bytearray(b"\x89\x00\x00\x00\x00\x00\x00\x00")
    body += target.to_bytes(16, "big") + dest.to_bytes(16, "big")
    if tll:
        body += _ll_opt(ND_OPT_TARGET_LL_ADDR, tll)
    q = quoted[:len(quoted) & ~7]
    body += bytes([ND_OPT_REDIRECT_HDR, 1 + len(q) // 8, 0, 0, 0, 0, 0, 0]) + q
    return bytes(body)
