"""Zero-cost proxies against closed forms and exact autograd on tiny networks, and on every space."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lightning_nas.predictors import (
    ALL_PROXIES,
    ProxyError,
    build_network,
    compute_proxies,
    fisher,
    grad_norm,
    jacob_cov,
    naswot,
    naswot_kernel,
    naswot_logdet,
    score_architecture,
    snip,
    synflow,
)
from lightning_nas.sampling import sample_arch, step_generator
from lightning_nas.spaces import NasBench201Network
from tests.search.test_every_space import SPACES


def _chain(widths: list[int]) -> nn.Sequential:
    return nn.Sequential(*(nn.Linear(a, b, bias=False) for a, b in zip(widths, widths[1:])))


def test_synflow_of_a_linear_chain_is_its_closed_form() -> None:
    widths = [5, 4, 3, 2]
    net = _chain(widths)
    mats = [layer.weight.detach().double().abs() for layer in net]  # W_l: [out, in]
    expected = 0.0
    for layer, w in enumerate(mats):
        left = torch.ones(1, widths[-1], dtype=torch.float64)  # 1^T |W_L| ... |W_{l+1}|
        for m in reversed(mats[layer + 1 :]):
            left = left @ m
        right = torch.ones(widths[0], 1, dtype=torch.float64)  # |W_{l-1}| ... |W_1| 1
        for m in mats[:layer]:
            right = m @ right
        expected += float((w * (left.T @ right.T)).sum())  # dR/dW_l[i, j] = left_i * right_j
    before = [p.clone() for p in net.parameters()]
    assert synflow(net, torch.randn(7, 5)) == pytest.approx(expected, rel=1e-12)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))  # the network keeps its signs


def test_synflow_takes_batchnorm_out() -> None:
    torch.manual_seed(1)
    plain = _chain([3, 4, 2])
    with_bn = nn.Sequential(plain[0], nn.BatchNorm1d(4), plain[1])
    with_bn[1].running_var.fill_(100.0)  # would scale the flow if BatchNorm stayed in
    assert synflow(with_bn, torch.randn(2, 3)) == pytest.approx(synflow(plain, torch.randn(2, 3)), rel=1e-12)


def test_naswot_kernel_and_logdet_on_hand_built_codes() -> None:
    codes = torch.tensor([[1, 0, 1, 1], [0, 0, 1, 0], [1, 1, 1, 1]])
    # K_ij = number of units where codes i and j agree (4 - Hamming distance)
    expected = torch.tensor([[4, 2, 3], [2, 4, 1], [3, 1, 4]], dtype=torch.float64)
    assert torch.equal(naswot_kernel(codes), expected)
    det = 4 * (16 - 1) - 2 * (8 - 3) + 3 * (2 - 12)  # cofactor expansion along the first row
    assert naswot_logdet(codes) == pytest.approx(math.log(det), rel=1e-12)
    assert naswot_logdet(torch.tensor([[1, 0], [1, 0]])) == -math.inf  # equal codes: singular kernel


def test_naswot_reads_the_relu_codes_of_the_network() -> None:
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2))
    x = torch.randn(4, 3)
    hidden1 = net[0](x) > 0
    hidden2 = net[2](torch.relu(net[0](x))) > 0
    assert naswot(net, x) == pytest.approx(naswot_logdet(torch.cat([hidden1, hidden2], 1)), rel=1e-12)


def _tiny_net() -> nn.Sequential:
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))


def test_grad_norm_and_snip_match_autograd() -> None:
    net = _tiny_net()
    x, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    w1, b1, w2, b2 = (p.detach().clone().requires_grad_(True) for p in net.parameters())
    loss = nn.functional.cross_entropy(torch.tanh(x @ w1.T + b1) @ w2.T + b2, y)
    g1, g2 = torch.autograd.grad(loss, [w1, w2])
    w1, w2 = w1.detach(), w2.detach()
    assert grad_norm(net, x, y) == pytest.approx(float(g1.norm() + g2.norm()), rel=1e-6)
    assert snip(net, x, y) == pytest.approx(float((w1 * g1).abs().sum() + (w2 * g2).abs().sum()), rel=1e-6)
    together = compute_proxies(net, (x, y), ["snip", "grad_norm"])  # one shared backward pass
    assert together == {"snip": pytest.approx(snip(net, x, y)), "grad_norm": pytest.approx(grad_norm(net, x, y))}


def test_fisher_of_one_linear_layer_is_its_closed_form() -> None:
    """logits z = W x + b, L = mean_n CE(z_n, y_n): dL/dz_n = (softmax(z_n) - onehot(y_n)) / B, so channel k's
    saliency is 0.5 * mean_n (z_nk (p_nk - y_nk) / B)^2, counted once per weight of the channel (4 inputs)."""
    torch.manual_seed(0)
    layer, x, y = nn.Linear(4, 3), torch.randn(6, 4), torch.tensor([0, 2, 1, 1, 0, 2])
    with torch.no_grad():
        z = x.double() @ layer.weight.double().T + layer.bias.double()
        error = (torch.softmax(z, 1) - nn.functional.one_hot(y, 3).double()) / 6
        expected = 4 * float((0.5 * (z * error).pow(2).mean(0)).sum())
    assert fisher(layer, x, y) == pytest.approx(expected, rel=1e-6)
    assert compute_proxies(layer, (x, y), ["fisher"])["fisher"] == pytest.approx(expected, rel=1e-6)


def test_fisher_of_a_convolution_sums_over_positions_before_squaring() -> None:
    """A 2x2 convolution read through global average pooling: dL/dz[n, k, h, w] = (p_nk - y_nk) / (B H W), so
    sum_s z * dL/dz = mean_s(z[n, k]) * (p_nk - y_nk) / B; the fan-in is 2 input channels x 2 x 2."""
    torch.manual_seed(1)
    conv = nn.Conv2d(2, 3, 2)
    net = nn.Sequential(conv, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    x, y = torch.randn(5, 2, 4, 4), torch.tensor([2, 0, 1, 2, 2])
    with torch.no_grad():
        z = conv.double()(x.double())  # [5, 3, 3, 3]
        pooled = z.mean((2, 3))
        error = (torch.softmax(pooled, 1) - nn.functional.one_hot(y, 3).double()) / 5
        expected = 2 * 2 * 2 * float((0.5 * (pooled * error).pow(2).mean(0)).sum())
    conv.float()
    assert fisher(net, x, y) == pytest.approx(expected, rel=1e-5)
    inplace = nn.Sequential(conv, nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    copied = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    assert fisher(inplace, x, y) == pytest.approx(fisher(copied, x, y), rel=1e-6)  # z is read before the ReLU
    with pytest.raises(ValueError, match="fisher needs nn.Conv\\*d or nn.Linear layers"):
        fisher(nn.Sequential(nn.Flatten(), _Scale()), x, y)


def test_fisher_equals_the_gradients_of_per_image_channel_masks_on_a_nas_bench_201_network() -> None:
    """Independent route: multiply every conv/linear output by a mask m[n, k] = 1 per image and channel; then
    dL/dm[n, k] = sum_s z * dL/dz, so the score is sum_layers fan_in * 0.5 * sum_k mean_n (dL/dm[n, k])^2."""
    torch.manual_seed(3)
    cell = "|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_3x3~1|nor_conv_1x1~2|"
    net = NasBench201Network(cell, in_channels=1, channels=4, cells_per_stage=1)
    x, y = torch.randn(6, 1, 8, 8), torch.tensor([0, 1, 2, 3, 4, 5])
    masks: list[tuple[int, torch.Tensor]] = []

    def masked(module: nn.Module, _inputs: object, output: torch.Tensor) -> torch.Tensor:
        shape = (output.shape[0], output.shape[1], *([1] * (output.ndim - 2)))
        mask = torch.ones(shape, requires_grad=True)
        masks.append((module.weight[0].numel(), mask))
        return output * mask

    layers = [m for m in net.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    handles = [layer.register_forward_hook(masked) for layer in layers]
    net.train()
    loss = nn.functional.cross_entropy(net(x), y)
    grads = torch.autograd.grad(loss, [mask for _, mask in masks])
    for handle in handles:
        handle.remove()
    expected = sum(fan_in * 0.5 * float(g.flatten(1).pow(2).mean(0).sum()) for (fan_in, _), g in zip(masks, grads))
    assert len(masks) == len(layers) > 5
    assert fisher(net, x, y) == pytest.approx(expected, rel=1e-5)


class _Scale(nn.Module):
    """A network whose one weight is not a convolution or linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1, 32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.weight)[:, :3]


