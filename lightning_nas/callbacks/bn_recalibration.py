"""Re-estimate batch-norm statistics before validation: each evaluated subnet's (OFA, BigNAS), or a plain network's
("precise BN", so that an epoch's validation measures that epoch's weights)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import lightning.pytorch as pl
import torch
from torch import Tensor
from typing_extensions import override

from lightning_nas.arch import Arch
from lightning_nas.calibration import (
    batchnorm_state,
    collect_calibration_images,
    load_batchnorm_state,
    normalised_batches,
)
from lightning_nas.calibration import recalibrate_batchnorm as _recalibrate
from lightning_nas.spaces.elastic import ElasticSpace

__all__ = ["EvaluatesSubnets", "RecalibrateBatchNorm"]


@runtime_checkable
class EvaluatesSubnets(Protocol):
    """A module that validates several subnets of its elastic ``space``, each with its own BN statistics."""

    space: ElasticSpace

    def evaluation_subnets(self) -> dict[str, Arch]:
        """The subnets validated now, by name (e.g. ``{"max": ..., "min": ...}``)."""
        ...

    def set_subnet_statistics(self, statistics: dict[str, dict[str, Tensor]]) -> None:
        """Receive each subnet's BN statistics (as :func:`~lightning_nas.calibration.batchnorm_state` gives them)."""
        ...


class RecalibrateBatchNorm(pl.Callback):
    """Before each validation, recalibrate BN statistics on cached training images.

    A module that :class:`EvaluatesSubnets` gets each evaluated subnet's statistics (through
    ``set_subnet_statistics``; the supernet keeps its own). Any other module gets its own BN layers' running
    statistics replaced by the population statistics of the calibration images ("precise BN", Wu & Johnson 2021):
    running averages lag the weights while they change fast (short runs at a high learning rate), which makes
    epoch-to-epoch validation curves swing by many points; learning-curve prediction needs the weights' own accuracy.

    The first ``num_images`` training images (from ``trainer.datamodule.train_dataloader()``, normalised by the
    datamodule's ``on_after_batch_transfer`` and never augmented) are cached once. Under DDP each rank uses every
    ``world_size``-th of them and the moments are summed across ranks, so every rank gets the statistics of all
    ``num_images`` images. The supernet's own statistics are restored afterwards; the module receives each
    subnet's statistics through ``set_subnet_statistics``.

    Args:
        num_images: calibration images (2000 in the reference code's ``set_running_statistics``).
        batch_size: images per calibration forward pass (200 in the reference code).
    """

    def __init__(self, num_images: int = 2000, batch_size: int = 200) -> None:
        if num_images < 1 or batch_size < 1:
            raise ValueError(f"num_images and batch_size must be positive, got {num_images} and {batch_size}")
        self.num_images, self.batch_size = num_images, batch_size
        self._images: tuple[Tensor, Tensor] | None = None

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # refused here, before any training, rather than at the first validation (a datamodule without a sized
        # train_dataset is checked there)
        dataset = getattr(getattr(trainer, "datamodule", None), "train_dataset", None)
        size = len(dataset) if dataset is not None and hasattr(dataset, "__len__") else None
        if size is not None and size < self.num_images:
            raise ValueError(
                f"BN recalibration asks for {self.num_images} training images, but the training set holds {size}: "
                f"lower the method's calibration_images (--model.calibration_images={size} or less on the command "
                "line; 0 turns recalibration off) or train on more images"
            )

    @override
    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        batches = self.batches(trainer, pl_module.device)
        if not isinstance(pl_module, EvaluatesSubnets):
            _recalibrate(pl_module, batches, reduce=lambda t: trainer.strategy.reduce(t, reduce_op="sum"))
            return
        space = pl_module.space
        saved, active = batchnorm_state(space), space.active_arch()
        statistics = {}
        for name, arch in pl_module.evaluation_subnets().items():
            space.activate(arch)
            _recalibrate(space, batches, reduce=lambda t: trainer.strategy.reduce(t, reduce_op="sum"))
            statistics[name] = batchnorm_state(space)
        load_batchnorm_state(space, saved)
        space.activate(active)
        pl_module.set_subnet_statistics(statistics)

    def batches(self, trainer: pl.Trainer, device: torch.device) -> list[Tensor]:
        """This rank's share of the cached calibration images, normalised, in batches on ``device``."""
        datamodule = trainer.datamodule  # type: ignore[attr-defined]
        if datamodule is None:
            raise ValueError("RecalibrateBatchNorm reads calibration images from trainer.datamodule; fit with one")
        if self._images is None:
            self._images = collect_calibration_images(datamodule.train_dataloader(), self.num_images)
        images, labels = self._images
        rank, world = trainer.global_rank, trainer.world_size
        return normalised_batches(datamodule, images[rank::world], labels[rank::world], self.batch_size, device)
