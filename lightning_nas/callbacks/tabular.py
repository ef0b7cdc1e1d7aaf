"""Report a tabular benchmark's ground truth for the architecture a one-shot search holds.

The benchmark mode of NAS-Bench-201 (Dong & Yang, ICLR 2020, Sec. 5): a one-shot method searches on the
benchmark's space and, instead of retraining what it found, looks the architecture up in the table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from typing_extensions import override

from lightning_nas.data import default_root
from lightning_nas.search.tabular import ArchFormat, TabularBenchmark

__all__ = ["TabularReport"]


class TabularReport(pl.Callback):
    """Log the table's values for the method's current architecture each epoch, and print them at fit end.

    The architecture is the module's ``current_arch()`` (its ``export()`` if that is a choice mapping); the arch
    string comes from the space's ``arch_format`` (e.g. :class:`~lightning_nas.spaces.NasBench201Space`). Values
    are logged as ``tabular/<metric>``. They are the table's numbers, e.g. CIFAR-10 accuracies, whatever data the
    search itself runs on.

    Args:
        table_path: a CSV or JSON table (see :class:`~lightning_nas.search.TabularBenchmark`). A relative path
            that does not exist from the working directory is looked up under the data root
            (``$LIGHTNING_NAS_DATA``, else ``~/.cache/lightning_nas``).
        metrics: the table's columns to report.
        arch_column: the table's column of arch strings.

    Example:
        >>> report = TabularReport("nasbench201/nb201_12epoch.csv", metrics=["cifar10_test"])
        >>> report.metrics
        ('cifar10_test',)
    """

    def __init__(
        self,
        table_path: str = "nasbench201/nb201_12epoch.csv",
        metrics: Sequence[str] = ("cifar10_valid", "cifar10_test"),
        arch_column: str = "arch",
    ) -> None:
        if not metrics or isinstance(metrics, str):
            raise ValueError(f"metrics must be a non-empty list of column names, got {metrics!r}")
        self.table_path, self.metrics, self.arch_column = table_path, tuple(metrics), arch_column
        self.table: TabularBenchmark | None = None
        self.last_report: dict[str, float] = {}
        self.last_arch: str | None = None

    def resolve_path(self) -> Path:
        """The table file: ``table_path`` itself if it exists (or is absolute), else under the data root."""
        path = Path(self.table_path).expanduser()
        return path if path.is_absolute() or path.exists() else default_root() / path

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.table is None:
            self.table = TabularBenchmark.load(
                self.resolve_path(), _arch_format(pl_module), arch_column=self.arch_column
            )
        for metric in self.metrics:
            self.table.column(metric)  # a missing column fails now, listing the table's columns

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for metric, value in self._report(pl_module).items():
            pl_module.log(f"tabular/{metric}", value)

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        report = self._report(pl_module)
        if report and trainer.is_global_zero:
            scores = ", ".join(f"{metric} {value:.2f}" for metric, value in report.items())
            rank_zero_info(f"lightning-nas: {self.resolve_path().name} for {self.last_arch}: {scores}")

    def _report(self, pl_module: pl.LightningModule) -> dict[str, float]:
        if self.table is None:
            raise RuntimeError("TabularReport used before setup(); add it to the Trainer's callbacks")
        arch = _current_arch(pl_module)
        self.last_arch = self.table.arch_format.format(arch)
        try:
            values = self.table.query(arch)
        except KeyError as err:
            rank_zero_warn(f"TabularReport: {err.args[0]}")
            return {}
        self.last_report = {metric: values[metric] for metric in self.metrics}
        return self.last_report


def _arch_format(pl_module: pl.LightningModule) -> ArchFormat:
    space = getattr(pl_module, "space", None)
    arch_format = getattr(space, "arch_format", None)
    if arch_format is None:
        raise TypeError(
            f"TabularReport needs a module whose space has an arch_format (e.g. NasBench201Space); "
            f"{type(pl_module).__name__} has space {type(space).__name__}"
        )
    return arch_format


def _current_arch(pl_module: pl.LightningModule) -> Mapping[str, Any]:
    current = getattr(pl_module, "current_arch", None)
    if callable(current):
        return current()
    exported = getattr(pl_module, "export", None)
    result = exported() if callable(exported) else None
    if not isinstance(result, Mapping):
        raise TypeError(f"{type(pl_module).__name__} has neither current_arch() nor an export() of a choice mapping")
    return result
