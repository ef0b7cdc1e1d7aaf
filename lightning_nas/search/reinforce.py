"""REINFORCE over a factorized policy: one categorical distribution per choice (Williams, 1992).

This is the REINFORCE baseline of NAS-Bench-201 (Dong & Yang, ICLR 2020, Sec. 5): a learnable logit per candidate
of every choice, Adam on the policy-gradient surrogate, and a moving-average baseline (reference code
``exps/NATS-algos/reinforce.py`` in https://github.com/D-X-Y/AutoDL-Projects at
``1c6c3e71660d8bf98223bd6f7569b81c79291289``: learning rate 0.01, baseline momentum 0.9).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from lightning_nas.arch import Arch, Choice
from lightning_nas.functional import reinforce_loss, update_baseline
from lightning_nas.search.base import Constraint, Mode, SearchStrategy, Trial

__all__ = ["ReinforceSearch"]


class ReinforceSearch(SearchStrategy):
    r"""Sample each choice from ``softmax(logits)``; after each evaluation take one Adam step on REINFORCE.

    For a told architecture :math:`a` with reward :math:`R` (the metric, sign-flipped for ``mode="min"``) the
    step descends :math:`-(R - b)\log p(a) - \beta H(p)`, where :math:`\log p(a)` sums the chosen candidates'
    log-probabilities. As in the reference code the baseline :math:`b` is updated with :math:`R` before the step
    (``b <- decay * b + (1 - decay) * R``, starting at the first reward), which scales the advantage by ``decay``.
    The logits start at zero: the first proposals are uniform, like random search.

    Args:
        choices: the space's choices.
        learning_rate: Adam learning rate of the logits (0.01).
        baseline_decay: momentum of the moving-average baseline (0.9).
        entropy_weight: :math:`\beta`, weight of the entropy bonus (0).
        metric, mode, constraints, seed, max_tries: see :class:`~lightning_nas.search.base.SearchStrategy`.

    Example:
        >>> from lightning_nas.search import run_search
        >>> choices = [Choice(f"c{i}", (0, 1)) for i in range(4)]
        >>> strategy = ReinforceSearch(choices, learning_rate=0.1, seed=0)
        >>> _ = run_search(strategy, lambda arch: {"accuracy": float(sum(arch.values()))}, 200)
        >>> all(p[1] > 0.9 for p in strategy.probabilities().values())  # every choice learned to pick 1
        True
    """

    def __init__(
        self,
        choices: Sequence[Choice],
        *,
        learning_rate: float = 0.01,
        baseline_decay: float = 0.9,
        entropy_weight: float = 0.0,
        metric: str = "accuracy",
        mode: Mode = "max",
        constraints: Sequence[Constraint] = (),
        seed: int = 0,
        max_tries: int = 1000,
    ) -> None:
        super().__init__(choices, metric=metric, mode=mode, constraints=constraints, seed=seed, max_tries=max_tries)
        if learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {learning_rate}")
        if not 0.0 <= baseline_decay < 1.0:
            raise ValueError(f"baseline_decay must be in [0, 1), got {baseline_decay}")
        self.baseline_decay, self.entropy_weight = baseline_decay, entropy_weight
        self.logits = [torch.zeros(len(c.candidates), requires_grad=True) for c in self.choices]
        self.optimizer = torch.optim.Adam(self.logits, lr=learning_rate)
        self.baseline: torch.Tensor | None = None

    def propose(self) -> Arch:
        with torch.no_grad():
            picks = [int(torch.multinomial(logit.softmax(-1), 1, generator=self.generator)) for logit in self.logits]
        return {c.name: c.candidates[k] for c, k in zip(self.choices, picks)}

    def tell(self, arch: Mapping[str, Any], metrics: Mapping[str, float]) -> Trial:
        trial = super().tell(arch, metrics)
        reward = torch.tensor(self.score(trial))
        self.baseline = reward if self.baseline is None else update_baseline(self.baseline, reward, self.baseline_decay)
        log_prob, entropy = self._log_prob_and_entropy(trial.arch)
        loss = reinforce_loss(log_prob, reward, self.baseline, entropy, self.entropy_weight)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return trial

    def probabilities(self) -> dict[str, dict[Any, float]]:
        """Per choice, the policy's probability of each candidate."""
        with torch.no_grad():
            return {
                c.name: dict(zip(c.candidates, logit.softmax(-1).tolist()))
                for c, logit in zip(self.choices, self.logits)
            }

    def _log_prob_and_entropy(self, arch: Arch) -> tuple[torch.Tensor, torch.Tensor]:
        log_prob = torch.zeros(())
        entropy = torch.zeros(())
        for choice, logit in zip(self.choices, self.logits):
            log_p = logit.log_softmax(-1)
            log_prob = log_prob + log_p[choice.candidates.index(arch[choice.name])]
            entropy = entropy - (log_p.exp() * log_p).sum()
        return log_prob, entropy

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "logits": [logit.detach().clone() for logit in self.logits],
            "optimizer": self.optimizer.state_dict(),
            "baseline": None if self.baseline is None else float(self.baseline),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        with torch.no_grad():
            for logit, saved in zip(self.logits, state["logits"]):
                logit.copy_(saved)
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline = None if state["baseline"] is None else torch.tensor(state["baseline"])
