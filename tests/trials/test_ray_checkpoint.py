"""The strategy's ask/tell state rides in Ray's experiment checkpoints: Ray's copy restores a fresh searcher to the
driver's own state, and a resume without ``driver_state.pt`` starts from it (issue 15)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightning_nas.search import RegularizedEvolution
from lightning_nas.spaces import NasBench201Format
from lightning_nas.trials import TabularTrial, TrialDriver, load_records, run_trials
from lightning_nas.trials._records import load_state
from lightning_nas.trials.searcher import StrategySearcher
from tests.tester.test_resume import _assert_identical
from tests.trials.test_tabular_trials import METRIC, _records, kill_driver_mid_experiment


def _evolution(seed: int) -> RegularizedEvolution:
    return RegularizedEvolution(
        NasBench201Format().choices(), population_size=4, sample_size=2, metric=METRIC, seed=seed
    )


def _trial(path: Path) -> TabularTrial:
    return TabularTrial(str(path), NasBench201Format(), cost_column="cifar10_train_time_200ep_s", columns=[METRIC])


def test_rays_searcher_checkpoint_restores_the_driver_state(
    nb201_path: Path, ray_cluster: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    strategy, trial = _evolution(5), _trial(nb201_path)  # one trial object: the table is parsed once
    run_trials(strategy, trial, tmp_path, num_trials=6, progress=False)
    own = load_state(tmp_path / "driver_state.pt")
    (ray_copy,) = (tmp_path / "ray").glob("run*/searcher_state.pt")  # written by Ray through save_to_dir

    fresh = StrategySearcher(TrialDriver(_evolution(99), num_trials=6))
    fresh.restore_from_dir(str(ray_copy.parent))
    _assert_identical(fresh.driver.state_dict(), own, "state")
    assert [r["trial_id"] for r in own["records"]] == [f"{i:05d}" for i in range(6)]
    # the restored strategy goes on exactly as the one that ran the experiment
    assert [fresh.driver.strategy.ask() for _ in range(4)] == [strategy.ask() for _ in range(4)]

    before = load_records(tmp_path / "trials.jsonl")
    (tmp_path / "driver_state.pt").unlink()
    capsys.readouterr()
    result = run_trials(_evolution(5), trial, tmp_path, num_trials=6, resume=True, progress=False)
    assert "resuming from Ray's experiment checkpoint" in capsys.readouterr().out
    assert [r.to_dict() for r in result.records] == [r.to_dict() for r in before]


def _mid_experiment(directory: Path) -> bool:
    """At least 8 trials finished and Ray wrote an experiment checkpoint."""
    table = directory / "trials.jsonl"
    ray_copy = list((directory / "ray").glob("run*/searcher_state.pt"))
    return bool(ray_copy) and table.is_file() and len(table.read_text().splitlines()) >= 8


@pytest.mark.slow
def test_sigkilled_driver_resumes_from_rays_checkpoint_alone(
    nb201_path: Path, ray_cluster: str, tmp_path: Path
) -> None:
    """As the SIGKILL test of test_tabular_trials.py, with the driver's own state file deleted after the kill."""
    whole_strategy = RegularizedEvolution(
        NasBench201Format().choices(), population_size=10, sample_size=3, metric=METRIC, seed=5
    )
    trial = TabularTrial(
        str(nb201_path),
        NasBench201Format(),
        cost_column="cifar10_train_time_200ep_s",
        cost_scale=0.06,
        columns=[METRIC],
    )  # as DRIVER's
    run_trials(whole_strategy, trial, tmp_path / "whole", num_trials=24, address=ray_cluster, progress=False)
    whole = _records(tmp_path / "whole")

    killed = tmp_path / "killed"
    kill_driver_mid_experiment(nb201_path, killed, ray_cluster, lambda: _mid_experiment(killed))
    (killed / "driver_state.pt").unlink()

    strategy = RegularizedEvolution(
        NasBench201Format().choices(), population_size=10, sample_size=3, metric=METRIC, seed=5
    )
    run_trials(strategy, trial, killed, num_trials=24, resume=True, address=ray_cluster, progress=False)
    after = _records(killed)
    assert [r[0] for r in after] == [f"{i:05d}" for i in range(24)]  # none lost, none twice
    assert after == whole  # the deterministic strategy's history equals the uninterrupted run's
