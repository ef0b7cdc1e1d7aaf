"""Analytic cost of the child a space has active: its parameters, or its multiply-accumulates per image."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
from torch import Tensor, nn

__all__ = ["child_cost", "scoring_mode"]

CostKind = Literal["params", "flops"]


def child_cost(space: nn.Module, probe: Tensor, kind: CostKind) -> float:
    """Run ``probe`` (one image ``[1, C, H, W]``) through ``space`` and count what ran.

    ``"params"``: parameters of every module that ran (each counted once), leaving out a differentiable space's
    architecture parameters; a module that ran but whose output no node reads still counts, as it would in the
    standalone network. ``"flops"``: multiply-accumulates of the ``Conv2d`` and ``Linear`` layers that ran
    (pooling, normalisation and additions are not counted).

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
        >>> child_cost(net, torch.zeros(1, 1, 4, 4), "params"), child_cost(net, torch.zeros(1, 1, 4, 4), "flops")
        (119.0, 384.0)
    """
    if kind not in ("params", "flops"):
        raise ValueError(f"cost kind must be 'params' or 'flops', got {kind!r}")
    ran: dict[int, nn.Module] = {}
    macs = 0

    def count(module: nn.Module, inputs: Any, output: Any) -> None:
        nonlocal macs
        ran[id(module)] = module
        if isinstance(module, nn.Conv2d):
            kernel = module.kernel_size[0] * module.kernel_size[1]
            macs += output[0].numel() * (module.in_channels // module.groups) * kernel
        elif isinstance(module, nn.Linear):
            macs += output[0].numel() * module.in_features

    handles = [module.register_forward_hook(count) for module in space.modules()]
    was_training = space.training
    try:
        space.eval()
        with torch.no_grad():
            space(probe[:1])
    finally:
        for handle in handles:
            handle.remove()
        space.train(was_training)
    if kind == "flops":
        return float(macs)
    arch_parameters = getattr(space, "arch_parameters", None)
    skip = {id(p) for p in arch_parameters()} if callable(arch_parameters) else set()
    return float(
        sum(p.numel() for module in ran.values() for p in module.parameters(recurse=False) if id(p) not in skip)
    )


@contextmanager
def scoring_mode(module: nn.Module) -> Iterator[None]:
    """Score with batch statistics and leave the running statistics alone, then restore the module's modes.

    A supernet's running BatchNorm statistics average over every child it trained, so ENAS scores each child with
    the statistics of the batch at hand (the reference code builds its reward graph with ``is_training=True``);
    a momentum of 0 keeps that from touching the running averages.
    """
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    modes = [(m, m.training) for m in module.modules()]
    momenta = [m.momentum for m in norms]
    try:
        module.train()
        for norm in norms:
            norm.momentum = 0.0
        yield
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
        for m, training in modes:
            m.training = training
