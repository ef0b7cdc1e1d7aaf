"""Knowledge distillation with soft targets (Hinton et al. 2015), as Once-for-All trains its subnets.

``L_KD(z_s, z_t) = -sum_c softmax(z_t / T)_c * log_softmax(z_s / T)_c``, averaged over the batch: the cross
entropy between the teacher's and the student's tempered distributions (the reference code's
``cross_entropy_loss_with_soft_target``, ``kd_type="ce"``, ``T = 1``). The teacher's logits carry no gradient.
"""

from __future__ import annotations

from torch import Tensor
from torch.nn import functional as F  # noqa: N812

__all__ = ["soft_target_cross_entropy"]


def soft_target_cross_entropy(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Mean cross entropy of the student's tempered softmax against the (detached) teacher's.

    Args:
        student_logits: ``[B, C]`` logits that receive the gradient.
        teacher_logits: ``[B, C]`` logits of the teacher.
        temperature: ``T > 0`` dividing both logits.

    Raises:
        ValueError: shapes differ or ``temperature <= 0``.

    Example:
        >>> import torch
        >>> z = torch.tensor([[2.0, 0.0, -1.0]])
        >>> p = z.softmax(1)
        >>> bool(torch.isclose(soft_target_cross_entropy(z, z), -(p * p.log()).sum()))
        True
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student and teacher logits must have the same shape, got {tuple(student_logits.shape)} and "
            f"{tuple(teacher_logits.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    target = F.softmax(teacher_logits.detach() / temperature, dim=1)
    return -(target * F.log_softmax(student_logits / temperature, dim=1)).sum(1).mean()
