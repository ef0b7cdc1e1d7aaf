"""What one trial does: a Lightning fit of one child (:class:`LightningTrial`) or a table lookup
(:class:`TabularTrial`). Both run inside a Ray worker and report through a ``report(metrics)`` callable.

A trial reports after every epoch: ``accuracy`` (the module's validation accuracy, e.g. ``val/acc``), ``epoch``,
``params``, ``flops`` and optionally ``latency_ms``, so Ray's early-stopping schedulers can stop it between epochs.
A trial that raises, or whose training loss goes non-finite, ends with one report ``{"failed": 1, "error": ...}``.
"""

from __future__ import annotations

import json
import math
import os
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import lightning.pytorch as pl
import torch
from typing_extensions import override

from lightning_nas.arch import Arch, Genotype
from lightning_nas.search.constraints import count_network_cost
from lightning_nas.search.latency import measure_network_latency
from lightning_nas.search.tabular import ArchFormat, TabularBenchmark

__all__ = ["LightningTrial", "ReportEpochs", "RetrainFactory", "TabularTrial", "TrialSpec", "run_trial"]

Report = Callable[[Mapping[str, Any]], None]


class TrialSpec(Protocol):
    """What :func:`run_trial` runs: ``run(arch, report)`` reports metrics one or more times."""

    def run(self, arch: Arch, report: Report) -> None: ...

    def describe(self) -> dict[str, Any]: ...


def run_trial(config: Mapping[str, Any], spec: TrialSpec) -> None:
    """The Ray Tune function trainable: decode the arch, run the spec, turn any exception into a failed report."""
    from ray import tune

    arch = json.loads(config["arch"])
    start = time.perf_counter()

    def report(metrics: Mapping[str, Any]) -> None:
        tune.report({**metrics, "wall_time_s": time.perf_counter() - start})

    try:
        spec.run(arch, report)
    except Exception as err:  # a failed trial is a result, never the end of the experiment
        last = traceback.extract_tb(err.__traceback__)[-1] if err.__traceback__ else None
        where = f" (at {Path(last.filename).name}:{last.lineno})" if last else ""
        report({"failed": 1.0, "error": f"{type(err).__name__}: {err}{where}"})


class ReportEpochs(pl.Callback):
    """Report the monitored validation accuracy after every validation epoch; fail on a non-finite loss.

    Args:
        report: called with ``{"accuracy": ..., "epoch": ..., **extra}``.
        monitor: the logged metric read as accuracy (``val/acc`` for :class:`~lightning_nas.methods.Retrain`).
        extra: constant metrics added to each report (params, FLOPs, latency).
    """

    def __init__(self, report: Report, monitor: str = "val/acc", extra: Mapping[str, float] | None = None) -> None:
        self.report, self.monitor, self.extra = report, monitor, dict(extra or {})

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, torch.Tensor) and not bool(torch.isfinite(loss).all()):
            raise FloatingPointError(
                f"non-finite training loss {loss.detach().flatten()[0].item()} at step {batch_idx}"
            )

    @override
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            raise KeyError(f"the trial's module logs no {self.monitor!r}; it logs {sorted(trainer.callback_metrics)}")
        self.report({"accuracy": float(value), "epoch": float(trainer.current_epoch + 1), **self.extra})


@dataclass
class RetrainFactory:
    """The default child factory: the space's exported network, trained from scratch.

    A DARTS-cell architecture trains with :class:`~lightning_nas.methods.Retrain`, an ENAS macro one with
    :class:`~lightning_nas.methods.RetrainMacro`.

    Args:
        options: keyword arguments of the module (``in_channels``, ``num_classes``, ``channels``, ``layers``, ...).
    """

    options: dict[str, Any] = field(default_factory=dict)

    def __call__(self, arch: Arch) -> pl.LightningModule:
        from lightning_nas.methods import Retrain, RetrainMacro

        if any(name.startswith("normal/") for name in arch):
            steps = len({name.split("/")[1] for name in arch if name.startswith("normal/node")})
            genotype = Genotype.from_arch(arch, steps)
            return Retrain(arch=json.dumps(genotype.to_json()), **self.options)
        if any(name.startswith("layer") for name in arch):
            return RetrainMacro(arch=json.dumps(arch), **self.options)
        raise ValueError(
            "RetrainFactory trains DARTS-cell architectures ('normal/node2/op0', ...) or ENAS macro ones "
            f"('layer0/op', ...); got choices {sorted(arch)[:4]}: pass your own factory for this space"
        )


