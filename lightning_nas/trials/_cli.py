"""``lightning-nas trials --config RECIPE.yaml [--resume] [--address HOST:PORT]``: a multi-trial search from YAML.

A recipe names the space (whose choices are searched), the strategy, the data and how each child trains::

    directory: runs/trials/digits_nasrl
    num_trials: 24
    concurrency: 2
    space: {class_path: lightning_nas.spaces.DartsCellSpace, init_args: {...}}
    strategy: {name: nasrl, options: {batch_size: 4}}  # random | evolution | nsga2 | reinforce | nasrl | bananas | pnas
    data: {class_path: lightning_nas.data.DigitsDataModule, init_args: {...}}
    trial: {max_epochs: 1, input_shape: [1, 8, 8], retrain: {...}, trainer: {...}, early_stop: {min_epochs: 3}}
    reward: {target: 20000, cost: flops, hard: false}     # optional MnasNet reward (strategy metric: reward)
    logger: {class_path: lightning.pytorch.loggers.TensorBoardLogger}  # optional; one or a list, as trainer.logger

Classes are named by ``class_path`` as in LightningCLI configs; a logger without ``save_dir`` logs under
``<directory>/logs``. The run writes the trial table, ``best_arch.json``,
for several objectives ``pareto_front.json`` and (with matplotlib) ``pareto_front.png``.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch.loggers import Logger, WandbLogger

from lightning_nas.callbacks import check_wandb_ready
from lightning_nas.search import (
    NSGA2,
    Bananas,
    PolicySearch,
    ProgressiveSearch,
    RandomSearch,
    RegularizedEvolution,
    ReinforceSearch,
    SearchStrategy,
)
from lightning_nas.trials.rewards import MnasNetReward
from lightning_nas.trials.runner import TrialsResult, run_trials
from lightning_nas.trials.trainables import LightningTrial, RetrainFactory

__all__ = ["trials_main"]

STRATEGY_NAMES = ("random", "evolution", "nsga2", "reinforce", "nasrl", "bananas", "pnas")
_EXTRAS = {"TensorBoardLogger": "tensorboard", "WandbLogger": "wandb"}
RECIPE_KEYS = {
    "directory",
    "num_trials",
    "concurrency",
    "cpus_per_trial",
    "gpus_per_trial",
    "scheduler",
    "num_cpus",
    "seed",
    "space",
    "strategy",
    "data",
    "trial",
    "reward",
    "logger",
}


def _import(class_path: str) -> Any:
    module_name, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(f"class_path {class_path!r} does not name an importable class ({err})") from None


def _instantiate(spec: Any, what: str) -> Any:
    if not isinstance(spec, Mapping) or "class_path" not in spec:
        raise ValueError(f"{what} must be a mapping with class_path (and init_args); got {spec!r}")
    return _import(str(spec["class_path"]))(**dict(spec.get("init_args") or {}))


@dataclass
class ClassFactory:
    """A picklable ``() -> instance`` of a ``class_path`` (the datamodule is built inside each trial)."""

    class_path: str
    init_args: dict[str, Any] = field(default_factory=dict)

    def __call__(self) -> Any:
        return _import(self.class_path)(**self.init_args)


def build_loggers(spec: Any, directory: Path) -> list[Logger]:
    """The recipe's ``logger`` entry (one ``class_path``/``init_args`` mapping, a list of them, or nothing).

    A W&B logger is checked ready first (package installed, a login or ``WANDB_MODE=offline``), and a logger
    whose package is missing names what installs it.
    """
    if spec is None or spec is False:
        return []
    specs = spec if isinstance(spec, list) else [spec]
    loggers = []
    for item in specs:
        if not isinstance(item, Mapping) or "class_path" not in item:
            raise ValueError(f"logger must be a mapping with class_path (and init_args), or a list; got {item!r}")
        cls = _import(str(item["class_path"]))
        if not (isinstance(cls, type) and issubclass(cls, Logger)):
            raise ValueError(f"logger class_path {item['class_path']!r} is not a lightning.pytorch.loggers.Logger")
        init_args = dict(item.get("init_args") or {})
        if issubclass(cls, WandbLogger):
            check_wandb_ready(offline=bool(init_args.get("offline", False)))
        if "save_dir" in inspect.signature(cls).parameters:
            init_args.setdefault("save_dir", str(directory / "logs"))
        try:
            loggers.append(cls(**init_args))
        except ModuleNotFoundError as err:
            raise ModuleNotFoundError(
                f"the logger {cls.__name__} needs a package that is not installed ({err}): "
                f"pip install 'lightning-nas[{_EXTRAS.get(cls.__name__, 'dev')}]'"
            ) from None
    return loggers


def build_strategy(spec: Mapping[str, Any], space: Any, seed: int, metric: str) -> SearchStrategy:
    """The recipe's strategy over ``space``'s choices."""
    name = str(spec.get("name", ""))
    options = dict(spec.get("options") or {})
    choices = space.choices()
    if name == "random":
        return RandomSearch(choices, metric=metric, seed=seed, **options)
    if name == "evolution":
        return RegularizedEvolution(choices, metric=metric, seed=seed, **options)
    if name == "nsga2":
        return NSGA2(choices, seed=seed, **options)
    if name == "reinforce":
        return ReinforceSearch(choices, metric=metric, seed=seed, **options)
    if name == "nasrl":
        return PolicySearch(choices, node_choices=space.node_choices(), metric=metric, seed=seed, **options)
    if name == "bananas":
        return Bananas(choices, metric=metric, seed=seed, **options)
    if name == "pnas":
        return ProgressiveSearch(choices, metric=metric, seed=seed, **options)
    raise ValueError(f"strategy.name must be one of {', '.join(STRATEGY_NAMES)}; got {name!r}")


def _plot_front(result: TrialsResult, objectives: Sequence[str], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    x_name, y_name = objectives[1], objectives[0]
    ok = [r for r in result.records if r.status == "ok"]
    figure, axes = plt.subplots(figsize=(5, 4))
    axes.scatter([r.metrics[x_name] for r in ok], [r.metrics[y_name] for r in ok], s=12, c="0.6", label="trials")
    front = sorted(result.front, key=lambda r: r.metrics[x_name])
    axes.plot([r.metrics[x_name] for r in front], [r.metrics[y_name] for r in front], "o-", c="C3", label="front")
    axes.set_xlabel(x_name)
    axes.set_ylabel(y_name)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def run_recipe(recipe: Mapping[str, Any], *, resume: bool = False, address: str | None = None) -> TrialsResult:
    """Run a recipe mapping (see the module docs)."""
    unknown = sorted(set(recipe) - RECIPE_KEYS)
    if unknown:
        raise ValueError(f"unknown recipe keys {unknown}; valid keys: {', '.join(sorted(RECIPE_KEYS))}")
    space = _instantiate(recipe.get("space"), "space")
    reward_spec = recipe.get("reward")
    reward = None
    if reward_spec:
        kind = MnasNetReward.hard if reward_spec.get("hard") else MnasNetReward
        reward = kind(target=float(reward_spec["target"]), cost=str(reward_spec.get("cost", "latency_ms")))
    strategy = build_strategy(
        recipe.get("strategy") or {}, space, int(recipe.get("seed", 0)), "reward" if reward else "accuracy"
    )
    data = recipe.get("data") or {}
    trial_spec = dict(recipe.get("trial") or {})
    shape = trial_spec.get("input_shape")
    trial = LightningTrial(
        ClassFactory(str(data.get("class_path")), dict(data.get("init_args") or {})),
        RetrainFactory(dict(trial_spec.get("retrain") or {})),
        max_epochs=int(trial_spec.get("max_epochs", 1)),
        max_steps=int(trial_spec.get("max_steps", -1)),
        input_shape=None if shape is None else (int(shape[0]), int(shape[1]), int(shape[2])),
        latency_repeats=int(trial_spec.get("latency_repeats", 0)),
        trainer_options=dict(trial_spec.get("trainer") or {}),
        early_stop=None if trial_spec.get("early_stop") is None else dict(trial_spec["early_stop"]),
    )
    directory = Path(str(recipe.get("directory", "runs/trials")))
    loggers = build_loggers(recipe.get("logger"), directory)
    result = run_trials(
        strategy,
        trial,
        directory,
        num_trials=int(recipe["num_trials"]),
        resume=resume,
        concurrency=int(recipe.get("concurrency", 1)),
        cpus_per_trial=float(recipe.get("cpus_per_trial", 1)),
        gpus_per_trial=float(recipe.get("gpus_per_trial", 0)),
        scheduler=recipe.get("scheduler", "fifo"),
        address=address,
        num_cpus=recipe.get("num_cpus"),
        reward=reward,
        loggers=loggers,
    )
    objectives = list(getattr(strategy, "objectives", {}) or {})
    if len(objectives) > 1:
        _plot_front(result, objectives, directory / "pareto_front.png")
    return result


def trials_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="lightning-nas trials", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True, type=Path, help="the YAML recipe")
    parser.add_argument("--resume", action="store_true", help="continue the experiment in the recipe's directory")
    parser.add_argument("--address", default=None, help="join a Ray cluster (HOST:PORT or auto); default: local")
    parser.add_argument("--directory", default=None, help="override the recipe's output directory")
    ns = parser.parse_args(list(argv))
    if not ns.config.is_file():
        parser.error(f"no recipe file {str(ns.config)!r}")
    recipe = yaml.safe_load(ns.config.read_text(encoding="utf-8"))
    if not isinstance(recipe, dict):
        parser.error(f"{ns.config} must hold a YAML mapping")
    if ns.directory:
        recipe["directory"] = ns.directory
    result = run_recipe(recipe, resume=ns.resume, address=ns.address)
    print(f"best trial {result.best.trial_id}: {result.best.metrics} -> {result.directory / 'best_arch.json'}")
    return 0
