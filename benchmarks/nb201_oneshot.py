"""Every one-shot method of the project searches the NAS-Bench-201 cell on CIFAR-10; the table judges what it finds.

Each method searches the NB201 cell on the real CIFAR-10 JPEG images (the 50,000 training images halved into a
weight half and an architecture half, as the benchmark's search runs do), the found cell is looked up in the
shipped 12-epoch table (``nasbench201/nb201_12epoch.csv``), and the script prints, mean ± std over seeds: the
table's CIFAR-10 test accuracy of the found cell, the search wall time, the number of parameter-free ops (``none``,
``skip_connect``, ``avg_pool_3x3``) in the found cell, and the paper's row beside it (CIFAR-10 test after 200
epochs, NAS-Bench-201 Table 5 and the methods' own papers: DARTS 54.30, ENAS 54.30, RSPS 87.66, SETN 87.64,
GDAS 93.61, PC-DARTS 93.41, DARTS- 93.80, DrNAS 94.36; best cell 94.37). It also prints, per epoch, the mean count
of parameter-free ops in the cell each method would return then (the drift DARTS is known for).

The table holds 12-epoch accuracies (``cifar10_test`` of the 12-epoch schedule), lower than the paper's 200-epoch
figures: compare the ranking, not the numbers. The paper row is the reference, not a target.

Methods are a dict (``METHODS``): adding one is one entry, a function ``(protocol, datamodule, seed) -> Run``.
SPOS + evolution and random search with weight sharing (RSPS) share one uniformly trained supernet per seed
(the same training, as in the benchmark's RSPS); each reports its training plus its own search time. SMASH trains
its HyperNet on the weight half (one random cell per batch) and returns the best of ``evaluations`` random cells
ranked by their validation loss with generated weights (on two validation batches after each epoch).

Protocols (``--protocol``):

* ``cpu``: each method at most about ten minutes on a 2-core machine: a supernet of C=8 and N=1 cell per stage
  (the paper: C=16, N=5), ``--subset`` training images (2,000 by default: 1,000 for the weights, 1,000 for the
  architecture), batch 64, ``--epochs`` epochs (10 by default), an architecture learning rate of 3e-3 for the
  differentiable methods (10x the paper's 3e-4, to make up for about 1/120 of the paper's architecture steps),
  ENAS with 30 weight steps and 10 controller steps per phase, SPOS/RSPS with 100 evaluations (evolution: population
  20, tournament 5), each scored on 4 held batches of the architecture half with BatchNorm statistics
  recalibrated on 4 training batches.
* ``paper``: the benchmark's settings for GPUs: C=16, N=5, the full 25,000/25,000 split, batch 64, 50 epochs
  (GDAS 250, DrNAS 100), architecture learning rate 3e-4, SPOS/RSPS with 1,000 evaluations (evolution: population
  50, tournament 10) on 20 held batches.

    python benchmarks/nb201_oneshot.py --protocol cpu --seeds 3
    python benchmarks/nb201_oneshot.py --protocol cpu --seeds 1 --methods DARTS-V1 GDAS --subset 2000 --epochs 4
    python benchmarks/nb201_oneshot.py --protocol paper --seeds 3 --accelerator gpu
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import statistics
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from lightning_nas.data import CIFAR10JPEGDataModule, DigitsDataModule
from lightning_nas.methods import DARTS, ENAS, GDAS, PCDARTS, SMASH, SPOS, DARTSMinus, DrNAS, NASModule
from lightning_nas.search import (
    RandomSearch,
    RegularizedEvolution,
    SupernetEvaluator,
    TabularBenchmark,
    collect_batches,
    run_search,
)
from lightning_nas.spaces import NasBench201Format, NasBench201Space

PARAMETER_FREE = ("none", "skip_connect", "avg_pool_3x3")
PAPER = {  # CIFAR-10 test accuracy after 200 epochs (NAS-Bench-201 Table 5; the robust methods' own papers)
    "DARTS-V1": 54.30,
    "DARTS-V2": 54.30,
    "GDAS": 93.61,
    "PC-DARTS": 93.41,
    "DrNAS": 94.36,
    "DARTS-": 93.80,
    "ENAS": 54.30,
    "SPOS+evolution": None,
    "RSPS": 87.66,
    "SMASH": None,
}
BEST_IN_PAPER = 94.37


@dataclass(frozen=True)
class Protocol:
    """What a method may spend: the supernet, the data, the epochs, and the search after a supernet is trained."""

    channels: int
    cells_per_stage: int
    subset: int | None
    epochs: int
    arch_lr: float
    evaluations: int
    population: int
    tournament: int
    held_batches: int
    epochs_override: dict[str, int] = field(default_factory=dict)
    accelerator: str = "cpu"
    in_channels: int = 3

    def epochs_of(self, method: str) -> int:
        return self.epochs_override.get(method, self.epochs)


@dataclass
class Run:
    """One method's search: the cell it returns, the per-epoch cells, and the wall time."""

    arch: Mapping[str, Any]
    per_epoch: Sequence[Mapping[str, Any]]
    seconds: float


