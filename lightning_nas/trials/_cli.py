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
``<directory>/logs``. The recipe is checked whole before Ray starts: an unknown key at any level is an error naming it
and the valid keys. The run writes the trial table, ``best_arch.json``,
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

import lightning.pytorch as pl
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
from lightning_nas.trials._checks import check_keys, keyword_parameters
from lightning_nas.trials.rewards import MnasNetReward
from lightning_nas.trials.runner import TrialsResult, run_trials
from lightning_nas.trials.trainables import EARLY_STOP_OPTIONS, LightningTrial, RetrainFactory

__all__ = ["trials_main"]

# Each strategy's class, and the arguments the recipe reader gives it itself (not from ``options``).
_STRATEGIES: dict[str, tuple[type[SearchStrategy], tuple[str, ...]]] = {
    "random": (RandomSearch, ("choices", "metric", "seed")),
    "evolution": (RegularizedEvolution, ("choices", "metric", "seed")),
    "nsga2": (NSGA2, ("choices", "seed")),
    "reinforce": (ReinforceSearch, ("choices", "metric", "seed")),
    "nasrl": (PolicySearch, ("choices", "node_choices", "metric", "seed")),
    "bananas": (Bananas, ("choices", "metric", "seed")),
    "pnas": (ProgressiveSearch, ("choices", "metric", "seed")),
}
STRATEGY_NAMES = tuple(_STRATEGIES)
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
TRIAL_KEYS = ("max_epochs", "max_steps", "input_shape", "latency_repeats", "retrain", "trainer", "early_stop")
REWARD_KEYS = ("target", "cost", "hard")
STRATEGY_KEYS = ("name", "options")
CLASS_KEYS = ("class_path", "init_args")


def _import(class_path: str) -> Any:
    module_name, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(f"class_path {class_path!r} does not name an importable class ({err})") from None


def _section(recipe: Mapping[str, Any], key: str, valid: Sequence[str]) -> dict[str, Any]:
    """The recipe's ``key`` mapping (``{}`` if absent), holding only ``valid`` keys."""
    value = recipe.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{key} must be a mapping with keys among {', '.join(valid)}; got {value!r}")
    check_keys(value, valid, f"{key} keys")
    return dict(value)


def _class_spec(spec: Any, what: str) -> tuple[Any, dict[str, Any]]:
    """The class a ``class_path``/``init_args`` mapping names and its arguments, checked against its signature
    (without building it: the datamodule is built in each trial)."""
    if not isinstance(spec, Mapping) or "class_path" not in spec:
        raise ValueError(f"{what} must be a mapping with class_path (and init_args); got {spec!r}")
    check_keys(spec, CLASS_KEYS, f"{what} keys")
    cls, init_args = _import(str(spec["class_path"])), dict(spec.get("init_args") or {})
    valid = keyword_parameters(cls)
    if valid is not None:
        check_keys(init_args, valid, f"{what} init_args")
    return cls, init_args


def _instantiate(spec: Any, what: str) -> Any:
    cls, init_args = _class_spec(spec, what)
    return cls(**init_args)


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
        check_keys(item, CLASS_KEYS, "logger keys")
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


def _check_strategy_options(name: str, options: Mapping[str, Any]) -> None:
    """``options`` of the strategy ``name`` are arguments of its class that the recipe reader does not give."""
    cls, given = _STRATEGIES[name]
    accepted = keyword_parameters(cls)
    if accepted is not None:
        check_keys(options, [option for option in accepted if option not in given], "strategy.options keys")


