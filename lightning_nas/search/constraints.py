"""Parameter and FLOP counts of an architecture of any space, and constraints built on them.

The generic count activates the architecture, runs one dummy image through the space with forward hooks, and
adds up what the executed modules hold and compute: the parameters owned by every module that ran (each module
once, architecture parameters excluded), and the multiply-accumulates of every ``Conv2d`` and ``Linear`` call
(reported as "FLOPs", the convention of the NAS literature, e.g. SPOS, Guo et al. 2020, Table 3). A space whose
modules slice shared weights (elastic layers) must count analytically instead, by defining
``arch_cost(arch, image_size) -> {"params": ..., "flops": ...}``; :func:`count_cost` then uses it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from lightning_nas.arch import Arch
from lightning_nas.search.base import Constraint
from lightning_nas.spaces.base import DifferentiableSpace, SearchSpace

__all__ = ["AnalyticCost", "Cost", "CostModel", "count_cost", "count_network_cost"]


class Cost(NamedTuple):
    """Size and compute of one architecture: parameters and multiply-accumulates per image."""

    params: int
    flops: int


@runtime_checkable
class AnalyticCost(Protocol):
    """A space that counts its architectures' cost itself (needed where modules slice shared weights)."""

    def arch_cost(self, arch: Mapping[str, Any], image_size: int) -> Mapping[str, float]: ...


def _macs(module: nn.Module, output: Any) -> int:
    if not isinstance(output, Tensor):
        return 0
    per_image = output[0].numel()
    if isinstance(module, nn.Conv2d):
        kernel_h, kernel_w = module.kernel_size
        return per_image * (module.in_channels // module.groups) * kernel_h * kernel_w
    if isinstance(module, nn.Linear):
        return per_image * module.in_features
    return 0


@torch.no_grad()
def count_cost(space: SearchSpace, arch: Mapping[str, Any], *, image_size: int) -> Cost:
    """Parameters and FLOPs (multiply-accumulates per image) of ``arch`` in ``space``; leaves ``arch`` active.

    Args:
        space: the search space.
        arch: an architecture of ``space``.
        image_size: height and width of the dummy image.

    Example:
        >>> from lightning_nas.spaces import DartsCellSpace
        >>> space = DartsCellSpace(in_channels=1, channels=4, layers=3, steps=1)
        >>> arch = {c.name: c.candidates[0] for c in space.choices()}
        >>> pool = count_cost(space, {**arch, "normal/node2/op0": "max_pool_3x3"}, image_size=8)
        >>> conv = count_cost(space, {**arch, "normal/node2/op0": "sep_conv_5x5"}, image_size=8)
        >>> conv.params - pool.params  # two depthwise 5x5 and two pointwise 1x1 convs on 4 channels
        232
    """
    if isinstance(space, AnalyticCost):
        cost = space.arch_cost(arch, image_size)
        return Cost(int(cost["params"]), int(cost["flops"]))
    space.validate_arch(arch)
    executed: dict[int, nn.Module] = {}
    flops = 0

    def record(module: nn.Module, inputs: Any, output: Any) -> None:
        nonlocal flops
        executed[id(module)] = module
        flops += _macs(module, output)

    handles = [module.register_forward_hook(record) for module in space.modules()]
    was_training = space.training
    try:
        space.eval()
        space.activate(arch)
        parameter = next(space.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
        space(torch.zeros(1, space.in_channels, image_size, image_size, device=device))
    finally:
        for handle in handles:
            handle.remove()
        space.train(was_training)
    skip = {id(p) for p in space.arch_parameters()} if isinstance(space, DifferentiableSpace) else set()
    params = sum(p.numel() for m in executed.values() for p in m.parameters(recurse=False) if id(p) not in skip)
    return Cost(params, flops)


@torch.no_grad()
def count_network_cost(network: nn.Module, input_shape: tuple[int, int, int]) -> Cost:
    """Parameters and FLOPs (multiply-accumulates per image) of a standalone network, e.g. an exported child.

    The same count as :func:`count_cost`: every parameter of the network, and the multiply-accumulates of the
    ``Conv2d`` and ``Linear`` calls of one forward pass on a zero image of ``input_shape`` (channels, height, width).

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3, bias=False), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
        >>> count_network_cost(net, (1, 8, 8))  # 4*36*9 conv MACs + 144*10 linear MACs
        Cost(params=1486, flops=2736)
    """
    flops = 0

    def record(module: nn.Module, inputs: Any, output: Any) -> None:
        nonlocal flops
        flops += _macs(module, output)

    handles = [module.register_forward_hook(record) for module in network.modules()]
    was_training = network.training
    try:
        network.eval()
        parameter = next(network.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
        network(torch.zeros(1, *input_shape, device=device))
    finally:
        for handle in handles:
            handle.remove()
        network.train(was_training)
    return Cost(sum(p.numel() for p in network.parameters()), flops)


class CostModel:
    """Cached :func:`count_cost` of a space's architectures, and constraints on them.

    Args:
        space: the search space.
        image_size: height and width of the images the space sees.

    Example:
        >>> from lightning_nas.spaces import DartsCellSpace
        >>> costs = CostModel(DartsCellSpace(in_channels=1, channels=4, layers=3, steps=1), image_size=8)
        >>> arch = {c.name: c.candidates[0] for c in costs.space.choices()}
        >>> costs.params(arch) > 0, costs.constraint("params", limit=1).satisfied(arch)
        (True, False)
    """

    def __init__(self, space: SearchSpace, *, image_size: int) -> None:
        if image_size < 1:
            raise ValueError(f"image_size must be >= 1, got {image_size}")
        self.space, self.image_size = space, image_size
        self._cache: dict[str, Cost] = {}

    def cost(self, arch: Mapping[str, Any]) -> Cost:
        """Parameters and FLOPs of ``arch`` (counted once per distinct architecture)."""
        key = json.dumps(dict(arch), sort_keys=True)
        if key not in self._cache:
            self._cache[key] = count_cost(self.space, arch, image_size=self.image_size)
        return self._cache[key]

    def params(self, arch: Mapping[str, Any]) -> float:
        """Number of parameters of ``arch``."""
        return float(self.cost(arch).params)

    def flops(self, arch: Mapping[str, Any]) -> float:
        """Multiply-accumulates of ``arch`` per image."""
        return float(self.cost(arch).flops)

    def constraint(self, name: str, limit: float) -> Constraint:
        """``params <= limit`` or ``flops <= limit`` as a :class:`~lightning_nas.search.base.Constraint`."""
        measures = {"params": self.params, "flops": self.flops}
        if name not in measures:
            raise ValueError(f"unknown cost {name!r}; valid costs: {', '.join(measures)}")
        return Constraint(name, measures[name], limit)

    def metrics(self, arch: Arch) -> dict[str, float]:
        """``{"params": ..., "flops": ...}`` for merging into an evaluator's metrics."""
        cost = self.cost(arch)
        return {"params": float(cost.params), "flops": float(cost.flops)}
