"""What every architecture policy offers: sample an architecture, score a given one, and its most likely one."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from lightning_nas.arch import Arch, Choice

__all__ = ["Policy", "PolicySample"]


class PolicySample(NamedTuple):
    """One architecture drawn (or scored) by a policy.

    Attributes:
        arch: the architecture, one value per choice.
        log_prob: ``log p(arch)``, a differentiable scalar for learned policies.
        entropy: the summed entropy of the decisions' distributions along this architecture's path (its
            expectation over samples is the entropy of the policy, by the chain rule of entropy).
        skip_penalty: the ENAS macro search's skip-connection penalty ``KL(p_skip || rho)`` (0 without
            ``connect`` choices); see :class:`~lightning_nas.controllers.LSTMController`.
    """

    arch: Arch
    log_prob: Tensor
    entropy: Tensor
    skip_penalty: Tensor


class Policy(nn.Module, ABC):
    """A distribution over the architectures of a space, given as its list of choices.

    The state dict carries the space's name and choices, and loading it into a policy for another space raises
    a ``ValueError`` naming both spaces.

    Args:
        choices: the space's choices, in order. At least one.
        space_name: a name for the space in messages and checkpoints (its class name, usually).

    Raises:
        ValueError: no choices.
    """

    def __init__(self, choices: Sequence[Choice], space_name: str = "space") -> None:
        super().__init__()
        self.choices = tuple(choices)
        self.space_name = space_name
        if not self.choices:
            raise ValueError(
                f"{space_name} has no choices: there is no architecture to search; give the space at least one Choice"
            )

    @abstractmethod
    def sample(self, generator: torch.Generator) -> PolicySample:
        """Draw one architecture; every random number comes from ``generator`` (a CPU generator)."""

    @abstractmethod
    def evaluate(self, arch: Mapping[str, Any]) -> PolicySample:
        """The log-probability, entropy and skip penalty of a given architecture."""

    @abstractmethod
    def greedy(self) -> Arch:
        """The architecture of the most likely decision at every step."""

    def decision_probabilities(self) -> dict[str, dict[str, float]] | None:
        """Per choice, a distribution over its candidates (as strings) that summarises the policy; ``None`` if the
        policy has none (the default). What the logging callbacks plot and log as ``arch/prob/...``."""
        return None

    def describe_space(self) -> str:
        """``"<space_name> with N choices (first, ..., last)"``, as error messages name a space."""
        names = [c.name for c in self.choices]
        shown = ", ".join(names) if len(names) <= 3 else f"{names[0]}, ..., {names[-1]}"
        return f"{self.space_name} with {len(names)} choices ({shown})"

    def get_extra_state(self) -> dict[str, Any]:
        return {
            "space": self.space_name,
            "choices": [[c.name, list(c.candidates)] for c in self.choices],
        }

    def set_extra_state(self, state: Any) -> None:
        mine = self.get_extra_state()
        if not isinstance(state, dict) or state.get("choices") != mine["choices"]:
            saved = _describe_saved(state)
            raise ValueError(
                f"this {type(self).__name__} state was saved for {saved}; this policy is for "
                f"{self.describe_space()}: load it into a policy built for the same space"
            )


def _describe_saved(state: Any) -> str:
    if not isinstance(state, dict) or not isinstance(state.get("choices"), list):
        return "an unknown space"
    names = [str(entry[0]) for entry in state["choices"]]
    shown = ", ".join(names) if len(names) <= 3 else f"{names[0]}, ..., {names[-1]}"
    return f"{state.get('space', 'a space')} with {len(names)} choices ({shown})"