def parameter_free(arch: Mapping[str, Any]) -> int:
    """How many of the cell's six edges carry a parameter-free op."""
    return sum(str(op) in PARAMETER_FREE for op in arch.values())


class _EpochArchs(pl.Callback):
    """Records the architecture a method would return at the end of each training epoch."""

    def __init__(self) -> None:
        self.archs: list[dict[str, Any]] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        assert isinstance(pl_module, NASModule)
        self.archs.append(dict(pl_module.current_arch()))


def _space(protocol: Protocol) -> NasBench201Space:
    return NasBench201Space(
        in_channels=protocol.in_channels, channels=protocol.channels, cells_per_stage=protocol.cells_per_stage
    )


def _fit(module: NASModule, datamodule: pl.LightningDataModule, protocol: Protocol, epochs: int) -> Run:
    record = _EpochArchs()
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator=protocol.accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=2,
        callbacks=[record],
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    return Run(dict(module.current_arch()), record.archs, time.perf_counter() - start)


def _differentiable(build: Callable[..., DARTS], name: str, **options: Any) -> MethodRunner:
    def run(protocol: Protocol, datamodule: pl.LightningDataModule, seed: int) -> Run:
        pl.seed_everything(seed, verbose=False)
        module = build(
            _space(protocol), arch_lr=protocol.arch_lr, weight_decay=5e-4, seed=seed, channels_last=True, **options
        )
        return _fit(module, datamodule, protocol, protocol.epochs_of(name))

    return run


def _enas(protocol: Protocol, datamodule: pl.LightningDataModule, seed: int) -> Run:
    pl.seed_everything(seed, verbose=False)
    cpu = protocol.accelerator == "cpu"
    module = ENAS(
        _space(protocol),
        weight_steps=30 if cpu else 400,
        controller_steps=10 if cpu else 30,
        controller_samples=5 if cpu else 10,
        derive_samples=10 if cpu else 100,
        seed=seed,
        channels_last=True,
    )
    return _fit(module, datamodule, protocol, protocol.epochs_of("ENAS"))


_SUPERNETS: dict[tuple[int, int], tuple[SPOS, float]] = {}


def _uniform_supernet(protocol: Protocol, datamodule: pl.LightningDataModule, seed: int) -> tuple[SPOS, float]:
    """One uniformly trained supernet per seed, shared by SPOS + evolution and RSPS (trained on first use)."""
    key = (seed, id(datamodule))
    if key not in _SUPERNETS:
        pl.seed_everything(seed, verbose=False)
        module = SPOS(_space(protocol), lr=0.05, weight_decay=5e-4, label_smoothing=0.0, seed=seed, channels_last=True)
        run = _fit(module, datamodule, protocol, protocol.epochs_of("SPOS"))
        _SUPERNETS[key] = (module, run.seconds)
    return _SUPERNETS[key]


def _weight_sharing_search(evolution: bool) -> MethodRunner:
    def run(protocol: Protocol, datamodule: pl.LightningDataModule, seed: int) -> Run:
        module, train_seconds = _uniform_supernet(protocol, datamodule, seed)
        start = time.perf_counter()
        space = module.space
        weight_half = datamodule.train_dataloader().iterables["train"]  # the search loader's weight half
        calibration = [x for x, _ in collect_batches(weight_half, datamodule, protocol.held_batches)]
        held = collect_batches(datamodule.val_dataloader(), datamodule, protocol.held_batches)
        evaluate = SupernetEvaluator(space, held, calibration_batches=calibration)
        strategy = (
            RegularizedEvolution(
                space.choices(), population_size=protocol.population, sample_size=protocol.tournament, seed=seed
            )
            if evolution
            else RandomSearch(space.choices(), seed=seed)
        )
        best = run_search(strategy, evaluate, protocol.evaluations)
        return Run(best.arch, [], train_seconds + time.perf_counter() - start)

    return run


def _smash(protocol: Protocol, datamodule: pl.LightningDataModule, seed: int) -> Run:
    """SMASH trains its HyperNet on the weight half, one random cell per batch; every validation ranks the same
    ``protocol.evaluations`` random cells by their loss with generated weights; the best-ranked cell is returned."""
    pl.seed_everything(seed, verbose=False)
    module = SMASH(_space(protocol), lr=2e-3, num_ranked=protocol.evaluations, seed=seed, channels_last=True)
    return _fit(module, datamodule, protocol, protocol.epochs_of("SMASH"))


MethodRunner = Callable[[Protocol, pl.LightningDataModule, int], Run]

METHODS: dict[str, MethodRunner] = {
    "DARTS-V1": _differentiable(DARTS, "DARTS-V1", order="first"),
    "DARTS-V2": _differentiable(DARTS, "DARTS-V2", order="second"),
    "GDAS": _differentiable(GDAS, "GDAS"),
    "PC-DARTS": _differentiable(PCDARTS, "PC-DARTS", partial_channels=4),
    "DrNAS": _differentiable(DrNAS, "DrNAS"),
    "DARTS-": _differentiable(DARTSMinus, "DARTS-"),
    "ENAS": _enas,
    "SPOS+evolution": _weight_sharing_search(evolution=True),
    "RSPS": _weight_sharing_search(evolution=False),
    "SMASH": _smash,
}


