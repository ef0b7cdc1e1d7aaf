"""The DARTS cell search space (Liu et al., 2019, Sec. 2.1-2.4).

A stem, ``layers`` stacked cells with reduction cells at 1/3 and 2/3 of the depth, global pooling and a
classifier. Each cell has two inputs (the two previous cells' outputs), ``steps`` intermediate nodes, and one
:class:`~lightning_nas.ops.MixedOp` per edge ``j -> i`` (``j < i``). Normal and reduction cells each share one
alpha matrix ``[num_edges, num_ops]``.

The space is also discrete: :meth:`DartsCellSpace.activate` with a genotype or architecture runs only that
genotype's ops, which is what sampling methods (ENAS, SPOS) train.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from lightning_nas.arch import Arch, Choice, Genotype
from lightning_nas.ops import DARTS_OPS, FactorizedReduce, MixedOp, ReLUConvBN
from lightning_nas.spaces.base import CellGraph, DifferentiableSpace, NodeChoice, check_images, reduction_layers

__all__ = ["DartsCellSpace", "derive_genotype", "genotype_from_weights"]


class SearchCell(nn.Module):
    """One searchable cell; ``forward`` takes the softmax-ed alphas of its cell type."""

    def __init__(
        self,
        ops: Sequence[str],
        steps: int,
        multiplier: int,
        c_prev_prev: int,
        c_prev: int,
        channels: int,
        reduction: bool,
        reduction_prev: bool,
    ) -> None:
        super().__init__()
        self.reduction = reduction
        self.steps = steps
        self.multiplier = multiplier
        self.preprocess0 = (
            FactorizedReduce(c_prev_prev, channels, affine=False)
            if reduction_prev
            else ReLUConvBN(c_prev_prev, channels, 1, 1, 0, affine=False)
        )
        self.preprocess1 = ReLUConvBN(c_prev, channels, 1, 1, 0, affine=False)
        self.edges = nn.ModuleList(
            MixedOp(ops, channels, stride=2 if reduction and j < 2 else 1) for i in range(steps) for j in range(i + 2)
        )

    def edge(self, index: int) -> MixedOp:
        """The mixed op of edge ``index`` (edges of node ``i`` follow those of nodes ``0 .. i-1``)."""
        return self.edges[index]  # type: ignore[return-value]

    def forward(self, s0: Tensor, s1: Tensor, weights: Tensor, chosen: Sequence[int] | None = None) -> Tensor:
        """Every node sums its incoming edges' mixed ops (only op ``chosen[e]`` on edge ``e`` if given)."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        relus = [torch.relu(s) for s in states]
        offset = 0
        for _ in range(self.steps):
            node = self.edge(offset)(states[0], weights[offset], relus[0], _pick(chosen, offset))
            for j in range(1, len(states)):
                node = node + self.edge(offset + j)(states[j], weights[offset + j], relus[j], _pick(chosen, offset + j))
            offset += len(states)
            states.append(node)
            relus.append(torch.relu(node))
        return torch.cat(states[-self.multiplier :], dim=1)

    def forward_discrete(self, s0: Tensor, s1: Tensor, edges: Sequence[tuple[int, int]]) -> Tensor:
        """Only the chosen ``(op index, input)`` pair per slot."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for node in range(self.steps):
            offset = node * (node + 3) // 2  # edges of earlier nodes: 2 + 3 + ... + (node + 1)
            (op0, source0), (op1, source1) = edges[2 * node : 2 * node + 2]
            states.append(
                self.edge(offset + source0).run_op(op0, states[source0])
                + self.edge(offset + source1).run_op(op1, states[source1])
            )
        return torch.cat(states[-self.multiplier :], dim=1)


def _pick(chosen: Sequence[int] | None, edge: int) -> int | None:
    return None if chosen is None else chosen[edge]


class DartsCellSpace(DifferentiableSpace):
    """The DARTS supernet: every edge a softmax(alpha)-weighted mix of ``ops``.

    Args:
        in_channels: image channels.
        num_classes: classifier outputs.
        channels: channels of the first cell (``C`` in the paper; 16 for CIFAR search).
        layers: number of cells (8 for CIFAR search); reduction cells sit at ``layers // 3`` and ``2 * layers // 3``.
        steps: intermediate nodes per cell (4).
        multiplier: how many of the last nodes are concatenated into a cell's output (default: all ``steps``).
        stem_multiplier: stem width as a multiple of ``channels`` (3).
        ops: candidate op names from the op registry (default: the paper's eight).
        alpha_init_std: alphas start as ``alpha_init_std * N(0, 1)`` (1e-3 in the reference code).

    Example:
        >>> space = DartsCellSpace(in_channels=1, num_classes=10, channels=4, layers=3, steps=2)
        >>> space(torch.randn(2, 1, 16, 16)).shape
        torch.Size([2, 10])
        >>> [tuple(a.shape) for a in space.arch_parameters()]
        [(5, 8), (5, 8)]
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        num_classes: int = 10,
        channels: int = 16,
        layers: int = 8,
        steps: int = 4,
        multiplier: int | None = None,
        stem_multiplier: int = 3,
        ops: Sequence[str] = DARTS_OPS,
        alpha_init_std: float = 1e-3,
    ) -> None:
        super().__init__()
        multiplier = steps if multiplier is None else multiplier
        if layers < 1 or steps < 1 or not 1 <= multiplier <= steps:
            raise ValueError(f"need layers >= 1 and 1 <= multiplier <= steps; got {layers=}, {steps=}, {multiplier=}")
        if len(set(ops)) != len(ops) or not ops:
            raise ValueError(f"ops must be distinct op names, got {list(ops)}")
        self.in_channels, self.num_classes = in_channels, num_classes
        self.steps, self.ops = steps, tuple(ops)
        c_stem = stem_multiplier * channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem))
        c_prev_prev, c_prev, c_cur = c_stem, c_stem, channels
        cells, reduction_prev = [], False
        for layer in range(layers):
            reduction = layer in reduction_layers(layers)
            c_cur = c_cur * 2 if reduction else c_cur
            cells.append(SearchCell(self.ops, steps, multiplier, c_prev_prev, c_prev, c_cur, reduction, reduction_prev))
            reduction_prev = reduction
            c_prev_prev, c_prev = c_prev, multiplier * c_cur
        self.cells = nn.ModuleList(cells)
        self.classifier = nn.Linear(c_prev, num_classes)
        num_edges = sum(i + 2 for i in range(steps))
        self.alpha_normal = nn.Parameter(alpha_init_std * torch.randn(num_edges, len(self.ops)))
        self.alpha_reduce = nn.Parameter(alpha_init_std * torch.randn(num_edges, len(self.ops)))
        self._active: dict[str, list[tuple[int, int]]] | None = None

    def forward(self, x: Tensor) -> Tensor:
        check_images(x, self.in_channels)
        s0 = s1 = self.stem(x)
        if self._active is None:
            weights = {key: self.edge_weights(key) for key in ("normal", "reduce")}
            for cell in self.search_cells():
                s0, s1 = s1, cell(s0, s1, *weights["reduce" if cell.reduction else "normal"])
        else:
            for cell in self.search_cells():
                s0, s1 = s1, cell.forward_discrete(s0, s1, self._active["reduce" if cell.reduction else "normal"])
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(s1, 1), 1))

    def search_cells(self) -> list[SearchCell]:
        """The cells, in order."""
        return list(self.cells)  # type: ignore[arg-type]

    def arch_parameters(self) -> list[nn.Parameter]:
        return self.relaxed_parameters()

    def alphas(self) -> dict[str, nn.Parameter]:
        return {"normal": self.alpha_normal, "reduce": self.alpha_reduce}

    def edge_groups(self) -> dict[str, list[list[int]]]:
        """Node ``i`` (``0 .. steps-1``) reads edges ``i(i+3)/2 .. i(i+3)/2 + i + 1`` of each cell type.

        Example:
            >>> DartsCellSpace(in_channels=1, channels=4, layers=3, steps=2).edge_groups()["normal"]
            [[0, 1], [2, 3, 4]]
        """
        groups = [list(range(node * (node + 3) // 2, node * (node + 3) // 2 + node + 2)) for node in range(self.steps)]
        return {"normal": groups, "reduce": [list(group) for group in groups]}

    def choices(self) -> list[Choice]:
        """Per cell type, node and slot: the op (any but ``none``) and the input node."""
        op_candidates = tuple(op for op in self.ops if op != "none")
        return [
            choice
            for cell in ("normal", "reduce")
            for node in range(2, self.steps + 2)
            for slot in (0, 1)
            for choice in (
                Choice(f"{cell}/node{node}/op{slot}", op_candidates),
                Choice(f"{cell}/node{node}/in{slot}", tuple(range(node))),
            )
        ]

    def node_choices(self) -> dict[str, NodeChoice]:
        """Each node's op choices, and its input choices as selections among ``{cell}/node0 .. {cell}/node{i-1}``.

        Example:
            >>> space = DartsCellSpace(in_channels=1, channels=4, layers=3, steps=2)
            >>> space.node_choices()["reduce/node3/in1"]
            NodeChoice(node='reduce/node3', kind='select', sources=('reduce/node0', 'reduce/node1', 'reduce/node2'))
        """
        graph: dict[str, NodeChoice] = {}
        for choice in self.choices():
            cell, node, slot = choice.name.split("/")
            if slot.startswith("in"):
                sources = tuple(f"{cell}/node{j}" for j in choice.candidates)
                graph[choice.name] = NodeChoice(f"{cell}/{node}", "select", sources)
            else:
                graph[choice.name] = NodeChoice(f"{cell}/{node}", "op")
        return graph

    def activate(self, arch: Mapping[str, Any] | Genotype | None) -> None:
        if arch is None:
            self._active = None
            return
        genotype = arch if isinstance(arch, Genotype) else Genotype.from_arch(self.validate_arch(arch), self.steps)
        if genotype.steps != self.steps:
            raise ValueError(f"genotype has {genotype.steps} nodes per cell; this space has {self.steps}")
        genotype.check_ops(op for op in self.ops if op != "none")
        index = {op: k for k, op in enumerate(self.ops)}
        self._active = {
            cell: [(index[op], source) for op, source in getattr(genotype, cell)] for cell in ("normal", "reduce")
        }

    def arch_probabilities(self) -> dict[str, dict[str, float]]:
        """The softmax of each edge's alphas, keyed ``"{cell}/node{n}/edge{j}"`` (the edge from state ``j`` into node
        ``n``, numbered as in :class:`~lightning_nas.arch.Genotype`), every op including ``none``.

        Example:
            >>> space = DartsCellSpace(in_channels=1, channels=4, layers=3, steps=1, ops=("none", "skip_connect"))
            >>> probabilities = space.arch_probabilities()
            >>> list(probabilities), round(sum(probabilities["reduce/node2/edge1"].values()), 6)
            (['normal/node2/edge0', 'normal/node2/edge1', 'reduce/node2/edge0', 'reduce/node2/edge1'], 1.0)
        """
        result: dict[str, dict[str, float]] = {}
        for cell, alpha in self.alphas().items():
            weights = self.relaxation.probabilities(alpha, cell).cpu().tolist()
            edge = 0
            for node in range(2, self.steps + 2):
                for source in range(node):
                    result[f"{cell}/node{node}/edge{source}"] = dict(zip(self.ops, weights[edge]))
                    edge += 1
        return result

    def genotype(self) -> Genotype:
        """The genotype the current alphas select (see :func:`derive_genotype`)."""
        strengths = {cell: self.relaxation.strengths(alpha, cell) for cell, alpha in self.alphas().items()}
        return genotype_from_weights(strengths["normal"], strengths["reduce"], self.ops, self.steps)

    def export_arch(self) -> Arch:
        return self.genotype().to_arch()

    def cell_graphs(self, arch: Mapping[str, Any]) -> dict[str, CellGraph]:
        """The normal and reduction cells of ``arch`` (a choice mapping), drawn as ``Genotype.graph`` draws them.

        Example:
            >>> space = DartsCellSpace(in_channels=1, channels=4, layers=3, steps=1, ops=("none", "skip_connect"))
            >>> space.cell_graphs(space.export_arch())["normal"][-1]
            ('0', 'c_{k}', '')
        """
        genotype = Genotype.from_arch(arch, self.steps)
        return {cell: genotype.graph(cell) for cell in ("normal", "reduce")}


def derive_genotype(alpha_normal: Tensor, alpha_reduce: Tensor, ops: Sequence[str], steps: int) -> Genotype:
    """Discretise alphas as the DARTS paper does (Sec. 2.4).

    Per intermediate node, each incoming edge is scored by its strongest op other than ``none`` (after a softmax
    over all ops); the two best edges are kept, each with that strongest op. Ties go to the lower input index.

    Example:
        >>> ops = ("none", "skip_connect", "sep_conv_3x3")
        >>> alpha = torch.tensor([[9.0, 1.0, 0.0], [0.0, 0.0, 2.0]])  # node 2: edges from 0 and 1
        >>> derive_genotype(alpha, alpha, ops, steps=1).normal
        (('sep_conv_3x3', 1), ('skip_connect', 0))
    """
    return genotype_from_weights(
        alpha_normal.detach().float().softmax(-1), alpha_reduce.detach().float().softmax(-1), ops, steps
    )


def genotype_from_weights(weights_normal: Tensor, weights_reduce: Tensor, ops: Sequence[str], steps: int) -> Genotype:
    """:func:`derive_genotype` from op weights ``[edges, ops]`` that are already normalised (a softmax, a Dirichlet
    mean, or PC-DARTS's ``softmax(alpha) * b_e``)."""
    candidates = [k for k, op in enumerate(ops) if op != "none"]
    if not candidates:
        raise ValueError(f"cannot derive a genotype from ops {list(ops)}: every op is 'none'")

    def parse(all_weights: Tensor) -> tuple[tuple[str, int], ...]:
        weights = all_weights.detach().float()[:, candidates].cpu()
        best_weight, best_op = weights.max(-1)
        edges: list[tuple[str, int]] = []
        offset = 0
        for node in range(steps):
            inputs = range(node + 2)
            strongest = sorted(inputs, key=lambda j: -best_weight[offset + j].item())[:2]
            edges += [(ops[candidates[int(best_op[offset + j])]], j) for j in strongest]
            offset += len(inputs)
        return tuple(edges)

    concat = tuple(range(2, steps + 2))
    return Genotype(
        normal=parse(weights_normal), normal_concat=concat, reduce=parse(weights_reduce), reduce_concat=concat
    )
