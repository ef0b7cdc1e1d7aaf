r"""The DARTS architecture gradient (Liu et al., 2019, Sec. 2.3, Eq. 6-8).

With one unrolled weight step ``w' = w - xi * grad_w L_train(w, alpha)``, the architecture gradient is

    grad_alpha L_val(w', alpha) - xi * grad2_{alpha,w} L_train(w, alpha) . grad_w' L_val(w', alpha)

and the Hessian-vector product is approximated by central differences (Eq. 8):

    [grad_alpha L_train(w+, alpha) - grad_alpha L_train(w-, alpha)] / (2 * eps),
    w+- = w +- eps * grad_w' L_val(w', alpha),   eps = 0.01 / ||grad_w' L_val(w', alpha)||.

First order (``xi = 0``) is just ``grad_alpha L_val(w, alpha)``.

The functions take the losses as closures that read the current values of ``weights`` and ``alphas``, so they
work on any module: the weights are moved in place and restored bit for bit before returning.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import torch
from torch import Tensor

__all__ = ["darts_arch_gradient", "finite_difference_hvp"]

LossFn = Callable[[], Tensor]


def darts_arch_gradient(
    train_loss: LossFn,
    val_loss: LossFn,
    weights: Sequence[Tensor],
    alphas: Sequence[Tensor],
    *,
    order: Literal["first", "second"],
    xi: float,
    eps_scale: float = 0.01,
) -> tuple[list[Tensor], Tensor]:
    """The DARTS architecture gradient, first or second order.

    Args:
        train_loss: closure computing ``L_train(w, alpha)`` from the current weights and alphas.
        val_loss: closure computing ``L_val(w, alpha)``.
        weights: the network weights ``w`` (tensors requiring grad).
        alphas: the architecture parameters ``alpha``.
        order: ``"first"`` (``xi = 0``) or ``"second"`` (one unrolled step of size ``xi``).
        xi: the virtual step size (the reference code uses the current weight learning rate).
        eps_scale: numerator of the finite-difference step ``eps = eps_scale / ||grad_w' L_val||``.

    Returns:
        The gradient for each alpha, and the detached validation loss ``L_val`` (at ``w'`` for second order).

    Example:
        >>> w = torch.tensor([1.0], requires_grad=True)
        >>> a = torch.tensor([2.0], requires_grad=True)
        >>> grads, loss = darts_arch_gradient(lambda: (w * a).sum(), lambda: (w * a).sum() ** 2, [w], [a],
        ...                                   order="first", xi=0.0)
        >>> grads[0]  # d/da (w a)^2 = 2 w^2 a
        tensor([4.])
    """
    if order not in ("first", "second"):
        raise ValueError(f"order must be 'first' or 'second', got {order!r}")
    if order == "first":
        with _frozen(weights):  # only alpha gradients: the backward skips every weight gradient
            loss = val_loss()
        return _grad(loss, alphas), loss.detach()

    # w' = w - xi * grad_w L_train(w, alpha), taken in place and undone below.
    grad_train = _grad(train_loss(), weights)
    with _moved(weights, grad_train, -xi):
        loss = val_loss()
        grads_val = _grad(loss, [*alphas, *weights])
    grad_alpha, grad_w_prime = grads_val[: len(alphas)], grads_val[len(alphas) :]
    hvp = finite_difference_hvp(train_loss, weights, alphas, grad_w_prime, eps_scale=eps_scale)
    return [g - xi * h for g, h in zip(grad_alpha, hvp)], loss.detach()


def finite_difference_hvp(
    train_loss: LossFn,
    weights: Sequence[Tensor],
    alphas: Sequence[Tensor],
    vector: Sequence[Tensor],
    *,
    eps_scale: float = 0.01,
) -> list[Tensor]:
    """``grad2_{alpha,w} L_train(w, alpha) . v`` by central differences of ``grad_alpha L_train`` along ``v``.

    Computed in fp32 with autocast disabled, whatever the surrounding precision: the difference of two nearly
    equal gradients divided by a small ``eps`` loses every digit in half precision.

    Args:
        train_loss: closure computing ``L_train`` at the current weights.
        weights: ``w``; left unchanged on return.
        alphas: ``alpha``.
        vector: ``v``, one tensor per weight.
        eps_scale: ``eps = eps_scale / ||v||``.
    """
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(v.float()) for v in vector]))
    eps = eps_scale / norm.clamp_min(torch.finfo(torch.float32).tiny).item()
    device_type = weights[0].device.type
    with torch.autocast(device_type=device_type, enabled=False), _frozen(weights):
        with _moved(weights, vector, eps):
            grad_plus = _grad(train_loss().float(), alphas)
        with _moved(weights, vector, -eps):
            grad_minus = _grad(train_loss().float(), alphas)
    return [(p - m) / (2 * eps) for p, m in zip(grad_plus, grad_minus)]


def _grad(loss: Tensor, inputs: Sequence[Tensor]) -> list[Tensor]:
    if not torch.isfinite(loss):
        raise FloatingPointError(f"non-finite loss {loss.item()} in the DARTS architecture gradient")
    grads = torch.autograd.grad(loss, list(inputs), allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads)]


@contextmanager
def _frozen(tensors: Sequence[Tensor]) -> Iterator[None]:
    """Turn off ``requires_grad`` of leaf tensors for the forward passes inside; restore it on exit."""
    flags = [t.requires_grad for t in tensors]
    try:
        for t in tensors:
            t.requires_grad_(False)
        yield
    finally:
        for t, flag in zip(tensors, flags):
            t.requires_grad_(flag)


@contextmanager
def _moved(tensors: Sequence[Tensor], direction: Sequence[Tensor], step: float) -> Iterator[None]:
    """Move ``tensors`` by ``step * direction`` in place; restore their exact values on exit."""
    original = [t.detach().clone() for t in tensors]
    try:
        with torch.no_grad():
            for t, d in zip(tensors, direction):
                t.add_(d.to(t.dtype), alpha=step)
        yield
    finally:
        with torch.no_grad():
            for t, o in zip(tensors, original):
                t.copy_(o)
