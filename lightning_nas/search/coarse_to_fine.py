"""Coarse-to-fine selection of a subnet under a constraint, without retraining (BigNAS, Yu et al. 2020, Sec. 3.3).

Coarse: a grid of reference configurations in which every choice of one *dimension* (the last segment of its
name: ``kernel``, ``expand``, ``depth``, ``resolution``) takes the same level, all combinations of a few levels
per dimension (all-smallest, all-largest and the levels between). Fine: random mutations of a few choices of the
best feasible configuration found so far, each kept in the history; the best one wins.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from lightning_nas.arch import Arch, Choice
from lightning_nas.sampling import mutate
from lightning_nas.search.base import Constraint, ConstraintError, Mode, SearchStrategy
from lightning_nas.spaces.elastic import dimension_of

__all__ = ["CoarseToFineSearch", "reference_grid"]


def reference_grid(choices: Sequence[Choice], levels: int = 3) -> list[Arch]:
    """Configurations with every choice of a dimension at the same level, for all combinations of levels.

    A dimension with ``L`` values offers ``min(levels, L)`` evenly spaced levels (always its smallest and largest
    when ``levels >= 2``); a choice with fewer candidates takes the candidate at the same relative position.
    The first configuration is the all-smallest one, the last the all-largest one.

    Example:
        >>> choices = [Choice("a/kernel", (3, 5, 7)), Choice("b/kernel", (3, 5, 7)), Choice("depth", (1, 2))]
        >>> [tuple(arch.values()) for arch in reference_grid(choices, levels=2)]
        [(3, 3, 1), (3, 3, 2), (7, 7, 1), (7, 7, 2)]
    """
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    widths: dict[str, int] = {}
    for choice in choices:
        dimension = dimension_of(choice.name)
        widths[dimension] = max(widths.get(dimension, 0), len(choice.candidates))
    positions = {d: _positions(min(levels, n)) for d, n in widths.items()}
    grid = []
    for combination in itertools.product(*positions.values()):
        level = dict(zip(positions, combination))
        grid.append({c.name: _at(c, level[dimension_of(c.name)]) for c in choices})
    return grid


def _positions(count: int) -> list[float]:
    return [0.0] if count == 1 else [i / (count - 1) for i in range(count)]


def _at(choice: Choice, position: float) -> Any:
    numeric = all(isinstance(c, (int, float)) for c in choice.candidates)
    ordered = sorted(choice.candidates) if numeric else list(choice.candidates)
    return ordered[round(position * (len(ordered) - 1))]


class CoarseToFineSearch(SearchStrategy):
    """Coarse grid over reference configurations, then mutations around the best feasible one.

    :meth:`ask` first returns each feasible grid configuration (:func:`reference_grid`) in turn (infeasible ones are
    skipped), then feasible mutations of ``num_mutations`` choices of the best trial told so far, each new.

    Args:
        choices: the space's choices.
        levels: levels per dimension in the coarse grid (2: smallest and largest; 3 adds the middle).
        num_mutations: choices changed per fine-stage mutation.
        metric, mode, constraints, seed, max_tries: see :class:`~lightning_nas.search.base.SearchStrategy`.

    Raises:
        ConstraintError: no grid configuration meets the constraints, naming the smallest value reached (the
            all-smallest configuration is in the grid, so for nested elastic spaces it is the smallest achievable).

    Example:
        >>> from lightning_nas.search import run_search
        >>> choices = [Choice(f"s{i}/width", (1, 2, 3, 4)) for i in range(4)]
        >>> size = Constraint("params", lambda arch: sum(arch.values()), limit=10)
        >>> strategy = CoarseToFineSearch(choices, constraints=[size])
        >>> run_search(strategy, lambda arch: {"accuracy": sum(arch.values())}, 30).metrics["accuracy"]
        10.0
    """

    def __init__(
        self,
        choices: Sequence[Choice],
        *,
        levels: int = 3,
        num_mutations: int = 1,
        metric: str = "accuracy",
        mode: Mode = "max",
        constraints: Sequence[Constraint] = (),
        seed: int = 0,
        max_tries: int = 1000,
    ) -> None:
        super().__init__(choices, metric=metric, mode=mode, constraints=constraints, seed=seed, max_tries=max_tries)
        if num_mutations < 1:
            raise ValueError(f"num_mutations must be >= 1, got {num_mutations}")
        self.levels, self.num_mutations = levels, num_mutations
        self.max_mutations = sum(len(c.candidates) > 1 for c in self.choices)
        if num_mutations > self.max_mutations:
            raise ValueError(
                f"num_mutations must be <= {self.max_mutations} (the choices that can change), got {num_mutations}"
            )
        self.grid = reference_grid(self.choices, levels)
        self.grid_position = 0
        self.asked: set[str] = set()

    def ask(self) -> Arch:
        """The next feasible grid configuration, or (grid done) a feasible mutation of the best trial.

        Mutations not asked for before come first; when ``max_tries`` draws find none (the neighbourhood is
        exhausted), more choices are changed per draw as the draws go on, and an earlier feasible one is repeated
        as the last resort.

        Raises:
            ConstraintError: no grid configuration is feasible, or no mutation in ``max_tries`` draws is.
        """
        if self.grid_position < len(self.grid):
            arch = self._next_feasible_grid_point()
            if arch is not None:
                return self._remember(arch)
        repeat = None
        for attempt in range(self.max_tries):
            child = self.propose(extra_mutations=attempt * self.max_mutations // self.max_tries)
            if not all(c.satisfied(child) for c in self.constraints):
                continue
            if _key(child) not in self.asked:
                return self._remember(child)
            repeat = child if repeat is None else repeat
        if repeat is not None:
            return repeat
        raise ConstraintError(f"no mutation of the best subnet in {self.max_tries} draws meets the constraints")

    def propose(self, extra_mutations: int = 0) -> Arch:
        """A mutation of ``num_mutations + extra_mutations`` choices of the best trial so far."""
        if not self.history:
            raise ConstraintError("the coarse grid found no feasible configuration to refine")
        count = min(self.num_mutations + extra_mutations, self.max_mutations)
        return mutate(self.best().arch, self.choices, self.generator, count)

    def _next_feasible_grid_point(self) -> Arch | None:
        smallest = {c.name: math.inf for c in self.constraints}
        while self.grid_position < len(self.grid):
            arch = self.grid[self.grid_position]
            self.grid_position += 1
            values = {c.name: c.measure(arch) for c in self.constraints}
            if all(values[c.name] <= c.limit for c in self.constraints):
                return arch
            smallest = {name: min(smallest[name], value) for name, value in values.items()}
        if not self.history and not self.asked:
            violated = ", ".join(
                f"{c.name} <= {c.limit:g} (smallest achievable: {smallest[c.name]:g})"
                for c in self.constraints
                if smallest[c.name] > c.limit
            )
            if not violated:
                raise ConstraintError("no configuration of the coarse grid meets all the constraints together")
            raise ConstraintError(
                f"no subnet meets the constraints: {violated}; the smallest value comes from the all-smallest "
                "configuration"
            )
        return None

    def _remember(self, arch: Arch) -> Arch:
        self.asked.add(_key(arch))
        return arch

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "grid_position": self.grid_position, "asked": sorted(self.asked)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.grid_position = int(state["grid_position"])
        self.asked = set(state["asked"])


def _key(arch: Mapping[str, Any]) -> str:
    return json.dumps(dict(arch), sort_keys=True)
