"""DARTS runs on the NAS-Bench-201 space and reports the table's accuracy of what it found (issue 9)."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning.pytorch as pl
import torch

from lightning_nas.callbacks import TabularReport
from lightning_nas.data import SyntheticDataModule
from lightning_nas.methods import DARTS
from lightning_nas.spaces import NasBench201Format
from tests.tiny import quiet_trainer, tiny_nb201_space


def test_darts_searches_the_nb201_space_and_reports_the_tables_accuracy(nb201_path: Path, tmp_path: Path) -> None:
    pl.seed_everything(0)
    space = tiny_nb201_space()
    model = DARTS(space, order="second", arch_lr=0.05)
    data = SyntheticDataModule(num_samples=64, num_classes=4, image_size=8, search=True, batch_size=16)
    report = TabularReport(str(nb201_path), metrics=["cifar10_valid", "cifar100_test"])
    alphas_before = space.alpha.detach().clone()
    trainer = quiet_trainer(tmp_path, max_steps=3, limit_val_batches=1, callbacks=[report])
    trainer.fit(model, datamodule=data)

    assert not torch.equal(space.alpha.detach(), alphas_before)
    found = model.export()
    assert isinstance(found, dict)
    assert found == model.current_arch() == space.export_arch()
    string = NasBench201Format().format(found)
    with nb201_path.open(newline="") as handle:
        row = next(r for r in csv.DictReader(handle) if r["arch"] == string)
    expected = {"cifar10_valid": float(row["cifar10_valid"]), "cifar100_test": float(row["cifar100_test"])}
    assert report.last_arch == string
    assert report.last_report == expected
    for metric, value in expected.items():
        assert float(trainer.callback_metrics[f"tabular/{metric}"]) == torch.tensor(value).item()