def _protocol(name: str, args: argparse.Namespace) -> Protocol:
    if name == "cpu":
        return Protocol(
            channels=8,
            cells_per_stage=1,
            subset=args.subset or 2000,
            epochs=args.epochs or 10,
            arch_lr=3e-3,
            evaluations=100,
            population=20,
            tournament=5,
            held_batches=4,
        )
    epochs = args.epochs or 50
    return Protocol(
        channels=16,
        cells_per_stage=5,
        subset=args.subset,
        epochs=epochs,
        arch_lr=3e-4,
        evaluations=1000,
        population=50,
        tournament=10,
        held_batches=20,
        epochs_override={} if args.epochs else {"GDAS": 250, "DrNAS": 100},
        accelerator=args.accelerator,
    )


def _datamodule(data: str, protocol: Protocol, seed: int) -> pl.LightningDataModule:
    if data == "digits":  # a smoke test of the pipeline only: the table's accuracies are CIFAR-10's
        return DigitsDataModule(search=True, train_portion=0.5, batch_size=64, seed=seed)
    datamodule: pl.LightningDataModule = CIFAR10JPEGDataModule(
        root=str(_data_root()), search=True, train_portion=0.5, batch_size=64, subset=protocol.subset, seed=seed
    )
    return datamodule


def _mean_std(values: list[float], digits: int = 2) -> str:
    if not values:
        return "-"
    spread = statistics.pstdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} ± {spread:.{digits}f}"


def _data_root() -> Path:
    """``$LIGHTNING_NAS_DATA``, else ``../shared/data`` beside the checkout."""
    return Path(os.environ.get("LIGHTNING_NAS_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


def _default_table() -> Path:
    return _data_root() / "nasbench201" / "nb201_12epoch.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocol", choices=("cpu", "paper"), default="cpu")
    parser.add_argument("--seeds", type=int, default=3, help="runs per method (seeds 0..N-1)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--subset", type=int, default=None, help="training images used (both halves together)")
    parser.add_argument("--epochs", type=int, default=None, help="search epochs of every method")
    parser.add_argument("--accelerator", default="gpu", help="paper protocol only (the cpu protocol runs on CPU)")
    parser.add_argument("--table", type=Path, default=_default_table())
    parser.add_argument(
        "--data", choices=("cifar10-jpeg", "digits"), default="cifar10-jpeg", help="digits: a smoke test only"
    )
    args = parser.parse_args()
    protocol = _protocol(args.protocol, args)
    if args.data == "digits":
        protocol = dataclasses.replace(protocol, in_channels=1, subset=None)  # all 1,797 images
    table = TabularBenchmark.load(args.table, NasBench201Format())
    arch_format = NasBench201Format()
    print(f"protocol {args.protocol}: {protocol}\n", flush=True)

    runs: dict[str, list[Run]] = {name: [] for name in args.methods}
    for seed in range(args.seeds):
        datamodule = _datamodule(args.data, protocol, seed)
        for name in args.methods:
            run = METHODS[name](protocol, datamodule, seed)
            runs[name].append(run)
            accuracy = table.value(arch_format.format(run.arch), "cifar10_test")
            print(
                f"seed {seed} {name}: {arch_format.format(run.arch)} test {accuracy:.2f}, {run.seconds:.0f} s",
                flush=True,
            )
        _SUPERNETS.clear()

    print("\n| method | table cifar10_test (12 ep) | paper (200 ep) | search s | parameter-free ops (of 6) |")
    print("| --- | --- | --- | --- | --- |")
    for name, method_runs in runs.items():
        accuracies = [table.value(arch_format.format(r.arch), "cifar10_test") for r in method_runs]
        paper = PAPER.get(name)
        print(
            f"| {name} | {_mean_std(accuracies)} | {'-' if paper is None else f'{paper:.2f}'} | "
            f"{_mean_std([r.seconds for r in method_runs], 0)} | "
            f"{_mean_std([float(parameter_free(r.arch)) for r in method_runs], 1)} |"
        )
    print(f"| best cell in the table | {max(table.column('cifar10_test')):.2f} | {BEST_IN_PAPER:.2f} | - | - |")

    print("\nparameter-free ops in the cell returned after each epoch (mean over seeds):")
    for name, method_runs in runs.items():
        if method_runs and method_runs[0].per_epoch:
            epochs = min(len(r.per_epoch) for r in method_runs)
            drift = [statistics.fmean(parameter_free(r.per_epoch[e]) for r in method_runs) for e in range(epochs)]
            print(f"  {name:>10}: " + " ".join(f"{value:.1f}" for value in drift))


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # one line per run, not Lightning's banners
    warnings.filterwarnings("ignore", category=UserWarning)
    main()
