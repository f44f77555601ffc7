"""Time for the core: integer nanoseconds on the shell's monotonic clock, and one timer queue.

The core never reads a clock.  Every entry point takes ``now`` (an Instant);
``Router.poll_at()`` tells the shell when ``tick(now)`` is next due.

Theory of operation (TimerQueue): one heap of ``(deadline, seq, key)``.
Owners (a neighbour entry, a reassembly queue) remember their own current
deadline; cancelling or re-arming is lazy: stale heap entries are skipped when
they surface because the owner's deadline no longer matches.  Keys are tuples
such as ``("neigh", ifindex, addr)`` or ``("frag", key)``.

Invariants: deadlines are ints; ``pop_due(now)`` returns keys in deadline
order; the heap never holds more than one live entry per (key, deadline).
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable

Instant = int
SECOND = 1_000_000_000
MILLISECOND = 1_000_000


class TimerQueue:
    """A heap of deadlines with lazy cancellation (see module docstring)."""

    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Hashable]] = []
        self._seq = 0

    def schedule(self, deadline: Instant, key: Hashable) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (deadline, self._seq, key))

    def next_deadline(self) -> Instant | None:
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: Instant) -> list[tuple[Instant, Hashable]]:
        due = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _seq, key = heapq.heappop(heap)
            due.append((deadline, key))
        return due

    def __len__(self) -> int:
        return len(self._heap)

    def compact(self, alive: set[tuple[Instant, Hashable]]) -> None:
        """Drop stale entries (those not in *alive*); keeps the heap bounded."""
        self._heap = [e for e in self._heap if (e[0], e[2]) in alive]
        heapq.heapify(self._heap)
