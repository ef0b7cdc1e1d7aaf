"""Pictures of a search: cell diagrams, heatmaps of architecture probabilities, and subnets' accuracy against size.

Each function writes one PNG (atomically) and returns its path. Cell diagrams use graphviz's ``dot`` program when it
is installed and matplotlib otherwise; the other pictures use matplotlib (``pip install 'lightning-nas[plot]'``),
through its object-oriented API only, so the global pyplot state of a notebook is left alone.

Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> graph = [("c_{k-2}", "0", "sep_conv_3x3"), ("c_{k-1}", "0", "skip_connect"), ("0", "c_{k}", "")]
    >>> draw_cell(graph, folder / "cell.png", renderer="matplotlib").read_bytes()[:8] == PNG_SIGNATURE
    True
    >>> plot_probabilities({"normal/edge0": {"conv": 0.7, "skip": 0.3}}, folder / "heat.png").stat().st_size > 0
    True
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lightning_nas.arch import publish_file

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.figure import Figure

__all__ = [
    "PNG_SIGNATURE",
    "CellRenderer",
    "draw_cell",
    "graphviz_available",
    "matplotlib_available",
    "plot_probabilities",
    "plot_subnets",
    "read_png",
]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
"""The first eight bytes of every PNG file."""

CellRenderer = Literal["auto", "graphviz", "matplotlib"]

_INPUT_COLOUR, _NODE_COLOUR, _OUTPUT_COLOUR = "#b4eeb4", "#add8e6", "#eee8aa"  # the DARTS paper's figures


def graphviz_available() -> bool:
    """Whether graphviz's ``dot`` program is on ``PATH``."""
    return shutil.which("dot") is not None


