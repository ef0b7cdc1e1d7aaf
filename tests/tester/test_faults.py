"""Faults: pre-emption, broken and foreign checkpoints, non-finite losses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch import Tensor

from lightning_nas.callbacks import CheckpointOnInterrupt, GenotypeLogger
from lightning_nas.cli import main, read_checkpoint_result
from lightning_nas.methods import DARTS
from tests.test_cli import _search_args
from tests.tester.cases import CASES, MethodCase, tiny_enas
from tests.tiny import bilevel_data, quiet_trainer, tiny_darts_space

REPO = Path(__file__).resolve().parents[2]


def _search_cli(tmp_path: Path, *extra: str) -> list[str]:
    return _search_args(tmp_path, "--trainer.enable_progress_bar=false", *extra)


@pytest.fixture
def launch_signals() -> Iterator[None]:
    """The signal handlers of an interactive launch, whatever the suite was started with, restored afterwards.

    ``nohup pytest &`` or a CI runner can start the suite with SIGINT (or SIGTERM) ignored, and child processes
    inherit that; these tests send the signals and need Python's default reactions: SIGINT raises
    ``KeyboardInterrupt`` and SIGTERM is left to Lightning's handler.
    """
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


@pytest.mark.usefixtures("launch_signals")
def test_sigterm_mid_epoch_leaves_a_checkpoint_that_resumes(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
    args = _search_cli(tmp_path, "--trainer.max_steps=-1", "--trainer.max_epochs=50", "--trainer.log_every_n_steps=1")
    process = subprocess.Popen(
        [sys.executable, "-m", "lightning_nas", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    run_dir = tmp_path / "darts_digits" / "version_0"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (run_dir / "hparams.yaml").exists():  # written as fit starts
        time.sleep(0.2)
    time.sleep(3)  # a few steps in
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=120)[0].decode()
    checkpoint = run_dir / "checkpoints" / "interrupted.ckpt"
    assert checkpoint.is_file(), output[-3000:]
    assert process.returncode == 128 + signal.SIGTERM, output[-3000:]  # not 0: a job script must not go on
    assert not list((run_dir / "checkpoints").glob(".*partial")), "a temporary file was left behind"
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert state["lightning_nas"]["method"] == "DARTS"
    step = state["global_step"]
    assert step >= 1

    # resume from it through the CLI and run two more steps
    main(_search_cli(tmp_path, f"--ckpt_path={checkpoint}", f"--trainer.max_steps={step + 2}"))
    resumed = torch.load(tmp_path / "darts_digits" / "version_1" / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["global_step"] == step + 2


def _checkpoint(tmp_path: Path) -> Path:
    main(_search_cli(tmp_path, "--trainer.max_steps=1", "--trainer.limit_val_batches=2"))
    return tmp_path / "darts_digits" / "version_0" / "checkpoints" / "last.ckpt"


def test_truncated_and_foreign_checkpoints_get_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    good = _checkpoint(tmp_path)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint at all")
    for bad, expected in (
        (truncated, "is not a readable checkpoint"),
        (garbage, "is not a readable checkpoint"),
        (tmp_path / "missing.ckpt", "does not exist"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(_search_cli(tmp_path, f"--ckpt_path={bad}"))
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert expected in err
        assert str(bad) in err
        assert "Traceback" not in err

    retrain = [
        "fit",
        "--config",
        str(REPO / "configs/retrain/digits.yaml"),
        f"--trainer.default_root_dir={tmp_path}",
        f"--ckpt_path={good}",
    ]
    with pytest.raises(SystemExit):
        main(retrain)
    err = capsys.readouterr().err
    assert "method 'DARTS'" in err
    assert "this run uses method 'Retrain'" in err


class NaNAt(DARTS):
    """DARTS whose training loss turns NaN at one step."""

    def __init__(self, *args: object, nan_step: int, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.nan_step = nan_step
        self.losses = 0

    def training_loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        loss = super().training_loss(logits, targets)
        self.losses += 1  # first order: the weight step is the only caller
        return loss * float("nan") if self.losses == self.nan_step + 1 else loss


def _trainer(tmp_path: Path, **kwargs: Any) -> pl.Trainer:
    return quiet_trainer(tmp_path, num_sanity_val_steps=0, limit_val_batches=1, **kwargs)


def test_nan_loss_stops_with_the_step_and_the_loss_named(tmp_path: Path) -> None:
    pl.seed_everything(0)
    model = NaNAt(tiny_darts_space(), order="first", nan_step=2)
    with pytest.raises(FloatingPointError, match=r"non-finite training loss at step 2 \(epoch 0\)"):
        _trainer(tmp_path, max_steps=5).fit(model, datamodule=bilevel_data())
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("diverged", [False, True])
def test_the_checkpoint_of_a_stopped_run_is_recommended_only_when_its_weights_are_finite(
    diverged: bool, tmp_path: Path
) -> None:
    """A NaN loss after the weights diverged (a huge learning rate) left interrupted.ckpt full of NaNs, and the
    warning said to resume from it, which fails again at once."""

    class Diverges(NaNAt):
        def training_loss(self, logits: Tensor, targets: Tensor) -> Tensor:
            if diverged and self.losses == self.nan_step:
                with torch.no_grad():
                    next(self.space.parameters()).fill_(float("inf"))
            return super().training_loss(logits, targets)

    pl.seed_everything(0)
    model = Diverges(tiny_darts_space(), order="first", nan_step=2)
    with pytest.warns(UserWarning, match="FloatingPointError during fit") as warned, pytest.raises(FloatingPointError):
        _trainer(tmp_path, max_steps=5, callbacks=[CheckpointOnInterrupt()]).fit(model, datamodule=bilevel_data())
    messages = " ".join(str(w.message) for w in warned)
    checkpoint = tmp_path / "checkpoints" / "interrupted.ckpt"
    assert checkpoint.is_file()  # kept either way, for inspection
    if diverged:
        assert f"saved {checkpoint} for inspection, but 1 of its tensors are not finite" in messages
        assert "do not resume from it" in messages
        assert "--ckpt_path" not in messages
    else:
        assert f"resume with --ckpt_path={checkpoint}" in messages


def test_nan_loss_skipped_on_request_leaves_the_weights_untouched(tmp_path: Path) -> None:
    pl.seed_everything(0)
    model = NaNAt(tiny_darts_space(), order="first", nan_step=2, nan_policy="skip")
    snapshots: list[dict[str, Tensor]] = []

    class Snapshot(pl.Callback):
        def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object) -> None:
            snapshots.append({k: v.clone() for k, v in pl_module.state_dict().items() if "alpha" not in k})

    with pytest.warns(UserWarning, match="non-finite training loss at step 2"):
        _trainer(tmp_path, max_steps=4, callbacks=[Snapshot()]).fit(model, datamodule=bilevel_data())
    assert model.skipped_steps >= 1
    assert all(torch.isfinite(p).all() for p in model.parameters())
    # the batch whose loss was NaN changed no weight (BN statistics included: its forward ran in train mode, so
    # compare only parameters)
    names = [n for n, _ in model.named_parameters() if "alpha" not in n]
    skipped = 2  # batches 0, 1 stepped (global_step 0 -> 2); batch 2 had the NaN
    assert all(torch.equal(snapshots[skipped][n], snapshots[skipped - 1][n]) for n in names)
    assert any(not torch.equal(snapshots[skipped + 1][n], snapshots[skipped][n]) for n in names)


def test_bad_nan_policy_is_named() -> None:
    with pytest.raises(ValueError, match="nan_policy must be 'stop' or 'skip', got 'ignore'"):
        DARTS(tiny_darts_space(), nan_policy="ignore")  # type: ignore[arg-type]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_foreign_or_truncated_checkpoint_is_refused_by_name(case: MethodCase, tmp_path: Path) -> None:
    pl.seed_everything(0)
    module = case.build()
    trainer = _trainer(tmp_path, max_steps=1)
    trainer.fit(module, datamodule=case.data())
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    assert read_checkpoint_result(path)["method"] == type(module).__name__
    checkpoint["lightning_nas"]["space"] = "SomeOtherSpace"
    space = type(module.space).__name__  # type: ignore[union-attr]
    with pytest.raises(ValueError, match=f"space 'SomeOtherSpace'.*space '{space}'"):
        case.build().on_load_checkpoint(checkpoint)
    checkpoint["lightning_nas"].update(space=space, method="SomeOtherMethod")
    with pytest.raises(ValueError, match=f"method 'SomeOtherMethod'.*method '{type(module).__name__}'"):
        case.build().on_load_checkpoint(checkpoint)
    # a truncated copy of this method's checkpoint: one clear error naming the file
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=f"'{truncated}' is not a readable checkpoint"):
        read_checkpoint_result(truncated)


class NaNOutputsAt(pl.Callback):
    """Make the space's training-mode outputs NaN during one training batch, whatever the method computes."""

    def __init__(self, batch: int) -> None:
        self.batch, self.seen, self.active = batch, -1, False
        self.step: int | None = None  # the global step the NaN batch ran at
        self.before: dict[str, Tensor] = {}
        self.after: dict[str, Tensor] = {}
        self.next: dict[str, Tensor] = {}

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl_module.space.register_forward_hook(self._hook)  # type: ignore[union-attr]

    def _hook(self, module: torch.nn.Module, inputs: object, output: Tensor) -> Tensor | None:
        return output * float("nan") if self.active and module.training else None

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object) -> None:
        self.seen += 1
        self.active = self.seen == self.batch
        if self.active:
            self.step, self.before = trainer.global_step, _parameters(pl_module)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object) -> None:
        if self.active:
            self.after = _parameters(pl_module)
        elif self.seen == self.batch + 1:
            self.next = _parameters(pl_module)
        self.active = False


