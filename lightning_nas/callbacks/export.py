"""Write the method's architecture next to the run's logs, each epoch and at the end of fit."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override

from lightning_nas.arch import Arch, Genotype, save_arch
from lightning_nas.callbacks._paths import run_dir, writes_run_files

__all__ = ["ExportArchitecture", "ExportsArchitecture"]


@runtime_checkable
class ExportsArchitecture(Protocol):
    """A module that can say which architecture it holds (every lightning_nas method, and ``Retrain``)."""

    def export(self) -> Arch | Genotype: ...


class ExportArchitecture(pl.Callback):
    """Save ``pl_module.export()`` as JSON in the run's directory (atomically), and report it at fit end.

    The run's directory is :func:`~lightning_nas.callbacks.run_dir`: the logger's ``log_dir`` for CSV and
    TensorBoard, ``<save_dir>/<name>/<version>`` for W&B (whose ``log_dir`` every run shares).

    Args:
        filename: file name inside the trainer's ``log_dir``.
    """

    def __init__(self, filename: str = "architecture.json") -> None:
        if not filename or Path(filename).name != filename:
            raise ValueError(f"filename must be a plain file name, got {filename!r}")
        self.filename = filename
        self.last_path: Path | None = None

    def path(self, trainer: pl.Trainer) -> Path:
        """Where the architecture goes: ``<run dir>/<filename>``. Call it on every rank (it is a collective)."""
        return Path(_log_dir(trainer)) / self.filename

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write(trainer, pl_module)

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        result = self._write(trainer, pl_module)
        log_dir = _log_dir(trainer)
        if result is None or not trainer.is_global_zero:
            return
        kind = "genotype" if isinstance(result, Genotype) else "architecture"
        lines = [f"lightning-nas: {type(pl_module).__name__} {kind}:", f"  {result}"]
        scores = {name: float(value) for name, value in trainer.callback_metrics.items() if name.startswith("val/")}
        if scores:
            lines.append("  " + ", ".join(f"{name} {value:.4f}" for name, value in sorted(scores.items())))
        lines.append(f"  architecture written to {self.last_path}")
        checkpoint = trainer.checkpoint_callback
        best = getattr(checkpoint, "best_model_path", "") or getattr(checkpoint, "last_model_path", "")
        if best:
            lines.append(f"  checkpoint: {best}")
        lines.append(f"  logs: {log_dir}")
        rank_zero_info("\n".join(lines))

    def _write(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Arch | Genotype | None:
        if not isinstance(pl_module, ExportsArchitecture) or trainer.sanity_checking or not writes_run_files(trainer):
            return None
        result = pl_module.export()
        path = self.path(trainer)
        if trainer.is_global_zero:
            self.last_path = save_arch(result, path)
        return result


def _log_dir(trainer: pl.Trainer) -> str:
    # A collective (it broadcasts rank 0's value), so every rank must ask for it.
    return str(run_dir(trainer))
