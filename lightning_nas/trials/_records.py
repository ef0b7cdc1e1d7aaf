"""The driver's record of an experiment: one row per finished trial, written atomically as JSONL and CSV.

The record is the truth a resumed driver rebuilds from; a trial writes nothing the driver cannot rebuild. Files
are read back with :mod:`json` only (and strategy state with the package's safe loader), never unpickled.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from lightning_nas._safe_io import load_checkpoint
from lightning_nas.arch import Arch, atomic_write_text, publish_file

__all__ = ["SEARCHER_STATE_FILE", "TrialRecord", "load_records", "save_state", "load_state", "write_records"]

#: the driver state in each of Ray's experiment checkpoints (``<directory>/ray/runNNN/``)
SEARCHER_STATE_FILE = "searcher_state.pt"

Status = Literal["ok", "failed"]


@dataclass
class TrialRecord:
    """One finished trial.

    Attributes:
        trial_id: the driver's id (``"00007"``: the 8th architecture asked for), stable across resumes.
        arch: the architecture.
        metrics: what the trial reported last (accuracy, params, flops, latency, reward, ...).
        cost: the simulated cost charged (tabular trials) or the trial's wall time.
        status: ``"ok"`` or ``"failed"``.
        wall_time_s: seconds the trial ran.
        error: the error of a failed trial (``type: message``), empty otherwise.
    """

    trial_id: str
    arch: Arch
    metrics: dict[str, float] = field(default_factory=dict)
    cost: float = 0.0
    status: Status = "ok"
    wall_time_s: float = 0.0
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialRecord:
        status = str(data["status"])
        if status not in ("ok", "failed"):
            raise ValueError(f"trial record status must be 'ok' or 'failed', got {status!r}")
        return cls(
            trial_id=str(data["trial_id"]),
            arch=dict(data["arch"]),
            metrics={str(k): float(v) for k, v in data.get("metrics", {}).items()},
            cost=float(data.get("cost", 0.0)),
            status=status,  # type: ignore[arg-type]
            wall_time_s=float(data.get("wall_time_s", 0.0)),
            error=str(data.get("error", "")),
        )


def _json_value(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)


CSV_FIXED_COLUMNS = ("trial_id", "status", "cost", "wall_time_s", "arch", "error")
"""The columns of ``trials.csv`` that every record has; the metrics' columns sit between ``wall_time_s`` and
``arch``."""

TRIALS_FILE = "trials.jsonl"
"""The trial table a run writes in its directory (beside ``trials.csv``), and what a later search reads back."""


def write_records(records: Sequence[TrialRecord], directory: Path) -> None:
    """Write ``trials.jsonl`` and ``trials.csv`` in ``directory`` atomically (each replaced whole)."""
    lines = []
    for record in records:
        row = record.to_dict()
        row["metrics"] = {k: _json_value(v) for k, v in record.metrics.items()}
        lines.append(json.dumps(row, sort_keys=True))
    atomic_write_text(directory / TRIALS_FILE, "".join(line + "\n" for line in lines))
    metric_names = sorted({name for record in records for name in record.metrics})
    # a metric named like a fixed column (a trial's own wall_time_s or cost) gets its own column: metrics.<name>
    headers = [f"metrics.{name}" if name in CSV_FIXED_COLUMNS else name for name in metric_names]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["trial_id", "status", "cost", "wall_time_s", *headers, "arch", "error"])
    for record in records:
        writer.writerow(
            [record.trial_id, record.status, record.cost, record.wall_time_s]
            + [record.metrics.get(name, "") for name in metric_names]
            + [json.dumps(record.arch, sort_keys=True), record.error]
        )
    atomic_write_text(directory / "trials.csv", buffer.getvalue())


def load_records(path: Path) -> list[TrialRecord]:
    """Read a ``trials.jsonl`` file (JSON only)."""
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(TrialRecord.from_dict(json.loads(line)))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}: line {number} is not a trial record: {err}") from None
    return records


def save_state(state: Mapping[str, Any], path: Path) -> None:
    """``torch.save`` through a temporary file and a rename, so a killed driver never leaves half a state."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(dict(state), handle)
            handle.flush()
            os.fsync(handle.fileno())
        publish_file(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_state(path: Path) -> dict[str, Any]:
    """Load a state written by :func:`save_state` without executing code (the package's safe loader)."""
    state = load_checkpoint(path, mmap=False)
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a driver state (got {type(state).__name__})")
    return state
