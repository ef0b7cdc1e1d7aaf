"""Exact resume: stop mid-epoch, resume from the checkpoint, and end bit for bit where an uninterrupted run ends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from tests.tester.cases import CASES, MethodCase
from tests.tiny import quiet_trainer

MAX_STEPS = 7  # 3 batches per epoch: the run ends in its third epoch, the crash and checkpoint in the second
# (ENAS: 4 weight steps per 5 batches, OFA: epoch 1 is phase depth-1, epoch 2 runs through the expand phases)
STOP_AT = 4


class _Crash(Exception):
    pass


class CrashAt(Callback):
    """Kill the run as the step after ``step`` starts (Lightning runs checkpoint callbacks last in a hook)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.global_step == self.step:
            raise _Crash


def _interrupted(case: MethodCase, root: Path) -> Path:
    """Run towards MAX_STEPS, crash after STOP_AT steps; return the checkpoint written at STOP_AT."""
    checkpoint = ModelCheckpoint(dirpath=root / "ckpt", every_n_train_steps=STOP_AT, save_top_k=-1)
    with pytest.raises(_Crash):
        _fit(case, root / "first", MAX_STEPS, callbacks=[checkpoint, CrashAt(STOP_AT)])
    saved = sorted((root / "ckpt").glob(f"epoch=*-step={STOP_AT}.ckpt"))  # ENAS's controller batches take no step
    assert len(saved) == 1, sorted(p.name for p in (root / "ckpt").iterdir())
    return saved[0]


def _fit(case: MethodCase, root: Path, max_steps: int, ckpt_path: str | None = None, **kwargs: Any):
    pl.seed_everything(0)
    module = case.build()
    trainer = quiet_trainer(
        root, max_steps=max_steps, deterministic=True, num_sanity_val_steps=0, limit_val_batches=1, **kwargs
    )
    trainer.fit(module, datamodule=case.data(), ckpt_path=ckpt_path)
    return module, trainer


def _state(module: pl.LightningModule, trainer: pl.Trainer):
    optimizers = [opt.state_dict() for opt in trainer.optimizers]
    return module.state_dict(), optimizers


def _assert_identical(a, b, path="") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), path
        assert a.dtype == b.dtype, f"{path}: dtype {a.dtype} != {b.dtype}"
        assert torch.equal(a, b), f"{path} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            _assert_identical(a[key], b[key], f"{path}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_identical(x, y, f"{path}/{i}")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_mid_epoch_resume_is_bit_exact(case: MethodCase, tmp_path: Path) -> None:
    full_module, full_trainer = _fit(case, tmp_path / "full", MAX_STEPS)

    saved = _interrupted(case, tmp_path)
    resumed_module, resumed_trainer = _fit(case, tmp_path / "second", MAX_STEPS, ckpt_path=str(saved))
    assert resumed_trainer.global_step == full_trainer.global_step == MAX_STEPS
    _assert_identical(_state(resumed_module, resumed_trainer), _state(full_module, full_trainer))
    _assert_identical(case.search_state(resumed_module), case.search_state(full_module))


@pytest.mark.parametrize("case", CASES[:1], ids=lambda c: c.name)
def test_resume_check_can_fail(case: MethodCase, tmp_path: Path) -> None:
    """The comparison above detects a resume that replays the epoch from its start."""
    full_module, full_trainer = _fit(case, tmp_path / "full", MAX_STEPS)
    saved = _interrupted(case, tmp_path)
    state = torch.load(saved, weights_only=False)
    state["loops"]["fit_loop"]["state_dict"].pop("combined_loader")  # as if the loaders kept no position
    torch.save(state, saved)
    resumed_module, resumed_trainer = _fit(case, tmp_path / "second", MAX_STEPS, ckpt_path=str(saved))
    with pytest.raises(AssertionError, match="differs"):
        _assert_identical(_state(resumed_module, resumed_trainer), _state(full_module, full_trainer))
