"""The pieces tests share: one quiet trainer, the tiny supernets, tiny data, a tiny NAS-Bench-201 table, and a
folder for work done once per test run.

Tests build on these instead of writing their own copies; a test that needs another size says so through the
keyword overrides, so the difference is visible where it matters.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
from filelock import FileLock
from lightning.pytorch.callbacks import Checkpoint

from lightning_nas.data import SyntheticDataModule
from lightning_nas.search import TabularBenchmark
from lightning_nas.spaces import DartsCellSpace, ElasticMobileNetV3, NasBench201Format, NasBench201Space

TINY_WIDTHS = (8, 8, 8, 16, 16, 24, 24, 48, 64)  # the elastic space's nine stage widths, narrowed


def quiet_trainer(root: Path | None = None, **overrides: Any) -> pl.Trainer:
    """A one-process CPU trainer without logger, progress bar or model summary.

    Args:
        root: The run's folder (``default_root_dir``), where callbacks and methods write without a logger.
        **overrides: Any other ``pl.Trainer`` argument; these win over the defaults. Checkpoints are written only
            when a test asks for them: ``enable_checkpointing=True``, or a checkpoint callback in ``callbacks``.
    """
    callbacks = overrides.get("callbacks") or []
    defaults: dict[str, Any] = {
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": any(isinstance(callback, Checkpoint) for callback in callbacks),
    }
    if root is not None:
        defaults["default_root_dir"] = root
    return pl.Trainer(**{**defaults, **overrides})


def tiny_darts_space(**overrides: Any) -> DartsCellSpace:
    """The DARTS cell at its smallest useful size: 1 input channel, 4 classes, 4 channels, 3 cells of 2 steps."""
    return DartsCellSpace(**{"in_channels": 1, "num_classes": 4, "channels": 4, "layers": 3, "steps": 2, **overrides})


def tiny_nb201_space(**overrides: Any) -> NasBench201Space:
    """The NAS-Bench-201 cell with 1 input channel, 4 classes, 4 channels and one cell per stage."""
    return NasBench201Space(**{"in_channels": 1, "num_classes": 4, "channels": 4, "cells_per_stage": 1, **overrides})


def tiny_elastic_space(**overrides: Any) -> ElasticMobileNetV3:
    """MobileNetV3's elastic space on the CIFAR preset with 1 input channel, 4 classes, the narrow widths above and
    resolutions 8, 12 and 16."""
    defaults: dict[str, Any] = {
        "in_channels": 1,
        "num_classes": 4,
        "preset": "cifar",
        "widths": TINY_WIDTHS,
        "resolutions": (8, 12, 16),
    }
    return ElasticMobileNetV3(**{**defaults, **overrides})


def bilevel_data() -> SyntheticDataModule:
    """96 images of 8x8, half per level: 3 batches of 16 per epoch, with crop and flip (seeded per batch)."""
    return SyntheticDataModule(
        num_samples=96, num_classes=4, in_channels=1, image_size=8, search=True, batch_size=16, flip=True
    )


def plain_data() -> SyntheticDataModule:
    """48 images of 16x16 (the elastic space samples resolutions up to 16): 3 batches of 16 per epoch."""
    return SyntheticDataModule(num_samples=48, num_classes=4, in_channels=1, image_size=16, batch_size=16, flip=True)


def tiny_nb201_table() -> TabularBenchmark:
    """Every NAS-Bench-201 cell over three ops (3**6 = 729 rows), each costing 1 second, scored in closed form.

    ``val`` is 3 per 3x3 convolution plus 1 per skip connection: the best cell, all six edges convolutions, scores 18.
    """
    fmt = NasBench201Format(ops=("none", "skip_connect", "nor_conv_3x3"))
    names = [c.name for c in fmt.choices()]
    rows = [
        {
            "arch": fmt.format(dict(zip(names, ops))),
            "val": 3 * ops.count("nor_conv_3x3") + ops.count("skip_connect"),
            "time": 1.0,
        }
        for ops in itertools.product(fmt.ops, repeat=6)
    ]
    return TabularBenchmark(rows, fmt)


@contextmanager
def once_per_run(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[tuple[Path, bool]]:
    """A folder every pytest-xdist worker of this run shares, held under a lock: yields ``(folder, first)``.

    A session or module fixture runs once in each worker that needs it; an expensive one (a DDP launch, decoding
    60,000 images) does its work when ``first`` is true and the other workers wait, then read what it left there.
    ``first`` turns false once the block completes, so a failed first attempt is tried again by the next worker.
    """
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder = shared / f"once-{name}"
    done = folder / ".done"
    with FileLock(str(folder) + ".lock"):
        folder.mkdir(exist_ok=True)
        yield folder, not done.exists()
        done.touch()
