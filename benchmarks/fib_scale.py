"""FIB scale: load time, memory and lookup rate of pyrouter's FIB at 1k, 100k and 1M
IPv4 prefixes (plus 200k IPv6 with the largest size), loaded the way an operator
would: a config whose ``routes_file`` holds ``ip route``-style lines.

Each size runs in a fresh interpreter so the resident-memory figure is the
table's own.  Prefix lengths follow the shape of the public IPv4 table (about 60 %
/24, then /22-/23, /16-/21, a few shorter); IPv6 mostly /48, /32, /40, /44.  Lookups
are for random addresses inside random prefixes of the table (hits), the FIB's
worst realistic case, done with the same Fib.lookup the slow path uses.

Run: .venv/bin/python benchmarks/fib_scale.py [--sizes 1000,100000,1000000]
No root needed; a 1M run takes about a minute and ~1 GiB of memory.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

V4_PLENS = [24] * 60 + [23] * 10 + [22] * 12 + [21] * 5 + [20] * 5 + [19] * 3 + [18] * 2 \
    + [17] + [16] * 2
V6_PLENS = [48] * 60 + [32] * 10 + [40] * 10 + [44] * 10 + [36] * 5 + [29] * 5
CONFIG = """\
interfaces:
  wan0: {{addresses: [10.0.2.1/24, "fd00:2::1/64"]}}
routes_file: {routes}
"""


def rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def write_table(path: Path, n4: int, n6: int, rng: random.Random) -> list[tuple[int, int, int]]:
    """Write the routes file; return a sample of (family, network, plen) to look up in."""
    sample = []
    gws4 = [f"10.0.2.{254 - i}" for i in range(4)]
    gws6 = [f"fd00:2::{0xfe - i:x}" for i in range(4)]
    with open(path, "w") as f:
        for i in range(n4):
            p = rng.choice(V4_PLENS)
            net = rng.getrandbits(32) & ((0xFFFFFFFF << (32 - p)) & 0xFFFFFFFF)
            f.write(f"{net >> 24}.{(net >> 16) & 255}.{(net >> 8) & 255}.{net & 255}/{p} "
                    f"via {gws4[i % 4]}\n")
            if i % max(1, n4 // 20000) == 0:
                sample.append((4, net, p))
        for i in range(n6):
            p = rng.choice(V6_PLENS)
            net = (0x2000 << 112) | (rng.getrandbits(125) & ~((1 << (128 - p)) - 1))
            net &= (1 << 128) - 1
            import ipaddress
            f.write(f"{ipaddress.IPv6Address(net)}/{p} via {gws6[i % 4]}\n")
            if i % max(1, n6 // 5000) == 0:
                sample.append((6, net, p))
    return sample


def one(n4: int, n6: int) -> dict[str, float]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from pyrouter.control.build import build
    from pyrouter.control.load import parse
    from pyrouter.core.route.flow import FlowKey

    rng = random.Random(n4)
    with tempfile.TemporaryDirectory() as d:
        routes = Path(d) / "table.txt"
        sample = write_table(routes, n4, n6, rng)
        cfg = parse(CONFIG.format(routes=routes))
        base = rss_kib()
        t0 = time.perf_counter()
        r = build(cfg, random.Random(1), 0, str(Path(d) / "cfg.yaml"))
        load = time.perf_counter() - t0
        mem = rss_kib() - base
    addrs = []
    for fam, net, p in sample:
        bits = 32 if fam == 4 else 128
        addrs.append((fam, net | rng.getrandbits(bits - p)))
    keys = [FlowKey(fam, a) for fam, a in addrs] * max(1, 200000 // len(addrs))
    usable = r.route_usable
    lookup = r.fib.lookup
    t0 = time.perf_counter()
    hits = 0
    for k in keys:
        if lookup(k, usable) is not None:
            hits += 1
    dt = time.perf_counter() - t0
    routes_total = sum(len(t) for t in r.fib.tables.values())
    return {"ipv4": n4, "ipv6": n6, "routes": routes_total, "load_s": round(load, 2),
            "rss_mib": round(mem / 1024, 1), "bytes_per_route": round(mem * 1024 / routes_total),
            "lookups_per_s": round(len(keys) / dt), "us_per_lookup": round(dt / len(keys) * 1e6, 2),
            "hit_ratio": round(hits / len(keys), 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,100000,1000000")
    ap.add_argument("--ipv6", type=int, default=200000, help="IPv6 prefixes with the largest size")
    ap.add_argument("--one", nargs=2, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(*args.one)))
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    for n in sizes:
        n6 = args.ipv6 if n == max(sizes) else 0
        cp = subprocess.run([sys.executable, __file__, "--one", str(n), str(n6)],
                            capture_output=True, text=True, check=True)
        rows.append(json.loads(cp.stdout))
    print(f"{'IPv4':>9} {'IPv6':>8} {'load s':>7} {'RSS MiB':>8} {'B/route':>8} "
          f"{'lookups/s':>10} {'us/lookup':>9}")
    for r in rows:
        print(f"{r['ipv4']:>9} {r['ipv6']:>8} {r['load_s']:>7} {r['rss_mib']:>8} "
              f"{r['bytes_per_route']:>8} {r['lookups_per_s']:>10} {r['us_per_lookup']:>9}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
