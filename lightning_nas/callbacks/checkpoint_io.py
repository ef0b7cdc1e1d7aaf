"""Checkpoint files written whole or not at all, and read back as tensors and plain values only."""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from typing_extensions import override

from lightning_nas._safe_io import load_checkpoint
from lightning_nas.arch import publish_file

__all__ = ["AtomicCheckpointIO"]


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO`` with crash-safe local writes and safe reads.

    A local checkpoint is serialised exactly as Lightning does (``torch.save`` into memory, so the bytes are the
    same), written to a hidden temporary file ``.<name>.<random>.tmp`` beside the target, flushed to disk and renamed
    onto the target: a process killed at any moment leaves either the previous file or the new one, never half a
    file under a name a user reads. (Lightning's own write goes through a temporary file in the system's temporary
    folder, which is a copy, not a rename, when that folder is another file system.) Reads go through
    :func:`~lightning_nas._safe_io.load_checkpoint` (``weights_only=True``). Remote paths (``s3://`` ...) keep
    Lightning's behaviour. ``lightning-nas fit/validate/test`` install it unless the config names its own plugin.
    """

    @override
    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(buffer.getbuffer())
                handle.flush()
                os.fsync(handle.fileno())
            publish_file(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @override
    def load_checkpoint(
        self,
        path: Any,
        map_location: Callable[..., Any] | None = None,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        if "://" in str(path):
            return super().load_checkpoint(path, weights_only=True)
        checkpoint: dict[str, Any] = load_checkpoint(path, mmap=False)
        return checkpoint
