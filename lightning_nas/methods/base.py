"""What every method module shares: its space, the architecture it holds now, and checkpoint metadata."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy
from typing_extensions import override

from lightning_nas.arch import Arch, Genotype
from lightning_nas.spaces.base import CellGraph, SearchSpace

__all__ = [
    "CHECKPOINT_KEY",
    "ArchProbabilities",
    "CellGraph",
    "NASModule",
    "SubnetResult",
    "check_checkpoint_origin",
    "export_payload",
    "weight_decay_groups",
]

ArchProbabilities = dict[str, dict[str, float]]
"""Per decision, a probability distribution over its candidates (candidate names as strings)."""

SubnetResult = tuple[Arch, dict[str, float]]
"""A sub-network and what was measured on it, e.g. ``({...}, {"val/acc": 0.91, "params": 1.2e6, "flops": 3e8})``."""

CHECKPOINT_KEY = "lightning_nas"

#: The training batches a method takes: ``"bilevel"`` ``{"train": (x, y), "val": (x, y)}`` pairs (a datamodule
#: with ``search=True``), ``"plain"`` ``(x, y)`` batches (``search=False``), or ``"either"``.
Batches = Literal["bilevel", "plain", "either"]
"""Checkpoint entry holding the method, the space and the current architecture as plain JSON values."""


def weight_decay_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two parameter groups: weights with ``weight_decay``; batch-norm parameters and all biases without.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Linear(2, 2))
        >>> [len(g["params"]) for g in weight_decay_groups(net, 1e-5)]
        [2, 4]
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for submodule in module.modules():
        for name, parameter in submodule.named_parameters(recurse=False):
            if not parameter.requires_grad:
                continue
            exempt = isinstance(submodule, nn.modules.batchnorm._BatchNorm) or name == "bias"
            (no_decay if exempt else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class NASModule(pl.LightningModule):
    """Base of the search methods: owns a :class:`~lightning_nas.spaces.base.SearchSpace` and reports its architecture.

    Subclasses implement :meth:`current_arch`. Callbacks and the CLI rely on that and on the checkpoint entry
    ``checkpoint["lightning_nas"] = {"method", "space", "result"}``; a checkpoint of another method or space is
    refused on load with both names in the message.

    The architecture-logging callbacks (:class:`~lightning_nas.callbacks.GenotypeLogger`,
    :class:`~lightning_nas.callbacks.CollapseGuard`) read a method only through these methods, whose defaults say
    "nothing to report"; a method overrides those that apply to it:

    * :meth:`current_arch` / :meth:`export`: the architecture now (every method);
    * :meth:`arch_probabilities`: a distribution over each decision's candidates (DARTS: the softmax of each edge's
      alphas; a controller: its policy);
    * :meth:`sampled_archs`: the architectures the last training step ran (sampling methods);
    * :meth:`subnet_results`: sub-networks evaluated with their metrics (elastic spaces);
    * :meth:`cell_graphs`: the cells as edge lists to draw (from :meth:`export` when it is a genotype, else from
      the space's ``cell_graphs`` of :meth:`current_arch`).

    A subclass sets :attr:`BATCHES` to the training batches it takes (:data:`Batches`); :meth:`setup` refuses a
    datamodule whose ``search`` flag gives the other kind, naming the flag to change.

    Args:
        space: the search space, an ``nn.Module``.
        channels_last: run convolutions in the channels-last memory format (much faster on CPUs and tensor cores).
        nan_policy: what a non-finite loss does: ``"stop"`` raises ``FloatingPointError`` naming the loss and the
            step (the last good checkpoint stays as it was), ``"skip"`` warns and skips that update.
    """

    BATCHES: ClassVar[Batches] = "either"

    def __init__(
        self, space: SearchSpace, *, channels_last: bool = False, nan_policy: Literal["stop", "skip"] = "stop"
    ) -> None:
        super().__init__()
        if not isinstance(space, SearchSpace):
            raise TypeError(f"space must be a lightning_nas SearchSpace, got {type(space).__name__}")
        if nan_policy not in ("stop", "skip"):
            raise ValueError(f"nan_policy must be 'stop' or 'skip', got {nan_policy!r}")
        self.space = space
        self.channels_last = channels_last
        self.nan_policy: Literal["stop", "skip"] = nan_policy
        self.skipped_steps = 0
        self._drop_gradients = False  # set by skip_unless_finite: the coming optimizer step must change nothing
        self.train_accuracy = MulticlassAccuracy(num_classes=space.num_classes, average="micro")
        self.val_accuracy = MulticlassAccuracy(num_classes=space.num_classes, average="micro")
        if channels_last:
            self.space.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    def current_arch(self) -> Arch:
        """The architecture the method would return if stopped now, as a choice mapping."""
        raise NotImplementedError

    def export(self) -> Arch | Genotype:
        """What ``lightning-nas export`` writes: :meth:`current_arch` unless a method has a richer format."""
        return self.current_arch()

    def check_finite(self, value: Tensor, name: str) -> bool:
        """Whether an update computed from ``value`` (a loss or gradient) may proceed; applies :attr:`nan_policy`.

        All ranks decide together: if any rank sees a non-finite value, every rank skips (or stops).

        Raises:
            FloatingPointError: with ``nan_policy="stop"``, naming ``name`` and the step.
        """
        finite = bool(torch.isfinite(value.detach()).all())
        if self._trainer is not None:
            finite = self.trainer.strategy.reduce_boolean_decision(finite, all=True)
        if finite:
            return True
        message = f"non-finite {name} at step {self.global_step} (epoch {self.current_epoch})"
        if self.nan_policy == "stop":
            raise FloatingPointError(
                f"{message}; stopping (pass nan_policy='skip', --model.nan_policy=skip on the command line, to skip "
                "such updates instead)"
            )
        self.skipped_steps += 1
        rank_zero_warn(f"{message}; update skipped ({self.skipped_steps} so far)")
        return False

    def skip_unless_finite(self, loss: Tensor, name: str) -> Tensor:
        """:meth:`check_finite` for a method under automatic optimization; returns ``loss`` unchanged.

        A skipped step still runs its backward (under DDP every rank must), and :meth:`on_before_optimizer_step`
        drops the gradients, so the optimizer changes no weight (and the AMP scaler, seeing non-finite gradients,
        skips the step itself).
        """
        self._drop_gradients = not self.check_finite(loss, name)
        return loss

    @override
    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self._drop_gradients:
            for group in optimizer.param_groups:
                for param in group["params"]:
                    param.grad = None
            self._drop_gradients = False

    def arch_probabilities(self) -> ArchProbabilities | None:
        """Per decision, the probability of each candidate now; ``None`` for methods without one (the default).

        Keys are decision names (``"normal/node2/edge0"``), inner keys candidate names as strings; each inner mapping
        sums to 1. Read once per epoch by the logging callbacks, on every rank.
        """
        return None

    def sampled_archs(self) -> list[Arch]:
        """The architectures the last training step trained (sampling methods); ``[]`` for the others (the default).

        Read after every training batch, so it must be cheap: return what the step stored, do not sample again.
        """
        return []

    def subnet_results(self) -> list[SubnetResult]:
        """Sub-networks evaluated so far this epoch with their metrics; ``[]`` by default.

        Elastic methods (OFA, BigNAS) return ``(arch, {"val/acc": ..., "params": ..., "flops": ...})`` pairs, e.g.
        those measured in the last validation; :class:`~lightning_nas.callbacks.GenotypeLogger` plots the metric
        against ``params`` and ``flops`` (whichever are present) at the end of each epoch.
        """
        return []

    def cell_graphs(self) -> dict[str, CellGraph]:
        """The cells to draw, by name: those of :meth:`export` when it returns a genotype, else what the space's
        :meth:`~lightning_nas.spaces.SearchSpace.cell_graphs` draws of :meth:`current_arch` (none by default)."""
        result = self.export()
        if isinstance(result, Genotype):
            return {cell: result.graph(cell) for cell in ("normal", "reduce")}
        return self.space.cell_graphs(self.current_arch())

    def forward(self, x: Tensor) -> Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.space(x)

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        _check_data_matches(datamodule, self.space.num_classes, self.space.in_channels, self)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = {
            "method": type(self).__name__,
            "space": type(self.space).__name__,
            "result": export_payload(self.export()),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_checkpoint_origin(checkpoint, method=type(self).__name__, space=type(self.space).__name__)

    def _classification_step(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        x, y = batch
        logits = self(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        metric = self.train_accuracy if stage == "train" else self.val_accuracy
        metric(logits, y)
        self.log(f"{stage}/loss", loss, prog_bar=True, sync_dist=stage != "train")
        self.log(f"{stage}/acc", metric, prog_bar=True)
        return loss


def check_checkpoint_origin(checkpoint: dict[str, Any], *, method: str, space: str) -> None:
    """Refuse a checkpoint written by another method or for another space, naming both.

    Raises:
        ValueError: no lightning_nas entry, or a different method or space.
    """
    meta = checkpoint.get(CHECKPOINT_KEY)
    if not isinstance(meta, dict):
        raise ValueError(f"checkpoint was not written by a lightning_nas method (no {CHECKPOINT_KEY!r} entry)")
    for key, value in (("method", method), ("space", space)):
        if meta.get(key) != value:
            raise ValueError(
                f"checkpoint is from {key} {meta.get(key)!r}; this run uses {key} {value!r}: "
                "load it with the same method and space"
            )


def export_payload(result: Arch | Genotype) -> dict[str, Any]:
    """The JSON form of an exported result."""
    return result.to_json() if isinstance(result, Genotype) else dict(result)


def _check_data_matches(datamodule: Any, num_classes: int, in_channels: int, method: object) -> None:
    """Refuse data whose class count or channel count differs from the model's, or whose batches (the datamodule's
    ``search`` flag) are not the kind ``method.BATCHES`` declares."""
    if datamodule is None:
        return
    search = getattr(datamodule, "search", None)
    if isinstance(search, bool):
        check_batches(method, bilevel=search)
    data_classes = getattr(datamodule, "num_classes", None)
    if data_classes is not None and data_classes != num_classes:
        raise ValueError(
            f"the data has {data_classes} classes but the model was built with num_classes={num_classes}; "
            f"set --model.space.num_classes={data_classes} (or the model's num_classes)"
        )
    data_channels = getattr(datamodule, "in_channels", None)
    if data_channels is not None and data_channels != in_channels:
        raise ValueError(
            f"the data has {data_channels} image channels but the model was built with in_channels={in_channels}; "
            f"set --model.space.in_channels={data_channels} (or the model's in_channels)"
        )


def check_batches(method: object, *, bilevel: bool) -> None:
    """Refuse bilevel pairs for a ``"plain"`` method and plain batches for a ``"bilevel"`` one (``method.BATCHES``).

    Raises:
        TypeError: one line naming the method, the batches it got and the flag to change.
    """
    needs: Batches = getattr(method, "BATCHES", "either")
    if needs == "either" or (needs == "bilevel") == bilevel:
        return
    name = type(method).__name__
    if needs == "bilevel":
        raise TypeError(
            f"{name} trains on bilevel {{'train': batch, 'val': batch}} pairs but the data gives plain batches "
            "(search=False); use a datamodule with search=True (--data.search=true)"
        )
    raise TypeError(
        f"{name} trains on plain (images, labels) batches but the data gives bilevel {{'train', 'val'}} pairs "
        "(search=True); use a datamodule with search=False (--data.search=false)"
    )
