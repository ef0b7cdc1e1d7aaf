"""Learning-curve prediction on real short runs: ranking runs early, and stopping hopeless runs in a search.

Records once (``benchmarks/_curve_runs.py``; skipped when ``--curves`` exists) the validation-accuracy curves of
``--runs`` NAS-Bench-201 cells drawn at random from the space, each trained from scratch on 4,000 Fashion-MNIST
images for ``--epochs`` epochs by the package's ``TrainFromScratch`` (Retrain's defaults: SGD lr 0.025, cosine to 0
over the run). Then, in a minute or two, for three predictors of the final accuracy: the parametric curve fit
:func:`~lightning_nas.predictors.extrapolate` with the library's noise prior (``fit``) and with the binomial
noise of ``val_size`` images as prior (``fit+binomial``), and the regression calibrated on finished runs
:class:`~lightning_nas.predictors.CurveRegression` (``regression``; leave-one-out: each run is predicted by the
regression on the other runs):

1. **Ranking.** After ``k`` observed epochs, Kendall's tau and Spearman's rho with the final accuracy of the last
   observed accuracy and of the prediction, a 90% bootstrap interval (over runs) of the Kendall gain, and how
   often the 95% predictive interval holds the final accuracy.
2. **Early stopping in a seeded multi-trial search.** The search visits the runs in a random order (one order per
   seed, ``--seeds`` of them) and watches each one epoch by epoch; a run stops once
   ``P(final > best_so_far) < threshold`` (never before ``min_epochs``), where ``best_so_far`` is the best final
   accuracy of the runs that ran all their epochs. Printed: the mean and smallest share of epochs saved, the
   share of orders whose search still ends with the best run and how far below the best the run it ends with is
   on average, for :func:`~lightning_nas.predictors.should_stop`'s predictors: ``"fit"`` (two noise priors),
   ``"regression"`` (nothing stops before ``min_finished`` runs have finished and trained it) and the default
   ``"auto"`` (the curve fit until then, the regression after; what ``LightningTrial(early_stop={})`` does).

Pre-declared (before the protocol-2 curves were recorded or read): ``--min-epochs 3 --threshold 0.05
--min-finished 5``, 200 orders; the verdict is read from the default ``"auto"`` rule and, for ranking, from the
regression at ``k = 3, 4, 5``. The sweep printed below it is context, not a way to choose a setting. The protocol-1
curves (25.6 min, BN running averages) served to develop the regression; they are in the history:
``git show c4aba41:benchmarks/results/learning_curves_fmnist_nb201.json > old.json``, then ``--curves old.json``.

Recording protocol 2, and why protocol 1 (the first recording) was replaced:

- **Precise BatchNorm statistics.** Protocol 1 evaluated with the running averages of the BN statistics
  (momentum 0.1, 32 steps per epoch at lr 0.025): they lag the weights, and the curves dipped by 10-30 points
  from one epoch to the next (0.752, 0.608, 0.744) while the same weights with re-estimated statistics gave a
  smooth rising curve (checked on two runs; Wu & Johnson, "Rethinking 'Batch' in BatchNorm", 2021, discuss this
  inaccuracy of EMA statistics while the weights change quickly). Protocol 2 re-estimates them on 1,000 fixed
  training images before every validation, so a curve measures its weights, which is what can be extrapolated.
- **A larger validation set.** With 2,000 images the binomial noise of one accuracy (0.9 points at 80%) was
  close to the spread of the final accuracies (about 1.3 points), so the "true" ranking was itself half noise;
  5,000 images (the budget of one recording allowed no more) cut its variance 2.5-fold (0.57 points).
- **Reproducible runs.** Protocol 1 shuffled every run's training data with one generator shared by all runs, so a
  run's data order depended on the runs before it (and on whether the recording had been interrupted); now run
  ``k``'s weights and data order come from ``seed * 1000 + k`` alone.
- **Kept:** the same 25 cells, 10 epochs, 4,000 training images and the cosine schedule. The schedule is what the
  package's children train with; a schedule chosen because the curve families fit it better would flatter the
  predictors on runs nobody makes. The regression needs no curve family: the finished runs had the same schedule.

A second recording, declared before it was made (same settings and verdict; 25 other cells, ``--seed 1``, at a
constant learning rate, ``--schedule constant``), is in
``benchmarks/results/learning_curves_fmnist_nb201_constant_lr.json``.

Two more, declared before they were made (``--seed 2``, ``--seed 3``: 25 other cells each, the cosine schedule),
also keep each epoch's mean training loss and validation loss (``train_loss``, ``val_loss``). On them the verdict
is read from the regression with the training losses as extra features (``regression+train_loss``, printed when a
recording has them): ``benchmarks/results/learning_curves_fmnist_nb201_seed2.json`` and ``..._seed3.json``.
``--sizes 4x1 8x1 4x2 8x2`` records a search over the network's size (``C x N`` drawn per run) as well as its cell;
the one declared before it was made (``--seed 4``, same verdict) is
``benchmarks/results/learning_curves_fmnist_nb201_sizes_seed4.json``. The last two, declared with the regression on
the last epoch's accuracy and both losses (``last+losses``) as the verdict's predictor, are ``..._seed5.json`` and
``..._sizes_seed6.json`` (``--seed 6 --sizes 4x1 8x1 4x2 8x2``). Two 30-epoch recordings, declared before they were
made with the same predictor and verdict read at ``k = 3, 6, 9`` (10-30% of the run), test short observation of
longer runs: ``..._30ep_seed7.json`` (``--seed 7 --epochs 30 --observed 3 6 9``) and ``..._30ep_sizes_seed8.json``
(``--seed 8 --epochs 30 --observed 3 6 9 --sizes 4x1 8x1 4x2 8x2``).
A pair declared with ``regression+train_loss`` as the verdict's predictor (16 runs each):
``..._30ep_seed9.json`` and ``..._30ep_seed10.json``
(``--seed 9`` / ``--seed 10 --runs 16 --epochs 30 --observed 3 6 9``).

A search over the learning rate as well as the cell (``--lr-range 0.005 0.1``: each run's initial learning rate
drawn log-uniformly from it), where the runs train differently and their curves cross. Two recordings of 40 runs,
declared before they were made with ``regression+train_loss+lr`` (the regression with the training losses and the
run's log10(lr) as a static feature) as the verdict's predictor, read at ``k = 3, 4, 5``:
``..._lr_seed11.json`` and ``..._lr_seed12.json`` (``--seed 11`` / ``--seed 12 --runs 40 --lr-range 0.005 0.1``).
Given several ``--curves``, the benchmark reads each and then prints the mean Kendall gain over them with a 90%
bootstrap interval (runs resampled within each recording).

``--prior-curves A B ...``: recordings of earlier searches with the same recipe (settings equal but for the seed;
another recipe is refused). The regression calibrated on all their runs predicts every run of ``--curves``
(ranking), and, as a stopping rule, the regression on their runs and the runs finished so far stops runs from the
search's first finished run on (what ``LightningTrial(early_stop={"prior": [...]})`` does). Two recordings declared
before they were made test it, with the regression on the accuracy and the training loss calibrated on the 75 runs
of seeds 2, 3 and 5 as the verdict's predictor, read at ``k = 2, 3, 4, 5``: ``..._seed13.json`` and
``..._seed14.json`` (``--seed 13`` / ``--seed 14``, 25 runs each, the protocol of seeds 2, 3 and 5).
A pair declared with the same rule calibrated on those five recordings (125 runs) and one number as the ranking
verdict (the gain averaged over ``k = 2..5`` and both recordings, the pooled table's "mean over" row):
``..._seed15.json`` and ``..._seed16.json`` (``--seed 15`` / ``--seed 16 --runs 30``).
The stopping rule at ``--threshold 0.01`` calibrated on those seven (185 runs), declared before they were made:
``..._seed17.json`` and ``..._seed18.json`` (``--seed 17`` / ``--seed 18``, 25 runs each).

    OMP_NUM_THREADS=1 python benchmarks/learning_curves.py                # reads benchmarks/results/... if there
    OMP_NUM_THREADS=1 python benchmarks/learning_curves.py \\
        --curves benchmarks/results/learning_curves_fmnist_nb201_constant_lr.json
    OMP_NUM_THREADS=1 python benchmarks/learning_curves.py --curves /tmp/new.json --runs 30 --epochs 10
    OMP_NUM_THREADS=1 python benchmarks/learning_curves.py --observed 3 4 5 \\
        --curves benchmarks/results/learning_curves_fmnist_nb201_lr_seed11.json \\
        benchmarks/results/learning_curves_fmnist_nb201_lr_seed12.json
    R=benchmarks/results/learning_curves_fmnist_nb201_
    OMP_NUM_THREADS=1 python benchmarks/learning_curves.py --observed 2 3 4 5 \\
        --curves ${R}seed13.json ${R}seed14.json --prior-curves ${R}seed2.json ${R}seed3.json ${R}seed5.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _curve_runs import record  # noqa: E402

from lightning_nas.predictors import CurvePrediction, CurveRegression, extrapolate  # noqa: E402

DEFAULT_CURVES = Path(__file__).resolve().parent / "results" / "learning_curves_fmnist_nb201_precise_bn.json"
Curves = list[list[float]]
Predict = Callable[[int, int], CurvePrediction]
"""``(run, epochs seen) -> prediction of the run's final accuracy``."""