def check_module(module: object, factory: object) -> pl.LightningModule:
    """``module`` if it is a LightningModule, else a ``TypeError`` naming its type and the factory."""
    if not isinstance(module, pl.LightningModule):
        raise TypeError(
            f"the trial factory {factory!r} must return a lightning.pytorch.LightningModule, "
            f"got {type(module).__module__}.{type(module).__qualname__}"
        )
    return module


@dataclass
class LightningTrial:
    """A trial that trains one child with Lightning and reports its validation accuracy every epoch.

    Args:
        datamodule: builds the datamodule (called in the worker; a class or a picklable callable).
        factory: ``arch -> LightningModule`` (default :class:`RetrainFactory`).
        max_epochs: epochs per child.
        max_steps: optional cap on optimizer steps (-1: none).
        monitor: the logged metric reported as ``accuracy``.
        input_shape: ``(channels, height, width)`` of one image, to count FLOPs and time latency.
        latency_repeats: forward passes timed for ``latency_ms`` (0: no latency).
        trainer_options: more :class:`lightning.pytorch.Trainer` arguments (``limit_train_batches``, ...).
    """

    datamodule: Callable[[], pl.LightningDataModule]
    factory: Callable[[Arch], Any] = field(default_factory=RetrainFactory)
    max_epochs: int = 1
    max_steps: int = -1
    monitor: str = "val/acc"
    input_shape: tuple[int, int, int] | None = None
    latency_repeats: int = 0
    trainer_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_epochs < 1:
            raise ValueError(f"max_epochs must be >= 1, got {self.max_epochs}")

    def build(self, arch: Arch) -> pl.LightningModule:
        """The child module of ``arch`` (raises ``TypeError`` if the factory returns something else)."""
        return check_module(self.factory(arch), self.factory)

    def costs(self, module: pl.LightningModule) -> dict[str, float]:
        """Parameters, FLOPs and (with ``latency_repeats``) latency of the child."""
        params = float(sum(p.numel() for p in module.parameters()))
        if self.input_shape is None:
            return {"params": params}
        cost = count_network_cost(module, self.input_shape)
        out = {"params": params, "flops": float(cost.flops)}
        if self.latency_repeats:
            out["latency_ms"] = measure_network_latency(module, (1, *self.input_shape), repeats=self.latency_repeats)
        return out

    def run(self, arch: Arch, report: Report) -> None:
        module = self.build(arch)
        options = {
            "max_epochs": self.max_epochs,
            "max_steps": self.max_steps,
            "accelerator": "auto",
            "devices": 1,
            "logger": False,
            "enable_checkpointing": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "num_sanity_val_steps": 0,
            **self.trainer_options,
        }
        callbacks = [ReportEpochs(report, self.monitor, self.costs(module)), *options.pop("callbacks", [])]
        trainer = pl.Trainer(callbacks=callbacks, **options)
        trainer.fit(module, datamodule=self.datamodule())

    def describe(self) -> dict[str, Any]:
        return {"kind": "lightning", "factory": repr(self.factory), "max_epochs": self.max_epochs}


@dataclass
class TabularTrial:
    """A trial that looks its architecture up in a tabular benchmark, charged a simulated training time.

    The cost model is :func:`~lightning_nas.search.run_budgeted_search`'s: ``cost_scale * table[cost_column]``.

    Args:
        path: the table file (CSV or JSON); each worker loads it once.
        arch_format: how the table spells architectures (e.g. ``NasBench201Format()``).
        cost_column: the column charged per trial (a training time).
        cost_scale: multiplies the cost column (``12 / 200`` charges the 12-epoch proxy from a 200-epoch time).
        columns: the columns a trial reports (``None``: every numeric column).

    The table is loaded once, in the driver, and travels to the workers with the trial (Ray's object store), so
    no worker parses the file again.
    """

    path: str
    arch_format: ArchFormat
    cost_column: str
    cost_scale: float = 1.0
    columns: Sequence[str] | None = None
    _table: TabularBenchmark | None = field(default=None, init=False, repr=False, compare=False)

    def table(self) -> TabularBenchmark:
        """The table (loaded on first use)."""
        if self._table is None:
            self._table = TabularBenchmark.load(self.path, self.arch_format)
        return self._table

    def cost_of(self, arch: Arch) -> float:
        """The simulated seconds charged for ``arch``."""
        return self.cost_scale * self.table().value(arch, self.cost_column)

    def run(self, arch: Arch, report: Report) -> None:
        row = self.table().query(arch)
        values = row if self.columns is None else {name: row[name] for name in self.columns}
        report({**{k: v for k, v in values.items() if math.isfinite(v)}, "cost": self.cost_of(arch)})

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "tabular",
            "path": os.path.abspath(self.path),
            "cost_column": self.cost_column,
            "cost_scale": self.cost_scale,
        }
