"""Zero-cost proxies on NAS-Bench-201 cells against the shared 12-epoch table, beside the published correlations.

Samples ``--num-archs`` cells of the table (seeded, without replacement), builds each cell's network
(:class:`~lightning_nas.spaces.NasBench201Network`, freshly initialised from the seed; by default C=16 and N=1 cell
per stage, smaller than the benchmark's N=5 so that 1,000 cells fit in minutes on a CPU; ``--cells 5`` is
Abdelfattah et al.'s network), scores it on one batch of real CIFAR-10 training images (the JPEG copy, read with
``lightning_nas.data.load_cifar10_jpeg``) and prints each proxy's Spearman and Kendall rank correlation with the
table's CIFAR-10 validation accuracy, with the seconds per cell. A cell whose proxy is not finite (NASWOT of a
cell that gives two images one ReLU code) is left out of that proxy's ranking and counted.

Published values (Abdelfattah et al., ICLR 2021, Table 1, Spearman vs the 200-epoch CIFAR-10 accuracy; NASWOT from
Mellor et al., ICML 2021): synflow 0.74, jacob_cov 0.73, grad_norm 0.58, snip 0.58, fisher 0.36, #params 0.74,
FLOPs 0.75, NASWOT 0.79. The shared table holds 12-epoch accuracies, which favour cells that learn fast; large cells
gain most from long training, so size-like proxies (synflow, #params, FLOPs) are expected to correlate less with it.

    OMP_NUM_THREADS=2 python benchmarks/nb201_proxies.py                       # 1000 cells, C=16, N=1, batch 64
    python benchmarks/nb201_proxies.py --num-archs 200 --cells 5 --images random
"""

from __future__ import annotations

import argparse
import math
import os
import random
import time
from pathlib import Path

import torch
from scipy import stats

from lightning_nas.data import load_cifar10_jpeg
from lightning_nas.predictors import PROXIES, ProxyError, compute_proxies
from lightning_nas.search import TabularBenchmark, count_cost
from lightning_nas.spaces import NasBench201Format, NasBench201Network, NasBench201Space

PUBLISHED = {
    "synflow": 0.74,
    "jacob_cov": 0.73,
    "grad_norm": 0.58,
    "snip": 0.58,
    "fisher": 0.36,
    "params": 0.74,
    "flops": 0.75,
    "naswot": 0.79,
}
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def _default_table() -> Path:
    root = os.environ.get("LIGHTNING_NAS_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data"
    return Path(root) / "nasbench201" / "nb201_12epoch.csv"


def _batch(kind: str, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    if kind == "random":
        return torch.randn(size, 3, 32, 32, generator=generator), torch.randint(10, (size,), generator=generator)
    dataset = load_cifar10_jpeg(_default_table().parents[1], train=True)
    picks = torch.randperm(len(dataset), generator=generator)[:size]
    images = torch.stack([dataset[int(i)][0] for i in picks]).float() / 255
    labels = torch.tensor([int(dataset[int(i)][1]) for i in picks])
    mean, std = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    return (images - mean) / std, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", type=Path, default=_default_table())
    parser.add_argument("--num-archs", type=int, default=1000)
    parser.add_argument("--channels", type=int, default=16, help="C of the network")
    parser.add_argument("--cells", type=int, default=1, help="N, cells per stage (5 in the benchmark)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--images", choices=("cifar10", "random"), default="cifar10")
    parser.add_argument("--metric", default="cifar10_valid")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    table = TabularBenchmark.load(args.table, NasBench201Format())
    cells = random.Random(args.seed).sample(list(table), args.num_archs)
    batch = _batch(args.images, args.batch_size, args.seed)
    counter = NasBench201Space(channels=args.channels, cells_per_stage=args.cells)
    scores: dict[str, list[float]] = {name: [] for name in [*PROXIES, "flops"]}
    skipped: dict[str, int] = dict.fromkeys(scores, 0)
    start = time.perf_counter()
    for k, cell in enumerate(cells):
        torch.manual_seed(args.seed * 100003 + k)
        network = NasBench201Network(cell, channels=args.channels, cells_per_stage=args.cells)
        for name in PROXIES:
            try:
                scores[name].append(compute_proxies(network, batch, [name], seed=args.seed, label=cell)[name])
            except ProxyError:
                scores[name].append(math.nan)
                skipped[name] += 1
        scores["flops"].append(float(count_cost(counter, NasBench201Format().parse(cell), image_size=32).flops))
        if (k + 1) % 100 == 0:
            print(f"{k + 1} cells scored, {(time.perf_counter() - start) / (k + 1):.3f} s each", flush=True)
    elapsed = time.perf_counter() - start
    truth = [table.value(cell, args.metric) for cell in cells]

    print(
        f"{args.num_archs} NAS-Bench-201 cells (C={args.channels}, N={args.cells}), one batch of {args.batch_size} "
        f"{'CIFAR-10 training images' if args.images == 'cifar10' else 'random images'}; rank correlation with "
        f"{args.metric} of {args.table.name}\n"
    )
    print("| proxy | Spearman | Kendall | published Spearman (200 epochs) | cells left out (non-finite) |")
    print("| --- | --- | --- | --- | --- |")
    for name, values in scores.items():
        pairs = [(v, t) for v, t in zip(values, truth) if math.isfinite(v)]
        rho = stats.spearmanr(*zip(*pairs))[0]
        tau = stats.kendalltau(*zip(*pairs))[0]
        print(f"| {name} | {rho:.3f} | {tau:.3f} | {PUBLISHED[name]:.2f} | {skipped[name]} |")
    print(f"\n{elapsed / args.num_archs:.3f} s per cell for all {len(scores)} proxies ({elapsed:.0f} s in all)")


if __name__ == "__main__":
    main()
