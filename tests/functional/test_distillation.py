"""Soft-target distillation loss (issue 4) against its closed forms: cross entropy = KL + teacher entropy, and the
gradient ``(softmax(z_s / T) - softmax(z_t / T)) / (T B)``."""

from __future__ import annotations

import pytest
import torch

from lightning_nas.functional import soft_target_cross_entropy


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_value_and_gradient_in_closed_form(temperature: float) -> None:
    student = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    loss = soft_target_cross_entropy(student, teacher, temperature)
    p_teacher = (teacher / temperature).softmax(1)
    p_student = (student / temperature).softmax(1)
    kl = (p_teacher * (p_teacher.log() - p_student.log())).sum(1)
    entropy = -(p_teacher * p_teacher.log()).sum(1)
    torch.testing.assert_close(loss, (kl + entropy).mean())
    loss.backward()
    torch.testing.assert_close(student.grad, (p_student - p_teacher).detach() / (temperature * 5))
    assert teacher.grad is None  # the teacher's logits are targets


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match=r"same shape, got \(2, 3\) and \(2, 4\)"):
        soft_target_cross_entropy(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="temperature must be positive, got 0"):
        soft_target_cross_entropy(torch.zeros(2, 3), torch.zeros(2, 3), 0)
