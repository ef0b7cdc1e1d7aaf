"""Learning-curve early stopping in the multi-trial runner: scripted curves, the best finished trial to beat."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from ray import cloudpickle

from lightning_nas.arch import Arch
from lightning_nas.data import SyntheticDataModule
from lightning_nas.predictors import should_stop
from lightning_nas.trials import LightningTrial, run_trials
from lightning_nas.trials._records import TrialRecord, write_records
from lightning_nas.trials.scaling import GridSearch
from lightning_nas.trials.trainables import best_finished_accuracy, finished_curves

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers need not import the tests package

EPOCHS = 8
OPTIONS = {"min_epochs": 3, "threshold": 0.05, "upper": 1.0, "predictor": "auto"}  # the curve fit: 3 trials


def scripted(ceiling: float, epoch: int) -> float:
    """The validation accuracy after ``epoch`` epochs of the child whose curve heads to ``ceiling`` (pow3)."""
    return ceiling - 0.3 / epoch


class ScriptedCurve(pl.LightningModule):
    """Trains nothing; logs the scripted accuracy of its ``ceiling`` after every epoch."""

    def __init__(self, ceiling: float) -> None:
        super().__init__()
        self.ceiling = ceiling
        self.layer = torch.nn.Linear(64, 4)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.layer(batch[0].flatten(1)).sum() * 0.0

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self.log("val/acc", scripted(self.ceiling, self.current_epoch + 1))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)


def factory(arch: Arch) -> pl.LightningModule:
    return ScriptedCurve(float(arch["ceiling"]))


def data() -> SyntheticDataModule:
    return SyntheticDataModule(num_samples=8, num_classes=4, in_channels=1, image_size=8, batch_size=8)


def expected_epochs(ceiling: float, best: float | None) -> int:
    """Epochs the rule lets a child run, applied here to the scripted curve directly."""
    curve = [scripted(ceiling, e) for e in range(1, EPOCHS + 1)]
    for seen in range(1, EPOCHS + 1):
        if should_stop(curve[:seen], best, EPOCHS, **OPTIONS):
            return seen
    return EPOCHS


def test_hopeless_trials_stop_early_against_the_best_finished_trial(ray_cluster: str, tmp_path: Path) -> None:
    ceilings = [0.85, 0.5, 0.95]  # run in this order, one at a time
    # a static feature travels through Ray too (below min_finished the curve fit alone decides)
    trial = LightningTrial(data, factory, max_epochs=EPOCHS, early_stop={**OPTIONS, "features": ["ceiling"]})
    grid = GridSearch([{"ceiling": c} for c in ceilings])
    result = run_trials(grid, trial, tmp_path, num_trials=len(ceilings), concurrency=1, progress=False)
    records = {float(r.arch["ceiling"]): r for r in result.records}
    bests = [None, scripted(0.85, EPOCHS), scripted(0.85, EPOCHS)]
    for ceiling, best in zip(ceilings, bests):
        metrics, epochs = records[ceiling].metrics, expected_epochs(ceiling, best)
        assert records[ceiling].status == "ok"
        assert metrics["epoch"] == epochs
        assert metrics["accuracy"] == pytest.approx(scripted(ceiling, epochs))  # the last epoch's value
        assert metrics.get("stopped_early", 0.0) == (1.0 if epochs < EPOCHS else 0.0)
        assert metrics["feature_ceiling"] == ceiling
    assert records[0.5].metrics["epoch"] < EPOCHS
    assert records[0.95].metrics["epoch"] == EPOCHS
    assert result.best.arch == {"ceiling": 0.95}
    assert best_finished_accuracy(result.records, EPOCHS) == pytest.approx(scripted(0.95, EPOCHS))
    # each record holds the curve it ran: what later trials calibrate their predictions on
    for ceiling, record in records.items():
        ran = int(record.metrics["epoch"])
        assert [record.metrics[f"accuracy_epoch_{e}"] for e in range(1, ran + 1)] == pytest.approx(
            [scripted(ceiling, e) for e in range(1, ran + 1)]
        )
    ran_all = [c for c in ceilings if records[c].metrics["epoch"] == EPOCHS]
    assert np.allclose(
        finished_curves(result.records, EPOCHS), [[scripted(c, e) for e in range(1, EPOCHS + 1)] for c in ran_all]
    )


def _record(trial_id: str, curve: list[float], status: str = "ok") -> TrialRecord:
    metrics = {"accuracy": curve[-1], "epoch": float(len(curve))}
    metrics.update({f"accuracy_epoch_{e}": v for e, v in enumerate(curve, start=1)})
    return TrialRecord(trial_id, {"ceiling": 0.0}, metrics, status=status)  # type: ignore[arg-type]


def test_the_driver_context_carries_the_finished_curves_and_a_trial_calibrates_on_them(tmp_path: Path) -> None:
    """Five finished children all gain 0.3 * (1/3 - 1/8) after epoch 3: calibrated on them, the regression knows
    that a child at 0.83 - 0.3/3 after 3 epochs ends at 0.83 - 0.3/8, below the best (0.9 - 0.3/8), and stops it at
    epoch 3; without finished curves the trial's default predictor (the regression) has nothing to learn from and
    lets it run on."""
    full = [[scripted(c, e) for e in range(1, EPOCHS + 1)] for c in (0.7, 0.75, 0.8, 0.85, 0.9)]
    records = [_record(f"{i:05d}", curve) for i, curve in enumerate(full)]
    records += [_record("00005", full[0][:4]), _record("00006", full[1], status="failed")]  # left out
    trial = LightningTrial(
        data, factory, max_epochs=EPOCHS, early_stop={"min_finished": 5, "noise": 0.05, "upper": 1.0}
    )
    context = trial.context(records)
    assert context["best_so_far"] == pytest.approx(scripted(0.9, EPOCHS))
    assert np.allclose(json.loads(context["finished_curves"]), full)

    def epochs_run(curves: list[list[float]] | None) -> list[dict[str, float]]:
        reports: list[dict[str, float]] = []
        trial.run({"ceiling": 0.83}, lambda m: reports.append(dict(m)), context["best_so_far"], finished_curves=curves)
        return reports

    calibrated, alone = epochs_run(full), epochs_run(None)
    assert len(calibrated) == 3
    assert calibrated[-1]["stopped_early"] == 1.0
    assert [calibrated[-1][f"accuracy_epoch_{e}"] for e in (1, 2, 3)] == pytest.approx(
        [scripted(0.83, e) for e in (1, 2, 3)]
    )
    assert len(alone) > 3


def test_a_prior_search_calibrates_the_regression_from_this_searchs_first_finished_trial(tmp_path: Path) -> None:
    """``early_stop={"prior": [earlier]}``: the five finished trials of an earlier search of the same recipe come
    first in the context's curves and calibrate the regression, so with ``min_finished=5`` a child at 0.75 stops at
    epoch 3 once this search has one finished trial; ``best_so_far`` is this search's own (0.86 - 0.3/8), not the
    earlier search's 0.9 - 0.3/8. Without the prior the same child runs on (one finished curve calibrates nothing)."""
    full = [[scripted(c, e) for e in range(1, EPOCHS + 1)] for c in (0.7, 0.75, 0.8, 0.85, 0.9)]
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    write_records(
        [_record(f"{i:05d}", curve) for i, curve in enumerate(full)] + [_record("00005", full[0][:4])], earlier
    )
    own = [_record("00000", [scripted(0.86, e) for e in range(1, EPOCHS + 1)])]
    options = {"min_finished": 5, "noise": 0.05, "upper": 1.0}
    trial = LightningTrial(data, factory, max_epochs=EPOCHS, early_stop={**options, "prior": [str(earlier)]})
    assert len(trial.prior_records) == 6
    context = trial.context(own)
    assert context["best_so_far"] == pytest.approx(scripted(0.86, EPOCHS))
    assert np.allclose(json.loads(context["finished_curves"]), [*full, [scripted(0.86, e) for e in range(1, 9)]])

    def epochs_run(spec: LightningTrial) -> list[dict[str, float]]:
        reports: list[dict[str, float]] = []
        ctx = spec.context(own)
        spec.run(
            {"ceiling": 0.75}, lambda m: reports.append(dict(m)), ctx["best_so_far"], json.loads(ctx["finished_curves"])
        )
        return reports

    with_prior = epochs_run(trial)
    assert len(with_prior) == 3
    assert with_prior[-1]["stopped_early"] == 1.0
    assert len(epochs_run(LightningTrial(data, factory, max_epochs=EPOCHS, early_stop=options))) == EPOCHS
    the_file = LightningTrial(data, factory, max_epochs=EPOCHS, early_stop={"prior": earlier / "trials.jsonl"})
    assert [r.trial_id for r in the_file.prior_records] == [r.trial_id for r in trial.prior_records]
    assert json.loads(json.dumps(the_file.describe()))["early_stop"] == {"prior": [str(earlier / "trials.jsonl")]}


