"""Architecture encodings for learned predictors: one-hot of the choices (any space) and NAS-Bench-201 paths.

- :class:`OneHotEncoding`: one block per choice, a 1 at the chosen candidate (for a cell space whose choices are
  edge ops, as NAS-Bench-201's, this is its adjacency-with-ops encoding);
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

__all__ = ["Encoding", "OneHotEncoding", "PathEncoding"]


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
