"""Train a found architecture from scratch, as the DARTS paper evaluates it (Sec. 3.2, CIFAR-10 evaluation).

The paper's settings are the defaults: 20 cells of 36 channels, SGD (lr 0.025 cosine to 0, momentum 0.9,
weight decay 3e-4), auxiliary towers of weight 0.4, drop-path 0.2 growing linearly over training, cutout of 16
(a data setting: ``--data.cutout=16``) and gradient clipping at 5 (``--trainer.gradient_clip_val=5``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

import lightning.pytorch as pl
import torch
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy
from typing_extensions import override

from lightning_nas.arch import Arch, Genotype, load_arch
from lightning_nas.methods.base import (
    CHECKPOINT_KEY,
    Batches,
    _check_data_matches,
    check_checkpoint_origin,
    export_payload,
)
from lightning_nas.ops import list_ops
from lightning_nas.spaces.darts_network import DartsNetwork
from lightning_nas.spaces.genotypes import PUBLISHED_GENOTYPES

__all__ = ["Retrain", "resolve_genotype"]


def resolve_genotype(arch: str | Genotype) -> Genotype:
    """A genotype from a published name (``"DARTS_V2"``), a genotype string, or a JSON file path (a genotype, or a
    DARTS-cell architecture mapping as SPOS, CARS and ``lightning-nas search`` write).

    Raises:
        ValueError: the text is none of these, or the genotype uses unregistered ops.
        FileNotFoundError: a path that does not exist.
    """
    if isinstance(arch, Genotype):
        genotype = arch
    elif arch in PUBLISHED_GENOTYPES:
        genotype = PUBLISHED_GENOTYPES[arch]
    elif arch.lstrip().startswith("Genotype("):
        genotype = Genotype.parse(arch)
    elif arch.lstrip().startswith("{"):
        genotype = Genotype.from_json(arch)
    else:
        if not Path(arch).exists():
            raise FileNotFoundError(
                f"arch {arch!r} is not a file, a genotype string or JSON, nor a published genotype "
                f"({', '.join(sorted(PUBLISHED_GENOTYPES))})"
            )
        loaded = load_arch(arch)
        genotype = loaded if isinstance(loaded, Genotype) else _cell_genotype(loaded, arch)
    genotype.check_ops(list_ops())
    return genotype


_CELL_CHOICE = re.compile(r"(normal|reduce)/node(\d+)/(op|in)([01])")


def _cell_genotype(arch: Arch, source: str) -> Genotype:
    """The genotype of a DARTS-cell architecture mapping (``normal/node2/op0``: ..., what SPOS, CARS and
    ``lightning-nas search`` write for the DARTS cell space)."""
    names = {name: _CELL_CHOICE.fullmatch(name) for name in arch}
    unknown = sorted(name for name, match in names.items() if match is None)
    if unknown or not names:
        raise ValueError(
            f"{source!r} holds an architecture mapping that is not a DARTS cell's (choices such as "
            f"'normal/node2/op0', 'normal/node2/in0'); unknown choices: {unknown[:5]}"
        )
    steps = max(int(match.group(2)) for match in names.values() if match is not None) - 1
    return Genotype.from_arch(arch, steps)


class TrainFromScratch(pl.LightningModule):
    """What :class:`Retrain` and :class:`~lightning_nas.methods.RetrainMacro` share: SGD with a cosine schedule over
    the whole run, accuracy metrics, evaluation, and a checkpoint entry naming the trainer and its network.

    Subclasses build ``self.network``, implement ``forward`` and :meth:`export`, and may override
    :meth:`training_loss`. They train on plain ``(images, labels)`` batches (``BATCHES = "plain"``): a datamodule
    with ``search=True`` is refused at setup.
    """

    BATCHES: ClassVar[Batches] = "plain"

    CHECKPOINT_METHOD: str
    CHECKPOINT_NETWORK: str

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        lr: float,
        lr_min: float,
        momentum: float,
        weight_decay: float,
        nesterov: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels, self.num_classes = in_channels, num_classes
        self.lr, self.lr_min, self.momentum, self.weight_decay = lr, lr_min, momentum, weight_decay
        self.nesterov = nesterov
        self.train_accuracy = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.val_accuracy = MulticlassAccuracy(num_classes=num_classes, average="micro")

    def export(self) -> Any:
        """The architecture being trained."""
        raise NotImplementedError

    def training_loss(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """The training loss and the logits it came from."""
        logits = self(x)
        return torch.nn.functional.cross_entropy(logits, y), logits

    @override
    def setup(self, stage: str) -> None:
        _check_data_matches(getattr(self.trainer, "datamodule", None), self.num_classes, self.in_channels, self)

    @override
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        loss, logits = self.training_loss(x, y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss {loss.item()} at step {self.global_step}")
        self.train_accuracy(logits, y)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", self.train_accuracy, prog_bar=True)
        return loss

    @override
    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._evaluate(batch, "val")

    @override
    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._evaluate(batch, "test")

    def _evaluate(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        x, y = batch
        logits = self(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        self.val_accuracy(logits, y)
        self.log(f"{stage}/loss", loss, prog_bar=True, sync_dist=True)
        self.log(f"{stage}/acc", self.val_accuracy, prog_bar=True)
        return loss

    @override
    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.SGD(
            self.parameters(),
            lr=self.lr,
            momentum=self.momentum,
            nesterov=self.nesterov,
            weight_decay=self.weight_decay,
        )
        total_steps = max(1, int(self.trainer.estimated_stepping_batches))
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps, eta_min=self.lr_min)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    @override
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = {
            "method": self.CHECKPOINT_METHOD,
            "space": self.CHECKPOINT_NETWORK,
            "result": export_payload(self.export()),
        }

    @override
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_checkpoint_origin(checkpoint, method=self.CHECKPOINT_METHOD, space=self.CHECKPOINT_NETWORK)
        trained, built = checkpoint[CHECKPOINT_KEY].get("result"), export_payload(self.export())
        if isinstance(trained, dict) and trained != built:
            # same network class, other architecture: the weights would load into the wrong cells without a word
            key = next(k for k in sorted(set(trained) | set(built)) if trained.get(k) != built.get(k))
            raise ValueError(
                f"the checkpoint trained another architecture than this run's arch builds ({key}: "
                f"{trained.get(key)} in the checkpoint, {built.get(key)} here); a relative arch path read from "
                "another directory, or a changed file? Pass the architecture the checkpoint was trained with"
            )


class Retrain(TrainFromScratch):
    """Train the network of a genotype from scratch.

    Args:
        arch: a genotype JSON file (what ``lightning-nas export`` writes; a DARTS-cell architecture mapping, as
            SPOS, CARS and ``lightning-nas search`` write, is read as its genotype), a genotype string, or a
            published name (``DARTS_V1``, ``DARTS_V2``). The checkpoint keeps the genotype itself, and refuses to
            load into a ``Retrain`` whose ``arch`` builds another.
        in_channels: image channels.
        num_classes: classifier outputs.
        channels: channels of the first cell (36).
        layers: number of cells (20).
        auxiliary: train with the auxiliary head.
        auxiliary_weight: weight of the auxiliary loss (0.4).
        drop_path_prob: final drop-path probability, reached linearly over the epochs (0.2).
        lr: initial SGD learning rate (0.025), annealed by cosine to ``lr_min``.
        lr_min: final learning rate (0).
        momentum: SGD momentum (0.9).
        weight_decay: SGD weight decay (3e-4).
        channels_last: run in channels-last memory format.
    """

    CHECKPOINT_METHOD = "Retrain"
    CHECKPOINT_NETWORK = "DartsNetwork"

    def __init__(
        self,
        arch: str,
        *,
        in_channels: int = 3,
        num_classes: int = 10,
        channels: int = 36,
        layers: int = 20,
        auxiliary: bool = True,
        auxiliary_weight: float = 0.4,
        drop_path_prob: float = 0.2,
        lr: float = 0.025,
        lr_min: float = 0.0,
        momentum: float = 0.9,
        weight_decay: float = 3e-4,
        channels_last: bool = False,
    ) -> None:
        super().__init__(
            in_channels=in_channels,
            num_classes=num_classes,
            lr=lr,
            lr_min=lr_min,
            momentum=momentum,
            weight_decay=weight_decay,
        )
        self.save_hyperparameters()
        self.auxiliary_weight, self.drop_path_prob = auxiliary_weight, drop_path_prob
        self.channels_last = channels_last
        self.genotype = resolve_genotype(arch)
        # the checkpoint's hyperparameters keep the genotype itself, not a path that means another file elsewhere
        self.hparams["arch"] = str(self.genotype)
        self.network = DartsNetwork(
            self.genotype,
            in_channels=in_channels,
            num_classes=num_classes,
            channels=channels,
            layers=layers,
            auxiliary=auxiliary,
        )
        if channels_last:
            self.network.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    @override
    def forward(self, x: Tensor) -> Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        logits, _ = self.network(x)
        return logits

    @override
    def on_train_epoch_start(self) -> None:
        # Drop-path grows linearly from 0 to drop_path_prob over the run (reference train.py: p * epoch / epochs),
        # measured in steps so that runs bounded by max_steps follow the same ramp.
        progress = self.global_step / max(1, int(self.trainer.estimated_stepping_batches))
        self.network.drop_path_prob = self.drop_path_prob * min(1.0, progress)

    @override
    def training_loss(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Cross-entropy plus the weighted auxiliary head's, as the paper trains."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        logits, aux_logits = self.network(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        if aux_logits is not None:
            loss = loss + self.auxiliary_weight * torch.nn.functional.cross_entropy(aux_logits, y)
        return loss, logits

    @override
    def export(self) -> Genotype:
        """The genotype being trained."""
        return self.genotype
