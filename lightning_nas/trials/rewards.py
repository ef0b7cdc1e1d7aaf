"""Rewards computed from a finished trial's metrics before the strategy is told (``run_trials(reward=...)``).

A reward returns extra metrics; the strategy's ``metric`` names the one it optimises (``"reward"``). Several
objectives need no reward: give NSGA-II ``objectives={"accuracy": "max", "latency_ms": "min"}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from lightning_nas.functional.mnasnet import mnasnet_reward

__all__ = ["MnasNetReward"]


@dataclass(frozen=True)
class MnasNetReward:
    r"""MnasNet's reward ``ACC(m) x [COST(m) / T]^w`` (Tan et al., CVPR 2019, Eq. 2) as metric ``name``.

    Args:
        target: ``T``, the target cost, in the unit of ``cost``.
        cost: the cost metric: ``"latency_ms"`` (measured), ``"flops"`` or ``"params"``.
        alpha: exponent when the cost meets the target; ``beta``: when it exceeds it. The defaults are the paper's
            soft constraint (-0.07, -0.07); :meth:`hard` gives its hard constraint (0, -1).
        accuracy: the accuracy metric.
        name: the metric the reward is reported as.

    Example:
        >>> round(MnasNetReward(target=10.0)({"accuracy": 0.8, "latency_ms": 20.0})["reward"], 4)  # 0.8 * 2 ** -0.07
        0.7621
    """

    target: float
    cost: str = "latency_ms"
    alpha: float = -0.07
    beta: float = -0.07
    accuracy: str = "accuracy"
    name: str = "reward"

    @classmethod
    def hard(cls, target: float, cost: str = "latency_ms") -> MnasNetReward:
        """The hard constraint: no gain below the target, ``(COST / T)^-1`` above it."""
        return cls(target=target, cost=cost, alpha=0.0, beta=-1.0)

    def __call__(self, metrics: Mapping[str, float]) -> dict[str, float]:
        for key in (self.accuracy, self.cost):
            if key not in metrics:
                raise KeyError(f"the MnasNet reward needs metric {key!r}; the trial reported {sorted(metrics)}")
        value = mnasnet_reward(metrics[self.accuracy], metrics[self.cost], self.target, self.alpha, self.beta)
        return {self.name: float(value)}