def _parameters(module: pl.LightningModule) -> dict[str, Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def _with_policy(case: MethodCase, policy: str) -> pl.LightningModule:
    module = case.build()
    module.nan_policy = policy  # type: ignore[assignment]
    return module


NAN_BATCH = 1  # a weight step for every method (ENAS's first controller step is batch 2)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_nan_loss_stops_every_method_naming_the_step_and_the_loss(case: MethodCase, tmp_path: Path) -> None:
    pl.seed_everything(0)
    module, nan = _with_policy(case, "stop"), NaNOutputsAt(NAN_BATCH)
    every_step = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=1, save_top_k=-1)
    with pytest.raises(FloatingPointError, match=r"non-finite [a-z ]*loss[a-z0-9 ]* at step 1 \(epoch 0\)"):
        _trainer(tmp_path, max_steps=4, callbacks=[nan, every_step]).fit(module, datamodule=case.data())
    assert nan.step == 1
    assert all(torch.isfinite(p).all() for p in module.parameters())
    # the last good checkpoint (step 1) is kept, loadable and finite; nothing was written after it
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == ["epoch=0-step=1.ckpt"]
    state = torch.load(tmp_path / "ckpt" / "epoch=0-step=1.ckpt", weights_only=True)
    assert all(
        torch.isfinite(v).all() for v in state["state_dict"].values() if isinstance(v, Tensor) and v.is_floating_point()
    )


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_nan_loss_skipped_in_every_method_changes_no_parameter(case: MethodCase, tmp_path: Path) -> None:
    pl.seed_everything(0)
    module, nan = _with_policy(case, "skip"), NaNOutputsAt(NAN_BATCH)
    with pytest.warns(UserWarning, match=r"non-finite [a-z ]*loss[a-z0-9 ]* at step 1 \(epoch 0\); update skipped"):
        _trainer(tmp_path, max_steps=4, callbacks=[nan]).fit(module, datamodule=case.data())
    assert module.skipped_steps >= 1  # type: ignore[operator]
    assert all(torch.isfinite(p).all() for p in module.parameters())
    for name, value in nan.before.items():
        assert torch.equal(nan.after[name], value), f"{name} changed on the skipped batch"
    assert any(not torch.equal(nan.next[n], nan.after[n]) for n in nan.before)  # the next batch trains again


