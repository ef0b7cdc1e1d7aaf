"""The five candidate operations of the NAS-Bench-201 cell (Dong & Yang, ICLR 2020, Sec. 2.1).

``none``, ``skip_connect`` and ``avg_pool_3x3`` are the DARTS ops of the same names: inside a NAS-Bench-201 cell
every edge keeps channels and resolution (stride 1), where the benchmark's ``Zero``, ``Identity`` and
``POOLING(avg, count_include_pad=False)`` compute exactly what the DARTS ops compute, so they are not registered
twice. The two convolutions are new names: ReLU, a plain convolution without bias, BatchNorm
(``ReLUConvBN`` in
https://github.com/D-X-Y/AutoDL-Projects/blob/076f9c2d41dc888b8087c266261d2094c8739340/lib/models/cell_operations.py).

Example:
    >>> import torch
    >>> from lightning_nas.ops import build_op
    >>> op = build_op("nor_conv_3x3", channels=4, stride=1)
    >>> op(torch.randn(2, 4, 8, 8)).shape
    torch.Size([2, 4, 8, 8])
    >>> sum(p.numel() for p in op.parameters())  # 4*4*3*3 conv weights + BatchNorm scale and shift
    152
"""

from __future__ import annotations

from torch import nn

from lightning_nas.ops._registry import register_op
from lightning_nas.ops.darts_ops import ReLUConvBN

__all__ = ["NB201_OPS"]

NB201_OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
"""The benchmark's candidate ops, in the order of its reference code (``NAS_BENCH_201`` in ``cell_operations.py``)."""


@register_op("nor_conv_1x1")
def _nor_conv_1x1(channels: int, stride: int, affine: bool) -> nn.Module:
    return ReLUConvBN(channels, channels, 1, stride, 0, affine)


@register_op("nor_conv_3x3")
def _nor_conv_3x3(channels: int, stride: int, affine: bool) -> nn.Module:
    return ReLUConvBN(channels, channels, 3, stride, 1, affine)
