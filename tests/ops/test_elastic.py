"""Elastic layers (issue 4): kernel transforms as the OFA paper describes them, sliced batch norm, views not copies,
and channel re-organisation that keeps the function."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from lightning_nas.ops import (
    ElasticBatchNorm2d,
    ElasticDepthwiseConv2d,
    ElasticInvertedResidual,
    ElasticPointwiseConv2d,
)


def _randomise(module: nn.Module) -> None:
    """Non-trivial BN statistics and affine parameters, and kernel transforms away from the identity."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=generator))  # type: ignore[union-attr]
                m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)  # type: ignore[union-attr]
                m.weight.copy_(torch.randn(m.num_features, generator=generator))
                m.bias.copy_(torch.randn(m.num_features, generator=generator))
            if isinstance(m, ElasticDepthwiseConv2d):
                for matrix in m.transforms.values():
                    matrix.add_(0.1 * torch.randn(matrix.shape, generator=generator))


def test_smallest_kernel_is_the_centre_of_the_largest_through_two_shared_transforms() -> None:
    """Cai et al. 2020, Sec. 3.2: 7x7 -> centre 5x5 -> 25x25 matrix -> centre 3x3 -> 9x9 matrix, shared by channels."""
    torch.manual_seed(0)
    conv = ElasticDepthwiseConv2d(6, (3, 5, 7))
    assert [tuple(conv.transforms[k].shape) for k in ("7to5", "5to3")] == [(25, 25), (9, 9)]
    with torch.no_grad():
        for matrix in conv.transforms.values():
            matrix.copy_(torch.randn(matrix.shape))
    w7, m75, m53 = conv.weight.detach(), conv.transforms["7to5"].detach(), conv.transforms["5to3"].detach()
    for c in range(6):  # brute force, one channel at a time, with the same two matrices for every channel
        w5 = (m75 @ w7[c, 0, 1:6, 1:6].reshape(25)).reshape(5, 5)
        w3 = (m53 @ w5[1:4, 1:4].reshape(9)).reshape(3, 3)
        torch.testing.assert_close(conv.kernel_weight(6, 3)[c, 0], w3)
        torch.testing.assert_close(conv.kernel_weight(6, 5)[c, 0], w5)
    assert torch.equal(conv.kernel_weight(6, 7), conv.weight)
    assert conv.kernel_weight(4, 3).shape == (4, 1, 3, 3)
    # Sharing: the 3x3 kernel depends only on the centre 5x5 of the stored 7x7, and on both matrices.
    conv.kernel_weight(6, 3).sum().backward()
    grad = conv.weight.grad
    assert grad is not None
    ring = torch.ones(7, 7, dtype=torch.bool)
    ring[1:6, 1:6] = False
    assert torch.all(grad[:, :, ring] == 0)
    assert torch.all(grad[:, :, 1:6, 1:6].abs().sum((0, 1)) > 0)
    assert all(m.grad is not None and m.grad.abs().sum() > 0 for m in conv.transforms.values())


def test_transforms_start_as_identity_so_small_kernels_start_as_centres() -> None:
    conv = ElasticDepthwiseConv2d(4, (3, 5, 7))
    torch.testing.assert_close(conv.kernel_weight(4, 3), conv.weight[:, :, 2:5, 2:5])
    x = torch.randn(2, 4, 9, 9)
    torch.testing.assert_close(conv(x, 5), F.conv2d(x, conv.weight[:, :, 1:6, 1:6], None, 1, 2, 1, 4))


def test_channel_slices_are_views_of_the_shared_weights() -> None:
    conv = ElasticPointwiseConv2d(8, 16)
    assert conv.active_weight(8, 16) is conv.weight
    sliced = conv.active_weight(6, 12)
    assert sliced.data_ptr() == conv.weight.data_ptr()
    assert sliced._base is conv.weight
    depthwise = ElasticDepthwiseConv2d(16, (3, 5, 7))
    assert depthwise.kernel_weight(16, 7) is depthwise.weight
    assert depthwise.kernel_weight(10, 7)._base is depthwise.weight


def test_elastic_batch_norm_matches_a_static_one_and_updates_only_active_statistics() -> None:
    torch.manual_seed(0)
    elastic = ElasticBatchNorm2d(8)
    _randomise(elastic)
    before = elastic.running_mean.clone()  # type: ignore[union-attr]
    static = elastic.to_static(5)
    x = torch.randn(6, 5, 4, 4) * 3 + 1
    torch.testing.assert_close(elastic(x), static(x))  # training mode: batch statistics, same momentum update
    torch.testing.assert_close(elastic.running_mean[:5], static.running_mean)  # type: ignore[index]
    torch.testing.assert_close(elastic.running_var[:5], static.running_var)  # type: ignore[index]
    assert torch.equal(elastic.running_mean[5:], before[5:])  # type: ignore[index]
    elastic.eval(), static.eval()
    torch.testing.assert_close(elastic(x), static(x))


@pytest.mark.parametrize("use_se", [False, True])
def test_channel_sorting_keeps_the_block_function_and_orders_by_importance(use_se: bool) -> None:
    torch.manual_seed(0)
    block = ElasticInvertedResidual(8, 8, (3, 5), (3, 4, 6), stride=1, act="hswish", use_se=use_se)
    _randomise(block)
    x = torch.randn(3, 8, 6, 6)
    block.eval()
    before = block(x)
    block.reorganize_channels()
    torch.testing.assert_close(block(x), before, atol=1e-5, rtol=1e-5)
    importance = block.project.weight.abs().sum((0, 2, 3))
    assert torch.all(importance[:-1] >= importance[1:])
    # A smaller width now keeps the most important channels.
    assert importance[: block.hidden_channels(3)].min() >= importance[block.hidden_channels(3) :].max()


def test_banded_sorting_keeps_trained_channels_inside_their_prefix() -> None:
    torch.manual_seed(0)
    block = ElasticInvertedResidual(8, 8, (3,), (3, 4, 6), stride=1, act="relu", use_se=True)
    _randomise(block)
    width4 = block.hidden_channels(4)
    members = {tuple(row.tolist()) for row in block.depthwise.weight[:width4].flatten(1)}
    x = torch.randn(2, 8, 5, 5)
    block.eval()
    before = block(x)
    block.reorganize_channels(keep_within=(4,))
    torch.testing.assert_close(block(x), before, atol=1e-5, rtol=1e-5)
    assert {tuple(row.tolist()) for row in block.depthwise.weight[:width4].flatten(1)} == members
    importance = block.project.weight.abs().sum((0, 2, 3))
    assert torch.all(importance[: width4 - 1] >= importance[1:width4])


def test_bad_kernel_sizes_are_named() -> None:
    with pytest.raises(ValueError, match=r"kernel sizes must be odd positive integers, got \[3, 4\]"):
        ElasticDepthwiseConv2d(4, (3, 4))
    with pytest.raises(ValueError, match=r"kernel size 9 is not offered; valid sizes: \[3, 5, 7\]"):
        ElasticDepthwiseConv2d(4, (3, 5, 7)).kernel_weight(4, 9)