@pytest.mark.parametrize("policy", ["stop", "skip"])
def test_non_finite_enas_controller_loss_is_named(policy: str, tmp_path: Path) -> None:
    """An infinite baseline makes the REINFORCE loss infinite at the first controller step (batch 2, step 2)."""
    pl.seed_everything(0)
    module = tiny_enas()
    module.nan_policy = policy  # type: ignore[assignment]
    module.baseline.fill_(float("inf"))
    policy_before = {k: v.detach().clone() for k, v in module.policy.named_parameters()}
    trainer = _trainer(tmp_path, max_steps=3)
    if policy == "stop":
        with pytest.raises(FloatingPointError, match=r"non-finite controller loss at step 2 \(epoch 0\)"):
            trainer.fit(module, datamodule=bilevel_data())
        return
    with pytest.warns(UserWarning, match=r"non-finite controller loss at step 2 \(epoch 0\); update skipped"):
        trainer.fit(module, datamodule=bilevel_data())
    assert all(torch.equal(v, policy_before[k]) for k, v in module.policy.named_parameters())
    assert torch.isinf(module.baseline)  # the skipped update left the baseline alone too


class SignalAt(pl.Callback):
    """Send this process a signal (SIGTERM: a cluster's pre-emption) at the end of the batch that reaches ``step``."""

    def __init__(self, step: int, signum: int = signal.SIGTERM) -> None:
        self.step, self.signum, self.sent = step, signum, False

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.global_step == self.step and not self.sent:
            self.sent = True
            os.kill(os.getpid(), self.signum)


