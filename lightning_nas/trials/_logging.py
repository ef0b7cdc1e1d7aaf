"""Finished trials to Lightning loggers (TensorBoard, W&B, CSV), as a fit logs its epochs.

The driver owns the loggers (the trials train with ``logger=False``): each finished trial is one step, ``step`` =
the number of trials finished so far (a resumed experiment continues the count), with

- ``trial/<name>`` for every number the trial reported (``accuracy``, ``params``, ``flops``, ``latency_ms``,
  ``reward``, ...), plus ``trial/ok`` (1 for a successful trial, 0 for a failed one), ``trial/wall_time_s``,
  ``trial/cost`` and ``trial/index`` (the trial id as a number);
- ``best/<metric>``: the best value of the strategy's metric so far, once a trial succeeded;

and the experiment's hyperparameters (strategy, metric, plan, resources, trial settings) once per session.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from lightning.pytorch.loggers import Logger, WandbLogger

from lightning_nas.search.base import Mode
from lightning_nas.trials._records import TrialRecord

__all__ = ["TrialLogging", "as_loggers", "trial_scalars"]


def as_loggers(loggers: Logger | Iterable[Logger] | None) -> list[Logger]:
    """``loggers`` as a list, each checked to be a Lightning ``Logger`` (a W&B one checked ready to start).

    Raises:
        TypeError: an entry is not a ``lightning.pytorch.loggers.Logger``.
        ModuleNotFoundError, RuntimeError: a W&B logger without the package or a login (see
            :func:`~lightning_nas.callbacks.check_wandb_ready`).
    """
    if loggers is None:
        return []
    items = [loggers] if isinstance(loggers, Logger) else list(loggers)
    for item in items:
        if not isinstance(item, Logger):
            raise TypeError(
                "loggers must be lightning.pytorch.loggers.Logger instances (TensorBoardLogger, WandbLogger, "
                f"CSVLogger, ...); got {type(item).__module__}.{type(item).__qualname__}"
            )
        if isinstance(item, WandbLogger):
            from lightning_nas.callbacks import check_wandb_ready

            check_wandb_ready(offline=bool(getattr(item, "_offline", False)))
    return items


def trial_scalars(record: TrialRecord) -> dict[str, float]:
    """The scalars logged for one finished trial (finite numbers only)."""
    scalars = {f"trial/{name}": value for name, value in record.metrics.items() if math.isfinite(value)}
    scalars.update(
        {
            "trial/ok": 1.0 if record.status == "ok" else 0.0,
            "trial/wall_time_s": float(record.wall_time_s),
            "trial/cost": float(record.cost),
            "trial/index": float(int(record.trial_id)) if record.trial_id.isdigit() else math.nan,
        }
    )
    return {k: v for k, v in scalars.items() if math.isfinite(v)}


def _flat(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{name}/"))
        elif value is None or isinstance(value, (bool, int, float, str)):
            out[name] = value
        else:
            out[name] = str(value)
    return out


class TrialLogging:
    """Send finished trials to ``loggers``.

    Args:
        loggers: Lightning loggers.
        metric: the strategy's metric (its best-so-far is logged as ``best/<metric>``).
        mode: ``"max"`` or ``"min"``.
        hyperparameters: the experiment's settings, logged once by :meth:`start` (nested mappings flattened to
            ``a/b`` names).
    """

    def __init__(self, loggers: Sequence[Logger], metric: str, mode: Mode, hyperparameters: Mapping[str, Any]) -> None:
        self.loggers = list(loggers)
        self.metric, self.mode = metric, mode
        self.hyperparameters = _flat(hyperparameters)
        self.best: float | None = None

    def start(self, records: Sequence[TrialRecord]) -> None:
        """Log the hyperparameters; ``records`` (trials finished in earlier sessions) set the best so far."""
        for record in records:
            self._update_best(record)
        for logger in self.loggers:
            logger.log_hyperparams(dict(self.hyperparameters))

    def log(self, record: TrialRecord, step: int) -> None:
        """Log one finished trial at ``step`` (the number of finished trials) and write it out."""
        self._update_best(record)
        scalars = trial_scalars(record)
        if self.best is not None:
            scalars[f"best/{self.metric}"] = self.best
        for logger in self.loggers:
            logger.log_metrics(scalars, step=step)
            logger.save()

    def finish(self, status: str) -> None:
        """Finalize every logger (``"success"`` or ``"failed"``)."""
        for logger in self.loggers:
            logger.finalize(status)

    def _update_best(self, record: TrialRecord) -> None:
        value = record.metrics.get(self.metric, math.nan)
        if record.status != "ok" or not math.isfinite(value):
            return
        if self.best is None or (value > self.best if self.mode == "max" else value < self.best):
            self.best = value
