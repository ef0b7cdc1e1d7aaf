"""GenotypeLogger on DARTS and on a toy sampling method: history across an interrupted run, scalars, pictures.

Issue 7: the history holds one valid JSON object per epoch after an interrupted and resumed run.
"""

from __future__ import annotations

import csv
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch import Tensor, nn

from lightning_nas.arch import Arch, Choice, Genotype
from lightning_nas.callbacks import GenotypeLogger
from lightning_nas.callbacks.pictures import PNG_SIGNATURE
from lightning_nas.data import SyntheticDataModule
from lightning_nas.methods import DARTS, NASModule
from lightning_nas.methods.base import SubnetResult
from lightning_nas.sampling import sample_arch, step_generator
from lightning_nas.spaces.base import SearchSpace
from tests.tiny import quiet_trainer, tiny_darts_space

HISTORY = "architecture_history.jsonl"


def _darts() -> DARTS:
    return DARTS(tiny_darts_space(), order="first", arch_lr=0.05)


def _data(search: bool = True) -> SyntheticDataModule:
    return SyntheticDataModule(
        num_samples=64, num_classes=4, in_channels=1, image_size=8, search=search, batch_size=16, eval_batch_size=16
    )


def _trainer(save_dir: Path, callbacks: list[pl.Callback], **kwargs: Any) -> pl.Trainer:
    logging: dict[str, Any] = {"logger": CSVLogger(save_dir, name="run", version=0), "log_every_n_steps": 1}
    return quiet_trainer(save_dir, callbacks=callbacks, **{**logging, "limit_val_batches": 1, **kwargs})


class _Interrupted(Exception):
    pass


class _CrashAt(pl.Callback):
    """Raise after batch ``batch`` of epoch ``epoch``: a run killed mid-epoch."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.current_epoch == self.epoch and args[-1] == self.batch:
            raise _Interrupted


@pytest.mark.parametrize(
    ("validate", "new_version"),
    [(True, False), (False, False), (True, True)],
    ids=["with-validation", "without-validation", "into-a-new-log-dir"],
)
def test_history_after_interrupted_and_resumed_run(tmp_path: Path, validate: bool, new_version: bool) -> None:
    """With validation, ModelCheckpoint saves before the epoch's line is written; without, after. Either way, and
    also when the resumed run logs to a new version directory, the history ends with one line per epoch."""
    limit_val = 1 if validate else 0
    pl.seed_everything(0)
    model = _darts()
    callbacks = [GenotypeLogger(pictures=False), ModelCheckpoint(save_last=True), _CrashAt(epoch=2, batch=0)]
    with pytest.raises(_Interrupted):
        _trainer(tmp_path, callbacks, max_epochs=4, limit_val_batches=limit_val).fit(model, datamodule=_data())
    history = tmp_path / "run" / "version_0" / HISTORY
    before = [json.loads(line) for line in history.read_text().splitlines()]
    assert [r["epoch"] for r in before] == [0, 1]
    with history.open("a") as handle:  # a crash in the middle of a write
        handle.write('{"epoch": 2, "ste')

    resumed = _darts()
    last = tmp_path / "run" / "version_0" / "checkpoints" / "last.ckpt"
    callbacks = [GenotypeLogger(pictures=False), ModelCheckpoint(save_last=True)]
    logger = CSVLogger(tmp_path, name="run", version=1 if new_version else 0)
    trainer = _trainer(tmp_path, callbacks, max_epochs=4, limit_val_batches=limit_val, logger=logger)
    trainer.fit(resumed, datamodule=_data(), ckpt_path=last)
    history = tmp_path / "run" / f"version_{int(new_version)}" / HISTORY

    text = history.read_text()
    assert text.endswith("\n")
    after = [json.loads(line) for line in text.splitlines()]  # every line is one whole JSON object
    assert [r["epoch"] for r in after] == [0, 1, 2, 3]
    assert [r["event"] for r in after] == ["epoch_end"] * 4
    assert [r["arch"] for r in after[:2]] == [r["arch"] for r in before]  # what was recorded is kept
    assert after[-1]["arch"] == resumed.current_arch()
    assert Genotype.from_json(after[-1]["result"]) == resumed.genotype
    steps = [r["step"] for r in after]
    assert steps == sorted(steps)
    assert len(set(steps)) == 4


def test_a_resume_at_max_steps_ends_the_epoch_the_checkpoint_was_in(tmp_path: Path) -> None:
    """A step checkpoint at the last step (max_steps) is saved before its epoch's line: a run killed between the two
    and resumed has no step left, so Lightning skips the loop; the history still gets the epoch's line, once, with
    the final architecture, in the resumed run's folder (found by the kill -9 soak)."""
    pl.seed_everything(0)
    model = _darts()
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=2, save_top_k=-1)
    callbacks = [GenotypeLogger(pictures=False), checkpoints]
    _trainer(tmp_path, callbacks, max_steps=4, max_epochs=-1).fit(model, datamodule=_data())  # 2 epochs of 2 steps
    uninterrupted = [json.loads(line) for line in (tmp_path / "run" / "version_0" / HISTORY).read_text().splitlines()]
    assert [(r["epoch"], r["step"]) for r in uninterrupted] == [(0, 2), (1, 4)]

    resumed = _darts()
    logger = CSVLogger(tmp_path, name="run", version=1)
    trainer = _trainer(tmp_path, [GenotypeLogger(pictures=False)], max_steps=4, max_epochs=-1, logger=logger)
    trainer.fit(resumed, datamodule=_data(), ckpt_path=tmp_path / "ckpt" / "epoch=1-step=4.ckpt")
    after = [json.loads(line) for line in (tmp_path / "run" / "version_1" / HISTORY).read_text().splitlines()]
    assert [(r["epoch"], r["step"], r["event"]) for r in after] == [(0, 2, "epoch_end"), (1, 4, "epoch_end")]
    assert after[0] == uninterrupted[0]
    assert after[1]["arch"] == uninterrupted[1]["arch"] == resumed.current_arch()


