"""Supernet ranking quality on NAS-Bench-201: how well do SPOS, ENAS's shared weights and SMASH rank cells?

Each method trains its NAS-Bench-201 supernet on real CIFAR-10 JPEG images for the same wall time; then the same
``--cells`` uniformly sampled cells are scored by each supernet on held-out training images, and the scores are
compared with the table's accuracy (``nasbench201/nb201_12epoch.csv``, column ``cifar10_valid``: 12-epoch training,
so the ranking, not the level, is what matters). Printed per method: Kendall tau and Spearman rho between the
supernet's accuracy and the table's, the precision of the supernet's top 10 (how many of the table's 10 best of the
sampled cells it puts in its own top 10), the table accuracy of the supernet's top-1 cell, the supernet's mean
accuracy over the cells, and ``tau_free``: Kendall tau between the supernet's accuracy and the cell's count of
parameter-free ops (``none``, ``skip_connect``, ``avg_pool_3x3``), printed beside the table's own.

Published reference (Zhao et al., "Few-shot Neural Architecture Search", ICML 2021, NAS-Bench-201 CIFAR-10): a
uniformly trained one-shot supernet ranks cells with Kendall tau about 0.49, few-shot supernets 0.55.

The CPU protocol (defaults; documented because it is far from the benchmark's): a small supernet (``C=8``, one
cell per stage instead of ``C=16``, five), 5,000 training images (a seeded subset of the 50,000) for the weights
and 500 other training images held out for scoring, batch 64 with the datamodule's crop and flip, each method
trained for ``--seconds`` of wall time (the steps each got are printed). The machine's load changes how many
steps fit in that time, so compare methods within one run.

Scoring: each cell's accuracy on the 500 held-out images with BatchNorm in batch-statistics mode (every batch of 250
normalised by its own statistics; running statistics, which average over every trained path, are not used and not
changed; no recalibration). SMASH scores with its generated weights (:meth:`SMASH.rank`); its paper ranks by
validation loss, so its tau by loss is printed too. Ties in accuracy are broken by loss.

    python benchmarks/nb201_ranking.py                          # about 10 minutes on 2 busy CPU cores
    python benchmarks/nb201_ranking.py --seconds 600 --channels 16 --cells-per-stage 5 --cells 200
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import lightning.pytorch as pl
import torch
from scipy import stats
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _nb201_data import PooledCIFAR10JPEG, data_root  # noqa: E402

from lightning_nas.arch import Arch  # noqa: E402
from lightning_nas.methods import ENAS, SMASH, SPOS, NASModule  # noqa: E402
from lightning_nas.methods._child_cost import scoring_mode  # noqa: E402
from lightning_nas.sampling import sample_arch, step_generator  # noqa: E402
from lightning_nas.search import TabularBenchmark, collect_batches  # noqa: E402
from lightning_nas.spaces import NasBench201Format, NasBench201Space  # noqa: E402

Batch = tuple[Tensor, Tensor]

METHODS: dict[str, Callable[[NasBench201Space, int, int], NASModule]] = {
    # SPOS: the paper's SGD recipe, its lr 0.5 at batch 1024 scaled linearly to batch 64 (0.03); no label smoothing
    "SPOS": lambda space, seed, epoch: SPOS(space, lr=0.03, label_smoothing=0.0, seed=seed, channels_last=True),
    # ENAS: one epoch of shared weights per phase as the reference code, 10 controller steps of 5 children each
    "ENAS": lambda space, seed, epoch: ENAS(
        space,
        weight_steps=epoch,
        controller_steps=10,
        controller_samples=5,
        hidden_size=64,
        derive_samples=1,
        seed=seed,
        channels_last=True,
    ),
    # SMASH: the HyperNet generates the 1x1 convolutions (the paper's choice)
    "SMASH": lambda space, seed, epoch: SMASH(space, lr=2e-3, num_ranked=1, seed=seed, channels_last=True),
}


def _data(args: argparse.Namespace) -> PooledCIFAR10JPEG:
    total = args.train_images + args.held_out
    return PooledCIFAR10JPEG(
        root=str(args.data_root),
        image_size=args.image_size,
        search=True,
        subset=total,
        train_portion=args.train_images / total,
        batch_size=args.batch_size,
        eval_batch_size=250,
        seed=args.seed,
    )


def _train(name: str, args: argparse.Namespace) -> tuple[NASModule, int, float]:
    """The method's supernet after ``args.seconds`` of training; with its weight steps and the wall time."""
    pl.seed_everything(args.seed)
    space = NasBench201Space(channels=args.channels, cells_per_stage=args.cells_per_stage)
    epoch = math.ceil(args.train_images / args.batch_size)
    model = METHODS[name](space, args.seed, epoch)
    trainer = pl.Trainer(
        max_time={"seconds": args.seconds},
        max_epochs=100_000,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
    )
    start = time.perf_counter()
    trainer.fit(model, datamodule=_data(args))
    return model, trainer.global_step, time.perf_counter() - start


