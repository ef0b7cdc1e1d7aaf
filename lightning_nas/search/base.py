"""The ask/tell interface every search strategy shares, and constraints on architectures.

A strategy proposes architectures (:meth:`SearchStrategy.ask`) and learns from their scores
(:meth:`SearchStrategy.tell`); it never evaluates anything itself, so the same strategy runs over a trained
supernet, a tabular benchmark or any user callable. Strategies see a space only through its
:class:`~lightning_nas.arch.Choice` list, so they work on every space.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from lightning_nas.arch import Arch, Choice, validate_arch
from lightning_nas.sampling import derive_seed, sample_arch

__all__ = ["Constraint", "ConstraintError", "SearchStrategy", "Trial", "run_search"]

Mode = Literal["max", "min"]


@dataclass(frozen=True)
class Constraint:
    """An upper bound on a measured quantity of an architecture: ``measure(arch) <= limit``.

    Args:
        name: what is measured (``"params"``, ``"flops"``, ``"latency_ms"``), used in messages.
        measure: maps an architecture to the quantity.
        limit: the largest allowed value.

    Example:
        >>> c = Constraint("params", lambda arch: 10.0 * arch["width"], limit=40.0)
        >>> c.satisfied({"width": 3}), c.satisfied({"width": 5})
        (True, False)
    """

    name: str
    measure: Callable[[Mapping[str, Any]], float]
    limit: float

    def satisfied(self, arch: Mapping[str, Any]) -> bool:
        """Whether ``arch`` is within the limit."""
        return self.measure(arch) <= self.limit


class ConstraintError(ValueError):
    """No architecture found that meets the constraints; the message gives the best value reached."""


@dataclass
class Trial:
    """One evaluated architecture: its choices and the metrics the evaluator returned."""

    arch: Arch
    metrics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"arch": dict(self.arch), "metrics": dict(self.metrics)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Trial:
        return cls(dict(data["arch"]), {k: float(v) for k, v in data["metrics"].items()})


class SearchStrategy(ABC):
    """Base of the strategies: seeded sampling over ``choices`` that respects ``constraints``.

    Subclasses implement :meth:`ask` (usually through :meth:`propose`) and may extend :meth:`tell`. All state,
    including the random generator, is in :meth:`state_dict`, so a resumed search continues exactly.

    Args:
        choices: the space's choices.
        metric: the metric to optimise, as returned by the evaluator.
        mode: ``"max"`` or ``"min"``.
        constraints: upper bounds every proposed architecture meets.
        seed: seed of the strategy's generator.
        max_tries: proposals drawn for one :meth:`ask` before giving up on the constraints.
    """

    def __init__(
        self,
        choices: Sequence[Choice],
        *,
        metric: str = "accuracy",
        mode: Mode = "max",
        constraints: Sequence[Constraint] = (),
        seed: int = 0,
        max_tries: int = 1000,
    ) -> None:
        if not choices:
            raise ValueError("the space has no choices to search over")
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.choices = list(choices)
        self.metric, self.mode = metric, mode
        self.constraints = list(constraints)
        self.max_tries = max_tries
        self.generator = torch.Generator().manual_seed(derive_seed(seed, type(self).__name__))
        self.history: list[Trial] = []

    @abstractmethod
    def propose(self) -> Arch:
        """One candidate architecture; constraints are checked by :meth:`ask`."""

    def ask(self) -> Arch:
        """The next architecture to evaluate: a proposal that meets every constraint.

        Raises:
            ConstraintError: if ``max_tries`` proposals all violate a constraint (naming the best value reached).
        """
        closest: dict[str, float] = {c.name: math.inf for c in self.constraints}
        for _ in range(self.max_tries):
            arch = self.propose()
            values = {c.name: c.measure(arch) for c in self.constraints}
            if all(values[c.name] <= c.limit for c in self.constraints):
                return arch
            closest = {name: min(closest[name], value) for name, value in values.items()}
        violated = ", ".join(
            f"{c.name} <= {c.limit:g} (smallest found: {closest[c.name]:g})"
            for c in self.constraints
            if closest[c.name] > c.limit
        )
        raise ConstraintError(f"no architecture in {self.max_tries} proposals meets the constraints: {violated}")

    def tell(self, arch: Mapping[str, Any], metrics: Mapping[str, float]) -> Trial:
        """Record the evaluation of ``arch``; ``metrics`` must contain :attr:`metric`."""
        if self.metric not in metrics:
            raise KeyError(f"metrics must contain {self.metric!r}; got {sorted(metrics)}")
        trial = Trial(validate_arch(arch, self.choices), {k: float(v) for k, v in metrics.items()})
        self.history.append(trial)
        return trial

    def score(self, trial: Trial) -> float:
        """The trial's metric, sign-flipped for ``mode="min"`` so that larger is always better."""
        value = trial.metrics[self.metric]
        return value if self.mode == "max" else -value

    def best(self) -> Trial:
        """The best trial told so far (the earliest among equals)."""
        if not self.history:
            raise ValueError("no trial has been told yet")
        return max(self.history, key=self.score)

    def random_arch(self) -> Arch:
        """A uniformly random architecture from the strategy's generator."""
        return sample_arch(self.choices, self.generator)

    def state_dict(self) -> dict[str, Any]:
        """History and generator state; subclasses add their own entries."""
        return {"history": [t.to_dict() for t in self.history], "generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.history = [Trial.from_dict(t) for t in state["history"]]
        self.generator.set_state(state["generator"])


def run_search(
    strategy: SearchStrategy,
    evaluate: Callable[[Arch], Mapping[str, float]],
    num_evaluations: int,
) -> Trial:
    """Ask, evaluate and tell ``num_evaluations`` times; return the best trial.

    Example:
        >>> from lightning_nas.search import RandomSearch
        >>> choices = [Choice("x", tuple(range(10)))]
        >>> run_search(RandomSearch(choices, seed=0), lambda arch: {"accuracy": -abs(arch["x"] - 7)}, 40).arch
        {'x': 7}
    """
    if num_evaluations < 1:
        raise ValueError(f"num_evaluations must be >= 1, got {num_evaluations}")
    for _ in range(num_evaluations):
        arch = strategy.ask()
        strategy.tell(arch, evaluate(arch))
    return strategy.best()
