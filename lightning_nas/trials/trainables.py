"""What one trial does: a Lightning fit of one child (:class:`LightningTrial`) or a table lookup
(:class:`TabularTrial`). Both run inside a Ray worker and report through a ``report(metrics)`` callable.

A trial reports after every epoch: ``accuracy`` (the module's validation accuracy, e.g. ``val/acc``), ``epoch``,
``params``, ``flops`` and optionally ``latency_ms``, so Ray's early-stopping schedulers can stop it between epochs.
A trial that raises, or whose training loss goes non-finite, ends with one report ``{"failed": 1, "error": ...}``.

Learning-curve early stopping (``LightningTrial(early_stop={...})``): the driver puts the best final accuracy of the
trials that ran all their epochs (``best_so_far``) and their curves (``finished_curves``, JSON) into each new
trial's config; the trial predicts its own final accuracy after every epoch
(:class:`~lightning_nas.callbacks.LearningCurveStopping`: the curve fit, or the regression calibrated on the
finished curves once there are ``min_finished`` of them) and stops once it is unlikely to beat the best. Such a
trial reports its whole curve so far (``accuracy_epoch_1``, ``accuracy_epoch_2``, ...) with every epoch, so the
record of a finished trial holds its curve; its last report carries ``stopped_early: 1`` if it stopped early, and
``epoch`` is the number of epochs it ran. With ``early_stop={"extra": ["train_loss"]}`` the regression also reads
each epoch's mean training loss: the trial reports it (``train_loss_epoch_1``, ...) and the driver passes the
finished trials' series (``finished_extra``, JSON) beside their curves. With ``early_stop={"features": [...]}`` it
also reads static features of each trial (Baker et al.'s hyperparameter and architecture features): numeric
choices of the trial's architecture (``"lr"``) or its costs (``"params"``, ``"flops"``, ``"latency_ms"``), each
optionally as ``"log10(name)"``; the trial reports its row (``feature_log10(lr)``, ...) and the driver passes the
finished trials' rows (``finished_features``, JSON). With ``early_stop={"prior": [...]}`` the regression is also
calibrated on the finished trials of earlier searches of the same recipe (their directories or ``trials.jsonl``
files; Baker et al. calibrate on the models trained before): those runs come first in ``finished_curves``, so the
regression can stop trials from this search's first finished one on, while ``best_so_far`` stays this search's own.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import re
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
from lightning_nas.callbacks.learning_curve import LearningCurveStopping
from lightning_nas.sampling import derive_seed
from lightning_nas.search.constraints import count_network_cost
from lightning_nas.search.latency import measure_network_latency
from lightning_nas.search.tabular import ArchFormat, TabularBenchmark
from lightning_nas.trials._checks import check_keys, keyword_parameters
from lightning_nas.trials._records import TRIALS_FILE, load_records

__all__ = [
    "EARLY_STOP_OPTIONS",
    "LightningTrial",
    "ReportEpochs",
    "RetrainFactory",
    "TabularTrial",
    "TrialSpec",
    "best_finished_accuracy",
    "describe_object",
    "finished_curves",
    "finished_runs",
    "finished_series",
    "run_trial",
    "static_features",
]

Report = Callable[[Mapping[str, Any]], None]
CURVE_METRIC = "accuracy_epoch_{}"
"""The key of epoch ``e``'s accuracy (from 1) in the reports of a trial that stops early."""
SERIES_METRIC = "{}_epoch_{}"
"""The key of epoch ``e``'s value of an extra series (``train_loss_epoch_3``) in the reports of such a trial."""
FEATURE_METRIC = "feature_{}"
"""The key of a static feature (``feature_log10(lr)``) in the reports of a trial that stops early."""


def describe_object(value: Any) -> str:
    """A description of ``value`` that is the same in every process: a function or class by its qualified name,
    anything else by its ``repr`` without memory addresses (``<function f at 0x7f..>`` -> ``<function f>``).

    An experiment's record (``experiment.json``) describes its trial with it, so a resumed driver (a new process)
    can tell the same experiment from a changed one.

    Example:
        >>> describe_object(json.dumps)
        'json.dumps'
        >>> import functools
        >>> describe_object(functools.partial(json.dumps, indent=1))
        'functools.partial(<function dumps>, indent=1)'
    """
    if inspect.isfunction(value) or inspect.isclass(value) or inspect.isbuiltin(value):
        return f"{value.__module__}.{value.__qualname__}"
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(value))


