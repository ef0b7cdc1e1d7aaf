"""Run a multi-trial search on Ray Tune: :func:`run_trials`.

Every trial is one child trained (or looked up) on its own; Ray Tune schedules them, locally by default (Ray starts
with no set-up) or on an existing cluster given its ``address`` (``ray start --head`` on one node,
``ray start --address=HEAD:6379`` on the others). The driver keeps the truth in ``directory``:

- ``experiment.json``: what the experiment is (strategy, space, plan, trial kind), checked on resume;
- ``driver_state.pt``: the strategy's state and the running and finished trials, after every change (atomic);
- ``trials.jsonl`` / ``trials.csv``: one row per finished trial (arch, metrics, cost, status, wall time, error);
- ``best_arch.json`` (and ``pareto_front.json`` for several objectives) when the experiment ends.

``loggers`` (Lightning's TensorBoard, W&B, CSV loggers) get one step per finished trial: its metrics, status and wall
time, and the best value so far (see :mod:`lightning_nas.trials._logging`), and the experiment's settings once.

A driver killed at any point resumes with ``resume=True``: trials that were running run again under their ids, the
strategy continues from its saved state, and the planned number of trials completes. The same state rides in Ray's
experiment checkpoints (``ray/runNNN/searcher_state.pt``, written by the searcher's ``save_to_dir``); without
``driver_state.pt`` a resume starts from the newest of those.
"""

from __future__ import annotations

import json
import math
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import torch
from lightning.pytorch.loggers import Logger

from lightning_nas._safe_io import read_json
from lightning_nas.arch import atomic_write_text, save_arch
from lightning_nas.sampling import sample_arch
from lightning_nas.search.base import SearchStrategy, Trial
from lightning_nas.search.nsga2 import pareto_front
from lightning_nas.trials._driver import Reward, TrialDriver
from lightning_nas.trials._logging import TrialLogging, as_loggers
from lightning_nas.trials._records import SEARCHER_STATE_FILE, TrialRecord, load_state, save_state, write_records
from lightning_nas.trials.trainables import LightningTrial, TabularTrial, TrialSpec, describe_object

__all__ = ["TrialsResult", "require_ray", "run_trials"]

Scheduler = Literal["fifo", "asha", "median"]
SCHEDULERS = ("fifo", "asha", "median")
STATE_FILE = "driver_state.pt"
EXPERIMENT_FILE = "experiment.json"


def require_ray() -> ModuleType:
    """Import Ray Tune, or raise ``ImportError`` naming the extra that installs it."""
    try:
        import ray
        import ray.tune  # noqa: F401
    except ImportError as err:
        raise ImportError(
            f'multi-trial search runs on Ray Tune, which is not installed ({err}): pip install "lightning-nas[trials]"'
        ) from None
    return ray


@dataclass
class TrialsResult:
    """A finished (or fully resumed) experiment.

    Attributes:
        records: every finished trial, in completion order.
        best: the best successful trial by the strategy's metric.
        front: the Pareto front of the successful trials over the strategy's objectives (one objective: ``[best]``).
        directory: where the record is.
    """

    records: list[TrialRecord]
    best: TrialRecord
    front: list[TrialRecord]
    directory: Path


