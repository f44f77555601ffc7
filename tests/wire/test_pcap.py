"""pyrouter.wire.pcap: classic libpcap files, checked byte for byte and by real readers.

Golden bytes follow the format description (Wireshark wiki); tcpdump and, when
installed, tshark must read our files back with the right frames, lengths and
timestamps; and files written by libpcap (tcpdump -w) must read back through
``read_records``.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyrouter.wire.errors import MalformedError
from pyrouter.wire.pcap import (
    DEFAULT_SNAPLEN,
    FILE_HEADER_LEN,
    LINKTYPE_ETHERNET,
    MAGIC_NSEC,
    MAGIC_USEC,
    RECORD_HEADER_LEN,
    file_header,
    read_records,
    record,
)

from ._helpers import SETTINGS, expect_malformed, h

TCPDUMP = shutil.which("tcpdump")
TSHARK = shutil.which("tshark")

# Built with scapy 2.8.0: Ether(src=02::01, dst=02::02)/IP(10.0.0.1 > 10.0.0.2)/TCP(1234 > 80, S)
TCP_SYN = h("""
    020000000002 020000000001 0800
    4500 0028 0001 0000 4006 66cd 0a000001 0a000002
    04d2 0050 00000000 00000000 5002 2000 76be 0000
""")
# Ether(02::02 > 02::01)/IPv6(2001:db8::2 > 2001:db8::1)/UDP(53 > 5353)/b"hello"
UDP6 = h("""
    020000000001 020000000002 86dd
    60000000 000d 11 40 20010db8000000000000000000000002 20010db8000000000000000000000001
    0035 14e9 000d 4b6f 68656c6c6f
