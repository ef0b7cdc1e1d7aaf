"""Small datamodules that need no files: scikit-learn's 8x8 digits and a seeded synthetic task."""

from __future__ import annotations

from typing import ClassVar

import torch
from typing_extensions import override

from lightning_nas.data.datamodule import ImageDataModule
from lightning_nas.data.datasets import DatasetSpec, InMemoryImageDataset, load_digits, make_synthetic

__all__ = ["DigitsDataModule", "SyntheticDataModule"]

_DIGITS_TEST_SIZE = 360
_DIGITS_SPLIT_SEED = 0


class DigitsDataModule(ImageDataModule):
    """scikit-learn's 1797 handwritten digits (1x8x8, 10 classes); arguments as in :class:`ImageDataModule`.

    The data has no official test split, so a fixed permutation (seed 0, independent of ``seed``) puts 360 images
    in the test split and 1437 in the training split. Defaults: crop padding 1, no flip. Needs scikit-learn
    (``pip install 'lightning-nas[demo]'``).

    Example:
        >>> data = DigitsDataModule(search=True, batch_size=32)
        >>> data.num_classes, data.in_channels, data.image_size
        (10, 1, 8)
    """

    SPEC: ClassVar[DatasetSpec | None] = DatasetSpec(
        num_classes=10,
        in_channels=1,
        image_size=8,
        train_size=1797 - _DIGITS_TEST_SIZE,
        mean=(0.3053,),
        std=(0.3759,),
        crop_padding=1,
        flip=False,
    )

    @override
    def _load_split(self, train: bool) -> InMemoryImageDataset:
        digits = load_digits()
        order = torch.randperm(len(digits), generator=torch.Generator().manual_seed(_DIGITS_SPLIT_SEED))
        indices = order[_DIGITS_TEST_SIZE:] if train else order[:_DIGITS_TEST_SIZE]
        return digits.subset(indices.sort().values)


class SyntheticDataModule(ImageDataModule):
    """A learnable synthetic task (see :func:`make_synthetic`) for tests and smoke runs; nothing is read or downloaded.

    The training and test splits are disjoint draws around the same class prototypes, fixed by ``data_seed``.

    Args:
        num_samples: Training images.
        num_test_samples: Test images.
        num_classes: Number of classes.
        in_channels: Channels per image.
        image_size: Height and width.
        noise: Per-pixel Gaussian noise relative to the ``[0, 1]`` range; larger is harder.
        data_seed: Seed of the data itself (prototypes, labels, noise).
        search: Split the training set for bilevel search: batches are ``{"train": (x, y), "val": (x, y)}``.
        train_portion: Fraction of the (sub)set used for the weights in search mode; the rest tunes the architecture.
        batch_size: Training batch size (per half in search mode).
        eval_batch_size: Batch size of the validation and test loaders; ``None`` means ``batch_size``.
        subset: Use a seeded random subset of this many training images; ``None`` uses all.
        num_workers: DataLoader worker processes (``0`` loads in the main process).
        seed: Seed of the split, the subset, the shuffling and the augmentation.
        augment: Augment training batches; ``False`` only normalises.
        crop_padding: Zero padding of the random crop; ``None`` means 1, ``0`` disables it.
        flip: Random horizontal flips; ``None`` means no flips.
        cutout: Side of the cutout square; ``0`` disables it.

    Raises:
        ValueError: If an argument is out of range; the message names the value.

    Example:
        >>> data = SyntheticDataModule(num_samples=64, num_classes=4, in_channels=3, image_size=8, batch_size=16)
        >>> data.setup("fit")
        >>> images, labels = next(iter(data.train_dataloader()))
        >>> images.dtype, tuple(images.shape), data.num_classes
        (torch.uint8, (16, 3, 8, 8), 4)
    """

    def __init__(
        self,
        *,
        num_samples: int = 512,
        num_test_samples: int = 128,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 16,
        noise: float = 0.2,
        data_seed: int = 0,
        search: bool = False,
        train_portion: float = 0.5,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        subset: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        augment: bool = True,
        crop_padding: int | None = None,
        flip: bool | None = None,
        cutout: int = 0,
    ) -> None:
        for name, value in {"num_samples": num_samples, "num_test_samples": num_test_samples}.items():
            if value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        # Read by _make_spec inside super().__init__, so set first.
        self.num_samples = num_samples
        self.num_test_samples = num_test_samples
        self._synthetic_spec = DatasetSpec(
            num_classes=num_classes,
            in_channels=in_channels,
            image_size=image_size,
            train_size=num_samples,
            mean=(0.5,) * in_channels,
            std=(0.3,) * in_channels,
            crop_padding=1,
            flip=False,
        )
        self.noise = noise
        self.data_seed = data_seed
        super().__init__(
            search=search,
            train_portion=train_portion,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            subset=subset,
            num_workers=num_workers,
            seed=seed,
            augment=augment,
            crop_padding=crop_padding,
            flip=flip,
            cutout=cutout,
        )

    @override
    def _make_spec(self) -> DatasetSpec:
        return self._synthetic_spec

    @override
    def _load_split(self, train: bool) -> InMemoryImageDataset:
        spec = self.spec
        data = make_synthetic(
            self.num_samples + self.num_test_samples,
            num_classes=spec.num_classes,
            in_channels=spec.in_channels,
            image_size=spec.image_size,
            noise=self.noise,
            seed=self.data_seed,
        )
        split = torch.arange(self.num_samples) if train else torch.arange(self.num_samples, len(data))
        return data.subset(split)
