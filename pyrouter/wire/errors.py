"""The one exception of the wire ring.

Every codec raises :class:`MalformedError` (and nothing else) when the bytes
it is given cannot be the protocol unit it parses: too short, a length field
that points past the end, a version that is not its own.  Callers in the core
turn it into a named drop reason; it never leaves the core.  The ``reason``
attribute is a stable snake_case name the core may reuse as its drop reason.
"""

from __future__ import annotations


class MalformedError(ValueError):
    """The bytes are not a well-formed instance of the protocol unit."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
