"""Where a run's files go."""

from __future__ import annotations

import os
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

__all__ = ["run_dir", "writes_run_files"]


def run_dir(trainer: pl.Trainer) -> Path:
    """The run's own directory; a collective under DDP (every rank must call it, as with ``trainer.log_dir``)."""
    log_dir = trainer.log_dir or trainer.default_root_dir  # broadcasts rank 0's value
    logger = trainer.loggers[0] if trainer.loggers else None
    if logger is None or isinstance(logger, (CSVLogger, TensorBoardLogger)) or logger.save_dir is None:
        return Path(log_dir)
    version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
    # Where ModelCheckpoint puts this run's checkpoints; the version (a W&B run id) is only known on rank 0.
    return Path(trainer.strategy.broadcast(os.path.join(logger.save_dir, str(logger.name), version)))


def writes_run_files(trainer: pl.Trainer) -> bool:
    """Whether the run writes its files (architecture, history, pictures, config, interrupt checkpoint): not under
    ``fast_dev_run``, a smoke test for which Lightning turns off its own loggers and checkpoints."""
    return not getattr(trainer, "fast_dev_run", False)  # set by the Trainer at run time, unknown to type checkers
