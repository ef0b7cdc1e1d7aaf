"""Batch-norm recalibration: re-estimate a network's BN statistics on a few batches of training images.

A subnet of a weight-sharing supernet cannot use the supernet's running statistics, which mix every subnet
trained so far; Once-for-All and BigNAS re-estimate them on a few thousand training images before evaluating it
(Cai et al. 2020, Sec. 3.3; Yu et al. 2020, Sec. 3.4). Here every BN layer gets the exact *population*
statistics of its inputs over all calibration images,

    running_mean = S1 / N,    running_var = (S2 / N - running_mean^2) * N / (N - 1),

with ``S1``, ``S2`` the per-channel sums of the inputs and of their squares and ``N`` the number of values per
channel (images x pixels). During the pass each BN layer normalises with its mini-batch's statistics, as in
training. The sums are plain additions, so under DDP each rank sums its share of the images and one all-reduce
(``reduce``) gives every rank the statistics of the whole set. Layers that do not run (blocks a subnet skips)
keep their statistics; an elastic BN running ``c`` channels gets its first ``c`` entries set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = [
    "BatchNormMoments",
    "apply_moments",
    "batch_statistics",
    "batchnorm_moments",
    "batchnorm_state",
    "collect_calibration_images",
    "normalised_batches",
    "load_batchnorm_state",
    "recalibrate_batchnorm",
]

BatchNormMoments = dict[str, Tensor]
"""Per BN layer name: ``float64`` tensor ``[N, S1_0 .. S1_{c-1}, S2_0 .. S2_{c-1}]`` (see the module docstring)."""


def batchnorm_moments(model: nn.Module, batches: Iterable[Tensor]) -> BatchNormMoments:
    """Sum each BN layer's input moments over ``batches``, with BN in training mode and every other layer in eval.

    The model's modes and running statistics are restored afterwards (only the sums are returned).

    Example:
        >>> bn = nn.BatchNorm2d(2)
        >>> moments = batchnorm_moments(nn.Sequential(bn), [torch.ones(4, 2, 3, 3)])
        >>> moments["0"].tolist()
        [36.0, 36.0, 36.0, 36.0, 36.0]
    """
    layers = {name: m for name, m in model.named_modules() if isinstance(m, _BatchNorm)}
    sums: dict[str, Tensor] = {}

    def hook(name: str) -> Callable[[nn.Module, tuple[Any, ...]], None]:
        def record(module: nn.Module, inputs: tuple[Any, ...]) -> None:
            x = inputs[0].detach().to(torch.float64)
            dims = [d for d in range(x.ndim) if d != 1]
            moments = torch.cat([x.new_tensor([x.numel() / x.shape[1]]), x.sum(dims), (x * x).sum(dims)])
            if name in sums and sums[name].shape != moments.shape:
                raise ValueError(f"BN layer {name!r} saw {x.shape[1]} channels after {len(sums[name]) // 2}")
            sums[name] = sums[name] + moments if name in sums else moments

        return record

    modes = {m: m.training for m in model.modules()}
    saved = batchnorm_state(model)
    handles = [layer.register_forward_pre_hook(hook(name)) for name, layer in layers.items()]
    try:
        model.eval()
        for layer in layers.values():
            layer.train()
        with torch.no_grad():
            for x in batches:
                model(x)
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.train(training)
        load_batchnorm_state(model, saved)
    return sums


def apply_moments(model: nn.Module, moments: BatchNormMoments) -> None:
    """Set each BN layer's running statistics (its first ``c`` channels) from summed moments."""
    layers = dict(model.named_modules())
    with torch.no_grad():
        for name, sums in moments.items():
            layer = layers[name]
            assert isinstance(layer, _BatchNorm)
            assert layer.running_mean is not None
            assert layer.running_var is not None
            count, channels = sums[0], (len(sums) - 1) // 2
            mean = sums[1 : 1 + channels] / count
            var = (sums[1 + channels :] / count - mean * mean).clamp_min(0) * count / (count - 1).clamp_min(1)
            layer.running_mean[:channels] = mean.to(layer.running_mean.dtype)
            layer.running_var[:channels] = var.to(layer.running_var.dtype)


