"""Every script in examples/ runs as documented (with few steps)."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

ARGS = {
    "cost_aware_darts.py": ["--max-steps", "4"],
    "custom_op.py": ["--max-steps", "3"],
    "export_and_retrain.py": ["--search-steps", "3", "--retrain-epochs", "1"],
}


def test_every_example_is_listed() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(ARGS)


@pytest.mark.parametrize("name", sorted(ARGS))
def test_example_runs(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = ["--out", str(tmp_path)] if name == "export_and_retrain.py" else []
    monkeypatch.setattr(sys, "argv", [name, *ARGS[name], *extra])
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    assert "genotype" in capsys.readouterr().out
