"""NAS-Bench-201 through Ray: the same best architecture as the in-process run; a SIGKILLed driver resumes exactly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lightning_nas.search import (
    NSGA2,
    RandomSearch,
    RegularizedEvolution,
    ReinforceSearch,
    SearchStrategy,
    TabularBenchmark,
    run_budgeted_search,
)
from lightning_nas.spaces import NasBench201Format
from lightning_nas.trials import TabularTrial, run_trials

# benchmarks/nb201_search.py: 12,000 simulated seconds, each query charged 12/200 of the 200-epoch time
BUDGET, COST, SCALE, METRIC = 12000.0, "cifar10_train_time_200ep_s", 12 / 200, "cifar10_valid"
STRATEGIES = {
    "RS": lambda choices, seed: RandomSearch(choices, metric=METRIC, seed=seed),
    "REA": lambda choices, seed: RegularizedEvolution(
        choices, population_size=10, sample_size=3, metric=METRIC, seed=seed
    ),
    "REINFORCE": lambda choices, seed: ReinforceSearch(
        choices, learning_rate=0.01, baseline_decay=0.9, metric=METRIC, seed=seed
    ),
}


def _trial(path: Path) -> TabularTrial:
    return TabularTrial(str(path), NasBench201Format(), cost_column=COST, cost_scale=SCALE, columns=[METRIC])


def _compare(name: str, seed: int, table: TabularBenchmark, path: Path, directory: Path) -> None:
    strategy: SearchStrategy = STRATEGIES[name](table.choices(), seed)
    reference = run_budgeted_search(
        STRATEGIES[name](table.choices(), seed),
        table,
        budget=BUDGET,
        cost_column=COST,
        report_metric="cifar10_test",
        cost_scale=SCALE,
    )
    result = run_trials(strategy, _trial(path), directory, budget=BUDGET, concurrency=1, progress=False)
    assert NasBench201Format().format(result.best.arch) == reference.best_arch
    assert len(result.records) == reference.num_queries
    assert sum(r.cost for r in result.records) == pytest.approx(reference.spent)


@pytest.mark.parametrize("name", ["REA"])  # RS and REINFORCE (and more seeds) in the slow test below
def test_ray_run_finds_the_in_process_best_architecture(
    name: str, nb201_table: TabularBenchmark, nb201_path: Path, ray_cluster: str, tmp_path: Path
) -> None:
    _compare(name, 0, nb201_table, nb201_path, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("name", list(STRATEGIES))
def test_ray_run_finds_the_in_process_best_architecture_over_seeds(
    name: str, seed: int, nb201_table: TabularBenchmark, nb201_path: Path, ray_cluster: str, tmp_path: Path
) -> None:
    _compare(name, seed, nb201_table, nb201_path, tmp_path)


DRIVER = textwrap.dedent(
    """
    import sys
    from lightning_nas.search import RegularizedEvolution
    from lightning_nas.spaces import NasBench201Format
    from lightning_nas.trials import TabularTrial, run_trials

    path, directory, address, resume = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "resume"
    strategy = RegularizedEvolution(NasBench201Format().choices(), population_size=10, sample_size=3,
                                    metric="cifar10_valid", seed=5)
    trial = TabularTrial(path, NasBench201Format(), cost_column="cifar10_train_time_200ep_s", cost_scale=0.06,
                         columns=["cifar10_valid"])
    run_trials(strategy, trial, directory, num_trials=24, resume=resume, address=address, progress=False)
    """
)


def _records(directory: Path) -> list[tuple]:
    from lightning_nas.trials import load_records

    return [(r.trial_id, r.arch, r.metrics[METRIC], r.cost, r.status) for r in load_records(directory / "trials.jsonl")]


def kill_driver_mid_experiment(nb201_path: Path, directory: Path, ray_cluster: str, ready: Callable[[], bool]) -> None:
    """Start DRIVER (24 REA trials into ``directory``) in its own process group; SIGKILL it once ``ready()``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(nb201_path), str(directory), ray_cluster, "new"],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and driver.poll() is None:
        if ready():
            break
        time.sleep(0.05)
    assert driver.poll() is None, "the driver ended before it could be killed mid-experiment"
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()


def test_sigkilled_driver_resumes_without_losing_or_repeating_a_trial(
    nb201_path: Path, ray_cluster: str, tmp_path: Path
) -> None:
    strategy = RegularizedEvolution(
        NasBench201Format().choices(), population_size=10, sample_size=3, metric=METRIC, seed=5
    )
    trial = TabularTrial(str(nb201_path), NasBench201Format(), cost_column=COST, cost_scale=0.06, columns=[METRIC])
    run_trials(strategy, trial, tmp_path / "whole", num_trials=24, address=ray_cluster, progress=False)
    whole = _records(tmp_path / "whole")

    killed = tmp_path / "killed"
    table = killed / "trials.jsonl"
    kill_driver_mid_experiment(
        nb201_path, killed, ray_cluster, lambda: table.is_file() and len(table.read_text().splitlines()) >= 8
    )
    before = _records(killed)
    assert 8 <= len(before) < 24

    run_trials(strategy, trial, killed, num_trials=24, resume=True, address=ray_cluster, progress=False)
    after = _records(killed)
    assert [r[0] for r in after] == [f"{i:05d}" for i in range(24)]  # none lost, none twice
    assert after[: len(before)] == before
    assert after == whole  # the deterministic strategy's history equals the uninterrupted run's


def test_nsga2_trials_give_the_non_dominated_front(nb201_path: Path, ray_cluster: str, tmp_path: Path) -> None:
    objectives = {METRIC: "max", "params_mb": "min"}
    strategy = NSGA2(NasBench201Format().choices(), objectives=objectives, population_size=4, seed=0)
    trial = TabularTrial(str(nb201_path), NasBench201Format(), cost_column=COST, columns=[METRIC, "params_mb"])
    result = run_trials(strategy, trial, tmp_path, num_trials=12, progress=False)

    def dominated(a: dict, b: dict) -> bool:  # b dominates a
        return b[METRIC] >= a[METRIC] and b["params_mb"] <= a["params_mb"] and b != a

    points = [{k: r.metrics[k] for k in objectives} for r in result.records]
    expected = sorted(r.trial_id for r, p in zip(result.records, points) if not any(dominated(p, q) for q in points))
    assert sorted(r.trial_id for r in result.front) == expected
    assert (tmp_path / "pareto_front.json").is_file()
