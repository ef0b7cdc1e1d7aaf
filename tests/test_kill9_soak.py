"""The kill -9 soak (benchmarks/kill9_soak.py) with a few kills: nothing a user reads is ever partial (issue 19)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "kill9_soak.py"


@pytest.mark.slow
def test_three_sigkills_lose_nothing(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("kill9_soak", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while the script is executed
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    results = module.soak(kills=3, planned_steps=12, workdir=tmp_path, seed=0)
    assert [kill.problems for kill in results] == [(), (), ()]
    assert [kill.resumed_step for kill in results] == [12, 12, 12]
