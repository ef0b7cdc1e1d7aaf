"""Callbacks that record and export architectures, and recalibrate subnets' batch norm."""

from lightning_nas.callbacks.bn_recalibration import EvaluatesSubnets, RecalibrateBatchNorm
from lightning_nas.callbacks.export import ExportArchitecture, ExportsArchitecture
from lightning_nas.callbacks.interrupt import CheckpointOnInterrupt
from lightning_nas.callbacks.tabular import TabularReport

__all__ = [
    "CheckpointOnInterrupt",
    "EvaluatesSubnets",
    "ExportArchitecture",
    "ExportsArchitecture",
    "RecalibrateBatchNorm",
    "TabularReport",
]
