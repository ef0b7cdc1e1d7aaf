"""Latency lookup tables: time each candidate block of a space on this device once, then predict any arch by a sum.

A *block* is an outermost module call of the space's forward for an architecture (a cell's preprocessing, the op
chosen on an edge, the stem, the classifier), keyed by its module path and input shapes. :func:`trace_blocks`
finds an architecture's blocks by running it on the ``meta`` device (no compute). :func:`build_latency_table`
traces random architectures until no new block appears, times every block in isolation (warm-up, then repeats in
round-robin over all blocks so load changes hit them alike, then the median), and records the median gap between
measured end-to-end latency and the block sum over a few architectures as ``overhead_ms`` (the glue between
blocks: additions, concatenations, pooling in the space's own ``forward``). The prediction for an architecture is
``overhead_ms + sum(table[block] for block in trace_blocks(arch))``, as in FBNet's latency table (Wu et al., 2019).

A module whose compute depends on what ``activate`` set rather than on its inputs (an elastic block's kernel size
and expand ratio) says so through a ``latency_state() -> dict`` method: the state is part of its block key, and the
block is timed with the architecture that produced it active, so every setting gets its own entry.

Tables are JSON and carry the space's identity (class and a fingerprint of its choices and weight shapes), the
input shape and the device, so a table built on another space is refused.
"""

from __future__ import annotations

import copy
import hashlib
import json
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from lightning_nas._safe_io import read_json
from lightning_nas.arch import Arch, atomic_write_text
from lightning_nas.sampling import derive_seed, sample_arch
from lightning_nas.search.base import Constraint
from lightning_nas.spaces.base import SearchSpace

__all__ = [
    "LatencyTable",
    "build_latency_table",
    "measure_latency",
    "measure_network_latency",
    "space_identity",
    "trace_blocks",
]

FORMAT = "lightning_nas.latency_table/1"


@dataclass(frozen=True)
class Block:
    """One outermost module call: where it is, what it takes (tensor shapes or plain values)."""

    path: str
    args: tuple[Any, ...]
    state: dict[str, Any] | None = None  # the module's latency_state(), if it has one

    @property
    def key(self) -> str:
        state = "" if self.state is None else json.dumps(self.state, sort_keys=True)
        return f"{self.path}{list(self.args)}{state}"


def space_identity(space: SearchSpace) -> dict[str, str]:
    """The space's class and a fingerprint of its choices and its parameter and buffer shapes.

    Example:
        >>> from lightning_nas.spaces import DartsCellSpace
        >>> a = space_identity(DartsCellSpace(in_channels=1, channels=4, layers=3, steps=1))
        >>> b = space_identity(DartsCellSpace(in_channels=1, channels=8, layers=3, steps=1))
        >>> a["class"], a["fingerprint"] == b["fingerprint"]
        ('lightning_nas.spaces.darts_cell.DartsCellSpace', False)
    """
    choices = [[c.name, list(c.candidates)] for c in space.choices()]
    shapes = [[name, list(t.shape)] for name, t in space.state_dict().items()]
    digest = hashlib.blake2b(json.dumps([choices, shapes]).encode(), digest_size=8).hexdigest()
    return {"class": f"{type(space).__module__}.{type(space).__qualname__}", "fingerprint": digest}


