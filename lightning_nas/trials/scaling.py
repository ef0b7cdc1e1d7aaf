r"""EfficientNet compound scaling (Tan & Le, ICML 2019, Sec. 3.3).

Scale a found network's depth, width and resolution together: ``d = alpha^phi, w = beta^phi, r = gamma^phi``
with ``alpha * beta^2 * gamma^2 ~= 2``, so the FLOPs (linear in depth, quadratic in width and resolution) grow
about ``2^phi``. The coefficients come from a small grid search at ``phi = 1`` (B0: alpha 1.2, beta 1.1, gamma
1.15); :class:`GridSearch` runs that grid as a strategy, so :func:`~lightning_nas.trials.run_trials` trains
every admissible grid point as a trial. :data:`EFFICIENTNET_PRESETS` is the released B0-B7 table.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lightning_nas.arch import Arch, Choice, atomic_write_text
from lightning_nas.search.base import Mode, SearchStrategy

__all__ = [
    "EFFICIENTNET_PRESETS",
    "GridSearch",
    "ScaledNetwork",
    "ScalingPreset",
    "coefficient_grid",
    "scale_network",
    "write_family",
]


@dataclass(frozen=True)
class ScalingPreset:
    """One member of the EfficientNet family: width and depth multipliers, input resolution, dropout."""

    width: float
    depth: float
    resolution: int
    dropout: float


# (width, depth, resolution, dropout) of the released models: ``efficientnet_params`` in the reference code,
# https://github.com/tensorflow/tpu/blob/master/models/official/efficientnet/efficientnet_builder.py
EFFICIENTNET_PRESETS: dict[str, ScalingPreset] = {
    "b0": ScalingPreset(1.0, 1.0, 224, 0.2),
    "b1": ScalingPreset(1.0, 1.1, 240, 0.2),
    "b2": ScalingPreset(1.1, 1.2, 260, 0.3),
    "b3": ScalingPreset(1.2, 1.4, 300, 0.3),
    "b4": ScalingPreset(1.4, 1.8, 380, 0.4),
    "b5": ScalingPreset(1.6, 2.2, 456, 0.4),
    "b6": ScalingPreset(1.8, 2.6, 528, 0.5),
    "b7": ScalingPreset(2.0, 3.1, 600, 0.5),
}


def coefficient_grid(
    step: float = 0.05, low: float = 1.0, high: float = 1.5, target: float = 2.0, tolerance: float = 0.1
) -> list[tuple[float, float, float]]:
    """Every ``(alpha, beta, gamma)`` on a grid of ``step`` in ``[low, high]`` with ``|alpha beta^2 gamma^2 - target|
    <= tolerance``, in lexicographic order.

    Example:
        >>> (1.2, 1.1, 1.15) in coefficient_grid()  # EfficientNet-B0's coefficients: 1.2 * 1.1^2 * 1.15^2 = 1.92
        True
    """
    if step <= 0 or low < 1.0 or high < low:
        raise ValueError(f"need step > 0 and 1 <= low <= high; got step={step}, low={low}, high={high}")
    count = int(round((high - low) / step)) + 1
    values = [round(low + k * step, 10) for k in range(count)]
    return [
        (a, b, g) for a, b, g in itertools.product(values, repeat=3) if abs(a * b * b * g * g - target) <= tolerance
    ]


class GridSearch(SearchStrategy):
    """Ask for a fixed list of architectures in order (a grid), e.g. the admissible scaling coefficients.

    Args:
        archs: the grid points, each a mapping over ``choices``.
        choices: the choices the points are over (default: one per key, its candidates the values seen).
        metric, mode: see :class:`~lightning_nas.search.base.SearchStrategy`.

    Example:
        >>> from lightning_nas.search import run_search
        >>> grid = [{"alpha": a, "beta": b, "gamma": g} for a, b, g in coefficient_grid()]
        >>> def objective(c):  # best at B0's coefficients
        ...     return {"accuracy": -((c["alpha"] - 1.2) ** 2 + (c["beta"] - 1.1) ** 2 + (c["gamma"] - 1.15) ** 2)}
        >>> run_search(GridSearch(grid), objective, len(grid)).arch
        {'alpha': 1.2, 'beta': 1.1, 'gamma': 1.15}
    """

    def __init__(
        self,
        archs: Sequence[Mapping[str, Any]],
        *,
        choices: Sequence[Choice] | None = None,
        metric: str = "accuracy",
        mode: Mode = "max",
    ) -> None:
        if not archs:
            raise ValueError("the grid is empty: there is nothing to evaluate")
        if choices is None:
            names = list(archs[0])
            choices = [Choice(n, tuple(dict.fromkeys(a[n] for a in archs))) for n in names]
        super().__init__(choices, metric=metric, mode=mode)
        self.archs = [dict(a) for a in archs]
        self.position = 0

    def propose(self) -> Arch:
        if self.position >= len(self.archs):
            raise ValueError(f"the grid of {len(self.archs)} points is exhausted; plan at most that many trials")
        arch = self.archs[self.position]
        self.position += 1
        return dict(arch)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "position": self.position}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.position = int(state["position"])


@dataclass(frozen=True)
class ScaledNetwork:
    """One member of a scaled family: ``phi``, the multipliers, and the rounded depth, width and resolution."""

    phi: float
    depth_multiplier: float
    width_multiplier: float
    resolution_multiplier: float
    depth: int
    width: int
    resolution: int


def scale_network(
    phi: float, alpha: float, beta: float, gamma: float, *, depth: int, width: int, resolution: int, divisor: int = 8
) -> ScaledNetwork:
    """The ``phi``-scaled network of a base with ``depth`` layers (cells), ``width`` channels, ``resolution`` pixels.

    Depth rounds up (as the reference ``round_repeats``: ``ceil``), width to the nearest multiple of ``divisor``
    (never below 90% of the exact value, as ``round_filters``), resolution to the nearest integer.

    Example:
        >>> member = scale_network(1, 1.2, 1.1, 1.15, depth=8, width=16, resolution=32)
        >>> member.depth, member.width, member.resolution
        (10, 16, 37)
    """
    d, w, r = alpha**phi, beta**phi, gamma**phi
    exact = width * w
    rounded = max(divisor, int(exact + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * exact:
        rounded += divisor
    return ScaledNetwork(phi, d, w, r, math.ceil(depth * d), rounded, int(round(resolution * r)))


def write_family(
    path: str | Path, phis: Sequence[float], alpha: float, beta: float, gamma: float, **base: int
) -> list[ScaledNetwork]:
    """Write the family ``phi in phis`` as a JSON list (atomically); returns it."""
    family = [scale_network(phi, alpha, beta, gamma, **base) for phi in phis]
    payload = {"alpha": alpha, "beta": beta, "gamma": gamma, "base": base, "family": [asdict(m) for m in family]}
    atomic_write_text(path, json.dumps(payload, indent=1) + "\n")
    return family
