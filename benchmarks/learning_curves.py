"""Learning-curve extrapolation on real short runs: ranking runs early, and stopping hopeless runs in a search.

Records once (``benchmarks/_curve_runs.py``; skipped when ``--curves`` exists) the validation-accuracy curves of
``--runs`` NAS-Bench-201 cells drawn at random from the space, each trained from scratch on a Fashion-MNIST subset
for ``--epochs`` epochs by the package's ``TrainFromScratch`` (Retrain's defaults). Then, in seconds:

1. **Ranking.** After ``k`` observed epochs, Kendall's tau and Spearman's rho with the final accuracy of (a) the
   last observed accuracy and (b) :func:`~lightning_nas.predictors.extrapolate`'s point prediction of the final
   epoch (a fit needs 3 epochs: none at ``k = 2``).
2. **Early stopping in a seeded multi-trial search.** The search visits the runs in a random order (one order per
   seed) and watches each one epoch by epoch; Domhan's rule stops a run once
   ``P(final > best_so_far) < threshold`` (never before ``min_epochs``), where ``best_so_far`` is the best final
   accuracy of the runs that ran all their epochs. Printed: the mean share of epochs saved and the share of orders
   whose search still ends with the best run. The pre-declared setting is ``--min-epochs 3 --threshold 0.05``;
   the sweep below it is printed for context, not to choose a setting.

Both are printed for two observation-noise priors: ``none`` (the library's default: the residuals, or with as many
parameters as epochs the curve's second differences, set the noise) and ``binomial`` (the binomial standard
deviation of an accuracy measured on ``val_size`` images, ``sqrt(y (1 - y) / val_size)``, as the prior noise).
The coverage of the 95% interval on the real runs says which of the two is calibrated.

    OMP_NUM_THREADS=1 python benchmarks/learning_curves.py                # reads benchmarks/results/... if there
    OMP_NUM_THREADS=1 python benchmarks/learning_curves.py --curves /tmp/new.json --runs 30 --epochs 10
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
from pathlib import Path

from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _curve_runs import record  # noqa: E402

from lightning_nas.predictors import CurvePrediction, extrapolate  # noqa: E402

DEFAULT_CURVES = Path(__file__).resolve().parent / "results" / "learning_curves_fmnist_nb201.json"


def _data_root() -> Path:
    root = os.environ.get("LIGHTNING_NAS_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data"
    return Path(root)


def _noise(curve: list[float], val_size: int, mode: str) -> float | None:
    if mode == "none":
        return None
    last = min(max(curve[-1], 1e-3), 1 - 1e-3)
    return math.sqrt(last * (1 - last) / val_size)


def _ranking(curves: list[list[float]], observed: list[int], val_size: int, noise: str) -> None:
    final, epochs = [c[-1] for c in curves], len(curves[0])
    print(
        "\n| epochs seen | Kendall last | Kendall extrapolated | Spearman last | Spearman extrapolated "
        "| 95% interval holds the final |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for k in observed:
        last = [c[k - 1] for c in curves]
        row = [stats.kendalltau(last, final)[0], math.nan, stats.spearmanr(last, final)[0], math.nan, math.nan]
        if k >= 3:
            predictions = [extrapolate(c[:k], epochs, upper=1.0, noise=_noise(c[:k], val_size, noise)) for c in curves]
            predicted = [p.mean for p in predictions]
            row[1], row[3] = stats.kendalltau(predicted, final)[0], stats.spearmanr(predicted, final)[0]
            row[4] = statistics.fmean(p.low <= y <= p.high for p, y in zip(predictions, final))
        print(f"| {k} | " + " | ".join("—" if math.isnan(v) else f"{v:.3f}" for v in row) + " |")


def _predictions(curves: list[list[float]], val_size: int, noise: str) -> list[dict[int, CurvePrediction]]:
    """Every run's prediction after each number of observed epochs (from 3), computed once for all orders."""
    epochs = len(curves[0])
    return [
        {
            seen: extrapolate(c[:seen], epochs, upper=1.0, noise=_noise(c[:seen], val_size, noise))
            for seen in range(3, epochs)
        }
        for c in curves
    ]


