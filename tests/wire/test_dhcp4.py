"""wire/dhcp4.py against scapy's BOOTP/DHCP as an independent reference."""

from __future__ import annotations

import pytest

scapy_all = pytest.importorskip("scapy.all")
BOOTP, DHCP = scapy_all.BOOTP, scapy_all.DHCP

from pyrouter.wire import dhcp4 as d  # noqa: E402
from pyrouter.wire.errors import MalformedError  # noqa: E402

MAC = bytes.fromhex("525400123456")


def test_parse_a_scapy_discover() -> None:
    pkt = BOOTP(op=1, xid=0xDEADBEEF, flags=0x8000, chaddr=MAC) / DHCP(options=[
        ("message-type", "discover"), ("requested_addr", "10.0.1.7"),
        ("param_req_list", [1, 3, 6, 15]), ("client_id", b"\x01" + MAC),
        ("hostname", b"vm1"), "end"])
    m = d.DhcpMessage.parse(bytes(pkt))
    assert m.op == d.BOOTREQUEST and m.xid == 0xDEADBEEF and m.flags == 0x8000
    assert m.msg_type == d.DHCPDISCOVER and m.hwaddr == MAC
    assert m.opt_addr(d.OPT_REQUESTED_IP) == 0x0A000107
    assert m.options[d.OPT_PARAM_LIST] == bytes([1, 3, 6, 15])
    assert m.options[d.OPT_CLIENT_ID] == b"\x01" + MAC
    assert m.options[d.OPT_HOSTNAME] == b"vm1"


def test_emit_is_read_back_by_scapy() -> None:
    m = d.DhcpMessage(op=d.BOOTREPLY, xid=7, yiaddr=0x0A000164, chaddr=MAC, options={
        d.OPT_MSG_TYPE: bytes([d.DHCPOFFER]), d.OPT_SERVER_ID: d.u32_option(0x0A000101),
        d.OPT_LEASE_TIME: d.u32_option(3600), d.OPT_DNS: d.addrs_option([0x0A000135, 0x08080808]),
        d.OPT_DOMAIN: b"lab.example"})
    raw = m.emit()
    assert len(raw) >= d.BOOTP_MIN_LEN
    s = BOOTP(raw)
    assert s.op == 2 and s.xid == 7 and s.yiaddr == "10.0.1.100"
    opts = {o[0]: o[1:] for o in s[DHCP].options if isinstance(o, tuple)}
    assert opts["message-type"] == (2,)
    assert opts["server_id"] == ("10.0.1.1",)
    assert opts["lease_time"] == (3600,)
    assert opts["name_server"] == ("10.0.1.53", "8.8.8.8")
    assert opts["domain"] == (b"lab.example",)
    assert d.DhcpMessage.parse(raw).options == m.options


def test_long_options_are_split_and_concatenated_rfc3396() -> None:
    long = bytes(range(256)) * 2
    m = d.DhcpMessage(options={d.OPT_MSG_TYPE: b"\x01", 120: long})
    raw = m.emit()
    assert raw.count(bytes([120, 255])) >= 2
    assert d.DhcpMessage.parse(raw).options[120] == long


def test_option_overload_reads_file_then_sname() -> None:
    m = d.DhcpMessage(options={d.OPT_MSG_TYPE: b"\x03", d.OPT_OVERLOAD: b"\x03"},
                      file=bytes([d.OPT_HOSTNAME, 2]) + b"ab" + b"\xff",
                      sname=bytes([d.OPT_HOSTNAME, 2]) + b"cd" + b"\xff")
    raw = m.emit()
    # emit() never overloads, so build the overloaded message by hand.
    raw = raw[:240] + bytes([53, 1, 3, 52, 1, 3, 255])
    raw = raw[:108] + (bytes([12, 2]) + b"ab" + b"\xff").ljust(128, b"\0") + raw[236:]
    raw = raw[:44] + (bytes([12, 2]) + b"cd" + b"\xff").ljust(64, b"\0") + raw[108:]
    got = d.DhcpMessage.parse(raw)
    assert got.options[d.OPT_HOSTNAME] == b"abcd"
    again = d.DhcpMessage.parse(got.emit())
    assert again.options[d.OPT_HOSTNAME] == b"abcd" and d.OPT_OVERLOAD not in again.options


@pytest.mark.parametrize("raw", [
    b"", bytes(239),
    bytes(236) + b"\0\0\0\0",                                      # no cookie
    bytes([3]) + bytes(235) + d.MAGIC_COOKIE,                      # op 3
    bytes([1, 1, 17]) + bytes(233) + d.MAGIC_COOKIE,               # hlen 17
    bytes([1]) + bytes(235) + d.MAGIC_COOKIE + bytes([53]),        # no length
    bytes([1]) + bytes(235) + d.MAGIC_COOKIE + bytes([53, 5, 1]),  # past the end
    bytes([1]) + bytes(235) + d.MAGIC_COOKIE + bytes([52, 1, 9, 255]),   # overload value
])
def test_malformed(raw: bytes) -> None:
    with pytest.raises(MalformedError) as ei:
        d.DhcpMessage.parse(raw)
    assert ei.value.reason == "dhcp_malformed"


def test_missing_end_option_and_padding_are_accepted() -> None:
    raw = bytes([1, 1, 6]) + bytes(233) + d.MAGIC_COOKIE + bytes([0, 0, 53, 1, 1])
    assert d.DhcpMessage.parse(raw).msg_type == d.DHCPDISCOVER


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_parse_or_raise_malformed_only(raw: bytes) -> None:
    head = bytes([1, 1, 6]) + bytes(233) + d.MAGIC_COOKIE
    for buf in (raw, head + raw):
        try:
            m = d.DhcpMessage.parse(buf)
        except MalformedError as e:
            assert e.reason == "dhcp_malformed"
            continue
        assert len(m.options) <= len(buf)
        again = d.DhcpMessage.parse(m.emit())          # what we emit, we read back
        assert again.options == {k: v for k, v in m.options.items() if k not in (0, 52, 255)}
