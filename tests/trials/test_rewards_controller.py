"""MnasNet rewards against the closed form; the NAS-RL controller updates every m children and resumes exactly."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_nas.arch import Choice
from lightning_nas.controllers import LSTMController
from lightning_nas.functional import reinforce_loss
from lightning_nas.search import PolicySearch
from lightning_nas.trials import MnasNetReward, TrialDriver

CHOICES = [Choice(f"c{i}", (0, 1, 2)) for i in range(3)]


@pytest.mark.parametrize(("latency", "soft", "hard"), [(5.0, 0.9 * 0.5**-0.07, 0.9), (20.0, 0.9 * 2**-0.07, 0.45)])
def test_mnasnet_soft_and_hard_rewards_equal_the_closed_form(latency: float, soft: float, hard: float) -> None:
    metrics = {"accuracy": 0.9, "latency_ms": latency}
    assert MnasNetReward(target=10.0)(metrics)["reward"] == pytest.approx(soft, rel=1e-6)
    assert MnasNetReward.hard(target=10.0)(metrics)["reward"] == pytest.approx(hard, rel=1e-6)


def test_reward_missing_its_cost_metric_names_it() -> None:
    with pytest.raises(KeyError, match="needs metric 'flops'"):
        MnasNetReward(target=1.0, cost="flops")({"accuracy": 0.5})


def test_driver_tells_the_strategy_the_reward() -> None:
    strategy = PolicySearch(CHOICES, metric="reward", batch_size=2)
    driver = TrialDriver(strategy, num_trials=1, reward=MnasNetReward(target=100.0, cost="params"))
    trial_id, _ = driver.next_trial()  # type: ignore[misc]
    driver.complete(trial_id, {"accuracy": 0.5, "params": 200.0})
    assert strategy.history[0].metrics == {"reward": pytest.approx(0.5 * 2**-0.07)}


def test_controller_steps_once_per_m_children_with_the_reinforce_gradient() -> None:
    strategy = PolicySearch(CHOICES, batch_size=3, learning_rate=0.01, reward_power=3.0, seed=0)
    reference = LSTMController(CHOICES)
    reference.load_state_dict(strategy.policy.state_dict())
    archs = [strategy.ask() for _ in range(3)]
    accuracies = [0.2, 0.5, 0.8]
    for arch, accuracy in zip(archs[:2], accuracies):
        strategy.tell(arch, {"accuracy": accuracy})
    assert all(torch.equal(a, b) for a, b in zip(strategy.policy.parameters(), reference.parameters()))
    strategy.tell(archs[2], {"accuracy": accuracies[2]})
    # one Adam step of the cubed-accuracy REINFORCE loss, the first batch's baseline being its mean reward
    rewards = torch.tensor(accuracies) ** 3
    optimizer = torch.optim.Adam(reference.parameters(), lr=0.01)
    log_prob = torch.stack([reference.evaluate(arch).log_prob for arch in archs])
    reinforce_loss(log_prob, rewards, rewards.mean()).backward()
    optimizer.step()
    assert all(torch.allclose(a, b) for a, b in zip(strategy.policy.parameters(), reference.parameters()))
    expected = float(rewards.mean())
    for reward in rewards.tolist():
        expected = 0.95 * expected + 0.05 * reward
    assert strategy.baseline == pytest.approx(expected) and strategy.updates == 1  # noqa: PT018


def test_controller_state_round_trip_continues_exactly() -> None:
    def run(strategy: PolicySearch, count: int) -> None:
        for _ in range(count):
            arch = strategy.ask()
            strategy.tell(arch, {"accuracy": float(sum(arch.values())) / 6})

    whole = PolicySearch(CHOICES, batch_size=4, learning_rate=0.05, seed=2)
    run(whole, 22)
    first = PolicySearch(CHOICES, batch_size=4, learning_rate=0.05, seed=2)
    run(first, 10)  # mid-batch: 2 children wait for the next update
    resumed = PolicySearch(CHOICES, batch_size=4, learning_rate=0.05, seed=7)
    resumed.load_state_dict(first.state_dict())
    run(resumed, 12)
    assert [t.to_dict() for t in resumed.history] == [t.to_dict() for t in whole.history]
    assert all(torch.equal(a, b) for a, b in zip(resumed.policy.parameters(), whole.policy.parameters()))
    assert math.isclose(resumed.baseline or 0.0, whole.baseline or 0.0)
