"""Learning-curve extrapolation (Domhan et al., IJCAI 2015): predict a run's final accuracy from its first epochs.

Three parametric families of Domhan et al.'s Table 1 are fitted by least squares to the observed curve
``y_1 .. y_t`` (epochs ``x = 1 .. t``):

- ``pow3``: ``c - a * x^(-alpha)``;
- ``log_power``: ``a / (1 + (x / e^b)^(-c))``;
- ``exp3``: ``c - exp(b - a * x)``.

The prediction at ``final_epoch`` is their combination weighted by ``exp(-BIC / 2)`` (the models' approximate
posterior probabilities); its standard deviation adds the spread between the models' predictions to the
residual noise. :func:`should_stop` is the early-stopping rule: stop when the probability that the final
accuracy beats ``best_so_far`` is below ``threshold`` (Domhan et al.'s rule, with a normal predictive).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["CURVE_MODELS", "CurvePrediction", "extrapolate", "should_stop"]

CurveModel = Callable[..., np.ndarray]


def _pow3(x: np.ndarray, c: float, a: float, alpha: float) -> np.ndarray:
    return c - a * np.power(x, -alpha)


def _log_power(x: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    return a / (1.0 + np.power(x / np.exp(b), -c))


def _exp3(x: np.ndarray, c: float, a: float, b: float) -> np.ndarray:
    return c - np.exp(np.clip(b - a * x, -50.0, 50.0))


CURVE_MODELS: dict[str, CurveModel] = {"pow3": _pow3, "log_power": _log_power, "exp3": _exp3}
"""Name -> ``f(epoch, *params)``."""


def _initial(name: str, y: np.ndarray) -> list[float]:
    top, first = float(y.max()), float(y[0])
    gap = max(top - first, 1e-3 * max(abs(top), 1.0))
    return {
        "pow3": [top + gap, 2 * gap, 0.5],
        "log_power": [top + gap, 0.0, 1.0],
        "exp3": [top + gap, 0.5, math.log(2 * gap) + 0.5],
    }[name]


@dataclass(frozen=True)
class CurvePrediction:
    """The predicted metric at the final epoch: ``mean``, ``std`` and the interval ``[low, high]`` (``z`` stds).

    ``per_model`` holds each fitted family's prediction and ``weights`` their weights; an empty ``per_model``
    means no family could be fitted and the prediction is the last observed value.
    """

    mean: float
    std: float
    low: float
    high: float
    per_model: dict[str, float]
    weights: dict[str, float]

    def probability_above(self, value: float) -> float:
        """``P(final > value)`` under the normal predictive ``N(mean, std)``."""
        if self.std <= 0:
            return float(self.mean > value)
        return 0.5 * math.erfc((value - self.mean) / (self.std * math.sqrt(2)))


def extrapolate(
    curve: Sequence[float],
    final_epoch: int,
    *,
    models: Sequence[str] = tuple(CURVE_MODELS),
    upper: float | None = None,
    z: float = 1.96,
) -> CurvePrediction:
    """Fit ``models`` to ``curve`` (one value per epoch, from epoch 1) and predict the value at ``final_epoch``.

    Args:
        curve: the observed metric (higher is better), at least 3 epochs.
        final_epoch: the epoch to predict (``>= len(curve)``).
        models: names of :data:`CURVE_MODELS`.
        upper: the metric's ceiling (1.0 or 100.0 for accuracies); predictions are clipped to it.
        z: the interval's half-width in standard deviations.

    Raises:
        ValueError: fewer than 3 points, a non-finite point, ``final_epoch < len(curve)`` or an unknown model.

    Example:
        >>> curve = [0.9 - 0.5 * e ** -0.8 for e in range(1, 6)]  # pow3 with c=0.9, a=0.5, alpha=0.8
        >>> round(extrapolate(curve, 50, models=["pow3"]).mean, 3), round(0.9 - 0.5 * 50 ** -0.8, 3)
        (0.878, 0.878)
    """
    y = np.asarray(curve, dtype=np.float64)
    if y.ndim != 1 or len(y) < 3:
        raise ValueError(f"a learning curve needs at least 3 epochs, got {len(y)} values")
    if not np.isfinite(y).all():
        raise ValueError(f"learning curve has non-finite values: {y.tolist()}")
    if final_epoch < len(y):
        raise ValueError(f"final_epoch {final_epoch} is before the last observed epoch {len(y)}")
    unknown = [m for m in models if m not in CURVE_MODELS]
    if unknown or not models:
        raise ValueError(f"unknown curve models {unknown or list(models)}; valid models: {', '.join(CURVE_MODELS)}")
    x = np.arange(1, len(y) + 1, dtype=np.float64)
    fits = {name: fit for name in models if (fit := _fit(name, x, y)) is not None}
    if not fits:
        last = float(y[-1])
        return CurvePrediction(last, 0.0, last, last, {}, {})
    bic = {name: bic for name, (_, bic, _) in fits.items()}
    best = min(bic.values())
    raw = {name: math.exp(-(value - best) / 2) for name, value in bic.items()}
    weights = {name: w / sum(raw.values()) for name, w in raw.items()}
    at_final = {
        name: float(CURVE_MODELS[name](np.array([float(final_epoch)]), *fit[0])[0]) for name, fit in fits.items()
    }
    if upper is not None:
        at_final = {name: min(value, upper) for name, value in at_final.items()}
    mean = sum(weights[n] * at_final[n] for n in fits)
    spread = sum(weights[n] * (at_final[n] - mean) ** 2 for n in fits)
    noise = sum(weights[n] * fits[n][2] for n in fits)
    std = math.sqrt(spread + noise)
    high = mean + z * std if upper is None else min(mean + z * std, upper)
    return CurvePrediction(mean, std, mean - z * std, high, at_final, weights)


def _fit(name: str, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float, float] | None:
    """``(params, BIC, residual variance)`` of one family, or ``None`` if the fit fails or is not finite."""
    try:
        from scipy.optimize import curve_fit
    except ImportError:
        raise ImportError("learning-curve fits need scipy: pip install 'lightning-nas[predictors]'") from None
    function = CURVE_MODELS[name]
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            params, _ = curve_fit(function, x, y, p0=_initial(name, y), maxfev=5000)
    except (RuntimeError, ValueError, TypeError):
        return None
    residual = y - function(x, *params)
    if not np.isfinite(params).all() or not np.isfinite(residual).all():
        return None
    n, k = len(y), len(params)
    variance = float(np.mean(residual**2))
    bic = n * math.log(max(variance, 1e-12)) + k * math.log(n)
    dof = max(n - k, 1)
    return params, bic, float(np.sum(residual**2) / dof)


def should_stop(
    curve: Sequence[float],
    best_so_far: float | None,
    final_epoch: int,
    *,
    min_epochs: int = 3,
    threshold: float = 0.05,
    upper: float | None = None,
) -> bool:
    """Whether a run whose metric so far is ``curve`` is unlikely to end above ``best_so_far``.

    The early-stopping rule of Domhan et al.: stop once ``P(final > best_so_far) < threshold`` under
    :func:`extrapolate`'s prediction. Never stops before ``min_epochs`` epochs, at or after ``final_epoch``, or
    without a best to beat. A multi-trial runner calls it after each epoch of a trial with the best final metric
    of the finished trials.

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
    if best_so_far is None or len(curve) < min_epochs or len(curve) >= final_epoch:
        return False
    prediction = extrapolate(curve, final_epoch, upper=upper)
    return prediction.probability_above(best_so_far) < threshold