def _signature(
    strategy: SearchStrategy,
    trial: TrialSpec,
    num_trials: int | None,
    budget: float | None,
    reward: Reward | None = None,
    settings: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    signature = {
        "strategy": type(strategy).__name__,
        "metric": strategy.metric,
        "mode": strategy.mode,
        "choices": [[c.name, list(c.candidates)] for c in strategy.choices],
        "num_trials": num_trials,
        "budget": budget,
        "trial": trial.describe(),
        "reward": None if reward is None else describe_object(reward),
        "settings": dict(settings or {}),
    }
    return json.loads(json.dumps(signature, default=describe_object))  # as experiment.json holds it


def _differences(saved: Any, current: Any, prefix: str = "") -> list[str]:
    """The dotted keys where two signatures differ (a whole value where it is not a mapping in both); a key the
    saved one lacks (written by an earlier version, which recorded less) is marked so."""
    if not (isinstance(saved, Mapping) and isinstance(current, Mapping)):
        return [] if saved == current else [prefix or "(the whole record)"]
    found = []
    for key in sorted(set(saved) | set(current)):
        where = f"{prefix}.{key}" if prefix else key
        if key not in saved and prefix in ("", "trial"):  # a field of the record itself, not a user's value
            found.append(f"{where} (not recorded)")
        elif key not in saved:
            found.append(where)
        else:
            found += _differences(saved[key], current.get(key), where)
    return found


def _prepare_directory(directory: Path, signature: dict[str, Any], resume: bool) -> dict[str, Any] | None:
    """Check ``directory`` against the experiment; the saved driver state when resuming (``None``: the driver
    stopped before its first trial finished, so the experiment starts again from its first trial)."""
    experiment, state = directory / EXPERIMENT_FILE, directory / STATE_FILE
    if resume:
        if not experiment.is_file():
            raise FileNotFoundError(f"nothing to resume in {directory}: there is no {EXPERIMENT_FILE}")
        saved = read_json(experiment, "experiment file")
        diff = _differences(saved, signature)
        if diff:
            older = (
                f"; a setting not recorded is one an earlier version of lightning-nas, which wrote this "
                f"{EXPERIMENT_FILE}, did not record: resume with that version"
                if any(d.endswith("(not recorded)") for d in diff)
                else ""
            )
            raise ValueError(
                f"{directory} holds a different experiment (it differs in {', '.join(diff)}); resume it with the "
                f"same strategy, space, plan and trial settings, or start this one in a new directory{older}"
            )
        if not state.is_file():
            state = _ray_checkpoint(directory) or state
        if not state.is_file():  # stopped before a trial finished: no result to keep, the first trials run again
            print(f"[trials] no trial had finished in {directory} when the driver stopped: starting it", flush=True)
            return None
        return load_state(state)
    if experiment.exists() or state.exists():
        raise FileExistsError(
            f"{directory} already holds an experiment; pass resume=True (--resume) to continue it, or a new directory"
        )
    atomic_write_text(experiment, json.dumps(signature, indent=1) + "\n")
    return None


def _ray_checkpoint(directory: Path) -> Path | None:
    """The searcher state in the newest Ray experiment checkpoint of ``directory`` (``ray/runNNN/``), if any.

    Ray saves it (:meth:`~lightning_nas.trials.searcher.StrategySearcher.save_to_dir`) with its experiment state,
    periodically and when an experiment ends, so it may be older than ``driver_state.pt``; resuming from it re-runs
    the trials finished after it, under their ids.
    """
    runs = sorted((directory / "ray").glob(f"run*/{SEARCHER_STATE_FILE}"), key=lambda p: p.parent.name)
    if not runs:
        return None
    print(f"[trials] no {STATE_FILE} in {directory}: resuming from Ray's experiment checkpoint {runs[-1]}", flush=True)
    return runs[-1]


def _connect(ray: ModuleType, address: str | None, num_cpus: int | None) -> bool:
    """Start Ray locally or join ``address``; whether this call started it (and should shut it down)."""
    if ray.is_initialized():
        return False
    if address is None:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
        return True
    if address != "auto" and not address.startswith("ray://"):
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
        except (OSError, ValueError) as err:
            raise ConnectionError(
                f"cannot reach a Ray cluster at address {address!r} ({err}); start one with `ray start --head` "
                "and pass the address it prints (HOST:PORT), or leave address unset to run Ray locally"
            ) from None
    try:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError) as err:
        raise ConnectionError(f"cannot join the Ray cluster at address {address!r}: {err}") from None
    return True


def _check_resources(ray: ModuleType, cpus: float, gpus: float, concurrency: int) -> None:
    available = ray.cluster_resources()
    for name, need in (("CPU", cpus), ("GPU", gpus)):
        have = float(available.get(name, 0.0))
        if need > have:
            raise ValueError(
                f"each trial asks for {need:g} {name}(s) but the Ray cluster has {have:g}; lower the per-trial "
                f"{name.lower()}s or join a cluster that has them (address=...)"
            )


def _scheduler(name: str, metric: str, mode: str, max_epochs: int) -> Any:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule

    if name == "asha":
        return ASHAScheduler(
            metric=metric, mode=mode, time_attr="training_iteration", max_t=max(1, max_epochs), grace_period=1
        )
    if name == "median":
        return MedianStoppingRule(metric=metric, mode=mode, time_attr="training_iteration", grace_period=1)
    return FIFOScheduler()


def _progress(driver: TrialDriver) -> Callable[[TrialRecord], None]:
    planned = str(driver.num_trials) if driver.num_trials is not None else "?"

    def line(record: TrialRecord) -> None:
        ok = [r for r in driver.records if r.status == "ok"]
        best = _best(ok, driver.strategy) if ok else None
        value = record.metrics.get(driver.strategy.metric, math.nan)
        shown = f"{driver.strategy.metric}={value:.4g}" if record.status == "ok" else f"FAILED {record.error[:80]}"
        best_text = f" best={best.metrics[driver.strategy.metric]:.4g}" if best else ""
        print(
            f"[trials] {len(driver.records)}/{planned} trial {record.trial_id} {shown}{best_text} "
            f"({record.wall_time_s:.1f} s)",
            flush=True,
        )

    return line


