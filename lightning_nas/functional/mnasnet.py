r"""MnasNet's multi-objective reward (Tan et al., CVPR 2019, Eq. 2).

:math:`R = ACC \cdot (LAT / T)^w` with :math:`w = \alpha` if :math:`LAT \le T` else :math:`\beta`; the paper's soft
constraint uses :math:`\alpha = \beta = -0.07`, its hard constraint :math:`\alpha = 0, \beta = -1`. ``LAT`` may be any
cost: measured latency, FLOPs or parameters, with ``T`` the target in the same unit.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["mnasnet_reward"]


def mnasnet_reward(
    accuracy: Tensor | float, cost: Tensor | float, target: float, alpha: float = -0.07, beta: float = -0.07
) -> Tensor:
    r"""``accuracy * (cost / target) ** (alpha if cost <= target else beta)``.

    Args:
        accuracy: the model's accuracy (or any quality score).
        cost: its latency, FLOPs or parameter count.
        target: the target cost ``T`` (positive, same unit as ``cost``).
        alpha: exponent when the cost meets the target.
        beta: exponent when it exceeds the target.

    Raises:
        ValueError: a target or cost that is not positive.

    Example:
        >>> mnasnet_reward(0.8, cost=2e6, target=1e6)  # twice the target costs 2 ** -0.07, about 4.7%
        tensor(0.7621)
        >>> mnasnet_reward(0.8, cost=5e5, target=1e6, alpha=0.0, beta=-1.0)  # hard constraint met: no change
        tensor(0.8000)
    """
    if target <= 0:
        raise ValueError(f"the cost target must be positive, got {target}")
    accuracy = torch.as_tensor(accuracy, dtype=torch.float32)
    cost = torch.as_tensor(cost, dtype=torch.float32, device=accuracy.device)
    if bool((cost <= 0).any()):
        raise ValueError(f"the cost must be positive, got {cost.tolist()}")
    ratio = cost / target
    exponent = torch.where(ratio <= 1.0, torch.full_like(ratio, alpha), torch.full_like(ratio, beta))
    return accuracy * ratio**exponent
