"""Under DDP every rank draws the same children each step, averages the rewards, and keeps the same controller."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

SCRIPT = Path(__file__).with_name("ddp_enas_run.py")


def test_ranks_draw_the_same_children_and_keep_the_same_controller(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=False)

    # 4 weight steps in cycles of 2 weight + 2 controller steps: search steps 0..5, 3 draws per controller step.
    weight_draws = [(s, "0") for s in (0, 1, 4, 5)]
    controller_draws = [(s, str(k)) for s in (2, 3) for k in range(3)]
    assert {(s, k) for s, k, _ in rank0["draws"]} >= set(weight_draws + controller_draws)
    assert rank0["draws"] == rank1["draws"]  # the same child at every step, on every rank
    assert len({str(arch) for _, _, arch in rank0["draws"]}) > 3  # and the children do vary

    assert len(rank0["rewards"]) == len(rank1["rewards"]) >= 2
    local_differ = False
    for (local0, mean0), (local1, mean1) in zip(rank0["rewards"], rank1["rewards"]):
        torch.testing.assert_close(mean0, mean1, rtol=0, atol=0)
        torch.testing.assert_close(mean0, (local0 + local1) / 2)
        local_differ |= not torch.equal(local0, local1)
    assert local_differ  # each rank scored its own data shard

    for p0, p1 in zip(rank0["policy"], rank1["policy"]):
        torch.testing.assert_close(p0, p1, rtol=0, atol=0)
    assert any(not torch.equal(a, b) for a, b in zip(rank0["policy"], rank0["initial_policy"]))  # it learned
    torch.testing.assert_close(rank0["baseline"], rank1["baseline"], rtol=0, atol=0)
    torch.testing.assert_close(rank0["weights"], rank1["weights"], rtol=1e-6, atol=1e-7)