def test_darts_run_logs_scalars_pictures_and_final_architecture(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pl.seed_everything(0)
    model = _darts()
    genotype_logger = GenotypeLogger(cell_renderer="matplotlib")
    with caplog.at_level(logging.INFO):
        _trainer(tmp_path, [genotype_logger, ModelCheckpoint()], max_epochs=2).fit(model, datamodule=_data())
    run = tmp_path / "run" / "version_0"
    # The end of fit says where the last pictures (those of the final architecture) are.
    last = [run / "pictures" / f"{kind}_epoch001.png" for kind in ("cell_normal", "cell_reduce", "probabilities")]
    assert sorted(genotype_logger.last_pictures.values()) == sorted(last)
    assert all(f"  {path}" in caplog.text for path in last), caplog.text
    records = [json.loads(line) for line in (run / HISTORY).read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1]
    final = json.loads((run / "checkpoints" / "final_architecture.json").read_text())
    assert Genotype.from_json(final) == model.genotype

    # The history's probabilities are the softmax of the alphas.
    alphas = model.space.alpha_normal.detach().softmax(-1)
    probabilities = records[-1]["probabilities"]
    assert probabilities["normal/node3/edge2"] == pytest.approx(dict(zip(model.space.ops, alphas[4].tolist())))

    with (run / "metrics.csv").open() as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("arch/entropy_mean")]
    assert len(rows) == 2
    last = rows[-1]
    edge = [float(last[f"arch/prob/normal/node2/edge0/{op}"]) for op in model.space.ops]
    assert sum(edge) == pytest.approx(1.0, abs=1e-6)
    entropy = -sum(p * torch.tensor(p).log() for p in edge)
    assert float(last["arch/entropy/normal/node2/edge0"]) == pytest.approx(float(entropy))
    skips = sum(op == "skip_connect" for op, _ in model.genotype.normal)
    assert float(last["arch/count/skip_connect/normal"]) == skips

    pictures = run / "pictures"
    expected = [f"{kind}_epoch{epoch:03d}.png" for epoch in (0, 1) for kind in ("cell_normal", "cell_reduce")]
    expected += [f"probabilities_epoch{epoch:03d}.png" for epoch in (0, 1)]
    for name in expected:
        data = (pictures / name).read_bytes()
        assert data[:8] == PNG_SIGNATURE, name
        assert len(data) > 1000, name
    # The alphas moved, so the heatmap changed between epochs.
    heatmaps = [(pictures / f"probabilities_epoch{epoch:03d}.png").read_bytes() for epoch in (0, 1)]
    assert heatmaps[0] != heatmaps[1]


def test_run_stopped_mid_epoch_is_recorded_once(tmp_path: Path) -> None:
    """max_steps ends epoch 1 after one of its two batches: that partial epoch gets its line, and fit end adds none."""
    model = _darts()
    trainer = _trainer(tmp_path, [GenotypeLogger(pictures=False)], max_steps=3)
    trainer.fit(model, datamodule=_data())
    records = [json.loads(line) for line in (tmp_path / "run" / "version_0" / HISTORY).read_text().splitlines()]
    assert [(r["epoch"], r["step"], r["event"]) for r in records] == [(0, 2, "epoch_end"), (1, 3, "epoch_end")]
    final = tmp_path / "run" / "version_0" / "final_architecture.json"  # no checkpoints: beside the history
    assert Genotype.from_json(final.read_text()) == model.genotype


