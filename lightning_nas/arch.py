"""The shared vocabulary of every search space: named choices, architectures and DARTS genotypes.

An architecture is one value per named :class:`Choice`, stored as a plain JSON mapping. A :class:`Genotype` is the
cell format of the DARTS paper (Liu et al., 2019), kept because users already hold results in it; it converts to
and from an architecture mapping.

Example:
    >>> choice = Choice("normal/node2/op0", ("sep_conv_3x3", "max_pool_3x3"))
    >>> validate_arch({"normal/node2/op0": "max_pool_3x3"}, [choice])
    {'normal/node2/op0': 'max_pool_3x3'}
"""

from __future__ import annotations

import ast
import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning_nas._safe_io import read_json

__all__ = [
    "Arch",
    "Choice",
    "Genotype",
    "atomic_write_text",
    "load_arch",
    "publish_file",
    "save_arch",
    "validate_arch",
]

ChoiceValue = str | int
Arch = dict[str, ChoiceValue]
"""An architecture: choice name -> chosen value. JSON-serialisable by construction."""


@dataclass(frozen=True)
class Choice:
    """A named categorical decision of a search space.

    Args:
        name: unique key of the decision, ``/``-separated by convention (``"normal/node2/op0"``).
        candidates: the values the decision may take (op names or integer indices).

    Example:
        >>> Choice("reduce/node3/in1", (0, 1, 2)).validate(3)
        Traceback (most recent call last):
        ...
        ValueError: choice 'reduce/node3/in1' got 3; valid values: 0, 1, 2
    """

    name: str
    candidates: tuple[ChoiceValue, ...]

    def __post_init__(self) -> None:
        if not self.candidates:
            raise ValueError(f"choice {self.name!r} has no candidates")
        if len(set(self.candidates)) != len(self.candidates):
            raise ValueError(f"choice {self.name!r} has duplicate candidates: {list(self.candidates)}")

    def validate(self, value: Any) -> ChoiceValue:
        """Return ``value`` if it is one of the candidates, else raise ``ValueError`` naming both."""
        if isinstance(value, bool) or value not in self.candidates:
            valid = ", ".join(str(c) for c in self.candidates)
            raise ValueError(f"choice {self.name!r} got {value!r}; valid values: {valid}")
        return value


def validate_arch(arch: Mapping[str, Any], choices: Iterable[Choice]) -> Arch:
    """Check that ``arch`` sets every choice to one of its candidates, and nothing else.

    Args:
        arch: the architecture to check.
        choices: the space's choices.

    Returns:
        A new dict in the order of ``choices``.

    Raises:
        ValueError: a missing or unknown key, or a value outside a choice's candidates.
    """
    by_name = {choice.name: choice for choice in choices}
    unknown = sorted(set(arch) - set(by_name))
    if unknown:
        raise ValueError(f"unknown choices {unknown}; this space has: {', '.join(by_name)}")
    missing = [name for name in by_name if name not in arch]
    if missing:
        raise ValueError(f"architecture is missing choices {missing}")
    return {name: choice.validate(arch[name]) for name, choice in by_name.items()}


