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
from tests.tiny import quiet_trainer


@pytest.mark.parametrize(
    ("model", "params"),
    [("pow3", (0.9, 0.5, 0.8)), ("log_power", (0.92, 0.3, 1.5)), ("exp3", (0.88, 0.4, -0.5))],
)
def test_each_family_recovers_its_own_parameters(model: str, params: tuple[float, float, float]) -> None:
    function = CURVE_MODELS[model]
    observed = function(np.arange(1, 7, dtype=np.float64), *params)
    truth = float(function(np.array([40.0]), *params)[0])
    prediction = extrapolate(observed.tolist(), 40, models=[model])
    assert prediction.params[model] == pytest.approx(params, abs=1e-4)
    assert prediction.mean == pytest.approx(truth, abs=1e-4)
    assert prediction.weights == {model: 1.0}
    # a noiseless exact fit has no noise left to explain: the predictive is the point prediction
    assert prediction.noise == pytest.approx(0.0, abs=1e-4)
    assert prediction.high - prediction.low == pytest.approx(0.0, abs=1e-3)


def _family_curve(model: str, rng: np.random.Generator, epochs: int, sigma: float) -> np.ndarray:
    """A random curve of ``model`` (asymptote 0.7..0.95) plus independent N(0, sigma^2) noise per epoch."""
    low, high = {"pow3": ((0.7, 0.3, 0.5), (0.95, 0.6, 1.5)), "log_power": ((0.7, 0.0, 1.0), (0.95, 1.0, 2.0))}.get(
        model, ((0.7, 0.2, -1.0), (0.95, 0.6, 0.0))
    )
    params = rng.uniform(low, high)
    return CURVE_MODELS[model](np.arange(1, epochs + 1, dtype=np.float64), *params) + rng.normal(0, sigma, epochs)


@pytest.mark.parametrize("model", list(CURVE_MODELS))
def test_the_95_percent_interval_covers_the_final_value_of_its_own_family(model: str) -> None:
    """Over 200 noisy curves of a known family, 8 of 30 epochs seen, the interval holds the observed epoch-30 value
    at least 95% of the time, less three binomial standard errors (sqrt(0.95 * 0.05 / 200) = 0.0154)."""
    seeds, covered = 200, 0
    for seed in range(seeds):
        curve = _family_curve(model, np.random.default_rng(seed), 30, sigma=0.01)
        prediction = extrapolate(curve[:8].tolist(), 30, models=[model], upper=1.0, num_samples=2000)
        covered += prediction.low <= curve[-1] <= prediction.high
    assert covered / seeds >= 0.95 - 3 * math.sqrt(0.95 * 0.05 / seeds)


def test_noise_is_estimated_from_the_residuals_and_a_prior_noise_widens_the_interval() -> None:
    """On 40 epochs with sigma = 0.02 the posterior median of sigma is within 30% of it (chi-square on 37 degrees
    of freedom: relative standard deviation 1 / sqrt(74) = 0.12)."""
    curve = _family_curve("pow3", np.random.default_rng(1), 40, sigma=0.02)
    assert extrapolate(curve.tolist(), 60, models=["pow3"]).noise == pytest.approx(0.02, rel=0.3)
    clean = CURVE_MODELS["pow3"](np.arange(1, 6, dtype=np.float64), 0.9, 0.5, 0.8).tolist()
    exact, noisy = extrapolate(clean, 40, models=["pow3"]), extrapolate(clean, 40, models=["pow3"], noise=0.02)
    assert noisy.low < exact.low <= exact.high < noisy.high
    assert noisy.noise > 0.0


def test_priors_bound_the_predictive_and_probabilities_follow_the_samples() -> None:
    prediction = extrapolate([0.5, 0.8, 0.95, 0.99], 100, upper=1.0, noise=0.01)
    assert prediction.high <= 1.0
    assert prediction.samples.max() <= 1.0
    assert set(prediction.per_model) <= set(CURVE_MODELS)
    assert sum(prediction.weights.values()) == pytest.approx(1.0)
    value = float(np.median(prediction.samples))
    share = float(np.mean(prediction.samples > value))
    assert prediction.probability_above(value) == pytest.approx(share)
    assert prediction.probability_above(1.0) == 0.0  # nothing ends above the ceiling
    assert extrapolate([0.5, 0.8, 0.95, 0.99], 100, seed=3).samples.tolist() == (
        extrapolate([0.5, 0.8, 0.95, 0.99], 100, seed=3).samples.tolist()
    )


