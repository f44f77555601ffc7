"""pyrouter.wire.checksum: RFC 1071 sums, RFC 1624 incremental updates, pseudo-headers.

scapy.utils.checksum is the run-time reference here (the only place it is
imported); a textbook word-by-word sum (_helpers.ref_ones_sum) is the other.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from scapy.utils import checksum as scapy_checksum

from pyrouter.wire.checksum import (
    csum_replace2,
    csum_replace4,
    inet_checksum,
    ones_sum,
    pseudo_header_v4,
    pseudo_header_v6,
    verify,
)

from ._helpers import (
    SETTINGS,
    h,
    ipv4_addrs,
    ipv6_addrs,
    pseudo_v4_bytes,
    pseudo_v6_bytes,
    ref_checksum,
    ref_ones_sum,
    u8,
    u16,
    u32,
    word16,
    words_to_bytes,
)

# --------------------------------------------------------------- RFC 1071 sums


def test_rfc1071_numerical_example() -> None:
    # RFC 1071 section 3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2.
    data = h("0001 f203 f4f5 f6f7")
    assert ones_sum(data) == 0xDDF2
    assert inet_checksum(data) == 0x220D == scapy_checksum(data)
    assert verify(data + h("220d"))
    assert not verify(data + h("220c"))


def test_end_around_carry() -> None:
    assert ones_sum(h("ffff 0001")) == 0x0001
    assert ones_sum(h("8000 8000")) == 0x0001
    assert ones_sum(h("ffff ffff ffff")) == 0xFFFF


def test_negative_zero_sum() -> None:
    # A non-zero sum congruent to 0 is 0xFFFF (-0), never 0 (+0): its checksum is 0.
    for data in (h("ffff"), h("1234 edcb"), h("0001 fffe"), h("ff ff")):
        assert ones_sum(data) == 0xFFFF
        assert inet_checksum(data) == 0x0000 == scapy_checksum(data)
        assert verify(data)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 19, 20, 1500, 1501])
def test_all_zero_data(n: int) -> None:
    zero = bytes(n)
    assert ones_sum(zero) == 0
    assert inet_checksum(zero) == 0xFFFF == scapy_checksum(zero)
    assert not verify(zero)                      # +0 is not a valid sum
    # With its checksum in front the message verifies.
    assert verify(b"\xff\xff" + zero)
    assert inet_checksum(bytearray(zero)) == inet_checksum(memoryview(zero)) == 0xFFFF


@pytest.mark.parametrize("data", [h("01"), h("ff"), h("0102 03"), h("ffff ff"),
                                  h("4500 0014 00"), bytes(range(255))])
def test_odd_length_pads_with_a_trailing_zero(data: bytes) -> None:
    assert len(data) % 2 == 1
    assert ones_sum(data) == ones_sum(data + b"\x00") == ref_ones_sum(data)
    assert inet_checksum(data) == scapy_checksum(data)


@SETTINGS
@given(st.binary(max_size=300))
@example(b"")
@example(b"\x00")
@example(b"\xff" * 301)
def test_inet_checksum_matches_scapy(data: bytes) -> None:
    expected = scapy_checksum(data)
    assert inet_checksum(data) == expected
    assert inet_checksum(bytearray(data)) == expected
    assert inet_checksum(memoryview(data)) == expected
    assert inet_checksum(data) == ref_checksum(data)


@SETTINGS
@given(st.integers(0, 150).flatmap(lambda n: st.binary(min_size=2 * n + 1, max_size=2 * n + 1)))
def test_inet_checksum_odd_lengths_match_scapy(data: bytes) -> None:
    assert len(data) % 2 == 1
    assert inet_checksum(data) == scapy_checksum(data)
    assert inet_checksum(memoryview(data)) == inet_checksum(data + b"\x00")


@SETTINGS
@given(st.binary(max_size=200), st.lists(u16, max_size=20))
def test_ones_sum_initial_equals_prepended_words(data: bytes, words: list[int]) -> None:
    # ``initial`` is a partial sum: passing sum(words) equals summing the words in line.
    prefix = words_to_bytes(words)
    assert ones_sum(data, sum(words)) == ref_ones_sum(prefix + data)
    assert inet_checksum(data, sum(words)) == scapy_checksum(prefix + data)


@SETTINGS
@given(st.binary(max_size=300).map(lambda b: b[: len(b) & ~1]), st.data())
def test_verify_own_checksum_and_detect_bit_flip(data: bytes, draw: st.DataObject) -> None:
    msg = bytearray(b"\x00\x00" + data)
    c = inet_checksum(msg)
    msg[0:2] = c.to_bytes(2, "big")
    assert verify(msg)
    assert verify(bytes(msg)) and verify(memoryview(msg))
    assert scapy_checksum(bytes(msg)) == 0
    # Any single-bit error changes the sum by +-2**k (mod 0xFFFF), so it is detected.
    bit = draw.draw(st.integers(0, 8 * len(msg) - 1))
    msg[bit // 8] ^= 0x80 >> (bit % 8)
    assert not verify(msg)


@SETTINGS
@given(st.binary(max_size=100))
def test_verify_agrees_with_scapy(data: bytes) -> None:
    assert verify(data) == (scapy_checksum(data) == 0) == (ref_ones_sum(data) == 0xFFFF)


# ---------------------------------------------------------------- pseudo-headers


@SETTINGS
@given(ipv4_addrs, ipv4_addrs, u8, u16, st.binary(max_size=64))
def test_pseudo_header_v4(src: IPv4Address, dst: IPv4Address, proto: int, length: int,
                          payload: bytes) -> None:
    p = pseudo_header_v4(src.packed, dst.packed, proto, length)
    raw = pseudo_v4_bytes(src.packed, dst.packed, proto, length)
    assert ones_sum(b"", p) == ref_ones_sum(raw)
    assert inet_checksum(payload, p) == scapy_checksum(raw + payload)


@SETTINGS
@given(ipv6_addrs, ipv6_addrs, u8, u32, st.binary(max_size=64))
def test_pseudo_header_v6(src: IPv6Address, dst: IPv6Address, nh: int, length: int,
                          payload: bytes) -> None:
    p = pseudo_header_v6(src.packed, dst.packed, nh, length)
    raw = pseudo_v6_bytes(src.packed, dst.packed, nh, length)
    assert ones_sum(b"", p) == ref_ones_sum(raw)
    assert inet_checksum(payload, p) == scapy_checksum(raw + payload)


# ------------------------------------------------------- RFC 1624 incremental


def test_rfc1624_section3_example() -> None:
    # RFC 1624 section 3: HC = 0xDD2F, m = 0x5555 -> m' = 0x3285.  Eqn. 2 gives
    # 0xFFFF; the correct answer (eqn. 3, full recomputation) is 0x0000.
    assert csum_replace2(0xDD2F, 0x5555, 0x3285) == 0x0000
    filler = (0x22D0 - 0x5555) % 0xFFFF       # other words such that ~HC == 0x22D0
    before = words_to_bytes([0x5555, filler])
    after = words_to_bytes([0x3285, filler])
    assert inet_checksum(before) == 0xDD2F
    assert inet_checksum(after) == 0x0000
    assert verify(after + h("0000"))


@pytest.mark.parametrize("old,new", [(0x0000, 0xFFFF), (0xFFFF, 0x0000), (0x0000, 0x0000),
                                     (0xFFFF, 0xFFFF), (0x1234, 0x1234)])
def test_csum_replace2_edge_words(old: int, new: int) -> None:
    # Words 0x0000 and 0xFFFF are the same ones' complement value (+0 / -0).
    for others in ([0x4500], [0x4500, 0x1C46, 0x4000], [0xFFFF, 0x0001], [0x0001]):
        hc = inet_checksum(words_to_bytes([old, *others]))
        expected = inet_checksum(words_to_bytes([new, *others]))
        assert csum_replace2(hc, old, new) == expected


@st.composite
def replace2_cases(draw: st.DrawFn) -> tuple[list[int], int, int]:
    """A header (16-bit words, checksum excluded), an index and a new word.

    Modes steer the sums onto the RFC 1624 edges: the old checksum is 0x0000
    (sum 0xFFFF), or the new one is.
    """
    n = draw(st.integers(2, 30))
    words = draw(st.lists(word16, min_size=n, max_size=n))
    i = draw(st.integers(0, n - 1))
    new = draw(word16)
    mode = draw(st.sampled_from(["random", "old_csum_zero", "new_csum_zero"]))
    if mode != "random":
        j = (i + 1) % n
        words[j] = 0
        target = list(words)
        if mode == "new_csum_zero":
            target[i] = new
        s = ref_ones_sum(words_to_bytes(target))
        words[j] = (0xFFFF - s) % 0xFFFF if s else 0
    return words, i, new


@SETTINGS
@given(replace2_cases())
def test_csum_replace2_matches_full_recomputation(case: tuple[list[int], int, int]) -> None:
    words, i, new = case
    after = list(words)
    after[i] = new
    # RFC 1624 eqn. 3 differs from a recomputation only when the whole header
    # becomes zero (documented in test_csum_replace2_degenerate_all_zero).
    if not any(after):
        return
    hc = inet_checksum(words_to_bytes(words))
    expected = inet_checksum(words_to_bytes(after))
    got = csum_replace2(hc, words[i], new)
    assert got == expected
    assert verify(words_to_bytes(after) + got.to_bytes(2, "big"))


@SETTINGS
@given(replace2_cases())
def test_csum_replace2_from_negative_zero_checksum_still_verifies(
        case: tuple[list[int], int, int]) -> None:
    # When the header sums to 0xFFFF both 0x0000 and 0xFFFF verify; starting
    # from the 0xFFFF form the update must still give a verifying header.
    words, i, new = case
    after = list(words)
    after[i] = new
    if not any(words) or not any(after) or ref_ones_sum(words_to_bytes(words)) != 0xFFFF:
        return
    assert verify(words_to_bytes(words) + h("ffff"))
    got = csum_replace2(0xFFFF, words[i], new)
    assert verify(words_to_bytes(after) + got.to_bytes(2, "big"))


def test_csum_replace2_degenerate_all_zero() -> None:
    # The one case where eqn. 3 and recomputation differ: the update makes every
    # covered word zero.  Recomputation gives 0xFFFF, eqn. 3 gives 0x0000.  It
    # cannot happen to an IPv4 header (version nibble) or a TCP/UDP/ICMP
    # message (pseudo-header length / type), so the codec does not special-case it.
    hc = inet_checksum(words_to_bytes([0x1234, 0x0000]))
    assert inet_checksum(words_to_bytes([0x0000, 0x0000])) == 0xFFFF
    assert csum_replace2(hc, 0x1234, 0x0000) == 0x0000


@SETTINGS
@given(st.integers(2, 30).flatmap(lambda n: st.tuples(
    st.lists(word16, min_size=n, max_size=n), st.integers(0, n - 2),
    st.sampled_from([0, 0xFFFFFFFF, 0x0000FFFF, 0xFFFF0000]) | u32)))
def test_csum_replace4_matches_full_recomputation(case: tuple[list[int], int, int]) -> None:
    words, i, new = case
    old = (words[i] << 16) | words[i + 1]
    after = list(words)
    after[i], after[i + 1] = new >> 16, new & 0xFFFF
    if not any(after):
        return
    hc = inet_checksum(words_to_bytes(words))
    assert csum_replace4(hc, old, new) == inet_checksum(words_to_bytes(after))


@SETTINGS
@given(ipv4_addrs, ipv4_addrs, ipv4_addrs, st.binary(min_size=20, max_size=80))
def test_csum_replace4_nat_on_l4_pseudo_header(src: IPv4Address, dst: IPv4Address,
                                                new_src: IPv4Address, segment: bytes) -> None:
    # SNAT: the TCP/UDP checksum covers the addresses through the pseudo-header.
    seg = bytearray(segment)
    seg[16:18] = b"\x00\x00"
    old_c = inet_checksum(seg, pseudo_header_v4(src.packed, dst.packed, 6, len(seg)))
    new_c = inet_checksum(seg, pseudo_header_v4(new_src.packed, dst.packed, 6, len(seg)))
    assert csum_replace4(old_c, int(src), int(new_src)) == new_c
