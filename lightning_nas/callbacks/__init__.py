"""Callbacks that record and export architectures, and recalibrate subnets' batch norm."""

from lightning_nas.callbacks.bn_recalibration import EvaluatesSubnets, RecalibrateBatchNorm
from lightning_nas.callbacks.export import ExportArchitecture, ExportsArchitecture

__all__ = ["EvaluatesSubnets", "ExportArchitecture", "ExportsArchitecture", "RecalibrateBatchNorm"]