""")
FRAMES = [TCP_SYN, UDP6]
STAMPS = [1_700_000_000_123_456_789, 1_700_000_001_000_000_999]


def _file(nanosecond: bool, snaplen: int = DEFAULT_SNAPLEN) -> bytes:
    return file_header(nanosecond, snaplen) + b"".join(
        record(ts, frame, nanosecond, snaplen) for ts, frame in zip(STAMPS, FRAMES, strict=True))


# ------------------------------------------------------------------ bytes

def test_frames_are_what_they_claim() -> None:
    """The hand-pasted frames are well formed (so readers' dissections are meaningful)."""
    from pyrouter.wire.checksum import verify
    assert verify(TCP_SYN[14:34]) and len(TCP_SYN) == 54 and len(UDP6) == 67


def test_file_header_golden() -> None:
    assert file_header() == h("d4c3b2a1 0200 0400 00000000 00000000 00000400 01000000")
    assert file_header(nanosecond=True, snaplen=65535) == \
        h("4d3cb2a1 0200 0400 00000000 00000000 ffff0000 01000000")
    assert len(file_header()) == FILE_HEADER_LEN
    magic, major, minor, zone, sigfigs, snaplen, link = struct.unpack("<IHHiIII", file_header())
    assert (magic, major, minor, zone, sigfigs, snaplen, link) == \
        (MAGIC_USEC, 2, 4, 0, 0, 262144, LINKTYPE_ETHERNET)


def test_record_golden() -> None:
    ts = 1_700_000_000_123_456_789
    assert record(ts, b"\xaa" * 3) == h("00f15365 40e20100 03000000 03000000 aaaaaa")
    assert record(ts, b"\xaa" * 3, nanosecond=True) == \
        h("00f15365 15cd5b07 03000000 03000000 aaaaaa")


def test_microseconds_truncate_never_round() -> None:
    rec = record(5 * 10**9 + 999_999_999, b"")
    assert struct.unpack_from("<II", rec) == (5, 999_999)


def test_snaplen_truncates_caplen_keeps_origlen() -> None:
    frame = bytes(range(100))
    rec = record(0, frame, snaplen=40)
    assert struct.unpack_from("<IIII", rec) == (0, 0, 40, 100)
    assert rec[RECORD_HEADER_LEN:] == frame[:40]
    assert record(0, frame, snaplen=100)[RECORD_HEADER_LEN:] == frame
    big = b"\x00" * (DEFAULT_SNAPLEN + 10)
    assert struct.unpack_from("<IIII", record(0, big))[2:] == (DEFAULT_SNAPLEN, len(big))


def test_record_accepts_bytes_like() -> None:
    assert record(1, bytearray(b"ab")) == record(1, memoryview(b"ab")) == record(1, b"ab")


@pytest.mark.parametrize("ts", [-1, 1 << 32 << 30, (1 << 32) * 10**9])
def test_record_rejects_unrepresentable_stamps(ts: int) -> None:
    with pytest.raises(ValueError):
        record(ts, b"")


@pytest.mark.parametrize("snaplen", [0, -5, 1 << 32])
def test_bad_snaplen(snaplen: int) -> None:
    with pytest.raises(ValueError):
        file_header(snaplen=snaplen)
    with pytest.raises(ValueError):
        record(0, b"x", snaplen=snaplen)


# ------------------------------------------------------------------ reading

@SETTINGS
@given(st.booleans(),
       st.lists(st.tuples(st.integers(0, (1 << 32) * 10**9 - 1), st.binary(max_size=80)),
                max_size=8),
       st.integers(1, 100))
def test_round_trip(nanosecond: bool, packets: list[tuple[int, bytes]], snaplen: int) -> None:
    data = file_header(nanosecond, snaplen) + b"".join(
        record(ts, frame, nanosecond, snaplen) for ts, frame in packets)
    want = [(ts if nanosecond else ts - ts % 1000, frame[:snaplen]) for ts, frame in packets]
    assert read_records(data) == want


def test_reads_big_endian_files() -> None:
    body = struct.pack(">IIII", 7, 250, 3, 5) + b"abc"
    data = struct.pack(">IHHiIII", MAGIC_USEC, 2, 4, 0, 0, 65535, 1) + body
    assert read_records(data) == [(7 * 10**9 + 250_000, b"abc")]
    data = struct.pack(">IHHiIII", MAGIC_NSEC, 2, 4, 0, 0, 65535, 1) + body
    assert read_records(data) == [(7 * 10**9 + 250, b"abc")]


def test_empty_capture() -> None:
    assert read_records(file_header()) == []
    assert read_records(bytearray(file_header(True))) == []


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "pcap_truncated"),
    (file_header()[:23], "pcap_truncated"),
    (b"\x0a\x0d\x0d\x0a" + file_header()[4:], "pcap_bad_magic"),           # pcapng
    (file_header()[:4] + b"\x01\x00" + file_header()[6:], "pcap_bad_version"),
    (file_header()[:20] + b"\x71\x00\x00\x00", "pcap_bad_linktype"),       # Linux SLL
    (file_header() + record(0, b"abc")[:15], "pcap_truncated"),
    (file_header() + record(0, b"abcdef")[:-1], "pcap_truncated"),
    (file_header() + struct.pack("<IIII", 0, 1_000_000, 0, 0), "pcap_bad_timestamp"),
    (file_header(True) + struct.pack("<IIII", 0, 10**9, 0, 0), "pcap_bad_timestamp"),
    (file_header() + struct.pack("<IIII", 0, 0, 4, 3) + b"abcd", "pcap_bad_caplen"),
])
def test_malformed(data: bytes, reason: str) -> None:
    expect_malformed(read_records, data, reason=reason)


@SETTINGS
@given(st.binary(max_size=80))
def test_garbage_raises_only_malformed(tail: bytes) -> None:
    for head in (b"", file_header(), file_header(True)[:10]):
        try:
            read_records(head + tail)
        except MalformedError as err:
            assert type(err) is MalformedError


# ------------------------------------------------------------------ real readers

def _run(cmd: list[str]) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    return res.stdout


