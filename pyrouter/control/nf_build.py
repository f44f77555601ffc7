"""Config -> netfilter: compile the ``nftables:`` ruleset and import the ``plugins:``.

Runs inside control/build.py's build(), before the router is handed to anyone, so a
bad ruleset (NftError: file, line, column, what was expected) or a plugin that
cannot be imported is a ConfigError and nothing changes (``pyrouter check`` and
reload both go through here).  On reload, Router.adopt takes the new hook table in
one step (the new Ruleset's counters start at zero).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from ..core.netfilter.conntrack import register as conntrack_register
from ..core.netfilter.hooks import HOOK_NAMES
from ..core.netfilter.nft_compile import load_ruleset
from ..core.netfilter.nft_parse import NftError
from ..core.netfilter.plugins import Plugin
from .load import ConfigError

_PF = {"ip": 4, "ip6": 6, "inet": 0}


def build_netfilter(r: Any, cfg: Any, file: str) -> None:
    ct, cc = r.nf.conntrack, cfg.conntrack
    ct.max = cc.max
    ct.tcp_be_liberal = cc.nf_conntrack_tcp_be_liberal
    ct.tcp_loose = cc.nf_conntrack_tcp_loose
    ct.tcp_max_retrans = cc.nf_conntrack_tcp_max_retrans
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
        where = f"plugins[{i}]"
        try:
            mod = importlib.import_module(pc.module)
        except Exception as e:                       # noqa: BLE001 (operator code)
            raise ConfigError(file, f"{where}.module", f"cannot import {pc.module}: {e}") \
                from None
        fn = getattr(mod, pc.function, None)
        if not callable(fn):
            raise ConfigError(file, f"{where}.function",
                              f"{pc.module} has no callable {pc.function!r}")
        plugin = Plugin(f"{pc.module}.{pc.function}", fn, pc.on_error)
        r.nf.register(_PF[pc.family], HOOK_NAMES[pc.hook], plugin.entry(pc.priority))
        r.nf.plugins.append(plugin)
