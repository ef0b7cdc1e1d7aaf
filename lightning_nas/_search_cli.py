"""``lightning-nas search`` and ``lightning-nas lut``: post-training search over a supernet, latency tables.

Both rebuild the model (and data) from the training run's config through :class:`~lightning_nas.cli.NASCLI`;
flags this parser does not know (e.g. ``--data.init_args.subset=2000``) are passed on to it.

``search`` launched on several processes (``torchrun --nproc_per_node N -m lightning_nas search ...``) spreads the
evaluation: every rank runs the same strategy with the same seed, scores each architecture on its own shard of the
held batches, and the counts are summed over ranks, so the result equals a one-process run's; rank 0 writes it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import yaml
from torch.utils.data import DataLoader

from lightning_nas._safe_io import load_checkpoint
from lightning_nas.arch import Arch, atomic_write_text
from lightning_nas.methods.base import check_checkpoint_origin
from lightning_nas.predictors.learned import PREDICTORS
from lightning_nas.search import (
    NSGA2,
    CoarseToFineSearch,
    Constraint,
    CostModel,
    LatencyTable,
    RandomSearch,
    RegularizedEvolution,
    SearchStrategy,
    SupernetEvaluator,
    TabularBenchmark,
    Trial,
    build_latency_table,
    collect_batches,
    pareto_front,
    with_metrics,
)
from lightning_nas.spaces.base import SearchSpace

__all__ = ["lut_main", "search_main"]

STRATEGIES = ("random", "evolution", "nsga2", "coarse_to_fine", "bananas", "pnas")


def _build(config: str, overrides: Sequence[str]) -> tuple[Any, Any]:
    from lightning_nas.cli import NASCLI

    with warnings.catch_warnings():  # the command line is this command's, and args its model-and-data part
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended to run from within")
        cli = NASCLI(args=["--config", _without_run_keys(config), *overrides], run=False)
    if not isinstance(getattr(cli.model, "space", None), SearchSpace):
        raise ValueError(f"the model of {config!r} ({type(cli.model).__name__}) has no lightning_nas search space")
    return cli.model, cli.datamodule


_RUN_KEYS = ("ckpt_path", "weights_only")
"""Keys of ``fit``'s own in the ``config.yaml`` a run saves, which the model-and-data parser here does not take."""


def _without_run_keys(config: str) -> str:
    """``config``, or, for a run's saved ``config.yaml`` (which also holds ``ckpt_path``), its text without them."""
    path = Path(config)
    if not path.is_file():
        return config  # a shipped recipe's name
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return config  # the CLI's parser names what is wrong with it
    if not isinstance(loaded, dict) or not set(_RUN_KEYS) & set(loaded):
        return config
    return yaml.safe_dump({key: value for key, value in loaded.items() if key not in _RUN_KEYS}, sort_keys=False)


def _load_user_evaluator(spec: str) -> Callable[[Arch], Any]:
    module_name, _, attribute = spec.partition(":")
    if not attribute:
        raise ValueError(f"--evaluator must be 'module:function', got {spec!r}")
    evaluator = getattr(importlib.import_module(module_name), attribute, None)
    if not callable(evaluator):
        raise ValueError(f"--evaluator {spec!r} is not a callable")
    return evaluator