def test_a_prior_search_without_what_this_one_reads_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"early_stop prior '.*nowhere': no trials.jsonl there"):
        LightningTrial(data, factory, max_epochs=EPOCHS, early_stop={"prior": [str(tmp_path / "nowhere")]})
    short = tmp_path / "short"
    short.mkdir()
    write_records([_record("00000", [0.5, 0.6, 0.7, 0.8])], short)  # 4 epochs, not 8
    with pytest.raises(ValueError, match=r"trials.jsonl': no trial there ran all 8 epochs and reported the curve;"):
        LightningTrial(data, factory, max_epochs=EPOCHS, early_stop={"prior": [str(short)]})
    no_loss = tmp_path / "no_loss"
    no_loss.mkdir()
    write_records([_record("00000", [scripted(0.8, e) for e in range(1, EPOCHS + 1)])], no_loss)
    with pytest.raises(ValueError, match="reported the curve, train_loss;"):
        LightningTrial(data, factory, max_epochs=EPOCHS, early_stop={"prior": [str(no_loss)], "extra": ["train_loss"]})
    (tmp_path / "torn.jsonl").write_text('{"trial_id": "00000", "arch"\n')
    with pytest.raises(ValueError, match=r"torn.jsonl: line 1 is not a trial record"):
        LightningTrial(data, factory, max_epochs=EPOCHS, early_stop={"prior": [str(tmp_path / "torn.jsonl")]})


