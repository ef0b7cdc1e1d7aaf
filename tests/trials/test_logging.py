"""Trials to Lightning loggers: what CSV and TensorBoard read back equals the trial table (issue 15)."""

from __future__ import annotations

import csv
import json
import math
import struct
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from ray import cloudpickle

from lightning_nas.arch import Arch
from lightning_nas.search import RandomSearch
from lightning_nas.spaces import NasBench201Format
from lightning_nas.trials import TabularTrial, TrialRecord, run_trials
from lightning_nas.trials._logging import TrialLogging, as_loggers

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers need not import the tests package

METRIC = "cifar10_valid"


class RaisingTabularTrial(TabularTrial):
    """A lookup that raises for architectures whose first edge is ``nor_conv_3x3`` (a failing trial)."""

    def run(self, arch: Arch, report: Any) -> None:
        if arch[NasBench201Format().choices()[0].name] == "nor_conv_3x3":
            raise RuntimeError("this lookup fails")
        super().run(arch, report)


def _expected(records: list[TrialRecord]) -> list[dict[str, float]]:
    """What each step must hold, computed from the trial table alone."""
    rows, best = [], -math.inf
    for record in records:
        row = {"trial/ok": 1.0 if record.status == "ok" else 0.0, "trial/wall_time_s": record.wall_time_s}
        row.update({"trial/cost": record.cost, "trial/index": float(int(record.trial_id))})
        row.update({f"trial/{k}": v for k, v in record.metrics.items()})
        if record.status == "ok":
            best = max(best, record.metrics[METRIC])
        if best > -math.inf:
            row[f"best/{METRIC}"] = best
        rows.append(row)
    return rows


def test_csv_and_tensorboard_hold_every_finished_trial(nb201_path: Path, ray_cluster: str, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trial = RaisingTabularTrial(
        str(nb201_path), NasBench201Format(), cost_column="cifar10_train_time_200ep_s", columns=[METRIC]
    )
    loggers = [CSVLogger(tmp_path / "csv", name="trials"), TensorBoardLogger(tmp_path / "tb", name="trials")]
    strategy = RandomSearch(NasBench201Format().choices(), metric=METRIC, seed=4)
    result = run_trials(strategy, trial, tmp_path / "run", num_trials=4, progress=False, loggers=loggers)
    statuses = [r.status for r in result.records]
    assert "failed" in statuses
    assert "ok" in statuses, "seed 4 draws both kinds in 4 trials"
    expected = _expected(result.records)

    with (tmp_path / "csv" / "trials" / "version_0" / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["step"]) for row in rows] == list(range(1, 5))
    for row, want in zip(rows, expected):
        logged = {k: float(v) for k, v in row.items() if k != "step" and v != ""}
        assert logged == pytest.approx(want, rel=1e-12)
    hparams = yaml.safe_load((tmp_path / "csv" / "trials" / "version_0" / "hparams.yaml").read_text())
    assert (hparams["strategy"], hparams["metric"], hparams["num_trials"]) == ("RandomSearch", METRIC, 4)
    assert hparams["num_choices"] == len(strategy.choices)
    assert hparams["trial/kind"] == "tabular"

    events = EventAccumulator(str(tmp_path / "tb" / "trials" / "version_0")).Reload()
    tags = set(events.Tags()["scalars"]) - {"hp_metric"}  # TensorBoardLogger's own hyperparameter placeholder
    assert tags == set().union(*(row.keys() for row in expected))
    for tag in tags:
        logged = {e.step: e.value for e in events.Scalars(tag)}
        want = {step: row[tag] for step, row in enumerate(expected, 1) if tag in row}
        assert logged == pytest.approx(want, rel=1e-6)  # TensorBoard keeps float32


def test_a_resumed_session_continues_the_step_and_the_best(tmp_path: Path) -> None:
    earlier = [
        TrialRecord("00000", {}, {METRIC: 0.7}, 1.0, "ok", 2.0),
        TrialRecord("00001", {}, {}, 1.0, "failed", 0.5, "boom"),
    ]
    logger = CSVLogger(tmp_path, name="resumed")
    logging = TrialLogging([logger], METRIC, "max", {"strategy": "X", "nested": {"a": 1}})
    logging.start(earlier)
    logging.log(TrialRecord("00002", {}, {METRIC: 0.6}, 1.0, "ok", 3.0), step=3)
    logging.finish("success")
    (row,) = list(csv.DictReader((tmp_path / "resumed" / "version_0" / "metrics.csv").open()))
    assert (int(row["step"]), float(row[f"best/{METRIC}"]), float(row["trial/index"])) == (3, 0.7, 2.0)
    assert yaml.safe_load((tmp_path / "resumed" / "version_0" / "hparams.yaml").read_text())["nested/a"] == 1


def test_loggers_must_be_lightning_loggers() -> None:
    with pytest.raises(TypeError, match=r"loggers must be lightning.pytorch.loggers.Logger .*got builtins.str"):
        as_loggers(["tensorboard"])
    assert as_loggers(None) == []


def _wandb_records(path: Path) -> list[Any]:
    """The protobuf records of an offline run file (LevelDB log format: 32 KiB blocks of checksummed chunks after
    W&B's 7-byte header)."""
    from wandb.proto import wandb_internal_pb2

    data, block, position, chunks, records = path.read_bytes(), 32768, 7, b"", []
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's zero-filled tail
            position += block - position % block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if kind == 0:
            break
        chunks += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunks)
            records.append(record)
            chunks = b""
    return records


def _key(item: Any) -> str:
    return str(item.key or "/".join(item.nested_key))


@pytest.mark.slow
def test_offline_wandb_run_holds_every_finished_trial(
    nb201_path: Path, ray_cluster: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    for name in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DISABLE_CODE": "true"}.items():
        monkeypatch.setenv(name, value)
    for name in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    trial = RaisingTabularTrial(
        str(nb201_path), NasBench201Format(), cost_column="cifar10_train_time_200ep_s", columns=[METRIC]
    )
    logger = WandbLogger(save_dir=tmp_path, project="trials", offline=True)
    strategy = RandomSearch(NasBench201Format().choices(), metric=METRIC, seed=4)
    result = run_trials(strategy, trial, tmp_path / "run", num_trials=4, progress=False, loggers=[logger])
    run_id = logger.experiment.id
    wandb.finish()
    wandb.teardown()  # waits for the W&B service to write the whole run file

    (path,) = (tmp_path / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb")
    records = _wandb_records(path)
    history = [
        {_key(item): json.loads(item.value_json) for item in r.history.item}
        for r in records
        if r.WhichOneof("record_type") == "history"
    ]
    assert [row["trainer/global_step"] for row in history] == list(range(1, 5))
    for row, want in zip(history, _expected(result.records)):
        assert {k: v for k, v in row.items() if "/" in k and k != "trainer/global_step"} == pytest.approx(want)
    config = {
        _key(item): json.loads(item.value_json)
        for r in records
        if r.WhichOneof("record_type") == "config"
        for item in r.config.update
    }
    assert (config["strategy"], config["num_trials"], config["trial/kind"]) == ("RandomSearch", 4, "tabular")
