"""Packet tracing: one record per packet of every decision the router took.

While a Tracer is installed (``Router.tracer``), each received frame it
matches takes the slow path with ``Router.trace`` set to a list; stages
append a step for each decision (``Router.note``): L2 classification, header
checks, each FIB lookup with the table/route/nexthop it hit, forwarding
checks, ICMP generated or suppressed, neighbour state used, fragments made,
the egress port or the drop reason.  When the frame is done the record is
emitted as an Event ``sock.trace`` for whoever asked (the control socket).

``explain`` runs a crafted frame through a deep copy of the router with a
tracer that matches everything, so it shows what a real packet would get
without transmitting anything or changing any state.

Invariants: tracing never changes a decision (the fast path is bypassed only
for matched frames, and it decides exactly as the slow path does); a tracer
stops matching after ``limit`` records.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .router import Router


@dataclass(slots=True)
class Tracer:
    match: Callable[[bytes], bool]
    limit: int = 0              # 0 = unlimited
    ident: int = 0
    seen: int = 0

    def wants(self, frame: bytes) -> bool:
        if self.limit and self.seen >= self.limit:
            return False
        try:
            ok = self.match(frame)
        except Exception:       # a filter bug must not break forwarding
            return False
        if ok:
            self.seen += 1
        return ok


def explain(router: Router, ifindex: int, frame: bytes, now: int) -> dict[str, Any]:
    """Run *frame* through a copy of *router*; return the trace and what would be sent."""
    shadow = copy.deepcopy(router)
    shadow.tx, shadow.events = [], []
    shadow.tracer = Tracer(lambda f: True, ident=-1)
    shadow.receive(ifindex, frame, now)
    records = [ev.fields for ev in shadow.events if ev.name == "sock.trace"]
    would_send = [{"dev": shadow.ports[i].name, "len": len(f), "frame": bytes(f).hex()}
                  for i, f in shadow.tx]
    steps = records[0]["steps"] if records else []
    return {"steps": steps, "would_transmit": would_send}
