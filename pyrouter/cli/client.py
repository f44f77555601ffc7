"""The CLI's side of the control socket (protocol in pyrouter/shell/control.py).

Plain blocking sockets: the CLI is a short-lived process that sends one
request and reads answers until the final line.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from typing import Any

DEFAULT_SOCKET = "/run/pyrouter/pyrouter.sock"
PROTOCOL_VERSION = 1


class ControlError(Exception):
    """The router refused the request, or could not be reached."""


def socket_path(explicit: str | None) -> str:
    return explicit or os.environ.get("PYROUTER_SOCKET") or DEFAULT_SOCKET


def request(path: str, cmd: str, args: dict[str, Any] | None = None
            ) -> Iterator[tuple[str, Any]]:
    """Yield ("item", obj) for each streamed item, then ("result", obj)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError as e:
        raise ControlError(f"cannot reach the router at {path}: {e.strerror or e}") from None
    with s:
        try:
            s.sendall(json.dumps({"v": PROTOCOL_VERSION, "id": 1, "cmd": cmd,
                                  "args": args or {}}).encode() + b"\n")
        except (BrokenPipeError, ConnectionResetError):
            pass              # the router refused and closed; its answer may still be there
        f = s.makefile("rb")
        while True:
            try:
                line = f.readline()
            except ConnectionResetError:
                raise ControlError("the router reset the connection") from None
            if not line:
                break
            msg = json.loads(line)
            if "item" in msg:
                yield "item", msg["item"]
                continue
            if not msg.get("ok"):
                raise ControlError(msg.get("error", "unknown error"))
            yield "result", msg.get("result")
            return
    raise ControlError("the router closed the connection")


def call(path: str, cmd: str, args: dict[str, Any] | None = None) -> Any:
    """One answer; a streamed list (items, then {"streamed": n}) is joined back up."""
    result: Any = None
    chunks: list[Any] = []
    for kind, obj in request(path, cmd, args):
        if kind == "result":
            result = obj
        else:
            chunks.extend(obj if isinstance(obj, list) else [obj])
    if isinstance(result, dict) and set(result) == {"streamed"}:
        return chunks
    return result
