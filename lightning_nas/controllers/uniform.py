"""The uniform random policy: the baseline that tells whether a learned controller helps (Li & Talwalkar, 2019)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from lightning_nas.arch import Arch, Choice, validate_arch
from lightning_nas.controllers.base import Policy, PolicySample
from lightning_nas.sampling import sample_arch

__all__ = ["UniformPolicy"]


class UniformPolicy(Policy):
    """Every choice uniform over its candidates, independently; no parameters, nothing to learn.

    It has the interface of :class:`~lightning_nas.controllers.LSTMController`, so a search can swap one for the
    other: ``log_prob`` is the constant ``-sum_c log |c|`` and ``entropy`` is ``sum_c log |c|``.

    Args:
        choices: the space's choices.
        space_name: the space's name, for checkpoints and messages.

    Example:
        >>> from lightning_nas.sampling import step_generator
        >>> policy = UniformPolicy([Choice("op", ("conv", "pool")), Choice("in", (0, 1, 2))])
        >>> sample = policy.sample(step_generator(0, 0))
        >>> round(sample.log_prob.exp().item(), 4), round(sample.entropy.item(), 4)  # 1/6 and log 6
        (0.1667, 1.7918)
    """

    log_sizes: torch.Tensor

    def __init__(self, choices: Sequence[Choice], space_name: str = "space") -> None:
        super().__init__(choices, space_name)
        self.register_buffer("log_sizes", torch.tensor([math.log(len(c.candidates)) for c in self.choices]))

    @classmethod
    def for_space(cls, space: Any) -> UniformPolicy:
        """A uniform policy over ``space.choices()``."""
        return cls(space.choices(), space_name=type(space).__name__)

    def sample(self, generator: torch.Generator) -> PolicySample:
        return self._sample(sample_arch(self.choices, generator))

    def evaluate(self, arch: Mapping[str, Any]) -> PolicySample:
        return self._sample(validate_arch(arch, self.choices))

    def greedy(self) -> Arch:
        """Every choice's first candidate (all architectures are equally likely)."""
        return {c.name: c.candidates[0] for c in self.choices}

    def decision_probabilities(self) -> dict[str, dict[str, float]]:
        """``1 / |c|`` for every candidate of every choice ``c``."""
        return {c.name: {str(value): 1.0 / len(c.candidates) for value in c.candidates} for c in self.choices}

    def _sample(self, arch: Arch) -> PolicySample:
        total = self.log_sizes.sum()
        return PolicySample(arch, -total, total, torch.zeros_like(total))
