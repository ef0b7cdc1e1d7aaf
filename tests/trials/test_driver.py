"""The engine-free driver: trial plan, failure telling, state round trip (no Ray)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from lightning_nas.arch import Choice
from lightning_nas.search import NSGA2, RegularizedEvolution, ReinforceSearch
from lightning_nas.trials import TrialDriver
from lightning_nas.trials._records import TrialRecord, load_records, load_state, save_state, write_records

CHOICES = [Choice(f"c{i}", (0, 1, 2)) for i in range(4)]


def _score(arch: dict) -> dict[str, float]:
    return {"accuracy": float(sum(arch.values())), "params": float(sum(v * v for v in arch.values()))}


def _drive(driver: TrialDriver, stop_after: int | None = None) -> None:
    while (nxt := driver.next_trial()) is not None:
        trial_id, arch = nxt
        driver.complete(trial_id, _score(arch))
        if stop_after is not None and len(driver.records) == stop_after:
            return


@pytest.mark.parametrize("num_trials", [0, -3])
def test_zero_trials_is_refused(num_trials: int) -> None:
    with pytest.raises(ValueError, match="num_trials must be >= 1"):
        TrialDriver(ReinforceSearch(CHOICES), num_trials=num_trials)


def test_plan_needs_an_end_and_a_budget_needs_a_cost() -> None:
    with pytest.raises(ValueError, match="needs an end"):
        TrialDriver(ReinforceSearch(CHOICES))
    with pytest.raises(ValueError, match="cost_of"):
        TrialDriver(ReinforceSearch(CHOICES), budget=10.0)


def test_budget_stops_before_the_query_that_would_overrun_it() -> None:
    # every arch costs 1 + its first choice: the driver charges exactly what run_budgeted_search would
    driver = TrialDriver(
        RegularizedEvolution(CHOICES, population_size=4, sample_size=2),
        budget=10.0,
        cost_of=lambda arch: 1.0 + arch["c0"],
    )
    _drive(driver)
    costs = [r.cost for r in driver.records]
    assert sum(costs) <= 10.0
    assert driver.spent == sum(costs)
    assert driver.exhausted
    assert driver.done
    assert [r.trial_id for r in driver.records] == [f"{i:05d}" for i in range(len(costs))]


def test_a_failed_trial_is_told_as_the_worst_outcome_and_recorded_with_its_error() -> None:
    strategy = NSGA2(CHOICES, objectives={"accuracy": "max", "params": "min"}, population_size=2)
    driver = TrialDriver(strategy, num_trials=3)
    first = driver.next_trial()
    assert first is not None
    failed = driver.complete(first[0], None, error="RuntimeError: boom")
    # nothing told yet: a "min" objective has no worst value before a success gives one
    assert failed.status == "failed"
    assert failed.error == "RuntimeError: boom"
    assert strategy.history == []
    second, third = driver.next_trial(), driver.next_trial()
    assert second is not None
    assert third is not None
    driver.complete(second[0], _score(second[1]))
    nan = driver.complete(third[0], {"accuracy": math.nan, "params": 3.0})
    assert nan.status == "failed"
    assert "no finite accuracy" in nan.error
    told = strategy.history[-1].metrics
    assert told == {"accuracy": 0.0, "params": _score(second[1])["params"]}
    assert driver.done
    assert driver.next_trial() is None


def test_completing_an_unknown_trial_is_refused() -> None:
    driver = TrialDriver(ReinforceSearch(CHOICES), num_trials=2)
    with pytest.raises(KeyError, match="not running"):
        driver.complete("00000", {"accuracy": 1.0})


@pytest.mark.parametrize(
    "make",
    [
        lambda: ReinforceSearch(CHOICES, learning_rate=0.1, seed=3),
        lambda: RegularizedEvolution(CHOICES, population_size=4, sample_size=2, seed=3),
        lambda: NSGA2(CHOICES, objectives={"accuracy": "max", "params": "min"}, population_size=4, seed=3),
    ],
    ids=["reinforce", "evolution", "nsga2"],
)
def test_state_saved_to_disk_mid_run_resumes_to_the_uninterrupted_history(make, tmp_path: Path) -> None:
    whole = TrialDriver(make(), num_trials=20)
    _drive(whole)
    first = TrialDriver(make(), num_trials=20)
    _drive(first, stop_after=9)
    first.next_trial()  # a trial was running when the driver died: it runs again, same id, same arch
    save_state(first.state_dict(), tmp_path / "state.pt")
    resumed = TrialDriver(make(), num_trials=20)
    resumed.load_state_dict(load_state(tmp_path / "state.pt"))
    _drive(resumed)
    assert [r.to_dict() for r in resumed.records] == [r.to_dict() for r in whole.records]
    assert [t.to_dict() for t in resumed.strategy.history] == [t.to_dict() for t in whole.strategy.history]


def test_trial_table_round_trips_with_non_finite_metrics(tmp_path: Path) -> None:
    records = [
        TrialRecord("00000", {"c0": 1}, {"accuracy": 0.5}, 2.0, "ok", 1.5),
        TrialRecord("00001", {"c0": 2}, {"accuracy": math.nan}, 0.0, "failed", 0.1, "ValueError: x"),
    ]
    write_records(records, tmp_path)
    back = load_records(tmp_path / "trials.jsonl")
    assert back[0] == records[0]
    assert back[1].error == "ValueError: x"
    assert math.isnan(back[1].metrics["accuracy"])
    header = (tmp_path / "trials.csv").read_text().splitlines()[0]
    assert header == "trial_id,status,cost,wall_time_s,accuracy,arch,error"


def test_a_metric_named_like_a_fixed_column_gets_its_own_csv_column(tmp_path: Path) -> None:
    # a Lightning trial reports wall_time_s and a tabular one cost: once each in the CSV's header, none lost
    records = [TrialRecord("00000", {"c0": 1}, {"accuracy": 0.5, "wall_time_s": 1.25, "cost": 3.0}, 3.0, "ok", 1.5)]
    write_records(records, tmp_path)
    with (tmp_path / "trials.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    header = list(reader.fieldnames or [])
    assert len(header) == len(set(header))
    assert header == [
        "trial_id", "status", "cost", "wall_time_s", "accuracy", "metrics.cost", "metrics.wall_time_s", "arch", "error"
    ]  # fmt: skip
    assert (rows[0]["wall_time_s"], rows[0]["metrics.wall_time_s"], rows[0]["metrics.cost"]) == ("1.5", "1.25", "3.0")
