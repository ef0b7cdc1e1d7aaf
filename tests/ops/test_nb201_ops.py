"""The NAS-Bench-201 ops compute what the benchmark's reference definitions compute (issue 9)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_nas.ops import DARTS_OPS, NB201_OPS, MixedOp, build_op, list_ops


def test_every_nb201_op_is_registered_and_only_the_convolutions_are_new() -> None:
    assert set(NB201_OPS) <= set(list_ops())
    assert set(NB201_OPS) - set(DARTS_OPS) == {"nor_conv_1x1", "nor_conv_3x3"}


@pytest.mark.parametrize(("name", "kernel"), [("nor_conv_1x1", 1), ("nor_conv_3x3", 3)])
def test_nor_conv_is_relu_conv_batchnorm(name: str, kernel: int) -> None:
    op = build_op(name, channels=4, stride=1, affine=True).train()
    conv = next(m for m in op.modules() if isinstance(m, nn.Conv2d))
    bn = next(m for m in op.modules() if isinstance(m, nn.BatchNorm2d))
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    assert conv.bias is None
    assert conv.kernel_size == (kernel, kernel)
    x = torch.randn(3, 4, 6, 6)
    hidden = nn.functional.conv2d(torch.relu(x), conv.weight, padding=kernel // 2)
    expected = nn.functional.batch_norm(hidden, None, None, bn.weight, bn.bias, training=True)
    torch.testing.assert_close(op(x), expected)
    assert sum(p.numel() for p in op.parameters()) == 4 * 4 * kernel * kernel + 2 * 4


def test_shared_names_compute_the_benchmarks_ops_at_stride_one() -> None:
    x = torch.randn(2, 4, 5, 5)
    # avg_pool_3x3: AvgPool2d(3, 1, 1, count_include_pad=False): border pixels average only the pixels inside.
    pooled = build_op("avg_pool_3x3", 4, 1)(x)
    torch.testing.assert_close(pooled[:, :, 0, 0], x[:, :, :2, :2].mean(dim=(-1, -2)))
    torch.testing.assert_close(pooled[:, :, 2, 2], x[:, :, 1:4, 1:4].mean(dim=(-1, -2)))
    assert torch.equal(build_op("skip_connect", 4, 1)(x), x)
    assert torch.equal(build_op("none", 4, 1)(x), torch.zeros_like(x))
    assert all(not list(build_op(name, 4, 1).parameters()) for name in ("none", "skip_connect", "avg_pool_3x3"))


def test_mixed_op_without_pool_normalization_keeps_pools_bare() -> None:
    mixed = MixedOp(NB201_OPS, channels=4, stride=1, normalize_pools=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in mixed.ops[NB201_OPS.index("avg_pool_3x3")].modules())
    x = torch.randn(2, 4, 6, 6)
    weights = torch.zeros(5)
    weights[NB201_OPS.index("avg_pool_3x3")] = 1.0
    torch.testing.assert_close(mixed(x, weights), nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False))
    # The DARTS default still normalises them.
    assert any(isinstance(m, nn.BatchNorm2d) for m in MixedOp(NB201_OPS, channels=4, stride=1).ops[4].modules())