def _sizes(settings: dict) -> str:
    if "sizes" not in settings:
        return f"C={settings['channels']} N=1"
    return "C x N drawn from " + ", ".join(f"{c}x{n}" for c, n in settings["sizes"])


def _data_root() -> Path:
    root = os.environ.get("LIGHTNING_NAS_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data"
    return Path(root)


def _binomial(curve: list[float], val_size: int) -> float:
    last = min(max(curve[-1], 1e-3), 1 - 1e-3)
    return math.sqrt(last * (1 - last) / val_size)


def _fit_predictions(curves: Curves, val_size: int, binomial: bool) -> dict[tuple[int, int], CurvePrediction]:
    """Every run's curve-fit prediction after each number of observed epochs (from 3), computed once."""
    epochs = len(curves[0])
    return {
        (run, seen): extrapolate(c[:seen], epochs, upper=1.0, noise=_binomial(c[:seen], val_size) if binomial else None)
        for run, c in enumerate(curves)
        for seen in range(3, epochs)
    }


Extra = dict[str, Curves]
"""More per-epoch series of every run, by name (``{"train_loss": [run 0's, run 1's, ...]}``)."""


Features = list[list[float]] | None
"""Static features of every run (``[[log10(lr)], ...]`` on a learning-rate search), or none."""


def _regression(
    curves: Curves, extra: Extra, runs: list[int], window: int | None = None, features: Features = None
) -> CurveRegression:
    """The regression on ``runs``' curves, extra series (the last ``window`` epochs of each) and static features."""
    return CurveRegression(
        [curves[j] for j in runs],
        extra={name: [series[j] for j in runs] for name, series in extra.items()},
        features=None if features is None else [features[j] for j in runs],
        window=window,
    )


def _predict(
    model: CurveRegression, curves: Curves, extra: Extra, run: int, seen: int, features: Features = None
) -> CurvePrediction:
    return model.predict(
        curves[run][:seen],
        extra={name: series[run] for name, series in extra.items()},
        features=None if features is None else features[run],
        upper=1.0,
    )


def _leave_one_out(
    curves: Curves, extra: Extra | None = None, window: int | None = None, features: Features = None
) -> Predict:
    """Each run predicted by the regression on all the other runs (with ``extra`` series and static ``features``
    as features too)."""
    extra = extra or {}
    models = [
        _regression(curves, extra, [j for j in range(len(curves)) if j != run], window, features)
        for run in range(len(curves))
    ]
    return lambda run, seen: _predict(models[run], curves, extra, run, seen, features)


Ranked = dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]
"""``k -> (last observed accuracies, predicted finals, finals)`` of one recording's runs."""


