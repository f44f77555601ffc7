"""FlowKey: what a route lookup is keyed on (the kernel's flowi4/flowi6).

The foundation's rules (local, main, default) look only at ``dst``; policy
rules (the routing issue) match iif, src, tos, mark, proto and ports, which
are all here already so the lookup signature does not change.
"""

from __future__ import annotations

from typing import NamedTuple


class FlowKey(NamedTuple):
    family: int
    dst: int
    src: int = 0
    iif: int = 0
    oif: int = 0
    tos: int = 0
    mark: int = 0
    proto: int = 0
    sport: int = 0
    dport: int = 0