@torch.no_grad()
def _scores(model: NASModule, cells: Sequence[Arch], batches: Sequence[Batch]) -> list[tuple[float, float]]:
    """``(accuracy, loss)`` of every cell under the supernet, BatchNorm with batch statistics."""
    model.eval()
    if isinstance(model, SMASH):
        ranked = {str(r.arch): (r.accuracy, r.loss) for r in model.rank(cells, batches)}
        return [ranked[str(cell)] for cell in cells]
    results = []
    for cell in cells:
        model.space.activate(cell)
        correct = loss = count = 0.0
        with scoring_mode(model.space):
            for x, y in batches:
                logits = model(x)
                correct += float((logits.argmax(-1) == y).sum())
                loss += float(torch.nn.functional.cross_entropy(logits.float(), y, reduction="sum"))
                count += len(y)
        results.append((correct / count, loss / count))
    return results


def _cells(table: TabularBenchmark, count: int, seed: int) -> list[Arch]:
    """``count`` distinct cells drawn uniformly from the space."""
    cells: dict[str, Arch] = {}
    for k in range(100 * count):
        if len(cells) == count:
            break
        cell = sample_arch(table.choices(), step_generator(seed, k, "ranking-cells"))
        cells.setdefault(str(cell), cell)
    return list(cells.values())


PARAMETER_FREE = ("none", "skip_connect", "avg_pool_3x3")


def _report(
    name: str, scores: list[tuple[float, float]], truth: list[float], cells: Sequence[Arch], steps: int, seconds: float
) -> str:
    accuracy = [a for a, _ in scores]
    free = [sum(op in PARAMETER_FREE for op in cell.values()) for cell in cells]
    tau_free = stats.kendalltau(accuracy, free).statistic
    tau = stats.kendalltau(accuracy, truth).statistic
    rho = stats.spearmanr(accuracy, truth).statistic
    order = sorted(range(len(scores)), key=lambda i: (-scores[i][0], scores[i][1]))
    best_true = set(sorted(range(len(truth)), key=lambda i: -truth[i])[:10])
    precision = len(best_true & set(order[:10])) / 10
    by_loss = stats.kendalltau([-loss for _, loss in scores], truth).statistic
    return (
        f"{name:6s} {steps:6d} {seconds:7.0f} {tau:7.3f} {rho:7.3f} {by_loss:12.3f} {precision:7.1f} "
        f"{truth[order[0]]:13.2f} {100 * sum(accuracy) / len(accuracy):9.1f} {tau_free:9.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seconds", type=float, default=150.0, help="training wall time per method")
    parser.add_argument("--cells", type=int, default=100, help="sampled cells to rank (at least 100 for the figures)")
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--cells-per-stage", type=int, default=1)
    parser.add_argument("--train-images", type=int, default=5000)
    parser.add_argument("--held-out", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--metric", default="cifar10_valid", help="the table's column to rank against")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=32, help="side of the images the supernets see (16: pooled)")
    parser.add_argument("--data-root", type=Path, default=data_root())
    args = parser.parse_args()

    table = TabularBenchmark.load(args.data_root / "nasbench201" / "nb201_12epoch.csv", NasBench201Format())
    cells = _cells(table, args.cells, args.seed)
    truth = [table.value(cell, args.metric) for cell in cells]
    free = [sum(op in PARAMETER_FREE for op in cell.values()) for cell in cells]
    data = _data(args)
    data.setup("fit")
    batches = collect_batches(data.val_dataloader(), data)
    print(
        f"{len(cells)} cells (table {args.metric}: mean {sum(truth) / len(truth):.2f}, best {max(truth):.2f}); "
        f"supernet C={args.channels}, N={args.cells_per_stage}; {args.train_images} training images, "
        f"{sum(len(y) for _, y in batches)} held out; {args.seconds:.0f} s of training per method"
    )
    rows = []
    for name in args.methods:
        model, steps, seconds = _train(name, args)
        rows.append(_report(name, _scores(model, cells, batches), truth, cells, steps, seconds))
        print(rows[-1], flush=True)
    print(
        f"\n{'method':6s} {'steps':>6s} {'train_s':>7s} {'tau':>7s} {'rho':>7s} {'tau_by_loss':>12s} {'P@10':>7s} "
        f"{'top-1 table':>13s}"
    )
    print("\n".join(rows))
    print("mean_acc: the supernet's mean accuracy (%) over the cells; tau_free: Kendall tau between its accuracy and")
    table_free = stats.kendalltau(truth, free).statistic
    print(f"the cell's count of parameter-free ops; the table's own tau_free is {table_free:.3f}")
    print("reference: uniformly trained one-shot supernet tau ~0.49, few-shot 0.55 (NAS-Bench-201 CIFAR-10)")


if __name__ == "__main__":
    main()