def test_unknown_early_stop_options_are_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown early_stop options \['patience'\]; valid options: min_epochs"):
        LightningTrial(data, factory, early_stop={"patience": 2})
    with pytest.raises(ValueError, match="min_epochs must be >= 3"):
        LightningTrial(data, factory, early_stop={"min_epochs": 1})


class ScriptedLoss(ScriptedCurve):
    """The same flat accuracy for every child (0.6); its training loss, ``loss - 0.05 * epoch``, tells them apart."""

    def __init__(self, loss: float) -> None:
        super().__init__(0.0)
        self.loss = loss

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.layer(batch[0].flatten(1)).sum() * 0.0 + (self.loss - 0.05 * self.current_epoch)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self.log("val/acc", 0.6)


def loss_factory(arch: Arch) -> pl.LightningModule:
    return ScriptedLoss(float(arch["loss"]))


def test_trials_report_the_training_loss_and_calibrate_on_the_finished_trials_losses() -> None:
    """``early_stop={"extra": ["train_loss"]}``: a trial reports its mean training loss per epoch; the context holds
    the finished trials' losses beside their curves; finished children whose final is 0.95 - 0.5 * (epoch 3's loss)
    let the regression stop a child whose loss (0.9 at epoch 3) says it ends at 0.5, below the best."""
    losses = [0.2, 0.4, 0.6, 0.8, 1.0]
    series = [[loss - 0.05 * (e - 1) for e in range(1, EPOCHS + 1)] for loss in losses]
    records = []
    for i, loss in enumerate(series):
        curve = [0.6] * (EPOCHS - 1) + [0.95 - 0.5 * loss[2]]
        record = _record(f"{i:05d}", curve)
        record.metrics.update({f"train_loss_epoch_{e}": v for e, v in enumerate(loss, start=1)})
        records.append(record)
    records.append(_record("00005", [0.6] * EPOCHS))  # finished without reporting losses: left out of both
    trial = LightningTrial(
        data, loss_factory, max_epochs=EPOCHS, early_stop={"min_finished": 5, "extra": ["train_loss"]}
    )
    context = trial.context(records)
    assert context["best_so_far"] == pytest.approx(0.95 - 0.5 * 0.1)
    finals = [[0.6] * (EPOCHS - 1) + [0.95 - 0.5 * loss[2]] for loss in series]
    assert np.allclose(json.loads(context["finished_curves"]), finals)
    assert np.allclose(json.loads(context["finished_extra"])["train_loss"], series)

    reports: list[dict[str, float]] = []
    trial.run(
        {"loss": 1.0},
        lambda m: reports.append(dict(m)),
        context["best_so_far"],
        finished_curves=json.loads(context["finished_curves"]),
        finished_extra=json.loads(context["finished_extra"]),
    )
    assert len(reports) == 3
    assert reports[-1]["stopped_early"] == 1.0
    assert [reports[-1][f"train_loss_epoch_{e}"] for e in (1, 2, 3)] == pytest.approx([1.0, 0.95, 0.9])
    with pytest.raises(ValueError, match=r"finished_extra must hold .*\['train_loss'\], got \[\]"):
        trial.run({"loss": 1.0}, lambda m: None, 0.9, finished_curves=json.loads(context["finished_curves"]))


