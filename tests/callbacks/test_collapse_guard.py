"""CollapseGuard fires on hand-set alphas that select skip connections in the normal cell (the DARTS+ rule)."""

from __future__ import annotations

import warnings
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from lightning_nas.callbacks import CollapseGuard
from lightning_nas.data import SyntheticDataModule
from lightning_nas.methods import DARTS
from tests.tiny import quiet_trainer, tiny_darts_space


def _search(tmp_path: Path, favourite: str, guard: CollapseGuard) -> pl.Trainer:
    """Three epochs of DARTS with frozen alphas (arch_lr=0) whose every normal edge prefers ``favourite``."""
    space = tiny_darts_space()
    with torch.no_grad():
        space.alpha_normal.zero_()
        space.alpha_normal[:, space.ops.index(favourite)] = 5.0
    model = DARTS(space, order="first", arch_lr=0.0, arch_weight_decay=0.0)
    data = SyntheticDataModule(num_samples=32, num_classes=4, in_channels=1, image_size=8, search=True, batch_size=16)
    trainer = quiet_trainer(tmp_path, max_epochs=3, limit_val_batches=0, callbacks=[guard])
    trainer.fit(model, datamodule=data)
    assert [op for op, _ in model.genotype.normal] == [favourite] * 4  # the alphas stayed as set
    return trainer


def test_guard_stops_a_collapsed_search(tmp_path: Path) -> None:
    guard = CollapseGuard(max_count=2, stop=True)
    with pytest.warns(UserWarning, match=r"the normal cell has 4 skip_connect choices at epoch 0 \(limit 2\)"):
        trainer = _search(tmp_path, "skip_connect", guard)
    assert trainer.current_epoch == 1  # stopped after the first epoch
    assert guard.triggered_epoch == 0
    assert guard.state_dict() == {"triggered_epoch": 0}


def test_guard_only_warns_without_stop(tmp_path: Path) -> None:
    guard = CollapseGuard(max_count=4)
    with pytest.warns(UserWarning, match="pass stop=True to stop here") as record:
        trainer = _search(tmp_path, "skip_connect", guard)
    assert sum("CollapseGuard" in str(w.message) for w in record) == 3  # every epoch
    assert trainer.current_epoch == 3


def test_guard_is_quiet_on_a_healthy_search(tmp_path: Path) -> None:
    guard = CollapseGuard(max_count=1, stop=True)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        trainer = _search(tmp_path, "sep_conv_3x3", guard)
    assert not [w for w in record if "CollapseGuard" in str(w.message)]
    assert trainer.current_epoch == 3
    assert guard.triggered_epoch is None


def test_bad_limit_is_named() -> None:
    with pytest.raises(ValueError, match="max_count must be >= 1, got 0"):
        CollapseGuard(max_count=0)
