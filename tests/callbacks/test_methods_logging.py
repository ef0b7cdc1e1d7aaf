"""GenotypeLogger serves every method through the one NASModule interface (issue 7): ENAS on the cell and the macro
space, SPOS, CARS, Once-for-All and DARTS on the NAS-Bench-201 space each run a 2-epoch fit, and each history line,
its probabilities and sampled frequencies, and the pictures are what the method reports.

The sampled frequencies are checked against the architectures each training step trained, recomputed independently
from the method's seeded sampler (not read back through ``sampled_archs``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from lightning_nas.arch import Arch
from lightning_nas.callbacks import GenotypeLogger
from lightning_nas.callbacks.pictures import PNG_SIGNATURE
from lightning_nas.data import SyntheticDataModule
from lightning_nas.methods import CARS, DARTS, ENAS, SPOS, NASModule, OnceForAll
from lightning_nas.ops import ENAS_MICRO_OPS
from lightning_nas.sampling import step_generator
from lightning_nas.spaces import DartsCellSpace, ElasticMobileNetV3, EnasMacroSpace
from tests.tiny import quiet_trainer, tiny_darts_space, tiny_nb201_space

HISTORY = "architecture_history.jsonl"
FIELDS = {"epoch", "step", "event", "arch", "result", "probabilities", "sampled", "metrics"}


# ------------------------------------------------------------------------------------------------ the cases
def _enas(space: DartsCellSpace | EnasMacroSpace) -> ENAS:
    return ENAS(space, weight_steps=2, controller_steps=1, controller_samples=2, derive_samples=2, hidden_size=16)


def _enas_trained(model: NASModule, trainer: pl.Trainer) -> list[Arch]:
    assert isinstance(model, ENAS)
    step = int(model.search_step) - 1
    in_phase_1 = step % (model.weight_steps + model.controller_steps) < model.weight_steps
    return [model.sample(step).arch] if in_phase_1 else []


def _spos_trained(model: NASModule, trainer: pl.Trainer) -> list[Arch]:
    assert isinstance(model, SPOS)
    return [model.sample_path(trainer.global_step - 1)]


def _cars_trained(model: NASModule, trainer: pl.Trainer) -> list[Arch]:
    assert isinstance(model, CARS)
    generator = step_generator(model.seed, trainer.global_step - 1, "cars/path")
    return [model.pool[int(torch.randint(len(model.pool), (1,), generator=generator))]]


def _ofa_trained(model: NASModule, trainer: pl.Trainer) -> list[Arch]:
    assert isinstance(model, OnceForAll)
    phase, step = model.phase, trainer.global_step - 1
    generators = [step_generator(model.seed, step, k) for k in range(phase.subnets_per_step)]
    return [model.space.sample_subnet(generator, phase.limits) for generator in generators]


def _nothing_trained(model: NASModule, trainer: pl.Trainer) -> list[Arch]:
    return []


def _ofa() -> OnceForAll:
    space = ElasticMobileNetV3(
        in_channels=1, num_classes=4, preset="cifar", widths=(8, 8, 8, 16, 16, 24, 24, 48, 64), resolutions=(8, 12)
    )
    return OnceForAll(
        space,
        phase_epochs=[1] * 6,
        phase_lrs=[0.05] * 6,
        phase_warmup_epochs=[0] * 6,
        subnets_per_step=[2] * 6,
        calibration_images=0,
    )


@dataclass(frozen=True)
class Case:
    build: Callable[[], NASModule]
    trained: Callable[[NASModule, pl.Trainer], list[Arch]]  # what a training step trained, recomputed
    search_data: bool  # {"train", "val"} batches
    probabilities: bool
    pictures: tuple[str, ...]  # the pictures of each epoch, by kind


CASES = {
    "enas-cell": Case(
        lambda: _enas(tiny_darts_space(ops=ENAS_MICRO_OPS)),
        _enas_trained,
        True,
        True,
        ("cell_normal", "cell_reduce", "probabilities"),
    ),
    "enas-macro": Case(
        lambda: _enas(EnasMacroSpace(in_channels=1, num_classes=4, channels=4, layers=3)),
        _enas_trained,
        True,
        True,
        ("cell_macro", "probabilities"),
    ),
    "spos": Case(
        lambda: SPOS(tiny_darts_space(), image_size=8), _spos_trained, False, False, ("cell_normal", "cell_reduce")
    ),
    "cars": Case(
        lambda: CARS(tiny_darts_space(), population_size=2, image_size=8),
        _cars_trained,
        False,
        False,
        ("cell_normal", "cell_reduce", "subnets"),
    ),
    "ofa": Case(_ofa, _ofa_trained, False, False, ("subnets",)),
    "darts-nb201": Case(
        lambda: DARTS(tiny_nb201_space(), order="first", arch_lr=0.05),
        _nothing_trained,
        True,
        True,
        ("cell_cell", "probabilities"),
    ),
}


class RecordTrained(pl.Callback):
    """Per epoch, the architectures every training step trained (recomputed by the case)."""

    def __init__(self, trained: Callable[[NASModule, pl.Trainer], list[Arch]]) -> None:
        self.trained = trained
        self.by_epoch: dict[int, list[Arch]] = {}

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object) -> None:
        assert isinstance(pl_module, NASModule)
        self.by_epoch.setdefault(trainer.current_epoch, []).extend(self.trained(pl_module, trainer))


def _fit(model: NASModule, tmp_path: Path, search: bool, callbacks: list[pl.Callback], logger: Any) -> pl.Trainer:
    data = SyntheticDataModule(
        num_samples=64 if search else 32, num_classes=4, in_channels=1, image_size=8, search=search, batch_size=16
    )
    trainer = quiet_trainer(
        max_epochs=2,
        logger=logger,
        callbacks=[GenotypeLogger(cell_renderer="matplotlib"), *callbacks],
        limit_val_batches=1,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
    )
    trainer.fit(model, datamodule=data)
    return trainer


def _is_png(path: Path) -> bool:
    data = path.read_bytes()
    return data[:8] == PNG_SIGNATURE and len(data) > 1000


# -------------------------------------------------------------------------------------------------- the test
@pytest.mark.parametrize("name", list(CASES))
def test_every_method_feeds_the_history_scalars_and_pictures(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    pl.seed_everything(0)
    model = case.build()
    recorder = RecordTrained(case.trained)
    trainer = _fit(model, tmp_path, case.search_data, [recorder], CSVLogger(tmp_path, name="run", version=0))
    run = tmp_path / "run" / "version_0"
    records = [json.loads(line) for line in (run / HISTORY).read_text().splitlines()]
    choices = model.space.choices()

    assert [(r["epoch"], r["event"]) for r in records] == [(0, "epoch_end"), (1, "epoch_end")]
    for record in records:
        assert set(record) == FIELDS
        assert model.space.validate_arch(record["arch"]) == record["arch"]

        # Probabilities: one distribution per decision, named as the space's choices, each summing to 1.
        if case.probabilities:
            assert list(record["probabilities"]) == [c.name for c in choices]
            for choice in choices:
                distribution = record["probabilities"][choice.name]
                assert list(distribution) == [str(c) for c in choice.candidates]
                assert sum(distribution.values()) == pytest.approx(1.0, abs=1e-9)
        else:
            assert record["probabilities"] is None

        # Sampled frequencies: the share of this epoch's trained architectures taking each value.
        trained = recorder.by_epoch.get(record["epoch"], [])
        if not trained:
            assert record["sampled"] is None
            continue
        for choice in choices:
            counts = Counter(str(arch[choice.name]) for arch in trained)
            frequencies = record["sampled"][choice.name]
            assert {value: share * len(trained) for value, share in frequencies.items()} == pytest.approx(
                {str(c): float(counts[str(c)]) for c in choice.candidates}
            )
            assert sum(frequencies.values()) == pytest.approx(1.0)
    assert any(recorder.by_epoch.values()) == (case.trained is not _nothing_trained)
    if case.probabilities:  # the last line holds the distribution at the end of the run
        now = model.arch_probabilities()
        assert now is not None
        for decision, distribution in records[-1]["probabilities"].items():
            assert distribution == pytest.approx(now[decision])

    # Pictures: exactly the expected kinds, each epoch, valid PNGs.
    expected = {f"{kind}_epoch{epoch:03d}.png" for kind in case.pictures for epoch in (0, 1)}
    assert {path.name for path in (run / "pictures").glob("*.png")} == expected
    for picture in expected:
        assert _is_png(run / "pictures" / picture), picture

    # Evaluated subnets, where the method has them, carry the metric and sizes the subnet plot uses.
    results = model.subnet_results()
    if "subnets" in case.pictures:
        assert results
        for arch, metrics in results:
            assert model.space.validate_arch(arch) == arch
            assert 0.0 <= metrics["val/acc"] <= 1.0
            assert metrics["params"] > 0
    if isinstance(model, OnceForAll):  # the same accuracy as validation logged for each evaluation subnet
        subnets = model.evaluation_subnets()
        assert [arch for arch, _ in results] == list(subnets.values())
        for (arch, metrics), subnet in zip(results, subnets):
            assert metrics["val/acc"] == pytest.approx(float(trainer.callback_metrics[f"val/{subnet}/acc"]))
            assert metrics["flops"] == model.space.count_flops(arch)
    if isinstance(model, CARS):
        assert [arch for arch, _ in results] == [t.arch for t in model.history[-1]]


def test_pictures_reach_tensorboard_as_images(tmp_path: Path) -> None:
    """The event file holds each picture as an image summary, once per epoch, at the epoch's step (issue 7)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    pl.seed_everything(0)
    model = DARTS(tiny_darts_space(steps=1, ops=("none", "skip_connect", "max_pool_3x3")), order="first", arch_lr=0.05)
    logger = TensorBoardLogger(tmp_path, name="tb", version=0)
    trainer = _fit(model, tmp_path, True, [], logger)

    accumulator = EventAccumulator(str(tmp_path / "tb" / "version_0"), size_guidance={"images": 0}).Reload()
    tags = accumulator.Tags()
    assert {"arch/cell_normal", "arch/cell_reduce", "arch/probabilities"} <= set(tags["images"])
    history = [json.loads(line) for line in (tmp_path / "tb" / "version_0" / HISTORY).read_text().splitlines()]
    for tag in ("arch/cell_normal", "arch/cell_reduce", "arch/probabilities"):
        events = accumulator.Images(tag)
        assert [event.step for event in events] == [record["step"] for record in history]
        for event in events:
            assert event.encoded_image_string[:8] == PNG_SIGNATURE
            assert min(event.width, event.height) > 100
    assert accumulator.Scalars("arch/entropy_mean")[-1].step == trainer.global_step
    assert "arch/text/text_summary" in tags["tensors"]