def matplotlib_available() -> bool:
    """Whether matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def draw_cell(
    graph: Sequence[tuple[str, str, str]],
    path: str | os.PathLike[str],
    *,
    title: str = "",
    renderer: CellRenderer = "auto",
) -> Path:
    """Draw a cell given as ``(source, target, op)`` edges (see ``Genotype.graph``) and save it as PNG.

    Args:
        graph: the edges; nodes with no incoming edge are inputs, those with no outgoing edge outputs.
        path: the PNG to write.
        title: a caption.
        renderer: ``"graphviz"`` runs ``dot``; ``"matplotlib"`` draws a layered layout; ``"auto"`` uses ``dot`` if
            it is installed, else matplotlib.

    Raises:
        FileNotFoundError: ``renderer="graphviz"`` and ``dot`` is not installed.
        ValueError: an unknown renderer or an empty graph.
    """
    if renderer not in ("auto", "graphviz", "matplotlib"):
        raise ValueError(f"renderer must be 'auto', 'graphviz' or 'matplotlib', got {renderer!r}")
    if not graph:
        raise ValueError("cannot draw a cell without edges")
    use_dot = renderer == "graphviz" or (renderer == "auto" and graphviz_available())
    if use_dot:
        return _draw_with_dot(graph, Path(path), title)
    return _save(_draw_with_matplotlib(graph, title), Path(path))


def plot_probabilities(
    probabilities: Mapping[str, Mapping[str, float]], path: str | os.PathLike[str], *, title: str = ""
) -> Path:
    """A heatmap per group of decisions (the part of a name before its first ``/``, e.g. the cell type): one row per
    decision, one column per candidate, the probability as colour (and as a number when the grid is small).

    The colour scale spans the smallest to the largest probability in the picture, so the small early moves of
    DARTS alphas (all near ``1 / num_ops``) are visible; the numbers and the colour bar give the absolute values.

    Raises:
        ValueError: no decisions.
    """
    if not probabilities:
        raise ValueError("no architecture probabilities to plot")
    groups: dict[str, list[str]] = {}
    for name in probabilities:
        groups.setdefault(name.split("/", 1)[0] if "/" in name else "", []).append(name)
    figure = _figure(width=1.6 + 0.55 * max(len(p) for p in probabilities.values()), height=1.0)
    values = [p for distribution in probabilities.values() for p in distribution.values()]
    low, high = min(values), max(values)
    high = high if high > low else low + 1e-6
    axes_list = figure.subplots(1, len(groups), squeeze=False)[0]
    image = None
    for axes, (group, names) in zip(axes_list, groups.items()):
        candidates = list(dict.fromkeys(c for name in names for c in probabilities[name]))
        matrix = [[probabilities[name].get(c, float("nan")) for c in candidates] for name in names]
        image = axes.imshow(matrix, vmin=low, vmax=high, cmap="viridis", aspect="auto")
        axes.set_xticks(range(len(candidates)), candidates, rotation=60, ha="right", fontsize=8)
        prefix = len(group) + 1 if group else 0
        axes.set_yticks(range(len(names)), [name[prefix:] for name in names], fontsize=8)
        axes.set_title(group or "decisions")
        if len(names) * len(candidates) <= 160:
            for row, values in enumerate(matrix):
                for column, value in enumerate(values):
                    if value == value:
                        colour = "black" if value > (low + high) / 2 else "white"
                        axes.text(column, row, f"{value:.3f}", ha="center", va="center", fontsize=6, color=colour)
    figure.set_size_inches(figure.get_size_inches()[0] * len(groups), 1.8 + 0.28 * max(map(len, groups.values())))
    if image is not None:
        figure.colorbar(image, ax=list(axes_list), fraction=0.03, label="probability")
    if title:
        figure.suptitle(title)
    return _save(figure, Path(path))


def plot_subnets(
    results: Sequence[tuple[Mapping[str, Any], Mapping[str, float]]],
    path: str | os.PathLike[str],
    *,
    metric: str = "val/acc",
    sizes: Sequence[str] = ("params", "flops"),
    title: str = "",
) -> Path | None:
    """Scatter ``metric`` of each evaluated subnet against each of ``sizes`` its results report.

    Returns:
        The PNG written, or ``None`` when no result has ``metric`` together with one of ``sizes``.
    """
    panels = [size for size in sizes if any(metric in m and size in m for _, m in results)]
    if not panels:
        return None
    figure = _figure(width=4.2 * len(panels), height=3.4)
    for axes, size in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels):
        points = [(m[size], m[metric]) for _, m in results if metric in m and size in m]
        axes.scatter([x for x, _ in points], [y for _, y in points], s=18, alpha=0.8)
        xs = [x for x, _ in points if x > 0]
        if xs and max(xs) > 10 * min(xs):
            axes.set_xscale("log")
        axes.set_xlabel(size)
        axes.set_ylabel(metric)
        axes.grid(alpha=0.3)
    if title:
        figure.suptitle(title)
    return _save(figure, Path(path))


def read_png(path: str | os.PathLike[str]) -> np.ndarray:
    """A PNG as a ``uint8`` array ``[H, W, 3]`` (what TensorBoard's ``add_image(..., dataformats="HWC")`` takes)."""
    import numpy as np
    from matplotlib.image import imread

    pixels = imread(os.fspath(path))
    if pixels.dtype != np.uint8:
        pixels = (np.clip(pixels, 0.0, 1.0) * 255).round().astype(np.uint8)
    if pixels.ndim == 2:
        pixels = np.stack([pixels] * 3, axis=-1)
    return np.ascontiguousarray(pixels[..., :3])


# ------------------------------------------------------------------------------------------------------- drawing
def _figure(width: float, height: float) -> Figure:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ModuleNotFoundError(
            "architecture pictures need matplotlib: pip install 'lightning-nas[plot]' "
            "(or turn pictures off, e.g. --genotype_logger.pictures=false)"
        ) from None
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        figure.savefig(tmp, format="png", dpi=100)
        publish_file(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _nodes(graph: Sequence[tuple[str, str, str]]) -> tuple[list[str], set[str], set[str]]:
    nodes = list(dict.fromkeys(n for source, target, _ in graph for n in (source, target)))
    targets = {target for _, target, _ in graph}
    sources = {source for source, _, _ in graph}
    return nodes, set(nodes) - targets, set(nodes) - sources


def _dot_source(graph: Sequence[tuple[str, str, str]], title: str) -> str:
    nodes, inputs, outputs = _nodes(graph)

    def quote(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [
        "digraph cell {",
        "  rankdir=LR;",
        f"  label={quote(title)}; labelloc=t;",
        '  node [style=filled, shape=rect, fontname="helvetica", penwidth=2];',
        '  edge [fontname="helvetica", fontsize=11];',
    ]
    for node in nodes:
        colour = _INPUT_COLOUR if node in inputs else _OUTPUT_COLOUR if node in outputs else _NODE_COLOUR
        lines.append(f"  {quote(node)} [fillcolor={quote(colour)}];")
    lines += [f"  {quote(source)} -> {quote(target)} [label={quote(op)}];" for source, target, op in graph]
    return "\n".join([*lines, "}"]) + "\n"


def _draw_with_dot(graph: Sequence[tuple[str, str, str]], path: Path, title: str) -> Path:
    dot = shutil.which("dot")
    if dot is None:
        raise FileNotFoundError(
            "cell diagrams with renderer='graphviz' need graphviz's `dot` program, which is not on PATH: install "
            "graphviz (e.g. `apt install graphviz`, `brew install graphviz`, `conda install graphviz`) or use "
            "renderer='auto' or 'matplotlib'"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        done = subprocess.run(
            [dot, "-Tpng", "-o", tmp], input=_dot_source(graph, title), text=True, capture_output=True, timeout=120
        )
        if done.returncode != 0:
            raise RuntimeError(f"`dot` failed with exit code {done.returncode}: {done.stderr.strip()}")
        publish_file(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _layers(graph: Sequence[tuple[str, str, str]]) -> dict[str, int]:
    """Longest-path depth of each node from the inputs (a cell is acyclic; a cycle is reported)."""
    nodes, _, _ = _nodes(graph)
    depth = dict.fromkeys(nodes, 0)
    for _ in range(len(nodes)):
        changed = False
        for source, target, _ in graph:
            if depth[target] < depth[source] + 1:
                depth[target], changed = depth[source] + 1, True
        if not changed:
            return depth
    raise ValueError("the cell graph has a cycle")


def _draw_with_matplotlib(graph: Sequence[tuple[str, str, str]], title: str) -> Figure:
    _, inputs, outputs = _nodes(graph)
    depth = _layers(graph)
    columns: dict[int, list[str]] = {}
    for node, layer in depth.items():
        columns.setdefault(layer, []).append(node)
    position = {
        node: (2.0 * layer, 1.4 * ((len(members) - 1) / 2.0 - row))
        for layer, members in columns.items()
        for row, node in enumerate(members)
    }
    ops = sorted({op for _, _, op in graph if op})
    figure = _figure(width=1.0 + 2.2 * len(columns), height=1.0 + 1.4 * max(map(len, columns.values())))
    axes = figure.add_subplot()
    palette = [f"C{k % 10}" for k in range(len(ops))]
    for k, (source, target, op) in enumerate(graph):
        colour = palette[ops.index(op)] if op else "darkgrey"
        bend = 0.12 * (1 if k % 2 else -1) if op else 0.0  # unlabelled (concatenation) edges: straight, dashed
        axes.annotate(
            "",
            xy=position[target],
            xytext=position[source],
            arrowprops={
                "arrowstyle": "-|>",
                "color": colour,
                "lw": 1.5,
                "linestyle": "-" if op else "--",
                "connectionstyle": f"arc3,rad={bend}",
                "shrinkA": 16,
                "shrinkB": 16,
            },
        )
        if op:
            (x0, y0), (x1, y1) = position[source], position[target]
            # A point 40% along matplotlib's arc3 curve (a quadratic Bezier; exact with an equal aspect ratio), so
            # the labels of edges crossing at their middles stay apart.
            control = ((x0 + x1) / 2 + bend * (y1 - y0), (y0 + y1) / 2 - bend * (x1 - x0))
            t = 0.4
            label_x, label_y = (
                (1 - t) ** 2 * a + 2 * (1 - t) * t * c + t**2 * b for a, c, b in zip((x0, y0), control, (x1, y1))
            )
            axes.text(
                label_x,
                label_y,
                op,
                color=colour,
                fontsize=8,
                ha="center",
                va="center",
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1},
            )
    for node, (x, y) in position.items():
        colour = _INPUT_COLOUR if node in inputs else _OUTPUT_COLOUR if node in outputs else _NODE_COLOUR
        axes.text(
            x,
            y,
            node,
            ha="center",
            va="center",
            fontsize=10,
            bbox={"boxstyle": "round,pad=0.4", "facecolor": colour, "edgecolor": "black"},
        )
    rows = max(map(len, columns.values()))
    axes.set_xlim(-0.8, 2.0 * max(columns) + 0.8)
    axes.set_ylim(-0.7 * rows - 0.3, 0.7 * rows + 0.3)
    axes.set_aspect("equal")
    axes.set_axis_off()
    if title:
        axes.set_title(title)
    return figure
