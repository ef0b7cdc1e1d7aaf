"""Learned predictors on NAS-Bench-201: Kendall tau on held-out cells against the number of training cells.

Each predictor (:class:`~lightning_nas.predictors.Predictor`) fits on ``n`` cells drawn from the shared 12-epoch
table and ranks 1,000 other cells by predicted CIFAR-10 validation accuracy; the table prints Kendall's tau with
the true accuracies, the mean over ``--trials`` draws, for n = 10, 50, 100, 500, 1000. Beside them: the #params
baseline (the table's ``params_mb``, which needs no training cells) and ridge regression on one-hot codes.

    OMP_NUM_THREADS=2 python benchmarks/nb201_predictors.py
    python benchmarks/nb201_predictors.py --sizes 10 50 --trials 5 --models ridge:path mlp_ensemble:path
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from pathlib import Path

from scipy import stats

from lightning_nas.predictors import OneHotEncoding, PathEncoding, Predictor
from lightning_nas.search import TabularBenchmark
from lightning_nas.spaces import NasBench201Format

DEFAULT_MODELS = [
    "ridge:one-hot",
    "ridge:path",
    "gp:path",
    "random_forest:one-hot",
    "lightgbm:one-hot",
    "xgboost:one-hot",
    "mlp_ensemble:path",
]


def _default_table() -> Path:
    root = os.environ.get("LIGHTNING_NAS_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data"
    return Path(root) / "nasbench201" / "nb201_12epoch.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", type=Path, default=_default_table())
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 100, 500, 1000])
    parser.add_argument("--trials", type=int, default=3, help="training draws per size (mean tau printed)")
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help="model:encoding pairs")
    parser.add_argument("--metric", default="cifar10_valid")
    parser.add_argument("--num-test", type=int, default=1000)
    args = parser.parse_args()

    fmt = NasBench201Format()
    table = TabularBenchmark.load(args.table, fmt)
    encodings = {"one-hot": OneHotEncoding(fmt.choices()), "path": PathEncoding(fmt)}
    cells = list(table)
    random.Random(0).shuffle(cells)
    test, pool = cells[: args.num_test], cells[args.num_test :]
    test_archs = [fmt.parse(c) for c in test]
    truth = [table.value(c, args.metric) for c in test]
    params_tau = stats.kendalltau([table.value(c, "params_mb") for c in test], truth)[0]

    print(
        f"Kendall tau on {len(test)} held-out cells of {args.table.name} ({args.metric}), mean of {args.trials} "
        f"training draws\n"
    )
    print("| predictor | " + " | ".join(f"n={n}" for n in args.sizes) + " | fit+predict s (largest n) |")
    print("| --- | " + " | ".join("---" for _ in args.sizes) + " | --- |")
    print("| #params (no training) | " + " | ".join(f"{params_tau:.3f}" for _ in args.sizes) + " | - |")
    for spec in args.models:
        model, _, encoding = spec.partition(":")
        taus, seconds = [], 0.0
        for n in args.sizes:
            per_trial = []
            for trial in range(args.trials):
                train = random.Random(1000 * trial + n).sample(pool, n)
                start = time.perf_counter()
                predictor = Predictor(encodings[encoding], model, seed=trial)  # type: ignore[arg-type]
                predictor.fit([fmt.parse(c) for c in train], [table.value(c, args.metric) for c in train])
                mean, _ = predictor.predict(test_archs)
                seconds = time.perf_counter() - start
                per_trial.append(stats.kendalltau(mean, truth)[0])
            taus.append(statistics.fmean(per_trial))
        print(f"| {model} ({encoding}) | " + " | ".join(f"{t:.3f}" for t in taus) + f" | {seconds:.1f} |")


if __name__ == "__main__":
    main()