def test_bad_curves_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 3 epochs, got 2"):
        extrapolate([0.1, 0.2], 10)
    with pytest.raises(ValueError, match="non-finite values"):
        extrapolate([0.1, math.nan, 0.3], 10)
    with pytest.raises(ValueError, match="final_epoch 2 is before the last observed epoch 3"):
        extrapolate([0.1, 0.2, 0.3], 2)
    with pytest.raises(ValueError, match="unknown curve models \\['pow4'\\]; valid models: pow3"):
        extrapolate([0.1, 0.2, 0.3], 5, models=["pow4"])
    with pytest.raises(ValueError, match="noise must be a finite standard deviation >= 0, got -0.1"):
        extrapolate([0.1, 0.2, 0.3], 5, noise=-0.1)
    with pytest.raises(ValueError, match="num_samples must be >= 10, got 2"):
        extrapolate([0.1, 0.2, 0.3], 5, num_samples=2)


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


class _EpochEndCurveModule(_CurveModule):
    """Logs the same curve from its own ``on_validation_epoch_end`` (after the callbacks' epoch-end hooks)."""

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        return None

    def on_validation_epoch_end(self) -> None:
        self.log("val_acc", 0.6 - 0.3 / (self.current_epoch + 1))


def _fit(tmp_path: Path, callback: LearningCurveStopping, module: pl.LightningModule | None = None) -> pl.Trainer:
    loader = torch.utils.data.DataLoader(torch.zeros(2, 1), batch_size=2)
    trainer = quiet_trainer(
        tmp_path, logger=CSVLogger(tmp_path), max_epochs=20, num_sanity_val_steps=0, callbacks=[callback]
    )
    trainer.fit(module or _CurveModule(), train_dataloaders=loader, val_dataloaders=loader)
    return trainer


def test_callback_logs_predictions_and_stops_a_hopeless_run(tmp_path: Path) -> None:
    stopper = LearningCurveStopping(monitor="val_acc", best_so_far=0.8)
    trainer = _fit(tmp_path / "stop", stopper)
    assert stopper.stopped_epoch == 3  # the first epoch with a prediction: 0.6 - 0.3/20 can't reach 0.8
    assert trainer.current_epoch == 3
    logged = (Path(trainer.logger.log_dir) / "metrics.csv").read_text()
    assert "val_acc_predicted" in logged
    # a prior noise as large as the whole curve's rise: nothing is certain after 3 epochs, the run goes on
    cautious = LearningCurveStopping(monitor="val_acc", best_so_far=0.8, noise=0.2, min_epochs=3)
    assert _fit(tmp_path / "cautious", cautious).current_epoch > 3
    late = LearningCurveStopping(monitor="val_acc", best_so_far=0.8)  # the value is logged at the epoch's end
    assert _fit(tmp_path / "late", late, _EpochEndCurveModule()).current_epoch == 3
    keeper = LearningCurveStopping(monitor="val_acc", best_so_far=0.5)
    assert _fit(tmp_path / "keep", keeper).current_epoch == 20
    assert keeper.stopped_epoch is None
    assert keeper.curve == pytest.approx([0.6 - 0.3 / e for e in range(1, 21)])


