"""IPv4 header (RFC 791), with options kept as raw bytes.

Layout::

    0        1        2        3
    ver|ihl  tos      total length
    identification    flags|fragment offset
    ttl      protocol header checksum
    source address
    destination address
    options (ihl*4 - 20 bytes, <= 40) ...

Two forms, as everywhere in this ring: ``check_header`` validates a header in
place (the hot path: ip_rcv) and ``Ipv4Repr`` is the value used to build and
inspect packets.  Invariant: after ``check_header`` returns, every offset in
``[off, off + total_len)`` is inside the buffer and the accessors below cannot
raise.  Reasons match the core's drop reasons (ip_truncated, ip_bad_version,
ip_bad_ihl, ip_bad_total_len, ip_csum_error).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

from .checksum import csum_replace2, inet_checksum
from .errors import MalformedError

IPV4_HLEN = 20
IP_DF = 0x4000
IP_MF = 0x2000
IP_OFFSET = 0x1FFF
IP_CE = 0x8000

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ICMPV6 = 58

# Field offsets within the header.
F_VER_IHL, F_TOS, F_LEN, F_ID, F_FRAG, F_TTL, F_PROTO, F_CSUM, F_SRC, F_DST = (
    0, 1, 2, 4, 6, 8, 9, 10, 12, 16)

_HDR = struct.Struct("!BBHHHBBH4s4s")
_from_bytes = int.from_bytes


def check_header(buf: bytes | bytearray | memoryview, off: int, end: int,
                 verify_checksum: bool = True) -> tuple[int, int]:
    """Validate the IPv4 header at *off*; return ``(ihl_bytes, total_len)``.

    The checks and their order follow ip_rcv_core(): length of a minimal
    header, version and ihl, header checksum, then total length against the
    frame and the header.  Raises MalformedError with the drop reason.
    """
    avail = min(end, len(buf)) - off
    if avail < IPV4_HLEN:
        raise MalformedError("ip_truncated", f"{avail} bytes")
    b0 = buf[off]
    if b0 >> 4 != 4:
        raise MalformedError("ip_bad_version", str(b0 >> 4))
    ihl = (b0 & 0x0F) << 2
    if ihl < IPV4_HLEN:
        raise MalformedError("ip_bad_ihl", str(ihl >> 2))
    if avail < ihl:
        raise MalformedError("ip_truncated", "options cut short")
    if verify_checksum and _from_bytes(buf[off:off + ihl], "big") % 0xFFFF:
        raise MalformedError("ip_csum_error")
    total = (buf[off + 2] << 8) | buf[off + 3]
    if total > avail:
        raise MalformedError("ip_truncated", f"total length {total} > {avail}")
    if total < ihl:
        raise MalformedError("ip_bad_total_len", f"total length {total} < ihl {ihl}")
    return ihl, total


def header_checksum(buf: bytes | bytearray | memoryview, off: int, ihl: int) -> int:
    """Checksum of the header at *off* as if its checksum field were zero."""
    hdr = bytearray(buf[off:off + ihl])
    hdr[F_CSUM] = hdr[F_CSUM + 1] = 0
    return inet_checksum(hdr)


def set_checksum(buf: bytearray, off: int, ihl: int) -> None:
    """Recompute and store the header checksum (after an option or fragment edit)."""
    buf[off + F_CSUM] = buf[off + F_CSUM + 1] = 0
    c = inet_checksum(buf[off:off + ihl])
    buf[off + F_CSUM] = c >> 8
    buf[off + F_CSUM + 1] = c & 0xFF


def decrease_ttl(buf: bytearray, off: int) -> None:
    """ip_decrease_ttl(): TTL -= 1 with the RFC 1624 incremental checksum.

    The TTL is the high byte of the 16-bit word at offset 8, so the word drops
    by 0x0100; the checksum word is updated without touching the rest.
    """
    ttl = buf[off + F_TTL]
    word = (ttl << 8) | buf[off + F_PROTO]
    check = (buf[off + F_CSUM] << 8) | buf[off + F_CSUM + 1]
    check = csum_replace2(check, word, word - 0x100)
    buf[off + F_TTL] = ttl - 1
    buf[off + F_CSUM] = check >> 8
    buf[off + F_CSUM + 1] = check & 0xFF


def is_fragment(frag_field: int) -> bool:
    """ip_is_fragment(): MF set or a non-zero offset."""
    return bool(frag_field & (IP_MF | IP_OFFSET))


@dataclass(frozen=True, slots=True)
class Ipv4Repr:
    """An IPv4 header as a value.  ``total_len`` 0 means "header + payload" at emit."""

    src: IPv4Address
    dst: IPv4Address
    proto: int
    ttl: int = 64
    tos: int = 0
    ident: int = 0
    df: bool = False
    mf: bool = False
    frag_offset: int = 0          # in bytes (a multiple of 8)
    options: bytes = b""
    total_len: int = 0
    checksum: int | None = None   # as parsed; emit always computes it
    flags_reserved: bool = False

    @property
    def header_len(self) -> int:
        return IPV4_HLEN + len(self.options)

    @classmethod
    def parse(cls, buf: bytes | bytearray | memoryview, off: int = 0, end: int | None = None,
              verify_checksum: bool = True) -> Ipv4Repr:
        if end is None:
            end = len(buf)
        ihl, total = check_header(buf, off, end, verify_checksum)
        _vi, tos, _tl, ident, frag, ttl, proto, csum, src, dst = _HDR.unpack_from(buf, off)
        return cls(src=IPv4Address(src), dst=IPv4Address(dst), proto=proto, ttl=ttl, tos=tos,
                   ident=ident, df=bool(frag & IP_DF), mf=bool(frag & IP_MF),
                   frag_offset=(frag & IP_OFFSET) << 3,
                   options=bytes(buf[off + IPV4_HLEN:off + ihl]), total_len=total,
                   checksum=csum, flags_reserved=bool(frag & IP_CE))

    def emit(self, buf: bytearray, off: int = 0, payload_len: int | None = None) -> None:
        """Write the header at *off*, checksum included.

        ``payload_len`` sets the total length when ``total_len`` is 0.
        """
        if len(self.options) % 4 or len(self.options) > 40:
            raise ValueError("IPv4 options must be a multiple of 4 bytes, at most 40")
        hl = self.header_len
        total = self.total_len or hl + (payload_len or 0)
        frag = ((self.frag_offset >> 3) & IP_OFFSET) | (IP_DF if self.df else 0) \
            | (IP_MF if self.mf else 0) | (IP_CE if self.flags_reserved else 0)
        _HDR.pack_into(buf, off, 0x40 | (hl >> 2), self.tos, total, self.ident, frag, self.ttl,
                       self.proto, 0, self.src.packed, self.dst.packed)
        buf[off + IPV4_HLEN:off + hl] = self.options
        set_checksum(buf, off, hl)

    def to_bytes(self, payload: bytes = b"") -> bytes:
        out = bytearray(self.header_len + len(payload))
        self.emit(out, 0, len(payload))
        out[self.header_len:] = payload
        return bytes(out)