class TrialSpec(Protocol):
    """What :func:`run_trial` runs: ``run(arch, report, best_so_far, finished_curves=...)`` reports metrics one or
    more times.

    ``best_so_far`` is the best final accuracy of the finished trials and ``finished_curves`` their learning curves
    (``finished_extra``: their other per-epoch series; ``finished_features``: their static features), for trials
    that stop early; each is passed only when known, so a spec may also define ``run(arch, report)``.
    """

    def run(
        self,
        arch: Arch,
        report: Report,
        best_so_far: float | None = None,
        finished_curves: Sequence[Sequence[float]] | None = None,
        finished_extra: Mapping[str, Sequence[Sequence[float]]] | None = None,
        finished_features: Sequence[Sequence[float]] | None = None,
    ) -> None: ...

    def describe(self) -> dict[str, Any]: ...


def run_trial(config: Mapping[str, Any], spec: TrialSpec) -> None:
    """The Ray Tune function trainable: decode the arch, run the spec, turn any exception into a failed report."""
    from ray import tune

    arch = json.loads(config["arch"])
    start = time.perf_counter()

    def report(metrics: Mapping[str, Any]) -> None:
        tune.report({**metrics, "wall_time_s": time.perf_counter() - start})

    best = config.get("best_so_far")
    finished = {}  # the finished trials' curves, and their series and features where the trials report them
    if config.get("finished_curves"):
        keys = ("finished_curves", "finished_extra", "finished_features")
        finished = {key: json.loads(config[key]) for key in keys if config.get(key)}
    try:
        # a spec (a user's too) that predates best_so_far takes (arch, report): pass the context only when there is one
        if best is None:
            spec.run(arch, report)
        else:
            spec.run(arch, report, float(best), **finished)
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
        stopper: a :class:`~lightning_nas.callbacks.LearningCurveStopping` placed before this callback; every
            report then carries the curve so far (``accuracy_epoch_1`` ...) and the stopper's extra series
            (``train_loss_epoch_1`` ...), and the report of the epoch it stops at ``stopped_early: 1``.
    """

    def __init__(
        self,
        report: Report,
        monitor: str = "val/acc",
        extra: Mapping[str, float] | None = None,
        stopper: LearningCurveStopping | None = None,
    ) -> None:
        self.report, self.monitor, self.extra, self.stopper = report, monitor, dict(extra or {}), stopper
        self.curve: list[float] = []

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
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # at the validation's end, after the module's own epoch-end logging and a stopper's decision
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            raise KeyError(f"the trial's module logs no {self.monitor!r}; it logs {sorted(trainer.callback_metrics)}")
        self.curve.append(float(value))
        stopped, curve = {}, {}
        if self.stopper is not None:
            curve = {CURVE_METRIC.format(epoch): v for epoch, v in enumerate(self.curve, start=1)}
            for name, values in self.stopper.series.items():
                curve.update({SERIES_METRIC.format(name, epoch): v for epoch, v in enumerate(values, start=1)})
            stopped = {"stopped_early": 1.0} if self.stopper.stopped_epoch else {}
        metrics = {"accuracy": float(value), "epoch": float(trainer.current_epoch + 1), **self.extra, **curve}
        self.report({**metrics, **stopped})


@dataclass
class RetrainFactory:
    """The default child factory: the space's exported network, trained from scratch.

    A DARTS-cell architecture trains with :class:`~lightning_nas.methods.Retrain`, an ENAS macro one with
    :class:`~lightning_nas.methods.RetrainMacro`.

    Args:
        options: keyword arguments of the module (``in_channels``, ``num_classes``, ``channels``, ``layers``, ...);
            a name neither module takes raises ``ValueError`` naming the valid ones.
    """

    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_keys(self.options, self.option_names(), "retrain options")  # here, in the driver, not in every trial

    @staticmethod
    def option_names() -> list[str]:
        """The options it accepts: the keyword arguments of :class:`~lightning_nas.methods.Retrain` and
        :class:`~lightning_nas.methods.RetrainMacro`, less ``arch`` (the factory's to give)."""
        from lightning_nas.methods import Retrain, RetrainMacro

        names = dict.fromkeys([*(keyword_parameters(Retrain) or []), *(keyword_parameters(RetrainMacro) or [])])
        return [name for name in names if name != "arch"]

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


EARLY_STOP_OPTIONS = (
    "min_epochs", "threshold", "upper", "noise", "predictor", "min_finished", "extra", "window", "features", "prior",
)  # fmt: skip
"""The keys of ``LightningTrial(early_stop=...)``: :class:`~lightning_nas.callbacks.LearningCurveStopping`'s, and
``features`` and ``prior`` (read by the trial and the driver)."""
TRIAL_PREDICTOR = "regression"
"""The default ``predictor`` of a multi-trial search (Baker et al.'s protocol): the first ``min_finished`` trials
run to the end and calibrate the regression that stops the later ones. On the recorded Fashion-MNIST runs of
``benchmarks/learning_curves.py`` the curve fit (``"fit"``, and ``"auto"`` before enough trials finished) stopped
the eventual best run in most searches; the regression in a third of them."""


def best_finished_accuracy(records: Sequence[Any], max_epochs: int) -> float | None:
    """The best ``accuracy`` of the successful records that ran ``max_epochs`` epochs (``None``: there is none).

    Trials stopped early (by the learning-curve rule or a Ray scheduler) report an accuracy of fewer epochs, which
    is not a final accuracy, so they are left out.
    """
    finals = [
        r.metrics["accuracy"]
        for r in records
        if r.status == "ok" and "accuracy" in r.metrics and r.metrics.get("epoch", 0.0) >= max_epochs
    ]
    return max(finals) if finals else None


def finished_curves(records: Sequence[Any], max_epochs: int) -> list[list[float]]:
    """The learning curves (``accuracy_epoch_1`` .. ``accuracy_epoch_{max_epochs}``) of the successful records that
    ran ``max_epochs`` epochs and reported them, in record order."""
    return finished_series(records, max_epochs)[0]


def finished_series(
    records: Sequence[Any], max_epochs: int, extra: Sequence[str] = ()
) -> tuple[list[list[float]], dict[str, list[list[float]]]]:
    """The learning curves and the ``extra`` series (``{name}_epoch_1`` ..) of the successful records that ran
    ``max_epochs`` epochs and reported all of them, in record order (the same records for every series)."""
    curves, series, _ = finished_runs(records, max_epochs, extra)
    return curves, series


def finished_runs(
    records: Sequence[Any], max_epochs: int, extra: Sequence[str] = (), features: Sequence[str] = ()
) -> tuple[list[list[float]], dict[str, list[list[float]]], list[list[float]]]:
    """:func:`finished_series` and the rows of the static ``features`` (``feature_{name}``) of the same records:
    those that ran ``max_epochs`` epochs and reported every series and feature."""
    epochs = range(1, max_epochs + 1)
    keys = {"": [CURVE_METRIC.format(e) for e in epochs]}
    keys.update({name: [SERIES_METRIC.format(name, e) for e in epochs] for name in extra})
    feature_keys = [FEATURE_METRIC.format(name) for name in features]
    complete = [
        r
        for r in records
        if r.status == "ok"
        and r.metrics.get("epoch", 0.0) >= max_epochs
        and all(key in r.metrics for key in (*feature_keys, *(k for names in keys.values() for k in names)))
    ]
    series = {name: [[r.metrics[key] for key in names] for r in complete] for name, names in keys.items()}
    rows = [[r.metrics[key] for key in feature_keys] for r in complete]
    return series.pop(""), series, rows


def _feature_source(name: str) -> tuple[str, bool]:
    """``(the choice or cost a static feature reads, whether it takes its log10)``: ``"log10(lr)" -> ("lr", True)``."""
    if name.startswith("log10(") and name.endswith(")"):
        return name[len("log10(") : -1], True
    return name, False


def static_features(names: Sequence[str], arch: Arch, costs: Mapping[str, float]) -> list[float]:
    """The row of static ``features`` of a trial: each name a numeric choice of ``arch`` or one of its ``costs``,
    optionally as ``"log10(name)"``.

    Raises:
        ValueError: a name that is neither (naming the numeric choices and the costs), a value that is not a finite
            number, or a ``log10`` of a value <= 0.
    """
    row = []
    for name in names:
        inner, log = _feature_source(name)
        if inner in costs:
            value: Any = costs[inner]
        elif inner in arch:
            value = arch[inner]
        else:
            numeric = sorted(k for k, v in arch.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
            valid = [*numeric, *costs]
            raise ValueError(
                f"unknown static feature {name!r}: valid names are the trial's numeric choices and costs, "
                f"{', '.join(valid) or 'none'} (each also as 'log10(name)')"
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"static feature {name!r} must be a finite number, got {value!r}")
        if log:
            if value <= 0:
                raise ValueError(f"static feature {name!r} needs a positive value, got {value!r}")
            value = math.log10(value)
        row.append(float(value))
    return row


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
        early_stop: stop hopeless trials by learning-curve prediction: options of
            :class:`~lightning_nas.callbacks.LearningCurveStopping` (``min_epochs``, ``threshold``, ``upper``,
            ``noise``, ``predictor``, ``min_finished``, ``extra``, ``window``; ``{}`` for the defaults, with
            ``predictor`` defaulting to ``"regression"`` here: nothing stops before ``min_finished`` trials
            finished); each trial gets the best finished trial's final accuracy as the value to beat and the
            finished trials' curves (and ``extra`` series, e.g. ``["train_loss"]``) to calibrate its prediction on.
            ``features``: names of static features the regression reads too (:func:`static_features`: numeric
            choices of the arch such as ``"log10(lr)"`` for a space that searches the learning rate, or
            ``"params"``, ``"flops"``, ``"latency_ms"``). ``prior``: earlier searches of the same recipe (their
            directories or ``trials.jsonl`` files, run with ``early_stop`` so that their trials recorded their
            curves) whose finished trials calibrate the regression too, before this search's own; read once, here.
            ``None``: every trial runs ``max_epochs``.
        seed: seeds each child's run (weights, data order, augmentation) from this seed and its architecture, so
            the same architecture trains the same way in every run of the experiment and on every worker.

    Raises:
        ValueError: for ``max_epochs < 1``, a ``trainer_options`` key that is not a ``Trainer`` argument, or an
            unusable ``early_stop``, when the trial is built (in the driver, before any child trains); the message
            names the value and the valid ones.
    """

    datamodule: Callable[[], pl.LightningDataModule]
    factory: Callable[[Arch], Any] = field(default_factory=RetrainFactory)
    max_epochs: int = 1
    max_steps: int = -1
    monitor: str = "val/acc"
    input_shape: tuple[int, int, int] | None = None
    latency_repeats: int = 0
    trainer_options: dict[str, Any] = field(default_factory=dict)
    early_stop: dict[str, Any] | None = None
    seed: int = 0
    prior_records: list[Any] = field(default_factory=list, init=False, repr=False, compare=False)
    """The records of the ``prior`` searches, loaded when the trial is built."""

    def __post_init__(self) -> None:
        if self.max_epochs < 1:
            raise ValueError(f"max_epochs must be >= 1, got {self.max_epochs}")
        trainer_arguments = keyword_parameters(pl.Trainer)
        if trainer_arguments is not None:  # refused here, in the driver, rather than in every trial
            check_keys(self.trainer_options, trainer_arguments, "trainer_options")
        if self.early_stop is not None:
            unknown = sorted(set(self.early_stop) - set(EARLY_STOP_OPTIONS))
            if unknown:
                valid = ", ".join(EARLY_STOP_OPTIONS)
                raise ValueError(f"unknown early_stop options {unknown}; valid options: {valid}")
            names = self.early_stop.get("features", [])
            if isinstance(names, str) or not all(isinstance(name, str) for name in names):
                raise ValueError(f"early_stop features must be a list of names, got {names!r}")
            if {"flops", "latency_ms"} & {_feature_source(name)[0] for name in names} and (self.input_shape is None):
                raise ValueError(f"early_stop features {list(names)} need input_shape to count FLOPs and latency")
            if "prior" in self.early_stop:  # one path or several, kept as strings (the run's signature is JSON)
                prior = self.early_stop["prior"]
                prior = [prior] if isinstance(prior, (str, os.PathLike)) else prior
                self.early_stop = {**self.early_stop, "prior": [os.fspath(path) for path in prior]}
                self.prior_records = self._load_prior(self.early_stop["prior"])
            self.stopper(None)  # bad values fail here, in the driver

    def _load_prior(self, paths: Sequence[str]) -> list[Any]:
        """The records of the earlier searches in ``paths``; each must hold a trial that ran all ``max_epochs``
        epochs and reported its curve (and the ``extra`` series and ``features`` this trial reads)."""
        options = self.early_stop or {}
        extra, names = options.get("extra", ()), options.get("features", ())
        records: list[Any] = []
        for entry in paths:
            path = Path(entry)
            file = path / TRIALS_FILE if path.is_dir() else path
            if not file.is_file():
                raise FileNotFoundError(
                    f"early_stop prior {str(entry)!r}: no {TRIALS_FILE} there; give an earlier search's directory "
                    f"or its {TRIALS_FILE}"
                )
            loaded = load_records(file)
            if not finished_runs(loaded, self.max_epochs, extra, names)[0]:
                wanted = ", ".join(["the curve", *extra, *(f"feature {name}" for name in names)])
                raise ValueError(
                    f"early_stop prior {str(file)!r}: no trial there ran all {self.max_epochs} epochs and reported "
                    f"{wanted}; a prior search must train its children for as many epochs as this one, with "
                    "early_stop set so that they report their curves"
                )
            records += loaded
        return records

    def stopper(
        self,
        best_so_far: float | None,
        finished: Sequence[Sequence[float]] | None = None,
        finished_extra: Mapping[str, Sequence[Sequence[float]]] | None = None,
        finished_features: Sequence[Sequence[float]] | None = None,
        features: Sequence[float] | None = None,
    ) -> LearningCurveStopping:
        """The early-stopping callback of one trial (requires ``early_stop``; ``features``: the trial's row of the
        static features, ``finished_features`` the finished trials' rows)."""
        options = {"predictor": TRIAL_PREDICTOR, **(self.early_stop or {})}
        named = options.pop("features", [])
        options.pop("prior", None)
        if finished is not None and named and finished_features is None:
            raise ValueError(f"early_stop features {list(named)} need the finished trials' rows (finished_features)")
        return LearningCurveStopping(
            monitor=self.monitor,
            final_epoch=self.max_epochs,
            best_so_far=best_so_far,
            finished=finished,
            finished_extra=finished_extra,
            features=features if named else None,
            finished_features=finished_features if named else None,
            **options,
        )

    def context(self, records: Sequence[Any]) -> dict[str, Any]:
        """What the driver adds to a new trial's config when trials stop early: ``best_so_far`` (of ``records``) and
        the finished trials' curves (``finished_curves``, a JSON list of lists: the ``prior`` searches' first)."""
        if self.early_stop is None:
            return {}
        names = self.early_stop.get("features", ())
        finished = [*self.prior_records, *records]
        curves, extra, rows = finished_runs(finished, self.max_epochs, self.early_stop.get("extra", ()), names)
        best = best_finished_accuracy(records, self.max_epochs)
        context = {"best_so_far": best, "finished_curves": json.dumps(curves)}
        if extra:
            context["finished_extra"] = json.dumps(extra)
        if names:
            context["finished_features"] = json.dumps(rows)
        return context

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

    def run(
        self,
        arch: Arch,
        report: Report,
        best_so_far: float | None = None,
        finished_curves: Sequence[Sequence[float]] | None = None,
        finished_extra: Mapping[str, Sequence[Sequence[float]]] | None = None,
        finished_features: Sequence[Sequence[float]] | None = None,
    ) -> None:
        seed = derive_seed(self.seed, json.dumps(dict(arch), sort_keys=True)) % 2**32  # what seed_everything takes
        pl.seed_everything(seed, workers=True, verbose=False)
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
        costs, stopper = self.costs(module), None
        if self.early_stop is not None:
            names = self.early_stop.get("features", ())
            row = static_features(names, arch, costs)
            stopper = self.stopper(best_so_far, finished_curves, finished_extra, finished_features, row)
            costs.update({FEATURE_METRIC.format(name): value for name, value in zip(names, row)})
        reporter = ReportEpochs(report, self.monitor, costs, stopper)
        callbacks = [*([stopper] if stopper else []), reporter, *options.pop("callbacks", [])]
        trainer = pl.Trainer(callbacks=callbacks, **options)
        trainer.fit(module, datamodule=self.datamodule())

    def describe(self) -> dict[str, Any]:
        """What defines the trial (:func:`describe_object` of its callables and options), for the experiment's
        record: a resume with any of it changed is refused."""
        return {
            "kind": "lightning",
            "factory": describe_object(self.factory),
            "datamodule": describe_object(self.datamodule),
            "max_epochs": self.max_epochs,
            "max_steps": self.max_steps,
            "monitor": self.monitor,
            "input_shape": None if self.input_shape is None else list(self.input_shape),
            "latency_repeats": self.latency_repeats,
            "trainer_options": {key: describe_object(value) for key, value in sorted(self.trainer_options.items())},
            "seed": self.seed,
            "early_stop": None if self.early_stop is None else dict(self.early_stop),
        }


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

    def run(
        self,
        arch: Arch,
        report: Report,
        best_so_far: float | None = None,
        finished_curves: Sequence[Sequence[float]] | None = None,
        finished_extra: Mapping[str, Sequence[Sequence[float]]] | None = None,
        finished_features: Sequence[Sequence[float]] | None = None,
    ) -> None:
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
