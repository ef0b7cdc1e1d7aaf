"""Record real learning curves: NAS-Bench-201 cells trained from scratch on Fashion-MNIST with Lightning.

Used by ``benchmarks/learning_curves.py``. Each run is one cell drawn uniformly from the NB201 space (cells whose
output is cut off from the input are redrawn: they are constant networks, found without training), trained by
:class:`CellRetrain`, the package's :class:`~lightning_nas.methods.retrain.TrainFromScratch` with
:class:`~lightning_nas.methods.Retrain`'s defaults (SGD, lr 0.025, momentum 0.9, weight decay 3e-4, cosine schedule
over the whole run) around a ``NasBench201Network``; the validation accuracy after each epoch is the curve.

The protocol (settings ``protocol: 2``; why, in ``benchmarks/learning_curves.py``):

- before every validation the BatchNorm statistics are re-estimated on ``calibration_size`` fixed training images
  (:func:`~lightning_nas.calibration.recalibrate_batchnorm`, "precise BN"), so an epoch's accuracy is that of its
  weights, not of running averages that lag them;
- ``val_size`` images of the Fashion-MNIST test set measure each epoch;
- run ``k`` draws its initial weights and its training order from ``seed * 1000 + k`` alone, so a recording that
  was interrupted and continued holds the same curves as one made in a single go.

The JSON is rewritten (atomically) after every run, so an interrupted recording continues.
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from lightning_nas.arch import atomic_write_text
from lightning_nas.calibration import recalibrate_batchnorm
from lightning_nas.callbacks.learning_curve import TRAIN_LOSS, LearningCurveStopping
from lightning_nas.data import load_fashion_mnist
from lightning_nas.methods.retrain import TrainFromScratch
from lightning_nas.spaces import NasBench201Network
from lightning_nas.spaces.nasbench201 import NB201_OPS

MEAN, STD = 0.2860, 0.3530
SCHEDULES = ("cosine", "constant")
"""The learning rate over a run: Retrain's cosine from 0.025 to 0 over the run, or 0.025 throughout."""
PROTOCOL = 2
"""1: running-average BN statistics, 2,000 validation images, one shuffling generator shared by all runs."""


class CellRetrain(TrainFromScratch):
    """Train one NAS-Bench-201 cell's network from scratch (``TrainFromScratch`` with a ``NasBench201Network``)."""

    CHECKPOINT_METHOD = "CellRetrain"
    CHECKPOINT_NETWORK = "NasBench201Network"

    def __init__(
        self, cell: str, *, channels: int = 8, cells_per_stage: int = 1, lr: float = 0.025, schedule: str = "cosine"
    ) -> None:
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; valid schedules: {', '.join(SCHEDULES)}")
        lr_min = 0.0 if schedule == "cosine" else lr  # a cosine from lr to lr is a constant learning rate
        super().__init__(in_channels=1, num_classes=10, lr=lr, lr_min=lr_min, momentum=0.9, weight_decay=3e-4)
        self.cell = cell
        self.network = NasBench201Network(cell, in_channels=1, channels=channels, cells_per_stage=cells_per_stage)

    def forward(self, x: Tensor) -> Tensor:
        return self.network(x)

    def export(self) -> str:
        return self.cell


def connected(cell: str) -> bool:
    """Whether node 3 of an NB201 cell string is reached from node 0 through edges that are not ``none``."""
    nodes = [[tok.split("~") for tok in part.strip("|").split("|")] for part in cell.split("+")]
    reached = {0}
    for target, edges in enumerate(nodes, start=1):
        if any(op != "none" and int(src) in reached for op, src in edges):
            reached.add(target)
    return 3 in reached


def random_cells(count: int, seed: int) -> list[str]:
    """``count`` distinct connected cells drawn uniformly from the 5^6 NB201 cells."""
    rng, cells = random.Random(seed), []
    while len(cells) < count:
        ops = [rng.choice(NB201_OPS) for _ in range(6)]
        cell = f"|{ops[0]}~0|+|{ops[1]}~0|{ops[2]}~1|+|{ops[3]}~0|{ops[4]}~1|{ops[5]}~2|"
        if connected(cell) and cell not in cells:
            cells.append(cell)
    return cells


class _PreciseBatchNorm(pl.Callback):
    """Re-estimate the network's BN statistics on fixed training images before each validation."""

    def __init__(self, calibration: Tensor, batch_size: int = 250) -> None:
        self.batches = list(calibration.split(batch_size))

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            recalibrate_batchnorm(pl_module, self.batches)


