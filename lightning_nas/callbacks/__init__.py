"""Callbacks that record and export architectures."""

from lightning_nas.callbacks.export import ExportArchitecture, ExportsArchitecture
from lightning_nas.callbacks.interrupt import CheckpointOnInterrupt
from lightning_nas.callbacks.tabular import TabularReport

__all__ = ["CheckpointOnInterrupt", "ExportArchitecture", "ExportsArchitecture", "TabularReport"]