@pytest.mark.skipif(TCPDUMP is None, reason="tcpdump not installed")
@pytest.mark.parametrize("nanosecond", [False, True])
def test_tcpdump_reads_our_file(nanosecond: bool, tmp_path: Path) -> None:
    path = tmp_path / "cap.pcap"
    path.write_bytes(_file(nanosecond))
    precision = ["--time-stamp-precision=nano"] if nanosecond else []
    lines = _run([TCPDUMP, "-r", str(path), "-nn", "-tt", "-e", *precision]).splitlines()
    if nanosecond:
        stamps = ["1700000000.123456789", "1700000001.000000999"]
    else:
        stamps = ["1700000000.123456", "1700000001.000000"]
    assert len(lines) == 2
    assert lines[0].startswith(f"{stamps[0]} 02:00:00:00:00:01 > 02:00:00:00:00:02, "
                               "ethertype IPv4 (0x0800), length 54: "
                               "10.0.0.1.1234 > 10.0.0.2.80: Flags [S], seq 0, win 8192")
    assert lines[1].startswith(f"{stamps[1]} 02:00:00:00:00:02 > 02:00:00:00:00:01, "
                               "ethertype IPv6 (0x86dd), length 67: "
                               "2001:db8::2.53 > 2001:db8::1.5353: ")
    # Reading a nanosecond file at microsecond precision: libpcap scales the stamps.
    if nanosecond:
        plain = _run([TCPDUMP, "-r", str(path), "-nn", "-tt"]).splitlines()
        assert [ln.split()[0] for ln in plain] == ["1700000000.123456", "1700000001.000000"]


@pytest.mark.skipif(TCPDUMP is None, reason="tcpdump not installed")
def test_tcpdump_sees_snaplen_truncation(tmp_path: Path) -> None:
    path = tmp_path / "short.pcap"
    path.write_bytes(_file(True, snaplen=40))
    out = _run([TCPDUMP, "-r", str(path), "-nn", "-tt", "-e", "--nano"]).splitlines()
    assert "length 54" in out[0] and "[|tcp]" in out[0]      # origlen kept, data cut
    assert "length 67" in out[1] and "[|ip6]" in out[1]


@pytest.mark.skipif(TCPDUMP is None, reason="tcpdump not installed")
@pytest.mark.parametrize("nanosecond", [False, True])
def test_libpcap_written_files_read_back(nanosecond: bool, tmp_path: Path) -> None:
    """tcpdump -r ours -w - (libpcap's writer, host byte order) -> read_records."""
    path = tmp_path / "cap.pcap"
    path.write_bytes(_file(nanosecond))
    precision = ["--time-stamp-precision=nano"] if nanosecond else []
    res = subprocess.run([TCPDUMP, "-r", str(path), "-w", "-", *precision],
                         capture_output=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout[:4] == struct.pack("=I", MAGIC_NSEC if nanosecond else MAGIC_USEC)
    assert read_records(res.stdout) == read_records(_file(nanosecond))
    want = STAMPS if nanosecond else [ts - ts % 1000 for ts in STAMPS]
    assert read_records(res.stdout) == list(zip(want, FRAMES, strict=True))


@pytest.mark.skipif(TSHARK is None, reason="tshark not installed")
@pytest.mark.parametrize(("nanosecond", "snaplen"), [(False, DEFAULT_SNAPLEN),
                                                     (True, DEFAULT_SNAPLEN), (True, 40)])
def test_tshark_reads_our_file(nanosecond: bool, snaplen: int, tmp_path: Path) -> None:
    path = tmp_path / "cap.pcap"
    path.write_bytes(_file(nanosecond, snaplen))
    out = _run([TSHARK, "-n", "-r", str(path), "-T", "fields", "-E", "separator=|",
                "-e", "frame.time_epoch", "-e", "frame.len", "-e", "frame.cap_len",
                "-e", "eth.src", "-e", "ip.src", "-e", "ipv6.src", "-e", "tcp.dstport",
                "-e", "udp.dstport"])
    rows = [line.split("|") for line in out.splitlines()]
    stamps = (["1700000000.123456789", "1700000001.000000999"] if nanosecond
              else ["1700000000.123456000", "1700000001.000000000"])
    if snaplen == 40:
        # 40 bytes hold the TCP ports and the IPv6 source, not the UDP header.
        assert rows == [
            [stamps[0], "54", "40", "02:00:00:00:00:01", "10.0.0.1", "", "80", ""],
            [stamps[1], "67", "40", "02:00:00:00:00:02", "", "2001:db8::2", "", ""]]
    else:
        assert rows == [
            [stamps[0], "54", "54", "02:00:00:00:00:01", "10.0.0.1", "", "80", ""],
            [stamps[1], "67", "67", "02:00:00:00:00:02", "", "2001:db8::2", "", "5353"]]
