"""Learned performance predictors: architecture encoding (plus optional proxy features) -> mean and uncertainty.

Every predictor fits on ``(archs, targets)`` and predicts ``(mean, std)`` arrays for new architectures:

=================  ==========================================================  ===============================
name               model                                                       uncertainty ``std``
=================  ==========================================================  ===============================
``ridge``          scikit-learn ``BayesianRidge`` (ridge, evidence-tuned)      posterior predictive std
``gp``             scikit-learn Gaussian process (Matern 5/2 + white noise)    posterior std
``random_forest``  scikit-learn random forest, 100 trees                       std over the trees
``lightgbm``       LightGBM: a mean model and the 16% / 84% quantile models    half the 16-84% interval
``xgboost``        XGBoost, 5 bagged models of different seeds                 std over the models
``mlp_ensemble``   5 torch MLPs of different seeds (BANANAS, White et al.)     std over the members
=================  ==========================================================  ===============================

The library models come with the ``predictors`` extra (``pip install "lightning-nas[predictors]"``) and are
imported only when used. Extra features (zero-cost proxies, for instance) are standardised and appended to the
encoding.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from lightning_nas.predictors.encodings import ENCODINGS, Encoding

__all__ = ["PREDICTORS", "NotFittedError", "Predictor", "make_predictor"]

PredictorName = Literal["ridge", "gp", "random_forest", "lightgbm", "xgboost", "mlp_ensemble"]
PREDICTORS: tuple[str, ...] = ("ridge", "gp", "random_forest", "lightgbm", "xgboost", "mlp_ensemble")


class NotFittedError(RuntimeError):
    """A predictor was queried before :meth:`Predictor.fit`."""


def _require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f"this predictor needs {module.split('.')[0]}: pip install 'lightning-nas[predictors]' "
            "(scikit-learn, lightgbm, xgboost)"
        ) from None


class Predictor:
    """Encoding + regression model; :meth:`fit` then :meth:`predict` ``(mean, std)``.

    Args:
        encoding: how architectures become vectors (its space is the only one accepted).
        model: one of :data:`PREDICTORS`.
        seed: seeds the model.
        num_extra_features: width of the extra features passed with every call (0: none).

    Example:
        >>> from lightning_nas.arch import Choice
        >>> from lightning_nas.predictors.encodings import OneHotEncoding
        >>> enc = OneHotEncoding([Choice("a", (0, 1, 2)), Choice("b", (0, 1))])
        >>> archs = [{"a": a, "b": b} for a in range(3) for b in range(2)]
        >>> p = Predictor(enc, "ridge").fit(archs, [a + 2 * b for a in range(3) for b in range(2)])
        >>> mean, std = p.predict([{"a": 2, "b": 1}])
        >>> round(float(mean[0]), 1), bool(std[0] > 0)
        (4.0, True)
    """

    def __init__(
        self, encoding: Encoding, model: PredictorName = "mlp_ensemble", *, seed: int = 0, num_extra_features: int = 0
    ) -> None:
        if model not in PREDICTORS:
            raise ValueError(f"unknown predictor {model!r}; valid predictors: {', '.join(PREDICTORS)}")
        if num_extra_features < 0:
            raise ValueError(f"num_extra_features must be >= 0, got {num_extra_features}")
        if not isinstance(encoding, Encoding):
            raise TypeError(
                f"encoding must be an Encoding (make_encoding(name, choices) builds one of {', '.join(ENCODINGS)}); "
                f"got {encoding!r}"
            )
        self.encoding, self.model, self.seed = encoding, model, seed
        self.num_extra_features = num_extra_features
        self._fitted: Any = None
        self._feature_mean = np.zeros(num_extra_features)
        self._feature_scale = np.ones(num_extra_features)

    @property
    def fitted(self) -> bool:
        return self._fitted is not None

    def fit(
        self,
        archs: Sequence[Mapping[str, Any]],
        targets: Sequence[float],
        extra_features: np.ndarray | None = None,
    ) -> Predictor:
        """Fit on ``archs`` and their ``targets`` (e.g. validation accuracies); returns ``self``."""
        y = np.asarray(targets, dtype=np.float64)
        if len(archs) != len(y) or len(y) < 2:
            raise ValueError(f"need >= 2 architectures and one target each; got {len(archs)} and {len(y)}")
        if not np.isfinite(y).all():
            raise ValueError(f"targets must be finite; got {y[~np.isfinite(y)][:3].tolist()}")
        if self.num_extra_features:
            extra = self._check_extra(extra_features, len(y))
            self._feature_mean = extra.mean(0)
            self._feature_scale = np.where(extra.std(0) > 0, extra.std(0), 1.0)
        x = self._inputs(archs, extra_features)
        self._fitted = _FITTERS[self.model](x, y, self.seed)
        return self

    def predict(
        self, archs: Sequence[Mapping[str, Any]], extra_features: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, std)`` arrays of the predicted targets of ``archs``.

        Raises:
            NotFittedError: before :meth:`fit`.
            ValueError: architectures of another space, or extra features of the wrong width.
        """
        if self._fitted is None:
            raise NotFittedError(f"the {self.model} predictor was queried before it was fitted; call fit() first")
        if not len(archs):
            return np.zeros(0), np.zeros(0)
        x = self._inputs(archs, extra_features)
        mean, std = self._fitted(x)
        return np.asarray(mean, dtype=np.float64), np.maximum(np.asarray(std, dtype=np.float64), 0.0)

    def _inputs(self, archs: Sequence[Mapping[str, Any]], extra_features: np.ndarray | None) -> np.ndarray:
        x = self.encoding.check_matrix(self.encoding.encode_many(archs))
        if not self.num_extra_features:
            if extra_features is not None:
                raise ValueError("extra_features given to a predictor built with num_extra_features=0")
            return x
        extra = (self._check_extra(extra_features, len(x)) - self._feature_mean) / self._feature_scale
        return np.concatenate([x, extra], axis=1)

    def _check_extra(self, extra: np.ndarray | None, rows: int) -> np.ndarray:
        if extra is None:
            raise ValueError(f"this predictor takes {self.num_extra_features} extra features per architecture")
        matrix = np.asarray(extra, dtype=np.float64)
        if matrix.shape != (rows, self.num_extra_features):
            raise ValueError(f"extra_features must have shape ({rows}, {self.num_extra_features}), got {matrix.shape}")
        bad = np.argwhere(~np.isfinite(matrix))
        if len(bad):
            row, column = (int(i) for i in bad[0])
            raise ValueError(
                f"extra_features must be finite; got {len(bad)} non-finite value(s), the first at row {row}, column "
                f"{column} ({matrix[row, column]})"
            )
        return matrix


