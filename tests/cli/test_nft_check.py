"""`pyrouter check` on configs with an nftables ruleset: valid, and invalid with the
file, line, column and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyrouter.cli import main

CFG = "interfaces:\n  lan0: {addresses: [10.0.1.1/24]}\nnftables: {file: rules.nft}\n"


@pytest.mark.parametrize("name", ["firewall.nft", "nat.nft"])
def test_check_accepts_the_example_firewall(tmp_path: Path, capsys: pytest.CaptureFixture,
                                            name: str) -> None:
    example = Path(__file__).resolve().parents[2] / "config" / name
    (tmp_path / "rules.nft").write_text(example.read_text())
    (tmp_path / "c.yaml").write_text(CFG)
    assert main(["check", "-c", str(tmp_path / "c.yaml")]) == 0
    assert "valid" in capsys.readouterr().out


def test_check_rejects_a_bad_ruleset_with_its_position(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "rules.nft").write_text(
        "table inet f {\n\tchain c {\n\t\tudp dport 53 synproxy\n\t}\n}\n")
    (tmp_path / "c.yaml").write_text(CFG)
    assert main(["check", "-c", str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err
    assert "nftables.file" in err and "rules.nft:3:16:" in err and "not supported yet" in err
