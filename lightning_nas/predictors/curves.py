"""Learning-curve extrapolation (Domhan et al., IJCAI 2015): predict a run's final accuracy from its first epochs.

Three parametric families of Domhan et al.'s Table 1 are fitted by least squares to the observed curve
``y_1 .. y_t`` (epochs ``x = 1 .. t``):

- ``pow3``: ``c - a * x^(-alpha)``;
- ``log_power``: ``a / (1 + (x / e^b)^(-c))``;
- ``exp3``: ``c - exp(b - a * x)``.

Each observation is ``y_x = f(x; theta) + eps`` with ``eps ~ N(0, sigma^2)``. The predictive distribution of the
value observed at ``final_epoch`` is sampled, family by family, from the linearised (Laplace) posterior of the
least-squares fit:

1. ``sigma^2 ~ nu s^2 / chi2_nu`` (scaled inverse chi-square), pooling the fit's residuals
   (``RSS``, ``t - k`` degrees of freedom) with ``nu0`` pseudo-observations of the prior noise ``s0`` (the
   ``noise`` argument; without it, and with no residual degree of freedom, the second differences of the curve);
2. ``theta ~ N(theta_hat, sigma^2 (J^T J)^-1)`` with ``J`` the Jacobian of the fit at ``theta_hat``; a draw
   whose exact (non-linear) residuals exceed the linear model's 99.9% region,
   ``(RSS(theta) - RSS(theta_hat)) / sigma^2 > chi2_k(0.999)``, is dropped (the linearisation has failed there);
3. Domhan et al.'s priors: a sampled curve may not fall after the last observed epoch, nor end above ``upper``;
   samples that break them are rejected;
4. ``y_final = f(final_epoch; theta) + N(0, sigma^2)``, clipped to ``upper``.

The families are mixed with weights ``exp(-RSS / (2 s^2) - k log(t) / 2)`` (BIC under one shared noise level, so
that families fitting within the noise keep comparable weights) times the share of their samples the priors
accept. :func:`~lightning_nas.predictors.should_stop` is Domhan et al.'s rule: stop when
``P(y_final > best_so_far) < threshold``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["CURVE_MODELS", "CurvePrediction", "extrapolate"]

CurveModel = Callable[..., np.ndarray]
PRIOR_DOF = 1.0
"""``nu0``: pseudo-observations of the prior noise level pooled with the residuals."""


def _pow3(x: np.ndarray, c: float, a: float, alpha: float) -> np.ndarray:
    return c - a * np.power(x, -alpha)


def _log_power(x: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    return a / (1.0 + np.power(x / np.exp(np.clip(b, -50.0, 50.0)), -c))


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
    """The predicted metric at the final epoch.

    Attributes:
        mean: the weighted point prediction (each family's least-squares fit at the final epoch).
        std: the standard deviation of the predictive samples.
        low, high: the predictive interval: the samples' quantiles at ``Phi(-z)`` and ``Phi(z)``.
        per_model: each fitted family's point prediction (empty: no family fitted, the prediction is the last
            observed value).
        weights: the families' mixture weights.
        params: each family's least-squares parameters (in :data:`CURVE_MODELS` order).
        noise: the posterior median of the observation noise ``sigma`` of the best-weighted family.
        samples: sorted draws of the final value from the predictive distribution.
    """

    mean: float
    std: float
    low: float
    high: float
    per_model: dict[str, float]
    weights: dict[str, float]
    params: dict[str, tuple[float, ...]] = field(default_factory=dict)
    noise: float = 0.0
    samples: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False, compare=False)

    def probability_above(self, value: float) -> float:
        """``P(final > value)``: the share of predictive samples above ``value``."""
        if len(self.samples) == 0:
            return float(self.mean > value)
        return float(len(self.samples) - np.searchsorted(self.samples, value, side="right")) / len(self.samples)


@dataclass(frozen=True)
class _Fit:
    params: np.ndarray
    rss: float
    jacobian: np.ndarray


def extrapolate(
    curve: Sequence[float],
    final_epoch: int,
    *,
    models: Sequence[str] = tuple(CURVE_MODELS),
    upper: float | None = None,
    z: float = 1.96,
    noise: float | None = None,
    num_samples: int = 4000,
    seed: int = 0,
) -> CurvePrediction:
    """Fit ``models`` to ``curve`` (one value per epoch, from epoch 1) and predict the value at ``final_epoch``.

    Args:
        curve: the observed metric (higher is better), at least 3 epochs.
        final_epoch: the epoch to predict (``>= len(curve)``).
        models: names of :data:`CURVE_MODELS`.
        upper: the metric's ceiling (1.0 or 100.0 for accuracies); no sample ends above it.
        z: the interval's half-width in standard-normal quantiles (1.96: a 95% interval).
        noise: the prior standard deviation of one epoch's observation noise (for an accuracy measured on ``n``
            images, at least ``sqrt(p (1 - p) / n)``); ``None`` lets the residuals (or, with as many parameters
            as epochs, the second differences of the curve) decide.
        num_samples: predictive samples drawn per family.
        seed: seeds the sampling (the prediction is deterministic given it).

    Raises:
        ValueError: fewer than 3 points, a non-finite point, ``final_epoch < len(curve)``, an unknown model, a
            negative ``noise`` or fewer than 10 samples.

    Example:
        >>> curve = [0.9 - 0.5 * e ** -0.8 for e in range(1, 6)]  # pow3 with c=0.9, a=0.5, alpha=0.8
        >>> prediction = extrapolate(curve, 50, models=["pow3"])
        >>> round(prediction.mean, 3), round(0.9 - 0.5 * 50 ** -0.8, 3)
        (0.878, 0.878)
        >>> [round(p, 3) for p in prediction.params["pow3"]]
        [0.9, 0.5, 0.8]
    """
    y = _check(curve, final_epoch, models, noise, num_samples)
    x = np.arange(1, len(y) + 1, dtype=np.float64)
    fits = {name: fit for name in models if (fit := _fit(name, x, y)) is not None}
    if not fits:
        last = float(y[-1])
        return CurvePrediction(last, 0.0, last, last, {}, {})
    prior = _prior_noise(y, noise, min(len(f.params) for f in fits.values()))
    rng = np.random.default_rng(seed)
    at_final = {name: _predict(name, fit.params, final_epoch, upper) for name, fit in fits.items()}
    scale = min(_noise_scale(fit, len(y), prior)[1] for fit in fits.values())
    draws, log_weights, noises = {}, {}, {}
    for name, fit in fits.items():
        draws[name], accepted, noises[name] = _sample(name, fit, y, final_epoch, prior, upper, num_samples, rng)
        log_weights[name] = _log_evidence(fit, len(y), scale) + math.log(max(accepted, 1e-12))
    top = max(log_weights.values())
    raw = {name: math.exp(value - top) for name, value in log_weights.items()}
    weights = {name: value / sum(raw.values()) for name, value in raw.items()}
    mean = sum(weights[n] * at_final[n] for n in fits)
    samples = _mixture(draws, weights, num_samples, rng)
    if len(samples) == 0:  # every sample broke the priors: the point prediction alone
        samples = np.array([mean])
    tail = 0.5 * math.erfc(z / math.sqrt(2))
    low, high = (float(v) for v in np.quantile(samples, [tail, 1 - tail]))
    params = {name: tuple(float(p) for p in fit.params) for name, fit in fits.items()}
    noise_of_best = noises[max(weights, key=weights.__getitem__)]
    return CurvePrediction(
        mean, float(samples.std()), low, high, at_final, weights, params, noise_of_best, np.sort(samples)
    )


def _check(
    curve: Sequence[float], final_epoch: int, models: Sequence[str], noise: float | None, num_samples: int
) -> np.ndarray:
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
    if noise is not None and not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite standard deviation >= 0, got {noise}")
    if num_samples < 10:
        raise ValueError(f"num_samples must be >= 10, got {num_samples}")
    return y


def _fit(name: str, x: np.ndarray, y: np.ndarray) -> _Fit | None:
    """The least-squares fit of one family, or ``None`` if it fails or is not finite."""
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
    jacobian = _jacobian(function, x, params)
    if not (np.isfinite(params).all() and np.isfinite(residual).all() and np.isfinite(jacobian).all()):
        return None
    return _Fit(params, float(np.sum(residual**2)), jacobian)


def _jacobian(function: CurveModel, x: np.ndarray, params: np.ndarray) -> np.ndarray:
    """``d f(x_i) / d theta_j`` by central differences."""
    columns = []
    for j in range(len(params)):
        step = 1e-6 * max(abs(float(params[j])), 1.0)
        up, down = params.copy(), params.copy()
        up[j] += step
        down[j] -= step
        with np.errstate(all="ignore"):
            columns.append((function(x, *up) - function(x, *down)) / (2 * step))
    return np.stack(columns, axis=1)


def _prior_noise(y: np.ndarray, noise: float | None, num_params: int) -> float | None:
    """``s0``: the given noise, else (no residual degree of freedom) the curve's second differences."""
    if noise is not None:
        return noise
    if len(y) > num_params:
        return None
    second = np.diff(y, n=2)  # Var(y[t+1] - 2 y[t] + y[t-1]) = 6 sigma^2 for independent noise on a line
    return float(math.sqrt(np.mean(second**2) / 6))