def test_trials_calibrate_on_a_static_feature_of_the_finished_trials() -> None:
    """``early_stop={"features": ["log10(lr)"]}`` on a space that searches the learning rate: finished children share
    one curve up to epoch 7 and end at 0.55 + 0.3 log10(lr / 0.005). The context carries their rows; a child at
    lr 0.006 (heading to 0.57) stops at epoch 3 against the best (0.94), one at lr 0.1 runs on. The curve alone could
    not tell the two apart: both follow the shared curve."""
    lrs = [0.005 * 20 ** (i / 5) for i in range(6)]  # 0.005 .. 0.1
    records = []
    for i, lr in enumerate(lrs):
        record = _record(f"{i:05d}", [scripted(0.9, e) for e in range(1, EPOCHS)] + [0.55 + 0.3 * np.log10(lr / 0.005)])
        record.metrics["feature_log10(lr)"] = float(np.log10(lr))
        records.append(record)
    records.append(_record("00006", [scripted(0.9, e) for e in range(1, EPOCHS + 1)]))  # no feature: left out
    trial = LightningTrial(data, factory, max_epochs=EPOCHS, early_stop={"min_finished": 5, "features": ["log10(lr)"]})
    context = trial.context(records)
    assert context["best_so_far"] == pytest.approx(0.55 + 0.3 * np.log10(20))
    assert np.allclose(json.loads(context["finished_features"]), np.log10(lrs)[:, None])
    assert len(json.loads(context["finished_curves"])) == 6
    finished = {"finished_curves": json.loads(context["finished_curves"])}
    finished["finished_features"] = json.loads(context["finished_features"])
    for lr, epochs in ((0.006, 3), (0.1, EPOCHS)):
        reports: list[dict[str, float]] = []
        trial.run({"ceiling": 0.9, "lr": lr}, lambda m: reports.append(dict(m)), context["best_so_far"], **finished)
        assert len(reports) == epochs
        assert reports[-1]["feature_log10(lr)"] == pytest.approx(np.log10(lr))
        assert reports[-1].get("stopped_early", 0.0) == (1.0 if epochs < EPOCHS else 0.0)
    misnamed = LightningTrial(data, factory, max_epochs=EPOCHS, early_stop={"features": ["log10(lrate)"]})
    with pytest.raises(ValueError, match=r"unknown static feature 'log10\(lrate\)': .* are .* ceiling, lr, params"):
        misnamed.run({"ceiling": 0.9, "lr": 0.01}, lambda m: None, 0.9, **finished)
    with pytest.raises(ValueError, match=r"static feature 'log10\(lr\)' needs a positive value, got 0"):
        trial.run({"ceiling": 0.9, "lr": 0}, lambda m: None, 0.9, **finished)
    with pytest.raises(ValueError, match="need the finished trials' rows"):
        trial.run({"ceiling": 0.9, "lr": 0.01}, lambda m: None, 0.9, finished_curves=finished["finished_curves"])
    with pytest.raises(ValueError, match="need input_shape to count FLOPs"):
        LightningTrial(data, factory, max_epochs=EPOCHS, early_stop={"features": ["log10(flops)"]})
    with pytest.raises(ValueError, match="early_stop features must be a list of names, got 'lr'"):
        LightningTrial(data, factory, max_epochs=EPOCHS, early_stop={"features": "lr"})


def test_run_trial_passes_the_finished_series_only_to_specs_that_get_them(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray import tune

    from lightning_nas.trials.trainables import run_trial

    calls: list[tuple] = []

    class Spec:
        def run(self, arch: Arch, report: object, *args: object, **kwargs: object) -> None:
            calls.append((args, kwargs))

        def describe(self) -> dict:
            return {}

    monkeypatch.setattr(tune, "report", lambda metrics: None)
    arch = json.dumps({"ceiling": 0.5})
    run_trial({"arch": arch}, Spec())
    run_trial({"arch": arch, "best_so_far": 0.8, "finished_curves": "[[0.1, 0.2]]"}, Spec())
    extra = json.dumps({"train_loss": [[1.0, 0.9]]})
    run_trial({"arch": arch, "best_so_far": 0.8, "finished_curves": "[[0.1, 0.2]]", "finished_extra": extra}, Spec())
    rows = "[[-2]]"
    run_trial({"arch": arch, "best_so_far": 0.8, "finished_curves": "[[0.1, 0.2]]", "finished_features": rows}, Spec())
    assert calls == [
        ((), {}),
        ((0.8,), {"finished_curves": [[0.1, 0.2]]}),
        ((0.8,), {"finished_curves": [[0.1, 0.2]], "finished_extra": {"train_loss": [[1.0, 0.9]]}}),
        ((0.8,), {"finished_curves": [[0.1, 0.2]], "finished_features": [[-2]]}),
    ]
