"""A JSON-lines file that only ever holds whole lines."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lightning_nas.arch import atomic_write_text

__all__ = ["JsonLines"]


class JsonLines:
    """Append-only JSON lines with crash safety: each record is one ``os.write`` of a whole line on an ``O_APPEND``
    descriptor followed by ``fsync``, and :meth:`rewrite` replaces the whole file atomically (temporary file and
    rename), so a reader never sees half a line.

    Example:
        >>> import tempfile
        >>> history = JsonLines(Path(tempfile.mkdtemp()) / "history.jsonl")
        >>> history.append_line(JsonLines.encode({"epoch": 0})); history.append_line(JsonLines.encode({"epoch": 1}))
        >>> history.rewrite([JsonLines.encode({"epoch": 0})])
        >>> history.read()
        [{'epoch': 0}]
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @staticmethod
    def encode(record: dict[str, Any]) -> str:
        """``record`` as one JSON line ending in a newline (non-finite floats become ``null``)."""
        return json.dumps(_finite(record), allow_nan=False, separators=(",", ":")) + "\n"

    def append_line(self, line: str) -> None:
        """Append one line from :meth:`encode` in a single write."""
        if not line.endswith("\n") or "\n" in line[:-1]:
            raise ValueError(f"expected exactly one line ending in a newline, got {line[:80]!r}")
        data = line.encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, data)
            if written != len(data):  # a full disk: cut the torn line so the file stays whole lines
                os.ftruncate(fd, os.fstat(fd).st_size - written)
                raise OSError(f"could not append a whole line to {str(self.path)!r} ({written} of {len(data)} bytes)")
            os.fsync(fd)
        finally:
            os.close(fd)

    def rewrite(self, lines: list[str]) -> None:
        """Replace the file's content with ``lines`` atomically; no lines and no file leaves no file."""
        if lines or self.path.exists():
            atomic_write_text(self.path, "".join(lines))

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
