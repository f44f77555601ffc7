"""pyrouter.wire.addr: MAC text helpers and address constants."""

from __future__ import annotations

import pytest
from hypothesis import given

from pyrouter.wire.addr import (
    BROADCAST_MAC,
    ZERO_MAC,
    is_multicast_mac,
    mac_from_str,
    mac_to_str,
    stable_mac,
)

from ._helpers import SETTINGS, macs


def test_constants() -> None:
    assert BROADCAST_MAC == b"\xff" * 6
    assert ZERO_MAC == b"\x00" * 6


def test_mac_to_str() -> None:
    assert mac_to_str(bytes.fromhex("0200000001ff")) == "02:00:00:00:01:ff"
    assert mac_to_str(ZERO_MAC) == "00:00:00:00:00:00"


@pytest.mark.parametrize("text,expected", [
    ("02:00:00:00:01:01", "020000000101"),
    ("AA:BB:CC:DD:EE:FF", "aabbccddeeff"),
    ("aa-bb-cc-dd-ee-ff", "aabbccddeeff"),
    ("2:0:0:0:1:1", "020000000101"),
])
def test_mac_from_str(text: str, expected: str) -> None:
    assert mac_from_str(text) == bytes.fromhex(expected)


@pytest.mark.parametrize("text", [
    "", "02:00:00:00:01", "02:00:00:00:01:01:01", "02:00:00:00:01:", "020:00:00:00:01:01",
    "zz:00:00:00:01:01", "0x:00:00:00:01:01", "02.00.00.00.01.01", "0200.0000.0101",
])
def test_mac_from_str_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        mac_from_str(text)


@pytest.mark.parametrize("text", ["+1:02:03:04:05:06", " 1:02:03:04:05:06",
                                  "1 :02:03:04:05:06", "\uff11\uff12:02:03:04:05:06"],
                         ids=["plus-sign", "leading-space", "trailing-space", "fullwidth"])
def test_mac_from_str_rejects_non_hex_digits(text: str) -> None:
    with pytest.raises(ValueError):
        mac_from_str(text)


@SETTINGS
@given(macs)
def test_mac_text_round_trip(mac: bytes) -> None:
    text = mac_to_str(mac)
    assert len(text) == 17
    assert mac_from_str(text) == mac
    assert mac_from_str(text.upper().replace(":", "-")) == mac


def test_is_multicast_mac() -> None:
    assert is_multicast_mac(BROADCAST_MAC)
    assert is_multicast_mac(bytes.fromhex("01005e000001"))
    assert is_multicast_mac(bytes.fromhex("333300000001"))
    assert not is_multicast_mac(bytes.fromhex("020000000101"))
    assert not is_multicast_mac(ZERO_MAC)


def test_stable_mac() -> None:
    a = stable_mac("pr1a")
    assert a == stable_mac("pr1a")                 # stable across calls (and runs: sha256)
    assert len(a) == 6
    assert a[0] == 0x02                            # locally administered, unicast
    assert not is_multicast_mac(a)
    assert stable_mac("pr1b") != a
