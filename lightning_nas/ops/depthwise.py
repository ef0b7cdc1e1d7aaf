"""A depthwise convolution whose backward pass is fast on CPUs.

oneDNN's depthwise backward on channels-last CPU tensors computes the input gradient many times slower than the
equivalent forward convolution. The input gradient of a depthwise convolution *is* a depthwise convolution of the
output gradient with the spatially flipped kernel (after inserting ``stride - 1`` zeros between its rows and
columns), so the backward here runs it as a forward convolution, and asks the library for the weight gradient
alone. The math is exact: tests compare both gradients with autograd's.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812

__all__ = ["DepthwiseConv2d", "depthwise_conv2d"]


class _DepthwiseConv2dFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, stride: int, padding: int, dilation: int) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.conf = (stride, padding, dilation)
        return F.conv2d(x, weight, None, stride, padding, dilation, x.shape[1])

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None, None, None, None]:
        x, weight = ctx.saved_tensors
        stride, padding, dilation = ctx.conf
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = _input_grad(grad_out, weight.to(grad_out.dtype), x.shape, stride, padding, dilation).to(x.dtype)
        if ctx.needs_input_grad[1]:
            _, grad_w, _ = torch.ops.aten.convolution_backward(
                grad_out,
                x.to(grad_out.dtype),
                weight.to(grad_out.dtype),
                None,
                [stride] * 2,
                [padding] * 2,
                [dilation] * 2,
                False,
                [0, 0],
                x.shape[1],
                [False, True, False],
            )
            grad_w = grad_w.to(weight.dtype)
        return grad_x, grad_w, None, None, None


def _input_grad(
    grad_out: Tensor, weight: Tensor, x_shape: torch.Size, stride: int, padding: int, dilation: int
) -> Tensor:
    """``d L / d x`` of ``y = depthwise_conv(x)``: a stride-1 correlation of the zero-upsampled ``grad_out``."""
    channels_last = grad_out.is_contiguous(memory_format=torch.channels_last)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    batch, channels, height, width = grad_out.shape
    if stride > 1:  # insert stride - 1 zeros between rows and columns
        upsampled = grad_out.new_zeros(batch, channels, (height - 1) * stride + 1, (width - 1) * stride + 1)
        upsampled = upsampled.contiguous(memory_format=layout)
        upsampled[:, :, ::stride, ::stride] = grad_out
        grad_out = upsampled
    reach = (weight.shape[-1] - 1) * dilation
    left = reach - padding
    right_h = x_shape[-2] + reach - left - grad_out.shape[-2]
    right_w = x_shape[-1] + reach - left - grad_out.shape[-1]
    flipped = weight.flip(-2, -1).contiguous(memory_format=layout)
    if left == right_h == right_w >= 0:
        return F.conv2d(grad_out, flipped, None, 1, left, dilation, channels)
    # Pad, or crop where negative, so the correlation yields exactly the input's size.
    padded = F.pad(grad_out, (left, right_w, left, right_h)).contiguous(memory_format=layout)
    return F.conv2d(padded, flipped, None, 1, 0, dilation, channels)


def depthwise_conv2d(x: Tensor, weight: Tensor, stride: int = 1, padding: int = 0, dilation: int = 1) -> Tensor:
    """``F.conv2d(x, weight, stride=..., padding=..., dilation=..., groups=C)`` with the fast backward.

    Example:
        >>> x, w = torch.randn(2, 3, 8, 8), torch.randn(3, 1, 3, 3)
        >>> torch.allclose(depthwise_conv2d(x, w, 2, 1), F.conv2d(x, w, None, 2, 1, 1, 3), atol=1e-6)
        True
    """
    if weight.shape[1] != 1 or weight.shape[0] != x.shape[1]:
        raise ValueError(f"depthwise weight must be [{x.shape[1]}, 1, k, k], got {list(weight.shape)}")
    return _DepthwiseConv2dFunction.apply(x, weight, stride, padding, dilation)


class DepthwiseConv2d(nn.Conv2d):
    """``nn.Conv2d(channels, channels, kernel_size, groups=channels, bias=False)`` with the fast backward.

    A drop-in ``nn.Conv2d`` (same parameters and state dict), so exported networks load in plain PyTorch.
    """

    def __init__(self, channels: int, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> None:
        super().__init__(channels, channels, kernel_size, stride, padding, dilation, groups=channels, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        stride, padding, dilation = self.stride[0], self.padding[0], self.dilation[0]
        # Measured on AVX-512 CPUs: the library's backward wins for undilated kernels when the weight gradient is
        # needed too; the rewritten one wins for dilated kernels and when only the input gradient is (a frozen
        # weight, as in DARTS's first-order architecture step).
        if dilation > 1 or (stride == 1 and not self.weight.requires_grad):
            return depthwise_conv2d(x, self.weight, stride, padding, dilation)  # type: ignore[arg-type]
        return super().forward(x)
