"""What the core hands the shell: frames to transmit and events to log.

For speed the core does not wrap each frame in an object: ``Router.tx`` is a
list of ``(ifindex, frame)`` tuples and ``Router.events`` a list of
``Event``s; the shell drains both after every batch (``Router.drain``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Event:
    """A state change worth logging, e.g. ``neigh.failed`` with its fields."""

    name: str
    fields: dict[str, Any] = field(default_factory=dict)
