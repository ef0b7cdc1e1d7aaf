"""Non-dominated sorting and crowding distance against brute-force references (Deb et al., 2002)."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_nas.functional.pareto import crowding_distance, interleave_fronts, non_dominated_sort


def brute_force_fronts(points: list[list[float]]) -> list[list[int]]:
    """Peel fronts by checking every pair directly: a point is in the front if no remaining point dominates it."""

    def dominates(a: list[float], b: list[float]) -> bool:
        return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))

    remaining, fronts = set(range(len(points))), []
    while remaining:
        front = sorted(p for p in remaining if not any(dominates(points[q], points[p]) for q in remaining))
        fronts.append(front)
        remaining -= set(front)
    return fronts


def brute_force_crowding(points: list[list[float]]) -> list[float]:
    """Neighbours found by value (no sorting): the nearest smaller and larger value per objective; ties absent."""
    distance = [0.0] * len(points)
    for m in range(len(points[0])):
        values = [p[m] for p in points]
        low, high = min(values), max(values)
        for i, v in enumerate(values):
            if v in (low, high):
                distance[i] = math.inf
                continue
            below = max(x for x in values if x < v)
            above = min(x for x in values if x > v)
            distance[i] += (above - below) / (high - low)
    return distance


@pytest.mark.parametrize("num_objectives", [2, 3])
@pytest.mark.parametrize("seed", range(5))
def test_sorting_matches_brute_force(seed: int, num_objectives: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    # integer grid values make ties and duplicates common, which is where sorting bugs hide
    points = torch.randint(0, 6, (60, num_objectives), generator=generator).double().tolist()
    assert non_dominated_sort(points) == brute_force_fronts(points)


@pytest.mark.parametrize("seed", range(5))
def test_crowding_distance_matches_brute_force(seed: int) -> None:
    points = torch.rand(25, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).tolist()
    assert crowding_distance(points) == pytest.approx(brute_force_crowding(points))


def test_edge_cases() -> None:
    assert non_dominated_sort(torch.zeros(0, 2)) == []
    assert non_dominated_sort([[1.0, 1.0], [1.0, 1.0]]) == [[0, 1]]  # equal points do not dominate each other
    assert crowding_distance([[1.0, 2.0]]) == [math.inf]
    assert crowding_distance([[1.0, 2.0], [1.0, 3.0], [1.0, 4.0]])[1] == pytest.approx(1.0)  # flat objective adds 0
    assert interleave_fronts([[0], [1, 2]], [[2], [0, 1]]) == [[0], [2], [1]]
    with pytest.raises(ValueError, match="matrix"):
        non_dominated_sort([1.0, 2.0])
    with pytest.raises(ValueError, match="NaN"):
        crowding_distance([[float("nan"), 1.0]])