def _ranking(curves: Curves, observed: list[int], predict: Predict, first: int) -> Ranked:
    """Print the ranking table; return the arrays behind it (for the pooled figure over several recordings)."""
    final = np.array([c[-1] for c in curves])
    print("| epochs seen | Kendall last | Kendall predicted | Kendall gain (90% bootstrap) | Spearman last ", end="")
    print("| Spearman predicted | 95% interval holds the final |\n| --- | --- | --- | --- | --- | --- | --- |")
    rng = np.random.default_rng(0)
    resamples = [rng.integers(0, len(curves), len(curves)) for _ in range(1000)]
    ranked: Ranked = {}
    for k in observed:
        last = np.array([c[k - 1] for c in curves])
        cells = [
            f"{stats.kendalltau(last, final)[0]:.3f}",
            "—",
            "—",
            f"{stats.spearmanr(last, final)[0]:.3f}",
            "—",
            "—",
        ]
        if k >= first:
            predictions = [predict(run, k) for run in range(len(curves))]
            mean = np.array([p.mean for p in predictions])
            ranked[k] = (last, mean, final)
            gains = [_kendall_gain(mean[r], last[r], final[r]) for r in resamples]
            low, high = np.nanquantile(gains, [0.05, 0.95])
            cells[1] = f"{stats.kendalltau(mean, final)[0]:.3f}"
            cells[2] = f"{_kendall_gain(mean, last, final):+.3f} ({low:+.3f}..{high:+.3f})"
            cells[4] = f"{stats.spearmanr(mean, final)[0]:.3f}"
            cells[5] = f"{statistics.fmean(p.low <= y <= p.high for p, y in zip(predictions, final)):.2f}"
        print(f"| {k} | " + " | ".join(cells) + " |")
    return ranked


