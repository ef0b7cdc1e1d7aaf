"""Learning-curve extrapolation against curves of known form, the stopping rule, and the Lightning callback."""

from __future__ import annotations

import math
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger

from lightning_nas.callbacks import LearningCurveStopping
from lightning_nas.predictors import CURVE_MODELS, extrapolate, should_stop


@pytest.mark.parametrize(
    ("model", "params"),
    [("pow3", (0.9, 0.5, 0.8)), ("log_power", (0.92, 0.3, 1.5)), ("exp3", (0.88, 0.4, -0.5))],
)
def test_each_family_recovers_its_own_curve(model: str, params: tuple[float, float, float]) -> None:
    function = CURVE_MODELS[model]
    observed = function(np.arange(1, 7, dtype=np.float64), *params)
    truth = float(function(np.array([40.0]), *params)[0])
    prediction = extrapolate(observed.tolist(), 40, models=[model])
    assert prediction.mean == pytest.approx(truth, abs=1e-4)
    assert prediction.weights == {model: 1.0}


def test_combination_interval_covers_a_noisy_curve_and_upper_clips() -> None:
    rng = np.random.default_rng(0)
    epochs = np.arange(1, 51, dtype=np.float64)
    clean = 0.9 - 0.6 * epochs**-0.7
    noisy = clean + rng.normal(0, 0.005, size=50)
    prediction = extrapolate(noisy[:10].tolist(), 50)
    assert prediction.low <= clean[-1] <= prediction.high
    assert set(prediction.per_model) <= set(CURVE_MODELS)
    assert sum(prediction.weights.values()) == pytest.approx(1.0)
    assert extrapolate([0.5, 0.8, 0.95, 0.99], 100, upper=1.0).high <= 1.0


def test_bad_curves_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 3 epochs, got 2"):
        extrapolate([0.1, 0.2], 10)
    with pytest.raises(ValueError, match="non-finite values"):
        extrapolate([0.1, math.nan, 0.3], 10)
    with pytest.raises(ValueError, match="final_epoch 2 is before the last observed epoch 3"):
        extrapolate([0.1, 0.2, 0.3], 2)
    with pytest.raises(ValueError, match="unknown curve models \\['pow4'\\]; valid models: pow3"):
        extrapolate([0.1, 0.2, 0.3], 5, models=["pow4"])


def test_should_stop_follows_the_probability_of_beating_the_best() -> None:
    epochs = np.arange(1, 6, dtype=np.float64)
    slow = (0.6 - 0.3 * epochs**-1.0).tolist()  # heads to 0.6 - 0.3/30 = 0.59 at epoch 30
    assert should_stop(slow, best_so_far=0.8, final_epoch=30)
    assert not should_stop(slow, best_so_far=0.5, final_epoch=30)
    assert not should_stop(slow[:2] + [slow[2]], best_so_far=0.8, final_epoch=30, min_epochs=4)  # too early
    assert not should_stop(slow, best_so_far=None, final_epoch=30)
    with pytest.raises(ValueError, match="threshold must be in \\(0, 1\\), got 2"):
        should_stop(slow, 0.8, 30, threshold=2)


class _CurveModule(pl.LightningModule):
    """Logs a preset validation accuracy per epoch (the pow3 curve 0.6 - 0.3 / epoch)."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        return self.layer(batch[0]).sum()

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self.log("val_acc", 0.6 - 0.3 / (self.current_epoch + 1))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)


def _fit(tmp_path: Path, callback: LearningCurveStopping) -> pl.Trainer:
    loader = torch.utils.data.DataLoader(torch.zeros(2, 1), batch_size=2)
    trainer = pl.Trainer(
        default_root_dir=tmp_path,
        logger=CSVLogger(tmp_path),
        max_epochs=20,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[callback],
    )
    trainer.fit(_CurveModule(), train_dataloaders=loader, val_dataloaders=loader)
    return trainer


def test_callback_logs_predictions_and_stops_a_hopeless_run(tmp_path: Path) -> None:
    stopper = LearningCurveStopping(monitor="val_acc", best_so_far=0.8)
    trainer = _fit(tmp_path / "stop", stopper)
    assert stopper.stopped_epoch == 3  # the first epoch with a prediction: 0.6 - 0.3/20 can't reach 0.8
    assert trainer.current_epoch == 3
    logged = (Path(trainer.logger.log_dir) / "metrics.csv").read_text()
    assert "val_acc_predicted" in logged
    keeper = LearningCurveStopping(monitor="val_acc", best_so_far=0.5)
    assert _fit(tmp_path / "keep", keeper).current_epoch == 20
    assert keeper.stopped_epoch is None
    assert keeper.curve == pytest.approx([0.6 - 0.3 / e for e in range(1, 21)])
