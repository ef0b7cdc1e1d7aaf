"""Learning-curve extrapolation on real short runs: ranking runs early, and stopping hopeless runs in a search.

Records (or reads, ``--curves``) the validation-accuracy curves of ``--runs`` NAS-Bench-201 cells trained from
scratch on a Fashion-MNIST subset for ``--epochs`` epochs (C=8, N=1 networks, SGD with momentum and a cosine
schedule; a plain loop, which is what the Retrain module runs, without Lightning's overhead). Then:

1. **Ranking.** From the first ``m`` epochs, Kendall's tau with the final accuracy of (a) the last observed
   accuracy and (b) :func:`~lightning_nas.predictors.extrapolate`'s prediction of the final epoch.
2. **Early stopping.** A seeded search visits the runs in a random order and watches each epoch by epoch;
   :func:`~lightning_nas.predictors.should_stop` (best so far = the best final accuracy of the runs completed
   before) may stop a run. Printed: the share of epochs saved and whether the search still ends with the best
   run, over ``--seeds`` orders.

    OMP_NUM_THREADS=2 python benchmarks/learning_curves.py --curves /tmp/fmnist_curves.json   # records, then reuses
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import time
from pathlib import Path

import torch
from scipy import stats
from torch import nn

from lightning_nas.arch import atomic_write_text
from lightning_nas.data import load_fashion_mnist
from lightning_nas.predictors import extrapolate, should_stop
from lightning_nas.search import TabularBenchmark
from lightning_nas.spaces import NasBench201Format, NasBench201Network


def _data_root() -> Path:
    root = os.environ.get("LIGHTNING_NAS_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data"
    return Path(root)


def _record(args: argparse.Namespace) -> dict[str, list[float]]:
    train_all, val_all = load_fashion_mnist(_data_root(), train=True), load_fashion_mnist(_data_root(), train=False)
    g = torch.Generator().manual_seed(0)
    train = train_all.subset(torch.randperm(len(train_all), generator=g)[: args.train_size])
    val = val_all.subset(torch.randperm(len(val_all), generator=g)[: args.val_size])
    x_train, y_train = (train.images.float() / 255 - 0.286) / 0.353, train.labels
    x_val, y_val = (val.images.float() / 255 - 0.286) / 0.353, val.labels
    table = TabularBenchmark.load(args.table, NasBench201Format())
    # cells with at least one convolution: all-pooling cells cannot learn and would make the ranking trivial
    cells = [c for c in table if "conv" in c]
    cells = random.Random(args.seed).sample(cells, args.runs)
    curves: dict[str, list[float]] = {}
    for k, cell in enumerate(cells):
        torch.manual_seed(k)
        net = NasBench201Network(cell, in_channels=1, channels=8, cells_per_stage=1)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True)
        steps = args.epochs * math.ceil(len(x_train) / 128)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
        curve, start = [], time.perf_counter()
        for _ in range(args.epochs):
            net.train()
            for idx in torch.randperm(len(x_train)).split(128):
                optimizer.zero_grad()
                nn.functional.cross_entropy(net(x_train[idx]), y_train[idx]).backward()
                optimizer.step()
                schedule.step()
            net.eval()
            with torch.no_grad():
                correct = sum(
                    int((net(xb).argmax(1) == yb).sum()) for xb, yb in zip(x_val.split(500), y_val.split(500))
                )
            curve.append(correct / len(x_val))
        curves[cell] = curve
        print(f"run {k}: {cell} final {curve[-1]:.4f} ({time.perf_counter() - start:.0f} s)", flush=True)
    return curves


def _search(curves: list[list[float]], order: list[int], args: argparse.Namespace) -> tuple[int, int]:
    """Epochs spent and the run the search ends with, watching runs in ``order`` and stopping by the rule."""
    epochs, best, best_run = 0, None, -1
    for run in order:
        curve = curves[run]
        for seen in range(1, len(curve) + 1):
            if should_stop(curve[:seen], best, len(curve), min_epochs=args.min_epochs, upper=1.0):
                break
        epochs += seen
        if seen == len(curve) and (best is None or curve[-1] > best):
            best, best_run = curve[-1], run
    return epochs, best_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--curves", type=Path, default=None, help="JSON of recorded curves (written if missing)")
    parser.add_argument("--table", type=Path, default=_data_root() / "nasbench201" / "nb201_12epoch.csv")
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train-size", type=int, default=3000)
    parser.add_argument("--val-size", type=int, default=2000)
    parser.add_argument("--observed", type=int, nargs="+", default=[3, 4, 5], help="epochs seen before ranking")
    parser.add_argument("--min-epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=100, help="search orders for the early-stopping figure")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    if args.curves is not None and args.curves.is_file():
        recorded = json.loads(args.curves.read_text())
    else:
        recorded = _record(args)
        if args.curves is not None:
            atomic_write_text(args.curves, json.dumps(recorded, indent=1))
    cells, curves = list(recorded), list(recorded.values())
    final = [c[-1] for c in curves]
    epochs = len(curves[0])
    print(f"\n{len(curves)} Fashion-MNIST runs of {epochs} epochs; final accuracies {min(final):.3f}..{max(final):.3f}")
    print("\n| epochs seen | Kendall(last observed, final) | Kendall(extrapolated, final) |")
    print("| --- | --- | --- |")
    for m in args.observed:
        last = [c[m - 1] for c in curves]
        predicted = [extrapolate(c[:m], epochs, upper=1.0).mean for c in curves]
        print(f"| {m} | {stats.kendalltau(last, final)[0]:.3f} | {stats.kendalltau(predicted, final)[0]:.3f} |")

    total, saved, same = epochs * len(curves), [], 0
    true_best = max(range(len(curves)), key=final.__getitem__)
    for seed in range(args.seeds):
        order = list(range(len(curves)))
        random.Random(seed).shuffle(order)
        spent, found = _search(curves, order, args)
        saved.append(1 - spent / total)
        same += found == true_best
    print(
        f"\nEarly stopping (should_stop, threshold 0.05, min {args.min_epochs} epochs), {args.seeds} search orders: "
        f"{100 * statistics.fmean(saved):.1f}% of the {total} epochs saved (min {100 * min(saved):.1f}%), "
        f"best run {cells[true_best]} found in {same}/{args.seeds} orders"
    )


if __name__ == "__main__":
    main()
