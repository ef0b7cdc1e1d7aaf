"""The ask/tell loop the predictor-guided strategy tests share, on an additive objective with a known optimum."""

from __future__ import annotations

from typing import Any

from lightning_nas.search import SearchStrategy


def additive_value(arch: dict[str, Any]) -> float:
    """``sum_k (k + 1) * choice_k``: the best architecture takes the largest candidate everywhere."""
    return float(sum((k + 1) * v for k, v in enumerate(arch.values())))


def ask_and_tell(strategy: SearchStrategy, steps: int) -> list[dict[str, Any]]:
    """Run ``steps`` ask/tell rounds on :func:`additive_value`; the architectures asked, in order."""
    asked = []
    for _ in range(steps):
        arch = strategy.ask()
        strategy.tell(arch, {"accuracy": additive_value(arch)})
        asked.append(arch)
    return asked