def _best(records: list[TrialRecord], strategy: SearchStrategy) -> TrialRecord:
    sign = 1.0 if strategy.mode == "max" else -1.0
    return max(records, key=lambda r: sign * r.metrics[strategy.metric])


def _finish(driver: TrialDriver, directory: Path) -> TrialsResult:
    ok = [r for r in driver.records if r.status == "ok"]
    if not ok:
        errors = "; ".join(sorted({r.error for r in driver.records}))[:500]
        raise RuntimeError(f"all {len(driver.records)} trials failed ({errors}); the record is in {directory}")
    best = _best(ok, driver.strategy)
    save_arch(best.arch, directory / "best_arch.json")
    objectives = driver.objectives
    front = [best]
    if len(objectives) > 1:
        as_trials = [Trial(r.arch, r.metrics) for r in ok]
        keep = {id(t) for t in pareto_front(as_trials, objectives)}
        front = [r for r, t in zip(ok, as_trials) if id(t) in keep]
        atomic_write_text(directory / "pareto_front.json", json.dumps([r.to_dict() for r in front], indent=1) + "\n")
    return TrialsResult(list(driver.records), best, front, directory)


def run_trials(
    strategy: SearchStrategy,
    trial: LightningTrial | TabularTrial,
    directory: str | Path,
    *,
    num_trials: int | None = None,
    budget: float | None = None,
    resume: bool = False,
    concurrency: int = 1,
    cpus_per_trial: float = 1.0,
    gpus_per_trial: float = 0.0,
    scheduler: Scheduler = "fifo",
    address: str | None = None,
    num_cpus: int | None = None,
    reward: Reward | None = None,
    failure_value: float = 0.0,
    progress: bool = True,
    loggers: Logger | Iterable[Logger] | None = None,
    settings: Mapping[str, Any] | None = None,
) -> TrialsResult:
    """Search with ``strategy`` over trials that each train (or look up) one child, on Ray Tune.

    Args:
        strategy: any ask/tell strategy (random, regularized evolution, NSGA-II, REINFORCE, a controller, yours).
        trial: what a trial does (:class:`LightningTrial` or :class:`TabularTrial`).
        directory: where the record goes (see the module docs).
        num_trials: trials to run.
        budget: simulated cost available (tabular trials charge ``trial.cost_of(arch)``); with ``num_trials``,
            whichever ends first.
        resume: continue the experiment in ``directory`` after the driver was killed.
        concurrency: trials running at once (1 makes a deterministic strategy's run reproducible).
        cpus_per_trial: CPUs Ray reserves per trial.
        gpus_per_trial: GPUs per trial; a fraction (0.5) shares a GPU between trials.
        scheduler: ``"fifo"`` (every trial runs its epochs), ``"asha"`` or ``"median"`` (early stopping on
            ``accuracy``).
        address: a Ray cluster to join (``HOST:PORT`` or ``"auto"``); ``None`` starts Ray locally.
        num_cpus: CPUs of a locally started Ray (default: all).
        reward: extra metrics computed from each trial's metrics (see :mod:`lightning_nas.trials.rewards`).
        failure_value: what a failed trial is told for a ``"max"`` objective.
        progress: print a line as each trial finishes.
        loggers: Lightning loggers (``TensorBoardLogger``, ``WandbLogger``, ``CSVLogger``, ...) that get every
            finished trial as one step (``trial/<metric>``, ``trial/ok``, ``trial/wall_time_s``, ``best/<metric>``;
            step = trials finished so far) and the experiment's settings once.
        settings: what else defines the experiment and the strategy's class, space and ``trial`` do not show, such as
            the strategy's options and seed (JSON values): kept in ``experiment.json`` with the rest, so that a
            resume with other settings is refused (``lightning-nas trials`` records the recipe's ``strategy``; its
            ``seed`` is the trial's, in :meth:`LightningTrial.describe`).

    Raises:
        ImportError: Ray is not installed (the message names the ``trials`` extra).
        ValueError: a zero-trial plan, bad resources or scheduler, a factory that returns no LightningModule
            (``TypeError``), resuming a different experiment (the message names what differs: a key of the
            trial's :meth:`~LightningTrial.describe`, the reward, the settings, ...), resources the cluster lacks.
        FileExistsError: ``directory`` holds an experiment and ``resume`` is false.
        FileNotFoundError: ``resume`` and ``directory`` holds no experiment.
        ConnectionError: an unreachable ``address``.
        TypeError: a logger that is not a Lightning ``Logger``.
    """
    if scheduler not in SCHEDULERS:
        raise ValueError(f"scheduler must be one of {', '.join(SCHEDULERS)}; got {scheduler!r}")
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    if cpus_per_trial < 0 or gpus_per_trial < 0 or (gpus_per_trial > 1 and gpus_per_trial != int(gpus_per_trial)):
        raise ValueError(
            f"cpus_per_trial and gpus_per_trial must be >= 0 (a GPU fraction below 1, or whole GPUs); "
            f"got {cpus_per_trial}, {gpus_per_trial}"
        )
    chosen_loggers = as_loggers(loggers)
    driver = TrialDriver(
        strategy,
        num_trials=num_trials,
        budget=budget,
        cost_of=trial.cost_of if isinstance(trial, TabularTrial) else None,
        reward=reward,
        failure_value=failure_value,
    )
    if isinstance(trial, LightningTrial):  # a wrong factory fails here, before any trial runs
        trial.build(sample_arch(strategy.choices, torch.Generator().manual_seed(0)))
    if isinstance(trial, TabularTrial):
        trial.table()  # loaded here once; the workers receive it with the trial
    ray = require_ray()
    folder = Path(directory)
    signature = _signature(strategy, trial, num_trials, budget, reward, settings)
    saved = _prepare_directory(folder, signature, resume)
    if saved is not None:
        driver.load_state_dict(saved)
    resources = {"concurrency": concurrency, "cpus_per_trial": cpus_per_trial, "gpus_per_trial": gpus_per_trial}
    trial_logging = TrialLogging(
        chosen_loggers,
        strategy.metric,
        strategy.mode,
        {**_hyperparameters(signature), **resources, "scheduler": scheduler, "directory": str(folder)},
    )
    if not driver.done:
        _run_on_ray(
            ray,
            driver,
            trial,
            folder,
            trial_logging,
            concurrency=concurrency,
            cpus=cpus_per_trial,
            gpus=gpus_per_trial,
            scheduler=scheduler,
            address=address,
            num_cpus=num_cpus,
            progress=progress,
        )
    return _finish(driver, folder)