def _pooled(ranked: dict[str, list[Ranked]], names: list[str]) -> None:
    """The mean Kendall gain over the recordings, with a 90% bootstrap interval (runs resampled within each)."""
    print(f"\n## Pooled over {len(names)} recordings: {', '.join(names)}\n")
    print("| predictor | k | gain per recording | mean gain (90% bootstrap) |\n| --- | --- | --- | --- |")
    for predictor, recordings in ranked.items():
        if len(recordings) != len(names):
            continue  # not printed for every recording (an older one lacks its series)
        for k in sorted(set.intersection(*(set(r) for r in recordings))):
            rng = np.random.default_rng(0)  # the same resamples for every predictor and k
            gains = [_kendall_gain(pred, last, final) for last, pred, final in (r[k] for r in recordings)]
            boots = []
            for _ in range(1000):
                draws = []
                for last, pred, final in (r[k] for r in recordings):
                    idx = rng.integers(0, len(final), len(final))
                    draws.append(_kendall_gain(pred[idx], last[idx], final[idx]))
                boots.append(np.nanmean(draws))
            low, high = np.nanquantile(boots, [0.05, 0.95])
            per = " / ".join(f"{g:+.3f}" for g in gains)
            print(f"| {predictor} | {k} | {per} | {np.mean(gains):+.3f} ({low:+.3f}..{high:+.3f}) |")
        _pooled_over_k(predictor, recordings)


def _pooled_over_k(predictor: str, recordings: list[Ranked]) -> None:
    """One row: the gain averaged over every ``k`` and recording; a resample draws each recording's runs once."""
    ks = sorted(set.intersection(*(set(r) for r in recordings)))
    if len(ks) < 2:
        return

    def over_k(recording: Ranked, idx: np.ndarray | slice = slice(None)) -> float:
        gains = [_kendall_gain(pred[idx], last[idx], final[idx]) for last, pred, final in (recording[k] for k in ks)]
        return float(np.nanmean(gains))

    rng = np.random.default_rng(0)
    sizes = [len(r[ks[0]][2]) for r in recordings]  # runs per recording (the same at every k)
    boots = [np.nanmean([over_k(r, rng.integers(0, n, n)) for r, n in zip(recordings, sizes)]) for _ in range(1000)]
    low, high = np.nanquantile(boots, [0.05, 0.95])
    per = [over_k(r) for r in recordings]
    print(
        f"| {predictor} | mean over {', '.join(map(str, ks))} | {' / '.join(f'{g:+.3f}' for g in per)} "
        f"| {np.mean(per):+.3f} ({low:+.3f}..{high:+.3f}) |"
    )


def _kendall_gain(predicted: np.ndarray, last: np.ndarray, final: np.ndarray) -> float:
    return float(stats.kendalltau(predicted, final)[0] - stats.kendalltau(last, final)[0])


