"""``lightning-nas proxies``: zero-cost proxy scores of a sample of a config's space on its data.

Builds the model and data from ``--config`` (flags this parser does not know pass on to the config, as for
``search``), draws ``--num_archs`` architectures uniformly (seeded), scores each freshly built network on the
config's first validation batch with every proxy, and writes one CSV row per architecture atomically. With
``--table`` (a NAS-Bench-201 table for a NAS-Bench-201 space) it prints each proxy's Spearman and Kendall rank
correlation with ``--table_metric``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

from lightning_nas.arch import atomic_write_text
from lightning_nas.data._download import default_root
from lightning_nas.predictors import ALL_PROXIES, ProxyError, score_architecture
from lightning_nas.sampling import sample_arch, step_generator
from lightning_nas.search import TabularBenchmark, collect_batches
from lightning_nas.spaces.base import SearchSpace

__all__ = ["proxies_main", "rank_correlations"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lightning-nas proxies", description=__doc__)
    parser.add_argument("--config", required=True, help="a training recipe (its space and data are used)")
    parser.add_argument("--num_archs", type=int, default=100, help="architectures to score")
    parser.add_argument("--out", required=True, help="CSV file to write (arch + one column per proxy)")
    parser.add_argument("--proxies", nargs="+", default=list(ALL_PROXIES), help=f"of {', '.join(ALL_PROXIES)}")
    parser.add_argument("--seed", type=int, default=0, help="seeds the sample and every network's weights")
    parser.add_argument(
        "--table", default=None, help="tabular benchmark (a relative path is also tried under $LIGHTNING_NAS_DATA)"
    )
    parser.add_argument("--table_metric", default="cifar10_valid", help="the table column to correlate with")
    return parser


def rank_correlations(scores: Sequence[float], truth: Sequence[float]) -> tuple[float, float]:
    """``(Spearman rho, Kendall tau)`` of ``scores`` against ``truth``."""
    from scipy import stats

    return float(stats.spearmanr(scores, truth)[0]), float(stats.kendalltau(scores, truth)[0])


def _table(path: str, space: SearchSpace, metric: str) -> TabularBenchmark:
    arch_format = getattr(space, "arch_format", None)
    if arch_format is None:
        raise ValueError(f"--table needs a space the table spells (e.g. NasBench201Space); got {type(space).__name__}")
    file = Path(path).expanduser()
    if not file.is_file() and not file.is_absolute():
        file = default_root() / file
        if not file.is_file():
            raise FileNotFoundError(f"--table {path!r} is neither a file here nor under the data root ({file})")
    table = TabularBenchmark.load(file, arch_format)
    table.column(metric)
    return table


def proxies_main(argv: Sequence[str]) -> int:
    """``lightning-nas proxies``."""
    parser = _parser()
    ns, overrides = parser.parse_known_args(list(argv))
    if ns.num_archs < 1:
        parser.error(f"--num_archs must be >= 1, got {ns.num_archs}")
    unknown = [p for p in ns.proxies if p not in ALL_PROXIES]
    if unknown:
        parser.error(f"unknown proxies {unknown}; valid proxies: {', '.join(ALL_PROXIES)}")
    from lightning_nas._search_cli import _build

    try:
        model, datamodule = _build(ns.config, overrides)
        space: SearchSpace = model.space
        table = _table(ns.table, space, ns.table_metric) if ns.table else None
        datamodule.prepare_data()  # a recipe with download: true fetches its data here too, as fit does
        datamodule.setup("fit")
        (batch,) = collect_batches(datamodule.val_dataloader(), datamodule, 1)
        rows, start = [], time.perf_counter()
        for i in range(ns.num_archs):
            arch = sample_arch(space.choices(), step_generator(ns.seed, i, "proxies"))
            try:
                scores = score_architecture(space, arch, batch, ns.proxies, seed=ns.seed)
            except ProxyError as err:  # named, kept out of the ranking, shown
                print(f"skipped: {err}")
                scores = dict.fromkeys(ns.proxies, math.nan)
            rows.append((arch, scores))
        elapsed = time.perf_counter() - start
    except (OSError, ValueError, KeyError) as err:
        parser.exit(2, f"lightning-nas proxies: error: {err}\n")
    _write(Path(ns.out), rows, ns.proxies, space)
    print(f"scored {len(rows)} architectures in {elapsed:.1f} s ({elapsed / len(rows):.3f} s each) -> {ns.out}")
    if table is not None:
        truth = [table.value(arch, ns.table_metric) for arch, _ in rows]
        print(f"| proxy | Spearman | Kendall | vs {ns.table_metric} |")
        print("| --- | --- | --- | --- |")
        for proxy in ns.proxies:
            pairs = [(s[proxy], t) for (_, s), t in zip(rows, truth) if math.isfinite(s[proxy])]
            if len(pairs) < 3:
                print(f"| {proxy} | - | - | {len(pairs)} finite scores |")
                continue
            rho, tau = rank_correlations(*zip(*pairs))
            print(f"| {proxy} | {rho:.3f} | {tau:.3f} | {len(pairs)} archs |")
    return 0


def _write(path: Path, rows: list, proxies: Sequence[str], space: SearchSpace) -> None:
    arch_format = getattr(space, "arch_format", None)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["arch", *proxies])
    for arch, scores in rows:
        text = arch_format.format(arch) if arch_format is not None else json.dumps(arch, sort_keys=True)
        writer.writerow([text, *(repr(scores[p]) for p in proxies)])
    atomic_write_text(path, buffer.getvalue())
