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

* ``cpu``: each method at most about ten minutes on a 2-core machine (one run per core). The cuts, all against the
  benchmark's own settings: a supernet of C=8 and N=1 cell per stage (the paper: C=16, N=5); 10,000 training
  images (``--subset``: 5,000 for the weights, 5,000 for the architecture) seen at 16x16 (each augmented 32x32
  batch average-pooled 2x2, as the benchmark's own ImageNet16-120 is 16x16; see ``_nb201_data.py``), batch 64; an
  architecture learning rate of 3e-3 for the differentiable methods (10x the paper's 3e-4: the run has about a
  quarter of the paper's architecture steps). Epochs (``--epochs`` sets them all): 70 of 78 steps for DARTS-V1,
  PC-DARTS, DrNAS and DARTS- (the paper: 50 of 390); GDAS 175 (the benchmark runs it 240 epochs against DARTS's
  50, and one path per edge makes its step cheap); DARTS-V2 35 (its unrolled step costs about two first-order
  ones); SPOS/RSPS, ENAS and SMASH about the wall time of DARTS-V1 (140, 175 and 105 epochs). Weight-only warm-up
  where the method's own paper has one: PC-DARTS 30% of the epochs (15 of 50, Xu et al., Sec. 4.2) and DrNAS 20%
  (10 of each 50-epoch stage, its NAS-Bench-201 code); the others none, as in their papers. ENAS with 30 weight
  steps and 10 controller steps per phase; SPOS/RSPS with 100 evaluations (evolution: population 20, tournament
  5), each scored on 4 held batches of the architecture half with BatchNorm statistics recalibrated on 4 training
  batches.
* ``paper``: the benchmark's settings for GPUs: C=16, N=5, 32x32, the full 25,000/25,000 split, batch 64, 50 epochs
  (GDAS 240, DrNAS 100), architecture learning rate 3e-4, the same warm-up fractions, SPOS/RSPS with 1,000
  evaluations (evolution: population 50, tournament 10) on 20 held batches; DARTS-V1 and GDAS in the benchmark's
  own search loop (below).

``--reference-loop`` (on in the paper protocol, off in the CPU protocol; ``--no-reference-loop`` turns it off) runs
DARTS-V1 and GDAS as NAS-Bench-201's own scripts ran them (AutoDL-Projects ``exps/algos/DARTS-V1.py``, ``GDAS.py``
and their ``configs/nas-benchmark/algos/*.config``): each step updates the weights first and then the architecture
(DARTS's Algorithm 1, and the other methods' own code, the other way round), with Nesterov momentum. The CPU
protocol's recorded runs were made without it.

``--channels C``, ``--cells-per-stage N`` and ``--image-size S`` change the supernet or the side of its images
(a divisor of 32) in either protocol and nothing else (for example
the CPU protocol at the paper's depth, ``--cells-per-stage 5``: about four times the time per epoch).

The summary ends with the drift tables (the mean count of parameter-free ops in the cell each method would return
at 0%, 10%, ..., 100% of its epochs with that cell's table accuracy; the mean probability of ``skip_connect`` and of
all parameter-free ops in the method's architecture distribution) and the comparison the robust methods exist for:
each robust method's mean table accuracy minus DARTS-V1's, paired by seed, with the standard error of that
difference. ``--out runs.jsonl`` keeps every finished run (one JSON line each, so runs split over processes or cut
short are not lost); ``--report runs*.jsonl`` prints the summary of saved runs. The CPU-protocol runs behind
``docs/nb201-oneshot.md`` (3 seeds of every method) are in ``benchmarks/results/nb201_oneshot_cpu.jsonl``; those at
the paper's depth in ``nb201_oneshot_cpu_n5.jsonl``, and those with the paper's data and step schedule on the CPU
supernet (``--subset 50000 --arch-lr 3e-4`` and the paper's epochs, GDAS 240, DARTS-V1 and DARTS- 50) in
``nb201_oneshot_cpu_paper_steps.jsonl``; GDAS and DARTS-V1 with ``--reference-loop`` in
``nb201_oneshot_cpu_reference_loop.jsonl``; GDAS with ``--channels 16`` (seeds 0-2) or ``--image-size 32`` (seed 0) in
``nb201_oneshot_cpu_gdas_c16.jsonl`` and ``nb201_oneshot_cpu_gdas_32px.jsonl``. Epochs are each method's own: runs
of different methods merge whatever their epochs, while one method's runs must agree on theirs.

    python benchmarks/nb201_oneshot.py --protocol cpu --seeds 3
    python benchmarks/nb201_oneshot.py --protocol cpu --seeds 1 --methods DARTS-V1 GDAS --subset 2000 --epochs 4
    python benchmarks/nb201_oneshot.py --data digits --seeds 1 --epochs 1      # a smoke test of the pipeline
    python benchmarks/nb201_oneshot.py --protocol paper --seeds 3 --accelerator gpu
    python benchmarks/nb201_oneshot.py --report benchmarks/results/nb201_oneshot_cpu.jsonl
    python benchmarks/nb201_oneshot.py --methods DARTS- --subset 50000 --epochs 50 --arch-lr 3e-4  # paper's steps
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _nb201_data import PooledCIFAR10JPEG, data_root, table_path  # noqa: E402

from lightning_nas.callbacks._history import JsonLines  # noqa: E402
from lightning_nas.data import DigitsDataModule  # noqa: E402
from lightning_nas.methods import (  # noqa: E402
    DARTS,
    ENAS,
    GDAS,
    PCDARTS,
    SMASH,
    SPOS,
    DARTSMinus,
    DrNAS,
    NASModule,
)
from lightning_nas.search import (  # noqa: E402
    RandomSearch,
    RegularizedEvolution,
    SupernetEvaluator,
    TabularBenchmark,
    collect_batches,
    run_search,
)
from lightning_nas.spaces import NasBench201Format, NasBench201Space  # noqa: E402

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
ROBUST = ("GDAS", "PC-DARTS", "DrNAS", "DARTS-")
# Weight-only warm-up, as a fraction of the epochs, where the method's own paper has one: PC-DARTS freezes the
# architecture for its first 15 of 50 epochs (Xu et al., ICLR 2020, Sec. 4.2); DrNAS's NAS-Bench-201 search
# updates it from the 10th epoch of each 50-epoch stage (its 201-space/train_search_progressive.py).
WARMUP = {"PC-DARTS": 0.3, "DrNAS": 0.2}
REFERENCE_LOOP = ("DARTS-V1", "GDAS")
"""The methods NAS-Bench-201's own scripts searched (AutoDL-Projects ``exps/algos/DARTS-V1.py`` and ``GDAS.py``,
``configs/nas-benchmark/algos/DARTS.config`` and ``GDAS.config``): each step updates the weights first, then the
architecture, and the weights' SGD uses Nesterov momentum. ``Protocol.reference_loop`` runs them that way."""


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
    image_size: int = 32
    reference_loop: bool = False
    """DARTS-V1 and GDAS as the benchmark's scripts ran them (:data:`REFERENCE_LOOP`): weights first, Nesterov
    momentum. Off in the CPU protocol (its recorded runs: the alphas first, plain momentum), on in the paper's."""

    def epochs_of(self, method: str) -> int:
        return self.epochs_override.get(method, self.epochs)

    def warmup_of(self, method: str) -> int:
        """Weight-only epochs before the architecture moves (the method's paper's share of its epochs)."""
        return round(WARMUP.get(method, 0.0) * self.epochs_of(method))


@dataclass
class Run:
    """One method's search: the cell it returns, the cell it would have returned after each epoch, the wall time."""

    arch: Mapping[str, Any]
    per_epoch: Sequence[Mapping[str, Any]]
    seconds: float
    seed: int = 0
    op_probabilities: Sequence[Mapping[str, float]] = ()
    """After each epoch, per op the mean over edges of the probability the method's architecture distribution gives
    it (the DARTS family: the relaxation's distribution; empty for methods without one)."""


def parameter_free(arch: Mapping[str, Any]) -> int:
    """How many of the cell's six edges carry a parameter-free op."""
    return sum(str(op) in PARAMETER_FREE for op in arch.values())


def mean_probabilities(probabilities: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Per op, the mean over edges of its probability."""
    edges = list(probabilities.values())
    return {op: statistics.fmean(edge[op] for edge in edges) for op in edges[0]}


class _EpochArchs(pl.Callback):
    """Records the architecture a method would return at the end of each training epoch, and the mean probability
    its architecture distribution gives each op."""

    def __init__(self) -> None:
        self.archs: list[dict[str, Any]] = []
        self.op_probabilities: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        assert isinstance(pl_module, NASModule)
        self.archs.append(dict(pl_module.current_arch()))
        probabilities = pl_module.arch_probabilities()
        if probabilities:
            self.op_probabilities.append(mean_probabilities(probabilities))


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
    seconds = time.perf_counter() - start
    return Run(dict(module.current_arch()), record.archs, seconds, op_probabilities=record.op_probabilities)


def _differentiable(build: Callable[..., DARTS], name: str, **options: Any) -> MethodRunner:
    def run(protocol: Protocol, datamodule: pl.LightningDataModule, seed: int) -> Run:
        pl.seed_everything(seed, verbose=False)
        reference_loop = protocol.reference_loop and name in REFERENCE_LOOP
        module = build(
            _space(protocol),
            arch_lr=protocol.arch_lr,
            weight_decay=5e-4,
            arch_warmup_epochs=protocol.warmup_of(name),
            seed=seed,
            channels_last=True,
            weights_first=reference_loop,
            weight_nesterov=reference_loop,
            **options,
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
        epochs = {"GDAS": 175, "DARTS-V2": 35, "SPOS": 140, "ENAS": 175, "SMASH": 105}
        return Protocol(
            channels=8,
            cells_per_stage=1,
            subset=args.subset or 10_000,
            epochs=args.epochs or 70,
            arch_lr=args.arch_lr or 3e-3,
            evaluations=100,
            population=20,
            tournament=5,
            held_batches=4,
            epochs_override={} if args.epochs else epochs,
            image_size=16,
            reference_loop=bool(args.reference_loop),
        )
    return Protocol(
        channels=16,
        cells_per_stage=5,
        subset=args.subset,
        epochs=args.epochs or 50,
        arch_lr=args.arch_lr or 3e-4,
        evaluations=1000,
        population=50,
        tournament=10,
        held_batches=20,
        epochs_override={} if args.epochs else {"GDAS": 240, "DrNAS": 100},
        accelerator=args.accelerator,
        reference_loop=args.reference_loop is not False,
    )


def _datamodule(data: str, protocol: Protocol, seed: int) -> pl.LightningDataModule:
    if data == "digits":  # a smoke test of the pipeline only: the table's accuracies are CIFAR-10's
        return DigitsDataModule(search=True, train_portion=0.5, batch_size=64, seed=seed)
    return PooledCIFAR10JPEG(
        root=str(data_root()),
        image_size=protocol.image_size,
        search=True,
        train_portion=0.5,
        batch_size=64,
        subset=protocol.subset,
        seed=seed,
    )


def _mean_std(values: Sequence[float], digits: int = 2) -> str:
    if not values:
        return "-"
    spread = statistics.pstdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} ± {spread:.{digits}f}"


def _at_fraction(per_epoch: Sequence[Any], fraction: float) -> Any:
    """The entry after ``fraction`` of the epochs (0: the first epoch's end, 1: the last's)."""
    return per_epoch[min(len(per_epoch) - 1, max(0, math.ceil(fraction * len(per_epoch)) - 1))]


def _difference(robust: Mapping[int, float], darts: Mapping[int, float]) -> tuple[float, float, int]:
    """Mean of ``robust - darts`` over the seeds both ran (paired by seed), its standard error, and the seed count."""
    gaps = [robust[seed] - darts[seed] for seed in sorted(set(robust) & set(darts))]
    if not gaps:
        return math.nan, math.nan, 0
    error = statistics.stdev(gaps) / math.sqrt(len(gaps)) if len(gaps) > 1 else 0.0
    return statistics.fmean(gaps), error, len(gaps)


def report(runs: Mapping[str, Sequence[Run]], accuracy: Callable[[Mapping[str, Any]], float]) -> list[str]:
    """The summary's lines: the drift of each method's cell over its epochs and the robust methods' gap to DARTS."""
    lines = ["", "Drift: mean over seeds of the parameter-free ops (of 6) in the cell returned after each share of the"]
    lines.append("epochs, and that cell's table accuracy (cifar10_test, 12 epochs)")
    fractions = [k / 10 for k in range(11)]
    lines.append("| method | " + " | ".join(f"{int(100 * f)}%" for f in fractions) + " | change |")
    lines.append("| --- |" + " --- |" * (len(fractions) + 1))
    for name, method_runs in runs.items():
        if not method_runs or not all(r.per_epoch for r in method_runs):
            continue
        free = [statistics.fmean(parameter_free(_at_fraction(r.per_epoch, f)) for r in method_runs) for f in fractions]
        score = [statistics.fmean(accuracy(_at_fraction(r.per_epoch, f)) for r in method_runs) for f in fractions]
        cells = " | ".join(f"{a:.1f} ({s:.1f})" for a, s in zip(free, score))
        lines.append(f"| {name} | {cells} | {free[-1] - free[0]:+.1f} ({score[-1] - score[0]:+.1f}) |")
    lines += ["", "The op DARTS collapses to: mean over seeds and edges of the probability of skip_connect in the"]
    lines.append("method's architecture distribution (uniform: 0.20), and of all parameter-free ops (uniform: 0.60)")
    lines.append("| method | " + " | ".join(f"{int(100 * f)}%" for f in fractions) + " | change |")
    lines.append("| --- |" + " --- |" * (len(fractions) + 1))
    for name, method_runs in runs.items():
        if not method_runs or not all(r.op_probabilities for r in method_runs):
            continue
        skip, mass = (
            [
                statistics.fmean(
                    sum(_at_fraction(r.op_probabilities, f).get(op, 0.0) for op in ops) for r in method_runs
                )
                for f in fractions
            ]
            for ops in (("skip_connect",), PARAMETER_FREE)
        )
        cells = " | ".join(f"{a:.2f} ({b:.2f})" for a, b in zip(skip, mass))
        lines.append(f"| {name} | {cells} | {skip[-1] - skip[0]:+.2f} ({mass[-1] - mass[0]:+.2f}) |")
    if runs.get("DARTS-V1"):
        darts = {r.seed: accuracy(r.arch) for r in runs["DARTS-V1"]}
        lines += ["", "Robust methods against DARTS-V1 (same seeds, same data): table accuracy difference ± SE"]
        for name in ROBUST:
            if runs.get(name):
                gap, error, seeds = _difference({r.seed: accuracy(r.arch) for r in runs[name]}, darts)
                lines.append(f"  {name:>8}: {gap:+.2f} ± {error:.2f} ({seeds} paired seeds)")
    return lines


def _epochs_of_run(name: str, protocol: Protocol | None) -> int | None:
    """The epochs a saved run of ``name`` trained for (SPOS + evolution and RSPS: their uniform supernet's);
    ``None`` for a record saved without its protocol."""
    if protocol is None:
        return None
    return protocol.epochs_of("SPOS" if name in ("SPOS+evolution", "RSPS") else name)


def _load_runs(paths: Sequence[Path], methods: Sequence[str]) -> dict[str, list[Run]]:
    """The runs saved with ``--out`` in ``paths``, per method in ``methods`` order, each method's runs by seed.

    Runs of different protocols (another supernet, data size or learning rate) are not merged: the summary would mix
    them, so the first difference is named instead. Epochs are each method's own (the CPU protocol gives GDAS 175
    and DARTS-V1 70): runs of different methods merge whatever their epochs, and the runs of one method must agree
    on theirs.
    """
    found: dict[str, dict[int, Run]] = {name: {} for name in methods}
    first: tuple[Path, dict[str, Any]] | None = None
    epochs_of: dict[str, tuple[Path, int | None]] = {}
    for path in paths:
        for record in JsonLines(path).read():
            # every field, a field added since the run was saved at its default (what the run did)
            saved = Protocol(**record["protocol"]) if "protocol" in record else None
            fields = dataclasses.asdict(saved) if saved is not None else {}
            protocol = {k: v for k, v in fields.items() if k not in ("epochs", "epochs_override")}
            name, seed = record["method"], int(record["seed"])
            epochs = _epochs_of_run(name, saved)
            if first is None:
                first = (path, protocol)
            elif protocol != first[1]:
                fields = sorted(k for k in protocol.keys() | first[1].keys() if protocol.get(k) != first[1].get(k))
                raise SystemExit(
                    f"--report: {path} has a {name} run (seed {seed}) of another protocol than {first[0]}'s first "
                    "run: "
                    + ", ".join(f"{k} {protocol.get(k)!r} against {first[1].get(k)!r}" for k in fields)
                    + "; report them separately"
                )
            first_path, first_epochs = epochs_of.setdefault(name, (path, epochs))
            if epochs != first_epochs:
                raise SystemExit(
                    f"--report: {path} has a {name} run (seed {seed}) of {epochs} epochs, {first_path} one of "
                    f"{first_epochs}; report them separately"
                )
            if name in found:
                found[name][seed] = Run(
                    record["arch"], record["per_epoch"], record["seconds"], seed, record["op_probabilities"]
                )
    return {name: [by_seed[seed] for seed in sorted(by_seed)] for name, by_seed in found.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocol", choices=("cpu", "paper"), default="cpu")
    parser.add_argument("--seeds", type=int, default=3, help="runs per method (seeds 0..N-1)")
    parser.add_argument("--first-seed", type=int, default=0, help="run seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--subset", type=int, default=None, help="training images used (both halves together)")
    parser.add_argument("--epochs", type=int, default=None, help="search epochs of every method")
    parser.add_argument(
        "--arch-lr", type=float, default=None, help="the differentiable methods' architecture learning rate"
    )
    parser.add_argument("--channels", type=int, default=None, help="the supernet's C (the protocol's by default)")
    parser.add_argument(
        "--cells-per-stage", type=int, default=None, help="the supernet's N (the protocol's by default)"
    )
    parser.add_argument(
        "--image-size", type=int, default=None, help="the side of the images the supernet sees (cpu: 16, paper: 32)"
    )
    parser.add_argument(
        "--reference-loop",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="DARTS-V1 and GDAS update the weights first and use Nesterov momentum, as NAS-Bench-201's scripts do "
        "(default: on in the paper protocol, off in the cpu protocol)",
    )
    parser.add_argument("--accelerator", default="gpu", help="paper protocol only (the cpu protocol runs on CPU)")
    parser.add_argument("--table", type=Path, default=table_path())
    parser.add_argument(
        "--data", choices=("cifar10-jpeg", "digits"), default="cifar10-jpeg", help="digits: a smoke test only"
    )
    parser.add_argument("--out", type=Path, help="append every finished run to this JSON-lines file")
    parser.add_argument(
        "--report", type=Path, nargs="+", help="print the summary of runs saved with --out (several files: merged)"
    )
    args = parser.parse_args()
    if args.image_size is not None and (args.image_size < 1 or 32 % args.image_size):
        parser.error(f"--image-size must divide 32 (32, 16, 8, 4, 2, 1), got {args.image_size}")
    protocol = _protocol(args.protocol, args)
    if args.channels is not None or args.cells_per_stage is not None or args.image_size is not None:
        protocol = dataclasses.replace(
            protocol,
            channels=args.channels or protocol.channels,
            cells_per_stage=args.cells_per_stage or protocol.cells_per_stage,
            image_size=args.image_size or protocol.image_size,
        )
    if args.data == "digits":
        protocol = dataclasses.replace(protocol, in_channels=1, subset=None, image_size=8)  # all 1,797 images
    table = TabularBenchmark.load(args.table, NasBench201Format())
    arch_format = NasBench201Format()

    def accuracy(arch: Mapping[str, Any]) -> float:
        return table.value(arch_format.format(arch), "cifar10_test")

    if args.report:
        runs = _load_runs(args.report, args.methods)
    else:
        print(f"protocol {args.protocol}: {protocol}\n", flush=True)
        runs = {name: [] for name in args.methods}
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            datamodule = _datamodule(args.data, protocol, seed)
            for name in args.methods:
                run = dataclasses.replace(METHODS[name](protocol, datamodule, seed), seed=seed)
                runs[name].append(run)
                if args.out is not None:
                    record = {"method": name, "seed": seed, "protocol": dataclasses.asdict(protocol)}
                    JsonLines(args.out).append_line(JsonLines.encode(record | dataclasses.asdict(run)))
                trail = " ".join(str(parameter_free(a)) for a in run.per_epoch)
                print(
                    f"seed {seed} {name}: {arch_format.format(run.arch)} test {accuracy(run.arch):.2f}, "
                    f"{run.seconds:.0f} s" + (f"; parameter-free ops per epoch: {trail}" if trail else ""),
                    flush=True,
                )
            _SUPERNETS.clear()

    print("\n| method | table cifar10_test (12 ep) | paper (200 ep) | search s | parameter-free ops (of 6) |")
    print("| --- | --- | --- | --- | --- |")
    for name, method_runs in runs.items():
        if not method_runs:
            continue
        paper = PAPER.get(name)
        print(
            f"| {name} | {_mean_std([accuracy(r.arch) for r in method_runs])} | "
            f"{'-' if paper is None else f'{paper:.2f}'} | {_mean_std([r.seconds for r in method_runs], 0)} | "
            f"{_mean_std([float(parameter_free(r.arch)) for r in method_runs], 1)} |"
        )
    print(f"| best cell in the table | {max(table.column('cifar10_test')):.2f} | {BEST_IN_PAPER:.2f} | - | - |")
    print("\n".join(report(runs, accuracy)))


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # one line per run, not Lightning's banners
    warnings.filterwarnings("ignore", category=UserWarning)
    main()
