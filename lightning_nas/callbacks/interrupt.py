"""Save a checkpoint when a run dies: Ctrl-C, SIGTERM (a cluster's pre-emption), or an error such as a NaN loss."""

from __future__ import annotations

import os
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_warn
from typing_extensions import override

from lightning_nas.callbacks._paths import writes_run_files

__all__ = ["CheckpointOnInterrupt"]


class CheckpointOnInterrupt(pl.Callback):
    """On any exception during fit, write ``<log_dir>/checkpoints/<filename>`` atomically, then let it propagate.

    The file is written beside a temporary name and renamed into place, so an existing checkpoint of that name is
    replaced only by a complete one; other checkpoints (``last.ckpt``, the best ones) are never touched. Lightning
    turns SIGTERM into an exception at the next batch boundary, so a pre-empted run resumes exactly from this file.

    Args:
        filename: checkpoint file name.
    """

    def __init__(self, filename: str = "interrupted.ckpt") -> None:
        if not filename or Path(filename).name != filename:
            raise ValueError(f"filename must be a plain file name, got {filename!r}")
        self.filename = filename
        self.dirpath: Path | None = None
        self.last_path: Path | None = None

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # log_dir is a collective under DDP: every rank asks for it here, where every rank runs
        self.dirpath = Path(trainer.log_dir or trainer.default_root_dir) / "checkpoints"
        if not writes_run_files(trainer):
            self.dirpath = None

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if self.dirpath is None or not trainer.training and trainer.state.fn != "fit":
            return
        path = self.dirpath / self.filename
        partial = path.with_name(f".{path.name}.partial")
        try:
            trainer.save_checkpoint(partial)
        except Exception as err:  # never hide the original exception behind a failed save
            rank_zero_warn(f"could not save a checkpoint after {type(exception).__name__}: {err}")
            return
        if trainer.is_global_zero:
            os.replace(partial, path)
            self.last_path = path
            broken = _non_finite_tensors(pl_module)
            if broken:  # a diverged run: resuming from these weights diverges again at once
                rank_zero_warn(
                    f"{type(exception).__name__} during fit: saved {path} for inspection, but {len(broken)} of its "
                    f"tensors are not finite (e.g. {broken[0]}), so do not resume from it; resume from the last "
                    f"checkpoint before the divergence (last.ckpt in {self.dirpath}) with a lower learning rate, "
                    "or skip non-finite updates (--model.nan_policy=skip)"
                )
                return
            rank_zero_warn(f"{type(exception).__name__} during fit: saved {path}; resume with --ckpt_path={path}")


def _non_finite_tensors(module: pl.LightningModule) -> list[str]:
    """The names of the module's floating-point parameters and buffers holding a NaN or an infinity."""
    named = [*module.named_parameters(), *module.named_buffers()]
    return [name for name, tensor in named if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]
