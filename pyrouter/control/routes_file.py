"""Bulk routes: a text file of ``ip route``-style lines, for tables too large for YAML
(a full Internet table is about 1 000 000 IPv4 and 200 000 IPv6 prefixes).

One route per line; blank lines and ``#`` comments are skipped::

    203.0.113.0/24 via 10.0.2.254 [dev wan0] [metric 100] [table 100] [mtu 1400]
    default via 10.0.2.254
    blackhole 192.0.2.0/24          (also unreachable, prohibit, throw)
    2001:db8::/32 via fd00:2::fe

Parsing is a split per line, no regular expressions; gateways are resolved to
their on-link port once each and remembered.  Every error names the file and the
line, like the YAML loader's key paths.
"""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from pathlib import Path
from typing import Any

from ..core.route.fib import RT_TABLE_MAIN, Route, RouteType, Scope
from .load import ConfigError

REJECT = {"blackhole", "unreachable", "prohibit", "throw"}
TABLES = {"main": 254, "local": 255, "default": 253}


def parse_routes(path: Path, onlink: Any, names: dict[str, int] | None = None
                 ) -> Iterator[Route]:
    """Yield Routes; *onlink(gw, dev) -> ifindex | None* resolves a gateway."""
    cache: dict[tuple[str, str | None], Any] = {}
    tables = {**TABLES, **(names or {})}
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            words = line.split("#", 1)[0].split()
            if not words:
                continue
            try:
                yield _route(words, cache, onlink, tables)
            except (ValueError, IndexError, KeyError) as e:
                raise ConfigError(str(path), f"line {lineno}", f"{e}: {line.strip()!r}") from None


def _resolve(via: str | None, dev: str | None, onlink: Any) -> tuple[int | None, int | None]:
    gw: IPv4Address | IPv6Address | None = ip_address(via) if via else None
    return onlink(gw, dev), (int(gw) if gw is not None else None)


def _v4_prefix(text: str) -> tuple[int, int]:
    """'a.b.c.d/n' -> (int, n) without ipaddress (a full table has a million of them)."""
    addr, _, plen_s = text.partition("/")
    parts = addr.split(".")
    plen = int(plen_s) if plen_s else 32
    if len(parts) != 4 or not 0 <= plen <= 32:
        raise ValueError(f"not an IPv4 prefix: {text!r}")
    value = 0
    for p in parts:
        b = int(p)
        if not 0 <= b <= 255 or not p.isdigit():
            raise ValueError(f"not an IPv4 prefix: {text!r}")
        value = (value << 8) | b
    if value & ((1 << (32 - plen)) - 1):
        raise ValueError(f"{text} has host bits set")
    return value, plen


def _route(words: list[str], cache: dict[tuple[str, str | None], Any],
           onlink: Any, tables: dict[str, int]) -> Route:
    kind = RouteType.UNICAST
    if words[0] in REJECT:
        kind = RouteType(words.pop(0))
    dst = words[0]
    opts = dict(zip(words[1::2], words[2::2], strict=False))
    if len(words) % 2 == 0 or set(opts) - {"via", "dev", "metric", "table", "mtu"}:
        raise ValueError("expected PREFIX [via GW] [dev IF] [metric N] [table T] [mtu N]")
    via = opts.get("via")
    fam = 6 if ":" in dst or (via is not None and ":" in via) else 4
    if fam == 4 and dst != "default":
        dst_int, plen = _v4_prefix(dst)
    else:
        net = ip_network(("::/0" if fam == 6 else "0.0.0.0/0") if dst == "default" else dst)
        dst_int, plen = int(net.network_address), net.prefixlen
    table = int(tables.get(opts.get("table", "main"), opts.get("table", RT_TABLE_MAIN)))
    metric = int(opts.get("metric", 0))
    mtu = int(opts.get("mtu", 0))
    if kind is not RouteType.UNICAST:
        if via or "dev" in opts:
            raise ValueError(f"a {kind.value} route has no gateway or device")
        return Route(fam, dst_int, plen, kind, metric=metric, table=table, proto="static")
    key = (via or "", opts.get("dev"))
    if key not in cache:
        cache[key] = _resolve(via, opts.get("dev"), onlink)
    oif, gw = cache[key]
    if oif is None:
        raise ValueError(f"gateway {via} is not in a connected subnet" if via
                         else "a unicast route needs 'via' or a known 'dev'")
    return Route(fam, dst_int, plen, kind, oif, gw, metric, None, mtu, False,
                 Scope.UNIVERSE if gw is not None else Scope.LINK, table, "static")
