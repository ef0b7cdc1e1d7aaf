r"""EfficientNet compound scaling (Tan & Le, ICML 2019, Sec. 3.3).

Scale a found network's depth, width and resolution together: ``d = alpha^phi, w = beta^phi, r = gamma^phi``
with ``alpha * beta^2 * gamma^2 ~= 2``, so the FLOPs (linear in depth, quadratic in width and resolution) grow
about ``2^phi``. The coefficients come from a small grid search at ``phi = 1`` (B0: alpha 1.2, beta 1.1, gamma
1.15); :class:`GridSearch` runs that grid as a strategy, so :func:`~lightning_nas.trials.run_trials` trains
every admissible grid point as a trial. :data:`EFFICIENTNET_PRESETS` is the released B0-B7 table.

Two kinds of found network scale: a genotype network (:func:`scale_network`: depth = cells, width = channels,
resolution = input size) and an elastic MobileNetV3 subnet (:func:`scale_mobilenet_subnet`: every stage's depth,
every width, the resolution), written as a family of configs with :func:`write_family` /
:func:`write_mobilenet_family`.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from torch import nn

from lightning_nas.arch import Arch, Choice, atomic_write_text
from lightning_nas.search.base import Mode, SearchStrategy
from lightning_nas.spaces.elastic_mobilenet import ElasticMobileNetV3
from lightning_nas.spaces.mobilenet_v3 import BlockSpec, MobileNetV3Layout, count_flops, count_params
from lightning_nas.spaces.mobilenet_v3 import layout as mobilenet_layout

__all__ = [
    "EFFICIENTNET_PRESETS",
    "GridSearch",
    "ScaledNetwork",
    "ScaledSubnet",
    "ScalingPreset",
    "coefficient_grid",
    "round_width",
    "scale_mobilenet_subnet",
    "scale_network",
    "write_family",
    "write_mobilenet_family",
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
    _check_coefficients(phi, alpha, beta, gamma)
    d, w, r = alpha**phi, beta**phi, gamma**phi
    return ScaledNetwork(
        phi, d, w, r, math.ceil(depth * d), round_width(width * w, divisor), int(round(resolution * r))
    )


def round_width(exact: float, divisor: int = 8) -> int:
    """``exact`` channels to the nearest multiple of ``divisor``, never below 90% of it (the reference
    ``round_filters``).

    Example:
        >>> round_width(17.6), round_width(19.36), round_width(19.36, divisor=4)
        (16, 24, 20)
    """
    if divisor < 1:
        raise ValueError(f"divisor must be >= 1, got {divisor}")
    rounded = max(divisor, int(exact + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * exact else rounded


def _check_coefficients(phi: float, alpha: float, beta: float, gamma: float) -> None:
    if not math.isfinite(phi) or phi < 0:
        raise ValueError(f"phi must be a finite number >= 0 (0 is the base network), got {phi}")
    bad = {name: v for name, v in (("alpha", alpha), ("beta", beta), ("gamma", gamma)) if not v >= 1}
    if bad:
        raise ValueError(f"alpha, beta and gamma must be >= 1 (they multiply depth, width, resolution); got {bad}")


def write_family(
    path: str | Path, phis: Sequence[float], alpha: float, beta: float, gamma: float, **base: int
) -> list[ScaledNetwork]:
    """Write the family ``phi in phis`` as a JSON list (atomically); returns it."""
    family = [scale_network(phi, alpha, beta, gamma, **base) for phi in phis]
    payload = {"alpha": alpha, "beta": beta, "gamma": gamma, "base": base, "family": [asdict(m) for m in family]}
    atomic_write_text(path, json.dumps(payload, indent=1) + "\n")
    return family


@dataclass(frozen=True)
class ScaledSubnet:
    """A ``phi``-scaled elastic MobileNetV3 subnet: the space it lives in (constructor arguments) and its arch.

    ``network()`` builds it as a plain ``nn.Module`` (freshly initialised, to train from scratch as EfficientNet's
    members are); ``flops`` and ``params`` are the space's analytic counts.
    """

    phi: float
    space: dict[str, Any]
    arch: dict[str, int]
    flops: int
    params: int

    def network(self) -> nn.Module:
        """The scaled subnet as a static network (:class:`~lightning_nas.spaces.mobilenet_v3.MobileNetV3Subnet`)."""
        return ElasticMobileNetV3(**self.space).export_subnet(self.arch)


def scale_mobilenet_subnet(
    space: ElasticMobileNetV3 | Mapping[str, Any],
    arch: Mapping[str, Any],
    phi: float,
    alpha: float,
    beta: float,
    gamma: float,
    *,
    divisor: int = 8,
) -> ScaledSubnet:
    """Scale subnet ``arch`` of an elastic MobileNetV3 space by ``alpha^phi`` (depth), ``beta^phi`` (width) and
    ``gamma^phi`` (resolution).

    Every stage's depth ``d`` becomes ``ceil(d alpha^phi)`` (the new blocks repeat the stage's last block, as
    EfficientNet repeats a stage's block); every width (stem, first block, stages, final expansion, feature mix)
    is multiplied by ``beta^phi`` and rounded by :func:`round_width`; the resolution ``r`` becomes ``gamma^phi r``
    rounded to a multiple of the stem's stride. The first block (one per network) is not repeated.

    Args:
        space: an :class:`~lightning_nas.spaces.ElasticMobileNetV3` or its ``config()``.
        arch: a subnet of ``space``.
        phi: the compound coefficient (0: the subnet itself).
        alpha, beta, gamma: depth, width and resolution multipliers (each >= 1).
        divisor: widths round to multiples of this.

    Returns:
        the scaled subnet, as a subnet of a space with the scaled widths (so the project's export, cost counters
        and retraining apply to it).

    Raises:
        TypeError: ``space`` is not an elastic MobileNetV3 (genotype networks scale with :func:`scale_network`).
        ValueError: ``phi < 0``, a multiplier below 1, or an ``arch`` that is not a subnet of ``space``.

    Example:
        >>> space = ElasticMobileNetV3(in_channels=1, num_classes=10, preset="cifar", widths=(8,) * 7 + (16, 16))
        >>> member = scale_mobilenet_subnet(space, space.sample_min_subnet(), 2, 1.2, 1.1, 1.15)
        >>> member.arch["resolution"], member.arch["stage0/depth"], member.space["widths"]  # 8 x 1.21 = 9.7 -> 16
        (32, 3, [16, 16, 16, 16, 16, 16, 16, 24, 24])
        >>> import torch
        >>> member.network()(torch.randn(2, 1, 28, 28)).shape  # a plain nn.Module; inputs resized to 32 inside
        torch.Size([2, 10])
    """
    config = _mobilenet_config(space)
    base = space if isinstance(space, ElasticMobileNetV3) else ElasticMobileNetV3(**config)
    arch = base.validate_arch(arch)
    _check_coefficients(phi, alpha, beta, gamma)
    stride = base.layout.stem_stride
    resolution = max(base.layout.total_stride, stride * round(int(arch["resolution"]) * gamma**phi / stride))
    stages = len(base.blocks)
    depths = [math.ceil(int(arch[f"stage{s}/depth"]) * alpha**phi) for s in range(stages)]
    scaled: dict[str, int] = {"resolution": resolution}
    for s in range(stages):
        kept = int(arch[f"stage{s}/depth"])
        scaled[f"stage{s}/depth"] = depths[s]
        for b in range(max(depths)):
            source = min(b, kept - 1)  # blocks beyond the kept ones repeat the stage's last block
            scaled[f"stage{s}/block{b}/kernel"] = int(arch[f"stage{s}/block{source}/kernel"])
            scaled[f"stage{s}/block{b}/expand"] = int(arch[f"stage{s}/block{source}/expand"])
    space_config = {
        **config,
        "widths": [round_width(w * beta**phi, divisor) for w in base.layout.widths],
        "depths": sorted(set(depths)),
        "resolutions": [resolution],
        "kernel_sizes": sorted({v for k, v in scaled.items() if k.endswith("/kernel")}),
        "expand_ratios": sorted({v for k, v in scaled.items() if k.endswith("/expand")}),
    }
    net, _ = mobilenet_layout(config["preset"], space_config["widths"])
    specs = _block_specs(net, depths, scaled)
    inputs, classes = int(config["in_channels"]), int(config["num_classes"])
    flops = count_flops(net, specs, inputs, classes, resolution)
    return ScaledSubnet(phi, space_config, scaled, flops, count_params(net, specs, inputs, classes))


def _block_specs(net: MobileNetV3Layout, depths: Sequence[int], arch: Mapping[str, int]) -> list[BlockSpec]:
    """The blocks of a subnet from the layout alone (as ``ElasticMobileNetV3.block_specs``, without the modules)."""
    stem, first = net.widths[:2]
    specs = [BlockSpec(stem, first, 3, 1, 1, "relu", False)]
    channels = first
    for s, (out, stride) in enumerate(zip(net.stage_channels, net.stage_strides)):
        for b in range(depths[s]):
            kernel, expand = arch[f"stage{s}/block{b}/kernel"], arch[f"stage{s}/block{b}/expand"]
            act, use_se = net.activations[s], net.squeeze_excite[s]
            specs.append(BlockSpec(channels, out, kernel, expand, stride if b == 0 else 1, act, use_se))
            channels = out
    return specs


def _mobilenet_config(space: ElasticMobileNetV3 | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(space, ElasticMobileNetV3):
        return space.config()
    if isinstance(space, Mapping) and not isinstance(space, nn.Module):
        return dict(space)
    raise TypeError(
        "scale_mobilenet_subnet scales an elastic MobileNetV3 subnet (an ElasticMobileNetV3 or its config()); got "
        f"{type(space).__module__}.{type(space).__qualname__}; scale a genotype network with scale_network"
    )


def write_mobilenet_family(
    path: str | Path,
    space: ElasticMobileNetV3 | Mapping[str, Any],
    arch: Mapping[str, Any],
    phis: Sequence[float],
    alpha: float,
    beta: float,
    gamma: float,
    *,
    divisor: int = 8,
) -> list[ScaledSubnet]:
    """Write the family ``phi in phis`` of subnet ``arch`` as JSON (atomically): each member's space config,
    arch, FLOPs and params; ``ElasticMobileNetV3(**m["space"]).export_subnet(m["arch"])`` builds a member."""
    family = [scale_mobilenet_subnet(space, arch, phi, alpha, beta, gamma, divisor=divisor) for phi in phis]
    payload = {
        "alpha": alpha,
        "beta": beta,
        "gamma": gamma,
        "base": {"space": _mobilenet_config(space), "arch": dict(arch)},
        "family": [asdict(member) for member in family],
    }
    atomic_write_text(path, json.dumps(payload, indent=1) + "\n")
    return family
