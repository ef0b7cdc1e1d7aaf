"""The NAS-Bench-201 cell search space (Dong & Yang, "NAS-Bench-201: Extending the Scope of Reproducible Neural
Architecture Search", ICLR 2020, Sec. 2.1 and Fig. 1).

A cell is a DAG of 4 nodes: node 0 is the cell's input, node ``i`` sums one op on each edge ``i <- j`` (``j < i``),
and node 3 is the output. That makes 6 edges, in the benchmark's order ``1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2``,
each one of :data:`~lightning_nas.ops.NB201_OPS`: 5**6 = 15,625 cells. Every cell of the network is the same cell.
The macro skeleton: a 3x3 stem of ``C`` channels, three stages of ``N`` cells at ``C``, ``2C`` and ``4C`` channels
separated by residual reduction blocks, then BatchNorm, ReLU, global pooling and a classifier (``C=16, N=5``).

The benchmark's arch string lists each node's incoming edges as ``op~source``::

    |nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|

:class:`NasBench201Format` parses and prints it. The benchmark's own integer index is not a function of the string
(it is the order of the benchmark's files), so index <-> string comes from a table
(:class:`~lightning_nas.search.TabularBenchmark`).

Reference code: ``TinyNetwork``/``InferCell``/``ResNetBasicblock`` in https://github.com/D-X-Y/AutoDL-Projects
(``lib/models/cell_operations.py`` at ``076f9c2d41dc888b8087c266261d2094c8739340``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from lightning_nas.arch import Arch, Choice, validate_arch
from lightning_nas.ops import NB201_OPS, MixedOp, ReLUConvBN, build_op
from lightning_nas.spaces.base import CellGraph, DifferentiableSpace, check_images

__all__ = ["NB201_EDGES", "NasBench201Format", "NasBench201Network", "NasBench201Space", "ResidualReduction"]

NB201_EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
"""The cell's edges as ``(target, source)`` pairs, in the order of the arch string."""

_NODES = 4
_INCOMING: tuple[tuple[tuple[int, int], ...], ...] = tuple(
    tuple((edge, source) for edge, (to, source) in enumerate(NB201_EDGES) if to == target)
    for target in range(1, _NODES)
)
"""Per node 1, 2, 3: its incoming ``(edge index, source node)`` pairs."""


def _edge_name(target: int, source: int) -> str:
    return f"{target}<-{source}"


@dataclass(frozen=True)
class NasBench201Format:
    """The benchmark's arch string ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` <-> a choice mapping.

    The choices are named after the edges (``"1<-0"``, ``"2<-0"``, ...) and take op names.

    Args:
        ops: the candidate ops (default: the benchmark's five).

    Example:
        >>> fmt = NasBench201Format()
        >>> arch = fmt.parse("|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|")
        >>> arch["2<-1"], arch["3<-0"]
        ('skip_connect', 'avg_pool_3x3')
        >>> fmt.format(arch)
        '|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|'
        >>> fmt.parse("|none~0|+|none~0|conv_9x9~1|+|none~0|none~1|none~2|")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: unknown op 'conv_9x9' on edge 2<-1 of ...; valid ops: none, skip_connect, nor_conv_1x1, ...
    """

    ops: tuple[str, ...] = field(default=NB201_OPS)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ops", tuple(self.ops))
        if not self.ops or len(set(self.ops)) != len(self.ops):
            raise ValueError(f"ops must be distinct op names, got {list(self.ops)}")

    def choices(self) -> list[Choice]:
        """One choice per edge, in the string's order."""
        return [Choice(_edge_name(target, source), self.ops) for target, source in NB201_EDGES]

    def parse(self, text: str) -> Arch:
        """The choice mapping an arch string describes.

        Raises:
            TypeError: ``text`` is not a string.
            ValueError: the wrong number of nodes or edges, a malformed ``op~source`` token, a source other than
                the edge's, or an unknown op (the message lists the valid ones).
        """
        if not isinstance(text, str):
            raise TypeError(f"an arch string must be a str, got {type(text).__name__}")
        groups = text.strip().split("+")
        if len(groups) != _NODES - 1:
            raise ValueError(
                f"arch string {text!r} has {len(groups)} node groups; a NAS-Bench-201 cell has {_NODES - 1} "
                "(nodes 1, 2 and 3, separated by '+')"
            )
        arch: Arch = {}
        for target, group in enumerate(groups, start=1):
            tokens = group.split("|")
            if len(tokens) < 3 or tokens[0] or tokens[-1]:
                raise ValueError(f"node {target} of {text!r}: expected '|op~source|...|', got {group!r}")
            tokens = tokens[1:-1]
            if len(tokens) != target:
                raise ValueError(
                    f"node {target} of {text!r} has {len(tokens)} incoming edges; it needs {target} "
                    f"(one from each of nodes 0..{target - 1})"
                )
            for source, token in enumerate(tokens):
                arch[_edge_name(target, source)] = self._parse_token(token, target, source, text)
        return arch

    def _parse_token(self, token: str, target: int, source: int, text: str) -> str:
        op, tilde, index = token.rpartition("~")
        if not tilde or not op:
            raise ValueError(f"edge {target}<-{source} of {text!r}: expected 'op~{source}', got {token!r}")
        if index != str(source):
            raise ValueError(
                f"edge {target}<-{source} of {text!r}: token {token!r} names source {index!r}; "
                f"the {source + 1}-th edge of node {target} comes from node {source}"
            )
        if op not in self.ops:
            raise ValueError(
                f"unknown op {op!r} on edge {target}<-{source} of {text!r}; valid ops: {', '.join(self.ops)}"
            )
        return op

    def format(self, arch: Mapping[str, Any]) -> str:
        """The arch string of a choice mapping (checked against :meth:`choices`)."""
        valid = validate_arch(arch, self.choices())
        return "+".join(
            "|" + "|".join(f"{valid[_edge_name(target, source)]}~{source}" for source in range(target)) + "|"
            for target in range(1, _NODES)
        )