class _Search:
    """Seeded searches over the recorded runs under one stopping rule."""

    def __init__(
        self,
        curves: Curves,
        fits: dict[tuple[int, int], CurvePrediction] | None,
        min_finished: int | None,
        extra: Extra | None = None,
        window: int | None = None,
        features: Features = None,
        prior: tuple[Curves, Extra] | None = None,
    ) -> None:
        self.curves, self.fits, self.min_finished, self.extra = curves, fits, min_finished, extra or {}
        self.window, self.features, self.prior = window, features, prior
        self._regressions: dict[tuple[int, ...], CurveRegression] = {}

    def prediction(self, run: int, seen: int, finished: list[int]) -> CurvePrediction | None:
        if self.min_finished is not None and len(finished) >= self.min_finished:
            key = tuple(sorted(finished))
            if key not in self._regressions:
                if self.prior is None:
                    model = _regression(self.curves, self.extra, list(key), self.window, self.features)
                else:  # the earlier searches' runs and this search's finished ones
                    curves, extra = self.prior
                    model = CurveRegression(
                        curves + [self.curves[j] for j in key],
                        extra={name: extra[name] + [self.extra[name][j] for j in key] for name in self.extra},
                        window=self.window,
                    )
                self._regressions[key] = model
            return _predict(self._regressions[key], self.curves, self.extra, run, seen, self.features)
        return None if self.fits is None else self.fits[run, seen]

    def run(self, order: list[int], min_epochs: int, threshold: float) -> tuple[int, int]:
        """Epochs spent and the run the search ends with."""
        spent, best, best_run, finished = 0, None, -1, []
        for run in order:
            curve = self.curves[run]
            seen = len(curve)
            if best is not None:
                for m in range(min_epochs, len(curve)):
                    prediction = self.prediction(run, m, finished)
                    if prediction is not None and prediction.probability_above(best) < threshold:
                        seen = m
                        break
            spent += seen
            if seen == len(curve):
                finished.append(run)
                if best is None or curve[-1] > best:
                    best, best_run = curve[-1], run
        return spent, best_run

    def summary(self, seeds: int, min_epochs: int, threshold: float) -> tuple[float, float, float, float, float]:
        """(mean share of epochs saved, smallest share saved, share of orders that end with the best run, mean
        shortfall of the run found from the best final accuracy, share of orders that end with a run whose final
        accuracy equals the best's: different from the third where runs tie, as measured on ``val_size`` images)."""
        final = [c[-1] for c in self.curves]
        true_best = max(range(len(self.curves)), key=final.__getitem__)  # the first of tied runs
        total, saved, same, tied, shortfall = sum(len(c) for c in self.curves), [], 0, 0, []
        for seed in range(seeds):
            order = list(range(len(self.curves)))
            random.Random(seed).shuffle(order)
            spent, found = self.run(order, min_epochs, threshold)
            saved.append(1 - spent / total)
            same += found == true_best
            tied += final[found] == final[true_best]
            shortfall.append(final[true_best] - final[found])
        return statistics.fmean(saved), min(saved), same / seeds, statistics.fmean(shortfall), tied / seeds


def _load(path: Path, args: argparse.Namespace) -> dict:
    if path.is_file():
        return json.loads(path.read_text())
    path.parent.mkdir(parents=True, exist_ok=True)
    return record(
        path,
        root=_data_root(),
        runs=args.runs,
        epochs=args.epochs,
        train_size=args.train_size,
        val_size=args.val_size,
        calibration_size=args.calibration_size,
        seed=args.seed,
        schedule=args.schedule,
        sizes=None if args.sizes is None else [(int(c), int(n)) for c, n in (size.split("x") for size in args.sizes)],
        lr_range=None if args.lr_range is None else tuple(args.lr_range),
    )


