"""shell/leases.py: the lease file is written atomically, only on change, and a bad one is
ignored with a warning (the router starts anyway)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from pyrouter.control.build import build
from pyrouter.control.load import parse
from pyrouter.core import SECOND
from pyrouter.shell.leases import LeaseFile

CONFIG = """\
interfaces:
  lan0:
    addresses: [10.0.1.1/24]
    dhcp: {pool: [10.0.1.100, 10.0.1.110], lease_time: 600}
"""
MAC = bytes.fromhex("525400000001")


class Log:
    def __init__(self) -> None:
        self.records: list[tuple[str, str, dict[str, Any]]] = []

    def info(self, event: str, **kw: Any) -> None:
        self.records.append(("info", event, kw))

    def warning(self, event: str, **kw: Any) -> None:
        self.records.append(("warning", event, kw))

    def error(self, event: str, **kw: Any) -> None:
        self.records.append(("error", event, kw))


def app_with(now: int = 0, offset: int = 1_700_000_000 * SECOND) -> Any:
    r = build(parse(CONFIG), random.Random(0), now)
    r.wall_offset_ns = offset
    return SimpleNamespace(router=r, log=Log())


def bind(app: Any, addr: int, now: int = 0) -> None:
    srv = app.router.dhcp4[1]
    srv.put(app.router, addr, b"\x00" + MAC, MAC, "bound", now + 600 * SECOND, "vm")


def test_written_on_change_only_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "leases.json"
    app = app_with()
    lf = LeaseFile(app, str(path))
    lf.load(0)
    lf.write()
    assert not path.exists()                      # nothing changed, nothing written
    bind(app, 0x0A000165)
    lf.write()
    data = json.loads(path.read_text())
    assert data["version"] == 1 and data["leases"][0]["addr"] == "10.0.1.101"
    mtime = path.stat().st_mtime_ns
    lf.write()
    assert path.stat().st_mtime_ns == mtime
    assert [p.name for p in path.parent.iterdir()] == ["leases.json"]   # no temp files left
    # A new process (another monotonic clock) loads it.
    app2 = app_with(now=5 * SECOND, offset=1_700_000_000 * SECOND - 5 * SECOND)
    LeaseFile(app2, str(path)).load(5 * SECOND)
    (lease,) = app2.router.dhcp4[1].leases.values()
    assert lease.addr == 0x0A000165 and lease.hostname == "vm"
    assert lease.expires == 600 * SECOND + 5 * SECOND


def test_a_corrupt_file_is_ignored_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "leases.json"
    for text in ("{not json", '{"leases": 5}', "[]"):
        path.write_text(text)
        app = app_with()
        LeaseFile(app, str(path)).load(0)
        assert app.log.records[0][:2] == ("warning", "dhcp.lease_file_unreadable")
        assert app.router.dhcp4[1].leases == {}


def test_an_unwritable_directory_is_an_error_not_a_crash(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    app = app_with()
    lf = LeaseFile(app, str(blocker / "leases.json"))       # parent is a file
    lf.load(0)
    bind(app, 0x0A000166)
    lf.write()
    assert any(r[:2] == ("error", "dhcp.lease_file_write_failed") for r in app.log.records)
