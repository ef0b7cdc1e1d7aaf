"""The candidate operations of ENAS (Pham et al., ICML 2018, Sec. 2.3 and 2.4).

Micro search uses five ops that the DARTS registry already has; macro search adds plain 3x3 and 5x5
convolutions, registered here as ``conv_3x3`` and ``conv_5x5`` (ReLU, convolution, BatchNorm).
"""

from __future__ import annotations

from torch import nn

from lightning_nas.ops._registry import register_op
from lightning_nas.ops.darts_ops import ReLUConvBN

__all__ = ["ENAS_MACRO_OPS", "ENAS_MICRO_OPS"]

ENAS_MICRO_OPS: tuple[str, ...] = ("sep_conv_3x3", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3", "skip_connect")
"""The five ops of ENAS micro search (Sec. 2.4): separable convolutions 3x3 and 5x5, average and max pooling 3x3,
and identity."""

ENAS_MACRO_OPS: tuple[str, ...] = (
    "conv_3x3",
    "conv_5x5",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "max_pool_3x3",
    "avg_pool_3x3",
)
"""The six ops of ENAS macro search (Sec. 2.3): convolutions and separable convolutions 3x3 and 5x5, max and
average pooling 3x3."""


@register_op("conv_3x3")
def _conv_3x3(channels: int, stride: int, affine: bool) -> nn.Module:
    return ReLUConvBN(channels, channels, 3, stride, 1, affine)


@register_op("conv_5x5")
def _conv_5x5(channels: int, stride: int, affine: bool) -> nn.Module:
    return ReLUConvBN(channels, channels, 5, stride, 2, affine)
