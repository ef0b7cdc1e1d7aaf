"""What the architecture callbacks send to the attached loggers: scalars to all, text and images to TensorBoard and
W&B, tables and artifacts to W&B. Callers run these on global rank 0 only."""

from __future__ import annotations

import netrc
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lightning.pytorch.loggers import Logger, TensorBoardLogger, WandbLogger

from lightning_nas.callbacks.pictures import read_png

__all__ = ["check_wandb_ready", "log_artifacts", "log_image", "log_scalars", "log_table", "log_text"]

_OFFLINE_MODES = ("offline", "dryrun", "disabled")


def check_wandb_ready(*, offline: bool = False) -> None:
    """Fail fast, with what to do, where starting a W&B run would fail or wait for a login prompt.

    W&B is ready when the ``wandb`` package imports and either the run is offline (``offline=True``, or
    ``WANDB_MODE`` is ``offline``/``dryrun``/``disabled``), or credentials exist (``WANDB_API_KEY``,
    ``WANDB_IDENTITY_TOKEN_FILE``, or a ``.netrc`` entry for the W&B host, which ``wandb login`` writes).

    Args:
        offline: the logger was built with ``offline=True``.

    Raises:
        ModuleNotFoundError: ``wandb`` is not installed.
        RuntimeError: W&B would go online without credentials, i.e. prompt for a login or fail.
    """
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise ModuleNotFoundError(
            "the W&B logger (WandbLogger) needs the wandb package, which is not installed: "
            "pip install 'lightning-nas[wandb]', or choose another --trainer.logger (e.g. CSVLogger)"
        ) from None
    mode = os.environ.get("WANDB_MODE", "").strip().lower()
    if offline or mode in _OFFLINE_MODES:
        return
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE") or _netrc_login():
        return
    shown = f"WANDB_MODE={mode!r}" if mode else "WANDB_MODE is not set"
    raise RuntimeError(
        f"the W&B logger would go online, but {shown} and no W&B login was found (no WANDB_API_KEY, no .netrc entry "
        f"for {_wandb_host()}): set WANDB_MODE=offline to log locally without an account (sync later with "
        "`wandb sync`), or log in first with `wandb login` or WANDB_API_KEY"
    )


def _wandb_host() -> str:
    return urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"


def _netrc_login() -> bool:
    configured = os.environ.get("NETRC")
    candidates = [Path(configured)] if configured else [Path.home() / ".netrc", Path.home() / "_netrc"]
    for path in candidates:
        if path.is_file():
            try:
                return netrc.netrc(os.fspath(path)).authenticators(_wandb_host()) is not None
            except (netrc.NetrcParseError, OSError):
                return False
    return False


def log_scalars(loggers: Sequence[Logger], scalars: dict[str, float], step: int) -> None:
    """Scalars to every logger."""
    if scalars:
        for logger in loggers:
            logger.log_metrics(scalars, step=step)


def log_text(loggers: Sequence[Logger], key: str, text: str, step: int) -> None:
    """Text to TensorBoard (W&B gets the architecture table instead; CSV runs have the JSON-lines history)."""
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_text(key, text, global_step=step)


def log_image(loggers: Sequence[Logger], key: str, path: Path, step: int) -> None:
    """A PNG to TensorBoard and W&B."""
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, read_png(path), global_step=step, dataformats="HWC")
        elif isinstance(logger, WandbLogger):
            logger.log_image(key, [os.fspath(path)], step=step)


def log_table(loggers: Sequence[Logger], key: str, columns: list[str], rows: list[list[Any]], step: int) -> None:
    """A ``wandb.Table`` to W&B."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.log_table(key, columns=columns, data=rows, step=step)


def log_artifacts(loggers: Sequence[Logger], name: str, kind: str, files: Sequence[Path]) -> None:
    """Files as one W&B artifact ``{name}-{run id}`` of type ``kind``."""
    existing = [path for path in files if path.is_file()]
    if not existing:
        return
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            import wandb

            run = logger.experiment
            artifact = wandb.Artifact(f"{name}-{run.id}", type=kind)
            for path in existing:
                artifact.add_file(os.fspath(path), name=path.name)
            run.log_artifact(artifact)
