"""Callbacks that record and export architectures."""

from lightning_nas.callbacks.export import ExportArchitecture, ExportsArchitecture

__all__ = ["ExportArchitecture", "ExportsArchitecture"]