class ResidualReduction(nn.Module):
    """The residual block between stages: ``ReLUConvBN(3x3, stride 2) -> ReLUConvBN(3x3)`` plus a shortcut
    ``AvgPool(2) -> Conv1x1`` (``ResNetBasicblock`` with stride 2 in the reference code).

    The pool uses ``ceil_mode`` so odd sizes (7x7 Fashion-MNIST maps) reduce like the strided conv; on even sizes
    it is the reference's pool.

    Example:
        >>> ResidualReduction(4, 8)(torch.randn(2, 4, 7, 7)).shape
        torch.Size([2, 8, 4, 4])
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, 1)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, stride=2, ceil_mode=True), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


def _build_skeleton(
    in_channels: int, num_classes: int, channels: int, cells_per_stage: int, make_cell: Callable[[int], nn.Module]
) -> tuple[nn.Module, nn.ModuleList, nn.Module]:
    """Stem, the stages' layers (cells and reduction blocks), and the head."""
    if channels < 1 or cells_per_stage < 1:
        raise ValueError(f"need channels >= 1 and cells_per_stage >= 1; got {channels=}, {cells_per_stage=}")
    stem = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
    layers: list[nn.Module] = []
    for stage in range(3):
        width = channels * 2**stage
        if stage:
            layers.append(ResidualReduction(width // 2, width))
        layers.extend(make_cell(width) for _ in range(cells_per_stage))
    head = nn.Sequential(
        nn.BatchNorm2d(4 * channels),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4 * channels, num_classes),
    )
    return stem, nn.ModuleList(layers), head


class SearchCell(nn.Module):
    """A cell whose every edge is a :class:`~lightning_nas.ops.MixedOp` over the candidate ops."""

    def __init__(self, ops: Sequence[str], channels: int, affine: bool) -> None:
        super().__init__()
        self.edges = nn.ModuleList(
            MixedOp(ops, channels, stride=1, affine=affine, normalize_pools=False) for _ in NB201_EDGES
        )

    def edge(self, index: int) -> MixedOp:
        """The mixed op of edge ``index`` (in :data:`NB201_EDGES` order)."""
        return self.edges[index]  # type: ignore[return-value]

    def forward(self, x: Tensor, weights: Tensor, chosen: Sequence[int] | None = None) -> Tensor:
        """Node ``i`` = sum over ``j < i`` of ``sum_k weights[edge, k] * op_k(node j)`` (only op ``chosen[edge]``
        on each edge if given)."""
        nodes, relus = [x], [torch.relu(x)]
        for incoming in _INCOMING:
            node = _sum(
                [
                    self.edge(e)(nodes[source], weights[e], relus[source], None if chosen is None else chosen[e])
                    for e, source in incoming
                ]
            )
            nodes.append(node)
            relus.append(torch.relu(node))
        return nodes[-1]

    def forward_discrete(self, x: Tensor, op_indices: Sequence[int]) -> Tensor:
        """Only the chosen op per edge."""
        nodes = [x]
        for incoming in _INCOMING:
            nodes.append(_sum([self.edge(e).run_op(op_indices[e], nodes[source]) for e, source in incoming]))
        return nodes[-1]


def _sum(tensors: Sequence[Tensor]) -> Tensor:
    total = tensors[0]
    for tensor in tensors[1:]:
        total = total + tensor
    return total


class NasBench201Space(DifferentiableSpace):
    """The NAS-Bench-201 supernet: one ``[6, len(ops)]`` alpha matrix shared by every cell.

    The differentiable view mixes each edge's ops by ``softmax(alpha)``; :meth:`export_arch` keeps each edge's
    strongest op (``none`` included, as the benchmark's DARTS and GDAS runs do). The discrete view
    (:meth:`activate`) runs one op per edge, for sampling methods and strategies.

    Args:
        in_channels: image channels.
        num_classes: classifier outputs.
        channels: ``C``, the first stage's width (16 in the benchmark).
        cells_per_stage: ``N`` (5 in the benchmark).
        ops: candidate op names from the op registry (default: the benchmark's five).
        affine: whether the cell ops' BatchNorms learn scale and shift (``False`` while searching, as the
            benchmark's search cells do; the stem, reduction blocks and head always learn theirs).
        alpha_init_std: alphas start as ``alpha_init_std * N(0, 1)`` (1e-3 in the reference code).

    Example:
        >>> space = NasBench201Space(in_channels=1, num_classes=10, channels=4, cells_per_stage=1)
        >>> space(torch.randn(2, 1, 8, 8)).shape
        torch.Size([2, 10])
        >>> space.activate("|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|")
        >>> space(torch.randn(2, 1, 8, 8)).shape
        torch.Size([2, 10])
        >>> [c.name for c in space.choices()]
        ['1<-0', '2<-0', '2<-1', '3<-0', '3<-1', '3<-2']
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        num_classes: int = 10,
        channels: int = 16,
        cells_per_stage: int = 5,
        ops: Sequence[str] = NB201_OPS,
        affine: bool = False,
        alpha_init_std: float = 1e-3,
    ) -> None:
        super().__init__()
        self.arch_format = NasBench201Format(tuple(ops))
        self.ops = self.arch_format.ops
        self.in_channels, self.num_classes = in_channels, num_classes
        self.channels, self.cells_per_stage, self.affine = channels, cells_per_stage, affine
        self.stem, self.layers, self.head = _build_skeleton(
            in_channels, num_classes, channels, cells_per_stage, lambda width: SearchCell(self.ops, width, affine)
        )
        self.alpha = nn.Parameter(alpha_init_std * torch.randn(len(NB201_EDGES), len(self.ops)))
        self._active: list[int] | None = None

    def forward(self, x: Tensor) -> Tensor:
        check_images(x, self.in_channels)
        x = self.stem(x)
        mixture = self.edge_weights("cell") if self._active is None else None
        for layer in self.layers:
            if not isinstance(layer, SearchCell):
                x = layer(x)
            elif mixture is None:
                x = layer.forward_discrete(x, self._active)  # type: ignore[arg-type]
            else:
                x = layer(x, *mixture)
        return self.head(x)

    def arch_parameters(self) -> list[nn.Parameter]:
        return self.relaxed_parameters()

    def alphas(self) -> dict[str, nn.Parameter]:
        return {"cell": self.alpha}

    def edge_groups(self) -> dict[str, list[list[int]]]:
        """The incoming edges of nodes 1, 2 and 3: ``[[0], [1, 2], [3, 4, 5]]``."""
        return {"cell": [[edge for edge, _ in incoming] for incoming in _INCOMING]}

    def choices(self) -> list[Choice]:
        """One choice of op per edge, named ``"1<-0"``, ``"2<-0"``, ..., ``"3<-2"``."""
        return self.arch_format.choices()

    def activate(self, arch: Mapping[str, Any] | str | None) -> None:
        """Run only ``arch`` (a choice mapping or an arch string) from now on; ``None`` returns to the mixture."""
        if arch is None:
            self._active = None
            return
        valid = self.arch_format.parse(arch) if isinstance(arch, str) else self.validate_arch(arch)
        self._active = [self.ops.index(str(valid[c.name])) for c in self.choices()]

    def export_arch(self) -> Arch:
        strongest = self.relaxation.probabilities(self.alpha, "cell").argmax(-1).tolist()
        return {choice.name: self.ops[k] for choice, k in zip(self.choices(), strongest)}

    def arch_probabilities(self) -> dict[str, dict[str, float]]:
        """The softmax of each edge's alphas, keyed by the edge's choice name (``"1<-0"``, ...), every op included.

        Example:
            >>> space = NasBench201Space(in_channels=1, channels=4, cells_per_stage=1)
            >>> probabilities = space.arch_probabilities()
            >>> list(probabilities)[:2], round(sum(probabilities["3<-2"].values()), 6)
            (['1<-0', '2<-0'], 1.0)
        """
        weights = self.relaxation.probabilities(self.alpha.double(), "cell").cpu().tolist()
        return {choice.name: dict(zip(self.ops, row)) for choice, row in zip(self.choices(), weights)}

    def cell_graphs(self, arch: Mapping[str, Any]) -> dict[str, CellGraph]:
        """The one cell of ``arch``: nodes ``"0"`` (input) to ``"3"`` (output), each of the 6 edges labelled with its
        op (``none`` included: the benchmark's cell keeps every edge, a ``none`` edge contributes zeros).

        Example:
            >>> space = NasBench201Space(in_channels=1, channels=4, cells_per_stage=1)
            >>> arch = space.arch_format.parse("|none~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|")
            >>> graph = space.cell_graphs(arch)
            >>> len(graph["cell"]), graph["cell"][-1]
            (6, ('2', '3', 'skip_connect'))
        """
        valid = self.validate_arch(self._as_mapping(arch))
        edges = [(str(source), str(target), str(valid[_edge_name(target, source)])) for target, source in NB201_EDGES]
        return {"cell": edges}

    def arch_string(self, arch: Mapping[str, Any] | None = None) -> str:
        """The benchmark's string of ``arch`` (default: :meth:`export_arch`)."""
        return self.arch_format.format(self.export_arch() if arch is None else arch)

    def export_network(self, arch: Mapping[str, Any] | str | None = None) -> NasBench201Network:
        """The standalone network of ``arch`` (default: :meth:`export_arch`) with this supernet's weights copied.

        Each edge of the result holds the weights its op had in the supernet, so in eval mode the network computes
        what :meth:`activate` computes (weight inheritance, as one-shot evaluation uses it).
        """
        valid = self.validate_arch(self.export_arch() if arch is None else self._as_mapping(arch))
        network = NasBench201Network(
            valid,
            in_channels=self.in_channels,
            num_classes=self.num_classes,
            channels=self.channels,
            cells_per_stage=self.cells_per_stage,
            ops=self.ops,
            affine=self.affine,
        )
        network.stem.load_state_dict(self.stem.state_dict())
        network.head.load_state_dict(self.head.state_dict())
        chosen = [self.ops.index(str(valid[c.name])) for c in self.choices()]
        for source, target in zip(self.layers, network.layers):
            if isinstance(source, SearchCell):
                for e, op in enumerate(target.ops):  # type: ignore[arg-type]
                    op.load_state_dict(source.edge(e).ops[chosen[e]].state_dict())
            else:
                target.load_state_dict(source.state_dict())
        return network

    def _as_mapping(self, arch: Mapping[str, Any] | str) -> Mapping[str, Any]:
        return self.arch_format.parse(arch) if isinstance(arch, str) else arch


class Cell(nn.Module):
    """A fixed cell: one op per edge (``InferCell`` in the reference code)."""

    def __init__(self, op_names: Sequence[str], channels: int, affine: bool) -> None:
        super().__init__()
        self.ops = nn.ModuleList(build_op(name, channels, 1, affine) for name in op_names)

    def forward(self, x: Tensor) -> Tensor:
        nodes = [x]
        for incoming in _INCOMING:
            nodes.append(_sum([self.ops[e](nodes[source]) for e, source in incoming]))
        return nodes[-1]


class NasBench201Network(nn.Module):
    """The network of one NAS-Bench-201 cell, for training from scratch (``TinyNetwork`` in the reference code).

    Args:
        arch: a choice mapping or an arch string.
        in_channels, num_classes, channels, cells_per_stage: as in :class:`NasBench201Space`.
        ops: the candidate ops the choices range over.
        affine: whether the cell ops' BatchNorms learn scale and shift (``True`` when training from scratch).

    Example:
        >>> net = NasBench201Network("|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|")
        >>> net(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 10])
        >>> net.arch_string
        '|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|'
    """

    def __init__(
        self,
        arch: Mapping[str, Any] | str,
        *,
        in_channels: int = 3,
        num_classes: int = 10,
        channels: int = 16,
        cells_per_stage: int = 5,
        ops: Sequence[str] = NB201_OPS,
        affine: bool = True,
    ) -> None:
        super().__init__()
        arch_format = NasBench201Format(tuple(ops))
        self.arch = arch_format.parse(arch) if isinstance(arch, str) else validate_arch(arch, arch_format.choices())
        self.arch_string = arch_format.format(self.arch)
        self.in_channels = in_channels
        op_names = [str(self.arch[c.name]) for c in arch_format.choices()]
        self.stem, self.layers, self.head = _build_skeleton(
            in_channels, num_classes, channels, cells_per_stage, lambda width: Cell(op_names, width, affine)
        )

    def forward(self, x: Tensor) -> Tensor:
        check_images(x, self.in_channels)
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x)
        return self.head(x)
