"""The DARTS architecture gradient against the exact hypergradient from autograd."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from lightning_nas.functional import darts_arch_gradient, finite_difference_hvp


def _model(w1: Tensor, w2: Tensor, alpha: Tensor, x: Tensor) -> Tensor:
    """A two-op mixed layer then a linear head: nonlinear in w and alpha, with a non-zero mixed Hessian."""
    mix = alpha.softmax(-1)
    hidden = mix[0] * torch.tanh(x @ w1) + mix[1] * torch.sigmoid(x @ w1) + mix[2] * (x @ w1)
    return hidden @ w2


def _loss(w1: Tensor, w2: Tensor, alpha: Tensor, x: Tensor, y: Tensor) -> Tensor:
    return torch.nn.functional.cross_entropy(_model(w1, w2, alpha, x), y)


@pytest.fixture
def problem() -> dict[str, Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {
        "w1": torch.randn(5, 4, generator=gen, dtype=torch.float64).requires_grad_(),
        "w2": torch.randn(4, 3, generator=gen, dtype=torch.float64).requires_grad_(),
        "alpha": torch.randn(3, generator=gen, dtype=torch.float64).requires_grad_(),
        "x_train": torch.randn(16, 5, generator=gen, dtype=torch.float64),
        "y_train": torch.randint(0, 3, (16,), generator=gen),
        "x_val": torch.randn(16, 5, generator=gen, dtype=torch.float64),
        "y_val": torch.randint(0, 3, (16,), generator=gen),
    }


def _closures(p: dict[str, Tensor]):  # noqa: ANN202
    def train() -> Tensor:
        return _loss(p["w1"], p["w2"], p["alpha"], p["x_train"], p["y_train"])

    def val() -> Tensor:
        return _loss(p["w1"], p["w2"], p["alpha"], p["x_val"], p["y_val"])

    return train, val


def _exact_hypergradient(p: dict[str, Tensor], xi: float) -> Tensor:
    """d/d alpha of L_val(w - xi * grad_w L_train(w, alpha), alpha), differentiating through the unrolled step."""
    w1, w2, alpha = p["w1"], p["w2"], p["alpha"]
    g1, g2 = torch.autograd.grad(_loss(w1, w2, alpha, p["x_train"], p["y_train"]), [w1, w2], create_graph=True)
    val = _loss(w1 - xi * g1, w2 - xi * g2, alpha, p["x_val"], p["y_val"])
    (grad_alpha,) = torch.autograd.grad(val, [alpha])
    return grad_alpha


@pytest.mark.parametrize("xi", [0.05, 0.5])
def test_second_order_matches_exact_hypergradient(problem: dict[str, Tensor], xi: float) -> None:
    train, val = _closures(problem)
    weights, alphas = [problem["w1"], problem["w2"]], [problem["alpha"]]
    grads, _ = darts_arch_gradient(train, val, weights, alphas, order="second", xi=xi)
    exact = _exact_hypergradient(problem, xi)
    assert torch.linalg.vector_norm(grads[0] - exact) <= 1e-3 * torch.linalg.vector_norm(exact)


def test_second_order_term_is_not_negligible(problem: dict[str, Tensor]) -> None:
    """Guards the test above: dropping the Hessian term (a wrong sign or scale) would fail it."""
    xi = 0.5
    exact = _exact_hypergradient(problem, xi)
    w1, w2, alpha = problem["w1"], problem["w2"], problem["alpha"]
    g1, g2 = torch.autograd.grad(_loss(w1, w2, alpha, problem["x_train"], problem["y_train"]), [w1, w2])
    (without_hessian,) = torch.autograd.grad(
        _loss(w1 - xi * g1, w2 - xi * g2, alpha, problem["x_val"], problem["y_val"]), [alpha]
    )
    assert torch.linalg.vector_norm(without_hessian - exact) > 1e-2 * torch.linalg.vector_norm(exact)


def test_first_order_is_plain_validation_gradient(problem: dict[str, Tensor]) -> None:
    train, val = _closures(problem)
    grads, loss = darts_arch_gradient(
        train, val, [problem["w1"], problem["w2"]], [problem["alpha"]], order="first", xi=0.1
    )
    (expected,) = torch.autograd.grad(val(), [problem["alpha"]])
    torch.testing.assert_close(grads[0], expected, rtol=0, atol=0)
    torch.testing.assert_close(loss, val().detach())


def test_weights_restored_bit_for_bit(problem: dict[str, Tensor]) -> None:
    train, val = _closures(problem)
    before = [problem["w1"].detach().clone(), problem["w2"].detach().clone()]
    darts_arch_gradient(train, val, [problem["w1"], problem["w2"]], [problem["alpha"]], order="second", xi=0.3)
    assert torch.equal(problem["w1"], before[0])
    assert torch.equal(problem["w2"], before[1])


def test_finite_difference_hvp_matches_autograd(problem: dict[str, Tensor]) -> None:
    train, _ = _closures(problem)
    weights, alpha = [problem["w1"], problem["w2"]], problem["alpha"]
    gen = torch.Generator().manual_seed(1)
    vector = [torch.randn(w.shape, generator=gen, dtype=w.dtype) for w in weights]
    (grad_alpha,) = torch.autograd.grad(train(), [alpha], create_graph=True)
    exact = torch.stack(
        [
            torch.cat([g.flatten() for g in torch.autograd.grad(grad_alpha[k], weights, retain_graph=True)])
            for k in range(alpha.numel())
        ]
    ) @ torch.cat([v.flatten() for v in vector])
    (approx,) = finite_difference_hvp(train, weights, [alpha], vector)
    assert torch.linalg.vector_norm(approx - exact) <= 1e-4 * torch.linalg.vector_norm(exact)


def test_hvp_runs_in_fp32_under_bf16_autocast(problem: dict[str, Tensor]) -> None:
    p = {
        k: (v.detach().float().requires_grad_(v.requires_grad) if v.is_floating_point() else v)
        for k, v in problem.items()
    }
    train, val = _closures(p)
    weights, alphas = [p["w1"], p["w2"]], [p["alpha"]]
    vector = [torch.ones_like(w) for w in weights]
    fp32_hvp = finite_difference_hvp(train, weights, alphas, vector)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert _model(p["w1"], p["w2"], p["alpha"], p["x_train"]).dtype == torch.bfloat16  # autocast is on
        autocast_hvp = finite_difference_hvp(train, weights, alphas, vector)
        mixed, _ = darts_arch_gradient(train, val, weights, alphas, order="second", xi=0.5)
    torch.testing.assert_close(autocast_hvp[0], fp32_hvp[0], rtol=0, atol=0)
    reference, _ = darts_arch_gradient(train, val, weights, alphas, order="second", xi=0.5)
    assert mixed[0].dtype == torch.float32
    # Only the unrolled step and L_val run in bf16 (about 3 significant digits).
    assert torch.linalg.vector_norm(mixed[0] - reference[0]) <= 3e-2 * torch.linalg.vector_norm(reference[0])


def test_non_finite_loss_is_reported(problem: dict[str, Tensor]) -> None:
    train, _ = _closures(problem)
    weights = [problem["w1"], problem["w2"]]
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        darts_arch_gradient(train, lambda: train() * float("nan"), weights, [problem["alpha"]], order="first", xi=0)
    with pytest.raises(ValueError, match="'third'"):
        darts_arch_gradient(train, train, weights, [problem["alpha"]], order="third", xi=0)  # type: ignore[arg-type]
