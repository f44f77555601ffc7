"""routes_file: bulk routes in ip-route lines, built into the FIB like YAML routes, with
errors that name the file and the line."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from pyrouter.control.build import build
from pyrouter.control.load import ConfigError, parse
from pyrouter.core.introspect import routes

CFG = """\
interfaces:
  a: {addresses: [10.0.1.1/24, "fd00:1::1/64"]}
  b: {addresses: [10.0.2.1/24]}
routes_file: table.txt
"""


def load(tmp_path: Path, lines: str) -> list[dict]:
    (tmp_path / "table.txt").write_text(lines)
    r = build(parse(CFG), random.Random(1), 0, str(tmp_path / "cfg.yaml"))
    return [x for x in routes(r, "all", family=0) if x["protocol"] == "static"]


def test_lines_become_routes(tmp_path: Path) -> None:
    got = load(tmp_path, "# a comment\n\n10.50.0.0/16 via 10.0.2.254 metric 5\n"
                         "default via 10.0.1.254   # trailing comment\n"
                         "blackhole 192.0.2.0/24\nthrow 10.60.0.0/16 table 100\n"
                         "2001:db8::/32 via fd00:1::fe\n10.70.0.0/16 dev b mtu 1400\n")
    by_dst = {x["dst"]: x for x in got}
    assert by_dst["10.50.0.0/16"] == {**by_dst["10.50.0.0/16"], "gateway": "10.0.2.254",
                                      "dev": "b", "metric": 5, "table": "main"}
    assert by_dst["0.0.0.0/0"]["dev"] == "a"
    assert by_dst["192.0.2.0/24"]["type"] == "blackhole"
    assert by_dst["10.60.0.0/16"]["type"] == "throw" and by_dst["10.60.0.0/16"]["table"] == "100"
    assert by_dst["2001:db8::/32"]["gateway"] == "fd00:1::fe"
    assert by_dst["10.70.0.0/16"]["mtu"] == 1400 and by_dst["10.70.0.0/16"]["scope"] == "link"


@pytest.mark.parametrize("line, why", [
    ("10.50.0.0/16 via 10.9.9.9", "not in a connected subnet"),
    ("10.50.0.1/16 via 10.0.2.254", "host bits set"),
    ("10.50.0.0/33 via 10.0.2.254", "not an IPv4 prefix"),
    ("300.1.1.0/24 via 10.0.2.254", "not an IPv4 prefix"),
    ("10.50.0.0/16 via 10.0.2.254 colour red", "expected PREFIX"),
    ("blackhole 192.0.2.0/24 via 10.0.2.254", "no gateway or device"),
    ("10.50.0.0/16 dev nope", "needs 'via' or a known 'dev'"),
])
def test_errors_name_file_and_line(tmp_path: Path, line: str, why: str) -> None:
    with pytest.raises(ConfigError) as e:
        load(tmp_path, "10.40.0.0/16 via 10.0.2.254\n" + line + "\n")
    assert e.value.path == "line 2" and e.value.file.endswith("table.txt")
    assert why in e.value.reason


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        build(parse(CFG), random.Random(1), 0, str(tmp_path / "cfg.yaml"))
    assert e.value.path == "routes_file"
