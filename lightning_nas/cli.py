"""The ``lightning-nas`` command: ``fit | validate | test`` through LightningCLI, plus ``export``.

Examples::

    lightning-nas fit --config configs/darts/digits.yaml
    lightning-nas export --ckpt_path runs/darts_digits/version_0/checkpoints/last.ckpt --output genotype.json
    lightning-nas fit --config configs/retrain/digits.yaml --model.arch=genotype.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from jsonargparse import Namespace
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger
from typing_extensions import override

import lightning_nas.data  # noqa: F401  (registers the datamodules for --data=ShortName)
import lightning_nas.methods  # noqa: F401  (registers the methods for --model=ShortName)
import lightning_nas.spaces  # noqa: F401
from lightning_nas.arch import Genotype, atomic_write_text
from lightning_nas.callbacks import ExportArchitecture, GenotypeLogger, check_wandb_ready, run_dir
from lightning_nas.methods.base import CHECKPOINT_KEY

__all__ = ["NASCLI", "SaveRunConfig", "main", "read_checkpoint_result"]

_EPILOG = (
    "other commands:\n"
    "  lightning-nas export --ckpt_path CKPT [--output FILE]   write the architecture a checkpoint found as JSON"
)


class NASCLI(LightningCLI):
    """LightningCLI in subclass mode: ``--model`` takes any LightningModule (ours or a user's), ``--data`` any
    datamodule.

    Every run gets an :class:`~lightning_nas.callbacks.ExportArchitecture` callback, configurable as
    ``--architecture.filename``, and a :class:`~lightning_nas.callbacks.GenotypeLogger`, configurable as
    ``--genotype_logger.*`` (e.g. ``--genotype_logger.pictures=false``); it records search methods only, so
    ``Retrain`` runs are unaffected. The config is saved in the run's own directory (see
    :class:`SaveRunConfig`). A W&B logger is checked before anything starts (see
    :func:`~lightning_nas.callbacks.check_wandb_ready`), so a missing package or login is an error, not a hang.
    """

    def __init__(self, args: Sequence[str] | None = None, run: bool = True) -> None:
        super().__init__(
            pl.LightningModule,
            pl.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=list(args) if args is not None else None,
            run=run,
            parser_kwargs={
                "description": "Neural architecture search with PyTorch Lightning.",
                "epilog": _EPILOG,
                "formatter_class": argparse.RawDescriptionHelpFormatter,
            },
            seed_everything_default=0,
            save_config_callback=SaveRunConfig,
        )

    @override
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ExportArchitecture, "architecture")
        parser.add_lightning_class_args(GenotypeLogger, "genotype_logger")

    @override
    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        for logger in _logger_configs(config.get("trainer.logger")):
            if _is_wandb(logger):
                try:
                    check_wandb_ready(offline=bool(logger.get("init_args.offline")))
                except (ImportError, RuntimeError) as err:
                    self.parser.error(str(err))


class SaveRunConfig(SaveConfigCallback):
    """LightningCLI's config saving, into the run's own directory (:func:`~lightning_nas.callbacks.run_dir`).

    That is ``trainer.log_dir`` for CSV and TensorBoard loggers, as in Lightning; for W&B, whose ``log_dir`` is the
    ``save_dir`` every run shares (so the second run of a sweep would refuse to overwrite the first's config), it is
    ``<save_dir>/<project>/<run id>``, beside the checkpoints.
    """

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.already_saved:
            return
        directory = run_dir(trainer)  # collective: every rank asks
        path = directory / self.config_filename
        exists = trainer.strategy.broadcast(path.is_file() if trainer.is_global_zero else False)
        if exists and not self.overwrite:
            raise RuntimeError(
                f"{path} exists; refusing to overwrite the config of a previous run: delete it, or pass a new "
                "--trainer.logger.init_args.version (or save_dir)"
            )
        if trainer.is_global_zero:
            directory.mkdir(parents=True, exist_ok=True)
            self.parser.save(self.config, path, skip_none=False, overwrite=self.overwrite, multifile=self.multifile)
            self.save_config(trainer, pl_module, stage)
            self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)


def _logger_configs(value: Any) -> list[Namespace]:
    """The class_path/init_args entries of a parsed ``trainer.logger`` value (one, a list, or a bool)."""
    values = value if isinstance(value, list) else [value]
    return [item for item in values if isinstance(item, Namespace) and "class_path" in item]


def _is_wandb(logger: Namespace) -> bool:
    module, _, name = str(logger["class_path"]).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return False
    return isinstance(cls, type) and issubclass(cls, WandbLogger)


def read_checkpoint_result(ckpt_path: str | Path) -> dict[str, Any]:
    """The ``lightning_nas`` entry of a checkpoint: ``{"method", "space", "result"}``.

    Raises:
        FileNotFoundError: no file at ``ckpt_path``.
        ValueError: the file is not a readable checkpoint, or was not written by a lightning_nas method.
    """
    path = Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise ValueError(f"{str(path)!r} is not a readable checkpoint ({type(err).__name__}: {err})") from None
    meta = checkpoint.get(CHECKPOINT_KEY) if isinstance(checkpoint, dict) else None
    if not isinstance(meta, dict) or "result" not in meta:
        raise ValueError(f"{str(path)!r} was not written by a lightning_nas method (no {CHECKPOINT_KEY!r} entry)")
    return meta


def export_main(argv: Sequence[str]) -> int:
    """``lightning-nas export``: write the architecture held by a checkpoint as JSON."""
    parser = argparse.ArgumentParser(
        prog="lightning-nas export", description="Write the architecture a search checkpoint holds as JSON."
    )
    parser.add_argument("--ckpt_path", required=True, help="checkpoint of a lightning_nas method")
    parser.add_argument("--output", help="JSON file to write (default: architecture.json beside the checkpoint)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    ns = parser.parse_args(list(argv))
    try:
        meta = read_checkpoint_result(ns.ckpt_path)
        output = Path(ns.output) if ns.output else Path(ns.ckpt_path).with_name("architecture.json")
        if output.exists() and not ns.overwrite:
            raise FileExistsError(f"{str(output)!r} exists; pass --overwrite to replace it or choose another --output")
        result = meta["result"]
        text = str(Genotype.from_json(result)) if "normal" in result else str(result)
        atomic_write_text(output, _json(result))
    except (OSError, ValueError) as err:
        parser.exit(2, f"lightning-nas export: error: {err}\n")
    print(f"{meta['method']} on {meta['space']}: {text}\nwritten to {output}")
    return 0


def _json(payload: dict[str, Any]) -> str:
    return json.dumps(payload, indent=2) + "\n"


def main(args: Sequence[str] | None = None) -> int:
    """Entry point of ``lightning-nas`` and ``python -m lightning_nas``."""
    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] == "export":
        return export_main(argv[1:])
    NASCLI(args=None if args is None else argv)
    return 0
