"""Under DDP every rank holds the same alphas and weights after every DARTS step, and finds the same genotype."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).with_name("ddp_darts_run.py")


@pytest.mark.parametrize("order", ["first", "second"])
def test_ranks_stay_identical(order: str, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path), order],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=False)
    assert len(rank0["history"]) == len(rank1["history"]) == 3
    for step0, step1 in zip(rank0["history"], rank1["history"]):
        for a0, a1 in zip(step0["alphas"], step1["alphas"]):
            torch.testing.assert_close(a0, a1, rtol=0, atol=0)
        torch.testing.assert_close(step0["weights"], step1["weights"], rtol=1e-6, atol=1e-7)
    first, last = rank0["history"][0]["alphas"][0], rank0["history"][-1]["alphas"][0]
    assert not torch.equal(first, last)  # the alphas did move
    assert rank0["genotype"] == rank1["genotype"]
