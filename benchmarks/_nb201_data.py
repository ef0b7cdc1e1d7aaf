"""The CIFAR-10 JPEG images of the NAS-Bench-201 benchmarks, at 32x32 or average-pooled to a smaller side.

``nb201_oneshot.py`` and ``nb201_ranking.py`` search and score the NB201 cell on the real CIFAR-10 JPEG images
(``CIFAR10-jpeg/CIFAR-10-images.tar.gz``). Their CPU protocols feed the supernet 16x16 images: each augmented
32x32 batch (crop with 4 pixels of padding, flip, normalisation) is average-pooled 2x2 on the device, so a weight
step costs about a third of a 32x32 one and a CPU run fits three times the steps. The benchmark itself trains
its cells at 16x16 on ImageNet16-120, so the cell and its ops are unchanged; the table that judges the found
cells stays CIFAR-10's (32x32, 12 epochs).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch.nn.functional as F
from torch import Tensor
from typing_extensions import override

from lightning_nas.data import CIFAR10JPEGDataModule


def data_root() -> Path:
    """``$LIGHTNING_NAS_DATA``, else ``../shared/data`` beside the checkout."""
    return Path(os.environ.get("LIGHTNING_NAS_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


def table_path() -> Path:
    """The shipped NAS-Bench-201 table (all 15,625 cells, 12-epoch training)."""
    return data_root() / "nasbench201" / "nb201_12epoch.csv"


class PooledCIFAR10JPEG(CIFAR10JPEGDataModule):
    """:class:`~lightning_nas.data.CIFAR10JPEGDataModule` whose batches are average-pooled to ``image_size``.

    Args:
        image_size: the side of the images the model sees (32: unchanged; 16: 2x2 average pooling).
        kwargs: :class:`~lightning_nas.data.CIFAR10JPEGDataModule`'s arguments.
    """

    def __init__(self, *, image_size: int = 32, **kwargs: Any) -> None:
        if image_size < 1 or 32 % image_size:
            raise ValueError(f"image_size must divide 32 (32, 16, 8, ...), got {image_size}")
        super().__init__(**kwargs)
        self.pooled_size = image_size

    @property
    @override
    def image_size(self) -> int:
        """The side of the images the model sees."""
        return self.pooled_size

    @override
    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        batch = super().on_after_batch_transfer(batch, dataloader_idx)
        return batch if self.pooled_size == 32 else _pool(batch, 32 // self.pooled_size)


def _pool(batch: Any, factor: int) -> Any:
    if isinstance(batch, dict):
        return {key: _pool(value, factor) for key, value in batch.items()}
    images, labels = batch
    pooled: Tensor = F.avg_pool2d(images, factor)
    return pooled, labels
