"""The eight candidate operations of the DARTS search space (Liu et al., 2019, Sec. 3.1).

Every op that starts with a ReLU is a :class:`PreActivated` module, so a mixed op can apply that ReLU once per
input and share it across all of the edge's ops (the single largest elementwise saving in a supernet step).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lightning_nas.ops._registry import register_op
from lightning_nas.ops.depthwise import DepthwiseConv2d

__all__ = [
    "DARTS_OPS",
    "DilConv",
    "FactorizedReduce",
    "PreActivated",
    "ReLUConvBN",
    "SepConv",
    "Zero",
]

DARTS_OPS: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
"""The DARTS paper's candidate ops, in the order of its reference code."""


class PreActivated(nn.Module):
    """``body(relu(x))``: an op whose first step is a ReLU on its input.

    :meth:`forward_activated` runs the body on an input that is already ``relu(x)``.
    """

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: Tensor) -> Tensor:
        return self.body(torch.relu(x))

    def forward_activated(self, relu_x: Tensor) -> Tensor:
        """The op on ``relu_x = relu(x)``."""
        return self.body(relu_x)


class ReLUConvBN(PreActivated):
    """ReLU, convolution, BatchNorm."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, padding: int, affine: bool = True):
        super().__init__(
            nn.Sequential(
                nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=False),
                nn.BatchNorm2d(c_out, affine=affine),
            )
        )


class DilConv(PreActivated):
    """ReLU, dilated depthwise convolution, pointwise convolution, BatchNorm."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, dilation: int, affine: bool = True):
        padding = dilation * (kernel_size - 1) // 2
        super().__init__(
            nn.Sequential(
                DepthwiseConv2d(c_in, kernel_size, stride, padding, dilation),
                nn.Conv2d(c_in, c_out, 1, bias=False),
                nn.BatchNorm2d(c_out, affine=affine),
            )
        )


class SepConv(PreActivated):
    """Two stacked (ReLU, depthwise, pointwise, BatchNorm) blocks; only the first is strided."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, affine: bool = True):
        padding = (kernel_size - 1) // 2
        super().__init__(
            nn.Sequential(
                DepthwiseConv2d(c_in, kernel_size, stride, padding),
                nn.Conv2d(c_in, c_in, 1, bias=False),
                nn.BatchNorm2d(c_in, affine=affine),
                nn.ReLU(),
                DepthwiseConv2d(c_in, kernel_size, 1, padding),
                nn.Conv2d(c_in, c_out, 1, bias=False),
                nn.BatchNorm2d(c_out, affine=affine),
            )
        )


class _HalfConcat(nn.Module):
    def __init__(self, c_in: int, c_out: int, affine: bool) -> None:
        super().__init__()
        self.conv_even = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_odd = nn.Conv2d(c_in, c_out - c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: Tensor) -> Tensor:
        # The second conv sees the input shifted by one pixel, so together they cover every position.
        return self.bn(torch.cat([self.conv_even(x), self.conv_odd(x[:, :, 1:, 1:])], dim=1))


class FactorizedReduce(PreActivated):
    """ReLU, then two offset 1x1 stride-2 convolutions concatenated, then BatchNorm: halves H and W.

    Odd input sizes are supported (the offset branch sees one pixel less, giving the same output size).
    """

    def __init__(self, c_in: int, c_out: int, affine: bool = True) -> None:
        super().__init__(_HalfConcat(c_in, c_out, affine))

    def forward_activated(self, relu_x: Tensor) -> Tensor:
        if relu_x.shape[-1] % 2 or relu_x.shape[-2] % 2:
            relu_x = nn.functional.pad(relu_x, (0, relu_x.shape[-1] % 2, 0, relu_x.shape[-2] % 2))
        return self.body(relu_x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_activated(torch.relu(x))


class Zero(nn.Module):
    """The ``none`` op: zeros of the output shape. Mixed ops skip it, since it adds nothing to a weighted sum."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class _Pool(nn.Module):
    def __init__(self, kind: str, stride: int) -> None:
        super().__init__()
        self.pool = (
            nn.MaxPool2d(3, stride=stride, padding=1)
            if kind == "max"
            else nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(x)


@register_op("none")
def _none(channels: int, stride: int, affine: bool) -> nn.Module:
    return Zero(stride)


@register_op("max_pool_3x3")
def _max_pool_3x3(channels: int, stride: int, affine: bool) -> nn.Module:
    return _Pool("max", stride)


@register_op("avg_pool_3x3")
def _avg_pool_3x3(channels: int, stride: int, affine: bool) -> nn.Module:
    return _Pool("avg", stride)


@register_op("skip_connect")
def _skip_connect(channels: int, stride: int, affine: bool) -> nn.Module:
    return nn.Identity() if stride == 1 else FactorizedReduce(channels, channels, affine)


@register_op("sep_conv_3x3")
def _sep_conv_3x3(channels: int, stride: int, affine: bool) -> nn.Module:
    return SepConv(channels, channels, 3, stride, affine)


@register_op("sep_conv_5x5")
def _sep_conv_5x5(channels: int, stride: int, affine: bool) -> nn.Module:
    return SepConv(channels, channels, 5, stride, affine)


@register_op("dil_conv_3x3")
def _dil_conv_3x3(channels: int, stride: int, affine: bool) -> nn.Module:
    return DilConv(channels, channels, 3, stride, 2, affine)


@register_op("dil_conv_5x5")
def _dil_conv_5x5(channels: int, stride: int, affine: bool) -> nn.Module:
    return DilConv(channels, channels, 5, stride, 2, affine)
