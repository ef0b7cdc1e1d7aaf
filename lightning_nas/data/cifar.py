"""Datamodules for CIFAR-10 and CIFAR-100 (3x32x32 colour images, 50000 / 10000 images)."""

from __future__ import annotations

from typing import ClassVar

from lightning_nas.data.datamodule import FileImageDataModule
from lightning_nas.data.datasets import DatasetSpec

__all__ = ["CIFAR100DataModule", "CIFAR10DataModule"]


class CIFAR10DataModule(FileImageDataModule):
    """CIFAR-10 from ``<root>/cifar-10-batches-py``; arguments as in :class:`FileImageDataModule`.

    Defaults follow the DARTS search and retraining pipeline: random crop with padding 4 and horizontal flips; add
    ``cutout=16`` for retraining. Mean/std are the training-set statistics DARTS uses
    (https://github.com/quark0/darts/blob/8876e793763398e3ee62ac1823fa0a3c14e8c2c5/cnn/utils.py#L63-L64).

    Example:
        >>> data = CIFAR10DataModule(root="/nonexistent", cutout=16)
        >>> data.num_classes, data.in_channels, data.image_size
        (10, 3, 32)
    """

    DATASET_NAME: ClassVar[str] = "cifar10"
    SPEC: ClassVar[DatasetSpec | None] = DatasetSpec(
        num_classes=10,
        in_channels=3,
        image_size=32,
        train_size=50_000,
        mean=(0.49139968, 0.48215827, 0.44653124),
        std=(0.24703233, 0.24348505, 0.26158768),
        crop_padding=4,
        flip=True,
    )


class CIFAR100DataModule(FileImageDataModule):
    """CIFAR-100 (100 fine labels) from ``<root>/cifar-100-python``; arguments as in :class:`FileImageDataModule`.

    Defaults: random crop with padding 4 and horizontal flips. Mean/std are the usual CIFAR-100 training-set
    statistics.

    Example:
        >>> CIFAR100DataModule(root="/nonexistent").num_classes
        100
    """

    DATASET_NAME: ClassVar[str] = "cifar100"
    SPEC: ClassVar[DatasetSpec | None] = DatasetSpec(
        num_classes=100,
        in_channels=3,
        image_size=32,
        train_size=50_000,
        mean=(0.5071, 0.4865, 0.4409),
        std=(0.2673, 0.2564, 0.2762),
        crop_padding=4,
        flip=True,
    )
