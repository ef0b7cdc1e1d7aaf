"""The tabular benchmark API and the simulated-budget protocol on the NAS-Bench-201 12-epoch table (issue 9)."""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections import defaultdict
from pathlib import Path

import pytest

from lightning_nas.arch import validate_arch
from lightning_nas.search import (
    RandomSearch,
    RegularizedEvolution,
    ReinforceSearch,
    SearchStrategy,
    TabularBenchmark,
    run_budgeted_search,
)
from lightning_nas.spaces import NasBench201Format

COST, SEARCH, REPORT = "cifar10_train_time_200ep_s", "cifar10_valid", "cifar10_test"
COLUMNS = (
    "cifar10_valid, cifar10_test, cifar100_valid, cifar100_test, imagenet16_valid, imagenet16_test, params_mb, "
    "cifar10_train_time_200ep_s"
)


@pytest.fixture(scope="module")
def rows(nb201_path: Path) -> list[dict[str, str]]:
    with nb201_path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def table(nb201_path: Path) -> TabularBenchmark:
    return TabularBenchmark.load(nb201_path, NasBench201Format())


def test_queries_by_string_mapping_and_index_agree_with_the_file(
    table: TabularBenchmark, rows: list[dict[str, str]]
) -> None:
    assert len(table) == 15625
    assert ", ".join(table.columns) == COLUMNS
    fmt = NasBench201Format()
    for row in rows[::997]:
        index = int(row["index"])
        assert table.arch_string(index) == row["arch"]
        assert table.index_of(row["arch"]) == index
        assert table.index_of(fmt.parse(row["arch"])) == index
        assert table.query(row["arch"]) == {name: float(row[name]) for name in table.columns}
        assert table.value(fmt.parse(row["arch"]), REPORT) == float(row[REPORT])
    assert list(table)[:3] == [row["arch"] for row in rows[:3]]


def test_json_tables_in_both_layouts_read_like_the_csv(tmp_path: Path, rows: list[dict[str, str]]) -> None:
    subset = rows[100:110]
    records = [{"arch": r["arch"], "index": int(r["index"]), "acc": float(r[REPORT]), "note": "x"} for r in subset]
    as_rows, as_columns = tmp_path / "rows.json", tmp_path / "columns.json"
    as_rows.write_text(json.dumps(records))
    as_columns.write_text(json.dumps({key: [r[key] for r in records] for key in records[0]}))
    for path in (as_rows, as_columns):
        small = TabularBenchmark.load(path, NasBench201Format())
        assert small.columns == ("acc",)  # the index and the non-numeric "note" are not metric columns
        assert [small.value(r["arch"], "acc") for r in subset] == [float(r[REPORT]) for r in subset]
        assert small.arch_string(int(subset[3]["index"])) == subset[3]["arch"]
    with pytest.raises(KeyError, match=r"is not in table .*columns.json \(10 rows\)"):
        small.query(rows[0]["arch"])
    with pytest.raises(KeyError, match="has no architecture with index 0"):
        small.arch_string(0)


def test_a_missing_column_lists_the_columns_the_table_has(table: TabularBenchmark) -> None:
    with pytest.raises(ValueError, match=f"has no numeric column 'cifar10_test_acc'; its columns: {COLUMNS}$"):
        table.column("cifar10_test_acc")
    strategy = RandomSearch(table.choices(), metric="val_acc")
    with pytest.raises(ValueError, match=f"no numeric column 'val_acc'; its columns: {COLUMNS}$"):
        run_budgeted_search(strategy, table, budget=1e4, cost_column=COST, report_metric=REPORT)
    with pytest.raises(ValueError, match="no numeric column 'seconds'"):
        run_budgeted_search(RandomSearch(table.choices(), metric=SEARCH), table, budget=1e4, cost_column="seconds",
                            report_metric=REPORT)  # fmt: skip


def test_malformed_tables_are_refused_with_the_reason(tmp_path: Path, rows: list[dict[str, str]]) -> None:
    fmt = NasBench201Format()
    with pytest.raises(ValueError, match="has no arch column 'arch'; its columns: cell, acc"):
        TabularBenchmark([{"cell": rows[0]["arch"], "acc": 1.0}], fmt)
    with pytest.raises(ValueError, match="rows 0 and 1 hold the same architecture"):
        TabularBenchmark([{"arch": rows[0]["arch"]}, {"arch": rows[0]["arch"]}], fmt)
    bad = rows[1]["arch"].replace("avg_pool_3x3", "max_pool_3x3")
    with pytest.raises(ValueError, match=r"row 1 of table <records>: unknown op 'max_pool_3x3'"):
        TabularBenchmark([{"arch": rows[0]["arch"]}, {"arch": bad}], fmt)
    with pytest.raises(ValueError, match="has no rows"):
        TabularBenchmark([], fmt)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TabularBenchmark.load(tmp_path / "absent.csv", fmt)
    (tmp_path / "table.txt").write_text("arch\n")
    with pytest.raises(ValueError, match=r"must end in .csv or .json, got '.txt'"):
        TabularBenchmark.load(tmp_path / "table.txt", fmt)
    (tmp_path / "ragged.json").write_text(json.dumps({"arch": [rows[0]["arch"]], "acc": [1, 2]}))
    with pytest.raises(ValueError, match=r"columns have different lengths \[1, 2\]"):
        TabularBenchmark.load(tmp_path / "ragged.json", fmt)


