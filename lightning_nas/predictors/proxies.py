"""Zero-cost proxies: scores of an untrained network from one batch, which rank architectures without training.

Each proxy follows the paper that defined it; "weights" are the parameters with two or more dimensions (the
weights of convolutions and linear layers, where Abdelfattah et al. measure every saliency):

- ``grad_norm`` (Abdelfattah et al., ICLR 2021): ``sum_l ||dL/dW_l||_2`` of the cross-entropy loss ``L``;
- ``snip`` (Lee et al., ICLR 2019, as a proxy in Abdelfattah et al.): ``sum |W * dL/dW|``;
- ``fisher`` (Turner et al., ICLR 2020, after Theis et al. 2018; summed as in Abdelfattah et al.'s reference code):
  for every output ``z`` of a convolution or linear layer, each channel ``k``'s Fisher-information saliency
  ``0.5 * mean_n (sum_s z[n, k, s] * dL/dz[n, k, s])^2`` (``s``: the spatial positions), counted once per weight
  of that channel (its fan-in) and summed over channels and layers (see :func:`fisher`);
- ``synflow`` (Tanaka et al., NeurIPS 2020): ``sum |W * dR/dW|`` with ``R = 1^T (prod_l |W_l|) 1`` computed by
  the network with every parameter replaced by its absolute value on an all-ones image, in double precision,
  with BatchNorm layers taken out (Abdelfattah et al., Sec. 3: BatchNorm's data-free statistics break synflow);
- ``jacob_cov`` (Mellor et al., 2020 v1): ``-sum_i log(v_i + k) + 1 / (v_i + k)``, ``k = 1e-5``, over the
  eigenvalues ``v_i`` of the correlation matrix of the per-image input Jacobians ``d sum(logits) / dx``;
- ``naswot`` (Mellor et al., ICML 2021): ``log |det K|`` of the kernel of the binary ReLU codes ``c_i``,
  ``K_ij = c_i . c_j + (1 - c_i) . (1 - c_j)`` (the number of units on which images ``i`` and ``j`` agree);
- ``params``: the number of weights and biases that take part in the forward pass; ``flops`` (only through
  :func:`score_architecture`): the multiply-accumulates :func:`~lightning_nas.search.count_cost` counts.

A proxy that comes out NaN or infinite raises :class:`ProxyError` naming the proxy and the architecture; it is
never ranked.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "PROXIES",
    "ProxyError",
    "compute_proxies",
    "fisher",
    "grad_norm",
    "jacob_cov",
    "naswot",
    "naswot_kernel",
    "naswot_logdet",
    "num_params",
    "snip",
    "synflow",
]


class ProxyError(ValueError):
    """A proxy value that is not finite; the message names the proxy and the architecture."""


def _weights(network: nn.Module) -> list[tuple[str, nn.Parameter]]:
    weights = [(name, p) for name, p in network.named_parameters() if p.ndim >= 2 and p.requires_grad]
    if not weights:
        raise ValueError(
            f"{type(network).__name__} has no weights (parameters with >= 2 dimensions) to score; "
            "zero-cost proxies need a network with convolution or linear layers"
        )
    return weights


def _forward(network: nn.Module, images: Tensor) -> Tensor:
    """Logits of ``network`` for ``images``; a network that rejects the shape gets a clear ``ValueError``."""
    try:
        output = network(images)
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"{type(network).__name__} cannot take input of shape {tuple(images.shape)}: {err}") from None
    if isinstance(output, tuple):  # networks with auxiliary heads return (logits, aux)
        output = output[0]
    if not isinstance(output, Tensor) or output.ndim != 2 or output.shape[0] != images.shape[0]:
        shape = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
        raise ValueError(f"{type(network).__name__} must return logits [B, classes]; got {shape}")
    return output


def _loss_gradients(network: nn.Module, images: Tensor, labels: Tensor) -> list[tuple[nn.Parameter, Tensor]]:
    """``(W, dL/dW)`` of the cross-entropy loss for every weight the loss depends on."""
    weights = [p for _, p in _weights(network)]
    logits = _forward(network, images)
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must have shape [{images.shape[0]}], got {tuple(labels.shape)}")
    loss = nn.functional.cross_entropy(logits, labels)
    grads = torch.autograd.grad(loss, weights, allow_unused=True)
    return [(w, g) for w, g in zip(weights, grads) if g is not None]


_LOSS_SALIENCIES = {"grad_norm", "snip"}


def _saliencies(network: nn.Module, images: Tensor, labels: Tensor) -> dict[str, float]:
    """:func:`grad_norm` and :func:`snip` from one backward pass."""
    pairs = _loss_gradients(network, images, labels)
    return {
        "grad_norm": float(sum(g.norm() for _, g in pairs)),
        "snip": float(sum((w.detach() * g).abs().sum() for w, g in pairs)),
    }


def grad_norm(network: nn.Module, images: Tensor, labels: Tensor) -> float:
    """``sum_l ||dL/dW_l||_2`` over the weights of ``network`` (cross-entropy loss on one batch)."""
    return float(sum(g.norm() for _, g in _loss_gradients(network, images, labels)))


def snip(network: nn.Module, images: Tensor, labels: Tensor) -> float:
    """``sum |W * dL/dW|`` over the weights of ``network`` (connection sensitivity, Lee et al.)."""
    return float(sum((w.detach() * g).abs().sum() for w, g in _loss_gradients(network, images, labels)))


def fisher(network: nn.Module, images: Tensor, labels: Tensor) -> float:
    """The Fisher-information saliency of every channel of ``network`` (Turner et al. 2020), summed.

    A channel's saliency is the loss increase, to second order under the empirical Fisher approximation, when the
    channel is masked out (Theis et al. 2018): for the output ``z`` of each ``nn.Conv*d`` or ``nn.Linear``
    (before any BatchNorm or ReLU) and the cross-entropy loss ``L`` of the batch,

        Delta_k = 0.5 * mean_n (sum_s z[n, k, s] * dL/dz[n, k, s])^2

    with ``n`` the images, ``k`` the output channels (a linear layer's last dimension) and ``s`` every other
    position. As in Abdelfattah et al.'s reference code (ICLR 2021, ``foresight/pruners/measures/fisher.py``), each
    channel's ``Delta_k`` is spread over that channel's weights and the weights are summed, so the score is
    ``sum_layers fan_in * sum_k Delta_k`` with ``fan_in = weight[0].numel()``; a layer called several times in one
    forward pass adds each call's saliencies. The mean over images makes the score independent of the batch size.
    """
    _weights(network)
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must have shape [{images.shape[0]}], got {tuple(labels.shape)}")
    layers = [m for m in network.modules() if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    if not layers:
        raise ValueError(
            f"fisher needs nn.Conv*d or nn.Linear layers to read channels from; {type(network).__name__} has none"
        )
    saliencies: list[Tensor] = []

    def capture(module: nn.Module, _inputs: Any, output: Tensor) -> None:
        if isinstance(output, Tensor) and output.requires_grad:
            activation, fan_in = output.detach().clone(), module.weight[0].numel()  # type: ignore[index]
            output.register_hook(lambda grad: saliencies.append(fan_in * _channel_fisher(module, activation, grad)))

    handles = [layer.register_forward_hook(capture) for layer in layers]
    try:
        loss = nn.functional.cross_entropy(_forward(network, images), labels)
        params = [p for p in network.parameters() if p.requires_grad]
        torch.autograd.grad(loss, params, allow_unused=True)  # runs the hooks; the parameter gradients are unused
    finally:
        for handle in handles:
            handle.remove()
    return float(sum(s.detach() for s in saliencies))


def _channel_fisher(layer: nn.Module, activation: Tensor, grad: Tensor) -> Tensor:
    """``sum_k 0.5 * mean_n (sum_s z * dL/dz)^2`` of one layer output, channels in dim 1 (conv) or last (linear)."""
    product = (activation * grad.detach()).double()
    if isinstance(layer, nn.Linear):
        product = product.movedim(-1, 1)
    per_image = product.flatten(2).sum(2) if product.ndim > 2 else product  # [images, channels]
    return 0.5 * per_image.pow(2).mean(0).sum()


def synflow(network: nn.Module, images: Tensor) -> float:
    """Synaptic flow ``sum |W * dR/dW|`` of ``|network|`` on an all-ones image, in double precision.

    ``network`` itself is left as it was: the score runs on a copy whose parameters are ``|theta|``, whose
    BatchNorm layers are identities and whose dropout is off (eval mode). Only ``images.shape[1:]`` is used.
    """
    _weights(network)
    positive = copy.deepcopy(network).double().eval()
    _remove_batchnorm(positive)
    with torch.no_grad():
        for p in positive.parameters():
            p.abs_()
    weights = [p for _, p in _weights(positive)]
    ones = torch.ones((1, *images.shape[1:]), dtype=torch.float64, device=images.device)
    flow = _forward(positive, ones).sum()
    grads = torch.autograd.grad(flow, weights, allow_unused=True)
    return float(sum((w.detach() * g).abs().sum() for w, g in zip(weights, grads) if g is not None))


def _remove_batchnorm(network: nn.Module) -> None:
    for name, child in network.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(network, name, nn.Identity())
        else:
            _remove_batchnorm(child)


def jacob_cov(network: nn.Module, images: Tensor) -> float:
    """Mellor et al.'s (v1) score of the correlations between the images' input Jacobians; larger is better."""
    _weights(network)
    x = images.detach().clone().requires_grad_(True)
    (jacobian,) = torch.autograd.grad(_forward(network, x).sum(), x)
    flat = jacobian.reshape(images.shape[0], -1).double()
    if images.shape[0] < 2:
        raise ValueError(f"jacob_cov needs a batch of at least 2 images, got {images.shape[0]}")
    correlation = torch.corrcoef(flat)
    if not torch.isfinite(correlation).all():  # an image with a constant Jacobian (a cell that cuts the input off)
        return math.nan
    eigenvalues = torch.linalg.eigvalsh(correlation)
    k = 1e-5
    return float(-(torch.log(eigenvalues + k) + 1.0 / (eigenvalues + k)).sum())


def naswot_kernel(codes: Tensor) -> Tensor:
    """``K_ij = c_i . c_j + (1 - c_i) . (1 - c_j)`` of binary codes ``[B, units]`` (units where i and j agree)."""
    c = codes.double()
    return c @ c.T + (1 - c) @ (1 - c).T


def naswot_logdet(codes: Tensor) -> float:
    """``log |det K|`` of :func:`naswot_kernel`; ``-inf`` when two images share a code (``K`` singular)."""
    _, logabsdet = torch.linalg.slogdet(naswot_kernel(codes))
    return float(logabsdet)


def naswot(network: nn.Module, images: Tensor) -> float:
    """NASWOT (Mellor et al., ICML 2021): :func:`naswot_logdet` of the codes of every ``nn.ReLU`` module."""
    _weights(network)
    codes: list[Tensor] = []

    def record(_module: nn.Module, _inputs: Any, output: Tensor) -> None:
        codes.append((output.detach() > 0).reshape(output.shape[0], -1))

    relus = [m for m in network.modules() if isinstance(m, nn.ReLU)]
    if not relus:
        raise ValueError(f"naswot needs nn.ReLU modules to read binary codes from; {type(network).__name__} has none")
    handles = [m.register_forward_hook(record) for m in relus]
    try:
        with torch.no_grad():
            _forward(network, images)
    finally:
        for handle in handles:
            handle.remove()
    return naswot_logdet(torch.cat(codes, dim=1))


def num_params(network: nn.Module, images: Tensor) -> float:
    """The number of parameter entries that take part in a forward pass on ``images`` (unused paths excluded)."""
    params = [p for p in network.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{type(network).__name__} has no parameters to count")
    output = _forward(network, images).sum()
    grads = torch.autograd.grad(output, params, allow_unused=True)
    return float(sum(p.numel() for p, g in zip(params, grads) if g is not None))


ProxyFunction = Callable[[nn.Module, Tensor, Tensor], float]

PROXIES: dict[str, ProxyFunction] = {
    "grad_norm": grad_norm,
    "snip": snip,
    "fisher": fisher,
    "synflow": lambda network, images, labels: synflow(network, images),
    "jacob_cov": lambda network, images, labels: jacob_cov(network, images),
    "naswot": lambda network, images, labels: naswot(network, images),
    "params": lambda network, images, labels: num_params(network, images),
}
"""Proxy name -> ``f(network, images, labels)``; larger is better for every one."""


def compute_proxies(
    network: nn.Module,
    batch: tuple[Tensor, Tensor],
    proxies: Sequence[str] = tuple(PROXIES),
    *,
    seed: int = 0,
    label: str = "",
) -> dict[str, float]:
    """Score ``network`` with each of ``proxies`` on one ``(images, labels)`` batch.

    The network runs in training mode (BatchNorm on batch statistics, as the proxies' papers do), each proxy
    starts from the same parameters and global generator state (``seed``), and ``network`` keeps its parameters.

    Args:
        network: an untrained network returning logits ``[B, classes]``.
        batch: images ``[B, ...]`` and integer labels ``[B]``.
        proxies: names from :data:`PROXIES`.
        seed: seeds the global generator (dropout, drop-path) before each proxy.
        label: names the architecture in errors.

    Raises:
        ValueError: an unknown proxy, a network without parameters or that rejects the input's shape.
        ProxyError: a proxy value that is NaN or infinite.

    Example:
        >>> torch.manual_seed(0)
        <torch._C.Generator object at ...>
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
        >>> batch = (torch.randn(5, 4), torch.tensor([0, 1, 0, 1, 1]))
        >>> compute_proxies(net, batch, ["params"])
        {'params': 23.0}
    """
    unknown = [name for name in proxies if name not in PROXIES]
    if unknown:
        raise ValueError(f"unknown proxies {unknown}; valid proxies: {', '.join(PROXIES)}")
    images, labels = batch
    state = copy.deepcopy(network.state_dict())
    was_training = network.training
    scores: dict[str, float] = {}
    try:
        network.train()
        shared: dict[str, float] = {}
        for name in proxies:
            if name not in shared:
                with torch.random.fork_rng(devices=[images.device] if images.device.type == "cuda" else []):
                    torch.manual_seed(seed)
                    if name in _LOSS_SALIENCIES and len(_LOSS_SALIENCIES & set(proxies)) > 1:
                        shared.update(_saliencies(network, images, labels))  # one backward pass for both
                    else:
                        shared[name] = PROXIES[name](network, images, labels)
                network.load_state_dict(state)  # BatchNorm running statistics moved; put them back
            scores[name] = check_finite(name, shared[name], label)
    finally:
        network.train(was_training)
    return scores


def check_finite(name: str, value: float, label: str = "") -> float:
    """``value`` if it is finite, else :class:`ProxyError` naming the proxy ``name`` and the architecture."""
    if not math.isfinite(value):
        where = f" of architecture {label}" if label else ""
        raise ProxyError(f"proxy {name!r}{where} is {value}; a non-finite proxy cannot be ranked")
    return value


def describe(arch: Mapping[str, Any]) -> str:
    """A short text of ``arch`` for messages."""
    return ", ".join(f"{k}={v}" for k, v in arch.items())
