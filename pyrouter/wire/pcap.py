"""Classic libpcap capture files (not pcapng), Ethernet link type.

Format (https://wiki.wireshark.org/Development/LibpcapFileFormat)::

    file header, 24 bytes
        magic      u32  0xa1b2c3d4 (microsecond stamps) or 0xa1b23c4d (nanosecond)
        version    u16 2, u16 4
        thiszone   i32  0 (stamps are UTC)
        sigfigs    u32  0
        snaplen    u32  largest caplen in the file (262144 by default, like tcpdump)
        network    u32  1 = LINKTYPE_ETHERNET
    then per packet: a 16-byte record header and caplen bytes of the frame
        ts_sec u32, ts_frac u32 (us or ns), caplen u32, origlen u32

Pure functions over bytes: the caller owns the file and the clock.  We write
little-endian (the magic tells readers the byte order) and read both orders.

Invariants: ``file_header() + record(...) + ...`` is a file tcpdump, tshark and
``read_records`` accept; ``record`` never stores more than *snaplen* bytes and
always keeps ``origlen = len(frame)``; microsecond records truncate the
nanosecond stamp (never round it up into the next second); ``read_records``
raises only MalformedError, and only for input that is not such a file.
"""

from __future__ import annotations

import struct

from .errors import MalformedError

MAGIC_USEC = 0xA1B2C3D4
MAGIC_NSEC = 0xA1B23C4D
VERSION_MAJOR = 2
VERSION_MINOR = 4
LINKTYPE_ETHERNET = 1
DEFAULT_SNAPLEN = 262144          # tcpdump's default, MAXIMUM_SNAPLEN in libpcap

FILE_HEADER_LEN = 24
RECORD_HEADER_LEN = 16

_NS_PER_S = 1_000_000_000
_MAX_TS_NS = (1 << 32) * _NS_PER_S - 1   # ts_sec is an unsigned 32-bit field

_FILE_HDR = struct.Struct("<IHHiIII")
_REC_HDR = struct.Struct("<IIII")
# Readers: both byte orders.
_FILE_HDR_BY_ORDER = {"<": _FILE_HDR, ">": struct.Struct(">IHHiIII")}
_REC_HDR_BY_ORDER = {"<": _REC_HDR, ">": struct.Struct(">IIII")}


def _check_snaplen(snaplen: int) -> None:
    if not 0 < snaplen <= 0xFFFF_FFFF:
        raise ValueError(f"snaplen must be in 1..2**32-1, not {snaplen}")


def file_header(nanosecond: bool = False, snaplen: int = DEFAULT_SNAPLEN) -> bytes:
    """The 24-byte global header of an Ethernet capture file."""
    _check_snaplen(snaplen)
    magic = MAGIC_NSEC if nanosecond else MAGIC_USEC
    return _FILE_HDR.pack(magic, VERSION_MAJOR, VERSION_MINOR, 0, 0, snaplen,
                          LINKTYPE_ETHERNET)


def record(ts_ns: int, frame: bytes | bytearray | memoryview, nanosecond: bool = False,
           snaplen: int = DEFAULT_SNAPLEN) -> bytes:
    """One packet record: header plus at most *snaplen* bytes of *frame*.

    *ts_ns* is nanoseconds since the Unix epoch; *nanosecond* must match the
    file header the record follows.  ValueError for a stamp the format cannot
    hold (negative, or seconds beyond 32 bits) or a bad snaplen.
    """
    _check_snaplen(snaplen)
    if not 0 <= ts_ns <= _MAX_TS_NS:
        raise ValueError(f"timestamp {ts_ns} ns does not fit a pcap record")
    sec, frac = divmod(ts_ns, _NS_PER_S)
    if not nanosecond:
        frac //= 1000
    origlen = len(frame)
    data = bytes(frame[:snaplen])
    return _REC_HDR.pack(sec, frac, len(data), origlen) + data


def read_records(data: bytes | bytearray | memoryview) -> list[tuple[int, bytes]]:
    """Parse a whole Ethernet capture file into ``[(ts_ns, captured bytes), ...]``.

    Accepts either byte order and either stamp resolution.  Raises
    MalformedError (reasons: pcap_truncated, pcap_bad_magic, pcap_bad_version,
    pcap_bad_linktype, pcap_bad_caplen, pcap_bad_timestamp).
    """
    data = bytes(data)
    if len(data) < FILE_HEADER_LEN:
        raise MalformedError("pcap_truncated", f"file header is {len(data)} bytes")
    order = ""
    nanosecond = False
    for candidate in ("<", ">"):
        magic = _FILE_HDR_BY_ORDER[candidate].unpack_from(data)[0]
        if magic in (MAGIC_USEC, MAGIC_NSEC):
            order, nanosecond = candidate, magic == MAGIC_NSEC
            break
    if not order:
        raise MalformedError("pcap_bad_magic", data[:4].hex())
    _magic, major, minor, _zone, _sigfigs, _snaplen, network = \
        _FILE_HDR_BY_ORDER[order].unpack_from(data)
    if major != VERSION_MAJOR:
        raise MalformedError("pcap_bad_version", f"{major}.{minor}")
    # libpcap keeps extra information in the upper bits of the link type field.
    if network & 0x03FF_FFFF != LINKTYPE_ETHERNET:
        raise MalformedError("pcap_bad_linktype", str(network))
    rec_hdr = _REC_HDR_BY_ORDER[order]
    frac_limit, frac_scale = (_NS_PER_S, 1) if nanosecond else (1_000_000, 1000)
    out: list[tuple[int, bytes]] = []
    off = FILE_HEADER_LEN
    end = len(data)
    while off < end:
        if end - off < RECORD_HEADER_LEN:
            raise MalformedError("pcap_truncated", f"record header at {off} cut short")
        sec, frac, caplen, origlen = rec_hdr.unpack_from(data, off)
        if frac >= frac_limit:
            raise MalformedError("pcap_bad_timestamp", f"fraction {frac} at {off}")
        if caplen > origlen:
            raise MalformedError("pcap_bad_caplen", f"caplen {caplen} > origlen {origlen}")
        off += RECORD_HEADER_LEN
        if end - off < caplen:
            raise MalformedError("pcap_truncated", f"record at {off} wants {caplen} bytes")
        out.append((sec * _NS_PER_S + frac * frac_scale, data[off:off + caplen]))
        off += caplen
    return out
