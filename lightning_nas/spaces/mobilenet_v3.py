"""The MobileNetV3 layout of the Once-for-All space, its static subnet network, and analytic cost counters.

Layout (Cai et al. 2020, Sec. 4; the ``OFAMobileNetV3`` of the reference code, after MobileNetV3-Large,
Howard et al. 2019, Table 1): a ``3x3`` stem (h-swish), a first block without expansion (``3x3``, ReLU), five
stages of elastic inverted residual blocks, a ``1x1`` final expansion (h-swish), global pooling, a ``1x1``
feature-mix layer without batch norm (h-swish), dropout and a linear classifier.

========  ========  ======  ==========  =============
stage     channels  stride  activation  squeeze-excite
========  ========  ======  ==========  =============
stage0    24        2       relu        no
stage1    40        2       relu        yes
stage2    80        2       hswish      no
stage3    112       1       hswish      yes
stage4    160       2       hswish      yes
========  ========  ======  ==========  =============

The CIFAR-scale preset keeps the widths and uses stride 1 in the stem and in ``stage0`` (total stride 8).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from torch import Tensor, nn

from lightning_nas.ops.mobile import Activation, make_divisible, squeeze_channels
from lightning_nas.spaces.elastic import resize_images

__all__ = [
    "BlockSpec",
    "MobileNetV3Layout",
    "MobileNetV3Subnet",
    "Preset",
    "count_flops",
    "count_params",
    "layout",
]

Preset = Literal["imagenet", "cifar"]

_WIDTHS = (16, 16, 24, 40, 80, 112, 160, 960, 1280)  # stem, first block, 5 stages, final expand, feature mix
_ACTIVATIONS: tuple[Activation, ...] = ("relu", "relu", "hswish", "hswish", "hswish")
_SQUEEZE_EXCITE = (False, True, False, True, True)
_PRESETS: dict[str, tuple[int, tuple[int, ...], tuple[int, ...]]] = {
    # preset: (stem stride, stage strides, resolutions). ImageNet sizes: the reference train_ofa_net.py.
    "imagenet": (2, (2, 2, 2, 1, 2), (128, 160, 192, 224)),
    "cifar": (1, (1, 2, 2, 1, 2), (24, 28, 32)),
}


@dataclass(frozen=True)
class MobileNetV3Layout:
    """Widths, strides, activations and squeeze-excite flags of the network; sizes of elastic choices excluded.

    Args:
        widths: ``(stem, first block, stage0..stage4, final expand, feature mix)`` channels.
        stem_stride: stride of the stem convolution.
        stage_strides: stride of the first block of each stage.
        activations: activation of each stage.
        squeeze_excite: whether each stage's blocks use squeeze-excite.
    """

    widths: tuple[int, ...] = _WIDTHS
    stem_stride: int = 2
    stage_strides: tuple[int, ...] = (2, 2, 2, 1, 2)
    activations: tuple[Activation, ...] = _ACTIVATIONS
    squeeze_excite: tuple[bool, ...] = _SQUEEZE_EXCITE

    def __post_init__(self) -> None:
        stages = len(self.stage_strides)
        if len(self.widths) != stages + 4 or any(w < 1 for w in self.widths):
            raise ValueError(
                f"widths must be {stages + 4} positive channel counts (stem, first block, {stages} stages, final "
                f"expand, feature mix), got {list(self.widths)}"
            )
        if len(self.activations) != stages or len(self.squeeze_excite) != stages:
            raise ValueError(f"activations and squeeze_excite need one entry per stage ({stages})")
        if any(s not in (1, 2) for s in (self.stem_stride, *self.stage_strides)):
            raise ValueError(f"strides must be 1 or 2, got stem {self.stem_stride}, stages {list(self.stage_strides)}")

    @property
    def stage_channels(self) -> tuple[int, ...]:
        """Output channels of each stage."""
        return self.widths[2:-2]

    @property
    def total_stride(self) -> int:
        """Downsampling factor from the input to the last feature map."""
        stride = self.stem_stride
        for s in self.stage_strides:
            stride *= s
        return stride


def layout(preset: Preset, widths: Sequence[int] | None = None) -> tuple[MobileNetV3Layout, tuple[int, ...]]:
    """The layout and default resolutions of a preset, optionally with other widths.

    Example:
        >>> net, resolutions = layout("imagenet")
        >>> net.total_stride, resolutions
        (32, (128, 160, 192, 224))
    """
    if preset not in _PRESETS:
        raise ValueError(f"preset must be one of {', '.join(map(repr, _PRESETS))}, got {preset!r}")
    stem_stride, stage_strides, resolutions = _PRESETS[preset]
    chosen = tuple(_WIDTHS if widths is None else widths)
    return MobileNetV3Layout(chosen, stem_stride, stage_strides), resolutions


@dataclass(frozen=True)
class BlockSpec:
    """One inverted residual block of a subnet; ``hidden == in_channels`` and no expansion when ``expand == 1``."""

    in_channels: int
    out_channels: int
    kernel: int
    expand: int
    stride: int
    act: Activation
    use_se: bool

    @property
    def hidden(self) -> int:
        """Channels of the depthwise convolution."""
        return self.in_channels if self.expand == 1 else make_divisible(self.in_channels * self.expand)


def _conv_out(size: int, stride: int) -> int:
    return (size - 1) // stride + 1  # odd kernel k with padding k // 2


def count_params(net: MobileNetV3Layout, blocks: Sequence[BlockSpec], in_channels: int, num_classes: int) -> int:
    """Parameters of the static subnet with these blocks (weights, biases and BN affine parameters)."""
    stem, *_, final, mix = net.widths
    total = in_channels * stem * 9 + 2 * stem
    for b in blocks:
        if b.expand != 1:
            total += b.in_channels * b.hidden + 2 * b.hidden
        total += b.hidden * b.kernel * b.kernel + 2 * b.hidden
        if b.use_se:
            squeeze = squeeze_channels(b.hidden)
            total += 2 * b.hidden * squeeze + squeeze + b.hidden
        total += b.hidden * b.out_channels + 2 * b.out_channels
    total += blocks[-1].out_channels * final + 2 * final
    return total + final * mix + mix * num_classes + num_classes


def count_flops(
    net: MobileNetV3Layout, blocks: Sequence[BlockSpec], in_channels: int, num_classes: int, resolution: int
) -> int:
    """Multiply-accumulates of convolutions and linear layers for one ``resolution x resolution`` image.

    The convention of the OFA and MobileNetV3 papers ("FLOPs" there are multiply-adds); batch norm, activations,
    pooling and the squeeze-excite product are not counted.
    """
    stem, *_, final, mix = net.widths
    size = _conv_out(resolution, net.stem_stride)
    total = size * size * stem * in_channels * 9
    for b in blocks:
        if b.expand != 1:
            total += size * size * b.in_channels * b.hidden
        size = _conv_out(size, b.stride)
        total += size * size * b.hidden * b.kernel * b.kernel
        if b.use_se:
            total += 2 * b.hidden * squeeze_channels(b.hidden)
        total += size * size * b.hidden * b.out_channels
    total += size * size * blocks[-1].out_channels * final
    return total + final * mix + mix * num_classes


class MobileNetV3Subnet(nn.Module):
    """A static MobileNetV3 network as exported from an elastic space; only ``torch.nn`` layers inside.

    Args:
        stem: ``conv -> BN -> h-swish``.
        blocks: the inverted residual blocks, first block included.
        final_expand: ``1x1 conv -> BN -> h-swish``.
        feature_mix: ``1x1 conv -> h-swish`` after global pooling.
        classifier: the linear classifier.
        resolution: images of another size are resized to this (bilinear) first; ``None`` keeps every size.
        dropout: dropout before the classifier.
    """

    def __init__(
        self,
        stem: nn.Sequential,
        blocks: nn.Sequential,
        final_expand: nn.Sequential,
        feature_mix: nn.Sequential,
        classifier: nn.Linear,
        *,
        resolution: int | None,
        dropout: float,
    ) -> None:
        super().__init__()
        self.stem, self.blocks, self.final_expand = stem, blocks, final_expand
        self.feature_mix, self.classifier = feature_mix, classifier
        self.dropout = nn.Dropout(dropout)
        self.resolution = resolution

    def forward(self, x: Tensor) -> Tensor:
        x = resize_images(x, self.resolution)
        x = self.final_expand(self.blocks(self.stem(x)))
        x = self.feature_mix(x.mean((2, 3), keepdim=True)).flatten(1)
        return self.classifier(self.dropout(x))