def _prior(paths: list[Path], settings: dict, extra: Extra) -> tuple[Curves, Extra]:
    """The runs of earlier recordings of the same recipe (settings equal but for the seed), with the series in
    ``extra``; another recipe's runs are refused, naming the first difference."""
    curves: Curves = []
    series: Extra = {name: [] for name in extra}
    for path in paths:
        data = json.loads(path.read_text())
        theirs, ours = dict(data["settings"], seed=None), dict(settings, seed=None)
        if theirs != ours:
            differ = sorted(k for k in theirs.keys() | ours.keys() if theirs.get(k) != ours.get(k))
            raise SystemExit(
                f"--prior-curves: {path} was recorded with another recipe: "
                + ", ".join(f"{k} {theirs.get(k)!r} against {ours.get(k)!r}" for k in differ)
            )
        for name in extra:
            if not all(name in r for r in data["runs"]):
                raise SystemExit(f"--prior-curves: {path} lacks the per-epoch {name!r} of its runs")
            series[name] += [r[name] for r in data["runs"]]
        curves += [r["curve"] for r in data["runs"]]
    return curves, series


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--curves",
        type=Path,
        nargs="+",
        default=[DEFAULT_CURVES],
        help="recorded curves (recorded if missing); several: each is read, then the pooled ranking gain",
    )
    parser.add_argument("--runs", type=int, default=25)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train-size", type=int, default=4000)
    parser.add_argument("--val-size", type=int, default=5000)
    parser.add_argument("--calibration-size", type=int, default=1000, help="training images for precise BN")
    parser.add_argument("--seed", type=int, default=0, help="draws the cells")
    parser.add_argument("--schedule", choices=("cosine", "constant"), default="cosine", help="for a new recording")
    parser.add_argument(
        "--sizes", nargs="+", help="for a new recording: network sizes CxN drawn per run (e.g. 4x1 8x1 4x2 8x2)"
    )
    parser.add_argument(
        "--lr-range",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="for a new recording: each run's learning rate drawn log-uniformly from [LOW, HIGH]",
    )
    parser.add_argument("--observed", type=int, nargs="+", default=[2, 3, 4, 5, 6, 7], help="epochs seen")
    parser.add_argument("--min-epochs", type=int, default=3)
    parser.add_argument("--threshold", type=float, default=0.05)
    parser.add_argument("--min-finished", type=int, default=5, help="finished runs before the regression is used")
    parser.add_argument("--seeds", type=int, default=200, help="search orders for the early-stopping figure")
    parser.add_argument(
        "--prior-curves",
        type=Path,
        nargs="+",
        default=[],
        help="recordings of earlier searches with the same recipe: the regression calibrated on their runs",
    )
    args = parser.parse_args()
    missing = [path for path in args.curves if not path.is_file()]
    if missing and len(args.curves) > 1:
        parser.error(f"--curves: record one recording at a time; missing: {', '.join(map(str, missing))}")

    start = time.perf_counter()
    ranked: dict[str, list[Ranked]] = {}
    for path in args.curves:
        if len(args.curves) > 1:
            print(f"\n# {path.name}\n")
        for name, recording in _report(path, args).items():
            ranked.setdefault(name, []).append(recording)
    if len(args.curves) > 1:
        _pooled(ranked, [path.name for path in args.curves])
    print(f"\n({time.perf_counter() - start:.0f} s)")


