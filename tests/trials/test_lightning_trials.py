"""Lightning trials through Ray: a raising and a NaN child end as failed, the experiment finishes; bad input."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from ray import cloudpickle

from lightning_nas.arch import Arch, Choice
from lightning_nas.data import SyntheticDataModule
from lightning_nas.search import RandomSearch
from lightning_nas.trials import LightningTrial, MnasNetReward, RetrainFactory, TrialDriver, run_trials
from lightning_nas.trials._records import save_state
from lightning_nas.trials.runner import _prepare_directory, _signature

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers need not import the tests package

KIND = Choice("kind", ("ok", "raise", "nan"))
OK = Choice("kind", ("ok",))


class Linear(pl.LightningModule):
    """A linear classifier of 8x8 one-channel images whose ``kind`` makes it train, raise, or diverge."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind, self.in_channels = kind, 1
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self.kind == "raise":
            raise RuntimeError("this child cannot train")
        loss = torch.nn.functional.cross_entropy(self(batch[0]), batch[1])
        return loss * math.nan if self.kind == "nan" else loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self.log("val/acc", (self(batch[0]).argmax(-1) == batch[1]).float().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def linear_factory(arch: Arch) -> pl.LightningModule:
    return Linear(str(arch["kind"]))


def data() -> SyntheticDataModule:
    return SyntheticDataModule(num_samples=48, num_classes=4, in_channels=1, image_size=8, batch_size=16)


def test_raising_and_nan_children_fail_with_their_errors_and_the_experiment_finishes(
    ray_cluster: str, tmp_path: Path
) -> None:
    trial = LightningTrial(data, linear_factory, max_epochs=2, input_shape=(1, 8, 8))
    result = run_trials(RandomSearch([KIND], seed=3), trial, tmp_path, num_trials=4, concurrency=2, progress=False)
    by_kind = {kind: [r for r in result.records if r.arch["kind"] == kind] for kind in KIND.candidates}
    assert all(by_kind.values()), "seed 3 draws every kind in 4 trials"
    assert sorted(r.trial_id for r in result.records) == [f"{i:05d}" for i in range(4)]
    assert {r.status for r in by_kind["ok"]} == {"ok"}
    assert all(r.status == "failed" and "this child cannot train" in r.error for r in by_kind["raise"])
    assert all(r.status == "failed" and "non-finite training loss" in r.error for r in by_kind["nan"])
    good = by_kind["ok"][0].metrics
    # params and FLOPs of Linear(64, 4): 64*4 + 4 weights, 64*4 multiply-accumulates; two epochs reported
    assert (good["params"], good["flops"], good["epoch"]) == (260.0, 256.0, 2.0)
    assert result.best.arch == {"kind": "ok"}
    lines = (tmp_path / "trials.jsonl").read_text().splitlines()
    assert len(lines) == 4
    assert json.loads((tmp_path / "best_arch.json").read_text()) == {"kind": "ok"}


def test_factory_returning_no_lightning_module_is_refused_naming_the_type(tmp_path: Path) -> None:
    trial = LightningTrial(data, lambda arch: torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match=r"must return a lightning.pytorch.LightningModule, got torch.nn.*Linear"):
        run_trials(RandomSearch([KIND]), trial, tmp_path, num_trials=2)


def test_gpus_the_cluster_lacks_are_refused_before_running(ray_cluster: str, tmp_path: Path) -> None:
    trial = LightningTrial(data, linear_factory)
    with pytest.raises(ValueError, match=r"each trial asks for 1 GPU\(s\) but the Ray cluster has 0"):
        run_trials(RandomSearch([KIND]), trial, tmp_path, num_trials=2, gpus_per_trial=1)
    assert not (tmp_path / "trials.jsonl").exists()


def test_unreachable_address_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as a fresh driver: not yet joined to any cluster
    trial = LightningTrial(data, linear_factory)
    with pytest.raises(ConnectionError, match="cannot reach a Ray cluster at address '127.0.0.1:1'"):
        run_trials(RandomSearch([KIND]), trial, tmp_path, num_trials=2, address="127.0.0.1:1")


def test_resuming_another_experiment_or_reusing_a_directory_is_refused(tmp_path: Path) -> None:
    trial = LightningTrial(data, linear_factory, max_epochs=1)
    # the directory a one-trial experiment leaves (refusals happen before Ray is touched)
    _prepare_directory(tmp_path, _signature(RandomSearch([OK], seed=0), trial, 1, None), resume=False)
    save_state(TrialDriver(RandomSearch([OK], seed=0), num_trials=1).state_dict(), tmp_path / "driver_state.pt")
    with pytest.raises(FileExistsError, match="already holds an experiment; pass resume=True"):
        run_trials(RandomSearch([OK], seed=0), trial, tmp_path, num_trials=1)
    with pytest.raises(ValueError, match="holds a different experiment .*num_trials"):
        run_trials(RandomSearch([OK], seed=0), trial, tmp_path, num_trials=3, resume=True)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        run_trials(RandomSearch([OK]), trial, tmp_path / "new", num_trials=1, resume=True)


def test_a_driver_stopped_before_any_trial_finished_resumes_from_the_first_trial(
    ray_cluster: str, tmp_path: Path
) -> None:
    """Killed after writing experiment.json and before its first trial finished (or refused by the cluster's
    resources), a directory could be neither resumed ('nothing to resume') nor started again ('already holds')."""
    trial = LightningTrial(data, linear_factory, max_epochs=1)
    _prepare_directory(tmp_path, _signature(RandomSearch([OK], seed=0), trial, 2, None), resume=False)
    with pytest.raises(FileExistsError, match="already holds an experiment; pass resume=True"):
        run_trials(RandomSearch([OK], seed=0), trial, tmp_path, num_trials=2, progress=False)
    result = run_trials(RandomSearch([OK], seed=0), trial, tmp_path, num_trials=2, resume=True, progress=False)
    assert [r.trial_id for r in result.records] == ["00000", "00001"]
    assert all(r.status == "ok" for r in result.records)


def other_data() -> SyntheticDataModule:
    return SyntheticDataModule(num_samples=96, num_classes=4, in_channels=1, image_size=8, batch_size=16)


def test_a_resume_with_other_trial_settings_is_refused_naming_what_differs(tmp_path: Path) -> None:
    """Before, only the factory, max_epochs and early_stop were compared: a resume with other data, trainer options,
    steps or strategy options ran the remaining trials under them, into the same trial table."""
    strategy = RandomSearch([OK], seed=0)
    base = {"max_epochs": 1, "trainer_options": {"limit_train_batches": 2}}
    settings = {"strategy": {"name": "random", "options": {}}}  # as lightning-nas trials records a recipe
    _prepare_directory(tmp_path, _signature(strategy, LightningTrial(data, linear_factory, **base), 2, None, None,
                                            settings), resume=False)  # fmt: skip
    same = _signature(strategy, LightningTrial(data, linear_factory, **base), 2, None, None, settings)
    assert _prepare_directory(tmp_path, same, resume=True) is None  # nothing finished yet: starts from trial 0
    changed = {
        "trial.datamodule": (LightningTrial(other_data, linear_factory, **base), None, settings),
        "trial.trainer_options.limit_train_batches": (
            LightningTrial(data, linear_factory, max_epochs=1, trainer_options={"limit_train_batches": 1}),
            None,
            settings,
        ),
        "trial.max_steps": (LightningTrial(data, linear_factory, max_steps=1, **base), None, settings),
        "trial.seed": (LightningTrial(data, linear_factory, seed=1, **base), None, settings),
        "reward": (LightningTrial(data, linear_factory, **base), MnasNetReward(target=1e4, cost="flops"), settings),
        "settings.strategy.options.population_size": (
            LightningTrial(data, linear_factory, **base),
            None,
            {**settings, "strategy": {"name": "random", "options": {"population_size": 4}}},
        ),
    }
    for where, (trial, reward, other) in changed.items():
        signature = _signature(strategy, trial, 2, None, reward, other)
        with pytest.raises(ValueError, match=rf"holds a different experiment \(it differs in {re.escape(where)}\)"):
            _prepare_directory(tmp_path, signature, resume=True)
    older = {key: value for key, value in same.items() if key != "settings"}  # as an earlier version wrote it
    (tmp_path / "experiment.json").write_text(json.dumps(older))
    with pytest.raises(ValueError, match=r"differs in settings \(not recorded\)\).*an earlier version of"):
        _prepare_directory(tmp_path, same, resume=True)


def test_a_function_factory_is_described_the_same_in_another_process() -> None:
    """A resumed driver is a new process: a factory described by its repr (``<function f at 0x7f...>``) never
    matched, so an experiment with a plain function as its factory could not be resumed."""
    code = (
        "import json\n"
        "from lightning_nas.trials import LightningTrial\n"
        "from tests.trials.test_lightning_trials import data, linear_factory\n"
        "print(json.dumps(LightningTrial(data, linear_factory, trainer_options={'callbacks': []}).describe()))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    there = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    here = LightningTrial(data, linear_factory, trainer_options={"callbacks": []}).describe()
    assert json.loads(there.stdout) == json.loads(json.dumps(here))
    assert here["factory"] == f"{__name__}.linear_factory"
    assert here["datamodule"] == f"{__name__}.data"


def test_the_same_architecture_trains_the_same_way_in_every_run() -> None:
    """Each child is seeded from the trial's seed and its architecture (before, Ray workers' unseeded generators
    gave the same architecture other weights and another accuracy in every run)."""
    first_weights: list[torch.Tensor] = []

    def recording_factory(arch: Arch) -> pl.LightningModule:
        module = linear_factory(arch)
        first_weights.append(module.net[1].weight.detach().clone())
        return module

    def reports(seed: int) -> list[dict]:
        reported: list[dict] = []
        trial = LightningTrial(data, recording_factory, max_epochs=2, seed=seed)
        torch.manual_seed(len(first_weights))  # whatever state the worker's generator is in
        trial.run({"kind": "ok"}, lambda metrics: reported.append(dict(metrics)))
        return reported

    once, again = reports(0), reports(0)
    reports(1)
    assert torch.equal(first_weights[0], first_weights[1])
    assert not torch.equal(first_weights[0], first_weights[2])
    assert once == again
    assert len(once) == 2


def test_missing_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from lightning_nas.trials import require_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r'pip install "lightning-nas\[trials\]"'):
        require_ray()


def test_default_factory_trains_the_exported_darts_network() -> None:
    factory = RetrainFactory({"in_channels": 1, "num_classes": 4, "channels": 4, "layers": 3, "auxiliary": False})
    arch = {}
    for cell in ("normal", "reduce"):
        for node in (2, 3):
            for slot in (0, 1):
                arch[f"{cell}/node{node}/op{slot}"] = "sep_conv_3x3"
                arch[f"{cell}/node{node}/in{slot}"] = slot
    module = factory(arch)
    assert type(module).__name__ == "Retrain"
    assert module.export().normal == (("sep_conv_3x3", 0), ("sep_conv_3x3", 1)) * 2