def _init_distributed() -> tuple[int, int, torch.device]:
    """Rank, world size and device: a process group when launched by ``torchrun`` with more than one process."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    if torch.cuda.is_available():
        return rank, world, torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return rank, world, torch.device("cpu")


def _state_differences(own: Mapping[str, torch.Tensor], saved: Mapping[str, Any]) -> str:
    """How two state dicts differ, counted, with the first tensor of each kind."""
    kinds = {
        "missing from the checkpoint": [key for key in own if key not in saved],
        "not in this model": [key for key in saved if key not in own],
        "of another shape": [
            key for key in own if key in saved and tuple(own[key].shape) != tuple(getattr(saved[key], "shape", ()))
        ],
    }
    return "; ".join(f"{len(keys)} tensors {kind}, e.g. {keys[0]}" for kind, keys in kinds.items() if keys)


def _supernet_evaluator(
    model: Any, datamodule: Any, ns: argparse.Namespace, rank: int, world: int, device: torch.device
) -> SupernetEvaluator:
    checkpoint = load_checkpoint(ns.ckpt_path, mmap=False)
    check_checkpoint_origin(checkpoint, method=type(model).__name__, space=type(model.space).__name__)
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError:  # the same method and space class, built with other sizes or ops
        raise ValueError(
            f"the checkpoint {ns.ckpt_path!r} holds a supernet of another shape than --config {ns.config!r} builds "
            f"({_state_differences(model.state_dict(), checkpoint['state_dict'])}); pass the config it was trained "
            "with (its run directory's config.yaml) or the same overrides"
        ) from None
    model.space.to(device)
    datamodule.prepare_data()  # a recipe with download: true fetches its data here too, as fit does
    datamodule.setup("fit")
    held = collect_batches(datamodule.val_dataloader(), datamodule, ns.num_batches)
    if len(held) < world:
        raise ValueError(f"--num_batches gives {len(held)} held batches, fewer than the {world} processes")
    train = DataLoader(datamodule.train_dataset, batch_size=datamodule.batch_size, shuffle=False)
    calibration = [x.to(device) for x, _ in collect_batches(train, datamodule, ns.calibration_batches)]
    shard = [(x.to(device), y.to(device)) for x, y in held[rank::world]]
    return SupernetEvaluator(model.space, shard, calibration_batches=calibration, distributed=world > 1)


def _table_evaluator(space: SearchSpace, ns: argparse.Namespace) -> Callable[[Arch], dict[str, float]]:
    """Look architectures up in a tabular benchmark: ``accuracy`` is ``--table_metric``, every column is kept."""
    arch_format = getattr(space, "arch_format", None)
    if arch_format is None:
        raise ValueError(
            f"--table needs a space whose architectures the table spells (one with an arch_format, e.g. "
            f"NasBench201Space); the config's space is {type(space).__name__}"
        )
    table = TabularBenchmark.load(ns.table, arch_format)
    if ns.table_metric is None:
        raise ValueError(f"--table needs --table_metric, one of the table's columns: {', '.join(table.columns)}")
    table.column(ns.table_metric)  # a column the table lacks is refused here, naming the columns it has

    def lookup(arch: Arch) -> dict[str, float]:
        row = table.query(arch)
        return {**row, "accuracy": row[ns.table_metric]}

    return lookup


def _objectives(text: str) -> dict[str, Any]:
    objectives = {}
    for item in text.split(","):
        name, _, mode = item.partition(":")
        if mode not in ("max", "min"):
            raise ValueError(f"--objectives items must be name:max or name:min, got {item!r}")
        objectives[name] = mode
    return objectives


def _strategy(ns: argparse.Namespace, space: SearchSpace, constraints: list[Constraint]) -> SearchStrategy:
    choices = space.choices()
    if ns.strategy == "random":
        return RandomSearch(choices, constraints=constraints, seed=ns.seed)
    if ns.strategy == "coarse_to_fine":
        return CoarseToFineSearch(
            choices, levels=ns.levels, num_mutations=ns.num_mutations, constraints=constraints, seed=ns.seed
        )
    if ns.strategy == "bananas":
        from lightning_nas.search.bananas import Bananas

        return Bananas(choices, predictor=ns.predictor, constraints=constraints, seed=ns.seed)
    if ns.strategy == "pnas":
        from lightning_nas.search.pnas import ProgressiveSearch

        return ProgressiveSearch(
            choices, beam_size=ns.beam_size, predictor=ns.predictor, constraints=constraints, seed=ns.seed
        )
    if ns.strategy == "evolution":
        sample = min(ns.sample_size, ns.population_size)
        return RegularizedEvolution(
            choices, population_size=ns.population_size, sample_size=sample, constraints=constraints, seed=ns.seed
        )
    return NSGA2(
        choices,
        objectives=_objectives(ns.objectives),
        population_size=ns.population_size,
        constraints=constraints,
        seed=ns.seed,
    )


def _plot(trials: list[Trial], front: list[Trial], x: str, y: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 4))
    axes.scatter([t.metrics[x] for t in trials], [t.metrics[y] for t in trials], s=10, c="0.7", label="evaluated")
    ordered = sorted(front, key=lambda t: t.metrics[x])
    axes.plot([t.metrics[x] for t in ordered], [t.metrics[y] for t in ordered], "o-", c="C3", label="Pareto front")
    axes.set(xlabel=x, ylabel=y, title=f"{len(trials)} architectures")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _search_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lightning-nas search",
        description="Search a trained supernet (or a tabular benchmark, or a user evaluator) for the best "
        "architecture or a Pareto front. Unknown flags go to the training config's parser "
        "(e.g. --data.init_args.subset=2000).",
    )
    parser.add_argument("--config", required=True, help="the YAML the supernet was trained with")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ckpt_path", help="checkpoint of the trained supernet (SPOS, CARS, ...)")
    source.add_argument("--evaluator", help="'module:function' mapping an arch to metrics, instead of a supernet")
    source.add_argument("--table", help="a tabular benchmark (CSV/JSON, e.g. NAS-Bench-201) to look archs up in")
    parser.add_argument("--table_metric", help="the --table column searched as accuracy, e.g. cifar10_valid")
    parser.add_argument("--strategy", choices=STRATEGIES, default="evolution")
    parser.add_argument("--num_evaluations", type=int, default=100)
    parser.add_argument("--population_size", type=int, default=20)
    parser.add_argument("--sample_size", type=int, default=5, help="tournament size of regularized evolution")
    parser.add_argument("--levels", type=int, default=3, help="coarse_to_fine: grid levels per dimension")
    parser.add_argument("--num_mutations", type=int, default=1, help="coarse_to_fine: choices changed per mutation")
    parser.add_argument(
        "--predictor", choices=PREDICTORS, default="mlp_ensemble", help="bananas / pnas: the surrogate model"
    )
    parser.add_argument("--beam_size", type=int, default=10, help="pnas: cells kept per level")
    parser.add_argument("--objectives", default="accuracy:max,params:min", help="NSGA-II objectives, name:max|min")
    parser.add_argument("--max_params", type=float, help="constraint: at most this many parameters")
    parser.add_argument("--max_flops", type=float, help="constraint: at most this many multiply-adds per image")
    parser.add_argument("--latency_table", help="JSON from `lightning-nas lut`, for --max_latency_ms")
    parser.add_argument("--max_latency_ms", type=float, help="constraint: predicted latency at most this")
    parser.add_argument("--image_size", type=int, default=32, help="image side for counting params and FLOPs")
    parser.add_argument("--num_batches", type=int, default=10, help="held validation batches per evaluation")
    parser.add_argument("--calibration_batches", type=int, default=4, help="training batches for BN recalibration")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output_dir", default="search_results")
    parser.add_argument("--overwrite", action="store_true", help="replace the results an earlier search left there")
    return parser


RESULT_FILES = ("best_architecture.json", "pareto_front.json", "history.json", "pareto_front.png")


def search_main(argv: Sequence[str]) -> int:
    """``lightning-nas search``."""
    parser = _search_parser()
    ns, overrides = parser.parse_known_args(list(argv))
    if ns.num_evaluations < 1:
        parser.error(f"--num_evaluations must be >= 1, got {ns.num_evaluations}")
    if (ns.max_latency_ms is None) != (ns.latency_table is None):
        parser.error("--max_latency_ms and --latency_table go together")
    earlier = [name for name in RESULT_FILES if (Path(ns.output_dir) / name).exists()]
    if earlier and not ns.overwrite:
        parser.error(
            f"--output_dir {ns.output_dir!r} holds an earlier search's {', '.join(earlier)}; pass --overwrite to "
            "replace them or choose another --output_dir"
        )
    rank, world, device = _init_distributed()
    interrupted = False
    try:
        model, datamodule = _build(ns.config, overrides)
        space: SearchSpace = model.space
        costs = CostModel(space, image_size=ns.image_size)
        if ns.evaluator:
            evaluate = _load_user_evaluator(ns.evaluator)
        elif ns.table:
            evaluate = _table_evaluator(space, ns)
        else:
            evaluate = _supernet_evaluator(model, datamodule, ns, rank, world, device)
        constraints = [costs.constraint(n, v) for n, v in (("params", ns.max_params), ("flops", ns.max_flops)) if v]
        if ns.latency_table:
            constraints.append(LatencyTable.load(ns.latency_table).constraint(space, ns.max_latency_ms))
        strategy = _strategy(ns, space, constraints)
        evaluate = with_metrics(evaluate, params=costs.params, flops=costs.flops)
        try:
            for _ in range(ns.num_evaluations):
                arch = strategy.ask()
                strategy.tell(arch, evaluate(arch))
        except KeyboardInterrupt:  # Ctrl-C: what was evaluated so far is written, not lost
            interrupted = True
    except (OSError, ValueError, KeyError) as err:  # ConstraintError is a ValueError naming the best value found
        parser.exit(2, f"lightning-nas search: error: {err}\n")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if not interrupted:
        return _write_results(strategy, Path(ns.output_dir)) if rank == 0 else 0
    done = len(strategy.history)
    print(f"lightning-nas search: interrupted after {done} of {ns.num_evaluations} evaluations", file=sys.stderr)
    if rank == 0 and done:
        _write_results(strategy, Path(ns.output_dir))
    return 130  # what a shell reports for a process ended by Ctrl-C


def _write_results(strategy: SearchStrategy, output: Path) -> int:
    objectives = (
        strategy.objectives if isinstance(strategy, NSGA2) else {strategy.metric: strategy.mode, "params": "min"}
    )
    front = pareto_front(strategy.history, objectives)
    best = strategy.best()
    atomic_write_text(output / "best_architecture.json", json.dumps(best.arch, indent=2) + "\n")
    front_json = [t.to_dict() for t in sorted(front, key=lambda t: t.metrics["params"])]
    atomic_write_text(output / "pareto_front.json", json.dumps(front_json, indent=2) + "\n")
    atomic_write_text(output / "history.json", json.dumps(strategy.state_dict()["history"], indent=1) + "\n")
    _plot(strategy.history, front, "params", strategy.metric, output / "pareto_front.png")
    print(
        f"best {strategy.metric} {best.metrics[strategy.metric]:.4f} ({best.metrics['params']:.0f} params): "
        f"{best.arch}\nPareto front of {len(front)} architectures; written to {output}/"
        "{best_architecture,pareto_front,history}.json and pareto_front.png"
    )
    return 0


def lut_main(argv: Sequence[str]) -> int:
    """``lightning-nas lut``: time every block of a config's space on this device and save the table."""
    parser = argparse.ArgumentParser(
        prog="lightning-nas lut",
        description="Build a latency lookup table for the space of a training config on this device.",
    )
    parser.add_argument("--config", required=True, help="a training YAML whose model holds the space")
    parser.add_argument("--output", required=True, help="JSON file to write")
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--device", default="cpu", help="torch device to time on, e.g. cpu or cuda")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--max_archs", type=int, default=500)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    ns, overrides = parser.parse_known_args(list(argv))
    output = Path(ns.output)
    if output.is_dir():  # checked before the timing, which takes minutes
        parser.error(f"--output {ns.output!r} is a directory; give the JSON file to write")
    if output.exists() and not ns.overwrite:
        parser.error(f"--output {ns.output!r} exists; pass --overwrite to replace it or choose another --output")
    try:
        model, _ = _build(ns.config, overrides)
        space: SearchSpace = model.space.to(ns.device)
        shape = (ns.batch_size, space.in_channels, ns.image_size, ns.image_size)
        table = build_latency_table(
            space, shape, warmup=ns.warmup, repeats=ns.repeats, max_archs=ns.max_archs, clock=ns.clock
        )
    except (OSError, ValueError, RuntimeError) as err:
        parser.exit(2, f"lightning-nas lut: error: {err}\n")
    path = table.save(ns.output)
    print(
        f"{len(table.entries)} blocks of {table.space['class']} timed on {table.device} at input {shape}; "
        f"overhead {table.overhead_ms:.3f} ms; written to {path}"
    )
    for check in table.validation:
        predicted, measured = check["predicted_ms"], check["measured_ms"]
        print(
            f"  held-out arch: predicted {predicted:.3f} ms, measured {measured:.3f} ms "
            f"({100 * (predicted - measured) / measured:+.1f}%)"
        )
    return 0
