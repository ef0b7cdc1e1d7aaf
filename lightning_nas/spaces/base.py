"""What every search space offers: named choices, a discrete view, and (if differentiable) architecture parameters."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from torch import Tensor, nn

from lightning_nas.arch import Arch, Choice, validate_arch
from lightning_nas.ops.mixed import MixedOp, PartialChannelMixedOp
from lightning_nas.ops.relaxation import EdgeWeights, Relaxation

__all__ = ["CellGraph", "DifferentiableSpace", "NodeChoice", "SearchSpace", "check_images", "reduction_layers"]

CellGraph = list[tuple[str, str, str]]
"""A cell drawn as ``(source node, target node, op label)`` edges; an empty label draws a plain arrow."""


def check_images(x: Tensor, in_channels: int) -> None:
    """Raise ``ValueError`` unless ``x`` is a batch of images ``[B, in_channels, H, W]``."""
    if x.ndim != 4 or x.shape[1] != in_channels:
        raise ValueError(f"expected images [B, {in_channels}, H, W], got shape {tuple(x.shape)}")


def reduction_layers(layers: int) -> tuple[int, int]:
    """Indices of the two reduction cells in a stack of ``layers`` cells: at 1/3 and 2/3 of the depth (DARTS)."""
    return layers // 3, 2 * layers // 3


@dataclass(frozen=True)
class NodeChoice:
    """Where a choice sits in a space's graph of nodes, for policies that attend over earlier nodes (ENAS).

    A space whose decisions wire a graph (cells, chains with skip connections) says so through
    :meth:`SearchSpace.node_choices`; a policy may then pick inputs by attending over the nodes it has already
    built, as the ENAS controller does (Pham et al., 2018, Sec. 2.3), instead of treating the input index as an
    unrelated category. Choices a space does not describe are plain categorical decisions.

    Args:
        node: the node the choice configures (any name; ``"normal/node2"``, ``"layer3"``).
        kind: ``"op"`` for a decision about the node itself; ``"select"`` when candidate ``k`` means "read node
            ``sources[k]``"; ``"connect"`` for a ``(0, 1)`` choice of whether ``node`` also reads ``sources[0]``.
        sources: the earlier nodes the candidates refer to (empty for ``"op"``, one for ``"connect"``).

    Example:
        >>> NodeChoice("normal/node3", "select", ("normal/node0", "normal/node1", "normal/node2")).sources[2]
        'normal/node2'
        >>> NodeChoice("layer2", "connect", ("layer0", "layer1"))
        Traceback (most recent call last):
        ...
        ValueError: a 'connect' NodeChoice of node 'layer2' names exactly one source, got ('layer0', 'layer1')
    """

    node: str
    kind: Literal["op", "select", "connect"] = "op"
    sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        expected = {"op": "no", "select": "at least one", "connect": "exactly one"}  # sources per kind
        if self.kind not in expected:
            raise ValueError(f"NodeChoice kind must be one of {', '.join(expected)}; got {self.kind!r}")
        count = len(self.sources)
        if (
            (self.kind == "op" and count)
            or (self.kind == "select" and not count)
            or (self.kind == "connect" and count != 1)
        ):
            raise ValueError(
                f"a {self.kind!r} NodeChoice of node {self.node!r} names {expected[self.kind]} source, "
                f"got {self.sources}"
            )
        if self.node in self.sources:
            raise ValueError(f"node {self.node!r} cannot read itself; sources: {self.sources}")


class SearchSpace(nn.Module, ABC):
    """A supernet whose architecture decisions are named :class:`~lightning_nas.arch.Choice` objects.

    Subclasses set :attr:`num_classes` and :attr:`in_channels` and implement :meth:`choices`, :meth:`activate`
    and ``forward``. Spaces hold no training logic.
    """

    num_classes: int
    in_channels: int

    @abstractmethod
    def choices(self) -> list[Choice]:
        """The space's decisions, in a fixed order."""

    @abstractmethod
    def activate(self, arch: Mapping[str, Any] | None) -> None:
        """Run only the sub-network ``arch`` from now on; ``None`` returns to the whole supernet."""

    @abstractmethod
    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[B, num_classes]`` for images ``[B, in_channels, H, W]``."""

    def validate_arch(self, arch: Mapping[str, Any]) -> Arch:
        """Check ``arch`` against :meth:`choices`; see :func:`~lightning_nas.arch.validate_arch`."""
        return validate_arch(arch, self.choices())

    def node_choices(self) -> dict[str, NodeChoice]:
        """Optional graph structure of the choices: choice name -> :class:`NodeChoice` (default: none).

        Spaces whose choices pick a node's inputs override this so that graph-aware policies (the ENAS controller)
        can attend over earlier nodes; choices left out are plain categorical decisions.
        """
        return {}

    def cell_graphs(self, arch: Mapping[str, Any]) -> dict[str, CellGraph]:
        """The cells of ``arch`` as edge lists to draw, by name (e.g. ``"normal"``); none by default.

        Spaces whose architectures are graphs (cells, chains with skip connections) override this so that
        :class:`~lightning_nas.callbacks.GenotypeLogger` can draw any method's architecture on them.
        """
        return {}


class DifferentiableSpace(SearchSpace):
    """A space relaxed to continuous architecture parameters (DARTS-style).

    Spaces whose alphas are one ``[edges, ops]`` matrix per cell type of :class:`~lightning_nas.ops.MixedOp` edges
    implement :meth:`alphas` and :meth:`edge_groups`, compute their op weights with :meth:`edge_weights`, and so take
    any :class:`~lightning_nas.ops.relaxation.Relaxation` (:meth:`set_relaxation`: GDAS, PC-DARTS, DrNAS, DARTS-)
    and partial channel connections (:meth:`use_partial_channels`).
    """

    def __init__(self) -> None:
        super().__init__()
        self.relaxation: Relaxation = Relaxation()

    @abstractmethod
    def arch_parameters(self) -> list[nn.Parameter]:
        """The architecture parameters (alphas, and those of the relaxation)."""

    def alphas(self) -> dict[str, nn.Parameter]:
        """The alpha matrix ``[edges, ops]`` of each cell type, e.g. ``{"normal": ..., "reduce": ...}``."""
        raise NotImplementedError(f"{type(self).__name__} does not expose per-cell alpha matrices")

    def edge_groups(self) -> dict[str, list[list[int]]]:
        """Per cell type, the edge indices (rows of its alpha matrix) of each node's incoming edges."""
        raise NotImplementedError(f"{type(self).__name__} does not describe its edges")

    def set_relaxation(self, relaxation: Relaxation) -> None:
        """Mix the ops by ``relaxation`` from now on (call before the optimizers are built: it may add parameters)."""
        self.alphas()  # refuse spaces without per-cell alphas
        self.relaxation = relaxation

    def edge_weights(self, key: str) -> EdgeWeights:
        """The op weights of cell type ``key`` for this forward pass, from the relaxation."""
        return self.relaxation(self.alphas()[key], key)

    def relaxed_parameters(self) -> list[nn.Parameter]:
        """The alphas followed by the relaxation's own parameters (PC-DARTS's betas)."""
        return [*self.alphas().values(), *self.relaxation.parameters()]

    def use_partial_channels(self, k: int) -> None:
        """Replace every mixed op by a :class:`~lightning_nas.ops.PartialChannelMixedOp` over ``1/k`` of its channels
        (fresh weights; call before training)."""
        for module in list(self.modules()):
            if isinstance(module, nn.ModuleList):
                for index, child in enumerate(module):
                    if isinstance(child, MixedOp) and not isinstance(child, PartialChannelMixedOp):
                        module[index] = PartialChannelMixedOp.like(child, k)

    def use_auxiliary_skips(self, own: bool = True) -> None:
        """Give every edge whose ``skip_connect`` has weights (a stride-2 factorised reduction) its own auxiliary skip
        for DARTS- (:meth:`~lightning_nas.ops.MixedOp.add_auxiliary_skip`; fresh weights, call before training), or,
        with ``own=False``, remove them so the auxiliary path shares the candidate skip's."""
        for module in self.modules():
            if isinstance(module, MixedOp):
                if own:
                    module.add_auxiliary_skip()
                else:
                    module.auxiliary = None

    def has_auxiliary_skips(self) -> bool:
        """Whether any edge has its own auxiliary skip (:meth:`use_auxiliary_skips`)."""
        return any(isinstance(module, MixedOp) and module.auxiliary is not None for module in self.modules())

    @abstractmethod
    def export_arch(self) -> Arch:
        """The discrete architecture the current alphas select."""

    def arch_probabilities(self) -> dict[str, dict[str, float]] | None:
        """Per decision, the probability of each candidate under the current architecture parameters.

        ``None`` by default; spaces whose parameters have a natural distribution (a softmax per edge) override it.
        """
        return None

    def weight_parameters(self) -> Iterator[nn.Parameter]:
        """Every parameter that is not an architecture parameter."""
        arch_ids = {id(p) for p in self.arch_parameters()}
        return (p for p in self.parameters() if id(p) not in arch_ids)
