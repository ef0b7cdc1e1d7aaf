"""Performance prediction: zero-cost proxies, learned predictors over encodings, learning-curve extrapolation."""

from lightning_nas.predictors.curve_regression import CurveRegression
from lightning_nas.predictors.curves import CURVE_MODELS, CurvePrediction, extrapolate
from lightning_nas.predictors.encodings import (
    ENCODINGS,
    CellAdjacencyEncoding,
    Encoding,
    OneHotEncoding,
    PathEncoding,
    make_encoding,
)
from lightning_nas.predictors.learned import PREDICTORS, NotFittedError, Predictor, make_predictor
from lightning_nas.predictors.networks import ALL_PROXIES, build_network, score_architecture
from lightning_nas.predictors.proxies import (
    PROXIES,
    ProxyError,
    compute_proxies,
    fisher,
    grad_norm,
    jacob_cov,
    naswot,
    naswot_kernel,
    naswot_logdet,
    num_params,
    snip,
    synflow,
)
from lightning_nas.predictors.stopping import MIN_FINISHED, PREDICTOR_CHOICES, predict_final, should_stop

__all__ = [
    "CURVE_MODELS",
    "CurvePrediction",
    "CurveRegression",
    "MIN_FINISHED",
    "PREDICTOR_CHOICES",
    "extrapolate",
    "predict_final",
    "should_stop",
    "PREDICTORS",
    "ENCODINGS",
    "CellAdjacencyEncoding",
    "Encoding",
    "make_encoding",
    "NotFittedError",
    "OneHotEncoding",
    "PathEncoding",
    "Predictor",
    "make_predictor",
    "ALL_PROXIES",
    "PROXIES",
    "ProxyError",
    "build_network",
    "compute_proxies",
    "fisher",
    "grad_norm",
    "jacob_cov",
    "naswot",
    "naswot_kernel",
    "naswot_logdet",
    "num_params",
    "score_architecture",
    "snip",
    "synflow",
]
