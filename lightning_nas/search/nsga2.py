"""NSGA-II multi-objective search (Deb et al., 2002), with the pNSGA-III protection of CARS (Yang et al., 2020).

Objectives are metric names with a direction, e.g. ``{"accuracy": "max", "params": "min"}``. The ranking is
:func:`~lightning_nas.functional.pareto.non_dominated_sort` plus crowding distance; with ``protect`` objectives
(e.g. ``{"accuracy_gain": "max", "params": "min"}``) the fronts of both rankings are interleaved, so large
models whose accuracy still rises fast survive next to small models that learned early (the small-model trap,
CARS Sec. 3.3).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from lightning_nas.arch import Arch, Choice
from lightning_nas.functional.pareto import crowding_distance, interleave_fronts, non_dominated_sort
from lightning_nas.sampling import crossover, mutate
from lightning_nas.search.base import Constraint, Mode, SearchStrategy, Trial

__all__ = ["NSGA2", "pareto_front", "rank_trials", "select_survivors"]

Objectives = Mapping[str, Mode]


def _check_objectives(objectives: Objectives, argument: str) -> dict[str, Mode]:
    if not objectives:
        raise ValueError(f"{argument} needs at least one metric, e.g. {{'accuracy': 'max', 'params': 'min'}}")
    for name, mode in objectives.items():
        if mode not in ("max", "min"):
            raise ValueError(f"{argument}[{name!r}] must be 'max' or 'min', got {mode!r}")
    return dict(objectives)


def _matrix(trials: Sequence[Trial], objectives: Objectives) -> list[list[float]]:
    """Objective values as a minimisation matrix (``max`` objectives negated)."""
    rows = []
    for trial in trials:
        missing = [name for name in objectives if name not in trial.metrics]
        if missing:
            raise KeyError(f"trial metrics {sorted(trial.metrics)} lack the objectives {missing}")
        rows.append([-trial.metrics[n] if m == "max" else trial.metrics[n] for n, m in objectives.items()])
    return rows


def rank_trials(trials: Sequence[Trial], objectives: Objectives, protect: Objectives | None = None) -> list[list[int]]:
    """Fronts of ``trials`` (index lists, best first); with ``protect``, interleaved with that ranking's fronts.

    Example:
        >>> trials = [Trial({}, {"accuracy": a, "params": p}) for a, p in [(0.9, 5.0), (0.8, 1.0), (0.7, 3.0)]]
        >>> rank_trials(trials, {"accuracy": "max", "params": "min"})
        [[0, 1], [2]]
    """
    if not trials:
        return []
    fronts = non_dominated_sort(_matrix(trials, objectives))
    if protect is None:
        return fronts
    return interleave_fronts(fronts, non_dominated_sort(_matrix(trials, protect)))


def select_survivors(
    trials: Sequence[Trial], count: int, objectives: Objectives, protect: Objectives | None = None
) -> list[Trial]:
    """NSGA-II environmental selection: whole fronts in rank order, the last one cut by crowding distance.

    Example:
        >>> trials = [Trial({"x": i}, {"accuracy": float(i), "params": float(i)}) for i in range(5)]
        >>> [t.arch["x"] for t in select_survivors(trials, 2, {"accuracy": "max", "params": "min"})]
        [0, 4]
    """
    survivors: list[Trial] = []
    for front in rank_trials(trials, objectives, protect):
        if len(survivors) + len(front) <= count:
            survivors += [trials[i] for i in front]
            continue
        distance = crowding_distance(_matrix([trials[i] for i in front], objectives))
        by_crowding = sorted(range(len(front)), key=lambda k: (-distance[k], front[k]))
        survivors += [trials[front[k]] for k in by_crowding[: count - len(survivors)]]
        break
    return survivors


def pareto_front(trials: Sequence[Trial], objectives: Objectives) -> list[Trial]:
    """The non-dominated trials, one per distinct architecture (its latest evaluation), in first-seen order.

    Example:
        >>> values = [(1, 2), (2, 2), (0, 1)]
        >>> trials = [Trial({"x": i}, {"accuracy": a, "params": p}) for i, (a, p) in enumerate(values)]
        >>> [t.arch["x"] for t in pareto_front(trials, {"accuracy": "max", "params": "min"})]
        [1, 2]
    """
    latest: dict[str, Trial] = {}
    for trial in trials:
        latest[json.dumps(trial.arch, sort_keys=True)] = trial
    unique = list(latest.values())
    return [unique[i] for i in rank_trials(unique, objectives)[0]] if unique else []


class NSGA2(SearchStrategy):
    """Generational NSGA-II over any space's choices: binary tournaments, uniform crossover, one-choice mutation.

    The first ``population_size`` proposals are random. Every further proposal crosses two parents, each the
    winner of a binary tournament (lower rank, then larger crowding distance), and mutates ``num_mutations``
    choices of the child. After ``population_size`` offspring are told, parents and offspring compete in
    :func:`select_survivors` for the next population. :meth:`front` is the Pareto front of everything told.

    Args:
        choices: the space's choices.
        objectives: metric name -> ``"max"``/``"min"``; every told metrics dict must hold all of them.
        protect: optional second objective set whose fronts are interleaved with the main ones (pNSGA-III).
        population_size: ``N`` in the paper.
        crossover_prob: probability that a child is a crossover of two parents (else a copy of the first).
        num_mutations: choices changed in each child.
        constraints, seed, max_tries: see :class:`~lightning_nas.search.base.SearchStrategy`.

    Example:
        >>> from lightning_nas.search import run_search
        >>> choices = [Choice(f"c{i}", (0, 1, 2)) for i in range(4)]
        >>> def evaluate(arch):  # accuracy grows with the values, cost too: a trade-off
        ...     return {"accuracy": float(sum(arch.values())), "params": float(sum(v * v for v in arch.values()))}
        >>> strategy = NSGA2(choices, objectives={"accuracy": "max", "params": "min"}, population_size=8, seed=0)
        >>> _ = run_search(strategy, evaluate, 64)
        >>> front = strategy.front()
        >>> sorted({t.metrics["accuracy"] for t in front}) == [float(a) for a in range(9)]
        True
    """

    def __init__(
        self,
        choices: Sequence[Choice],
        *,
        objectives: Objectives | None = None,
        protect: Objectives | None = None,
        population_size: int = 50,
        crossover_prob: float = 0.9,
        num_mutations: int = 1,
        constraints: Sequence[Constraint] = (),
        seed: int = 0,
        max_tries: int = 1000,
    ) -> None:
        objectives = _check_objectives(objectives or {"accuracy": "max", "params": "min"}, "objectives")
        metric, mode = next(iter(objectives.items()))
        super().__init__(choices, metric=metric, mode=mode, constraints=constraints, seed=seed, max_tries=max_tries)
        if population_size < 2:
            raise ValueError(f"population_size must be >= 2, got {population_size}")
        if not 0.0 <= crossover_prob <= 1.0:
            raise ValueError(f"crossover_prob must be in [0, 1], got {crossover_prob}")
        self.objectives = objectives
        self.protect = None if protect is None else _check_objectives(protect, "protect")
        self.population_size, self.crossover_prob, self.num_mutations = population_size, crossover_prob, num_mutations
        self.population: list[Trial] = []
        self.offspring: list[Trial] = []

    def propose(self) -> Arch:
        if not self.population:
            return self.random_arch()
        first, second = self._tournament(), self._tournament()
        take_crossover = float(torch.rand(1, generator=self.generator)) < self.crossover_prob
        child = crossover(first.arch, second.arch, self.choices, self.generator) if take_crossover else first.arch
        return mutate(child, self.choices, self.generator, self.num_mutations)

    def tell(self, arch: Mapping[str, Any], metrics: Mapping[str, float]) -> Trial:
        trial = super().tell(arch, metrics)
        _matrix([trial], {**self.objectives, **(self.protect or {})})  # every objective present
        self.offspring.append(trial)
        if len(self.offspring) >= self.population_size:
            pool = self.population + self.offspring
            self.population = select_survivors(pool, self.population_size, self.objectives, self.protect)
            self.offspring = []
        return trial

    def front(self) -> list[Trial]:
        """The Pareto front (main objectives) of every trial told so far."""
        return pareto_front(self.history, self.objectives)

    def _tournament(self) -> Trial:
        ranks, crowding = self._population_ranks()
        a, b = torch.randint(len(self.population), (2,), generator=self.generator).tolist()
        return self.population[min((a, b), key=lambda i: (ranks[i], -crowding[i], i))]

    def _population_ranks(self) -> tuple[list[int], list[float]]:
        ranks, crowding = [0] * len(self.population), [0.0] * len(self.population)
        for rank, front in enumerate(rank_trials(self.population, self.objectives, self.protect)):
            distance = crowding_distance(_matrix([self.population[i] for i in front], self.objectives))
            for i, d in zip(front, distance):
                ranks[i], crowding[i] = rank, d
        return ranks, crowding

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "population": [t.to_dict() for t in self.population],
            "offspring": [t.to_dict() for t in self.offspring],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.population = [Trial.from_dict(t) for t in state["population"]]
        self.offspring = [Trial.from_dict(t) for t in state["offspring"]]
