"""BANANAS-style search: exact resume, the budgeted tabular protocol, and (slow) BANANAS and PNAS beating REA on
NAS-Bench-201 over 100 seeds."""

from __future__ import annotations

import functools
import multiprocessing
import statistics
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
import torch

from lightning_nas.arch import Choice
from lightning_nas.predictors import CellAdjacencyEncoding, OneHotEncoding, PathEncoding
from lightning_nas.search import (
    Bananas,
    ProgressiveSearch,
    RegularizedEvolution,
    SearchStrategy,
    TabularBenchmark,
    default_encoding,
    run_budgeted_search,
)
from lightning_nas.spaces import DartsCellSpace, NasBench201Format
from tests.predictors._ask_tell import additive_value, ask_and_tell
from tests.tiny import tiny_nb201_table

CHOICES = [Choice(f"c{i}", (0, 1, 2)) for i in range(6)]


@pytest.mark.parametrize("acquisition", ["its", "ucb"])
def test_resume_mid_batch_continues_exactly(acquisition: str) -> None:
    def build(seed: int) -> Bananas:
        return Bananas(CHOICES, predictor="ridge", acquisition=acquisition, num_init=5, batch_size=4, seed=seed)

    expected = ask_and_tell(build(0), 17)
    first = build(0)
    head = ask_and_tell(first, 11)  # 5 random + 1.5 batches: the queue holds 2 proposals
    assert len(first.queue) == 2
    resumed = build(123)
    resumed.load_state_dict(first.state_dict())
    assert head + ask_and_tell(resumed, 6) == expected
    # the additive target is learnt: the best of 17 queries is the optimum 2 * (1 + ... + 6)
    assert max(additive_value(a) for a in expected) == 42.0


def test_default_encoding_is_path_on_nasbench201_adjacency_on_darts_cells_else_one_hot() -> None:
    assert isinstance(default_encoding(NasBench201Format().choices()), PathEncoding)
    darts = DartsCellSpace(in_channels=1, channels=4, layers=2).choices()
    assert isinstance(default_encoding(darts), CellAdjacencyEncoding)
    assert isinstance(default_encoding(CHOICES), OneHotEncoding)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="acquisition must be 'its' or 'ucb', got 'ei'"):
        Bananas(CHOICES, acquisition="ei")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown predictor 'svm'"):
        Bananas(CHOICES, predictor="svm")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_candidates >= batch_size"):
        Bananas(CHOICES, batch_size=20, num_candidates=10)
    with pytest.raises(ValueError, match="unknown encoding 'onehot'; valid encodings: one-hot, path, cell-adjacency"):
        Bananas(CHOICES, encoding="onehot")
    with pytest.raises(ValueError, match=r"path encoding is of NAS-Bench-201 cells.*got choices \['c0'"):
        Bananas(CHOICES, encoding="path")
    with pytest.raises(TypeError, match="encoding must be an Encoding or one of the names one-hot, path"):
        Bananas(CHOICES, encoding=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"one-hot encoding is of another space \(choices \['x'\]\)"):
        Bananas(CHOICES, encoding=OneHotEncoding([Choice("x", (0, 1))]))


def test_an_encoding_named_in_a_recipe_is_the_encoding_object() -> None:
    # a recipe can only name the encoding; by name, the search is the one built with the object
    def build(encoding: str | OneHotEncoding) -> Bananas:
        return Bananas(CHOICES, predictor="ridge", encoding=encoding, num_init=3, batch_size=2, seed=1)

    named = build("one-hot")
    assert isinstance(named.encoding, OneHotEncoding)
    assert ask_and_tell(named, 9) == ask_and_tell(build(OneHotEncoding(CHOICES)), 9)  # past num_init: fits run
    nb201 = NasBench201Format().choices()
    assert isinstance(Bananas(nb201, encoding="one-hot").encoding, OneHotEncoding)  # not its default, the path
    assert isinstance(Bananas(nb201, encoding="path").encoding, PathEncoding)


def test_budgeted_search_on_a_small_table_finds_its_best_cell() -> None:
    table = tiny_nb201_table()
    strategy = Bananas(table.choices(), predictor="ridge", metric="val", seed=0)
    result = run_budgeted_search(strategy, table, budget=40.0, cost_column="time", report_metric="val")
    assert result.num_queries == 40
    assert result.best_search == 18.0  # all six edges 3x3 convolutions, found in 40 of 729 queries


# benchmarks/nb201_search.py's protocol: 12,000 simulated seconds, search on validation, report test
PAPER_PROTOCOL = {
    "budget": 12000.0,
    "cost_column": "cifar10_train_time_200ep_s",
    "report_metric": "cifar10_test",
    "cost_scale": 12 / 200,
}
GUIDED_STRATEGIES: dict[str, Callable[[list[Choice], int], SearchStrategy]] = {
    "REA": lambda choices, seed: RegularizedEvolution(
        choices, population_size=10, sample_size=3, metric="cifar10_valid", seed=seed
    ),
    "BANANAS": lambda choices, seed: Bananas(choices, metric="cifar10_valid", seed=seed),
    "PNAS": lambda choices, seed: ProgressiveSearch(choices, beam_size=10, metric="cifar10_valid", seed=seed),
}


@functools.cache
def _nb201_table(path: str) -> TabularBenchmark:
    return TabularBenchmark.load(path, NasBench201Format())


def _best_test_accuracy(job: tuple[str, str, int]) -> float:
    """One seed of one strategy under the paper's protocol. A top-level function, so that a worker process can run
    it; one thread, so that the predictors' fits (and the result) do not depend on the launcher's thread count."""
    path, name, seed = job
    torch.set_num_threads(1)
    table = _nb201_table(path)
    return run_budgeted_search(GUIDED_STRATEGIES[name](table.choices(), seed), table, **PAPER_PROTOCOL).best_report


@pytest.mark.slow
def test_predictor_guided_search_beats_regularized_evolution_on_nasbench201(nb201_path: Path) -> None:
    """Issue 16: over 100 seeds under the paper's 12,000 s protocol, BANANAS's and PNAS's mean best test accuracy
    is strictly above REA's; PNAS's paired gap is beyond two standard errors (BANANAS's is about 1.5 here, so
    only its mean is asserted). The 300 searches are independent and seeded: two worker processes share them."""
    jobs = [(str(nb201_path), name, seed) for name in GUIDED_STRATEGIES for seed in range(100)]
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(_best_test_accuracy, jobs, chunksize=10))
    tests = {name: results[i * 100 : (i + 1) * 100] for i, name in enumerate(GUIDED_STRATEGIES)}
    rea, bananas, pnas = tests["REA"], tests["BANANAS"], tests["PNAS"]
    assert statistics.fmean(bananas) > statistics.fmean(rea)
    assert statistics.fmean(pnas) > statistics.fmean(rea)
    gaps = [a - b for a, b in zip(pnas, rea)]
    assert statistics.fmean(gaps) > 2 * statistics.stdev(gaps) / len(gaps) ** 0.5
