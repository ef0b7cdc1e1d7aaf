"""Callbacks that record, draw, guard and export architectures, and recalibrate subnets' batch norm."""

from lightning_nas.callbacks._loggers import check_wandb_ready
from lightning_nas.callbacks._paths import run_dir, writes_run_files
from lightning_nas.callbacks.bn_recalibration import EvaluatesSubnets, RecalibrateBatchNorm
from lightning_nas.callbacks.checkpoint_io import AtomicCheckpointIO
from lightning_nas.callbacks.collapse import CollapseGuard, count_op
from lightning_nas.callbacks.export import ExportArchitecture, ExportsArchitecture
from lightning_nas.callbacks.genotype_logger import GenotypeLogger, arch_scalars
from lightning_nas.callbacks.interrupt import CheckpointOnInterrupt
from lightning_nas.callbacks.learning_curve import LearningCurveStopping
from lightning_nas.callbacks.tabular import TabularReport

__all__ = [
    "AtomicCheckpointIO",
    "CheckpointOnInterrupt",
    "CollapseGuard",
    "EvaluatesSubnets",
    "ExportArchitecture",
    "ExportsArchitecture",
    "GenotypeLogger",
    "LearningCurveStopping",
    "RecalibrateBatchNorm",
    "TabularReport",
    "arch_scalars",
    "check_wandb_ready",
    "count_op",
    "run_dir",
    "writes_run_files",
]
