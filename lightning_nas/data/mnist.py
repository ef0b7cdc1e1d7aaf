"""Datamodules for MNIST and Fashion-MNIST (1x28x28 grey images, 10 classes, 60000 / 10000 images)."""

from __future__ import annotations

from typing import ClassVar

from lightning_nas.data.datamodule import FileImageDataModule
from lightning_nas.data.datasets import DatasetSpec

__all__ = ["FashionMNISTDataModule", "MNISTDataModule"]


class MNISTDataModule(FileImageDataModule):
    """MNIST handwritten digits from ``<root>/MNIST/raw``; arguments as in :class:`FileImageDataModule`.

    Defaults: crop padding 2, no flip (digits are not mirror-symmetric). Mean/std are those of the training images.

    Example:
        >>> data = MNISTDataModule(root="/nonexistent", search=True, subset=1000)
        >>> data.num_classes, data.in_channels, data.image_size
        (10, 1, 28)
    """

    DATASET_NAME: ClassVar[str] = "mnist"
    SPEC: ClassVar[DatasetSpec | None] = DatasetSpec(
        num_classes=10,
        in_channels=1,
        image_size=28,
        train_size=60_000,
        mean=(0.1307,),
        std=(0.3081,),
        crop_padding=2,
        flip=False,
    )


class FashionMNISTDataModule(FileImageDataModule):
    """Fashion-MNIST clothing images from ``<root>/FashionMNIST/raw``; arguments as in :class:`FileImageDataModule`.

    Defaults: crop padding 2 and random horizontal flips (clothes look the same mirrored).

    Example:
        >>> data = FashionMNISTDataModule(root="/nonexistent", batch_size=32)
        >>> data.num_classes, data.in_channels, data.image_size
        (10, 1, 28)
    """

    DATASET_NAME: ClassVar[str] = "fashion_mnist"
    SPEC: ClassVar[DatasetSpec | None] = DatasetSpec(
        num_classes=10,
        in_channels=1,
        image_size=28,
        train_size=60_000,
        mean=(0.2860,),
        std=(0.3530,),
        crop_padding=2,
        flip=True,
    )
