"""Static MobileNetV3 building blocks: squeeze-excite and the inverted residual block, in plain ``torch.nn``.

These are what an elastic subnet exports to (see :mod:`lightning_nas.ops.elastic`). The block follows
MobileNetV3 (Howard et al. 2019, Sec. 5.3 and Table 1): ``1x1 expand -> BN -> act -> kxk depthwise -> BN -> act
-> squeeze-excite -> 1x1 project -> BN`` with a residual connection when the shapes allow it.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812

__all__ = [
    "Activation",
    "InvertedResidual",
    "SqueezeExcite",
    "activation",
    "conv_bn",
    "make_divisible",
    "squeeze_channels",
]

Activation = Literal["relu", "hswish"]


def make_divisible(value: float, divisor: int = 8) -> int:
    """MobileNet's channel rounding: the nearest multiple of ``divisor``, at least ``divisor``, never below 90%.

    Example:
        >>> make_divisible(16 * 4.5), make_divisible(10), make_divisible(3)
        (72, 16, 8)
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def squeeze_channels(channels: int, reduction: int = 4) -> int:
    """Hidden width of the squeeze-excite bottleneck of ``channels`` channels (MobileNetV3: a quarter, rounded).

    Example:
        >>> squeeze_channels(144), squeeze_channels(24)
        (40, 8)
    """
    return make_divisible(channels // reduction)


def activation(name: Activation) -> nn.Module:
    """``nn.ReLU`` for ``"relu"``, ``nn.Hardswish`` for ``"hswish"``.

    Raises:
        ValueError: any other name, listing the valid ones.
    """
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "hswish":
        return nn.Hardswish(inplace=True)
    raise ValueError(f"activation must be 'relu' or 'hswish', got {name!r}")


class SqueezeExcite(nn.Module):
    """Channel attention ``x * hsigmoid(W2 relu(W1 mean_hw(x) + b1) + b2)`` (Hu et al. 2018; MobileNetV3's gate).

    Args:
        channels: channels of the input.
        squeeze: hidden width; ``None`` means :func:`squeeze_channels` of ``channels``.

    Example:
        >>> import torch
        >>> se = SqueezeExcite(16)
        >>> se(torch.randn(2, 16, 5, 5)).shape, se.reduce.out_channels
        (torch.Size([2, 16, 5, 5]), 8)
    """

    def __init__(self, channels: int, squeeze: int | None = None) -> None:
        super().__init__()
        hidden = squeeze_channels(channels) if squeeze is None else squeeze
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.expand = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        gate = F.relu(self.reduce(x.mean((2, 3), keepdim=True)))
        return x * F.hardsigmoid(self.expand(gate))


class InvertedResidual(nn.Module):
    """A MobileNetV2/V3 block from its parts; the residual is added when ``residual`` is true.

    Args:
        expand: ``1x1 conv -> BN -> act``, or ``None`` when the block does not expand (expand ratio 1).
        depthwise: ``kxk depthwise conv -> BN -> act``.
        squeeze_excite: the block's squeeze-excite, or ``None``.
        project: ``1x1 conv -> BN`` (linear bottleneck).
        residual: add the input to the output (stride 1 and equal channels).
    """

    def __init__(
        self,
        expand: nn.Sequential | None,
        depthwise: nn.Sequential,
        squeeze_excite: SqueezeExcite | None,
        project: nn.Sequential,
        *,
        residual: bool,
    ) -> None:
        super().__init__()
        self.expand = expand
        self.depthwise = depthwise
        self.squeeze_excite = squeeze_excite
        self.project = project
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        out = x if self.expand is None else self.expand(x)
        out = self.depthwise(out)
        if self.squeeze_excite is not None:
            out = self.squeeze_excite(out)
        out = self.project(out)
        return out + x if self.residual else out


def conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d, act: Activation | None) -> nn.Sequential:
    """``Sequential(conv, bn[, act])``."""
    layers: list[nn.Module] = [conv, bn]
    if act is not None:
        layers.append(activation(act))
    return nn.Sequential(*layers)