def _noise_scale(fit: _Fit, n: int, prior: float | None) -> tuple[float, float]:
    """``(nu, s^2)`` of the scaled inverse chi-square posterior of ``sigma^2``."""
    dof = max(n - len(fit.params), 0)
    nu0, s0 = (PRIOR_DOF, prior) if prior is not None else (0.0, 0.0)
    nu = nu0 + dof
    if nu == 0:
        return 0.0, 0.0
    return nu, (nu0 * s0**2 + fit.rss) / nu


def _log_evidence(fit: _Fit, n: int, scale: float) -> float:
    """BIC-style log weight under the shared noise level ``scale`` (``s^2``)."""
    penalty = 0.5 * len(fit.params) * math.log(n)
    if scale <= 0:
        return -penalty if fit.rss <= 1e-20 else -math.inf
    return -fit.rss / (2 * scale) - penalty


def _sample(
    name: str,
    fit: _Fit,
    y: np.ndarray,
    final_epoch: int,
    prior: float | None,
    upper: float | None,
    num_samples: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, float, float]:
    """``(final values, share of the posterior the priors keep, median sigma)`` of one family's predictive."""
    n = len(y)
    nu, scale = _noise_scale(fit, n, prior)
    if scale <= 0:  # an exact fit with no noise anywhere: the point prediction
        point = _predict(name, fit.params, final_epoch, upper)
        return np.full(num_samples, point), 1.0, 0.0
    sigma = np.sqrt(nu * scale / rng.chisquare(nu, size=num_samples))
    unit = rng.standard_normal((num_samples, len(fit.params)))
    theta = fit.params + sigma[:, None] * (unit @ _unit_covariance_root(fit.jacobian).T)
    function = CURVE_MODELS[name]
    x = np.arange(1, n + 1, dtype=np.float64)[:, None]
    with np.errstate(all="ignore"):
        excess = (np.sum((y[:, None] - function(x, *theta.T)) ** 2, axis=0) - fit.rss) / sigma**2
        at_last = function(np.float64(n), *theta.T)
        at_final = function(np.float64(final_epoch), *theta.T)
        keep = np.isfinite(excess) & np.isfinite(at_last) & np.isfinite(at_final)
        keep &= (excess <= _trust_region(len(fit.params))) & (at_final >= at_last)
        if upper is not None:
            keep &= at_final <= upper
    values = at_final[keep] + sigma[keep] * rng.standard_normal(int(keep.sum()))
    if upper is not None:
        values = np.minimum(values, upper)
    return values, float(keep.mean()), float(np.median(sigma))


def _trust_region(num_params: int) -> float:
    from scipy.stats import chi2

    return float(chi2.ppf(0.999, num_params))


def _unit_covariance_root(jacobian: np.ndarray) -> np.ndarray:
    """``R`` with ``R R^T = (J^T J)^+``; flat directions get the inverse of a small multiple of the largest one."""
    values, vectors = np.linalg.eigh(jacobian.T @ jacobian)
    floor = max(float(values.max()), 1e-12) * 1e-10
    return vectors * (1.0 / np.sqrt(np.maximum(values, floor)))


def _mixture(
    draws: dict[str, np.ndarray], weights: dict[str, float], num_samples: int, rng: np.random.Generator
) -> np.ndarray:
    """``num_samples`` draws of the weighted mixture of the families' accepted samples."""
    parts = []
    for name, values in draws.items():
        count = int(round(weights[name] * num_samples))
        if count and len(values):
            parts.append(rng.choice(values, size=count, replace=True))
    return np.concatenate(parts) if parts else np.zeros(0)


def _predict(name: str, params: np.ndarray, epoch: int, upper: float | None) -> float:
    value = float(CURVE_MODELS[name](np.array([float(epoch)]), *params)[0])
    return value if upper is None else min(value, upper)
