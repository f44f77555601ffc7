"""flowgate: a QUEUE consumer that lets a new flow through only after a policy lookup.

The first packet of each new flow is queued by the ruleset and waits here (off the
packet path) while the policy is consulted; the verdict comes later:

    nftables:
      ruleset: |
        table inet gate {
          chain fwd {
            type filter hook forward priority 0; policy accept;
            ct state established,related accept
            ct state new queue num 1
          }
        }
    nf_queues:
      - {num: 1, module: pyrouter.plugins.flowgate, function: consumer,
         timeout_ms: 2000, fail_open: false}

The policy is a text file, ``$PYROUTER_FLOWGATE_FILE`` (default
/etc/pyrouter/flowgate.txt; missing = allow everything), one rule a line::

    deny 10.0.2.2          # every new flow to this destination
    deny 10.0.2.2 9999     # ... to this TCP/UDP port of it
    delay_ms 200           # the lookup's latency (a stand-in for a remote service)

It is read in a worker thread (never on the loop), again when its mtime changes, at
most every RELOAD_S.  Decisions are cached per (destination, protocol, port) for
CACHE_S, at most MAX_CACHE of them (the oldest forgotten), so a retransmitted SYN
of a flow still waiting for its answer does not pay for a second lookup.  Counters:
``stats``.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import trio

MAX_CACHE = 4096
CACHE_S = 30.0
RELOAD_S = 1.0
DEFAULT_FILE = "/etc/pyrouter/flowgate.txt"

stats = {"lookups": 0, "cached": 0, "allowed": 0, "denied": 0}
_cache: OrderedDict[tuple[str, int, int], tuple[float, str]] = OrderedDict()
_policy: dict[str, Any] = {"checked": -1e18, "mtime": None, "deny": set(), "delay": 0.0}
_loading: list[trio.Event] = []       # set while the file is being read


def _read(path: str) -> tuple[float | None, set[tuple[str, int | None]], float]:
    try:
        st = os.stat(path)
        text = Path(path).read_text()
    except (OSError, ValueError):         # missing, unreadable, not UTF-8: allow all
        return None, set(), 0.0
    deny: set[tuple[str, int | None]] = set()
    delay = 0.0
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) in (2, 3) and words[0] == "deny":
            port = int(words[2]) if len(words) == 3 and words[2].isdigit() else None
            deny.add((words[1], port))
        elif len(words) == 2 and words[0] == "delay_ms":
            try:
                delay = max(0.0, float(words[1]) / 1000)
            except ValueError:
                pass
    return st.st_mtime, deny, delay


async def _load() -> dict[str, Any]:
    """The current policy; a caller arriving while it is being read waits for it (a flow
    is never judged by a policy older than the one being loaded, e.g. none at start)."""
    while _loading:
        await _loading[0].wait()
    now = trio.current_time()
    if now - _policy["checked"] >= RELOAD_S:
        _policy["checked"] = now
        done = trio.Event()
        _loading.append(done)
        try:
            path = os.environ.get("PYROUTER_FLOWGATE_FILE", DEFAULT_FILE)
            mtime, deny, delay = await trio.to_thread.run_sync(_read, path)
        finally:
            _loading.clear()
            done.set()
        if mtime != _policy["mtime"]:
            _cache.clear()
        _policy.update(mtime=mtime, deny=deny, delay=delay)
    return _policy


async def consumer(pkt: Any) -> str:
    key = (pkt.daddr, pkt.l4proto, pkt.dport or 0)
    now = trio.current_time()
    hit = _cache.get(key)
    if hit is not None and now - hit[0] < CACHE_S:
        stats["cached"] += 1
        return hit[1]
    policy = await _load()
    stats["lookups"] += 1
    if policy["delay"]:
        await trio.sleep(policy["delay"])
    deny = policy["deny"]
    verdict = "drop" if (key[0], None) in deny or (key[0], key[2]) in deny else "accept"
    stats["allowed" if verdict == "accept" else "denied"] += 1
    _cache[key] = (trio.current_time(), verdict)
    _cache.move_to_end(key)
    while len(_cache) > MAX_CACHE:
        _cache.popitem(last=False)
    return verdict
