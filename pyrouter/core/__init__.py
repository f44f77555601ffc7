"""pyrouter.core: the sans-IO dataplane (no I/O, no clock, no logging)."""

from __future__ import annotations

from .actions import Event as Event
from .drops import DropReason as DropReason
from .port import Port as Port
from .router import Router as Router
from .time import SECOND as SECOND
from .time import Instant as Instant

__all__ = ["SECOND", "DropReason", "Event", "Instant", "Port", "Router"]
