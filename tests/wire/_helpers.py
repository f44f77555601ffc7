"""Shared helpers for the wire codec tests: settings, strategies, references.

Nothing here imports scapy: the golden packets in the test modules were built
with scapy once and pasted as hex, so the codec tests run without it (only
test_checksum.py compares against scapy at run time, as a reference).
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from pyrouter.wire.errors import MalformedError
from pyrouter.wire.ipv4 import Ipv4Repr

# Modest and deterministic enough for CI: no example database written to the
# repo, no per-example deadline (the first call of a test can be slow).
SETTINGS = settings(max_examples=200, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


def h(text: str) -> bytes:
    """Hex literal with optional whitespace -> bytes."""
    return bytes.fromhex("".join(text.split()))


# ---------------------------------------------------------------- MalformedError

def expect_malformed(fn: Callable[..., Any], *args: Any, reason: str | None = None,
                     **kwargs: Any) -> MalformedError:
    """Call *fn* and require exactly MalformedError (optionally with *reason*).

    pytest.raises(MalformedError) does not catch IndexError/struct.error, so any
    other exception fails the test with its own traceback.
    """
    with pytest.raises(MalformedError) as info:
        fn(*args, **kwargs)
    err = info.value
    assert type(err) is MalformedError
    assert isinstance(err.reason, str) and err.reason
    if reason is not None:
        assert err.reason == reason, f"reason {err.reason!r}, expected {reason!r} ({err})"
    return err


def parse_or_none(fn: Callable[..., Any], *args: Any, reasons: frozenset[str],
                  **kwargs: Any) -> Any:
    """Parse; a MalformedError (with one of *reasons*) gives None, anything else fails."""
    try:
        return fn(*args, **kwargs)
    except MalformedError as err:
        assert type(err) is MalformedError
        assert err.reason in reasons, f"unexpected reason {err.reason!r}"
        return None


# ------------------------------------------------------------ reference sums

def ref_ones_sum(data: bytes) -> int:
    """Textbook RFC 1071 sum: 16-bit words, end-around carry after each add."""
    if len(data) % 2:
        data = bytes(data) + b"\x00"
    s = 0
    for i in range(0, len(data), 2):
        s += (data[i] << 8) | data[i + 1]
        s = (s & 0xFFFF) + (s >> 16)
    return s


def ref_checksum(data: bytes) -> int:
    return ~ref_ones_sum(data) & 0xFFFF


def words_to_bytes(words: list[int]) -> bytes:
    return b"".join(w.to_bytes(2, "big") for w in words)


def pseudo_v4_bytes(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    """RFC 768/793 pseudo-header as bytes: src dst zero proto length(16)."""
    return src + dst + bytes([0, proto]) + length.to_bytes(2, "big")


def pseudo_v6_bytes(src: bytes, dst: bytes, next_header: int, length: int) -> bytes:
    """RFC 8200 section 8.1 pseudo-header: src dst length(32) zero(24) next header."""
    return src + dst + length.to_bytes(4, "big") + b"\x00\x00\x00" + bytes([next_header])


# ---------------------------------------------------------------- strategies

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
# 16-bit words with the ones' complement edge values over-represented.
word16 = st.sampled_from([0x0000, 0x0001, 0x00FF, 0x0100, 0x7FFF, 0x8000, 0xFFFE, 0xFFFF]) | u16
macs = st.binary(min_size=6, max_size=6)
ipv4_addrs = st.builds(IPv4Address, u32)
ipv6_addrs = st.builds(IPv6Address, st.integers(0, (1 << 128) - 1))


def padded_options(max_len: int = 40) -> st.SearchStrategy[bytes]:
    """Raw option bytes whose length is a multiple of 4, at most *max_len*."""
    return st.integers(0, max_len // 4).flatmap(lambda n: st.binary(min_size=4 * n,
                                                                      max_size=4 * n))


@st.composite
def ipv4_reprs(draw: st.DrawFn, max_payload: int = 64) -> tuple[Ipv4Repr, bytes]:
    """A valid Ipv4Repr (checksum None, total_len consistent) and its payload."""
    options = draw(padded_options())
    payload = draw(st.binary(max_size=max_payload))
    repr_ = Ipv4Repr(
        src=draw(ipv4_addrs), dst=draw(ipv4_addrs), proto=draw(u8), ttl=draw(u8),
        tos=draw(u8), ident=draw(u16), df=draw(st.booleans()), mf=draw(st.booleans()),
        frag_offset=draw(st.integers(0, 0x1FFF)) * 8, options=options,
        total_len=20 + len(options) + len(payload), checksum=None,
        flags_reserved=draw(st.booleans()))
    return repr_, payload


@st.composite
def pseudo_sums(draw: st.DrawFn, proto: int) -> tuple[int, bytes, bytes, bool]:
    """(pseudo-header partial sum without length, src, dst, is_v6) for *proto*."""
    from pyrouter.wire.checksum import pseudo_header_v4, pseudo_header_v6

    if draw(st.booleans()):
        src, dst = draw(ipv6_addrs).packed, draw(ipv6_addrs).packed
        return pseudo_header_v6(src, dst, proto, 0), src, dst, True
    src, dst = draw(ipv4_addrs).packed, draw(ipv4_addrs).packed
    return pseudo_header_v4(src, dst, proto, 0), src, dst, False


def pseudo_bytes(src: bytes, dst: bytes, is_v6: bool, proto: int, length: int) -> bytes:
    if is_v6:
        return pseudo_v6_bytes(src, dst, proto, length)
    return pseudo_v4_bytes(src, dst, proto, length)


@st.composite
def buffer_window(draw: st.DrawFn, max_size: int = 120) -> tuple[bytes, int, int]:
    """Random bytes and a random (off, end) window inside them."""
    data = draw(st.binary(max_size=max_size))
    off = draw(st.integers(0, len(data)))
    end = draw(st.integers(off, len(data)))
    return data, off, end