# ----------------------------------------------------------------------------------- a toy sampling method
class ToySpace(SearchSpace):
    """A hidden width and an activation over a one-hidden-layer MLP on 1x8x8 images."""

    def __init__(self) -> None:
        super().__init__()
        self.in_channels, self.num_classes = 1, 4
        self.hidden, self.output = nn.Linear(64, 16), nn.Linear(16, 4)
        self.active: Arch = {"mlp/width": 16, "mlp/act": "relu"}

    def choices(self) -> list[Choice]:
        return [Choice("mlp/width", (4, 8, 16)), Choice("mlp/act", ("relu", "tanh"))]

    def activate(self, arch: Any) -> None:
        self.active = self.validate_arch(arch) if arch is not None else {"mlp/width": 16, "mlp/act": "relu"}

    def forward(self, x: Tensor) -> Tensor:
        width = int(self.active["mlp/width"])
        hidden = self.hidden(x.flatten(1))[:, :width]
        hidden = torch.relu(hidden) if self.active["mlp/act"] == "relu" else torch.tanh(hidden)
        return nn.functional.linear(hidden, self.output.weight[:, :width], self.output.bias)


class ToySampling(NASModule):
    """SPOS-like: every step trains one uniformly sampled path; validation measures the smallest and largest."""

    def __init__(self) -> None:
        super().__init__(ToySpace())
        self.last: list[Arch] = []
        self.trained: list[tuple[int, Arch]] = []
        self.results: list[SubnetResult] = []

    def current_arch(self) -> Arch:
        return {"mlp/width": 16, "mlp/act": "relu"}

    def sampled_archs(self) -> list[Arch]:
        return self.last

    def subnet_results(self) -> list[SubnetResult]:
        return self.results

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        arch = sample_arch(self.space.choices(), step_generator(0, self.global_step))
        self.space.activate(arch)
        self.last = [arch]
        self.trained.append((self.current_epoch, arch))
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def on_validation_epoch_start(self) -> None:
        self.results = []

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        for width in (4, 16):
            arch: Arch = {"mlp/width": width, "mlp/act": "relu"}
            self.space.activate(arch)
            accuracy = float((self(x).argmax(-1) == y).float().mean())
            self.results.append((arch, {"val/acc": accuracy, "params": float(64 * width + width * 4 + 4)}))
        self.space.activate(None)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_sampling_method_logs_choice_frequencies_and_subnet_plot(tmp_path: Path) -> None:
    model = ToySampling()
    _trainer(tmp_path, [GenotypeLogger(cell_renderer="matplotlib")], max_epochs=2).fit(
        model, datamodule=_data(search=False)
    )
    run = tmp_path / "run" / "version_0"
    records = [json.loads(line) for line in (run / HISTORY).read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1]
    for record in records:
        trained = [arch for epoch, arch in model.trained if epoch == record["epoch"]]
        for choice in model.space.choices():
            counts = Counter(str(arch[choice.name]) for arch in trained)
            expected = {str(c): counts[str(c)] / len(trained) for c in choice.candidates}
            assert record["sampled"][choice.name] == pytest.approx(expected)
        assert record["probabilities"] is None
    with (run / "metrics.csv").open() as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("arch/sampled/mlp/act/relu")]
    assert float(rows[-1]["arch/sampled/mlp/act/relu"]) == pytest.approx(records[-1]["sampled"]["mlp/act"]["relu"])
    for epoch in (0, 1):
        data = (run / "pictures" / f"subnets_epoch{epoch:03d}.png").read_bytes()
        assert data[:8] == PNG_SIGNATURE
        assert len(data) > 1000
    assert not list((run / "pictures").glob("cell_*"))  # no genotype, no cell diagram


def test_fashion_mnist_search_through_the_cli_draws_each_epoch(data_root: Path, tmp_path: Path) -> None:
    """A real (tiny) search as users run it: the CLI adds GenotypeLogger; each epoch gets its cells and heatmap."""
    from lightning_nas.cli import main

    repo = Path(__file__).resolve().parents[2]
    main(
        [
            "fit",
            "--config",
            str(repo / "configs/darts/fashion_mnist.yaml"),
            f"--data.root={data_root}",
            "--data.subset=256",
            "--data.batch_size=32",
            "--model.order=first",
            "--model.arch_lr=0.01",
            "--model.space.init_args.channels=4",
            "--model.space.init_args.layers=3",
            "--trainer.max_epochs=2",
            "--trainer.limit_val_batches=2",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
            f"--trainer.logger.init_args.save_dir={tmp_path}",
        ]
    )
    run = tmp_path / "darts_fashion_mnist" / "version_0"
    records = [json.loads(line) for line in (run / HISTORY).read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1]
    assert records[0]["probabilities"] != records[1]["probabilities"]
    for epoch in (0, 1):
        for kind in ("cell_normal", "cell_reduce", "probabilities"):
            assert (run / "pictures" / f"{kind}_epoch{epoch:03d}.png").read_bytes()[:8] == PNG_SIGNATURE
    assert (run / "config.yaml").is_file()
    assert Genotype.from_json((run / "checkpoints" / "final_architecture.json").read_text()) == Genotype.from_json(
        (run / "architecture.json").read_text()
    )
