"""Predict a run's final value from its first epochs, and Domhan et al.'s rule for stopping it early.

Three predictors (``predictor``):

- ``"fit"``: the parametric curve fit :func:`~lightning_nas.predictors.extrapolate` (Domhan et al. 2015), which
  needs no other run;
- ``"regression"``: the :class:`~lightning_nas.predictors.CurveRegression` calibrated on the curves of at least
  ``min_finished`` finished runs of the same length (Baker et al. 2018); with fewer there is no prediction, and
  :func:`should_stop` never stops (the first runs of a search run to the end and train it);
- ``"auto"``: the regression once ``min_finished`` runs have finished, the curve fit before.

:func:`should_stop` stops a run once ``P(final > best_so_far) < threshold``.

The regression can also read other per-epoch series of the runs (``finished_extra`` for the finished runs,
``extra`` for the one predicted), such as each epoch's mean training loss, and static features of each run
(``finished_features``, ``features``), such as its learning rate (see
:class:`~lightning_nas.predictors.CurveRegression`).
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Mapping, Sequence
from typing import Literal

from lightning_nas.predictors.curve_regression import CurveRegression, Series
from lightning_nas.predictors.curves import CurvePrediction, extrapolate

__all__ = ["MIN_FINISHED", "PREDICTOR_CHOICES", "calibrated_regression", "predict_final", "should_stop"]

Predictor = Literal["auto", "fit", "regression"]
PREDICTOR_CHOICES: tuple[str, ...] = ("auto", "fit", "regression")
MIN_FINISHED = 5
"""Finished runs from which the calibrated regression is used."""

Finished = Sequence[Sequence[float]] | CurveRegression | None


_NEEDS = {"fit": ("scipy",), "regression": ("scipy", "sklearn"), "auto": ("scipy", "sklearn")}
"""The packages each predictor imports when it predicts (scikit-learn's module is ``sklearn``)."""


def check_predictor(predictor: str, min_finished: int) -> None:
    """Refuse an unknown ``predictor``, ``min_finished < 3`` or a predictor whose packages are not installed,
    naming the value and the valid options (or the extra that installs the packages)."""
    if predictor not in PREDICTOR_CHOICES:
        raise ValueError(f"unknown predictor {predictor!r}; valid predictors: {', '.join(PREDICTOR_CHOICES)}")
    if min_finished < 3:
        raise ValueError(f"min_finished must be >= 3 (a regression needs 3 finished runs), got {min_finished}")
    missing = [name for name in _NEEDS[predictor] if importlib.util.find_spec(name) is None]
    if missing:
        packages = " and ".join("scikit-learn" if name == "sklearn" else name for name in missing)
        raise ModuleNotFoundError(
            f"the learning-curve predictor {predictor!r} needs {packages}, which is not installed: "
            "pip install 'lightning-nas[predictors]'"
        )


def calibrated_regression(
    finished: Finished,
    final_epoch: int | None,
    min_finished: int = MIN_FINISHED,
    finished_extra: Series | None = None,
    window: int | None = None,
    finished_features: Sequence[Sequence[float]] | None = None,
) -> CurveRegression | None:
    """The regression on ``finished`` (curves, with ``finished_extra``'s series and ``finished_features``'s rows as
    more features and the last ``window`` epochs read, or an already built regression), or ``None`` with fewer
    than ``min_finished`` runs.

    Raises:
        ValueError: ``min_finished < 3``, finished curves whose length is not ``final_epoch`` (unless ``None``), or
            extra series or feature rows that do not match the curves.
    """
    check_predictor("regression", min_finished)
    if finished is None:
        return None
    if not isinstance(finished, CurveRegression):
        if len(finished) < min_finished:
            return None
        finished = CurveRegression(finished, extra=finished_extra, features=finished_features, window=window)
    if final_epoch is not None and finished.final_epoch != final_epoch:
        raise ValueError(f"the finished curves have {finished.final_epoch} epochs, but final_epoch is {final_epoch}")
    return finished if finished.num_runs >= min_finished else None


def predict_final(
    curve: Sequence[float],
    final_epoch: int,
    *,
    predictor: Predictor = "auto",
    finished: Finished = None,
    min_finished: int = MIN_FINISHED,
    upper: float | None = None,
    noise: float | None = None,
    extra: Mapping[str, Sequence[float]] | None = None,
    finished_extra: Series | None = None,
    features: Sequence[float] | None = None,
    finished_features: Sequence[Sequence[float]] | None = None,
) -> CurvePrediction | None:
    """The predictive distribution of ``curve``'s value at ``final_epoch``; ``None`` when ``predictor`` is
    ``"regression"`` and fewer than ``min_finished`` runs have finished.

    Args:
        curve: the observed metric from epoch 1 (at least 3 epochs for the curve fit).
        final_epoch: the epoch to predict.
        predictor: ``"auto"``, ``"fit"`` or ``"regression"`` (see the module's docstring).
        finished: the curves of finished runs (``final_epoch`` values each) or a :class:`CurveRegression` on them.
        min_finished: finished runs needed before the regression is used (>= 3).
        upper: the metric's ceiling.
        noise: the curve fit's prior observation noise (see :func:`~lightning_nas.predictors.extrapolate`).
        extra: this run's other per-epoch series (e.g. ``{"train_loss": [...]}``), read by the regression only.
        finished_extra: the same series of the finished runs (``{name: [one series per finished run]}``).
        features: this run's static features (e.g. ``[math.log10(lr)]``), read by the regression only.
        finished_features: the finished runs' rows of the same features.

    Raises:
        ValueError: an unknown ``predictor``, ``min_finished < 3``, finished curves of another length than
            ``final_epoch``, extra series or features that do not match, or what
            :func:`~lightning_nas.predictors.extrapolate` refuses.

    Example:
        >>> finished = [[0.5, 0.6, 0.7, 0.8], [0.3, 0.4, 0.5, 0.6], [0.6, 0.7, 0.8, 0.9]]  # each gains 0.1 last
        >>> round(predict_final([0.4, 0.5, 0.6], 4, finished=finished, min_finished=3).mean, 3)
        0.7
        >>> predict_final([0.4, 0.5, 0.6], 4, predictor="regression", finished=finished) is None  # 3 < 5 runs
        True
    """
    check_predictor(predictor, min_finished)
    regression = (
        None
        if predictor == "fit"
        else calibrated_regression(
            finished, final_epoch, min_finished, finished_extra, finished_features=finished_features
        )
    )
    if regression is not None:
        return regression.predict(curve, extra=extra, features=features, upper=upper)
    if predictor == "regression":
        return None
    return extrapolate(curve, final_epoch, upper=upper, noise=noise)


def should_stop(
    curve: Sequence[float],
    best_so_far: float | None,
    final_epoch: int,
    *,
    min_epochs: int = 3,
    threshold: float = 0.05,
    upper: float | None = None,
    noise: float | None = None,
    predictor: Predictor = "auto",
    finished: Finished = None,
    min_finished: int = MIN_FINISHED,
    extra: Mapping[str, Sequence[float]] | None = None,
    finished_extra: Series | None = None,
    features: Sequence[float] | None = None,
    finished_features: Sequence[Sequence[float]] | None = None,
) -> bool:
    """Whether a run whose metric so far is ``curve`` is unlikely to end above ``best_so_far``.

    The early-stopping rule of Domhan et al.: stop once ``P(final > best_so_far) < threshold`` under
    :func:`predict_final`'s predictive distribution. Never stops before ``min_epochs`` epochs, at or after
    ``final_epoch``, without a best to beat, or without a prediction. A multi-trial runner calls it after each
    epoch of a trial with the best final metric and the curves of the finished trials.

    Example:
        >>> should_stop([0.30, 0.35, 0.37, 0.38], best_so_far=0.90, final_epoch=20)
        True
        >>> should_stop([0.30, 0.50, 0.65, 0.75], best_so_far=0.80, final_epoch=20)
        False
    """
    if min_epochs < 3:
        raise ValueError(f"min_epochs must be >= 3 (a curve fit needs 3 points), got {min_epochs}")
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    check_predictor(predictor, min_finished)
    if best_so_far is not None and not math.isfinite(best_so_far):
        raise ValueError(f"best_so_far must be a finite number or None (no best yet), got {best_so_far}")
    if best_so_far is None or len(curve) < min_epochs or len(curve) >= final_epoch:
        return False
    prediction = predict_final(
        curve,
        final_epoch,
        predictor=predictor,
        finished=finished,
        min_finished=min_finished,
        upper=upper,
        noise=noise,
        extra=extra,
        finished_extra=finished_extra,
        features=features,
        finished_features=finished_features,
    )
    return prediction is not None and prediction.probability_above(best_so_far) < threshold