def recalibrate_batchnorm(
    model: nn.Module, batches: Iterable[Tensor], *, reduce: Callable[[Tensor], Tensor] | None = None
) -> BatchNormMoments:
    """Replace the running statistics of every BN layer that runs with its population statistics over ``batches``.

    Args:
        model: the network (e.g. a supernet with a subnet activated, or an exported subnet).
        batches: input batches, already on the model's device and normalised.
        reduce: sums a tensor across processes (DDP: ``lambda t: trainer.strategy.reduce(t, reduce_op="sum")``),
            so that every rank gets the statistics of all ranks' images; ``None`` on one process.

    Returns:
        The (reduced) moments that were applied.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3))
        >>> x = torch.randn(64, 1, 8, 8)
        >>> _ = recalibrate_batchnorm(net, x.split(16))
        >>> features = net[0](x).detach()
        >>> torch.allclose(net[1].running_mean, features.mean((0, 2, 3)), atol=1e-6)
        True
        >>> torch.allclose(net[1].running_var, features.transpose(0, 1).flatten(1).var(1), atol=1e-6)
        True
    """
    moments = batchnorm_moments(model, batches)
    if reduce is not None and moments:
        names = sorted(moments)
        flat = reduce(torch.cat([moments[name] for name in names]))
        moments = dict(zip(names, flat.split([len(moments[name]) for name in names])))
    apply_moments(model, moments)
    return moments


@contextmanager
def batch_statistics(model: nn.Module) -> Iterator[None]:
    """Inside the block every BN layer normalises with its batch's own statistics and updates no running statistic.

    A cheap alternative to recalibration for scoring many subnets of a supernet: each subnet is scored on its
    own features, not on running statistics that mix every subnet trained so far. The batches must be large
    enough to estimate the statistics (say 64 images or more). Only BN layers change mode; dropout and the
    rest keep theirs, and every layer's mode is restored on exit.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2)).eval()
        >>> x = torch.randn(8, 1, 4, 4) + 3.0
        >>> with batch_statistics(net):
        ...     y = net(x)
        >>> bool(y.mean((0, 2, 3)).abs().max() < 1e-5), bool((net[1].running_mean == 0).all()), net[1].training
        (True, True, False)
    """
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    saved = [(m.training, m.track_running_stats) for m in norms]
    for norm in norms:
        norm.train()
        norm.track_running_stats = False
    try:
        yield
    finally:
        for norm, (training, tracking) in zip(norms, saved):
            norm.train(training)
            norm.track_running_stats = tracking


def batchnorm_state(model: nn.Module) -> dict[str, Tensor]:
    """Copies of every BN running mean and variance, keyed as in ``model.state_dict()``.

    Usable as the buffer override of ``torch.func.functional_call(model, state, x)``.
    """
    state = {}
    for name, layer in model.named_modules():
        if isinstance(layer, _BatchNorm) and layer.running_mean is not None and layer.running_var is not None:
            prefix = f"{name}." if name else ""
            state[prefix + "running_mean"] = layer.running_mean.detach().clone()
            state[prefix + "running_var"] = layer.running_var.detach().clone()
    return state


def load_batchnorm_state(model: nn.Module, state: dict[str, Tensor]) -> None:
    """Copy statistics saved by :func:`batchnorm_state` back into ``model``."""
    buffers = dict(model.named_buffers())
    with torch.no_grad():
        for name, value in state.items():
            buffers[name].copy_(value)


def collect_calibration_images(loader: Iterable[Any], num_images: int) -> tuple[Tensor, Tensor]:
    """The first ``num_images`` ``(images, labels)`` of a loader's ``(x, y)`` batches (or ``{"train": (x, y)}``).

    Raises:
        ValueError: ``num_images < 1`` or the loader holds fewer images.
    """
    if num_images < 1:
        raise ValueError(f"num_images must be at least 1, got {num_images}")
    images: list[Tensor] = []
    labels: list[Tensor] = []
    seen = 0
    for batch in loader:
        pair = batch["train"] if isinstance(batch, dict) else batch
        x, y = pair
        images.append(x[: num_images - seen])
        labels.append(y[: num_images - seen])
        seen += len(images[-1])
        if seen >= num_images:
            return torch.cat(images), torch.cat(labels)
    raise ValueError(f"the loader holds {seen} images; {num_images} were asked for calibration")


def normalised_batches(
    datamodule: Any, images: Tensor, labels: Tensor, batch_size: int, device: torch.device | str = "cpu"
) -> list[Tensor]:
    """Raw loader images as model inputs: moved to ``device`` in batches and passed through the datamodule's
    ``on_after_batch_transfer`` (lightning_nas datamodules normalise there, augmenting only while training)."""
    batches = []
    for x, y in zip(images.split(batch_size), labels.split(batch_size)):
        x, _ = datamodule.on_after_batch_transfer((x.to(device), y.to(device)), 0)
        batches.append(x)
    return batches