def _report(path: Path, args: argparse.Namespace) -> dict[str, Ranked]:
    """Print one recording's ranking and early-stopping tables; return each predictor's ranking arrays."""
    data = _load(path, args)
    runs, settings = data["runs"], data["settings"]
    curves = [r["curve"] for r in runs]
    # recordings from 2026-12 on also keep each epoch's mean training loss: a feature of the regression beside the
    # curve (named "+train_loss" below); the older ones have only the curve
    extra: Extra = {"train_loss": [r["train_loss"] for r in runs]} if all("train_loss" in r for r in runs) else {}
    # and the validation loss: the regression on the last epoch's accuracy and both losses ("last+losses")
    losses: Extra = {**extra, "val_loss": [r["val_loss"] for r in runs]} if extra else {}
    # a search over the learning rate as well (--lr-range): log10(lr) as the runs' static feature ("+lr")
    lrs: Features = [[math.log10(r["lr"])] for r in runs] if "lr_range" in settings else None
    final = [c[-1] for c in curves]
    ranked = sorted(final)
    ties = final.count(ranked[-1])
    lr_text = "" if lrs is None else f", lr log-uniform in {settings['lr_range'][0]}..{settings['lr_range'][1]}"
    print(
        f"{len(runs)} runs of {settings['epochs']} epochs (Fashion-MNIST {settings['train_size']} train / "
        f"{settings['val_size']} val images, NB201 {_sizes(settings)}{lr_text}, protocol "
        f"{settings.get('protocol', 1)}) from {path.name}; {sum(r['seconds'] for r in runs) / 60:.1f} min "
        f"of training recorded\nfinal accuracies {ranked[0]:.4f}..{ranked[-1]:.4f} (median "
        f"{statistics.median(final):.4f}); best {ranked[-1]:.4f}, runner-up {ranked[-2]:.4f}"
        + (f" ({ties} runs tie for the best)" if ties > 1 else "")
    )
    fits = {binomial: _fit_predictions(curves, settings["val_size"], binomial) for binomial in (False, True)}
    predictors: dict[str, tuple[Predict, int]] = {
        "fit": (lambda run, seen: fits[False][run, seen], 3),
        "fit+binomial": (lambda run, seen: fits[True][run, seen], 3),
        "regression (leave-one-out)": (_leave_one_out(curves), 1),
    }
    if extra:
        predictors["regression+train_loss (leave-one-out)"] = (_leave_one_out(curves, extra), 1)
        predictors["regression, last epoch+losses (leave-one-out)"] = (_leave_one_out(curves, losses, 1), 1)
    if lrs is not None:
        predictors["regression+lr (leave-one-out)"] = (_leave_one_out(curves, features=lrs), 1)
        predictors["regression+train_loss+lr (leave-one-out)"] = (_leave_one_out(curves, extra, features=lrs), 1)
    prior = _prior(args.prior_curves, settings, extra) if args.prior_curves else None
    if prior is not None:
        prior_name = f"regression{'+train_loss' if extra else ''}, calibrated on {len(prior[0])} earlier runs"
        model = CurveRegression(prior[0], extra=prior[1])
        predictors[prior_name] = (lambda run, seen: _predict(model, curves, extra, run, seen), 1)
    rankings: dict[str, Ranked] = {}
    for name, (predict, first) in predictors.items():
        print(f"\n## Ranking by {name}\n")
        rankings[name] = _ranking(curves, [k for k in args.observed if k < settings["epochs"]], predict, first)

    rules = {
        '"fit" (Domhan)': _Search(curves, fits[False], None),
        '"fit", binomial noise prior': _Search(curves, fits[True], None),
        f'"regression" (Baker: the first {args.min_finished} finished runs train it)': _Search(
            curves, None, args.min_finished
        ),
        f'"auto" (should_stop\'s default: "fit" until {args.min_finished} runs finished, then "regression")': _Search(
            curves, fits[False], args.min_finished
        ),
    }
    if extra:
        rules['"regression+train_loss" (the same, with the mean training losses as features)'] = _Search(
            curves, None, args.min_finished, extra
        )
        rules['"last+losses" (the regression on the last epoch\'s accuracy, validation and training loss)'] = _Search(
            curves, None, args.min_finished, losses, 1
        )
    if lrs is not None:
        rules['"regression+lr" (the regression with log10(lr) as a static feature)'] = _Search(
            curves, None, args.min_finished, features=lrs
        )
        rules['"regression+train_loss+lr" (with the training losses and log10(lr))'] = _Search(
            curves, None, args.min_finished, extra, features=lrs
        )
    if prior is not None:
        rules[f'"{prior_name}" (and the runs finished so far; from the first run)'] = _Search(
            curves, None, 0, extra, prior=prior
        )
    print(
        f"\n## Early stopping: min_epochs {args.min_epochs}, threshold {args.threshold}, {args.seeds} search orders\n"
    )
    print(
        "| predictor | epochs saved (mean) | epochs saved (min) | orders ending with the best run "
        "| mean shortfall from the best final (points) | orders ending with the best final (ties count) |"
        "\n| --- | --- | --- | --- | --- | --- |"
    )
    for name, search in rules.items():
        mean, low, same, shortfall, tied = search.summary(args.seeds, args.min_epochs, args.threshold)
        print(
            f"| {name} | {100 * mean:.1f}% | {100 * low:.1f}% | {100 * same:.1f}% | {100 * shortfall:.2f} "
            f"| {100 * tied:.1f}% |"
        )
    print("\nContext only (not used to pick the setting): other settings, per predictor\n")
    print("| predictor | min epochs | threshold | epochs saved (mean) | orders ending with the best run |")
    print("| --- | --- | --- | --- | --- |")
    for name, search in list(rules.items())[2:]:
        for min_epochs in (3, 5):
            for threshold in (0.01, 0.05):
                mean, _, same, _, _ = search.summary(args.seeds, min_epochs, threshold)
                print(f"| {name.split(' (')[0]} | {min_epochs} | {threshold} | {100 * mean:.1f}% | {100 * same:.1f}% |")
    return rankings


if __name__ == "__main__":
    main()