def test_callback_calibrated_on_finished_runs_stops_what_the_curve_fit_is_unsure_of(tmp_path: Path) -> None:
    """Finished runs c - 0.3 / epoch all gain 0.3 * (1/3 - 1/20) after epoch 3; calibrated on them the callback
    knows the run heading to 0.6 - 0.3/20 cannot reach 0.8 and stops at epoch 3, where the same callback without
    them, under a prior noise of 0.2, runs on (see the test above)."""
    finished = [[c - 0.3 / e for e in range(1, 21)] for c in (0.7, 0.75, 0.8, 0.85, 0.9)]
    calibrated = LearningCurveStopping(monitor="val_acc", best_so_far=0.8, noise=0.2, finished=finished)
    assert _fit(tmp_path / "calibrated", calibrated).current_epoch == 3
    assert calibrated.stopped_epoch == 3
    too_few = LearningCurveStopping(monitor="val_acc", best_so_far=0.8, noise=0.2, finished=finished, min_finished=6)
    assert _fit(tmp_path / "too_few", too_few).current_epoch > 3  # five runs: not yet trusted, the curve fit decides
    waiting = LearningCurveStopping(
        monitor="val_acc", best_so_far=0.8, predictor="regression", finished=finished, min_finished=6
    )
    assert _fit(tmp_path / "waiting", waiting).current_epoch == 20  # the regression alone, not yet trained: no stop
    assert waiting.stopped_epoch is None
    short = [curve[:10] for curve in finished]
    with pytest.raises(ValueError, match="the finished curves have 10 epochs, but final_epoch is 20"):
        LearningCurveStopping(final_epoch=20, finished=short)
    with pytest.raises(ValueError, match="the finished curves have 10 epochs, but final_epoch is 20"):
        _fit(tmp_path / "short", LearningCurveStopping(monitor="val_acc", finished=short))  # max_epochs=20


def test_callback_refuses_bad_settings() -> None:
    with pytest.raises(ValueError, match="min_epochs must be >= 3"):
        LearningCurveStopping(min_epochs=2)
    with pytest.raises(ValueError, match="threshold must be in \\(0, 1\\), got 1.5"):
        LearningCurveStopping(threshold=1.5)
    with pytest.raises(ValueError, match="noise must be a standard deviation >= 0, got -1"):
        LearningCurveStopping(noise=-1)
    with pytest.raises(ValueError, match="min_finished must be >= 3 .*, got 1"):
        LearningCurveStopping(min_finished=1)
    with pytest.raises(ValueError, match="unknown predictor 'fits'; valid predictors: auto, fit, regression"):
        LearningCurveStopping(predictor="fits")  # type: ignore[arg-type]


class _LossCurveModule(_CurveModule):
    """A flat validation accuracy of 0.5 (the curve tells nothing) and a training loss of ``start - 0.05 * epoch``
    in every step of an epoch (learning rate 0: only the returned value changes)."""

    def __init__(self, start: float) -> None:
        super().__init__()
        self.start = start

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        return self.layer(batch[0]).sum() * 0.0 + (self.start - 0.05 * self.current_epoch)

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self.log("val_acc", 0.5)


def test_callback_reads_the_training_loss_as_an_extra_series(tmp_path: Path) -> None:
    """Finished runs with flat curves whose final is 0.9 - 0.5 * (epoch 3's mean training loss): calibrated on them
    with ``extra=["train_loss"]`` the callback records each epoch's mean loss, stops the run whose loss says it ends
    at 0.9 - 0.5 * 0.9 = 0.45 < 0.8 at epoch 3, and lets the one heading to 0.9 - 0.5 * 0.1 = 0.85 run on."""
    losses = [[start - 0.05 * e for e in range(20)] for start in (1.0, 0.8, 0.6, 0.4, 0.3, 0.2)]
    finished = [[0.5] * 19 + [0.9 - 0.5 * loss[2]] for loss in losses]
    options = {"monitor": "val_acc", "best_so_far": 0.8, "finished": finished, "min_finished": 5}
    hopeless = LearningCurveStopping(extra=["train_loss"], finished_extra={"train_loss": losses}, **options)
    _fit(tmp_path / "hopeless", hopeless, _LossCurveModule(1.0))
    assert hopeless.stopped_epoch == 3
    assert hopeless.series["train_loss"] == pytest.approx([1.0, 0.95, 0.9])
    promising = LearningCurveStopping(extra=["train_loss"], finished_extra={"train_loss": losses}, **options)
    assert _fit(tmp_path / "promising", promising, _LossCurveModule(0.2)).current_epoch == 20
    assert promising.stopped_epoch is None
    latest = LearningCurveStopping(extra=["train_loss"], finished_extra={"train_loss": losses}, window=1, **options)
    assert latest.regression is not None
    assert latest.regression.window == 1  # epoch 3's loss alone says the same
    assert _fit(tmp_path / "latest", latest, _LossCurveModule(1.0)).current_epoch == 3
    blind = LearningCurveStopping(**options)  # the flat curves alone: the finished runs' mean, 0.9 - 0.5 * 0.45
    assert _fit(tmp_path / "blind", blind, _LossCurveModule(1.0)).current_epoch == 20
    with pytest.raises(ValueError, match=r"finished_extra must hold .* every name in extra \['train_loss'\], got \[\]"):
        LearningCurveStopping(extra=["train_loss"], **options)
    with pytest.raises(ValueError, match=r"extra names a series twice"):
        LearningCurveStopping(extra=["train_loss", "train_loss"])
    missing = LearningCurveStopping(monitor="val_acc", extra=["val_loss"])
    with pytest.raises(KeyError, match=r"logs no 'val_loss' by the validation's end; it logs \['val_acc'\]"):
        _fit(tmp_path / "missing", missing)