def test_jacob_cov_matches_its_formula() -> None:
    net = _tiny_net()
    x = torch.randn(5, 4)
    jacobian = torch.autograd.functional.jacobian(lambda inp: net(inp).sum(), x)  # [5, 4], rows per image
    v = torch.linalg.eigvalsh(torch.corrcoef(jacobian.double()))
    assert jacob_cov(net, x) == pytest.approx(float(-(torch.log(v + 1e-5) + 1 / (v + 1e-5)).sum()), rel=1e-6)


def test_params_proxy_counts_only_parameters_on_the_path() -> None:
    class TwoPaths(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used, self.unused = nn.Linear(4, 2), nn.Linear(4, 7)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.used(x)

    assert compute_proxies(TwoPaths(), (torch.randn(3, 4), torch.zeros(3, dtype=torch.long)), ["params"]) == {
        "params": 4 * 2 + 2
    }


def test_non_finite_proxy_is_named_never_ranked() -> None:
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
    same = torch.ones(4, 2)  # every image gives the same code: NASWOT's kernel is singular
    with pytest.raises(ProxyError, match="proxy 'naswot' of architecture cell-A is -inf"):
        compute_proxies(net, (same, torch.zeros(4, dtype=torch.long)), ["naswot"], label="cell-A")
    cut = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        cut[0].weight.zero_()  # the output does not depend on the input: every Jacobian is zero
    with pytest.raises(ProxyError, match="proxy 'jacob_cov' of architecture cell-B is nan"):
        compute_proxies(cut, (torch.randn(4, 2), torch.zeros(4, dtype=torch.long)), ["jacob_cov"], label="cell-B")
    with torch.no_grad():
        net[0].weight.fill_(float("nan"))
    with pytest.raises(ProxyError, match="'grad_norm'"):
        compute_proxies(net, (torch.randn(4, 2), torch.zeros(4, dtype=torch.long)), ["grad_norm"])


def test_bad_input_is_refused_clearly() -> None:
    net = _tiny_net()
    batch = (torch.randn(3, 9), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"cannot take input of shape \(3, 9\)"):
        compute_proxies(net, batch, ["snip"])
    with pytest.raises(ValueError, match="has no weights"):
        compute_proxies(nn.Sequential(nn.ReLU()), batch, ["synflow"])
    with pytest.raises(ValueError, match="has no parameters"):
        compute_proxies(nn.Flatten(), batch, ["params"])
    with pytest.raises(ValueError, match="unknown proxies \\['fisherr'\\]; valid proxies: grad_norm"):
        compute_proxies(net, batch, ["fisherr"])


@pytest.mark.parametrize("space_name", SPACES)
def test_every_space_scores_deterministically(space_name: str) -> None:
    space = SPACES[space_name]()
    arch = sample_arch(space.choices(), step_generator(0, 0))
    size = 32 if space_name == "elastic" else 8
    batch = (torch.randn(4, 1, size, size), torch.tensor([0, 1, 2, 0]))
    proxies = [p for p in ALL_PROXIES if p != "naswot"]  # tiny nets can give two images one code
    first = score_architecture(space, arch, batch, proxies, seed=5)
    assert first == score_architecture(space, arch, batch, proxies, seed=5)
    assert set(first) == set(proxies)
    assert all(math.isfinite(v) for v in first.values())
    network = build_network(space, arch, seed=5)
    weights = sum(p.numel() for p in network.parameters())
    assert 0 < first["params"] <= weights
    with pytest.raises(ValueError, match="cannot take input of shape"):
        score_architecture(space, arch, (torch.randn(4, 3, size, size), batch[1]), ["snip"])
