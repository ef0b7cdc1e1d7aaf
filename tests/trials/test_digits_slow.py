"""A real multi-trial run on the offline digits (slow): the NAS-RL controller over trained DARTS children."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightning_nas.data import DigitsDataModule
from lightning_nas.search import PolicySearch
from lightning_nas.trials import LightningTrial, RetrainFactory, run_trials
from tests.tiny import tiny_darts_space

RETRAIN = {"in_channels": 1, "num_classes": 10, "channels": 8, "layers": 3, "auxiliary": False, "drop_path_prob": 0.0}


def digits() -> DigitsDataModule:
    return DigitsDataModule(batch_size=64, augment=False)


@pytest.mark.slow
def test_controller_trains_twelve_children_and_updates_every_four(ray_cluster: str, tmp_path: Path) -> None:
    space = tiny_darts_space(num_classes=10, channels=8)
    strategy = PolicySearch(space.choices(), node_choices=space.node_choices(), batch_size=4, learning_rate=0.0035)
    trial = LightningTrial(digits, RetrainFactory(RETRAIN), max_epochs=1, input_shape=(1, 8, 8))
    result = run_trials(strategy, trial, tmp_path, num_trials=12, concurrency=2, progress=False)
    assert [r.status for r in result.records] == ["ok"] * 12
    assert strategy.updates == 3
    assert strategy.baseline is not None
    assert result.best.metrics["accuracy"] > 0.2  # ten classes: chance is 0.1
