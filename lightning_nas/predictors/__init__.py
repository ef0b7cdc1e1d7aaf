"""Performance prediction: zero-cost proxies, learned predictors over encodings, learning-curve extrapolation."""

from lightning_nas.predictors.networks import ALL_PROXIES, build_network, score_architecture
from lightning_nas.predictors.proxies import (
    PROXIES,
    ProxyError,
    compute_proxies,
    grad_norm,
    jacob_cov,
    naswot,
    naswot_kernel,
    naswot_logdet,
    num_params,
    snip,
    synflow,
)

__all__ = [
    "ALL_PROXIES",
    "PROXIES",
    "ProxyError",
    "build_network",
    "compute_proxies",
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
