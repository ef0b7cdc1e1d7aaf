"""The REINFORCE strategy on any space's choices: one step's direction, exact resume, constraints, bad input."""

from __future__ import annotations

import pytest
import torch

from lightning_nas.arch import Choice
from lightning_nas.search import Constraint, ReinforceSearch

CHOICES = [Choice("op", ("conv", "pool", "skip")), Choice("width", (8, 16))]


def test_a_reward_above_the_baseline_raises_that_architectures_probability_and_below_lowers_it() -> None:
    strategy = ReinforceSearch(CHOICES, learning_rate=0.1, seed=0)
    strategy.tell({"op": "skip", "width": 8}, {"accuracy": 50.0})  # first reward: the baseline, no advantage
    assert strategy.probabilities()["op"]["skip"] == pytest.approx(1 / 3)
    strategy.tell({"op": "conv", "width": 16}, {"accuracy": 90.0})
    after_good = strategy.probabilities()
    assert after_good["op"]["conv"] > 1 / 3
    assert after_good["width"][16] > 1 / 2
    strategy.tell({"op": "pool", "width": 16}, {"accuracy": 10.0})
    after_bad = strategy.probabilities()
    assert after_bad["op"]["pool"] < after_good["op"]["pool"]
    # The baseline is the moving average, updated before the step as in the reference code.
    assert strategy.baseline is not None
    expected = 0.9 * (0.9 * 50.0 + 0.1 * 90.0) + 0.1 * 10.0
    assert float(strategy.baseline) == pytest.approx(expected)


def test_min_mode_rewards_small_values() -> None:
    strategy = ReinforceSearch(CHOICES, learning_rate=0.1, metric="loss", mode="min", seed=0)
    strategy.tell({"op": "skip", "width": 8}, {"loss": 1.0})
    strategy.tell({"op": "conv", "width": 8}, {"loss": 0.1})
    assert strategy.probabilities()["op"]["conv"] > 1 / 3


def test_state_round_trip_continues_exactly() -> None:
    def run(strategy: ReinforceSearch, n: int) -> list[dict[str, str | int]]:
        told = []
        for _ in range(n):
            arch = strategy.ask()
            told.append(strategy.tell(arch, {"accuracy": float(arch["width"]) + (arch["op"] == "conv")}).arch)
        return told

    full = ReinforceSearch(CHOICES, seed=3)
    expected = run(full, 30)
    first = ReinforceSearch(CHOICES, seed=3)
    head = run(first, 12)
    resumed = ReinforceSearch(CHOICES, seed=99)
    resumed.load_state_dict(first.state_dict())
    assert head + run(resumed, 18) == expected
    assert all(torch.equal(a, b) for a, b in zip(resumed.logits, full.logits))


def test_constraints_and_bad_arguments() -> None:
    narrow = Constraint("width", lambda arch: float(arch["width"]), limit=8.0)
    strategy = ReinforceSearch(CHOICES, constraints=[narrow], seed=0)
    assert all(strategy.ask()["width"] == 8 for _ in range(20))
    with pytest.raises(ValueError, match="learning_rate must be positive, got 0"):
        ReinforceSearch(CHOICES, learning_rate=0)
    with pytest.raises(ValueError, match=r"baseline_decay must be in \[0, 1\), got 1.0"):
        ReinforceSearch(CHOICES, baseline_decay=1.0)
    with pytest.raises(ValueError, match="choice 'op' got 'sep'"):
        ReinforceSearch(CHOICES).tell({"op": "sep", "width": 8}, {"accuracy": 1.0})
