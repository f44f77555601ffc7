"""pyrouter.wire.ipv4: check_header, Ipv4Repr, checksum helpers, decrease_ttl."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyrouter.wire.checksum import verify
from pyrouter.wire.errors import MalformedError
from pyrouter.wire.ipv4 import (
    IP_DF,
    IP_MF,
    IPPROTO_UDP,
    IPV4_HLEN,
    Ipv4Repr,
    check_header,
    decrease_ttl,
    header_checksum,
    is_fragment,
    set_checksum,
)

from ._helpers import (
    SETTINGS,
    buffer_window,
    expect_malformed,
    h,
    ipv4_reprs,
    parse_or_none,
    ref_checksum,
)

REASONS = frozenset({"ip_truncated", "ip_bad_version", "ip_bad_ihl", "ip_bad_total_len",
                     "ip_csum_error"})

# Built with scapy 2.8.0:
#   IP(src="10.0.1.2", dst="10.0.2.2", ttl=63, tos=0xb8, id=0x1234, flags="DF",
#      proto=17) / Raw(b"payload!")
IPV4 = h("45b8001c123440003f1111e20a0001020a000202 7061796c6f616421")
#   IP(src="192.168.1.10", dst="224.0.0.22", ttl=1, tos=0xc0, id=0xbeef, flags="MF",
#      frag=185, proto=2, options=[IPOption_Router_Alert(),
#      IPOption_RR(routers=["10.0.0.1", "0.0.0.0"])]) / Raw(b"\x22\x00\xf9\x02")
IPV4_OPTS = h("49c00028beef20b901029389c0a8010ae0000016"
              "94040000070b040a0000010000000000 2200f902")
OPTS = h("94040000 070b040a000001 00000000 00")
# The same two packets with ttl - 1, as scapy computes them (full checksum).
IPV4_TTL62 = h("45b8001c123440003e1112e20a0001020a000202 7061796c6f616421")
IPV4_OPTS_TTL0 = h("49c00028beef20b900029489c0a8010ae0000016"
                   "94040000070b040a0000010000000000 2200f902")

GOLDEN_REPR = Ipv4Repr(src=IPv4Address("10.0.1.2"), dst=IPv4Address("10.0.2.2"),
                       proto=IPPROTO_UDP, ttl=63, tos=0xB8, ident=0x1234, df=True,
                       total_len=28, checksum=0x11E2)
GOLDEN_OPTS_REPR = Ipv4Repr(src=IPv4Address("192.168.1.10"), dst=IPv4Address("224.0.0.22"),
                            proto=2, ttl=1, tos=0xC0, ident=0xBEEF, mf=True,
                            frag_offset=185 * 8, options=OPTS, total_len=40,
                            checksum=0x9389)


def with_checksum(hdr: bytes | bytearray) -> bytearray:
    """Header bytes with a correct checksum (computed by the reference sum)."""
    out = bytearray(hdr)
    ihl = (out[0] & 0x0F) * 4
    out[10:12] = b"\x00\x00"
    out[10:12] = ref_checksum(bytes(out[:ihl])).to_bytes(2, "big")
    return out


# ---------------------------------------------------------------- golden bytes


def test_deconstruct() -> None:
    r = Ipv4Repr.parse(IPV4)
    assert r == GOLDEN_REPR
    assert r.header_len == 20
    assert not r.mf and not r.flags_reserved and r.frag_offset == 0 and r.options == b""
    assert check_header(IPV4, 0, len(IPV4)) == (20, 28)


def test_deconstruct_options() -> None:
    r = Ipv4Repr.parse(IPV4_OPTS)
    assert r == GOLDEN_OPTS_REPR
    assert r.header_len == 36 and len(r.options) == 16
    assert r.options[:4] == h("94040000")        # Router Alert
    assert r.options[4:15] == h("070b040a00000100000000")  # Record Route, 2 slots
    assert not r.df
    assert check_header(IPV4_OPTS, 0, len(IPV4_OPTS)) == (36, 40)


def test_construct() -> None:
    r = dataclasses.replace(GOLDEN_REPR, total_len=0, checksum=None)
    assert r.to_bytes(IPV4[20:]) == IPV4
    # total_len given explicitly; checksum field ignored, always recomputed.
    assert dataclasses.replace(GOLDEN_REPR, checksum=0xDEAD).to_bytes(IPV4[20:]) == IPV4
    buf = bytearray(b"\xaa" * 40)
    r.emit(buf, 6, payload_len=8)
    assert buf[6:26] == IPV4[:20]
    assert buf[:6] == b"\xaa" * 6 and buf[26:] == b"\xaa" * 14


def test_construct_options() -> None:
    r = dataclasses.replace(GOLDEN_OPTS_REPR, total_len=0, checksum=None)
    assert r.to_bytes(IPV4_OPTS[36:]) == IPV4_OPTS
    buf = bytearray(36)
    r.emit(buf, 0, payload_len=4)
    assert bytes(buf) == IPV4_OPTS[:36]


def test_parse_with_offset_end_and_trailing_bytes() -> None:
    frame = b"\x00" * 14 + IPV4_OPTS + b"\x00" * 6          # Ethernet padding after
    assert Ipv4Repr.parse(frame, 14) == GOLDEN_OPTS_REPR
    assert Ipv4Repr.parse(memoryview(frame), 14, 14 + 40) == GOLDEN_OPTS_REPR
    assert Ipv4Repr.parse(bytearray(frame), 14) == GOLDEN_OPTS_REPR
    expect_malformed(Ipv4Repr.parse, frame, 14, 14 + 39, reason="ip_truncated")


@pytest.mark.parametrize("bad", [b"\x01\x02", b"\x01\x02\x03\x04\x05", b"\x00" * 44])
def test_emit_rejects_unpadded_or_long_options(bad: bytes) -> None:
    r = dataclasses.replace(GOLDEN_REPR, options=bad)
    with pytest.raises(ValueError):
        r.to_bytes()


# ---------------------------------------------------------------- truncation


@pytest.mark.parametrize("golden", [IPV4, IPV4_OPTS], ids=["plain", "options"])
def test_truncation_sweep(golden: bytes) -> None:
    for n in range(len(golden)):
        # Every prefix is short of the minimal header, of the options, or of total length.
        expect_malformed(Ipv4Repr.parse, golden[:n], reason="ip_truncated")
        expect_malformed(Ipv4Repr.parse, golden[:n], verify_checksum=False,
                         reason="ip_truncated")
        expect_malformed(check_header, golden, 0, n, reason="ip_truncated")
        expect_malformed(Ipv4Repr.parse, b"\xee" * 3 + golden, 3, 3 + n, reason="ip_truncated")


# ------------------------------------------------------------ check_header


def test_check_header_truncated_minimal_header() -> None:
    expect_malformed(check_header, IPV4, 0, 19, reason="ip_truncated")
    expect_malformed(check_header, b"", 0, 0, reason="ip_truncated")
    expect_malformed(check_header, IPV4, 10, len(IPV4), reason="ip_truncated")


def test_check_header_truncated_options() -> None:
    # ihl says 36 bytes, only 30 available (checksum not even looked at).
    expect_malformed(check_header, IPV4_OPTS[:30], 0, 30, reason="ip_truncated")


def test_check_header_truncated_total_length() -> None:
    hdr = with_checksum(bytearray(IPV4[:20]))
    hdr[2:4] = (200).to_bytes(2, "big")
    hdr = with_checksum(hdr)
    expect_malformed(check_header, bytes(hdr) + IPV4[20:], 0, 28, reason="ip_truncated")


@pytest.mark.parametrize("version", [0, 1, 5, 6, 15])
def test_check_header_bad_version(version: int) -> None:
    hdr = bytearray(IPV4)
    hdr[0] = (version << 4) | 5
    hdr = with_checksum(hdr)                         # the checksum is not the reason
    expect_malformed(check_header, hdr, 0, len(hdr), reason="ip_bad_version")
    expect_malformed(Ipv4Repr.parse, hdr, reason="ip_bad_version")
    # Version is checked before ihl.
    hdr[0] = version << 4
    expect_malformed(check_header, hdr, 0, len(hdr), reason="ip_bad_version")


@pytest.mark.parametrize("ihl", [0, 1, 4])
def test_check_header_bad_ihl(ihl: int) -> None:
    hdr = bytearray(IPV4)
    hdr[0] = 0x40 | ihl
    expect_malformed(check_header, hdr, 0, len(hdr), reason="ip_bad_ihl")
    expect_malformed(check_header, hdr, 0, len(hdr), False, reason="ip_bad_ihl")
    expect_malformed(Ipv4Repr.parse, hdr, reason="ip_bad_ihl")


@pytest.mark.parametrize("golden", [IPV4, IPV4_OPTS], ids=["plain", "options"])
def test_check_header_csum_error(golden: bytes) -> None:
    ihl = (golden[0] & 0x0F) * 4
    for pos in range(ihl):
        if pos == 0:
            continue                               # would change version/ihl
        bad = bytearray(golden)
        bad[pos] ^= 0x01
        expect_malformed(check_header, bad, 0, len(bad), reason="ip_csum_error")
        expect_malformed(Ipv4Repr.parse, bad, reason="ip_csum_error")
    bad = bytearray(golden)
    bad[10:12] = b"\x00\x00"
    expect_malformed(check_header, bad, 0, len(bad), reason="ip_csum_error")
    # verify_checksum=False skips exactly this check.
    assert check_header(bad, 0, len(bad), verify_checksum=False) == (ihl, len(golden))
    r = Ipv4Repr.parse(bad, verify_checksum=False)
    assert r.checksum == 0
    # Payload bytes are not covered by the header checksum.
    ok = bytearray(golden)
    ok[-1] ^= 0xFF
    assert check_header(ok, 0, len(ok)) == (ihl, len(golden))


def test_check_header_negative_zero_checksum_accepted() -> None:
    # Header whose other words sum to 0xFFFF: both 0x0000 and 0xFFFF verify.
    hdr = bytearray(IPV4[:20])
    hdr[2:4] = (20).to_bytes(2, "big")
    hdr[10:12] = b"\x00\x00"
    s = sum(int.from_bytes(hdr[i:i + 2], "big") for i in range(0, 20, 2)) % 0xFFFF
    hdr[4:6] = ((int.from_bytes(hdr[4:6], "big") - s) % 0xFFFF).to_bytes(2, "big")
    assert check_header(hdr, 0, 20) == (20, 20)
    hdr[10:12] = b"\xff\xff"
    assert check_header(hdr, 0, 20) == (20, 20)


@pytest.mark.parametrize("golden", [IPV4, IPV4_OPTS], ids=["plain", "options"])
def test_check_header_bad_total_len(golden: bytes) -> None:
    ihl = (golden[0] & 0x0F) * 4
    for total in (0, 1, ihl - 1):
        hdr = bytearray(golden)
        hdr[2:4] = total.to_bytes(2, "big")
        hdr = with_checksum(hdr)
        expect_malformed(check_header, hdr, 0, len(hdr), reason="ip_bad_total_len")
        expect_malformed(Ipv4Repr.parse, hdr, reason="ip_bad_total_len")
    hdr = with_checksum(bytearray(golden[:ihl]))
    hdr[2:4] = ihl.to_bytes(2, "big")
    hdr = with_checksum(hdr)
    assert check_header(hdr, 0, ihl) == (ihl, ihl)     # header only: valid


def test_check_header_reason_order() -> None:
    # ip_rcv_core order: length, version/ihl, checksum, total length.
    hdr = bytearray(IPV4)
    hdr[2:4] = (5).to_bytes(2, "big")                # bad total len ...
    expect_malformed(check_header, hdr, 0, len(hdr), reason="ip_csum_error")  # ... csum first
    hdr[0] = 0x65
    expect_malformed(check_header, hdr, 0, len(hdr), reason="ip_bad_version")
    expect_malformed(check_header, hdr, 0, 12, reason="ip_truncated")


# ------------------------------------------------------- checksum helpers, ttl


def test_header_checksum_and_set_checksum() -> None:
    assert header_checksum(IPV4, 0, 20) == 0x11E2
    assert header_checksum(b"\x00" + IPV4_OPTS, 1, 36) == 0x9389
    buf = bytearray(b"\x00" * 3 + IPV4_OPTS)
    buf[3 + 10:3 + 12] = b"\x12\x34"
    set_checksum(buf, 3, 36)
    assert bytes(buf[3:]) == IPV4_OPTS and buf[:3] == b"\x00" * 3


def test_is_fragment() -> None:
    assert not is_fragment(0)
    assert not is_fragment(IP_DF)
    assert is_fragment(IP_MF)
    assert is_fragment(1)
    assert is_fragment(0x1FFF | IP_DF)
    assert not is_fragment(0x8000)


@pytest.mark.parametrize("golden,expected", [(IPV4, IPV4_TTL62), (IPV4_OPTS, IPV4_OPTS_TTL0)],
                         ids=["ttl63", "ttl1"])
def test_decrease_ttl_golden(golden: bytes, expected: bytes) -> None:
    buf = bytearray(b"\x99" * 2 + golden)
    decrease_ttl(buf, 2)
    assert bytes(buf[2:]) == expected and buf[:2] == b"\x99\x99"


def _full_recompute_ttl_minus_one(hdr: bytes, ihl: int) -> bytes:
    out = bytearray(hdr)
    out[8] -= 1
    out[10:12] = b"\x00\x00"
    out[10:12] = ref_checksum(bytes(out[:ihl])).to_bytes(2, "big")
    return bytes(out)


@SETTINGS
@given(ipv4_reprs(max_payload=8), st.integers(1, 255), st.integers(0, 6))
def test_decrease_ttl_matches_full_recomputation(case: tuple[Ipv4Repr, bytes], ttl: int,
                                                  off: int) -> None:
    r, payload = case
    hdr = dataclasses.replace(r, ttl=ttl).to_bytes(payload)
    buf = bytearray(b"\x5a" * off + hdr)
    decrease_ttl(buf, off)
    assert bytes(buf[off:]) == _full_recompute_ttl_minus_one(hdr, r.header_len)
    assert buf[:off] == b"\x5a" * off
    assert verify(buf[off:off + r.header_len])
    assert check_header(buf, off, len(buf)) == (r.header_len, len(hdr))


@SETTINGS
@given(ipv4_reprs(max_payload=0), st.integers(1, 255), st.sampled_from(["before", "after"]))
def test_decrease_ttl_checksum_zero_edges(case: tuple[Ipv4Repr, bytes], ttl: int,
                                          which: str) -> None:
    # Pick the ident so that the header checksum is 0x0000 before (or after) the
    # decrement: the RFC 1624 +0/-0 boundary.
    r, _ = case
    r = dataclasses.replace(r, ttl=ttl, ident=0)
    probe = bytearray(r.to_bytes())
    if which == "after":
        probe[8] -= 1
    probe[10:12] = b"\x00\x00"
    s = sum(int.from_bytes(probe[i:i + 2], "big") for i in range(0, len(probe), 2)) % 0xFFFF
    r = dataclasses.replace(r, ident=(0xFFFF - s) % 0xFFFF)
    hdr = r.to_bytes()
    if which == "before":
        assert hdr[10:12] == b"\x00\x00"
    buf = bytearray(hdr)
    decrease_ttl(buf, 0)
    expected = _full_recompute_ttl_minus_one(hdr, r.header_len)
    if which == "after":
        assert expected[10:12] == b"\x00\x00"
    assert bytes(buf) == expected


# ---------------------------------------------------------------- hypothesis


@SETTINGS
@given(ipv4_reprs(), st.binary(max_size=8))
def test_round_trip(case: tuple[Ipv4Repr, bytes], trailer: bytes) -> None:
    r, payload = case
    wire = r.to_bytes(payload)
    assert len(wire) == r.total_len
    assert verify(wire[:r.header_len])
    parsed = Ipv4Repr.parse(wire + trailer)          # link-layer padding is ignored
    assert parsed.checksum == int.from_bytes(wire[10:12], "big")
    assert dataclasses.replace(parsed, checksum=None) == r
    assert parsed.to_bytes(payload) == wire
    # total_len 0 means "header + payload" at emit.
    assert dataclasses.replace(r, total_len=0).to_bytes(payload) == wire


@SETTINGS
@given(buffer_window(max_size=80), st.booleans())
def test_parse_random_bytes(window: tuple[bytes, int, int], verify_checksum: bool) -> None:
    data, off, end = window
    r = parse_or_none(Ipv4Repr.parse, data, off, end, verify_checksum, reasons=REASONS)
    if r is not None:
        assert 20 <= r.header_len <= r.total_len <= end - off


@SETTINGS
@given(st.integers(0x40, 0x4F), st.binary(min_size=0, max_size=70), st.booleans())
def test_parse_random_ipv4_like_bytes(b0: int, rest: bytes, verify_checksum: bool) -> None:
    # Version 4 first, so the later checks (ihl, lengths) get exercised too.
    data = bytes([b0]) + rest
    try:
        ihl, total = check_header(data, 0, len(data), verify_checksum)
    except MalformedError as err:
        assert type(err) is MalformedError and err.reason in REASONS
        return
    assert IPV4_HLEN <= ihl <= total <= len(data)
    assert Ipv4Repr.parse(data, verify_checksum=verify_checksum).total_len == total