def trace_blocks(space: SearchSpace, arch: Mapping[str, Any], input_shape: Sequence[int]) -> list[Block]:
    """The outermost module calls of ``space`` running ``arch`` on an input of ``input_shape``, in call order.

    ``space`` should live on the ``meta`` device (see :meth:`LatencyTable.predictor`), where nothing is computed.
    """
    names = {id(m): name for name, m in space.named_modules() if m is not space}
    depth, blocks = 0, []

    def enter(module: nn.Module, args: tuple[Any, ...]) -> None:
        nonlocal depth
        if depth == 0:
            path = names[id(module)]
            latency_state = getattr(module, "latency_state", None)
            state = latency_state() if callable(latency_state) else None
            blocks.append(Block(path, tuple(_describe(a, path) for a in args), state))
        depth += 1

    def leave(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        nonlocal depth
        depth -= 1

    modules = [m for m in space.modules() if m is not space]
    handles = [m.register_forward_pre_hook(enter) for m in modules] + [m.register_forward_hook(leave) for m in modules]
    try:
        space.eval()
        space.activate(arch)
        device = next(space.parameters()).device
        with torch.no_grad():
            space(torch.zeros(*input_shape, device=device))
    finally:
        for handle in handles:
            handle.remove()
    return blocks


def _describe(arg: Any, path: str) -> Any:
    if isinstance(arg, Tensor):
        return {"shape": list(arg.shape), "dtype": str(arg.dtype).removeprefix("torch.")}
    if arg is None or isinstance(arg, (bool, int, float, str)):
        return arg
    raise TypeError(f"block {path!r} takes a {type(arg).__name__} argument; only tensors and plain values are timed")


def _materialise(args: tuple[Any, ...], device: torch.device) -> tuple[Any, ...]:
    return tuple(
        torch.randn(a["shape"], device=device).to(getattr(torch, a["dtype"])) if isinstance(a, dict) else a
        for a in args
    )


Clock = Literal["wall", "cpu"]


def _timer(device: torch.device, clock: Clock) -> Callable[[Callable[[], Any]], float]:
    if clock not in ("wall", "cpu"):
        raise ValueError(f"clock must be 'wall' or 'cpu', got {clock!r}")
    if clock == "cpu" and (device.type != "cpu" or torch.get_num_threads() != 1):
        raise ValueError(
            "clock='cpu' times the process's CPU time, which equals latency only on a CPU device with one thread; "
            f"got device {device} with torch.get_num_threads() = {torch.get_num_threads()}"
        )
    now = time.perf_counter if clock == "wall" else time.process_time

    def elapsed_ms(run: Callable[[], Any]) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = now()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return 1e3 * (now() - start)

    return elapsed_ms


@torch.no_grad()
def measure_latency(
    space: SearchSpace,
    archs: Sequence[Mapping[str, Any]],
    input_shape: Sequence[int],
    *,
    warmup: int = 3,
    repeats: int = 20,
    clock: Clock = "wall",
) -> list[float]:
    """Median end-to-end forward latency (ms) of each arch, measured in round-robin so load changes hit all alike.

    ``clock`` as in :func:`build_latency_table`.

    Example:
        >>> from lightning_nas.spaces import DartsCellSpace
        >>> space = DartsCellSpace(in_channels=1, channels=4, layers=3, steps=1)
        >>> arch = {c.name: c.candidates[0] for c in space.choices()}
        >>> [ms > 0 for ms in measure_latency(space, [arch], (2, 1, 8, 8), repeats=3)]
        [True]
    """
    device = next(space.parameters()).device
    x = torch.randn(*input_shape, device=device)
    space.eval()
    return _round_robin([_arch_call(space, arch, x) for arch in archs], device, warmup, repeats, clock)


Call = tuple[Callable[[], Any], Callable[[], Any]]
"""An untimed set-up and the timed call."""


def _block_call(space: SearchSpace, arch: Mapping[str, Any], module: nn.Module, args: tuple[Any, ...]) -> Call:
    """Time ``module`` alone, with the architecture it was traced in active (it may set the module's state)."""
    return (lambda: space.activate(arch)), (lambda: module(*args))


@torch.no_grad()
def measure_network_latency(
    network: torch.nn.Module, input_shape: Sequence[int], *, warmup: int = 3, repeats: int = 20, clock: Clock = "wall"
) -> float:
    """Median forward latency (ms) of a standalone network (e.g. a trained child) on an input of ``input_shape``.

    Example:
        >>> measure_network_latency(torch.nn.Conv2d(1, 4, 3), (1, 1, 8, 8), repeats=3) > 0
        True
    """
    parameter = next(network.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    x = torch.randn(*input_shape, device=device)
    was_training = network.training
    network.eval()
    try:
        return _round_robin([((lambda: None), (lambda: network(x)))], device, warmup, repeats, clock)[0]
    finally:
        network.train(was_training)


def _arch_call(space: SearchSpace, arch: Mapping[str, Any], x: Tensor) -> Call:
    return (lambda: space.activate(arch)), (lambda: space(x))


def _round_robin(calls: Sequence[Call], device: torch.device, warmup: int, repeats: int, clock: Clock) -> list[float]:
    """Median time (ms) of each call, run in rounds over all calls so that load changes hit every call alike."""
    elapsed_ms = _timer(device, clock)
    times: list[list[float]] = [[] for _ in calls]
    for round_ in range(warmup + repeats):
        for k, (set_up, call) in enumerate(calls):
            set_up()
            ms = elapsed_ms(call)
            if round_ >= warmup:
                times[k].append(ms)
    return [statistics.median(t) for t in times]


@dataclass
class LatencyTable:
    """Per-block latencies (ms) of one space on one device, plus the glue overhead; see the module docstring.

    Args:
        space: :func:`space_identity` of the space it was built on.
        input_shape: ``[batch, channels, height, width]`` the blocks were timed at.
        device: where it was timed.
        entries: block key -> median latency in ms.
        overhead_ms: median of (measured - block sum) over the build's calibration architectures (may be < 0).
        clock: ``"wall"`` or ``"cpu"``, see :func:`build_latency_table`.
        validation: held-out architectures with their predicted and measured latency at build time.
    """

    space: dict[str, str]
    input_shape: list[int]
    device: str
    entries: dict[str, float] = field(default_factory=dict)
    overhead_ms: float = 0.0
    clock: str = "wall"
    validation: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "space": self.space,
            "input_shape": self.input_shape,
            "device": self.device,
            "clock": self.clock,
            "overhead_ms": self.overhead_ms,
            "validation": self.validation,
            "entries": self.entries,
        }

    def save(self, path: str | Path) -> Path:
        """Write the table as JSON (atomically)."""
        return atomic_write_text(path, json.dumps(self.to_json(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        """Read a table; raises ``ValueError`` naming what is wrong with an empty or malformed file."""
        source = Path(path)
        payload = read_json(source, "latency table")
        return cls.from_json(payload, origin=str(source))

    @classmethod
    def from_json(cls, payload: Any, origin: str = "<json>") -> LatencyTable:
        """Build a table from :meth:`to_json` output, checking every field."""
        fields = ("format", "space", "input_shape", "device", "overhead_ms", "entries")
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise ValueError(f"{origin!r} is not a latency table (expected a JSON object with format {FORMAT!r})")
        missing = [name for name in fields if name not in payload]
        if missing:
            raise ValueError(f"latency table {origin!r} lacks the fields {missing}")
        entries = payload["entries"]
        if not isinstance(entries, dict) or not entries:
            raise ValueError(f"latency table {origin!r} has no entries; rebuild it with `lightning-nas lut`")
        bad = {k: v for k, v in entries.items() if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0}
        if not isinstance(payload["overhead_ms"], (int, float)) or isinstance(payload["overhead_ms"], bool):
            raise ValueError(f"latency table {origin!r}: overhead_ms must be a number, got {payload['overhead_ms']!r}")
        if bad:
            raise ValueError(f"latency table {origin!r} has entries that are not latencies >= 0: {bad}")
        space = payload["space"]
        if not isinstance(space, dict) or not {"class", "fingerprint"} <= set(space):
            raise ValueError(f"latency table {origin!r}: 'space' must hold 'class' and 'fingerprint', got {space!r}")
        return cls(
            space=dict(space),
            input_shape=[int(s) for s in payload["input_shape"]],
            device=str(payload["device"]),
            entries={k: float(v) for k, v in entries.items()},
            overhead_ms=float(payload["overhead_ms"]),
            clock=str(payload.get("clock", "wall")),
            validation=list(payload.get("validation", [])),
        )

    def check_space(self, space: SearchSpace) -> None:
        """Raise ``ValueError`` if ``space`` is not the space the table was built on."""
        identity = space_identity(space)
        if identity != self.space:
            raise ValueError(
                f"latency table was built on space {self.space['class']} (fingerprint {self.space['fingerprint']}), "
                f"not on this {identity['class']} (fingerprint {identity['fingerprint']}); "
                "build a table for this space with `lightning-nas lut`"
            )

    def predictor(self, space: SearchSpace) -> Callable[[Mapping[str, Any]], float]:
        """``arch -> predicted latency (ms)`` for ``space`` (checked against the table's space).

        The space is copied to the ``meta`` device once; each prediction traces the arch there and sums the table.
        """
        self.check_space(space)
        shadow = copy.deepcopy(space).to("meta")

        def predict(arch: Mapping[str, Any]) -> float:
            total = self.overhead_ms
            for block in trace_blocks(shadow, arch, self.input_shape):
                if block.key not in self.entries:
                    raise KeyError(
                        f"block {block.key} is not in the latency table ({len(self.entries)} entries); rebuild it "
                        "with a larger max_archs so that every block of the space is timed"
                    )
                total += self.entries[block.key]
            return total

        return predict

    def constraint(self, space: SearchSpace, limit_ms: float) -> Constraint:
        """``predicted latency <= limit_ms`` as a constraint named ``latency_ms``."""
        return Constraint("latency_ms", self.predictor(space), limit_ms)


@torch.no_grad()
def build_latency_table(
    space: SearchSpace,
    input_shape: Sequence[int],
    *,
    warmup: int = 3,
    repeats: int = 15,
    max_archs: int = 500,
    patience: int = 50,
    calibration_archs: int = 7,
    validation_archs: int = 3,
    seed: int = 0,
    clock: Clock = "wall",
) -> LatencyTable:
    """Time every block of ``space`` on its current device; see the module docstring.

    Args:
        space: the search space (on the device to time).
        input_shape: ``[batch, channels, height, width]``.
        warmup: untimed calls per block before the repeats.
        repeats: timed calls per block; the table keeps the median.
        max_archs: at most this many random architectures are traced to find the blocks.
        patience: tracing stops once this many architectures in a row bring no new block.
        calibration_archs: random architectures whose end-to-end latency sets ``overhead_ms`` (the median gap
            between measured and summed latency; with fewer than about 5 that median follows the timing noise).
        validation_archs: further random architectures measured end to end in the same rounds and stored with
            their predictions in :attr:`LatencyTable.validation`, a record of the table's accuracy.
        seed: seed of the traced architectures.
        clock: ``"wall"`` (latency; use it on a dedicated device) or ``"cpu"``, the process's CPU time, which
            ignores time the OS gives to other processes (for a shared machine; CPU device, one thread only).
    """
    if len(input_shape) != 4 or repeats < 1 or warmup < 0 or max_archs < 1:
        raise ValueError(
            f"need a 4-d input_shape, repeats >= 1, warmup >= 0, max_archs >= 1; got {input_shape=}, "
            f"{repeats=}, {warmup=}, {max_archs=}"
        )
    device = next(space.parameters()).device
    shadow = copy.deepcopy(space).to("meta")
    generator = torch.Generator().manual_seed(derive_seed(seed, "latency_table"))
    # calibration and validation archs are traced first, so their blocks are always in the table
    archs: list[Arch] = [sample_arch(space.choices(), generator) for _ in range(calibration_archs + validation_archs)]
    blocks: dict[str, tuple[Block, Arch]] = {}  # key -> the block and the first architecture it appeared in
    for arch in archs:
        for b in trace_blocks(shadow, arch, input_shape):
            blocks.setdefault(b.key, (b, arch))
    quiet = 0
    for _ in range(max_archs):
        arch = sample_arch(space.choices(), generator)
        new = [b for b in trace_blocks(shadow, arch, input_shape) if b.key not in blocks]
        quiet = 0 if new else quiet + 1
        for b in new:
            blocks.setdefault(b.key, (b, arch))
        if quiet >= patience:
            break
    modules = dict(space.named_modules())
    calls = [_block_call(space, source, modules[b.path], _materialise(b.args, device)) for b, source in blocks.values()]
    # calibration and validation archs run end to end in the same rounds, so they see the same load as the blocks
    x = torch.randn(*input_shape, device=device)
    calls += [_arch_call(space, arch, x) for arch in archs]
    space.eval()
    medians = _round_robin(calls, device, warmup, repeats, clock)
    table = LatencyTable(space_identity(space), list(input_shape), str(device), clock=clock)
    table.entries = dict(zip(blocks, medians[: len(blocks)]))
    measured = medians[len(blocks) :]
    predict = table.predictor(space)
    if calibration_archs:
        gaps = [m - predict(a) for m, a in zip(measured[:calibration_archs], archs[:calibration_archs])]
        table.overhead_ms = statistics.median(gaps)
    table.validation = [
        {"arch": dict(a), "predicted_ms": predict(a), "measured_ms": m}
        for a, m in zip(archs[calibration_archs:], measured[calibration_archs:])
    ]
    return table
