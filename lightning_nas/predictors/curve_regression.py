"""Learning curves calibrated on finished runs (Baker et al., ICLR 2018 workshop): a run's final value regressed on
its first epochs.

Baker et al.'s sequential regression models fit one regression per number of observed epochs ``k`` on the curves
of the runs that already finished, and predict a new run's final value from its first ``k`` values. Here the
regression is a ridge regression (scikit-learn ``RidgeCV``) of the gain still to come,

    y_T - y_k = b + sum_j w_j (y_j - m_j) / s_j,    j = 1 .. k,

with ``m_j``, ``s_j`` the finished runs' mean and standard deviation at epoch ``j`` and the penalty chosen by
exact leave-one-out error over a grid. Regressing the gain rather than ``y_T`` makes the heavily regularised
limit "the last observed value plus the finished runs' mean gain", so few finished runs give a sensible ranking and
more of them let the weights average out the epoch-to-epoch noise and learn how the gain depends on the curve.

The predictive distribution is ``y_T = prediction + s * t_nu`` (Baker et al. use a Gaussian with the
cross-validation error; the t widens it while few runs have finished):

- ``s`` is the root-mean-square leave-one-out error of the ``n`` finished runs, each run's error taken at the
  penalty chosen without it (the leave-one-out errors of every penalty come exactly and at once from ``RidgeCV``),
  so that choosing the penalty does not make ``s`` optimistic;
- ``nu = n - 1 - df`` (at least 1), with ``df = sum_i d_i^2 / (d_i^2 + alpha)`` the ridge fit's effective number
  of parameters (``d_i``: the singular values of the centred features; Hastie et al., ESL, Eq. 3.50).

Unlike :func:`~lightning_nas.predictors.extrapolate`, it needs no curve family: whatever shape the learning-rate
schedule gives the curves, the finished runs had it too.

Other per-epoch series of the same runs can join the features (``extra``; Baker et al. add more than the curve
itself): each series' first ``k`` values, standardised the same way, enter the sum beside the curve's. The mean
training loss of each epoch (``"train_loss"``; Ru et al., NeurIPS 2021, rank architectures by the sum of training
losses) is averaged over every training batch, so it carries far less sampling noise than an accuracy measured on
a few thousand validation images.

``window`` keeps only the last ``window`` observed epochs of the curve and of each series as features: with few
finished runs a regression on the latest values (``window=1``: the last accuracy, and e.g. the last validation and
training losses) has fewer weights to learn than one on the whole curve.

Static features of each run (``features``: numbers known before it starts, such as its learning rate, its
number of parameters or an encoding of its architecture; Baker et al.'s hyperparameter and architecture features)
join the sum too, standardised the same way. Where the runs of a search differ in how they train, the curves cross,
and the gain still to come depends on the run: a run at a large learning rate is noisier early and gains more once
the schedule anneals it. The last value cannot know that; a feature can tell the regression.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from lightning_nas.predictors.curves import CurvePrediction

__all__ = ["CurveRegression"]

ALPHAS: tuple[float, ...] = tuple(float(a) for a in np.logspace(-3, 4, 15))
"""The ridge penalties tried (on standardised features), chosen per ``k`` by leave-one-out error."""


Series = Mapping[str, Sequence[Sequence[float]]]
"""Named per-epoch series of several runs: ``{name: [run 1's values, run 2's values, ...]}``."""


@dataclass(frozen=True)
class _Model:
    """The ridge regression of ``y_T - y_k`` on the first ``k`` standardised values (curve, then each extra), then
    the standardised static features."""

    intercept: float
    weights: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    loo_rmse: float
    alpha: float
    dof: float


class CurveRegression:
    """Predict a run's value at the finished runs' last epoch from its first epochs (Baker et al. 2018).

    Args:
        finished: the curves of finished runs (one value per epoch from epoch 1, all of the same length ``T``;
            at least 3 runs). The last value of each is its final value.
        extra: more per-epoch series of the same runs, by name (e.g. ``{"train_loss": [...]}``): one series per
            finished run, in the same order, ``T`` values each. :meth:`predict` then needs the same series.
        features: static features of the same runs, one row of numbers per finished run in the same order (e.g.
            ``[[math.log10(lr)], ...]``). :meth:`predict` then needs the run's row of the same length.
        alphas: ridge penalties to choose from.
        window: read only the last ``window`` observed epochs of the curve and of each series (``None``: all).

    Raises:
        ValueError: fewer than 3 curves, curves of different lengths or shorter than 2 epochs, non-finite values,
            an extra series whose runs or lengths differ from the curves', feature rows that are not one per run
            or not all of one length, a non-positive penalty or a ``window`` below 1.

    Example:
        >>> finished = [[0.5, 0.6, 0.7], [0.3, 0.4, 0.5], [0.6, 0.7, 0.8], [0.4, 0.5, 0.6]]  # each gains 0.1 later
        >>> prediction = CurveRegression(finished).predict([0.45, 0.55])
        >>> round(prediction.mean, 3)
        0.65
    """

    def __init__(
        self,
        finished: Sequence[Sequence[float]],
        *,
        extra: Series | None = None,
        features: Sequence[Sequence[float]] | None = None,
        alphas: Sequence[float] = ALPHAS,
        window: int | None = None,
    ) -> None:
        lengths = sorted({len(curve) for curve in finished})
        if len(finished) < 3:
            raise ValueError(f"a curve regression needs at least 3 finished curves, got {len(finished)}")
        if len(lengths) != 1 or lengths[0] < 2:
            raise ValueError(f"finished curves must share one length of at least 2 epochs, got lengths {lengths}")
        curves = np.asarray(finished, dtype=np.float64)
        if not np.isfinite(curves).all():
            raise ValueError("finished curves have non-finite values")
        if not alphas or min(alphas) <= 0:
            raise ValueError(f"alphas must be positive ridge penalties, got {list(alphas)}")
        if window is not None and window < 1:
            raise ValueError(f"window must be >= 1 epoch (or None: every observed epoch), got {window}")
        self.curves, self.window = curves, window
        self.extra: dict[str, np.ndarray] = {}
        for name, series in (extra or {}).items():
            shapes = sorted({len(values) for values in series})
            if len(series) != len(finished) or shapes != [curves.shape[1]]:
                raise ValueError(
                    f"extra series {name!r} must hold {len(finished)} runs of {curves.shape[1]} values (like the "
                    f"finished curves), got {len(series)} runs of lengths {shapes}"
                )
            values = np.asarray(series, dtype=np.float64)
            if not np.isfinite(values).all():
                raise ValueError(f"extra series {name!r} of the finished runs has non-finite values")
            self.extra[name] = values
        self.features: np.ndarray | None = None
        if features is not None:
            widths = sorted({len(row) for row in features})
            if len(features) != len(finished) or len(widths) != 1 or widths[0] < 1:
                raise ValueError(
                    f"features must hold one row per finished run ({len(finished)}), all of one length >= 1; got "
                    f"{len(features)} rows of lengths {widths}"
                )
            self.features = np.asarray(features, dtype=np.float64)
            if not np.isfinite(self.features).all():
                raise ValueError("features of the finished runs have non-finite values")
        self.alphas = tuple(float(a) for a in alphas)
        self._models: dict[int, _Model] = {}

    @property
    def final_epoch(self) -> int:
        """``T``: the epoch predicted (the finished runs' length)."""
        return int(self.curves.shape[1])

    @property
    def num_runs(self) -> int:
        """``n``: the finished runs the regression learns from."""
        return int(self.curves.shape[0])

    @property
    def extra_names(self) -> tuple[str, ...]:
        """The extra series the regression was given (and :meth:`predict` needs)."""
        return tuple(self.extra)

    @property
    def num_features(self) -> int:
        """The length of the static feature row the regression was given (0: none) and :meth:`predict` needs."""
        return 0 if self.features is None else int(self.features.shape[1])

    def predict(
        self,
        curve: Sequence[float],
        *,
        extra: Mapping[str, Sequence[float]] | None = None,
        features: Sequence[float] | None = None,
        upper: float | None = None,
        z: float = 1.96,
        num_samples: int = 1000,
    ) -> CurvePrediction:
        """The predictive distribution of ``curve``'s value at :attr:`final_epoch`.

        Args:
            curve: the observed values from epoch 1 (1 to ``T`` of them).
            extra: the run's values of every series in :attr:`extra_names` (at least ``len(curve)`` each; the
                first ``len(curve)`` are used).
            features: the run's static features, :attr:`num_features` numbers (only if the regression has them).
            upper: the metric's ceiling; samples above it are set to it.
            z: the interval's half-width in standard-normal quantiles (1.96: a 95% interval).
            num_samples: the predictive distribution's quantiles at ``(i + 0.5) / num_samples``, kept as
                ``samples`` (``probability_above`` is exact to ``1 / num_samples``).

        Raises:
            ValueError: an empty curve, one longer than ``T``, non-finite values, fewer than 10 samples, extra
                series that are missing, unknown or shorter than the curve, or features that are missing, given to
                a regression without them, or of another length.
        """
        y = np.asarray(curve, dtype=np.float64)
        if y.ndim != 1 or not 1 <= len(y) <= self.final_epoch:
            raise ValueError(
                f"curve must be a flat list of 1 to {self.final_epoch} values (the finished runs' length), got "
                + (f"{len(y)}" if y.ndim == 1 else f"an array of shape {y.shape}")
            )
        if not np.isfinite(y).all():
            raise ValueError(f"learning curve has non-finite values: {y.tolist()}")
        if num_samples < 10:
            raise ValueError(f"num_samples must be >= 10, got {num_samples}")
        given = dict(extra or {})
        if sorted(given) != sorted(self.extra):
            raise ValueError(f"this regression was fitted with extra series {sorted(self.extra)}; got {sorted(given)}")
        observed = [y]
        for name in self.extra:
            values = np.asarray(given[name], dtype=np.float64)
            if values.ndim != 1 or len(values) < len(y):
                raise ValueError(
                    f"extra series {name!r} needs at least {len(y)} values (the curve's), got {len(values)}"
                )
            if not np.isfinite(values[: len(y)]).all():
                raise ValueError(f"extra series {name!r} has non-finite values: {values[: len(y)].tolist()}")
            observed.append(values[: len(y)])
        start = self._start(len(y))
        observed = [values[start:] for values in observed]
        if (features is None) != (self.features is None):
            raise ValueError(
                f"this regression was fitted with {self.num_features} static features per run; got "
                f"{'none' if features is None else len(features)}"
            )
        if features is not None:
            row = np.asarray(features, dtype=np.float64)
            if row.shape != (self.num_features,):
                raise ValueError(f"features must be {self.num_features} numbers, got shape {tuple(row.shape)}")
            if not np.isfinite(row).all():
                raise ValueError(f"features have non-finite values: {row.tolist()}")
            observed.append(row)
        last = float(y[-1])
        if len(y) == self.final_epoch:
            return CurvePrediction(last, 0.0, last, last, {"regression": last}, {"regression": 1.0})
        model = self._model(len(y))
        mean = last + model.intercept + float(((np.concatenate(observed) - model.mean) / model.scale) @ model.weights)
        from scipy.special import stdtrit  # the Student t's quantile function

        samples = mean + model.loo_rmse * stdtrit(model.dof, (np.arange(num_samples) + 0.5) / num_samples)
        half = model.loo_rmse * float(stdtrit(model.dof, 0.5 * (1 + math.erf(z / math.sqrt(2)))))
        low, high = mean - half, mean + half
        if upper is not None:
            samples, mean = np.minimum(samples, upper), min(mean, upper)
            low, high = min(low, upper), min(high, upper)
        params = {"regression": (model.intercept, *model.weights.tolist())}
        return CurvePrediction(
            mean, float(samples.std()), low, high, {"regression": mean}, {"regression": 1.0}, params,
            model.loo_rmse, samples,
        )  # fmt: skip

    def _start(self, k: int) -> int:
        """The first epoch index read after ``k`` observed epochs."""
        return 0 if self.window is None else max(k - self.window, 0)

    def _model(self, k: int) -> _Model:
        if k not in self._models:
            self._models[k] = self._fit(k)
        return self._models[k]

    def _fit(self, k: int) -> _Model:
        from sklearn.linear_model import RidgeCV

        start = self._start(k)
        observed = np.concatenate(
            [
                self.curves[:, start:k],
                *(values[:, start:k] for values in self.extra.values()),
                *([] if self.features is None else [self.features]),
            ],
            axis=1,
        )
        target = self.curves[:, -1] - self.curves[:, k - 1]
        mean, scale = observed.mean(0), observed.std(0)
        scale = np.where(scale > 1e-12, scale, 1.0)
        features = (observed - mean) / scale
        ridge = RidgeCV(alphas=np.asarray(self.alphas), store_cv_results=True).fit(features, target)
        errors = np.asarray(ridge.cv_results_)  # [runs, alphas]: squared leave-one-out errors
        without = np.argmin(errors.sum(0)[None, :] - errors, axis=1)  # the penalty chosen without each run
        loo_rmse = math.sqrt(float(np.mean(errors[np.arange(len(target)), without])))
        alpha = float(ridge.alpha_)
        singular = np.linalg.svd(features - features.mean(0), compute_uv=False)
        dof = max(len(target) - 1 - float(np.sum(singular**2 / (singular**2 + alpha))), 1.0)
        weights = np.asarray(ridge.coef_, dtype=np.float64)
        return _Model(float(ridge.intercept_), weights, mean, scale, loo_rmse, alpha, dof)
