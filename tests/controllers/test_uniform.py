"""The uniform random policy: exact log-probabilities, uniform draws, nothing to learn."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_nas.arch import Choice
from lightning_nas.controllers import UniformPolicy
from lightning_nas.sampling import step_generator

CHOICES = [Choice("op", ("conv", "pool", "skip")), Choice("in", (0, 1))]


def test_log_prob_and_entropy_are_those_of_the_uniform_distribution() -> None:
    policy = UniformPolicy(CHOICES)
    sample = policy.sample(step_generator(0, 0))
    assert sample.log_prob.item() == pytest.approx(-math.log(6))
    assert sample.entropy.item() == pytest.approx(math.log(6))
    assert policy.evaluate({"op": "skip", "in": 1}).log_prob.item() == pytest.approx(-math.log(6))
    assert list(policy.parameters()) == []


def test_draws_are_uniform_and_follow_the_generator() -> None:
    policy = UniformPolicy(CHOICES)
    draws = [tuple(policy.sample(step_generator(0, k)).arch.values()) for k in range(1200)]
    counts = torch.tensor([draws.count(key) for key in set(draws)], dtype=torch.float64)
    assert len(counts) == 6
    assert ((counts / 1200 - 1 / 6).abs() < 4 * math.sqrt(1 / 6 * 5 / 6 / 1200)).all()
    assert policy.sample(step_generator(5, 9)).arch == policy.sample(step_generator(5, 9)).arch


def test_state_of_another_space_is_refused() -> None:
    with pytest.raises(ValueError, match=r"saved for space with 1 choices \(op\); this policy is for space with 2"):
        UniformPolicy(CHOICES).load_state_dict(UniformPolicy(CHOICES[:1]).state_dict())
