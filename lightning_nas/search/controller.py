r"""NAS-RL: an LSTM controller samples children; REINFORCE on their validation accuracies (Zoph & Le, ICLR 2017).

The controller (:class:`~lightning_nas.controllers.LSTMController` by default, any
:class:`~lightning_nas.controllers.Policy`) proposes every child. Finished children are told as they finish, in any
order (the paper's asynchronous workers); every ``batch_size`` (the paper's ``m``) told children the controller
takes one Adam step on

.. math:: -\frac{1}{m}\sum_{k=1}^{m} (R_k - b)\,\log P(a_k;\theta_c),

with :math:`b` the exponential moving average of the earlier rewards (the paper's baseline), and
:math:`R_k` the child's metric, optionally raised to ``reward_power`` (3: the cubed accuracy of Zoph & Le, Sec. 4.1).
The paper trains the controller with Adam at learning rate 0.0006 (Sec. 4.1), the default here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from lightning_nas.arch import Arch, Choice
from lightning_nas.controllers import LSTMController, Policy
from lightning_nas.functional import reinforce_loss, update_baseline
from lightning_nas.search.base import Constraint, Mode, SearchStrategy, Trial
from lightning_nas.spaces.base import NodeChoice

__all__ = ["PolicySearch"]


class PolicySearch(SearchStrategy):
    """Sample children from a learned policy; REINFORCE with a moving-average baseline every ``batch_size`` tells.

    Args:
        choices: the space's choices.
        policy: the controller (default: an :class:`LSTMController` over ``choices`` and ``node_choices``).
        node_choices: the space's graph for the default controller (``space.node_choices()``).
        batch_size: ``m``, finished children per controller update.
        learning_rate: Adam learning rate of the controller (0.0006).
        baseline_decay: momentum of the moving-average baseline.
        reward_power: the reward is the metric to this power (3: cubed accuracy).
        entropy_weight: weight of an entropy bonus (0).
        metric, mode, constraints, seed, max_tries: see :class:`~lightning_nas.search.base.SearchStrategy`.

    Example:
        >>> from lightning_nas.search import run_search
        >>> choices = [Choice(f"c{i}", (0, 1)) for i in range(3)]
        >>> strategy = PolicySearch(choices, batch_size=4, learning_rate=0.1, seed=0)
        >>> _ = run_search(strategy, lambda arch: {"accuracy": float(sum(arch.values()))}, 60)
        >>> strategy.policy.greedy()
        {'c0': 1, 'c1': 1, 'c2': 1}
    """

    def __init__(
        self,
        choices: Sequence[Choice],
        *,
        policy: Policy | None = None,
        node_choices: Mapping[str, NodeChoice] | None = None,
        batch_size: int = 8,
        learning_rate: float = 6e-4,
        baseline_decay: float = 0.95,
        reward_power: float = 1.0,
        entropy_weight: float = 0.0,
        metric: str = "accuracy",
        mode: Mode = "max",
        constraints: Sequence[Constraint] = (),
        seed: int = 0,
        max_tries: int = 1000,
    ) -> None:
        super().__init__(choices, metric=metric, mode=mode, constraints=constraints, seed=seed, max_tries=max_tries)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {learning_rate}")
        if not 0.0 <= baseline_decay < 1.0:
            raise ValueError(f"baseline_decay must be in [0, 1), got {baseline_decay}")
        if policy is None:
            with torch.random.fork_rng():  # the controller's initial weights come from the strategy's seed
                torch.manual_seed(int(torch.randint(2**31 - 1, (1,), generator=self.generator)))
                policy = LSTMController(self.choices, node_choices)
        self.policy = policy
        self.batch_size, self.baseline_decay = batch_size, baseline_decay
        self.reward_power, self.entropy_weight = reward_power, entropy_weight
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=learning_rate)
        self.baseline: float | None = None
        self.batch: list[tuple[Arch, float]] = []
        self.updates = 0

    def propose(self) -> Arch:
        with torch.no_grad():
            return self.policy.sample(self.generator).arch

    def reward(self, trial: Trial) -> float:
        """The REINFORCE reward of a told trial: its score to ``reward_power``."""
        score = self.score(trial)
        return score**self.reward_power if self.reward_power != 1.0 else score

    def tell(self, arch: Mapping[str, Any], metrics: Mapping[str, float]) -> Trial:
        trial = super().tell(arch, metrics)
        self.batch.append((trial.arch, self.reward(trial)))
        if len(self.batch) >= self.batch_size:
            self._update()
        return trial

    def _update(self) -> None:
        rewards = torch.tensor([reward for _, reward in self.batch])
        baseline = float(rewards.mean()) if self.baseline is None else self.baseline  # b from earlier children only
        samples = [self.policy.evaluate(arch) for arch, _ in self.batch]
        log_prob = torch.stack([s.log_prob for s in samples])
        entropy = torch.stack([s.entropy for s in samples])
        loss = reinforce_loss(log_prob, rewards, baseline, entropy, self.entropy_weight)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        state = torch.tensor(baseline)
        for reward in rewards:
            state = update_baseline(state, reward, self.baseline_decay)
        self.baseline, self.batch = float(state), []
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "policy": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "baseline": self.baseline,
            "batch": [[dict(arch), reward] for arch, reward in self.batch],
            "updates": self.updates,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline = None if state["baseline"] is None else float(state["baseline"])
        self.batch = [(dict(arch), float(reward)) for arch, reward in state["batch"]]
        self.updates = int(state["updates"])