def _search(
    curves: list[list[float]],
    predictions: list[dict[int, CurvePrediction]],
    order: list[int],
    min_epochs: int,
    threshold: float,
) -> tuple[int, int]:
    """Epochs spent and the run the search ends with, visiting runs in ``order`` under the stopping rule."""
    spent, best, best_run = 0, None, -1
    for run in order:
        curve = curves[run]
        seen = len(curve)
        if best is not None:
            for m in range(min_epochs, len(curve)):
                if predictions[run][m].probability_above(best) < threshold:
                    seen = m
                    break
        spent += seen
        if seen == len(curve) and (best is None or curve[-1] > best):
            best, best_run = curve[-1], run
    return spent, best_run


def _stopping(
    curves: list[list[float]],
    predictions: list[dict[int, CurvePrediction]],
    seeds: int,
    min_epochs: int,
    threshold: float,
) -> tuple[float, float, float]:
    """(mean share of epochs saved, smallest share saved, share of orders that end with the best run)."""
    final = [c[-1] for c in curves]
    true_best = max(range(len(curves)), key=final.__getitem__)
    total, saved, same = sum(len(c) for c in curves), [], 0
    for seed in range(seeds):
        order = list(range(len(curves)))
        random.Random(seed).shuffle(order)
        spent, found = _search(curves, predictions, order, min_epochs, threshold)
        saved.append(1 - spent / total)
        same += found == true_best
    return statistics.fmean(saved), min(saved), same / seeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--curves", type=Path, default=DEFAULT_CURVES, help="recorded curves (recorded if missing)")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train-size", type=int, default=4000)
    parser.add_argument("--val-size", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0, help="draws the cells")
    parser.add_argument("--observed", type=int, nargs="+", default=[2, 3, 4, 5], help="epochs seen before ranking")
    parser.add_argument("--min-epochs", type=int, default=3)
    parser.add_argument("--threshold", type=float, default=0.05)
    parser.add_argument("--seeds", type=int, default=200, help="search orders for the early-stopping figure")
    parser.add_argument("--noise", choices=("none", "binomial"), nargs="+", default=["none", "binomial"])
    args = parser.parse_args()

    if args.curves.is_file():
        data = json.loads(args.curves.read_text())
    else:
        args.curves.parent.mkdir(parents=True, exist_ok=True)
        data = record(
            args.curves,
            root=_data_root(),
            runs=args.runs,
            epochs=args.epochs,
            train_size=args.train_size,
            val_size=args.val_size,
            seed=args.seed,
        )
    runs, settings = data["runs"], data["settings"]
    curves = [r["curve"] for r in runs]
    final = [c[-1] for c in curves]
    best = max(range(len(runs)), key=final.__getitem__)
    print(
        f"{len(runs)} runs of {settings['epochs']} epochs (Fashion-MNIST {settings['train_size']} train / "
        f"{settings['val_size']} val images, NB201 C={settings['channels']} N=1) from {args.curves}; "
        f"{sum(r['seconds'] for r in runs) / 60:.1f} min of training recorded"
    )
    print(
        f"final accuracies {min(final):.4f}..{max(final):.4f} (median {statistics.median(final):.4f}); "
        f"best run {runs[best]['cell']} {final[best]:.4f}, runner-up {sorted(final)[-2]:.4f}"
    )
    for noise in args.noise:
        print(f"\n## Noise prior: {noise}")
        _ranking(curves, args.observed, settings["val_size"], noise)
        predictions = _predictions(curves, settings["val_size"], noise)
        mean, low, same = _stopping(curves, predictions, args.seeds, args.min_epochs, args.threshold)
        print(
            f"\nEarly stopping (threshold {args.threshold}, min {args.min_epochs} epochs), {args.seeds} search "
            f"orders: {100 * mean:.1f}% of the epochs saved on average (min {100 * low:.1f}%); the search ends "
            f"with the best run in {100 * same:.1f}% of the orders"
        )
        print("\n| min epochs | threshold | epochs saved (mean) | orders ending with the best run |")
        print("| --- | --- | --- | --- |")
        for min_epochs in (3, 4, 5):
            for threshold in (0.01, 0.05, 0.1):
                mean, _, same = _stopping(curves, predictions, args.seeds, min_epochs, threshold)
                print(f"| {min_epochs} | {threshold} | {100 * mean:.1f}% | {100 * same:.1f}% |")


if __name__ == "__main__":
    main()
