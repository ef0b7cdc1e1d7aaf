"""The rewritten depthwise backward equals autograd's gradients of ``F.conv2d``."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F  # noqa: N812

from lightning_nas.ops.depthwise import DepthwiseConv2d, depthwise_conv2d


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "dilation"),
    [(9, 3, 1, 1), (9, 5, 2, 1), (8, 3, 2, 2), (7, 5, 2, 2), (8, 5, 1, 2), (6, 3, 1, 1)],
)
@pytest.mark.parametrize("channels_last", [False, True])
def test_gradients_match_autograd(size: int, kernel: int, stride: int, dilation: int, channels_last: bool) -> None:
    padding = dilation * (kernel - 1) // 2
    x = torch.randn(3, 4, size, size, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 1, kernel, kernel, dtype=torch.float64, requires_grad=True)
    if channels_last:
        x = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    y = depthwise_conv2d(x, w, stride, padding, dilation)
    expected = F.conv2d(x, w, None, stride, padding, dilation, 4)
    torch.testing.assert_close(y, expected)
    grad_out = torch.randn_like(y)
    torch.testing.assert_close(
        torch.autograd.grad(y, [x, w], grad_out), torch.autograd.grad(expected, [x, w], grad_out)
    )


def test_module_is_a_plain_conv2d_with_a_frozen_weight() -> None:
    conv = DepthwiseConv2d(4, 3, stride=1, padding=1).double()
    conv.weight.requires_grad_(False)
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(conv(x).square().sum(), [x])
    (expected,) = torch.autograd.grad(F.conv2d(x, conv.weight, None, 1, 1, 1, 4).square().sum(), [x])
    torch.testing.assert_close(grad, expected)
    assert isinstance(conv, torch.nn.Conv2d)
    assert set(conv.state_dict()) == {"weight"}


def test_bf16_gradients_keep_input_dtypes() -> None:
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    w = torch.randn(4, 1, 3, 3, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = depthwise_conv2d(x, w, 1, 2, 2)
    assert y.dtype == torch.bfloat16
    gx, gw = torch.autograd.grad(y.float().sum(), [x, w])
    assert gx.dtype == gw.dtype == torch.float32


def test_wrong_weight_shape_is_named() -> None:
    with pytest.raises(ValueError, match=r"depthwise weight must be \[4, 1, k, k\], got \[4, 2, 3, 3\]"):
        depthwise_conv2d(torch.randn(1, 4, 5, 5), torch.randn(4, 2, 3, 3))
