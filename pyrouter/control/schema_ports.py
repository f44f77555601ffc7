"""Config models of the port kinds besides TAP (``interfaces.X.kind`` / ``qemu`` / ``device``).

``kind: qemu`` speaks QEMU's socket network backends (``-netdev stream`` with
its 4-byte big-endian length prefix, ``-netdev dgram`` one frame per datagram),
``kind: packet`` attaches an AF_PACKET socket to an existing kernel interface
(packet(7)).  Only shapes live here; which keys go with which kind is checked
in control/port_check.py, before any device is touched.

Invariants: every model forbids unknown keys and is frozen; a socket address
is an absolute path (AF_UNIX, at most 107 bytes) or ``HOST:PORT`` (UDP, dgram only).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

_UDP = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[0-9.]+|[A-Za-z0-9.\-]+):(\d{1,5})$")


def unix_path(v: str) -> str:
    if not v.startswith("/"):
        raise ValueError("an absolute path of a Unix socket")
    if len(v.encode()) > 107:
        raise ValueError("a Unix socket path is at most 107 bytes (sun_path)")
    return v


def sock_addr(v: str) -> str:
    """An absolute Unix socket path or UDP ``HOST:PORT``."""
    if v.startswith("/"):
        return unix_path(v)
    m = _UDP.match(v)
    if not m or not 0 < int(m.group(2)) < 65536:
        raise ValueError("an absolute Unix socket path, or HOST:PORT for UDP")
    return v


class QemuPort(BaseModel):
    """``qemu: {mode: stream, path: P, server: false}``: pyrouter connects to a QEMU
    that listens (``-netdev stream,server=on``) and reconnects after either side
    restarts; ``server: true``: pyrouter listens and QEMU connects
    (``-netdev stream,server=off``).  ``mode: dgram``: pyrouter binds ``local``
    and sends to ``remote`` (QEMU's ``-netdev dgram`` with the two swapped)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["stream", "dgram"]
    path: str | None = None
    server: bool = False
    local: str | None = None
    remote: str | None = None

    @field_validator("path")
    @classmethod
    def _path(cls, v: str | None) -> str | None:
        return None if v is None else unix_path(v)

    @field_validator("local", "remote")
    @classmethod
    def _addr(cls, v: str | None) -> str | None:
        return None if v is None else sock_addr(v)


PortKind = Literal["tap", "qemu", "packet"]