def check_recipe_keys(recipe: Mapping[str, Any]) -> None:
    """Refuse a key of a recipe, complete or not, that no reader knows, at any level; nothing is built.

    The known keys are the reader's (the recipe's own, ``trial``'s, ``reward``'s, ``strategy``'s, ``class_path`` and
    ``init_args``) and the arguments of what they configure: the named classes, the strategy class (its
    ``options``), :class:`~lightning_nas.trials.RetrainFactory` (``trial.retrain``), ``lightning.pytorch.Trainer``
    (``trial.trainer``) and learning-curve stopping (``trial.early_stop``). Which keys a complete recipe needs is
    :func:`plan_recipe`'s to check.

    Raises:
        ValueError: naming the first unknown key, where it is, and the valid keys there.
    """
    check_keys(recipe, sorted(RECIPE_KEYS), "recipe keys")
    trial = _section(recipe, "trial", TRIAL_KEYS)
    _section(recipe, "reward", REWARD_KEYS)
    strategy = _section(recipe, "strategy", STRATEGY_KEYS)
    for key in ("space", "data"):
        if recipe.get(key) is not None:
            _class_spec(recipe[key], key)
    loggers = recipe.get("logger")
    if loggers not in (None, False):
        for logger in loggers if isinstance(loggers, list) else [loggers]:
            _class_spec(logger, "logger")
    if strategy.get("name") in _STRATEGIES:
        _check_strategy_options(strategy["name"], strategy.get("options") or {})
    trainer_arguments = keyword_parameters(pl.Trainer)
    for key, valid in (
        ("early_stop", EARLY_STOP_OPTIONS),
        ("trainer", trainer_arguments),
        ("retrain", RetrainFactory.option_names()),
    ):
        if valid is not None:
            check_keys(trial.get(key) or {}, valid, f"trial.{key} keys")


def build_strategy(spec: Mapping[str, Any], space: Any, seed: int, metric: str) -> SearchStrategy:
    """The recipe's strategy over ``space``'s choices; ``options`` are the strategy class's own arguments."""
    name = str(spec.get("name", ""))
    if name not in _STRATEGIES:
        raise ValueError(f"strategy.name must be one of {', '.join(STRATEGY_NAMES)}; got {name!r}")
    cls, given = _STRATEGIES[name]
    options = dict(spec.get("options") or {})
    _check_strategy_options(name, options)
    arguments = {"choices": space.choices(), "metric": metric, "seed": seed}
    if "node_choices" in given:
        arguments["node_choices"] = space.node_choices()
    return cls(**{key: arguments[key] for key in given}, **options)


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


@dataclass
class _Plan:
    """What a recipe builds before any trial runs."""

    strategy: SearchStrategy
    trial: LightningTrial
    directory: Path
    loggers: list[Logger]
    reward: MnasNetReward | None


def plan_recipe(recipe: Mapping[str, Any]) -> _Plan:
    """Check a recipe mapping and build its strategy, trial and loggers; nothing trains yet.

    Raises:
        ValueError: for a key no reader knows (:func:`check_recipe_keys`), a missing required one, or a bad value;
            the message names it and the valid ones.
    """
    check_recipe_keys(recipe)  # so the sections below are mappings of known keys, or absent
    if "num_trials" not in recipe:
        raise ValueError("the recipe needs num_trials (how many children to train)")
    if recipe.get("data") is None:
        raise ValueError("the recipe needs data (the datamodule's class_path and init_args)")
    trial_spec, reward_spec, strategy_spec = (dict(recipe.get(key) or {}) for key in ("trial", "reward", "strategy"))
    for key in ("num_trials", "concurrency", "num_cpus", "seed"):
        _integer(recipe, key, key)
    for key in ("cpus_per_trial", "gpus_per_trial"):
        _number(recipe, key, key)
    for key in ("max_epochs", "max_steps", "latency_repeats"):
        _integer(trial_spec, key, f"trial.{key}")
    _number(reward_spec, "target", "reward.target")
    data_args = dict(recipe["data"].get("init_args") or {})
    space = _instantiate(recipe.get("space"), "space")
    reward = None
    if reward_spec:
        if "target" not in reward_spec:
            raise ValueError("reward needs target (the cost the MnasNet reward aims at, in the unit of reward.cost)")
        kind = MnasNetReward.hard if reward_spec.get("hard") else MnasNetReward
        reward = kind(target=float(reward_spec["target"]), cost=str(reward_spec.get("cost", "latency_ms")))
    seed = int(recipe.get("seed", 0))
    strategy = build_strategy(strategy_spec, space, seed, "reward" if reward else "accuracy")
    shape = trial_spec.get("input_shape")
    if shape is not None and not (
        isinstance(shape, list) and len(shape) == 3 and all(isinstance(n, int) and n > 0 for n in shape)
    ):
        raise ValueError(f"trial.input_shape must be [channels, height, width] (3 positive integers); got {shape!r}")
    trial = LightningTrial(
        ClassFactory(str(recipe["data"]["class_path"]), data_args),
        RetrainFactory(dict(trial_spec.get("retrain") or {})),
        max_epochs=int(trial_spec.get("max_epochs", 1)),
        max_steps=int(trial_spec.get("max_steps", -1)),
        input_shape=None if shape is None else (shape[0], shape[1], shape[2]),
        latency_repeats=int(trial_spec.get("latency_repeats", 0)),
        trainer_options=dict(trial_spec.get("trainer") or {}),
        early_stop=None if trial_spec.get("early_stop") is None else dict(trial_spec["early_stop"]),
        seed=seed,
    )
    directory = Path(str(recipe.get("directory", "runs/trials")))
    return _Plan(strategy, trial, directory, build_loggers(recipe.get("logger"), directory), reward)