def publish_file(tmp: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Rename a finished temporary file onto ``target``, readable as any new file is (the process's umask).

    ``tempfile.mkstemp`` creates files readable by their owner only; a log directory served to a TensorBoard of
    another account, or shared with a team, must not end up with such files.
    """
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, target)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename, so no reader sees half a file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        publish_file(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def save_arch(arch: Mapping[str, ChoiceValue] | Genotype, path: str | os.PathLike[str]) -> Path:
    """Save an architecture mapping or a genotype as JSON, atomically."""
    payload = arch.to_json() if isinstance(arch, Genotype) else dict(arch)
    return atomic_write_text(path, json.dumps(payload, indent=2) + "\n")


def load_arch(path: str | os.PathLike[str]) -> Arch | Genotype:
    """Load what :func:`save_arch` wrote: a :class:`Genotype` if the file holds one, else the mapping.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not valid JSON or not an architecture.
    """
    source = Path(path)
    payload = read_json(source, "architecture file")
    if isinstance(payload, dict) and "normal" in payload:
        return Genotype.from_json(payload)
    if not isinstance(payload, dict) or not all(isinstance(v, (str, int)) for v in payload.values()):
        raise ValueError(f"{str(source)!r} holds neither a genotype nor a mapping of choice name to value")
    return payload


Edge = tuple[str, int]
_GENOTYPE_FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")


@dataclass(frozen=True)
class Genotype:
    """A DARTS cell pair: per intermediate node two ``(op, input)`` edges, and the nodes concatenated at the output.

    Node numbering follows the DARTS paper: inputs 0 and 1 are the outputs of the two previous cells, and
    intermediate node ``i`` (``i = 0 .. steps-1``) is state ``i + 2``; edges ``2i`` and ``2i+1`` feed it, and their
    inputs must be below ``i + 2``.

    Args:
        normal: edges of the normal cell.
        normal_concat: states concatenated into the normal cell's output.
        reduce: edges of the reduction cell.
        reduce_concat: states concatenated into the reduction cell's output.

    Example:
        >>> g = Genotype.parse("Genotype(normal=[('sep_conv_3x3', 0), ('skip_connect', 1)], normal_concat=range(2, 3),"
        ...                    " reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1)], reduce_concat=[2])")
        >>> g.steps, g.normal_concat
        (1, (2,))
        >>> Genotype.parse(str(g)) == g == Genotype.from_json(g.to_json())
        True
    """

    normal: tuple[Edge, ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[Edge, ...]
    reduce_concat: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.normal or len(self.normal) % 2 or len(self.normal) != len(self.reduce):
            raise ValueError(
                "a genotype needs two edges per intermediate node and the same number of nodes in both cells; "
                f"got {len(self.normal)} normal and {len(self.reduce)} reduce edges"
            )
        for cell in ("normal", "reduce"):
            edges = getattr(self, cell)
            object.__setattr__(self, cell, tuple(_check_edge(cell, pos, edge) for pos, edge in enumerate(edges)))
            concat = getattr(self, f"{cell}_concat")
            object.__setattr__(self, f"{cell}_concat", _check_concat(cell, concat, len(edges) // 2))

    @property
    def steps(self) -> int:
        """Number of intermediate nodes per cell."""
        return len(self.normal) // 2

    def ops(self) -> set[str]:
        """All op names the genotype uses."""
        return {op for op, _ in self.normal + self.reduce}

    def check_ops(self, valid_ops: Iterable[str]) -> None:
        """Raise ``ValueError`` if the genotype uses an op outside ``valid_ops``."""
        valid = list(valid_ops)
        unknown = sorted(self.ops() - set(valid))
        if unknown:
            raise ValueError(f"genotype uses unknown ops {unknown}; valid ops: {', '.join(valid)}")

    def __str__(self) -> str:
        def edges(cell: tuple[Edge, ...]) -> str:
            return "[" + ", ".join(f"({op!r}, {index})" for op, index in cell) + "]"

        return (
            f"Genotype(normal={edges(self.normal)}, normal_concat={list(self.normal_concat)}, "
            f"reduce={edges(self.reduce)}, reduce_concat={list(self.reduce_concat)})"
        )

    @classmethod
    def parse(cls, text: str) -> Genotype:
        """Parse the ``Genotype(normal=[...], normal_concat=range(2, 6), ...)`` text that DARTS code prints.

        Only literals and ``range(a, b)`` are accepted; nothing is evaluated.

        Raises:
            ValueError: the text is not a genotype, naming what is wrong.
        """
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as err:
            raise ValueError(f"malformed genotype string {text!r}: {err.msg}") from None
        call = tree.body
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "Genotype"):
            raise ValueError(f"malformed genotype string {text!r}: expected Genotype(normal=..., reduce=...)")
        if call.args:
            raise ValueError(f"malformed genotype string {text!r}: use keyword fields {', '.join(_GENOTYPE_FIELDS)}")
        fields = {str(kw.arg): _literal(kw.value, text) for kw in call.keywords}
        return cls.from_json(fields)

    def to_json(self) -> dict[str, Any]:
        """The JSON form: lists of ``[op, input]`` pairs and lists of concatenated node ids."""
        return {
            "normal": [[op, index] for op, index in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [[op, index] for op, index in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }

    @classmethod
    def from_json(cls, payload: Mapping[str, Any] | str) -> Genotype:
        """Build a genotype from :meth:`to_json` output (a mapping or its JSON text).

        Raises:
            ValueError: missing or unknown fields, or malformed edges.
        """
        if isinstance(payload, str):
            text = payload
            try:
                payload = json.loads(text)
            except json.JSONDecodeError as err:
                raise ValueError(f"malformed genotype JSON {text[:80]!r}: {err}") from None
        if not isinstance(payload, Mapping):
            raise ValueError(f"a genotype must be a JSON object with fields {_GENOTYPE_FIELDS}, got {payload!r}")
        keys = set(payload)
        if keys - set(_GENOTYPE_FIELDS) or not {"normal", "reduce"} <= keys:
            raise ValueError(f"genotype fields must be {', '.join(_GENOTYPE_FIELDS)}; got {', '.join(sorted(keys))}")
        normal = _as_edges("normal", payload["normal"])
        reduce = _as_edges("reduce", payload["reduce"])
        default_concat = list(range(2, 2 + len(normal) // 2))
        return cls(
            normal=normal,
            normal_concat=tuple(payload.get("normal_concat", default_concat)),
            reduce=reduce,
            reduce_concat=tuple(payload.get("reduce_concat", default_concat)),
        )

    def graph(self, cell: str) -> list[tuple[str, str, str]]:
        """The edges ``(source, target, op)`` of the ``"normal"`` or ``"reduce"`` cell, labelled as the DARTS paper
        draws them: inputs ``c_{k-2}``, ``c_{k-1}``, intermediate nodes ``0 .. steps-1``, output ``c_{k}`` (unlabelled
        concatenation edges).

        Example:
            >>> g = Genotype(normal=(("sep_conv_3x3", 0), ("skip_connect", 1)), normal_concat=(2,),
            ...              reduce=(("max_pool_3x3", 0), ("max_pool_3x3", 1)), reduce_concat=(2,))
            >>> g.graph("normal")
            [('c_{k-2}', '0', 'sep_conv_3x3'), ('c_{k-1}', '0', 'skip_connect'), ('0', 'c_{k}', '')]
        """
        if cell not in ("normal", "reduce"):
            raise ValueError(f"cell must be 'normal' or 'reduce', got {cell!r}")

        def label(state: int) -> str:
            return ("c_{k-2}", "c_{k-1}")[state] if state < 2 else str(state - 2)

        edges = [(label(index), str(position // 2), op) for position, (op, index) in enumerate(getattr(self, cell))]
        return edges + [(label(state), "c_{k}", "") for state in getattr(self, f"{cell}_concat")]

    def to_arch(self) -> Arch:
        """The architecture mapping over the DARTS cell space's discrete choices (see ``DartsCellSpace``)."""
        arch: Arch = {}
        for cell in ("normal", "reduce"):
            for position, (op, index) in enumerate(getattr(self, cell)):
                node, slot = divmod(position, 2)
                arch[f"{cell}/node{node + 2}/op{slot}"] = op
                arch[f"{cell}/node{node + 2}/in{slot}"] = index
        return arch

    @classmethod
    def from_arch(cls, arch: Mapping[str, ChoiceValue], steps: int) -> Genotype:
        """Inverse of :meth:`to_arch`; every node's output is concatenated, as in the DARTS cell."""
        try:
            cells = {
                cell: tuple(
                    (str(arch[f"{cell}/node{node}/op{slot}"]), int(arch[f"{cell}/node{node}/in{slot}"]))
                    for node in range(2, steps + 2)
                    for slot in (0, 1)
                )
                for cell in ("normal", "reduce")
            }
        except KeyError as err:
            raise ValueError(f"architecture is missing choice {err.args[0]!r} of a {steps}-node DARTS cell") from None
        concat = tuple(range(2, steps + 2))
        return cls(normal=cells["normal"], normal_concat=concat, reduce=cells["reduce"], reduce_concat=concat)


def _literal(node: ast.expr, text: str) -> Any:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range":
        bounds = [_literal(arg, text) for arg in node.args]
        if node.keywords or not 1 <= len(bounds) <= 3 or not all(type(b) is int for b in bounds):
            raise ValueError(f"malformed genotype string {text!r}: range() takes 1 to 3 integers")
        return list(range(*bounds))
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ValueError(f"malformed genotype string {text!r}: {ast.unparse(node)!r} is not a literal") from None


def _as_edges(cell: str, value: Any) -> tuple[Edge, ...]:
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise ValueError(f"genotype field {cell!r} must be a list of (op, input) pairs, got {value!r}")
    edges = []
    for position, edge in enumerate(value):
        if not isinstance(edge, Sequence) or isinstance(edge, str) or len(edge) != 2:
            raise ValueError(f"{cell} edge {position} must be an (op, input) pair, got {edge!r}")
        edges.append((edge[0], edge[1]))
    return tuple(edges)


def _check_edge(cell: str, position: int, edge: Any) -> Edge:
    op, index = edge
    if not isinstance(op, str) or type(index) is not int:
        raise ValueError(f"{cell} edge {position} must be (op name, input index), got {edge!r}")
    node = position // 2
    if not 0 <= index < node + 2:
        raise ValueError(
            f"{cell} edge {position} ({op!r}, {index}) feeds node {node + 2}, whose inputs must be in 0..{node + 1}"
        )
    return (op, index)


def _check_concat(cell: str, concat: Iterable[Any], steps: int) -> tuple[int, ...]:
    nodes = tuple(concat)
    valid = range(2, steps + 2)
    if not nodes or any(type(n) is not int or n not in valid for n in nodes) or len(set(nodes)) != len(nodes):
        raise ValueError(f"{cell}_concat {list(nodes)} must be distinct node ids in {valid.start}..{valid.stop - 1}")
    return nodes
