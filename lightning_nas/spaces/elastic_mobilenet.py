"""The Once-for-All elastic MobileNetV3 space (Cai et al., ICLR 2020, Sec. 3 and 4).

Choices (all integers, named by stage and block, both counted from 0)::

    resolution              input resolution, e.g. 128 / 160 / 192 / 224
    stage{s}/depth          blocks kept in stage s: the first D (2 / 3 / 4)
    stage{s}/block{b}/kernel   depthwise kernel size (3 / 5 / 7)
    stage{s}/block{b}/expand   expand ratio (3 / 4 / 6)

Every block has a kernel and expand choice even when the stage's depth skips it, so that an architecture is
always a complete mapping; skipped blocks' values do not change the subnet. Inputs whose size differs from the
active resolution are resized (bilinear) inside the network, and the exported subnet does the same.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from lightning_nas.arch import Arch, Choice
from lightning_nas.ops.elastic import ElasticDepthwiseConv2d, ElasticInvertedResidual, ElasticPointwiseConv2d
from lightning_nas.ops.mobile import activation
from lightning_nas.spaces.base import check_images
from lightning_nas.spaces.elastic import ElasticSpace, resize_images
from lightning_nas.spaces.mobilenet_v3 import (
    BlockSpec,
    MobileNetV3Subnet,
    Preset,
    count_flops,
    count_params,
    layout,
)

__all__ = ["ElasticMobileNetV3"]


class ElasticMobileNetV3(ElasticSpace):
    """MobileNetV3 supernet with elastic kernel size, expand ratio, depth and input resolution.

    Args:
        in_channels: image channels.
        num_classes: classifier outputs.
        preset: ``"imagenet"`` (stride-2 stem, total stride 32, resolutions 128-224) or ``"cifar"`` (stride-1 stem
            and first stage, total stride 8, resolutions 24-32).
        kernel_sizes: depthwise kernel sizes offered per block (odd).
        expand_ratios: expand ratios offered per block.
        depths: blocks per stage offered; each stage holds ``max(depths)`` blocks.
        resolutions: input resolutions offered; ``None`` uses the preset's.
        widths: ``(stem, first block, stage0..stage4, final expand, feature mix)`` channels; ``None`` uses
            MobileNetV3-Large's ``(16, 16, 24, 40, 80, 112, 160, 960, 1280)``.
        dropout: dropout before the classifier (0.1).
        bn_momentum: batch-norm momentum (0.1).
        bn_eps: batch-norm epsilon (1e-5).

    Raises:
        ValueError: a resolution the stem cannot take (below the total stride, or not a multiple of the stem's
            stride), or empty/invalid size lists, naming the value.

    Example:
        >>> space = ElasticMobileNetV3(in_channels=1, num_classes=10, preset="cifar", widths=(8,) * 7 + (16, 16))
        >>> arch = space.sample_min_subnet()
        >>> arch["resolution"], arch["stage0/depth"], arch["stage0/block0/kernel"], arch["stage0/block0/expand"]
        (24, 2, 3, 3)
        >>> _ = space.eval()
        >>> space.activate(arch)
        >>> x = torch.randn(2, 1, 28, 28)
        >>> torch.allclose(space(x), space.export_subnet(arch).eval()(x), atol=1e-5)
        True
        >>> space.count_params(arch) == sum(p.numel() for p in space.export_subnet(arch).parameters())
        True
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        num_classes: int = 1000,
        preset: Preset = "imagenet",
        kernel_sizes: Sequence[int] = (3, 5, 7),
        expand_ratios: Sequence[int] = (3, 4, 6),
        depths: Sequence[int] = (2, 3, 4),
        resolutions: Sequence[int] | None = None,
        widths: Sequence[int] | None = None,
        dropout: float = 0.1,
        bn_momentum: float = 0.1,
        bn_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.layout, default_resolutions = layout(preset, widths)
        self.in_channels, self.num_classes, self.preset = in_channels, num_classes, preset
        self.kernel_sizes = _sizes("kernel_sizes", kernel_sizes)
        self.expand_ratios = _sizes("expand_ratios", expand_ratios)
        self.depths = _sizes("depths", depths)
        self.resolutions = _sizes("resolutions", default_resolutions if resolutions is None else resolutions)
        self.dropout, self.bn_momentum, self.bn_eps = dropout, bn_momentum, bn_eps
        self._check_resolutions()
        bn = {"bn_momentum": bn_momentum, "bn_eps": bn_eps}
        stem, first, *_, final, mix = self.layout.widths
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem, 3, self.layout.stem_stride, 1, bias=False),
            nn.BatchNorm2d(stem, bn_eps, bn_momentum),
            activation("hswish"),
        )
        self.first_block = ElasticInvertedResidual(stem, first, (3,), (1,), stride=1, act="relu", use_se=False, **bn)
        self.stages = nn.ModuleList()
        self.blocks: list[list[ElasticInvertedResidual]] = []  # the stages' blocks, typed
        channels = first
        for out, stride, act, use_se in zip(
            self.layout.stage_channels, self.layout.stage_strides, self.layout.activations, self.layout.squeeze_excite
        ):
            blocks = [
                ElasticInvertedResidual(
                    channels if b == 0 else out,
                    out,
                    self.kernel_sizes,
                    self.expand_ratios,
                    stride=stride if b == 0 else 1,
                    act=act,
                    use_se=use_se,
                    **bn,
                )
                for b in range(self.depths[-1])
            ]
            self.stages.append(nn.ModuleList(blocks))
            self.blocks.append(blocks)
            channels = out
        self.final_expand = nn.Sequential(
            nn.Conv2d(channels, final, 1, bias=False), nn.BatchNorm2d(final, bn_eps, bn_momentum), activation("hswish")
        )
        self.feature_mix = nn.Sequential(nn.Conv2d(final, mix, 1, bias=False), activation("hswish"))
        self.classifier_dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(mix, num_classes)
        self.active_resolution = self.resolutions[-1]
        self.active_depths = [self.depths[-1]] * len(self.stages)
        _init_weights(self)

    # ------------------------------------------------------------------------------------------------ choices
    def choices(self) -> list[Choice]:
        """``resolution``, then per stage its depth and per block its kernel and expand ratio."""
        found = [Choice("resolution", self.resolutions)]
        for s, stage in enumerate(self.blocks):
            found.append(Choice(f"stage{s}/depth", self.depths))
            for b in range(len(stage)):
                found.append(Choice(f"stage{s}/block{b}/kernel", self.kernel_sizes))
                found.append(Choice(f"stage{s}/block{b}/expand", self.expand_ratios))
        return found

    def activate(self, arch: Mapping[str, Any] | None) -> None:
        """Run subnet ``arch`` from now on (``None``: the largest). Raises ``ValueError`` naming a bad key/value."""
        arch = self.sample_max_subnet() if arch is None else self.validate_arch(arch)
        self.active_resolution = int(arch["resolution"])
        for s, stage in enumerate(self.blocks):
            self.active_depths[s] = int(arch[f"stage{s}/depth"])
            for b, block in enumerate(stage):
                block.active_kernel = int(arch[f"stage{s}/block{b}/kernel"])
                block.active_expand = int(arch[f"stage{s}/block{b}/expand"])

    def active_arch(self) -> Arch:
        """The subnet running now."""
        arch: Arch = {"resolution": self.active_resolution}
        for s, stage in enumerate(self.blocks):
            arch[f"stage{s}/depth"] = self.active_depths[s]
            for b, block in enumerate(stage):
                arch[f"stage{s}/block{b}/kernel"] = block.active_kernel
                arch[f"stage{s}/block{b}/expand"] = block.active_expand
        return arch

    # ------------------------------------------------------------------------------------------------ forward
    def forward(self, x: Tensor) -> Tensor:
        check_images(x, self.in_channels)
        x = self.first_block(self.stem(resize_images(x, self.active_resolution)))
        for stage, depth in zip(self.blocks, self.active_depths):
            for block in stage[:depth]:
                x = block(x)
        x = self.feature_mix(self.final_expand(x).mean((2, 3), keepdim=True)).flatten(1)
        return self.classifier(self.classifier_dropout(x))

    # ------------------------------------------------------------------------------------------------- export
    def export_subnet(self, arch: Mapping[str, Any], *, fixed_resolution: bool = True) -> MobileNetV3Subnet:
        """The static subnet ``arch`` with copied weights; in the mode (train/eval) of the supernet.

        Args:
            arch: the subnet.
            fixed_resolution: resize inputs to ``arch["resolution"]`` (as the supernet does); ``False`` runs
                every input at its own size (a teacher fed with the student's images, for instance).
        """
        arch = self.validate_arch(arch)
        blocks = [self.first_block.to_static()]
        for s, stage in enumerate(self.blocks):
            for b in range(int(arch[f"stage{s}/depth"])):
                kernel, expand = int(arch[f"stage{s}/block{b}/kernel"]), int(arch[f"stage{s}/block{b}/expand"])
                blocks.append(stage[b].to_static(kernel, expand))
        subnet = MobileNetV3Subnet(
            copy.deepcopy(self.stem),
            nn.Sequential(*blocks),
            copy.deepcopy(self.final_expand),
            copy.deepcopy(self.feature_mix),
            copy.deepcopy(self.classifier),
            resolution=int(arch["resolution"]) if fixed_resolution else None,
            dropout=self.dropout,
        )
        return subnet.train(self.training)

    def block_specs(self, arch: Mapping[str, Any]) -> list[BlockSpec]:
        """The blocks of subnet ``arch``, first block included."""
        arch = self.validate_arch(arch)
        first = self.first_block
        specs = [BlockSpec(first.in_channels, first.out_channels, 3, 1, 1, "relu", False)]
        for s, stage in enumerate(self.blocks):
            for b in range(int(arch[f"stage{s}/depth"])):
                block = stage[b]
                kernel, expand = int(arch[f"stage{s}/block{b}/kernel"]), int(arch[f"stage{s}/block{b}/expand"])
                specs.append(
                    BlockSpec(
                        block.in_channels, block.out_channels, kernel, expand, block.stride, block.act, block.use_se
                    )
                )
        return specs

    def count_params(self, arch: Mapping[str, Any]) -> int:
        """Parameters of :meth:`export_subnet` ``(arch)``, from the layout alone."""
        return count_params(self.layout, self.block_specs(arch), self.in_channels, self.num_classes)

    def count_flops(self, arch: Mapping[str, Any]) -> int:
        """Multiply-accumulates of one image through subnet ``arch`` (convolutions and linear layers)."""
        specs = self.block_specs(arch)
        return count_flops(self.layout, specs, self.in_channels, self.num_classes, int(arch["resolution"]))

    @torch.no_grad()
    def reorganize_channels(self, keep_within: Sequence[int] = ()) -> None:
        """Sort every block's hidden channels by importance (see ``ElasticInvertedResidual.reorganize_channels``).

        Args:
            keep_within: expand ratios whose channel prefixes must keep their members (already trained widths).
        """
        outside = sorted(set(keep_within) - set(self.expand_ratios))
        if outside:
            raise ValueError(f"keep_within got {outside}; valid expand ratios: {list(self.expand_ratios)}")
        for stage in self.blocks:
            for block in stage:
                block.reorganize_channels(keep_within)

    def config(self) -> dict[str, Any]:
        """Constructor arguments as JSON values."""
        return {
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "preset": self.preset,
            "kernel_sizes": list(self.kernel_sizes),
            "expand_ratios": list(self.expand_ratios),
            "depths": list(self.depths),
            "resolutions": list(self.resolutions),
            "widths": list(self.layout.widths),
            "dropout": self.dropout,
            "bn_momentum": self.bn_momentum,
            "bn_eps": self.bn_eps,
        }

    def _check_resolutions(self) -> None:
        stride, stem_stride = self.layout.total_stride, self.layout.stem_stride
        for resolution in self.resolutions:
            if resolution < stride or resolution % stem_stride:
                raise ValueError(
                    f"resolution {resolution} cannot be taken by the stem of preset {self.preset!r}: resolutions "
                    f"must be multiples of the stem stride {stem_stride} and at least the total stride {stride}"
                )


def _sizes(name: str, values: Sequence[int]) -> tuple[int, ...]:
    sizes = tuple(sorted(set(values)))
    if not sizes or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in sizes):
        raise ValueError(f"{name} must be a non-empty list of positive integers, got {list(values)}")
    return sizes


def _init_weights(module: nn.Module) -> None:
    """He initialisation over fan-out for convolutions (the reference code's ``he_fout``), zero biases, BN at (1, 0)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, ElasticPointwiseConv2d, ElasticDepthwiseConv2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            bias = getattr(m, "bias", None)
            if bias is not None:
                nn.init.zeros_(bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            bound = m.in_features**-0.5
            nn.init.uniform_(m.weight, -bound, bound)
            nn.init.zeros_(m.bias)
