"""Evaluators: ``arch -> metrics`` callables that search strategies score architectures with.

Any callable ``Arch -> Mapping[str, float]`` is an evaluator (a tabular benchmark lookup, a predictor, a user's
function). :class:`SupernetEvaluator` scores an architecture with a trained supernet's shared weights on a held
validation subset, after re-estimating the BatchNorm statistics of the activated path as SPOS does before
evaluating each path (Guo et al., 2020, Sec. 3.3: "the BN statistics are recalculated on a random subset of the
training data"). :func:`with_metrics` adds measured quantities (params, FLOPs, latency) to any evaluator's metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from lightning_nas.arch import Arch
from lightning_nas.spaces.base import SearchSpace

__all__ = ["Evaluator", "SupernetEvaluator", "collect_batches", "recalibrate_batchnorm", "with_metrics"]

Evaluator = Callable[[Arch], Mapping[str, float]]
Batch = tuple[Tensor, Tensor]


def collect_batches(loader: Iterable[Any], datamodule: Any = None, num_batches: int | None = None) -> list[Batch]:
    """The first ``num_batches`` ``(images, labels)`` batches of ``loader``, as a model sees them.

    With a ``datamodule``, each batch goes through its ``on_after_batch_transfer`` (our datamodules turn ``uint8``
    images into normalised floats there; no augmentation happens outside training).

    Example:
        >>> collect_batches([(torch.zeros(2, 1), torch.zeros(2)), (torch.ones(2, 1), torch.ones(2))], num_batches=1)
        [(tensor([[0.],
                [0.]]), tensor([0., 0.]))]
    """
    if num_batches is not None and num_batches < 1:
        raise ValueError(f"num_batches must be >= 1, got {num_batches}")
    batches: list[Batch] = []
    for batch in loader:
        if num_batches is not None and len(batches) >= num_batches:
            break
        if datamodule is not None:
            batch = datamodule.on_after_batch_transfer(batch, 0)
        x, y = batch
        batches.append((x, y))
    return batches


@torch.no_grad()
def recalibrate_batchnorm(module: nn.Module, batches: Iterable[Tensor]) -> None:
    """Reset every BatchNorm's running statistics and re-estimate them as exact averages over ``batches``.

    Only BatchNorms that run on ``batches`` get new statistics; the module's training mode is restored.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))
        >>> batches = [torch.randn(4, 1, 3, 3) + 5 for _ in range(3)]
        >>> recalibrate_batchnorm(net, batches)
        >>> expected = torch.stack([net[0](b).mean((0, 2, 3)) for b in batches]).mean(0)
        >>> torch.allclose(net[1].running_mean, expected, atol=1e-5)
        True
    """
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    momenta = [m.momentum for m in norms]
    was_training = module.training
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative moving average: the exact mean over the batches seen
    module.train()
    try:
        for x in batches:
            module(x)
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
        module.train(was_training)


class SupernetEvaluator:
    """Accuracy and loss of an architecture under a trained supernet's shared weights, on held batches.

    :meth:`recalibrate` is the hook run after activating each architecture: by default it re-estimates the
    BatchNorm statistics of the activated path on ``calibration_batches`` (nothing when they are not given).
    Spaces with elastic BatchNorm override it (subclass and call the space's own recalibration).

    Args:
        space: the trained search space (its weights are not changed, except BatchNorm statistics).
        batches: held validation batches ``(images, labels)`` of normalised images on the space's device.
        calibration_batches: training images for BatchNorm recalibration (SPOS: a random training subset).
        distributed: sum the counts over all ranks of the default process group, so each rank holds a shard of
            the held batches and every rank returns the metrics of the whole held set. Every rank must then
            evaluate the same architectures in the same order (a strategy with the same seed on every rank does)
            and recalibrate on the same ``calibration_batches``.

    Example:
        >>> from lightning_nas.spaces import DartsCellSpace
        >>> space = DartsCellSpace(in_channels=1, num_classes=3, channels=4, layers=3, steps=1)
        >>> batches = [(torch.randn(8, 1, 8, 8), torch.randint(3, (8,))) for _ in range(2)]
        >>> evaluate = SupernetEvaluator(space, batches, calibration_batches=[x for x, _ in batches])
        >>> metrics = evaluate({c.name: c.candidates[0] for c in space.choices()})
        >>> sorted(metrics), 0.0 <= metrics["accuracy"] <= 1.0
        (['accuracy', 'loss'], True)
    """

    def __init__(
        self,
        space: SearchSpace,
        batches: Sequence[Batch],
        *,
        calibration_batches: Sequence[Tensor] = (),
        distributed: bool = False,
    ) -> None:
        if not batches:
            raise ValueError("SupernetEvaluator needs at least one validation batch")
        if distributed and not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            raise ValueError("distributed=True needs an initialised default process group (torch.distributed)")
        self.space, self.batches, self.calibration_batches = space, list(batches), list(calibration_batches)
        self.distributed = distributed

    def recalibrate(self, arch: Arch) -> None:
        """Hook run with ``arch`` active before it is scored: BatchNorm recalibration on the calibration batches."""
        if self.calibration_batches:
            recalibrate_batchnorm(self.space, self.calibration_batches)

    @torch.no_grad()
    def __call__(self, arch: Arch) -> dict[str, float]:
        was_training = self.space.training
        self.space.activate(arch)
        try:
            self.recalibrate(arch)
            self.space.eval()
            # correct, loss sum, count: float64 keeps the counts exact, so sharded totals equal unsharded ones
            totals = torch.zeros(3, dtype=torch.float64, device=self.batches[0][0].device)
            for x, y in self.batches:
                logits = self.space(x)
                totals[0] += (logits.argmax(-1) == y).sum()
                totals[1] += nn.functional.cross_entropy(logits.float(), y, reduction="sum").double()
                totals[2] += len(y)
            if self.distributed:
                torch.distributed.all_reduce(totals)
        finally:
            self.space.train(was_training)
        correct, loss, count = totals.tolist()
        return {"accuracy": correct / count, "loss": loss / count}


def with_metrics(evaluate: Evaluator, **measures: Callable[[Arch], float]) -> Evaluator:
    """An evaluator returning ``evaluate(arch)`` plus ``{name: measure(arch)}`` for each measure.

    Example:
        >>> evaluate = with_metrics(lambda arch: {"accuracy": 0.5}, params=lambda arch: 10.0 * arch["w"])
        >>> evaluate({"w": 3})
        {'accuracy': 0.5, 'params': 30.0}
    """
    clash = sorted(set(measures) & {"accuracy", "loss"})
    if clash:
        raise ValueError(f"measure names {clash} would overwrite the evaluator's own metrics; rename them")

    def evaluate_with_measures(arch: Arch) -> dict[str, float]:
        metrics: dict[str, Any] = dict(evaluate(arch))
        metrics.update({name: float(measure(arch)) for name, measure in measures.items()})
        return metrics

    return evaluate_with_measures
