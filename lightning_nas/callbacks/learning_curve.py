"""Log a run's extrapolated final accuracy each epoch and stop the run once it cannot beat the best so far."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from typing_extensions import override

from lightning_nas.predictors.curves import CurvePrediction
from lightning_nas.predictors.stopping import (
    MIN_FINISHED,
    Predictor,
    calibrated_regression,
    check_predictor,
    predict_final,
)

__all__ = ["TRAIN_LOSS", "LearningCurveStopping"]

TRAIN_LOSS = "train_loss"
"""The extra series recorded by the callback itself: the mean of the losses ``training_step`` returned over the
epoch (averaged over the ranks under DDP)."""


class LearningCurveStopping(pl.Callback):
    """Predict ``monitor`` at ``final_epoch`` after every validation; stop when it will not beat the best.

    Each validation's end appends ``trainer.callback_metrics[monitor]`` to the curve and, from ``min_epochs`` on,
    logs ``"{monitor}_predicted"`` (the predicted final value, :func:`~lightning_nas.predictors.predict_final`)
    and ``"{monitor}_predicted_high"`` (its interval's upper end). The prediction is the curve fit
    (:func:`~lightning_nas.predictors.extrapolate`) or, given the curves of at least ``min_finished`` finished
    runs, the regression calibrated on them (:class:`~lightning_nas.predictors.CurveRegression`), as
    ``predictor`` says (``"regression"``: no prediction, and no stopping, without enough finished runs). With
    ``best_so_far`` set (the best final value of earlier runs; a multi-trial runner passes it and the finished
    curves to each trial) the run stops once ``P(final > best_so_far) < threshold``
    (:func:`~lightning_nas.predictors.should_stop`'s rule); :attr:`stopped_epoch` records when.

    Args:
        monitor: the validation metric, higher is better (e.g. ``"val_acc"``).
        final_epoch: the epoch the run would end at (``trainer.max_epochs`` if ``None``).
        best_so_far: the value to beat; ``None`` only logs predictions.
        min_epochs: epochs observed before the first prediction (>= 3).
        threshold: stop when ``P(final > best_so_far)`` falls below it.
        upper: the metric's ceiling (1.0 for accuracies in [0, 1]).
        noise: the prior standard deviation of one epoch's value (see :func:`~lightning_nas.predictors.extrapolate`).
        predictor: ``"auto"`` (the regression once ``min_finished`` runs have finished, the curve fit before),
            ``"fit"`` or ``"regression"``.
        finished: the curves of finished runs of the same length (``final_epoch`` values each).
        min_finished: finished runs needed before the regression is used (>= 3).
        extra: more per-epoch series for the regression to read beside the curve (recorded in :attr:`series`):
            ``"train_loss"`` (:data:`TRAIN_LOSS`, the epoch's mean training loss, which the callback averages
            from what ``training_step`` returns) or the name of any metric the module logs by the validation's end
            (e.g. ``"val_loss"``).
        finished_extra: those series of the finished runs (``{name: [one series per finished run]}``), required
            for every name in ``extra`` when ``finished`` is given.
        window: the regression reads the last ``window`` epochs of the curve and series (``None``: all of them).
        features: this run's static features for the regression (numbers known before the run starts, e.g.
            ``[math.log10(lr)]``: the finished runs' gains are learned as a function of them too).
        finished_features: the finished runs' rows of the same features, required with ``features`` when
            ``finished`` is given.

    Raises:
        ValueError: ``min_epochs < 3``, a ``threshold`` outside (0, 1), a negative ``noise``, ``final_epoch < 1``,
            an unknown ``predictor``, ``min_finished < 3``, finished curves of different lengths, finished
            extra series that are missing or do not match ``extra``, or ``features`` without
            ``finished_features`` (or the other way round) or of another length.
    """

    def __init__(
        self,
        *,
        monitor: str = "val_acc",
        final_epoch: int | None = None,
        best_so_far: float | None = None,
        min_epochs: int = 3,
        threshold: float = 0.05,
        upper: float | None = None,
        noise: float | None = None,
        predictor: Predictor = "auto",
        finished: Sequence[Sequence[float]] | None = None,
        min_finished: int = MIN_FINISHED,
        extra: Sequence[str] = (),
        finished_extra: Mapping[str, Sequence[Sequence[float]]] | None = None,
        window: int | None = None,
        features: Sequence[float] | None = None,
        finished_features: Sequence[Sequence[float]] | None = None,
    ) -> None:
        if min_epochs < 3:
            raise ValueError(f"min_epochs must be >= 3 (a curve fit needs 3 points), got {min_epochs}")
        if not 0 < threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        if noise is not None and not noise >= 0:
            raise ValueError(f"noise must be a standard deviation >= 0, got {noise}")
        if final_epoch is not None and final_epoch < 1:
            raise ValueError(f"final_epoch must be >= 1, got {final_epoch}")
        self.monitor, self.final_epoch, self.best_so_far = monitor, final_epoch, best_so_far
        self.min_epochs, self.threshold, self.upper, self.noise = min_epochs, threshold, upper, noise
        check_predictor(predictor, min_finished)
        self.predictor, self.min_finished = predictor, min_finished
        self.extra = tuple(extra)
        if len(set(self.extra)) != len(self.extra):
            raise ValueError(f"extra names a series twice: {list(self.extra)}")
        finished_extra = dict(finished_extra or {})
        if finished is not None and sorted(finished_extra) != sorted(self.extra):
            raise ValueError(
                f"finished_extra must hold the finished runs' series of every name in extra {sorted(self.extra)}, "
                f"got {sorted(finished_extra)}"
            )
        if finished is not None and (features is None) != (finished_features is None):
            raise ValueError(
                "features (this run's) and finished_features (the finished runs') must be given together, got "
                f"features={features!r} and finished_features={'None' if finished_features is None else '...'}"
            )
        self.features = None if features is None else [float(v) for v in features]
        self.regression = (
            None
            if predictor == "fit"
            else calibrated_regression(
                finished, final_epoch, min_finished, finished_extra or None, window, finished_features
            )
        )
        if self.regression is not None and self.regression.num_features != len(self.features or []):
            raise ValueError(
                f"features has {len(self.features or [])} numbers, the finished runs' rows "
                f"{self.regression.num_features}"
            )
        self.curve: list[float] = []
        self.series: dict[str, list[float]] = {name: [] for name in self.extra}
        self._loss_sum: torch.Tensor | None = None  # summed on the device: no host sync per step
        self._loss_count = 0
        self.stopped_epoch: int | None = None

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(monitor=self.monitor)

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if TRAIN_LOSS in self.extra:
            loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
            if isinstance(loss, torch.Tensor):
                loss = loss.detach().float()
                self._loss_sum = loss if self._loss_sum is None else self._loss_sum + loss
                self._loss_count += 1

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Record the epoch's value, log the prediction and decide whether to stop."""
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        self.curve.append(float(trainer.callback_metrics[self.monitor]))
        for name in self.extra:
            self.series[name].append(self._epoch_value(trainer, pl_module, name))
        final = self._final_epoch(trainer)
        if len(self.curve) < self.min_epochs or final <= len(self.curve):
            return
        prediction = self._predict(final)
        if prediction is None:  # the regression alone, before enough runs have finished
            return
        for logger in trainer.loggers:
            logger.log_metrics(
                {f"{self.monitor}_predicted": prediction.mean, f"{self.monitor}_predicted_high": prediction.high},
                step=trainer.global_step,
            )
        if self.best_so_far is not None and prediction.probability_above(self.best_so_far) < self.threshold:
            trainer.should_stop = True
            self.stopped_epoch = len(self.curve)

    def _epoch_value(self, trainer: pl.Trainer, pl_module: pl.LightningModule, name: str) -> float:
        if name == TRAIN_LOSS:
            if self._loss_sum is None:
                raise ValueError(
                    "LearningCurveStopping(extra=['train_loss']) needs training_step to return the loss "
                    "(a tensor or {'loss': tensor}); this module's returned none this epoch"
                )
            # on the module's device: a DDP all-reduce over NCCL takes GPU tensors only
            local = (self._loss_sum / self._loss_count).to(pl_module.device)
            self._loss_sum, self._loss_count = None, 0
            return float(trainer.strategy.reduce(local, reduce_op="mean"))
        if name not in trainer.callback_metrics:
            raise KeyError(
                f"LearningCurveStopping(extra=[{name!r}]): the module logs no {name!r} by the validation's end; "
                f"it logs {sorted(trainer.callback_metrics)}, or use {TRAIN_LOSS!r}"
            )
        return float(trainer.callback_metrics[name])

    def _predict(self, final_epoch: int) -> CurvePrediction | None:
        return predict_final(
            self.curve,
            final_epoch,
            predictor=self.predictor,
            finished=self.regression,
            min_finished=self.min_finished,
            upper=self.upper,
            noise=self.noise,
            extra=self.series if self.regression is not None else None,
            features=self.features if self.regression is not None else None,
        )

    def _final_epoch(self, trainer: pl.Trainer) -> int:
        if self.final_epoch is not None:
            return self.final_epoch
        if trainer.max_epochs is None or trainer.max_epochs < 1:
            raise ValueError("LearningCurveStopping needs final_epoch when the trainer has no max_epochs")
        return int(trainer.max_epochs)

    @override
    def state_dict(self) -> dict[str, Any]:
        partial = None if self._loss_sum is None else float(self._loss_sum)  # an epoch's losses so far
        return {
            "curve": list(self.curve),
            "stopped_epoch": self.stopped_epoch,
            "series": {name: list(values) for name, values in self.series.items()},
            "loss_sum": partial,
            "loss_count": self._loss_count,
        }

    @override
    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self.curve = [float(v) for v in state_dict["curve"]]
        self.stopped_epoch = state_dict["stopped_epoch"]
        saved = state_dict.get("series", {})
        self.series = {name: [float(v) for v in saved.get(name, [])] for name in self.extra}
        partial = state_dict.get("loss_sum")
        self._loss_sum = None if partial is None else torch.tensor(float(partial))
        self._loss_count = int(state_dict.get("loss_count", 0))