def _recorder() -> LearningCurveStopping:
    """Records each epoch's validation accuracy, mean training loss and validation loss (it predicts and stops
    nothing: the regression alone, with no finished runs to learn from)."""
    return LearningCurveStopping(monitor="val/acc", predictor="regression", extra=[TRAIN_LOSS, "val/loss"])


def _datasets(root: Path, train_size: int, val_size: int) -> tuple[TensorDataset, TensorDataset]:
    train_all, val_all = load_fashion_mnist(root, train=True), load_fashion_mnist(root, train=False)
    g = torch.Generator().manual_seed(0)
    train = train_all.subset(torch.randperm(len(train_all), generator=g)[:train_size])
    val = val_all.subset(torch.randperm(len(val_all), generator=g)[:val_size])

    def tensors(split: Any) -> TensorDataset:
        return TensorDataset((split.images.float() / 255 - MEAN) / STD, split.labels)

    return tensors(train), tensors(val)


def record(
    path: Path,
    *,
    root: Path,
    runs: int,
    epochs: int,
    train_size: int,
    val_size: int,
    calibration_size: int,
    seed: int,
    schedule: str = "cosine",
    sizes: list[tuple[int, int]] | None = None,
    lr_range: tuple[float, float] | None = None,
) -> dict:
    """Record (or continue recording) ``runs`` curves into ``path``; returns the JSON's content.

    ``sizes``: ``(channels, cells_per_stage)`` pairs, one drawn per run (seeded by ``seed``), for a search over the
    network's size as well as its cell; ``None``: every run is ``C=8, N=1``.
    ``lr_range``: ``(low, high)``, each run's initial learning rate drawn log-uniformly from it (seeded by ``seed``),
    for a search over the learning rate as well as the cell; ``None``: every run starts at 0.025.
    """
    settings = {
        "protocol": PROTOCOL,
        "epochs": epochs,
        "train_size": train_size,
        "val_size": val_size,
        "calibration_size": calibration_size,
        "seed": seed,
        "channels": 8,
        "lr": 0.025,
        "schedule": schedule,
    }
    if sizes is not None:
        settings["sizes"] = [list(size) for size in sizes]
    if lr_range is not None:
        if not 0 < lr_range[0] <= lr_range[1]:
            raise ValueError(f"lr_range must be 0 < low <= high, got {list(lr_range)}")
        settings["lr_range"] = list(lr_range)
    data: dict[str, Any] = {"settings": settings, "runs": []}
    if path.is_file():
        data = json.loads(path.read_text())
        if data["settings"] != settings:
            raise ValueError(f"{path} was recorded with {data['settings']}, not {settings}; use another --curves")
    cells = random_cells(runs, seed)
    size_rng = random.Random(seed + 10_000)
    run_sizes = [size_rng.choice(sizes) if sizes else (8, 1) for _ in cells]
    lr_rng = random.Random(seed + 20_000)
    run_lrs = [
        math.exp(lr_rng.uniform(math.log(lr_range[0]), math.log(lr_range[1]))) if lr_range else 0.025 for _ in cells
    ]
    train, val = _datasets(root, train_size, val_size)
    calibration = train.tensors[0][:calibration_size]
    for k, cell in enumerate(cells[len(data["runs"]) :], start=len(data["runs"])):
        torch.manual_seed(seed * 1000 + k)
        order = torch.Generator().manual_seed(seed * 1000 + k)
        curve, start = _recorder(), time.perf_counter()
        trainer = pl.Trainer(
            max_epochs=epochs,
            accelerator="cpu",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            callbacks=[_PreciseBatchNorm(calibration), curve],
        )
        trainer.fit(
            CellRetrain(
                cell, channels=run_sizes[k][0], cells_per_stage=run_sizes[k][1], lr=run_lrs[k], schedule=schedule
            ),
            train_dataloaders=DataLoader(train, batch_size=128, shuffle=True, generator=order),
            val_dataloaders=DataLoader(val, batch_size=500),
        )
        seconds = time.perf_counter() - start
        channels, cells_per_stage = run_sizes[k]
        data["runs"].append(
            {"cell": cell, "channels": channels, "cells_per_stage": cells_per_stage, "lr": run_lrs[k],
             "curve": curve.curve,
             "train_loss": curve.series[TRAIN_LOSS], "val_loss": curve.series["val/loss"], "seconds": seconds}
        )  # fmt: skip
        atomic_write_text(path, json.dumps(data, indent=1))
        print(f"run {k}: {cell} lr {run_lrs[k]:.4g} final {curve.curve[-1]:.4f} ({seconds:.0f} s)", flush=True)
    return data
