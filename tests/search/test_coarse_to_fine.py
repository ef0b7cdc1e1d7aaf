"""Coarse-to-fine selection (issue 5): the reference grid, feasibility of every proposal, an exact state round
trip, and an impossible limit naming the smallest achievable value."""

from __future__ import annotations

import pytest

from lightning_nas.arch import Choice
from lightning_nas.search import CoarseToFineSearch, Constraint, ConstraintError, reference_grid

CHOICES = [Choice(f"stage{i}/kernel", (3, 5, 7)) for i in range(3)] + [Choice("resolution", (8, 12, 16, 20))]


def _size(arch: dict) -> float:
    return sum(v for k, v in arch.items() if k.endswith("kernel")) + arch["resolution"]


def _accuracy(arch: dict) -> dict[str, float]:
    return {"accuracy": -abs(_size(arch) - 30.0) + 0.01 * arch["stage0/kernel"]}


def test_reference_grid_sets_each_dimension_to_a_common_level() -> None:
    grid = reference_grid(CHOICES, levels=3)
    assert len(grid) == 3 * 3  # kernel: 3 levels; resolution: 3 of its 4 values
    assert grid[0] == {c.name: min(c.candidates) for c in CHOICES}
    assert grid[-1] == {c.name: max(c.candidates) for c in CHOICES}
    assert all(len({arch[f"stage{i}/kernel"] for i in range(3)}) == 1 for arch in grid)
    assert {arch["resolution"] for arch in grid} == {8, 16, 20}  # evenly spaced positions 0, 1/2, 1
    with pytest.raises(ValueError, match="levels must be >= 1, got 0"):
        reference_grid(CHOICES, levels=0)


def test_every_proposal_is_feasible_and_the_state_round_trips() -> None:
    limit = Constraint("size", _size, limit=32)
    strategy = CoarseToFineSearch(CHOICES, levels=2, constraints=[limit], seed=3)
    for _ in range(12):
        arch = strategy.ask()
        assert limit.satisfied(arch)
        strategy.tell(arch, _accuracy(arch))
    assert [t.arch for t in strategy.history[:3]] == [a for a in strategy.grid if limit.satisfied(a)]
    copy = CoarseToFineSearch(CHOICES, levels=2, constraints=[limit], seed=99)
    copy.load_state_dict(strategy.state_dict())
    for _ in range(6):
        a, b = strategy.ask(), copy.ask()
        assert a == b
        strategy.tell(a, _accuracy(a))
        copy.tell(b, _accuracy(b))
    assert strategy.best().metrics["accuracy"] >= max(_accuracy(a)["accuracy"] for a in strategy.grid if _size(a) <= 32)


def test_impossible_limit_names_the_smallest_achievable_value() -> None:
    strategy = CoarseToFineSearch(CHOICES, constraints=[Constraint("size", _size, limit=10)])
    with pytest.raises(ConstraintError, match=r"size <= 10 \(smallest achievable: 17\)"):
        strategy.ask()
    with pytest.raises(ValueError, match="num_mutations must be <= 4"):
        CoarseToFineSearch(CHOICES, num_mutations=5)
