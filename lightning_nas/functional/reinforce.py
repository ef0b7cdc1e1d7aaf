r"""REINFORCE with a moving-average baseline (Williams, 1992), as ENAS and the NAS-Bench-201 baselines use it.

For a policy :math:`p_\theta` over architectures and a reward :math:`R`, the gradient of the expected reward is
:math:`E[(R - b)\nabla_\theta \log p_\theta(a)]` for any baseline :math:`b` that does not depend on the action.
:func:`reinforce_loss` is the surrogate whose gradient is that estimate (negated, so an optimizer that
minimises it ascends the expected reward), plus an optional entropy bonus.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["reinforce_loss", "update_baseline"]


def reinforce_loss(
    log_prob: Tensor,
    reward: Tensor | float,
    baseline: Tensor | float,
    entropy: Tensor | None = None,
    entropy_weight: float = 0.0,
) -> Tensor:
    r"""Surrogate loss :math:`-(R - b)\log p(a) - \beta H`, averaged over a batch of sampled architectures.

    Args:
        log_prob: log-probability of each sampled architecture, shape ``[]`` or ``[N]``, differentiable.
        reward: the reward of each sample (no gradient flows into it).
        baseline: the baseline subtracted from the reward (no gradient flows into it).
        entropy: the policy's entropy for each sample (optional), differentiable.
        entropy_weight: the entropy bonus weight :math:`\beta`.

    Example:
        >>> logits = torch.zeros(3, requires_grad=True)
        >>> log_prob = logits.log_softmax(-1)[1]
        >>> reinforce_loss(log_prob, reward=1.0, baseline=0.5).backward()
        >>> logits.grad  # -(R - b) * (onehot(1) - softmax)
        tensor([ 0.1667, -0.3333,  0.1667])
    """
    advantage = torch.as_tensor(reward, dtype=log_prob.dtype, device=log_prob.device) - torch.as_tensor(
        baseline, dtype=log_prob.dtype, device=log_prob.device
    )
    loss = -(advantage.detach() * log_prob).mean()
    if entropy is not None and entropy_weight:
        loss = loss - entropy_weight * entropy.mean()
    return loss


def update_baseline(baseline: Tensor, reward: Tensor | float, decay: float) -> Tensor:
    """Exponential moving average ``decay * b + (1 - decay) * R``; returns the new baseline (``baseline`` untouched).

    Example:
        >>> update_baseline(torch.tensor(0.0), 1.0, decay=0.9)
        tensor(0.1000)
    """
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"baseline decay must be in [0, 1), got {decay}")
    reward = torch.as_tensor(reward, dtype=baseline.dtype, device=baseline.device)
    return decay * baseline + (1.0 - decay) * reward.detach().mean()
