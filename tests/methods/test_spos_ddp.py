"""Under DDP every rank trains the same SPOS path at every step (no communication) and keeps identical weights."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from lightning_nas.methods import SPOS
from lightning_nas.spaces import DartsCellSpace

SCRIPT = Path(__file__).with_name("ddp_spos_run.py")


def test_ranks_train_the_same_paths(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=False)["history"]
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=False)["history"]
    assert len(rank0) == len(rank1) == 4
    # the paths are the seeded draws of steps 0..3, on both ranks, and they differ from step to step
    reference = SPOS(DartsCellSpace(in_channels=1, num_classes=4, channels=4, layers=2, steps=2), seed=11)
    expected = [reference.sample_path(step) for step in range(4)]
    assert [s["path"] for s in rank0] == [s["path"] for s in rank1] == expected
    assert len({str(p) for p in expected}) > 1
    for step0, step1 in zip(rank0, rank1):
        torch.testing.assert_close(step0["weights"], step1["weights"], rtol=1e-6, atol=1e-7)
    assert not torch.equal(rank0[0]["weights"], rank0[-1]["weights"])  # the weights did train
