"""The ``lightning-nas`` command: ``fit | validate | test`` through LightningCLI, plus ``export``, ``search``, ``lut``,
``proxies``.

Examples::

    lightning-nas fit --config configs/darts/digits.yaml   # or: --config darts/digits (a shipped recipe)
    lightning-nas recipes                                  # list the shipped recipes
    lightning-nas export --ckpt_path runs/darts_digits/version_0/checkpoints/last.ckpt --output genotype.json
    lightning-nas fit --config configs/retrain/digits.yaml --model.arch=genotype.json
    lightning-nas export --ckpt_path runs/ofa_fashion_mnist/version_0/checkpoints/last.ckpt --subnet min \
        --output subnet.pt2 --onnx subnet.onnx
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from jsonargparse import Namespace
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException
from typing_extensions import override

import lightning_nas.data  # noqa: F401  (registers the datamodules for --data=ShortName)
import lightning_nas.methods  # noqa: F401  (registers the methods for --model=ShortName)
import lightning_nas.spaces  # noqa: F401
from lightning_nas._safe_io import load_checkpoint, resolve_named_class
from lightning_nas.arch import Genotype, atomic_write_text
from lightning_nas.callbacks import (
    AtomicCheckpointIO,
    CheckpointOnInterrupt,
    ExportArchitecture,
    GenotypeLogger,
    check_wandb_ready,
    run_dir,
    writes_run_files,
)
from lightning_nas.methods.base import CHECKPOINT_KEY, NASModule, check_batches, check_checkpoint_origin
from lightning_nas.recipes import RecipeNotFoundError, recipes_main, resolve_config_args

__all__ = ["NASCLI", "SaveRunConfig", "main", "read_checkpoint_result"]

SIGTERM_EXIT = 128 + signal.SIGTERM
"""The exit status of a run stopped by SIGTERM (a pre-emption): 143, what a shell reports for a process SIGTERM
ended, so that ``fit && export`` does not go on as if the run had finished."""

_EPILOG = (
    "other commands:\n"
    "  lightning-nas export --ckpt_path CKPT [--output FILE]   write the architecture a checkpoint found as JSON\n"
    "  lightning-nas export --ckpt_path CKPT --subnet max|min|ARCH.json [--onnx FILE]\n"
    "                                                         save an elastic subnet (BN recalibrated) for torch\n"
    "  lightning-nas search --config CFG --ckpt_path CKPT      search a trained supernet (best arch / Pareto front)\n"
    "  lightning-nas lut --config CFG --output FILE            build a latency lookup table on this device\n"
    "  lightning-nas trials --config RECIPE [--resume]         multi-trial search on Ray Tune (trained children)\n"
    "  lightning-nas proxies --config CFG --num_archs N --out scores.csv [--table TABLE]\n"
    "                                                         zero-cost proxy scores of sampled architectures\n"
    "  lightning-nas recipes [NAME]                            list the shipped recipes, or print one\n"
    "--config takes a file or a shipped recipe's name (darts/digits)"
)


class NASCLI(LightningCLI):
    """LightningCLI in subclass mode: ``--model`` takes any LightningModule (ours or a user's), ``--data`` any
    datamodule.

    Every run gets an :class:`~lightning_nas.callbacks.ExportArchitecture` callback (``--architecture.*``), a
    :class:`~lightning_nas.callbacks.CheckpointOnInterrupt` callback (``--interrupt_checkpoint.*``) and a
    :class:`~lightning_nas.callbacks.GenotypeLogger` (``--genotype_logger.*``, e.g.
    ``--genotype_logger.pictures=false``; it records search methods only, so ``Retrain`` runs are unaffected).
    A ``--ckpt_path`` that is missing, unreadable, from another method or space, or holding objects beyond tensors
    and plain values (see :mod:`lightning_nas._safe_io`) is refused before anything runs; the Trainer's own loads
    (``--ckpt_path last``) use ``weights_only=True`` too, and checkpoints are written atomically
    (:class:`~lightning_nas.callbacks.AtomicCheckpointIO`). A method given the wrong kind of batches (its
    ``BATCHES`` against ``--data.search``) is refused before fitting, naming the flag to change.
    The config is saved in the run's own directory (see :class:`SaveRunConfig`). A W&B logger is checked before
    anything starts (see :func:`~lightning_nas.callbacks.check_wandb_ready`), so a missing package or login is an
    error, not a hang.
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
        parser.add_lightning_class_args(CheckpointOnInterrupt, "interrupt_checkpoint")
        parser.add_lightning_class_args(GenotypeLogger, "genotype_logger")

    @override
    def instantiate_classes(self) -> None:
        # jsonargparse wraps a constructor's error (an unknown op, a missing arch file) in a Union message after two
        # tracebacks: the constructor's own message, naming the value and the valid ones, is what the user needs
        try:
            super().instantiate_classes()
        except (ValueError, TypeError, OSError, ImportError) as err:
            cause: BaseException = err
            while cause.__cause__ is not None:
                cause = cause.__cause__
            subcommand = self.config.get("subcommand")
            command = f"lightning-nas {subcommand}" if subcommand else "lightning-nas"
            self.parser.exit(2, f"{command}: error: {type(cause).__name__}: {cause}\n")

    @override
    def _parse_ckpt_path(self) -> None:
        # LightningCLI reads the checkpoint's hyperparameters into the config before anything is built: check the
        # file and its method first, so a broken or foreign checkpoint gets one clear line instead of a traceback.
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path is not None and ckpt_path not in ("last", "best", "hpc", "registry"):
            try:
                meta = read_checkpoint_result(ckpt_path)
                _check_class_paths(load_checkpoint(ckpt_path).get("hyper_parameters"), ckpt_path)
            except (OSError, ValueError) as err:
                self.parser.error(f"--ckpt_path: {err}")
            model = self.config[subcommand].get("model")
            class_path = getattr(model, "class_path", None) or (model or {}).get("class_path", "")
            method = str(class_path).rsplit(".", 1)[-1]
            if method and meta.get("method") != method:
                self.parser.error(
                    f"--ckpt_path: {ckpt_path!r} is from method {meta.get('method')!r} (space {meta.get('space')!r}); "
                    f"this run uses method {method!r}: load it with the same method and space"
                )
        super()._parse_ckpt_path()

    def before_fit(self) -> None:
        self._check_ckpt_path()
        if self.datamodule is not None and isinstance(getattr(self.datamodule, "search", None), bool):
            try:
                check_batches(self.model, bilevel=self.datamodule.search)
            except TypeError as err:
                self.parser.error(str(err))

    @override
    def _prepare_subcommand_kwargs(self, subcommand: str) -> dict[str, Any]:
        # the Trainer loads --ckpt_path (and "last"/"best") itself: tensors and plain values only, whatever torch's
        # default or the environment says
        kwargs = super()._prepare_subcommand_kwargs(subcommand)
        if "weights_only" in self._subcommand_method_arguments.get(subcommand, ()):
            if kwargs.get("weights_only") is False:
                self.parser.error("--weights_only=false is refused: checkpoints load tensors and plain values only")
            kwargs["weights_only"] = True
        return kwargs

    def before_validate(self) -> None:
        self._check_ckpt_path()

    def before_test(self) -> None:
        self._check_ckpt_path()

    def _check_ckpt_path(self) -> None:
        """Refuse a missing, truncated or foreign ``--ckpt_path`` before anything runs, with a one-line message."""
        ckpt_path = self.config[self.subcommand].get("ckpt_path")
        if ckpt_path is None or ckpt_path in ("last", "best", "hpc", "registry"):
            return
        try:
            meta = read_checkpoint_result(ckpt_path)
            if isinstance(self.model, NASModule):
                check_checkpoint_origin(
                    {CHECKPOINT_KEY: meta}, method=type(self.model).__name__, space=type(self.model.space).__name__
                )
        except (OSError, ValueError) as err:
            self.parser.error(f"--ckpt_path: {err}")

    @override
    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        # checkpoints are written whole (temporary file + rename) and read with weights_only=True; a plugin the
        # config names is kept
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer

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
        if self.already_saved or not writes_run_files(trainer):
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
        UnsafeFileError: the file holds objects beyond tensors and plain values (refused, never loaded).
        ValueError: the file is not a readable checkpoint, or was not written by a lightning_nas method.
    """
    path = Path(ckpt_path)
    # memory-mapped: only the small metadata entry is read, whatever the checkpoint's size
    checkpoint = load_checkpoint(path)
    meta = checkpoint.get(CHECKPOINT_KEY) if isinstance(checkpoint, dict) else None
    if not isinstance(meta, dict) or "result" not in meta:
        raise ValueError(f"{str(path)!r} was not written by a lightning_nas method (no {CHECKPOINT_KEY!r} entry)")
    return meta


def _check_class_paths(value: Any, source: str | os.PathLike[str]) -> None:
    """Refuse a checkpoint whose hyperparameters name a class outside lightning_nas and the modules already imported
    (LightningCLI would import it while merging them into the config)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("class_path", "_class_path") and isinstance(item, str) and "." in item:
                resolve_named_class(item, source)
            else:
                _check_class_paths(item, source)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_class_paths(item, source)


def export_main(argv: Sequence[str]) -> int:
    """``lightning-nas export``: write the architecture held by a checkpoint as JSON, or (``--subnet``) save an
    elastic supernet's subnet as a standalone network."""
    parser = argparse.ArgumentParser(
        prog="lightning-nas export", description="Write the architecture a search checkpoint holds as JSON."
    )
    parser.add_argument("--ckpt_path", required=True, help="checkpoint of a lightning_nas method")
    parser.add_argument(
        "--output", help="file to write (default: architecture.json / subnet.pt2 beside the checkpoint)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    subnet = parser.add_argument_group("elastic subnets (OnceForAll checkpoints)")
    subnet.add_argument("--subnet", help="max, min, or a subnet as a JSON file or JSON text: save it as a network")
    subnet.add_argument(
        "--config",
        help="fit config whose data section gives calibration images (default: the "
        "run's config.yaml beside the checkpoints folder)",
    )
    subnet.add_argument("--calibration_images", type=int, default=2000, help="images for BN recalibration (2000)")
    subnet.add_argument("--calibration_batch_size", type=int, default=200, help="images per batch (200)")
    subnet.add_argument("--no_recalibrate", action="store_true", help="keep the supernet's BN statistics")
    subnet.add_argument("--onnx", help="also export the subnet to this ONNX file (needs lightning-nas[onnx])")
    subnet.add_argument(
        "--input_size",
        type=int,
        help="side of the images the saved network takes, and the only one (a static graph; default: the "
        "subnet's resolution); when it differs from the resolution, the network resizes inside",
    )
    ns = parser.parse_args(list(argv))
    if ns.subnet is not None:
        return _export_subnet(ns, parser)
    try:
        meta = read_checkpoint_result(ns.ckpt_path)
        output = Path(ns.output) if ns.output else Path(ns.ckpt_path).with_name("architecture.json")
        _check_free(output, ns.overwrite)
        result = meta["result"]
        text = str(Genotype.from_json(result)) if "normal" in result else str(result)
        atomic_write_text(output, _json(result))
    except (OSError, ValueError) as err:
        parser.exit(2, f"lightning-nas export: error: {err}\n")
    print(f"{meta['method']} on {meta['space']}: {text}\nwritten to {output}")
    return 0


def _export_subnet(ns: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from lightning_nas.subnet_export import (
        calibration_data,
        export_subnet,
        load_elastic_checkpoint,
        require_onnx,
        resolve_subnet,
        save_onnx,
        save_subnet,
    )

    try:
        if ns.onnx:
            require_onnx()  # before anything is written: the .pt2 would otherwise block the rerun (--overwrite)
        meta = read_checkpoint_result(ns.ckpt_path)
        output = Path(ns.output) if ns.output else Path(ns.ckpt_path).with_name("subnet.pt2")
        for path in (output, *([Path(ns.onnx)] if ns.onnx else [])):
            _check_free(path, ns.overwrite)
        space, meta = load_elastic_checkpoint(ns.ckpt_path)
        arch = resolve_subnet(ns.subnet, space, meta.get("limits"))
        batches = None
        if not ns.no_recalibrate:
            config = Path(ns.config) if ns.config else Path(ns.ckpt_path).resolve().parent.parent / "config.yaml"
            if not config.is_file():
                raise FileNotFoundError(
                    f"no fit config at {str(config)!r} to take calibration images from; pass --config or "
                    "--no_recalibrate"
                )
            batches = calibration_data(config, ns.calibration_images, ns.calibration_batch_size)
        network = export_subnet(space, arch, batches)
        side = ns.input_size or int(arch.get("resolution", 32))
        example = torch.zeros(2, space.in_channels, side, side)
        save_subnet(network, arch, example, output)
        if ns.onnx:
            save_onnx(network, example, ns.onnx)
    except (OSError, ValueError, ImportError) as err:
        parser.exit(2, f"lightning-nas export: error: {err}\n")
    recalibrated = "BN recalibrated on" + f" {ns.calibration_images} images" if batches else "BN not recalibrated"
    print(
        f"{meta['method']} subnet ({space.count_params(arch):,} parameters, {space.count_flops(arch):,} MACs, "
        f"{recalibrated}): {arch}\nwritten to {output}" + (f" and {ns.onnx}" if ns.onnx else "")
    )
    return 0


def _check_free(output: Path, overwrite: bool) -> None:
    if output.exists() and not overwrite:
        raise FileExistsError(f"{str(output)!r} exists; pass --overwrite to replace it or choose another --output")


def _json(payload: dict[str, Any]) -> str:
    return json.dumps(payload, indent=2) + "\n"


def main(args: Sequence[str] | None = None) -> int:
    """Entry point of ``lightning-nas`` and ``python -m lightning_nas``."""
    argv = list(sys.argv[1:] if args is None else args)
    # Lightning 2.5-2.6 constructs torch's LeafSpec, which torch 2.13 deprecates with a FutureWarning printed on
    # every fit: nothing a user of this command can act on, so the command leaves it out (the library does not).
    warnings.filterwarnings(
        "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning
    )
    if argv and argv[0] == "recipes":
        return recipes_main(argv[1:])
    try:
        argv = resolve_config_args(argv)  # a recipe name (darts/digits) -> the shipped file
    except RecipeNotFoundError as err:
        print(f"lightning-nas: error: --config: {err}", file=sys.stderr)
        return 2
    if argv and argv[0] == "export":
        return export_main(argv[1:])
    if argv and argv[0] == "trials":
        from lightning_nas.trials._cli import trials_main

        return trials_main(argv[1:])
    if argv and argv[0] == "proxies":
        from lightning_nas._proxies_cli import proxies_main

        return proxies_main(argv[1:])
    if argv and argv[0] in ("search", "lut"):
        from lightning_nas._search_cli import lut_main, search_main

        return (search_main if argv[0] == "search" else lut_main)(argv[1:])
    if args is None:
        sys.argv[1:] = argv  # LightningCLI reads the command line itself (and warns when given both)
    try:
        NASCLI(args=None if args is None else argv)
    except SIGTERMException:  # a SystemExit without a code: the process would exit 0, as if the run had finished
        print("lightning-nas: stopped by SIGTERM (the checkpoint to resume from is named above)", file=sys.stderr)
        return SIGTERM_EXIT
    except MisconfigurationException as err:  # Lightning refuses the run as set up (`test` without a test_step)
        subcommand = next((a for a in argv if a in ("fit", "validate", "test", "predict")), "run")
        print(f"lightning-nas {subcommand}: error: {err}", file=sys.stderr)
        return 2
    return 0
