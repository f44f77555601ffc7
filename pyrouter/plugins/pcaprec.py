"""A per-flow pcap recorder: a netfilter hook plugin that writes each flow's packets
to its own capture file, e.g. to keep the VoIP calls or one suspicious host's traffic.

    plugins:
      - {module: pyrouter.plugins.pcaprec, function: hook, hook: forward}

Files go to ``$PYROUTER_FLOW_DIR`` (default /var/tmp/pyrouter-flows), one per flow
(protocol and the two address/port endpoints, both directions in the same file), named
``<proto>-<a>_<port>-<b>_<port>.pcap``; Ethernet link type with zero MAC addresses (the
hook sees the network-layer packet), timestamps from the wall clock.  Bounded: at most
MAX_FLOWS open files (the oldest is closed and forgotten) and MAX_PACKETS per flow.
It never changes or drops a packet.  It writes synchronously on the dataplane: for
light traffic or narrow filters (put it behind a rule that matches what you want).
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, BinaryIO

from ..wire.pcap import file_header, record

MAX_FLOWS = 64
MAX_PACKETS = 10_000

_open: OrderedDict[tuple[Any, ...], list[Any]] = OrderedDict()


def _dir() -> Path:
    d = Path(os.environ.get("PYROUTER_FLOW_DIR", "/var/tmp/pyrouter-flows"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def close_all() -> None:
    while _open:
        _, (fh, _n) = _open.popitem(last=False)
        fh.close()


def hook(pkt: Any) -> str:
    a = (pkt.saddr, pkt.sport or 0)
    b = (pkt.daddr, pkt.dport or 0)
    key = (pkt.l4proto, *sorted((a, b)))
    ent = _open.get(key)
    if ent is None:
        (h1, p1), (h2, p2) = key[1], key[2]
        name = f"{key[0]}-{h1}_{p1}-{h2}_{p2}.pcap".replace(":", ".")
        fh: BinaryIO = open(_dir() / name, "ab")     # noqa: SIM115 (kept open)
        if fh.tell() == 0:
            fh.write(file_header(nanosecond=True))
        ent = _open[key] = [fh, 0]
        while len(_open) > MAX_FLOWS:
            _, (old, _n) = _open.popitem(last=False)
            old.close()
    else:
        _open.move_to_end(key)
    if ent[1] < MAX_PACKETS:
        ether = b"\x08\x00" if pkt.family == 4 else b"\x86\xdd"
        ent[0].write(record(time.time_ns(), b"\x00" * 12 + ether + pkt.data, nanosecond=True))
        ent[0].flush()
        ent[1] += 1
    return "accept"
