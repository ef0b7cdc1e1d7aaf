import itertools

import pytest
import torch

from lightning_nas.functional import reinforce_loss, update_baseline


def test_expected_surrogate_gradient_equals_the_policy_gradient_of_expected_reward():
    """Sum over every action of p(a) * grad of the surrogate equals -grad E[R] exactly (the baseline cancels)."""
    torch.manual_seed(0)
    logits = torch.randn(2, 3, requires_grad=True)  # two independent categorical choices
    rewards = torch.rand(3, 3)
    baseline = 0.37

    expected_reward = (logits[0].softmax(-1)[:, None] * logits[1].softmax(-1)[None, :] * rewards).sum()
    (exact,) = torch.autograd.grad(expected_reward, logits)

    estimate = torch.zeros_like(logits)
    for a, b in itertools.product(range(3), range(3)):
        log_probs = logits.log_softmax(-1)
        log_prob = log_probs[0, a] + log_probs[1, b]
        (grad,) = torch.autograd.grad(reinforce_loss(log_prob, rewards[a, b], baseline), logits)
        estimate += log_prob.exp().detach() * grad
    torch.testing.assert_close(-estimate, exact, rtol=1e-5, atol=1e-6)


def test_entropy_bonus_adds_the_entropy_gradient():
    logits = torch.tensor([0.3, -0.2, 1.0], requires_grad=True)
    log_p = logits.log_softmax(-1)
    entropy = -(log_p.exp() * log_p).sum()
    loss = reinforce_loss(log_p[0], 0.0, 0.0, entropy=entropy, entropy_weight=0.5)
    (grad,) = torch.autograd.grad(loss, logits, retain_graph=True)
    (entropy_grad,) = torch.autograd.grad(entropy, logits)
    torch.testing.assert_close(grad, -0.5 * entropy_grad)


def test_baseline_moving_average_and_bad_decay():
    b = torch.tensor(0.0)
    for reward in (1.0, 1.0, 1.0):
        b = update_baseline(b, reward, decay=0.5)
    assert b.item() == pytest.approx(1 - 0.5**3)
    with pytest.raises(ValueError, match="decay must be in"):
        update_baseline(b, 1.0, decay=1.0)