def _integer(section: Mapping[str, Any], key: str, where: str) -> None:
    """Refuse a value of ``section[key]`` (if given) that is not a whole number, naming ``where``."""
    value = section.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"{where} must be an integer; got {value!r}")


def _number(section: Mapping[str, Any], key: str, where: str) -> None:
    """Refuse a value of ``section[key]`` (if given) that is not a number, naming ``where``."""
    value = section.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ValueError(f"{where} must be a number; got {value!r}")


def run_recipe(recipe: Mapping[str, Any], *, resume: bool = False, address: str | None = None) -> TrialsResult:
    """Run a recipe mapping (see the module docs); it is checked whole (:func:`plan_recipe`) before any trial."""
    plan = plan_recipe(recipe)
    return _run(recipe, plan, resume=resume, address=address)


def _run(recipe: Mapping[str, Any], plan: _Plan, *, resume: bool, address: str | None) -> TrialsResult:
    strategy, directory = plan.strategy, plan.directory
    result = run_trials(
        strategy,
        plan.trial,
        directory,
        num_trials=int(recipe["num_trials"]),
        resume=resume,
        concurrency=int(recipe.get("concurrency", 1)),
        cpus_per_trial=float(recipe.get("cpus_per_trial", 1)),
        gpus_per_trial=float(recipe.get("gpus_per_trial", 0)),
        scheduler=recipe.get("scheduler", "fifo"),
        address=address,
        num_cpus=recipe.get("num_cpus"),
        reward=plan.reward,
        loggers=plan.loggers,
        settings={"strategy": dict(recipe.get("strategy") or {})},  # the seed is the trial's (its describe())
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
    try:
        recipe = yaml.safe_load(ns.config.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        parser.error(f"{ns.config} is not valid YAML: {err}")
    if not isinstance(recipe, dict):
        parser.error(f"{ns.config} must hold a YAML mapping")
    if ns.directory:
        recipe["directory"] = ns.directory
    try:
        plan = plan_recipe(recipe)
    except (ValueError, TypeError, ImportError, OSError, RuntimeError) as err:  # a bad recipe, an extra, W&B login
        parser.exit(2, f"lightning-nas trials: error: {ns.config}: {err}\n")
    try:
        result = _run(recipe, plan, resume=ns.resume, address=ns.address)
    except (ValueError, TypeError, ImportError, OSError) as err:  # the directory, the cluster, its resources
        parser.exit(2, f"lightning-nas trials: error: {ns.config}: {err}\n")
    except RuntimeError as err:  # every trial failed, or Ray ended the experiment early: the record says which
        parser.exit(1, f"lightning-nas trials: error: {ns.config}: {err}\n")
    print(f"best trial {result.best.trial_id}: {result.best.metrics} -> {result.directory / 'best_arch.json'}")
    return 0
