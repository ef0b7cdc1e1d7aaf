"""Train an ENAS macro architecture from scratch: the network :class:`~lightning_nas.spaces.EnasMacroNetwork` builds.

The DARTS-cell counterpart is :class:`~lightning_nas.methods.Retrain`; this module takes what ``lightning-nas export``
writes for an ENAS macro search (a ``layer{i}/op``, ``layer{i}/skip{j}`` mapping). Defaults follow the reference
code's final macro training (``scripts/cifar10_macro_final.sh``): SGD with Nesterov momentum 0.9, learning rate 0.05
annealed by cosine to 0.0005, weight decay 2.5e-4.

    lightning-nas fit --model=lightning_nas.methods.RetrainMacro --model.arch=architecture.json \\
        --data=lightning_nas.data.CIFAR10DataModule --trainer.gradient_clip_val=5
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy
from typing_extensions import override

from lightning_nas.arch import Arch, load_arch
from lightning_nas.methods.base import CHECKPOINT_KEY, _check_data_matches, check_checkpoint_origin
from lightning_nas.spaces.enas_macro import EnasMacroNetwork

__all__ = ["RetrainMacro", "resolve_macro_arch"]


def resolve_macro_arch(arch: str | dict[str, Any]) -> Arch:
    """A macro architecture from a mapping, its JSON text, or a JSON file path.

    Raises:
        ValueError: not a macro architecture (for instance a DARTS genotype, which :class:`Retrain` trains).
        FileNotFoundError: a path that does not exist.
    """
    if isinstance(arch, dict):
        loaded: Any = arch
    elif arch.lstrip().startswith("{"):
        loaded = json.loads(arch)
    else:
        loaded = load_arch(Path(arch))
    if not isinstance(loaded, dict) or "layer0/op" not in loaded:
        raise ValueError(f"{arch!r} is not an ENAS macro architecture (no 'layer0/op'); DARTS genotypes go to Retrain")
    return loaded


class RetrainMacro(pl.LightningModule):
    """Train the network of an ENAS macro architecture from scratch.

    Args:
        arch: a macro architecture JSON file (what ``lightning-nas export`` writes), or its JSON text.
        in_channels: image channels.
        num_classes: classifier outputs.
        channels: channels of the first layers, doubled at each reduction (96 in the reference final training).
        lr: initial SGD learning rate (0.05), annealed by cosine to ``lr_min`` (0.0005).
        lr_min: final learning rate.
        momentum: Nesterov momentum (0.9).
        weight_decay: weight decay (2.5e-4).

    Example:
        >>> model = RetrainMacro('{"layer0/op": "conv_3x3", "layer1/op": "max_pool_3x3", "layer1/skip0": 1}',
        ...                      in_channels=1, channels=4)
        >>> model(torch.randn(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        arch: str,
        *,
        in_channels: int = 3,
        num_classes: int = 10,
        channels: int = 96,
        lr: float = 0.05,
        lr_min: float = 0.0005,
        momentum: float = 0.9,
        weight_decay: float = 2.5e-4,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.in_channels, self.num_classes = in_channels, num_classes
        self.lr, self.lr_min, self.momentum, self.weight_decay = lr, lr_min, momentum, weight_decay
        self.arch = resolve_macro_arch(arch)
        self.network = EnasMacroNetwork(self.arch, in_channels=in_channels, num_classes=num_classes, channels=channels)
        self.train_accuracy = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.val_accuracy = MulticlassAccuracy(num_classes=num_classes, average="micro")

    @override
    def forward(self, x: Tensor) -> Tensor:
        return self.network(x)

    @override
    def setup(self, stage: str) -> None:
        _check_data_matches(getattr(self.trainer, "datamodule", None), self.num_classes, self.in_channels)

    @override
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        logits = self(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
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
            self.parameters(), lr=self.lr, momentum=self.momentum, nesterov=True, weight_decay=self.weight_decay
        )
        total_steps = max(1, int(self.trainer.estimated_stepping_batches))
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps, eta_min=self.lr_min)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def export(self) -> Arch:
        """The architecture being trained."""
        return dict(self.arch)

    @override
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = {"method": "RetrainMacro", "space": "EnasMacroNetwork", "result": self.export()}

    @override
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_checkpoint_origin(checkpoint, method="RetrainMacro", space="EnasMacroNetwork")
