"""Architecture encodings for learned predictors: one-hot of the choices (any space), NAS-Bench-201 paths and
DARTS-cell adjacency.

- :class:`OneHotEncoding`: one block per choice, a 1 at the chosen candidate (for a cell space whose choices are
  edge ops, as NAS-Bench-201's, this is its adjacency-with-ops encoding);
- :class:`CellAdjacencyEncoding`: the adjacency-with-ops encoding of DARTS-style cells, whose nodes each pick two
  (input, op) pairs: one count per (cell, node, input, op), so swapping a node's two pairs (the same cell, as the
  node sums them) gives the same vector, which the one-hot of the choices does not;
- :class:`PathEncoding`: BANANAS's path encoding (White et al., AAAI 2021, Sec. 3) of a NAS-Bench-201 cell: one
  bit per input-to-output path and sequence of ops along it; ``none`` edges cut paths.

An encoding refuses architectures of another space and matrices of another width, naming both.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lightning_nas.arch import Choice, validate_arch
from lightning_nas.spaces.nasbench201 import NasBench201Format

__all__ = ["ENCODINGS", "CellAdjacencyEncoding", "Encoding", "OneHotEncoding", "PathEncoding", "make_encoding"]


class Encoding:
    """Maps architectures of one space to fixed-width float vectors.

    Args:
        choices: the space's choices.
    """

    name = "encoding"

    def __init__(self, choices: Sequence[Choice]) -> None:
        if not choices:
            raise ValueError("an encoding needs a space with at least one choice")
        self.choices = list(choices)

    @property
    def width(self) -> int:
        """Length of one encoded vector."""
        raise NotImplementedError

    def encode(self, arch: Mapping[str, Any]) -> np.ndarray:
        """The vector of one architecture of this space."""
        raise NotImplementedError

    def encode_many(self, archs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """``[len(archs), width]`` float matrix."""
        if not archs:
            return np.zeros((0, self.width))
        return np.stack([self.encode(arch) for arch in archs])

    def check_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """``matrix`` as float64 if it is ``[n, width]``; else ``ValueError`` (an encoding of another space)."""
        matrix = np.asarray(matrix, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[1] != self.width:
            raise ValueError(
                f"expected a [n, {self.width}] {self.name} encoding of this space, got shape {matrix.shape}; "
                "was it encoded for another space or with another encoding?"
            )
        return matrix

    def _validate(self, arch: Mapping[str, Any]) -> dict[str, Any]:
        try:
            return validate_arch(arch, self.choices)
        except ValueError as err:
            raise ValueError(f"{self.name} encoding: architecture is not of this space: {err}") from None


class OneHotEncoding(Encoding):
    """One-hot of every choice, concatenated in the space's order.

    With ``partial=True`` an architecture may leave choices out (PNAS's partly grown cells); their blocks are zero.

    Example:
        >>> enc = OneHotEncoding([Choice("a", ("x", "y")), Choice("b", (0, 1, 2))])
        >>> enc.encode({"a": "y", "b": 0}).tolist()
        [0.0, 1.0, 1.0, 0.0, 0.0]
    """

    name = "one-hot"

    def __init__(self, choices: Sequence[Choice], *, partial: bool = False) -> None:
        super().__init__(choices)
        self.partial = partial
        self._offsets = np.cumsum([0] + [len(c.candidates) for c in self.choices]).tolist()

    @property
    def width(self) -> int:
        return int(self._offsets[-1])

    def encode(self, arch: Mapping[str, Any]) -> np.ndarray:
        valid = self._validate_partial(arch) if self.partial else self._validate(arch)
        vector = np.zeros(self.width)
        for offset, choice in zip(self._offsets, self.choices):
            if choice.name not in valid:
                continue  # an undecided choice of a partial architecture: an all-zero block
            vector[offset + choice.candidates.index(valid[choice.name])] = 1.0
        return vector

    def _validate_partial(self, arch: Mapping[str, Any]) -> dict[str, Any]:
        known = {c.name: c for c in self.choices}
        unknown = sorted(set(arch) - set(known))
        if unknown:
            raise ValueError(f"{self.name} encoding: architecture is not of this space: unknown choices {unknown}")
        return {name: known[name].validate(value) for name, value in arch.items()}


class PathEncoding(Encoding):
    """BANANAS path encoding of NAS-Bench-201 cells: which op sequences connect the input node to the output.

    The cell's four paths from node 0 to node 3 are ``0->3``, ``0->1->3``, ``0->2->3`` and ``0->1->2->3``; with
    ``k`` ops other than ``none`` there are ``k + 2 k^2 + k^3`` (op sequence, path) pairs, 100 for the benchmark.

    Args:
        arch_format: the cell's format (its ops).

    Example:
        >>> enc = PathEncoding(NasBench201Format())
        >>> enc.width
        100
        >>> cell = "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"
        >>> int(enc.encode(NasBench201Format().parse(cell)).sum())  # only the direct edge 0->3 is a path
        1
    """

    name = "path"
    _PATHS: tuple[tuple[tuple[int, int], ...], ...] = (
        ((0, 3),),
        ((0, 1), (1, 3)),
        ((0, 2), (2, 3)),
        ((0, 1), (1, 2), (2, 3)),
    )

    def __init__(self, arch_format: NasBench201Format | None = None) -> None:
        self.arch_format = arch_format or NasBench201Format()
        super().__init__(self.arch_format.choices())
        self.ops = tuple(op for op in self.arch_format.ops if op != "none")
        index: dict[tuple[int, tuple[str, ...]], int] = {}
        for p, path in enumerate(self._PATHS):
            for ops in itertools.product(self.ops, repeat=len(path)):
                index[(p, ops)] = len(index)
        self._index = index

    @property
    def width(self) -> int:
        return len(self._index)

    def encode(self, arch: Mapping[str, Any]) -> np.ndarray:
        valid = self._validate(arch)
        vector = np.zeros(self.width)
        for p, path in enumerate(self._PATHS):
            ops = tuple(str(valid[f"{target}<-{source}"]) for source, target in path)
            if "none" not in ops:
                vector[self._index[(p, ops)]] = 1.0
        return vector


class CellAdjacencyEncoding(Encoding):
    """Adjacency-with-ops encoding of DARTS-style cells (``<cell>/node<j>/op<k>`` and ``<cell>/node<j>/in<k>``).

    Each (cell, node, input, op) gets one entry: how many of the node's (input, op) pairs are that one (0, 1 or 2).
    The width is the sum over nodes of ``inputs x ops``; for the DARTS space (2 cells, nodes with 2..5 inputs,
    7 ops) that is ``2 x 14 x 7 = 196``.

    Args:
        choices: the cell space's choices; every choice must be a node's ``op<k>`` or ``in<k>``, each ``op<k>``
            with its ``in<k>``.

    Example:
        >>> ops = ("skip_connect", "sep_conv_3x3")
        >>> choices = [Choice("normal/node2/op0", ops), Choice("normal/node2/in0", (0, 1)),
        ...            Choice("normal/node2/op1", ops), Choice("normal/node2/in1", (0, 1))]
        >>> enc = CellAdjacencyEncoding(choices)
        >>> arch = {"normal/node2/op0": "sep_conv_3x3", "normal/node2/in0": 1,
        ...         "normal/node2/op1": "skip_connect", "normal/node2/in1": 1}
        >>> enc.encode(arch).tolist()  # rows: input 0, input 1; columns: skip_connect, sep_conv_3x3
        [0.0, 0.0, 1.0, 1.0]
    """

    name = "cell-adjacency"

    def __init__(self, choices: Sequence[Choice]) -> None:
        super().__init__(choices)
        known = {c.name: c for c in self.choices}
        self._pairs: list[tuple[str, str, str]] = []  # (node, op choice, input choice)
        offsets: dict[str, tuple[int, tuple[Any, ...], tuple[Any, ...]]] = {}
        width = 0
        for choice in self.choices:
            node, _, slot = choice.name.rpartition("/")
            if not node or not (slot.startswith(("op", "in")) and slot[2:].isdigit()):
                raise ValueError(
                    f"cell-adjacency encoding needs a DARTS-style cell space (choices '<cell>/node<j>/op<k>' and "
                    f"'<cell>/node<j>/in<k>'); choice {choice.name!r} is neither"
                )
            if slot.startswith("in"):
                continue
            partner = f"{node}/in{slot[2:]}"
            if partner not in known:
                raise ValueError(f"cell-adjacency encoding: choice {choice.name!r} has no input choice {partner!r}")
            self._pairs.append((node, choice.name, partner))
            if node not in offsets:
                inputs = tuple(sorted(set().union(*(known[f"{node}/in{s[2:]}"].candidates for s in self._slots(node)))))
                offsets[node] = (width, inputs, tuple(choice.candidates))
                width += len(inputs) * len(choice.candidates)
            elif tuple(choice.candidates) != offsets[node][2]:
                raise ValueError(f"cell-adjacency encoding: the op choices of {node!r} have different candidates")
        self._offsets, self._width = offsets, width

    def _slots(self, node: str) -> list[str]:
        return [c.name.rpartition("/")[2] for c in self.choices if c.name.startswith(f"{node}/in")]

    @property
    def width(self) -> int:
        return self._width

    def encode(self, arch: Mapping[str, Any]) -> np.ndarray:
        valid = self._validate(arch)
        vector = np.zeros(self.width)
        for node, op, source in self._pairs:
            offset, inputs, ops = self._offsets[node]
            vector[offset + inputs.index(valid[source]) * len(ops) + ops.index(valid[op])] += 1.0
        return vector


ENCODINGS = (OneHotEncoding.name, PathEncoding.name, CellAdjacencyEncoding.name)
"""The encodings :func:`make_encoding` builds by name (each class's ``name``: one-hot, path, cell-adjacency)."""


def make_encoding(name: str, choices: Sequence[Choice]) -> Encoding:
    """The encoding called ``name`` (one of :data:`ENCODINGS`) of the space whose choices are ``choices``.

    ``"path"`` needs a NAS-Bench-201 cell's choices (any subset of its ops, the same on every edge) and
    ``"cell-adjacency"`` a DARTS-style cell's (``.../nodeN/opK`` and ``.../nodeN/inK`` choices).

    Raises:
        ValueError: an unknown name (naming the valid ones), or a space the encoding cannot describe.

    Example:
        >>> make_encoding("one-hot", [Choice("a", (0, 1, 2)), Choice("b", (0, 1))]).width
        5
    """
    if name == OneHotEncoding.name:
        return OneHotEncoding(choices)
    if name == CellAdjacencyEncoding.name:
        return CellAdjacencyEncoding(choices)
    if name == PathEncoding.name:
        names, ops = [c.name for c in choices], tuple(str(op) for op in (choices[0].candidates if choices else ()))
        if names != [c.name for c in NasBench201Format().choices()] or any(
            tuple(str(op) for op in c.candidates) != ops for c in choices
        ):
            raise ValueError(
                "the path encoding is of NAS-Bench-201 cells: the choices must be the cell's six edges, each with "
                f"the same ops; got choices {names}"
            )
        return PathEncoding(NasBench201Format(ops))
    raise ValueError(f"unknown encoding {name!r}; valid encodings: {', '.join(ENCODINGS)}")
