"""A JSON-lines file that only ever holds whole lines, and can be cut back to a known number of them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["JsonLines"]


class JsonLines:
    """Append-only JSON lines with crash safety: each record is one ``os.write`` of a whole line on an ``O_APPEND``
    descriptor followed by ``fsync``, and :meth:`truncate` drops anything past a given number of complete lines
    (a torn last line included).

    Example:
        >>> import tempfile
        >>> history = JsonLines(Path(tempfile.mkdtemp()) / "history.jsonl")
        >>> history.append({"epoch": 0}); history.append({"epoch": 1})
        >>> history.truncate(1)
        >>> history.read()
        [{'epoch': 0}]
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def append(self, record: dict[str, Any]) -> None:
        """Write ``record`` as one line (keys and values must be JSON; non-finite floats become ``null``)."""
        line = (json.dumps(_finite(record), allow_nan=False, separators=(",", ":")) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, line)
            if written != len(line):  # a full disk: cut the torn line so the file stays whole lines
                os.ftruncate(fd, os.fstat(fd).st_size - written)
                raise OSError(f"could not append a whole line to {str(self.path)!r} ({written} of {len(line)} bytes)")
            os.fsync(fd)
        finally:
            os.close(fd)

    def truncate(self, lines: int) -> None:
        """Keep the first ``lines`` complete lines and drop the rest (no file and ``lines == 0`` is fine)."""
        if lines < 0:
            raise ValueError(f"lines must be >= 0, got {lines}")
        if not self.path.exists():
            if lines:
                raise FileNotFoundError(f"{str(self.path)!r} should hold {lines} lines but does not exist")
            return
        data = self.path.read_bytes()
        end = 0
        for _ in range(lines):
            newline = data.find(b"\n", end)
            if newline < 0:
                raise ValueError(
                    f"{str(self.path)!r} holds fewer than the {lines} lines the checkpoint recorded; "
                    "was it edited or replaced since?"
                )
            end = newline + 1
        if end != len(data):
            with open(self.path, "r+b") as handle:
                handle.truncate(end)
                handle.flush()
                os.fsync(handle.fileno())

    def read(self) -> list[dict[str, Any]]:
        """Every complete line, parsed; ``[]`` if there is no file."""
        if not self.path.exists():
            return []
        text = self.path.read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value
