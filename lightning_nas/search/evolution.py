"""Regularized (aging) evolution (Real et al., 2019, Algorithm 1)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from lightning_nas.arch import Arch, Choice
from lightning_nas.sampling import mutate
from lightning_nas.search.base import Constraint, Mode, SearchStrategy, Trial

__all__ = ["RegularizedEvolution"]


class RegularizedEvolution(SearchStrategy):
    """Aging evolution: tournament selection, one-choice mutation, and the oldest member dies.

    The first ``population_size`` proposals are random. After that each proposal mutates one choice of the best
    of ``sample_size`` members drawn uniformly from the population; each told trial joins the population and the
    oldest member leaves it, so an architecture survives only as long as its descendants keep winning.

    Args:
        choices: the space's choices.
        population_size: ``P`` in the paper.
        sample_size: ``S``, the tournament size (``1 <= S <= P``).
        metric, mode, constraints, seed, max_tries: see :class:`~lightning_nas.search.base.SearchStrategy`.

    Example:
        >>> from lightning_nas.search import run_search
        >>> choices = [Choice(f"c{i}", (0, 1)) for i in range(8)]
        >>> strategy = RegularizedEvolution(choices, population_size=10, sample_size=3, seed=0)
        >>> run_search(strategy, lambda arch: {"accuracy": sum(arch.values())}, 100).metrics["accuracy"]
        8.0
    """

    def __init__(
        self,
        choices: Sequence[Choice],
        *,
        population_size: int = 100,
        sample_size: int = 25,
        metric: str = "accuracy",
        mode: Mode = "max",
        constraints: Sequence[Constraint] = (),
        seed: int = 0,
        max_tries: int = 1000,
    ) -> None:
        super().__init__(choices, metric=metric, mode=mode, constraints=constraints, seed=seed, max_tries=max_tries)
        if population_size < 1 or not 1 <= sample_size <= population_size:
            raise ValueError(
                f"need population_size >= 1 and 1 <= sample_size <= population_size; "
                f"got population_size={population_size}, sample_size={sample_size}"
            )
        self.population_size, self.sample_size = population_size, sample_size
        self.population: list[Trial] = []

    def propose(self) -> Arch:
        if len(self.population) < self.population_size:
            return self.random_arch()
        picks = torch.randperm(len(self.population), generator=self.generator)[: self.sample_size].tolist()
        parent = max((self.population[i] for i in picks), key=self.score)
        return mutate(parent.arch, self.choices, self.generator)

    def tell(self, arch: Mapping[str, Any], metrics: Mapping[str, float]) -> Trial:
        trial = super().tell(arch, metrics)
        self.population.append(trial)
        if len(self.population) > self.population_size:
            self.population.pop(0)
        return trial

    def state_dict(self) -> dict[str, Any]:
        # population members are the last told trials, so their count is enough to rebuild it from the history
        return {**super().state_dict(), "population_size_now": len(self.population)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        count = int(state["population_size_now"])
        self.population = self.history[len(self.history) - count :] if count else []