def test_callback_reads_static_features(tmp_path: Path) -> None:
    """Finished runs that all follow ``_CurveModule``'s curve up to epoch 19 and end at 0.5 + 0.2 f, f a static
    feature of each run (e.g. log10(lr / 0.005)): the curve cannot tell them apart, the feature can. The callback
    stops the run with f = 0.2 (heading to 0.54 < 0.8) at epoch 3 and lets the one with f = 1.9 (0.88) run on."""
    shared = [0.6 - 0.3 / epoch for epoch in range(1, 20)]
    rows = [[0.0], [0.4], [0.8], [1.2], [1.6], [2.0]]
    finished = [[*shared, 0.5 + 0.2 * row[0]] for row in rows]
    options = {"monitor": "val_acc", "best_so_far": 0.8, "finished": finished, "finished_features": rows}
    hopeless = LearningCurveStopping(features=[0.2], **options)
    assert _fit(tmp_path / "hopeless", hopeless).current_epoch == 3
    assert hopeless.stopped_epoch == 3
    promising = LearningCurveStopping(features=[1.9], **options)
    assert _fit(tmp_path / "promising", promising).current_epoch == 20
    assert promising.stopped_epoch is None
    with pytest.raises(ValueError, match="features .* and finished_features .* must be given together"):
        LearningCurveStopping(monitor="val_acc", best_so_far=0.8, finished=finished, features=[0.2])
    with pytest.raises(ValueError, match="features has 2 numbers, the finished runs' rows 1"):
        LearningCurveStopping(features=[0.2, 0.1], **options)


def test_a_resume_in_the_middle_of_an_epoch_keeps_its_training_losses() -> None:
    """The epoch's losses so far travel in the callback's state: losses 1, 2 before a checkpoint and 6 after it
    average to 3 in the resumed callback, as in one that never stopped."""
    from types import SimpleNamespace

    trainer = SimpleNamespace(
        sanity_checking=False,
        callback_metrics={"val_acc": torch.tensor(0.5)},
        strategy=SimpleNamespace(reduce=lambda tensor, reduce_op: tensor),
        max_epochs=10,
    )
    module = SimpleNamespace(device=torch.device("cpu"))

    def feed(callback: LearningCurveStopping, losses: list[float]) -> None:
        for loss in losses:
            callback.on_train_batch_end(trainer, module, torch.tensor(loss), None, 0)  # type: ignore[arg-type]

    first = LearningCurveStopping(monitor="val_acc", extra=["train_loss"])
    feed(first, [1.0, 2.0])
    resumed = LearningCurveStopping(monitor="val_acc", extra=["train_loss"])
    resumed.load_state_dict(first.state_dict())
    feed(resumed, [6.0])
    resumed.on_validation_end(trainer, module)  # type: ignore[arg-type]
    assert resumed.series["train_loss"] == pytest.approx([3.0])
    assert resumed.state_dict()["loss_sum"] is None  # the epoch closed
