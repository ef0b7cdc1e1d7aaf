"""The methods every shared correctness test runs on: one tiny space and tiny data per case.

Add a new method here as a :class:`MethodCase`; every test in ``tests/tester`` then covers it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl

from lightning_nas.data import SyntheticDataModule
from lightning_nas.methods import DARTS, BigNAS
from lightning_nas.spaces import DartsCellSpace, ElasticMobileNetV3, NasBench201Space


@dataclass(frozen=True)
class MethodCase:
    """A method on a tiny space with tiny data.

    Args:
        name: test id.
        build: returns a fresh module (same seed → same initial weights).
        data: returns a fresh datamodule.
        search_state: the method's search state beyond its weights (e.g. population, phase), for equality checks.
    """

    name: str
    build: Callable[[], pl.LightningModule]
    data: Callable[[], pl.LightningDataModule]
    search_state: Callable[[pl.LightningModule], Any] = lambda module: None


def tiny_darts_space() -> DartsCellSpace:
    return DartsCellSpace(in_channels=1, num_classes=4, channels=4, layers=3, steps=2)


def bilevel_data() -> SyntheticDataModule:
    # 96 images, half per level: 3 batches of 16 per epoch, with crop + flip augmentation (seeded per batch)
    return SyntheticDataModule(
        num_samples=96, num_classes=4, in_channels=1, image_size=8, search=True, batch_size=16, flip=True
    )


def tiny_nb201_space() -> NasBench201Space:
    return NasBench201Space(in_channels=1, num_classes=4, channels=4, cells_per_stage=1)


def tiny_bignas() -> BigNAS:
    space = ElasticMobileNetV3(
        in_channels=1, num_classes=4, preset="cifar", widths=(8, 8, 8, 8, 8, 8, 8, 16, 16), resolutions=(8, 12)
    )
    return BigNAS(space, num_random_subnets=1, warmup_epochs=1, calibration_images=16, calibration_batch_size=16)


def elastic_data() -> SyntheticDataModule:
    # 48 images: 3 batches of 16 per epoch, with crop + flip augmentation (seeded per batch)
    return SyntheticDataModule(num_samples=48, num_classes=4, in_channels=1, image_size=12, batch_size=16, flip=True)


CASES = [
    MethodCase("darts-first", lambda: DARTS(tiny_darts_space(), order="first"), bilevel_data),
    MethodCase("darts-second", lambda: DARTS(tiny_darts_space(), order="second"), bilevel_data),
    MethodCase("darts-nb201", lambda: DARTS(tiny_nb201_space(), order="second"), bilevel_data),
    MethodCase("bignas", tiny_bignas, elastic_data, lambda module: module.sampled_archs()),
]
