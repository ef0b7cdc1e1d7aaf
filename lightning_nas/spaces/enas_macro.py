"""The ENAS macro search space: a chain of layers, each choosing its op and its skip connections (Pham et al., 2018,
Sec. 2.3).

Layer ``i`` reads layer ``i - 1`` (the stem for layer 0), applies one of the candidate ops, adds the outputs of the
earlier layers it connects to, and normalises the sum with a BatchNorm. After the layers at about 1/3 and 2/3 of
the depth (the reference code's ``pool_layers``), every stored layer output is halved in size and doubled in
channels by its own factorized reduction, so later layers can still connect to any earlier layer.

Choices: ``layer{i}/op`` (the op) and ``layer{i}/skip{j}`` in ``(0, 1)`` for every ``j < i`` (whether layer ``i``
also adds layer ``j``'s output). :class:`EnasMacroNetwork` is the standalone network of one architecture.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from lightning_nas.arch import Arch, Choice, validate_arch
from lightning_nas.ops import ENAS_MACRO_OPS, FactorizedReduce, build_op
from lightning_nas.spaces.base import CellGraph, NodeChoice, SearchSpace, check_images

__all__ = ["EnasMacroNetwork", "EnasMacroSpace", "macro_choices", "macro_reduction_layers"]


def macro_reduction_layers(layers: int) -> tuple[int, ...]:
    """Layers after which the maps are reduced: ``(L // 3 - 1, 2 * (L // 3) - 1)``, as in the reference code.

    Example:
        >>> macro_reduction_layers(12), macro_reduction_layers(2)
        ((3, 7), ())
    """
    distance = layers // 3
    return () if distance == 0 else (distance - 1, 2 * distance - 1)


def macro_choices(layers: int, ops: Sequence[str]) -> list[Choice]:
    """The choices of a ``layers``-deep chain: per layer its op, then its skip connections to earlier layers."""
    return [
        choice
        for i in range(layers)
        for choice in (
            Choice(f"layer{i}/op", tuple(ops)),
            *(Choice(f"layer{i}/skip{j}", (0, 1)) for j in range(i)),
        )
    ]


class _Chain(nn.Module):
    """Stem, layers with the given candidate ops each, reductions and classifier; runs one wiring per call."""

    def __init__(
        self, layer_ops: Sequence[Sequence[str]], in_channels: int, num_classes: int, channels: int, affine: bool
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
        self.reductions_after = macro_reduction_layers(len(layer_ops))
        self.ops = nn.ModuleList()
        self.norms = nn.ModuleList()
        self.reductions = nn.ModuleList()
        width = channels
        for i, names in enumerate(layer_ops):
            self.ops.append(nn.ModuleList(build_op(name, width, 1, affine) for name in names))
            self.norms.append(nn.BatchNorm2d(width, affine=affine))
            if i in self.reductions_after:
                self.reductions.append(nn.ModuleList(FactorizedReduce(width, 2 * width, affine) for _ in range(i + 1)))
                width *= 2
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: Tensor, ops: Sequence[int | None], skips: Sequence[Sequence[int]]) -> Tensor:
        """``ops[i]``: the op index of layer ``i`` (``None``: the mean of all its ops); ``skips[i]``: layers it adds."""
        h = self.stem(x)
        outputs: list[Tensor] = []
        reductions = iter(self.reductions)
        for i, (layer_ops, norm) in enumerate(zip(self.ops, self.norms)):
            candidates: nn.ModuleList = layer_ops  # type: ignore[assignment]
            index = ops[i]
            out = torch.stack([op(h) for op in candidates]).mean(0) if index is None else candidates[index](h)
            for j in skips[i]:
                out = out + outputs[j]
            h = norm(out)
            outputs.append(h)
            if i in self.reductions_after:
                reduce: nn.ModuleList = next(reductions)  # type: ignore[assignment]
                outputs = [r(o) for r, o in zip(reduce, outputs)]
                h = outputs[-1]
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(h, 1), 1))


class EnasMacroSpace(SearchSpace):
    """The ENAS macro supernet: ``layers`` layers sharing one set of weights per (layer, op).

    Without an active architecture (``activate(None)``) every layer averages all its ops and adds every earlier
    layer; sampling methods :meth:`activate` one child at a time.

    Args:
        in_channels: image channels.
        num_classes: classifier outputs.
        channels: channels of the first layers, doubled at each reduction (36 in the reference macro search).
        layers: number of layers (12 in the paper's macro search).
        ops: candidate op names from the registry (default: the paper's six).

    Example:
        >>> space = EnasMacroSpace(in_channels=1, num_classes=10, channels=4, layers=3)
        >>> [c.name for c in space.choices()]
        ['layer0/op', 'layer1/op', 'layer1/skip0', 'layer2/op', 'layer2/skip0', 'layer2/skip1']
        >>> arch = {c.name: 0 for c in space.choices()}
        >>> arch.update({"layer0/op": "max_pool_3x3", "layer1/op": "conv_3x3", "layer2/op": "sep_conv_5x5"})
        >>> space.activate({**arch, "layer2/skip0": 1})
        >>> space(torch.randn(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        num_classes: int = 10,
        channels: int = 36,
        layers: int = 12,
        ops: Sequence[str] = ENAS_MACRO_OPS,
    ) -> None:
        super().__init__()
        if layers < 1 or channels < 1:
            raise ValueError(f"need layers >= 1 and channels >= 1; got {layers=}, {channels=}")
        if not ops or len(set(ops)) != len(ops):
            raise ValueError(f"ops must be distinct op names, got {list(ops)}")
        self.in_channels, self.num_classes = in_channels, num_classes
        self.layers, self.ops = layers, tuple(ops)
        self.chain = _Chain([self.ops] * layers, in_channels, num_classes, channels, affine=False)
        self._active: tuple[list[int | None], list[list[int]]] | None = None

    def choices(self) -> list[Choice]:
        return macro_choices(self.layers, self.ops)

    def node_choices(self) -> dict[str, NodeChoice]:
        """``layer{i}/op`` configures node ``layer{i}``; ``layer{i}/skip{j}`` connects it to ``layer{j}``.

        Example:
            >>> EnasMacroSpace(channels=4, layers=2).node_choices()["layer1/skip0"]
            NodeChoice(node='layer1', kind='connect', sources=('layer0',))
        """
        graph = {}
        for choice in self.choices():
            layer, decision = choice.name.split("/")
            if decision == "op":
                graph[choice.name] = NodeChoice(layer, "op")
            else:
                graph[choice.name] = NodeChoice(layer, "connect", (f"layer{decision.removeprefix('skip')}",))
        return graph

    def activate(self, arch: Mapping[str, Any] | None) -> None:
        if arch is None:
            self._active = None
            return
        valid = self.validate_arch(arch)
        index = {op: k for k, op in enumerate(self.ops)}
        ops: list[int | None] = [index[str(valid[f"layer{i}/op"])] for i in range(self.layers)]
        self._active = (ops, _skips(valid, self.layers))

    def forward(self, x: Tensor) -> Tensor:
        check_images(x, self.in_channels)
        if self._active is None:
            return self.chain(x, [None] * self.layers, [list(range(i)) for i in range(self.layers)])
        ops, skips = self._active
        return self.chain(x, ops, skips)

    def cell_graphs(self, arch: Mapping[str, Any]) -> dict[str, CellGraph]:
        """The whole chain as one graph ``"macro"``: ``stem -> layer0 -> ...`` labelled with each layer's op, and an
        edge ``layer{j} -> layer{i}`` labelled ``skip`` for every skip connection (labelled edges are drawn curved,
        so skips that span several layers stay apart).

        Example:
            >>> space = EnasMacroSpace(channels=4, layers=2)
            >>> space.cell_graphs({"layer0/op": "conv_3x3", "layer1/op": "max_pool_3x3", "layer1/skip0": 1})["macro"]
            [('stem', 'layer0', 'conv_3x3'), ('layer0', 'layer1', 'max_pool_3x3'), ('layer0', 'layer1', 'skip')]
        """
        valid = self.validate_arch(arch)
        graph: CellGraph = []
        for i, skips in enumerate(_skips(valid, self.layers)):
            graph.append(("stem" if i == 0 else f"layer{i - 1}", f"layer{i}", str(valid[f"layer{i}/op"])))
            graph += [(f"layer{j}", f"layer{i}", "skip") for j in skips]
        return {"macro": graph}


class EnasMacroNetwork(nn.Module):
    """The standalone network of one macro architecture, with fresh weights for training from scratch.

    Args:
        arch: a macro architecture (``layer{i}/op``, ``layer{i}/skip{j}``); the number of layers is read from it.
        in_channels: image channels.
        num_classes: classifier outputs.
        channels: channels of the first layers, doubled at each reduction.

    Raises:
        ValueError: ``arch`` is not a complete macro architecture, or uses an unregistered op.

    Example:
        >>> arch = {"layer0/op": "conv_3x3", "layer1/op": "avg_pool_3x3", "layer1/skip0": 1}
        >>> net = EnasMacroNetwork(arch, in_channels=3, num_classes=10, channels=8)
        >>> net(torch.randn(2, 3, 16, 16)).shape
        torch.Size([2, 10])
    """

    def __init__(self, arch: Mapping[str, Any], *, in_channels: int = 3, num_classes: int = 10, channels: int = 36):
        super().__init__()
        layers = sum(1 for name in arch if re.fullmatch(r"layer\d+/op", name))
        if layers == 0:
            raise ValueError(f"not a macro architecture (no 'layer<i>/op' choices): {dict(arch)}")
        ops = [str(arch.get(f"layer{i}/op")) for i in range(layers)]
        self.arch: Arch = validate_arch(arch, macro_choices(layers, sorted(set(ops))))
        self.in_channels, self.num_classes = in_channels, num_classes
        self.chain = _Chain([[op] for op in ops], in_channels, num_classes, channels, affine=True)
        self._skips = _skips(self.arch, layers)

    def forward(self, x: Tensor) -> Tensor:
        check_images(x, self.in_channels)
        return self.chain(x, [0] * len(self._skips), self._skips)


def _skips(arch: Mapping[str, Any], layers: int) -> list[list[int]]:
    return [[j for j in range(i) if arch[f"layer{i}/skip{j}"] == 1] for i in range(layers)]
