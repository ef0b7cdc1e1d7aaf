"""The network a DARTS genotype describes, for training from scratch (Liu et al., 2019, Sec. 3.2).

The CIFAR evaluation network: a 3x3 stem of ``3 * channels``, ``layers`` cells built from the genotype with
reduction cells at 1/3 and 2/3 depth, an auxiliary classifier after the second reduction (Szegedy et al., 2016),
and drop-path on every non-identity op (Zoph et al., 2018).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lightning_nas.arch import Genotype
from lightning_nas.ops import FactorizedReduce, ReLUConvBN, build_op
from lightning_nas.spaces.base import check_images, reduction_layers

__all__ = ["AuxiliaryHead", "DartsNetwork", "drop_path"]


def drop_path(x: Tensor, drop_prob: float) -> Tensor:
    """Zero whole samples of ``x`` with probability ``drop_prob`` and rescale the rest by ``1 / (1 - drop_prob)``.

    Example:
        >>> x = torch.ones(1000, 1, 1, 1)
        >>> y = drop_path(x, 0.25)
        >>> torch.allclose(y.unique(), torch.tensor([0.0, 1 / 0.75]))
        True
    """
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], *([1] * (x.ndim - 1)), dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x * mask / keep


class EvalCell(nn.Module):
    """A fixed cell: each intermediate node sums its two ops' outputs; the ``concat`` nodes form the output."""

    def __init__(
        self, genotype: Genotype, c_prev_prev: int, c_prev: int, channels: int, reduction: bool, reduction_prev: bool
    ) -> None:
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = (
            FactorizedReduce(c_prev_prev, channels) if reduction_prev else ReLUConvBN(c_prev_prev, channels, 1, 1, 0)
        )
        self.preprocess1 = ReLUConvBN(c_prev, channels, 1, 1, 0)
        edges = genotype.reduce if reduction else genotype.normal
        self.concat = genotype.reduce_concat if reduction else genotype.normal_concat
        self.inputs = tuple(index for _, index in edges)
        self.ops = nn.ModuleList(
            build_op(name, channels, 2 if reduction and index < 2 else 1, affine=True) for name, index in edges
        )

    @property
    def out_channels_multiplier(self) -> int:
        return len(self.concat)

    def forward(self, s0: Tensor, s1: Tensor, drop_prob: float) -> Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for node in range(len(self.ops) // 2):
            outputs = []
            for slot in (2 * node, 2 * node + 1):
                h = self.ops[slot](states[self.inputs[slot]])
                if self.training and not isinstance(self.ops[slot], nn.Identity):
                    h = drop_path(h, drop_prob)
                outputs.append(h)
            states.append(outputs[0] + outputs[1])
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryHead(nn.Module):
    """The auxiliary classifier on the 8x8 maps after the second reduction (on CIFAR's 32x32 input).

    Smaller maps (e.g. 7x7 from 28x28 MNIST) are pooled to 2x2 adaptively; parameters are the same.
    """

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.relu(x)
        x = (
            nn.functional.avg_pool2d(x, 5, stride=3)
            if min(x.shape[-2:]) >= 8
            else nn.functional.adaptive_avg_pool2d(x, 2)
        )
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


class DartsNetwork(nn.Module):
    """A stack of genotype cells for image classification.

    Args:
        genotype: the cell pair.
        in_channels: image channels.
        num_classes: classifier outputs.
        channels: channels of the first cell (36 for the CIFAR evaluation network).
        layers: number of cells (20 for CIFAR).
        auxiliary: build the auxiliary head (its logits come back in training mode only).
        drop_path_prob: drop-path probability; :class:`~lightning_nas.methods.Retrain` schedules it.

    Example:
        >>> from lightning_nas.spaces.genotypes import DARTS_V2
        >>> net = DartsNetwork(DARTS_V2, in_channels=3, num_classes=10, channels=8, layers=5).eval()
        >>> logits, aux = net(torch.randn(2, 3, 32, 32))
        >>> logits.shape, aux
        (torch.Size([2, 10]), None)
    """

    def __init__(
        self,
        genotype: Genotype,
        *,
        in_channels: int = 3,
        num_classes: int = 10,
        channels: int = 36,
        layers: int = 20,
        stem_multiplier: int = 3,
        auxiliary: bool = True,
        drop_path_prob: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_channels, self.num_classes = in_channels, num_classes
        self.drop_path_prob = drop_path_prob
        c_stem = stem_multiplier * channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem))
        c_prev_prev, c_prev, c_cur = c_stem, c_stem, channels
        self.cells = nn.ModuleList()
        self.auxiliary_head: AuxiliaryHead | None = None
        self._auxiliary_after = reduction_layers(layers)[1]
        reduction_prev = False
        for layer in range(layers):
            reduction = layer in reduction_layers(layers)
            c_cur = c_cur * 2 if reduction else c_cur
            cell = EvalCell(genotype, c_prev_prev, c_prev, c_cur, reduction, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            c_prev_prev, c_prev = c_prev, cell.out_channels_multiplier * c_cur
            if auxiliary and layer == self._auxiliary_after:
                self.auxiliary_head = AuxiliaryHead(c_prev, num_classes)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Logits, and the auxiliary logits in training mode (``None`` otherwise or without the head)."""
        check_images(x, self.in_channels)
        aux_logits = None
        s0 = s1 = self.stem(x)
        for layer, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if layer == self._auxiliary_after and self.auxiliary_head is not None and self.training:
                aux_logits = self.auxiliary_head(s1)
        logits = self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(s1, 1), 1))
        return logits, aux_logits

    def num_parameters(self, include_auxiliary: bool = False) -> int:
        """Parameter count; the DARTS paper reports it without the auxiliary head."""
        skip = set() if include_auxiliary or self.auxiliary_head is None else set(self.auxiliary_head.parameters())
        return sum(p.numel() for p in self.parameters() if p not in skip)
