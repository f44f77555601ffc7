"""Config -> netfilter: compile the ``nftables:`` ruleset, import the ``plugins:`` and
the ``nf_queues:`` consumers.

Runs inside control/build.py's build(), before the router is handed to anyone, so a
bad ruleset (NftError: file, line, column, what was expected) or a plugin that
cannot be imported is a ConfigError and nothing changes (``pyrouter check`` and
reload both go through here).  On reload, Router.adopt takes the new hook table in
one step (the new Ruleset's counters start at zero; plugins are new objects, so a
plugin its time budget disabled is enabled again).  Plugins get the real clock
(``time.perf_counter_ns``) for their time budget; the core never reads it itself.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import Any

from ..core.netfilter.conntrack import register as conntrack_register
from ..core.netfilter.hooks import HOOK_NAMES
from ..core.netfilter.nft_compile import load_ruleset
from ..core.netfilter.nft_parse import NftError
from ..core.netfilter.plugins import MS, Plugin
from .load import ConfigError

_PF = {"ip": 4, "ip6": 6, "inet": 0}


def build_netfilter(r: Any, cfg: Any, file: str) -> None:
    ct, cc = r.nf.conntrack, cfg.conntrack
    ct.max = cc.max
    ct.tcp_be_liberal = cc.nf_conntrack_tcp_be_liberal
    ct.tcp_loose = cc.nf_conntrack_tcp_loose
    ct.tcp_max_retrans = cc.nf_conntrack_tcp_max_retrans
    ct.checksum = cc.nf_conntrack_checksum
    if cfg.conntrack.enabled:
        conntrack_register(r.nf)
    nft = cfg.nftables
    if nft is not None:
        if nft.file is not None:
            path = Path(nft.file)
            if not path.is_absolute():
                path = Path(file).parent / path
            try:
                text = path.read_text()
            except OSError as e:
                raise ConfigError(file, "nftables.file", f"{path}: {e.strerror or e}") from None
            src, key = str(path), "nftables.file"
        else:
            text, src, key = nft.ruleset, "<nftables.ruleset>", "nftables.ruleset"
        try:
            load_ruleset(r.nf, text, src)
        except NftError as e:
            raise ConfigError(file, key, str(e)) from None
    for i, pc in enumerate(cfg.plugins):
        fn = _import(file, f"plugins[{i}]", pc.module, pc.function)
        plugin = Plugin(f"{pc.module}.{pc.function}", fn, pc.on_error,
                        budget=int(pc.budget_ms * MS), max_slow=pc.max_slow,
                        retry_after=None if pc.retry_after_s is None
                        else int(pc.retry_after_s * 1e9),
                        clock=time.perf_counter_ns, hook=pc.hook)
        r.nf.register(_PF[pc.family], HOOK_NAMES[pc.hook], plugin.entry(pc.priority))
        r.nf.plugins.append(plugin)
    seen: set[int] = set()
    for i, qc in enumerate(cfg.nf_queues):
        if qc.num in seen:
            raise ConfigError(file, f"nf_queues[{i}].num", f"queue {qc.num} is given twice")
        seen.add(qc.num)
        fn = _import(file, f"nf_queues[{i}]", qc.module, qc.function)
        q = r.nf.bind_queue(qc.num, qc.maxlen, qc.fail_open, qc.timeout_ms * MS, fn,
                            f"{qc.module}.{qc.function}")
        q.configured = True


def _import(file: str, where: str, module: str, function: str) -> Any:
    try:
        mod = importlib.import_module(module)
    except Exception as e:                           # noqa: BLE001 (operator code)
        raise ConfigError(file, f"{where}.module", f"cannot import {module}: {e}") from None
    fn = getattr(mod, function, None)
    if not callable(fn):
        raise ConfigError(file, f"{where}.function", f"{module} has no callable {function!r}")
    return fn
