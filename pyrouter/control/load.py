"""Load and validate a config file; every error names the file, the key path and why.

``load(path)`` returns a validated :class:`Config` and the built core
objects are made by control/build.py; both run before any device is touched,
so a bad file changes nothing.  Key paths read like ``routes[1].via`` or
``interfaces.lan0.mtu``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .schema import Config


class ConfigError(Exception):
    """A config the router refuses: file, key path and reason."""

    def __init__(self, file: str, path: str, reason: str) -> None:
        self.file, self.path, self.reason = file, path, reason
        where = f"{file}: {path}: " if path else f"{file}: "
        super().__init__(where + reason)


def key_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def parse(text: str, file: str = "<config>") -> Config:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(file, "", f"{where}not valid YAML ({getattr(e, 'problem', e)})") \
            from None
    if not isinstance(data, dict):
        raise ConfigError(file, "", "the top level must be a mapping with 'interfaces'")
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith(
            ("function-", "union[", "json-or-python"))))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        raise ConfigError(file, key_path(loc), msg) from None


def load(path: str | Path) -> Config:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(str(p), "", e.strerror or str(e)) from None
    return parse(text, str(p))
