"""The ring rule of docs/architecture.md, enforced: imports only point inward
(wire <- core <- control <- shell <- cli), and the sans-IO rings import no
I/O, clock, randomness or logging module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "pyrouter"
ALLOWED = {
    "wire": {"wire"},
    "core": {"wire", "core"},
    "control": {"wire", "core", "control"},
    "shell": {"wire", "core", "control", "shell"},
}
FORBIDDEN_IN_PURE = {"trio", "pytun", "pyroute2", "structlog", "yaml", "time", "random",
                     "socket", "os", "subprocess", "threading", "asyncio", "logging", "scapy"}


def imports(path: Path) -> list[tuple[str, int]]:
    """(absolute module name, level) of each import; relative ones resolved."""
    tree = ast.parse(path.read_text())
    rel = path.relative_to(PKG.parent).with_suffix("")
    here = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append((name, node.lineno))
    return out


MODULES = sorted(p for p in PKG.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG)))
def test_imports_point_inward(path: Path) -> None:
    ring = path.relative_to(PKG).parts[0]
    if ring not in ALLOWED:
        return                       # cli.py, __main__.py, __init__.py: the outermost ring
    for name, line in imports(path):
        parts = name.split(".")
        if parts[0] == "pyrouter" and len(parts) > 1:
            assert parts[1] in ALLOWED[ring], f"{path.name}:{line}: {ring} imports {name}"
        elif ring in ("wire", "core"):
            assert parts[0] not in FORBIDDEN_IN_PURE, f"{path.name}:{line}: {ring} imports {name}"


def test_every_module_opens_with_a_docstring() -> None:
    missing = [str(p.relative_to(PKG)) for p in MODULES
               if ast.get_docstring(ast.parse(p.read_text())) is None]
    assert missing == []


def test_spelling_is_neighbour() -> None:
    """Linux's spelling everywhere, except inside quoted RFC text."""
    offenders = [f"{p.relative_to(PKG)}:{i}" for p in MODULES
                 for i, line in enumerate(p.read_text().splitlines(), 1)
                 if "neighbor" in line.lower() and '"' not in line and "RFC" not in line]
    assert offenders == []