def _hyperparameters(signature: dict[str, Any]) -> dict[str, Any]:
    """The experiment's signature as loggable settings (the choices as their count)."""
    values = {k: v for k, v in signature.items() if k != "choices"}
    return {**values, "num_choices": len(signature["choices"])}


def _run_on_ray(
    ray: ModuleType,
    driver: TrialDriver,
    trial: TrialSpec,
    folder: Path,
    trial_logging: TrialLogging,
    *,
    concurrency: int,
    cpus: float,
    gpus: float,
    scheduler: str,
    address: str | None,
    num_cpus: int | None,
    progress: bool,
) -> None:
    from ray import tune

    from lightning_nas.trials.searcher import StrategySearcher
    from lightning_nas.trials.trainables import run_trial

    started = _connect(ray, address, num_cpus)
    try:
        _check_resources(ray, cpus, gpus, concurrency)

        def persist() -> None:
            save_state(driver.state_dict(), folder / STATE_FILE)

        def finished(record: TrialRecord) -> None:
            write_records(driver.records, folder)
            trial_logging.log(record, step=len(driver.records))
            if progress:
                report(record)

        report = _progress(driver)
        context = trial.context if isinstance(trial, LightningTrial) else None
        searcher = StrategySearcher(driver, on_change=persist, on_record=finished, context=context)
        trainable = tune.with_resources(tune.with_parameters(run_trial, spec=trial), {"cpu": cpus, "gpu": gpus})
        max_epochs = int(getattr(trial, "max_epochs", 1))
        runs = sorted(p.name for p in (folder / "ray").glob("run*")) if (folder / "ray").is_dir() else []
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                num_samples=-1,
                max_concurrent_trials=concurrency,
                scheduler=_scheduler(scheduler, "accuracy", "max", max_epochs),
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                storage_path=str((folder / "ray").resolve()),
                name=f"run{len(runs):03d}",
                verbose=0,
                failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
            ),
        )
        trial_logging.start(driver.records)
        status = "failed"
        try:
            tuner.fit()
            status = "success"
        finally:
            trial_logging.finish(status)
        persist()
        write_records(driver.records, folder)
    finally:
        if started:
            ray.shutdown()
    if not driver.done:
        raise RuntimeError(f"Ray ended the experiment early; resume it with resume=True from {folder}")