def make_predictor(encoding: Encoding, model: PredictorName, *, seed: int = 0) -> Predictor:
    """A :class:`Predictor` of ``model`` over ``encoding`` (for factories that take names)."""
    return Predictor(encoding, model, seed=seed)


Fitted = Any  # a callable x -> (mean, std)


def _fit_ridge(x: np.ndarray, y: np.ndarray, seed: int) -> Fitted:
    linear = _require("sklearn.linear_model")
    model = linear.BayesianRidge().fit(x, y)
    return lambda q: model.predict(q, return_std=True)


def _fit_gp(x: np.ndarray, y: np.ndarray, seed: int) -> Fitted:
    gaussian_process = _require("sklearn.gaussian_process")
    kernels = gaussian_process.kernels
    kernel = kernels.ConstantKernel() * kernels.Matern(length_scale=2.0, nu=2.5)  # one length scale: fast
    model = gaussian_process.GaussianProcessRegressor(
        kernel + kernels.WhiteKernel(), normalize_y=True, random_state=seed
    ).fit(x, y)
    return lambda q: model.predict(q, return_std=True)


def _fit_forest(x: np.ndarray, y: np.ndarray, seed: int) -> Fitted:
    ensemble = _require("sklearn.ensemble")
    model = ensemble.RandomForestRegressor(n_estimators=100, random_state=seed, n_jobs=1).fit(x, y)

    def predict(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        per_tree = np.stack([tree.predict(q) for tree in model.estimators_])
        return per_tree.mean(0), per_tree.std(0)

    return predict


def _fit_lightgbm(x: np.ndarray, y: np.ndarray, seed: int) -> Fitted:
    lightgbm = _require("lightgbm")
    common = {"n_estimators": 200, "learning_rate": 0.05, "num_leaves": 15, "min_child_samples": 2}
    common.update({"random_state": seed, "verbose": -1, "n_jobs": 1})
    mean = lightgbm.LGBMRegressor(**common).fit(x, y)
    low = lightgbm.LGBMRegressor(objective="quantile", alpha=0.16, **common).fit(x, y)
    high = lightgbm.LGBMRegressor(objective="quantile", alpha=0.84, **common).fit(x, y)
    return lambda q: (mean.predict(q), (high.predict(q) - low.predict(q)) / 2)


def _fit_xgboost(x: np.ndarray, y: np.ndarray, seed: int) -> Fitted:
    xgboost = _require("xgboost")
    models = [
        xgboost.XGBRegressor(
            n_estimators=200, learning_rate=0.05, max_depth=4, subsample=0.8, random_state=seed + k, n_jobs=1
        ).fit(x, y)
        for k in range(5)
    ]

    def predict(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        outputs = np.stack([m.predict(q) for m in models])
        return outputs.mean(0), outputs.std(0)

    return predict


def _fit_mlp_ensemble(
    x: np.ndarray, y: np.ndarray, seed: int, members: int = 5, hidden: int = 32, steps: int = 200
) -> Fitted:
    """Five MLPs (two hidden ReLU layers), full-batch Adam on standardised targets, each from its own seed.

    The members train side by side as one batched network (``[members, ...]`` weights, one Adam step for all);
    member ``k``'s initial weights come from seed ``1000 * seed + k``, its updates only from its own loss.
    """
    y_mean, y_scale = float(y.mean()), float(y.std()) or 1.0
    inputs = torch.as_tensor(x, dtype=torch.float32)
    targets = torch.as_tensor((y - y_mean) / y_scale, dtype=torch.float32)
    layers: list[list[torch.Tensor]] = [[], [], []]
    for k in range(members):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed * 1000 + k)
            member = [nn.Linear(x.shape[1], hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, 1)]
        for layer, linear in zip(layers, member):
            layer.append(torch.cat([linear.weight.detach().T, linear.bias.detach()[None]], 0))
    params = [torch.stack(layer).requires_grad_(True) for layer in layers]  # [members, in + 1, out]

    def forward(q: torch.Tensor) -> torch.Tensor:
        h = q.expand(members, *q.shape)
        for i, weight in enumerate(params):
            h = torch.baddbmm(weight[:, -1:], h, weight[:, :-1])
            h = torch.relu(h) if i < len(params) - 1 else h
        return h.squeeze(-1)  # [members, n]

    optimizer = torch.optim.Adam(params, lr=0.01, weight_decay=1e-4)
    for _ in range(steps):
        optimizer.zero_grad()
        # the sum over members of each member's mean squared error: no member's gradient depends on another's
        loss = ((forward(inputs) - targets) ** 2).mean(1).sum()
        loss.backward()
        optimizer.step()

    @torch.no_grad()
    def predict(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        outputs = forward(torch.as_tensor(q, dtype=torch.float32)).double().numpy() * y_scale + y_mean
        return outputs.mean(0), outputs.std(0)

    return predict


_FITTERS = {
    "ridge": _fit_ridge,
    "gp": _fit_gp,
    "random_forest": _fit_forest,
    "lightgbm": _fit_lightgbm,
    "xgboost": _fit_xgboost,
    "mlp_ensemble": _fit_mlp_ensemble,
}