STRATEGIES = {
    "random": lambda choices, seed: RandomSearch(choices, metric=SEARCH, seed=seed),
    "evolution": lambda choices, seed: RegularizedEvolution(
        choices, population_size=10, sample_size=3, metric=SEARCH, seed=seed
    ),
    "reinforce": lambda choices, seed: ReinforceSearch(choices, metric=SEARCH, seed=seed),
}


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_strategies_query_valid_archs_and_stop_within_the_budget(
    name: str, table: TabularBenchmark, rows: list[dict[str, str]]
) -> None:
    by_arch = {row["arch"]: row for row in rows}
    fmt = NasBench201Format()
    for seed, budget in ((0, 5000.0), (1, 12000.0)):
        strategy: SearchStrategy = STRATEGIES[name](table.choices(), seed)
        asked = []
        ask = strategy.ask

        def recording_ask(ask=ask, asked=asked):  # type: ignore[no-untyped-def]
            asked.append(ask())
            return asked[-1]

        strategy.ask = recording_ask  # type: ignore[method-assign]
        result = run_budgeted_search(strategy, table, budget=budget, cost_column=COST, report_metric=REPORT,
                                     cost_scale=12 / 200)  # fmt: skip
        for arch in asked:
            assert validate_arch(arch, fmt.choices()) == arch
        # Every told architecture was charged; the one asked after them did not fit in what was left.
        costs = [12 / 200 * float(by_arch[fmt.format(t.arch)][COST]) for t in strategy.history]
        assert len(asked) == len(strategy.history) + 1 == result.num_queries + 1
        assert result.spent == pytest.approx(sum(costs))
        assert result.spent <= budget
        assert result.spent + 12 / 200 * float(by_arch[fmt.format(asked[-1])][COST]) > budget
        # The best is the best by validation accuracy; its test accuracy is the file's.
        told = [by_arch[fmt.format(t.arch)] for t in strategy.history]
        best = max(told, key=lambda row: float(row[SEARCH]))
        assert (result.best_search, result.best_report) == (float(best[SEARCH]), float(best[REPORT]))
        assert result.best_arch == best["arch"]
        assert [point[1] for point in result.trace] == sorted(point[1] for point in result.trace)
        assert all(set(t.metrics) == {SEARCH} for t in strategy.history)  # the test accuracy is never shown


def test_a_budget_below_any_single_query_is_an_error(table: TabularBenchmark, rows: list[dict[str, str]]) -> None:
    cheapest = min(float(row[COST]) for row in rows)
    with pytest.raises(ValueError, match=rf"budget 500 is smaller than the cheapest query .*\({cheapest:g} = 1 x min"):
        run_budgeted_search(RandomSearch(table.choices(), metric=SEARCH), table, budget=500.0, cost_column=COST,
                            report_metric=REPORT)  # fmt: skip
    with pytest.raises(ValueError, match="cost_scale must be a positive number"):
        run_budgeted_search(RandomSearch(table.choices(), metric=SEARCH), table, budget=1e4, cost_column=COST,
                            report_metric=REPORT, cost_scale=0.0)  # fmt: skip
    # A budget that fits the cheapest query but not the first proposal says so.
    with pytest.raises(ValueError, match="the first proposed architecture costs .* more than the budget 600"):
        run_budgeted_search(RandomSearch(table.choices(), metric=SEARCH), table, budget=600.0, cost_column=COST,
                            report_metric=REPORT)  # fmt: skip


def test_reinforce_moves_probability_toward_the_ops_the_table_rewards(
    table: TabularBenchmark, rows: list[dict[str, str]]
) -> None:
    """After 100 evaluations (the reference learning rate), the policy's expected validation accuracy, computed
    exactly over all 15,625 cells of the table, is above the uniform policy's (the table's mean), and the op that
    hurts most on average (``none`` on edge 3<-0, which cuts the input off the output) has lost probability."""
    fmt = NasBench201Format()
    cells = [(fmt.parse(row["arch"]), float(row[SEARCH])) for row in rows]
    uniform_mean = statistics.fmean(value for _, value in cells)
    marginal: dict[tuple[str, str], list[float]] = defaultdict(list)
    for arch, value in cells:
        for edge, op in arch.items():
            marginal[(edge, str(op))].append(value)
    worst_edge, worst_op = min(marginal, key=lambda key: statistics.fmean(marginal[key]))
    assert (worst_edge, worst_op) == ("3<-0", "none")
    for seed in range(3):
        strategy = ReinforceSearch(table.choices(), metric=SEARCH, seed=seed)
        for _ in range(100):
            arch = strategy.ask()
            strategy.tell(arch, {SEARCH: table.value(arch, SEARCH)})
        policy = strategy.probabilities()
        expected = sum(value * math.prod(policy[edge][op] for edge, op in arch.items()) for arch, value in cells)
        assert expected > uniform_mean + 0.5, (seed, expected, uniform_mean)
        assert policy[worst_edge][worst_op] < 1 / 5
