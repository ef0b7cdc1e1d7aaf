"""Pareto ranking: fast non-dominated sorting and crowding distance (NSGA-II, Deb et al., 2002, Sec. III).

Points are rows of ``objectives`` ``[N, M]`` and every objective is **minimised** (negate the ones to maximise).
Point ``a`` dominates ``b`` when ``a <= b`` in every objective and ``a < b`` in at least one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["crowding_distance", "dominance_matrix", "interleave_fronts", "non_dominated_sort"]


def _as_matrix(objectives: Tensor | Sequence[Sequence[float]]) -> Tensor:
    points = torch.as_tensor(objectives, dtype=torch.float64)
    if points.ndim != 2:
        raise ValueError(f"objectives must be a [num_points, num_objectives] matrix, got shape {tuple(points.shape)}")
    if torch.isnan(points).any():
        raise ValueError("objectives contain NaN; every point needs a value for every objective")
    return points


def dominance_matrix(objectives: Tensor | Sequence[Sequence[float]]) -> Tensor:
    """``D[i, j]`` is ``True`` when point ``i`` dominates point ``j`` (all objectives minimised).

    Example:
        >>> dominance_matrix([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]).int().tolist()
        [[0, 1, 1], [0, 0, 0], [0, 0, 0]]
    """
    points = _as_matrix(objectives)
    no_worse = (points[:, None, :] <= points[None, :, :]).all(-1)
    better = (points[:, None, :] < points[None, :, :]).any(-1)
    return no_worse & better


def non_dominated_sort(objectives: Tensor | Sequence[Sequence[float]]) -> list[list[int]]:
    """Fast non-dominated sorting (Deb et al., 2002, Sec. III-A): the fronts ``F_1, F_2, ...`` as index lists.

    ``F_1`` holds the points nobody dominates; ``F_k`` those dominated only by points in earlier fronts. Each
    point's domination count ``n_p`` is computed once (``O(M N^2)``); peeling a front decrements the counts of
    the points it dominates, exactly as in the paper. Indices inside a front are ascending.

    Example:
        >>> non_dominated_sort([[1.0, 4.0], [2.0, 2.0], [3.0, 3.0], [4.0, 1.0], [5.0, 5.0]])
        [[0, 1, 3], [2], [4]]
    """
    dominates = dominance_matrix(objectives)
    count = dominates.sum(0)  # n_p: how many points dominate p
    remaining = torch.ones(len(count), dtype=torch.bool)
    fronts: list[list[int]] = []
    while remaining.any():
        front = remaining & (count == 0)
        fronts.append(torch.nonzero(front).flatten().tolist())
        remaining &= ~front
        count = count - dominates[front].sum(0)
    return fronts


def crowding_distance(objectives: Tensor | Sequence[Sequence[float]]) -> list[float]:
    """Crowding distance of each point within one front (Deb et al., 2002, Sec. III-B).

    Per objective the points are sorted; the two extremes get ``inf`` and every other point adds the normalised
    gap between its two neighbours, ``(f[next] - f[prev]) / (f_max - f_min)``. An objective on which every point
    has the same value adds nothing.

    Example:
        >>> crowding_distance([[0.0, 4.0], [1.0, 2.0], [3.0, 1.0], [4.0, 0.0]])
        [inf, 1.5, 1.25, inf]
    """
    points = _as_matrix(objectives)
    count, num_objectives = points.shape
    distance = [0.0] * count
    for m in range(num_objectives):
        values = points[:, m].tolist()
        order = sorted(range(count), key=lambda i: (values[i], i))
        span = values[order[-1]] - values[order[0]] if count else 0.0
        distance[order[0]] = distance[order[-1]] = float("inf")
        if span <= 0:
            continue
        for position in range(1, count - 1):
            gap = values[order[position + 1]] - values[order[position - 1]]
            distance[order[position]] += gap / span
    return distance


def interleave_fronts(*rankings: Sequence[Sequence[int]]) -> list[list[int]]:
    """Merge several front lists into one: front 1 of each ranking, then front 2 of each, and so on.

    A point keeps only its first appearance, and emptied fronts are dropped. This is how pNSGA-III (Yang et al.,
    2020, CARS, Sec. 3.3) protects architectures that improve fast: it ranks once by (accuracy, size) and once by
    (accuracy gain, size) and selects from both rankings alternately.

    Example:
        >>> interleave_fronts([[0, 1], [2, 3]], [[2], [0, 4], [1, 3]])
        [[0, 1], [2], [3], [4]]
    """
    merged: list[list[int]] = []
    seen: set[int] = set()
    for depth in range(max((len(r) for r in rankings), default=0)):
        for ranking in rankings:
            front = [i for i in ranking[depth] if i not in seen] if depth < len(ranking) else []
            seen.update(front)
            if front:
                merged.append(front)
    return merged
