"""Callbacks that record, draw, guard and export architectures during a search."""

from lightning_nas.callbacks._loggers import check_wandb_ready
from lightning_nas.callbacks._paths import run_dir
from lightning_nas.callbacks.collapse import CollapseGuard, count_op
from lightning_nas.callbacks.export import ExportArchitecture, ExportsArchitecture
from lightning_nas.callbacks.genotype_logger import GenotypeLogger, arch_scalars

__all__ = [
    "CollapseGuard",
    "ExportArchitecture",
    "ExportsArchitecture",
    "GenotypeLogger",
    "arch_scalars",
    "check_wandb_ready",
    "count_op",
    "run_dir",
]
