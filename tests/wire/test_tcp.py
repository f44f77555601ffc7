"""pyrouter.wire.tcp: TCP header (RFC 9293) with options and checksum."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyrouter.wire.checksum import pseudo_header_v4, pseudo_header_v6
from pyrouter.wire.ipv4 import IPPROTO_TCP
from pyrouter.wire.tcp import ACK, CWR, ECE, FIN, PSH, RST, SYN, TCP_HLEN, URG, TcpRepr

from ._helpers import SETTINGS, buffer_window, expect_malformed, h, padded_options, \
    parse_or_none, pseudo_bytes, pseudo_sums, ref_checksum, u16, u32

REASONS = frozenset({"tcp_malformed", "tcp_csum_error"})

SRC4, DST4 = IPv4Address("10.0.1.2").packed, IPv4Address("10.0.2.2").packed
SRC6, DST6 = IPv6Address("fe80::1").packed, IPv6Address("fe80::2").packed
PSEUDO4 = pseudo_header_v4(SRC4, DST4, IPPROTO_TCP, 0)
PSEUDO6 = pseudo_header_v6(SRC6, DST6, IPPROTO_TCP, 0)

# Built with scapy 2.8.0 (the TCP layer of each packet):
#   IP(src="10.0.1.2", dst="10.0.2.2") / TCP(sport=43210, dport=80, seq=0x01020304,
#     ack=0xa0b0c0d0, flags="PA", window=501, options=[("NOP", None), ("NOP", None),
#     ("Timestamp", (12345, 67890))]) / Raw(b"GET / HTTP/1.1\r\n\r\n")
TCP4_OPTS = h("0101080a0000303900010932")
TCP4 = h("a8ca 0050 01020304 a0b0c0d0 8018 01f5 36fc 0000") + TCP4_OPTS \
    + b"GET / HTTP/1.1\r\n\r\n"
#   IPv6(src="fe80::1", dst="fe80::2") / TCP(sport=22, dport=50000, seq=1, ack=0, flags="S",
#     window=64800, options=[("MSS", 1440), ("SAckOK", b""), ("Timestamp", (1, 0)),
#     ("NOP", None), ("WScale", 7)])
TCP6_OPTS = h("020405a0 0402 080a 00000001 00000000 01 030307")
TCP6 = h("0016 c350 00000001 00000000 a002 fd20 8a86 0000") + TCP6_OPTS

TCP4_REPR = TcpRepr(43210, 80, 0x01020304, 0xA0B0C0D0, PSH | ACK, 501, 0, TCP4_OPTS,
                    b"GET / HTTP/1.1\r\n\r\n", 0x36FC)
TCP6_REPR = TcpRepr(22, 50000, 1, 0, SYN, 64800, 0, TCP6_OPTS, b"", 0x8A86)
GOLDEN = [(TCP4, TCP4_REPR, PSEUDO4), (TCP6, TCP6_REPR, PSEUDO6)]
IDS = ["v4-psh-ack", "v6-syn"]


@pytest.mark.parametrize("wire,expected,pseudo", GOLDEN, ids=IDS)
def test_deconstruct(wire: bytes, expected: TcpRepr, pseudo: int) -> None:
    assert TcpRepr.parse(wire, 0, len(wire), pseudo) == expected
    assert TcpRepr.parse(wire, 0, len(wire)) == expected
    framed = memoryview(b"\x00" * 40 + wire + b"\xff" * 3)
    assert TcpRepr.parse(framed, 40, 40 + len(wire), pseudo) == expected
    assert expected.length == len(wire)


@pytest.mark.parametrize("wire,repr_,pseudo", GOLDEN, ids=IDS)
def test_construct(wire: bytes, repr_: TcpRepr, pseudo: int) -> None:
    buf = bytearray(len(wire))
    dataclasses.replace(repr_, checksum=None).emit(buf, 0, pseudo)
    assert bytes(buf) == wire
    buf = bytearray(b"\x22" * (len(wire) + 25))
    repr_.emit(buf, 20, pseudo)
    assert bytes(buf[20:20 + len(wire)]) == wire
    assert buf[:20] == b"\x22" * 20 and buf[20 + len(wire):] == b"\x22" * 5


def test_flag_constants() -> None:
    assert [FIN, SYN, RST, PSH, ACK, URG, ECE, CWR] == [1 << i for i in range(8)]


def test_ns_flag_kept_reserved_bits_dropped() -> None:
    wire = bytearray(TCP6)
    wire[12] |= 0x0F                       # reserved bits 4-6 and NS (bit 8 of flags)
    r = TcpRepr.parse(wire, 0, len(wire))
    assert r.flags == 0x100 | SYN
    assert r.options == TCP6_OPTS


@pytest.mark.parametrize("doff", [0, 1, 4])
def test_data_offset_below_header(doff: int) -> None:
    bad = bytearray(TCP4)
    bad[12] = (doff << 4) | (bad[12] & 0x0F)
    expect_malformed(TcpRepr.parse, bad, 0, len(bad), reason="tcp_malformed")
    expect_malformed(TcpRepr.parse, bad, 0, len(bad), PSEUDO4, reason="tcp_malformed")


def test_data_offset_past_segment() -> None:
    bad = bytearray(TCP6)                  # 40-byte header, no data
    bad[12] = (11 << 4) | (bad[12] & 0x0F)
    expect_malformed(TcpRepr.parse, bad, 0, len(bad), reason="tcp_malformed")
    bad[12] = (15 << 4) | (bad[12] & 0x0F)
    expect_malformed(TcpRepr.parse, bad, 0, len(bad), reason="tcp_malformed")


@pytest.mark.parametrize("wire,pseudo", [(TCP4, PSEUDO4), (TCP6, PSEUDO6)], ids=IDS)
def test_bad_checksum(wire: bytes, pseudo: int) -> None:
    for pos in range(len(wire)):
        if pos == 12:
            continue                       # data offset
        bad = bytearray(wire)
        bad[pos] ^= 0x20
        expect_malformed(TcpRepr.parse, bad, 0, len(bad), pseudo, reason="tcp_csum_error")
    # Length is part of the pseudo-header: an extra zero byte is caught.
    expect_malformed(TcpRepr.parse, wire + b"\x00", 0, len(wire) + 1, pseudo,
                     reason="tcp_csum_error")


@pytest.mark.parametrize("wire,pseudo", [(TCP4, PSEUDO4), (TCP6, PSEUDO6)], ids=IDS)
def test_truncation_sweep(wire: bytes, pseudo: int) -> None:
    # TCP has no length field: once the header (data offset) fits, a shorter
    # segment is valid without the checksum, and caught by it with one.
    doff = (wire[12] >> 4) * 4
    for n in range(len(wire)):
        if n < doff:
            expect_malformed(TcpRepr.parse, wire[:n], 0, n, reason="tcp_malformed")
            expect_malformed(TcpRepr.parse, wire, 0, n, pseudo, reason="tcp_malformed")
        else:
            r = TcpRepr.parse(wire[:n], 0, n)
            assert r.options == wire[TCP_HLEN:doff] and r.data == wire[doff:n]
            expect_malformed(TcpRepr.parse, wire, 0, n, pseudo, reason="tcp_csum_error")


@pytest.mark.parametrize("options", [b"\x01", b"\x01\x01\x01", b"\x02\x04\x05\xa0\x01"])
def test_emit_rejects_unpadded_options(options: bytes) -> None:
    with pytest.raises(ValueError):
        TcpRepr(1, 2, options=options).emit(bytearray(64), 0, PSEUDO4)


@pytest.mark.parametrize("n", [44, 60])
def test_emit_rejects_options_longer_than_40(n: int) -> None:
    with pytest.raises(ValueError):
        TcpRepr(1, 2, options=b"\x01" * n).emit(bytearray(128), 0, PSEUDO4)


tcp_reprs = st.builds(TcpRepr, sport=u16, dport=u16, seq=u32, ack=u32,
                      flags=st.integers(0, 0x1FF), window=u16, urgent=u16,
                      options=padded_options(40), data=st.binary(max_size=64))


@SETTINGS
@given(tcp_reprs, pseudo_sums(IPPROTO_TCP), st.integers(0, 8))
def test_round_trip(r: TcpRepr, ps: tuple[int, bytes, bytes, bool], off: int) -> None:
    pseudo, src, dst, is_v6 = ps
    buf = bytearray(off + r.length)
    r.emit(buf, off, pseudo)
    wire = bytes(buf[off:])
    assert (wire[12] >> 4) * 4 == TCP_HLEN + len(r.options)
    csum = int.from_bytes(wire[16:18], "big")
    zeroed = wire[:16] + b"\x00\x00" + wire[18:]
    assert csum == ref_checksum(pseudo_bytes(src, dst, is_v6, IPPROTO_TCP, r.length) + zeroed)
    parsed = TcpRepr.parse(buf, off, len(buf), pseudo)
    assert parsed.checksum == csum
    assert dataclasses.replace(parsed, checksum=None) == r


@SETTINGS
@given(buffer_window(max_size=80), st.none() | st.integers(0, 1 << 40))
def test_parse_random_bytes(window: tuple[bytes, int, int], pseudo: int | None) -> None:
    data, off, end = window
    r = parse_or_none(TcpRepr.parse, data, off, end, pseudo, reasons=REASONS)
    if r is not None:
        assert r.length == end - off
        assert TCP_HLEN + len(r.options) <= end - off and len(r.options) % 4 == 0
