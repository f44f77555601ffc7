"""structlog set-up: console on a terminal, JSON lines with ``--log-format json``.

Only the shell logs.  The core hands over Events, which ``log_event`` turns
into log records; per-packet logging does not exist in this ring.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog


def configure(fmt: str = "console", level: int = logging.INFO) -> None:
    processors: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if fmt == "json":
        processors += [structlog.processors.format_exc_info,
                       structlog.processors.JSONRenderer(sort_keys=False)]
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty()))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=False,
    )


def get() -> Any:
    return structlog.get_logger("pyrouter")


class RateLimiter:
    """A token bucket for log lines that a flood could repeat (internal errors):
    at most ``burst`` at once, then ``rate`` per second; suppressed lines are counted
    and reported with the next line that gets through."""

    __slots__ = ("burst", "last", "rate", "suppressed", "tokens")

    def __init__(self, rate: float = 5.0, burst: int = 10) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = float(burst)
        self.last = 0.0
        self.suppressed = 0

    def allow(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        self.suppressed += 1
        return False

    def take_suppressed(self) -> int:
        n, self.suppressed = self.suppressed, 0
        return n
