"""The DHCP lease file (``dhcp: {lease_file: PATH}``): leases kept across restarts.

Format: one JSON object ``{"version": 1, "leases": [...]}``, each lease with its
interface, address, MAC, client key, hostname and wall-clock expiry in ns since
the epoch (core/services/dhcp4.py ``export_leases``).  The core's clock is
monotonic and restarts with the process, so expiry is stored in wall time and
translated back with the new process's offset at load.

Writing: only when the core's lease tables changed (``Dhcp4Server.changes``), at
most once per WRITE_INTERVAL, and at exit; always to a temporary file in the same
directory, fsync'ed, then ``os.replace``d, so a crash leaves the old file or the
new one, never half of one.  A missing file is an empty table; an unreadable or
corrupt one is logged and ignored (the router must start anyway).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from ..core.services.dhcp4 import export_leases, import_leases

if TYPE_CHECKING:
    from .app import App

WRITE_INTERVAL = 2.0          # seconds between two writes at most
MAX_FILE = 16 * 1024 * 1024   # larger files are not loaded (bounded memory)


def _changes(app: App) -> int:
    return sum(s.changes for s in app.router.dhcp4.values())


class LeaseFile:
    def __init__(self, app: App, path: str) -> None:
        self.app = app
        self.path = Path(path)
        self.written_at = -1

    def load(self, now: int) -> None:
        app = self.app
        try:
            if self.path.stat().st_size > MAX_FILE:
                raise ValueError(f"larger than {MAX_FILE} bytes")
            data = json.loads(self.path.read_text())
            entries = data["leases"] if isinstance(data, dict) else None
            if not isinstance(entries, list):
                raise ValueError("no 'leases' list")
        except FileNotFoundError:
            entries = []
        except (OSError, ValueError, KeyError) as e:
            app.log.warning("dhcp.lease_file_unreadable", file=str(self.path), error=str(e))
            entries = []
        n = import_leases(app.router, entries, now, app.router.wall_offset_ns)
        app.log.info("dhcp.leases_loaded", file=str(self.path), leases=n,
                     skipped=len(entries) - n)
        self.written_at = _changes(app)

    def write(self) -> None:
        app = self.app
        changes = _changes(app)
        if changes == self.written_at:
            return
        leases = export_leases(app.router, app.router.wall_offset_ns)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".leases-")
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump({"version": 1, "leases": leases}, f, indent=1)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as e:
            app.log.error("dhcp.lease_file_write_failed", file=str(self.path), error=str(e))
            return
        self.written_at = changes

    async def run(self) -> None:
        while True:
            await trio.sleep(WRITE_INTERVAL)
            self.write()


def start(app: App, nursery: trio.Nursery, now: int) -> LeaseFile | None:
    """Load the lease file (if configured) and start the writer task."""
    path = app.cfg.dhcp.lease_file
    if not path:
        return None
    lf = LeaseFile(app, path)
    lf.load(now)
    app.timers.rearm()                # the loaded leases' expiry may be the next deadline
    nursery.start_soon(lf.run)
    return lf

