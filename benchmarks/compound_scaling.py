"""EfficientNet compound scaling of a DARTS-cell network on real Fashion-MNIST (Tan & Le, ICML 2019, Sec. 3.3).

The base network (B0-like) is a genotype network: depth = cells, width = initial channels, resolution = the input
size (Fashion-MNIST's 28x28 images resized to the resolution inside the network). Two steps, as in the paper:

1. the (alpha, beta, gamma) grid at phi = 1 under ``alpha * beta^2 * gamma^2 ~= 2``, each point one multi-trial run
   of ``run_trials`` (``GridSearch`` over the grid; points whose rounded network repeats are run once);
2. the phi = 0, 1, 2 members (B0-, B1-, B2-like) of the best coefficients, trained for a few epochs; printed with
   their depth, width, resolution, FLOPs, FLOPs ratio against 2^phi, params, accuracy and wall time.

Defaults finish in about 5-10 minutes on one thread (``OMP_NUM_THREADS=1``); ``--no-grid`` skips step 1 and scales
with EfficientNet-B0's coefficients (1.2, 1.1, 1.15). A longer run::

    OMP_NUM_THREADS=1 python benchmarks/compound_scaling.py
    python benchmarks/compound_scaling.py --subset 20000 --epochs 10 --val-batches 100 --grid-epochs 2 --grid-step 0.05

Data: ``$LIGHTNING_NAS_DATA`` (default ``../shared/data`` beside the checkout), ``FashionMNIST/raw``.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_nas.data import FashionMNISTDataModule
from lightning_nas.methods import Retrain
from lightning_nas.search.constraints import count_network_cost
from lightning_nas.trials import LightningTrial, run_trials
from lightning_nas.trials.scaling import GridSearch, ScaledNetwork, coefficient_grid, scale_network

B0_COEFFICIENTS = (1.2, 1.1, 1.15)  # EfficientNet-B0's grid result (paper, Sec. 3.3)
NATIVE = (1, 28, 28)


class ResizedRetrain(Retrain):
    """:class:`~lightning_nas.methods.Retrain` of a genotype whose input is first resized to ``resolution``."""

    def __init__(self, arch: str, *, resolution: int, **options: Any) -> None:
        super().__init__(arch, **options)
        self.resolution = resolution

    def _resize(self, x: Tensor) -> Tensor:
        if x.shape[-1] == self.resolution and x.shape[-2] == self.resolution:
            return x
        return F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", antialias=True)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(self._resize(x))

    def training_loss(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return super().training_loss(self._resize(x), y)


@dataclass
class Setup:
    """Everything a member or a grid point needs (picklable, for the Ray workers)."""

    genotype: str
    depth: int
    width: int
    resolution: int
    divisor: int
    root: str
    subset: int
    grid_subset: int
    batch_size: int
    lr: float

    def member(self, phi: float, alpha: float, beta: float, gamma: float) -> ScaledNetwork:
        return scale_network(
            phi,
            alpha,
            beta,
            gamma,
            depth=self.depth,
            width=self.width,
            resolution=self.resolution,
            divisor=self.divisor,
        )

    def module(self, member: ScaledNetwork) -> ResizedRetrain:
        return ResizedRetrain(
            self.genotype,
            resolution=member.resolution,
            in_channels=1,
            num_classes=10,
            channels=member.width,
            layers=member.depth,
            auxiliary=False,
            drop_path_prob=0.0,
            lr=self.lr,
        )

    def data(self, subset: int) -> FashionMNISTDataModule:
        return FashionMNISTDataModule(
            root=self.root, subset=subset, batch_size=self.batch_size, eval_batch_size=200, augment=False
        )

    # the grid trials' factory and datamodule
    def __call__(self, arch: dict[str, Any]) -> ResizedRetrain:
        return self.module(self.member(1, float(arch["alpha"]), float(arch["beta"]), float(arch["gamma"])))

    def grid_data(self) -> FashionMNISTDataModule:
        return self.data(self.grid_subset)


def _distinct_grid(setup: Setup, step: float, tolerance: float) -> list[dict[str, float]]:
    """The grid points at phi = 1, one per distinct rounded network (the first in grid order)."""
    seen: set[tuple[int, int, int]] = set()
    points = []
    for alpha, beta, gamma in coefficient_grid(step=step, low=1.0, high=1.4, tolerance=tolerance):
        member = setup.member(1, alpha, beta, gamma)
        if (member.depth, member.width, member.resolution) not in seen:
            seen.add((member.depth, member.width, member.resolution))
            points.append({"alpha": alpha, "beta": beta, "gamma": gamma})
    return points


def run_grid(setup: Setup, args: argparse.Namespace) -> tuple[tuple[float, float, float], float]:
    """Step 1: every distinct grid point at phi = 1 as one trial; the best coefficients and the wall time."""
    points = _distinct_grid(setup, args.grid_step, args.grid_tolerance)
    print(f"grid at phi = 1: {len(points)} distinct networks, {args.grid_epochs} epoch(s) each on {setup.grid_subset}")
    trial = LightningTrial(
        setup.grid_data,
        setup,
        max_epochs=args.grid_epochs,
        input_shape=NATIVE,
        trainer_options={"limit_val_batches": args.val_batches},
    )
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as directory:
        result = run_trials(
            GridSearch(points), trial, directory, num_trials=len(points), num_cpus=1, cpus_per_trial=1, progress=True
        )
    wall = time.perf_counter() - start
    print("| alpha | beta | gamma | a*b^2*g^2 | depth | width | res | FLOPs | accuracy |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for record in sorted(result.records, key=lambda r: -r.metrics.get("accuracy", 0.0)):
        a, b, g = (float(record.arch[k]) for k in ("alpha", "beta", "gamma"))
        m = setup.member(1, a, b, g)
        print(
            f"| {a:.2f} | {b:.2f} | {g:.2f} | {a * b * b * g * g:.3f} | {m.depth} | {m.width} | {m.resolution} "
            f"| {record.metrics.get('flops', float('nan')):.3g} | {record.metrics.get('accuracy', float('nan')):.4f} |"
        )
    best = result.best.arch
    return (float(best["alpha"]), float(best["beta"]), float(best["gamma"])), wall


def train_member(setup: Setup, member: ScaledNetwork, epochs: int, val_batches: int, seed: int) -> dict[str, float]:
    """Train one member in-process; its accuracy, FLOPs, params and wall time."""
    pl.seed_everything(seed, verbose=False)
    module = setup.module(member)
    cost = count_network_cost(module, (1, member.resolution, member.resolution))
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=val_batches,
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule=setup.data(setup.subset))
    wall = time.perf_counter() - start
    accuracy = float(trainer.callback_metrics["val/acc"])
    return {"flops": float(cost.flops), "params": float(cost.params), "accuracy": accuracy, "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--genotype", default="DARTS_V2", help="a published genotype name, string or JSON file")
    parser.add_argument("--depth", type=int, default=3, help="cells of the base network")
    parser.add_argument("--width", type=int, default=16, help="initial channels of the base network")
    parser.add_argument("--resolution", type=int, default=14, help="input size of the base network")
    parser.add_argument("--divisor", type=int, default=4, help="widths round to multiples of this")
    parser.add_argument("--subset", type=int, default=4000, help="training images per member")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per member")
    parser.add_argument("--val-batches", type=int, default=10, help="validation batches of 200 test images")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-grid", action="store_true", help="skip the grid; scale with B0's (1.2, 1.1, 1.15)")
    parser.add_argument("--grid-step", type=float, default=0.1)
    parser.add_argument("--grid-tolerance", type=float, default=0.1)
    parser.add_argument("--grid-epochs", type=int, default=1)
    parser.add_argument("--grid-subset", type=int, default=2000, help="training images per grid trial")
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no per-fit "GPU available" lines
    root = os.environ.get("LIGHTNING_NAS_DATA") or str(Path(__file__).resolve().parents[2] / "shared" / "data")
    setup = Setup(
        args.genotype,
        args.depth,
        args.width,
        args.resolution,
        args.divisor,
        root,
        args.subset,
        args.grid_subset,
        args.batch_size,
        args.lr,
    )
    print(f"torch threads: {torch.get_num_threads()}; data: {root}/FashionMNIST; genotype {args.genotype}")
    start = time.perf_counter()
    if args.no_grid:
        coefficients, grid_wall = B0_COEFFICIENTS, 0.0
    else:
        coefficients, grid_wall = run_grid(setup, args)
    alpha, beta, gamma = coefficients
    print(f"\ncoefficients alpha={alpha} beta={beta} gamma={gamma} (a*b^2*g^2 = {alpha * beta**2 * gamma**2:.3f})")
    print(f"members: {args.epochs} epochs on {args.subset} training images, {args.val_batches * 200} test images")
    # d w^2 r^2 / B0's: the FLOPs ratio a network linear in depth would have at the rounded sizes
    print("| member | phi | depth | width | res | FLOPs | FLOPs / B0 | 2^phi | dw^2r^2 / B0 | params | acc | wall s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    base_flops, base = 0.0, setup.member(0, alpha, beta, gamma)
    for phi in (0, 1, 2):
        member = setup.member(phi, alpha, beta, gamma)
        row = train_member(setup, member, args.epochs, args.val_batches, args.seed)
        base_flops = base_flops or row["flops"]
        sizes = (
            (member.depth / base.depth) * (member.width / base.width) ** 2 * (member.resolution / base.resolution) ** 2
        )
        print(
            f"| B{phi}-like | {phi} | {member.depth} | {member.width} | {member.resolution} | {row['flops']:.4g} "
            f"| {row['flops'] / base_flops:.2f} | {2**phi} | {sizes:.2f} | {row['params']:.0f} "
            f"| {row['accuracy']:.4f} | {row['wall_s']:.1f} |",
            flush=True,
        )
    print(f"\ngrid {grid_wall:.0f} s; total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
