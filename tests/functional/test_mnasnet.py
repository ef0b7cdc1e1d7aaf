"""MnasNet's reward ACC * (LAT / T) ** w against its piecewise closed form."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_nas.functional import mnasnet_reward


@pytest.mark.parametrize("cost", [0.25, 1.0, 1.0 + 1e-9, 3.0])
@pytest.mark.parametrize(("alpha", "beta"), [(-0.07, -0.07), (0.0, -1.0)])
def test_matches_the_piecewise_formula(cost: float, alpha: float, beta: float) -> None:
    target = 2.0
    w = alpha if cost * target <= target else beta
    expected = 0.9 * (cost) ** w
    assert mnasnet_reward(0.9, cost * target, target, alpha, beta).item() == pytest.approx(expected, rel=1e-6)


def test_hard_constraint_only_penalises_going_over() -> None:
    rewards = mnasnet_reward(torch.tensor([0.5, 0.5]), torch.tensor([50.0, 200.0]), 100.0, alpha=0.0, beta=-1.0)
    torch.testing.assert_close(rewards, torch.tensor([0.5, 0.25]))


def test_soft_constraint_trades_five_percent_per_doubling() -> None:
    """Tan et al. (2019): with w = -0.07, doubling the latency costs about 5% of the reward."""
    ratio = mnasnet_reward(1.0, 2.0, 1.0) / mnasnet_reward(1.0, 1.0, 1.0)
    assert ratio.item() == pytest.approx(2**-0.07) == pytest.approx(1 - 0.047, abs=1e-3)
    assert math.isclose(mnasnet_reward(0.7, 1.0, 1.0).item(), 0.7, rel_tol=1e-6)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="the cost target must be positive, got 0"):
        mnasnet_reward(0.9, 1.0, 0)
    with pytest.raises(ValueError, match=r"the cost must be positive, got \[-1.0\]"):
        mnasnet_reward(0.9, torch.tensor([-1.0]), 1.0)