@pytest.mark.usefixtures("launch_signals")
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_sigterm_mid_epoch_leaves_a_checkpoint_and_history_for_every_method(case: MethodCase, tmp_path: Path) -> None:
    pl.seed_everything(0)
    module = case.build()
    callbacks = [CheckpointOnInterrupt(), GenotypeLogger(pictures=False), SignalAt(4)]  # step 4: mid-epoch 1
    with pytest.raises(SIGTERMException):
        _trainer(tmp_path, max_steps=7, callbacks=callbacks).fit(module, datamodule=case.data())
    checkpoint = tmp_path / "checkpoints" / "interrupted.ckpt"
    assert not list(checkpoint.parent.glob(".*partial"))
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert state["lightning_nas"]["method"] == type(module).__name__
    assert state["global_step"] == 4
    history = [json.loads(line) for line in (tmp_path / "architecture_history.jsonl").read_text().splitlines()]
    assert history
    assert all(record["step"] <= 4 for record in history)

    pl.seed_everything(0)
    resumed = _trainer(tmp_path, max_steps=6, callbacks=[GenotypeLogger(pictures=False)])
    resumed.fit(case.build(), datamodule=case.data(), ckpt_path=checkpoint)
    assert resumed.global_step == 6
    lines = (tmp_path / "architecture_history.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines[: len(history)]] == history  # the history continues, intact


@pytest.mark.usefixtures("launch_signals")
def test_ctrl_c_mid_epoch_leaves_a_loadable_checkpoint(tmp_path: Path) -> None:
    """Lightning turns Ctrl-C into a graceful shutdown (``sys.exit(1)``, SIGINT ignored from then on)."""
    case = CASES[0]
    pl.seed_everything(0)
    with pytest.raises(SystemExit):
        _trainer(tmp_path, max_steps=7, callbacks=[CheckpointOnInterrupt(), SignalAt(4, signal.SIGINT)]).fit(
            case.build(), datamodule=case.data()
        )
    state = torch.load(tmp_path / "checkpoints" / "interrupted.ckpt", map_location="cpu", weights_only=True)
    assert state["global_step"] == 4
    assert read_checkpoint_result(tmp_path / "checkpoints" / "interrupted.ckpt")["method"] == "DARTS"
