"""OnceForAll (issue 4): phases in order with the sizes each allows, kill-and-resume keeps phase and teacher, a
short real Fashion-MNIST run whose largest and smallest subnets beat chance after BN recalibration, and errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch

from lightning_nas.callbacks import RecalibrateBatchNorm
from lightning_nas.data import MNISTDataModule, SyntheticDataModule
from lightning_nas.methods import OnceForAll
from lightning_nas.spaces import DartsCellSpace, ElasticMobileNetV3
from tests.tiny import TINY_WIDTHS, quiet_trainer, tiny_elastic_space


def _model(**kwargs: Any) -> OnceForAll:
    defaults: dict[str, Any] = {
        "phase_epochs": [1] * 6,
        "phase_lrs": [0.05] * 6,
        "phase_warmup_epochs": [0] * 6,
        "calibration_images": 0,
    }
    return OnceForAll(tiny_elastic_space(), **{**defaults, **kwargs})


def _trainer(root: Path, **kwargs: Any) -> pl.Trainer:
    # training alone, unless a test asks for validation
    return quiet_trainer(root, **{"limit_val_batches": 0, **kwargs})


def _data() -> SyntheticDataModule:
    return SyntheticDataModule(num_samples=32, num_classes=4, in_channels=1, image_size=16, batch_size=16)


class Record(pl.Callback):
    """Per step: epoch, phase, the subnet trained last, and whether a teacher exists."""

    def __init__(self) -> None:
        self.steps: list[tuple[int, str, dict[str, Any], bool]] = []

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object) -> None:
        assert isinstance(pl_module, OnceForAll)
        arch = pl_module.space.active_arch()
        self.steps.append((trainer.current_epoch, pl_module.phase.name, arch, pl_module.teacher is not None))


def _teacher_state(model: OnceForAll) -> dict[str, torch.Tensor]:
    assert model.teacher is not None
    return {k: v.clone() for k, v in model.teacher.state_dict().items()}


def test_phases_run_in_order_with_their_sizes_and_survive_kill_and_resume(tmp_path: Path) -> None:
    pl.seed_everything(0)
    uninterrupted, record = _model(), Record()
    _trainer(tmp_path, max_epochs=6, callbacks=[record]).fit(uninterrupted, datamodule=_data())
    names = ["full", "kernel", "depth-1", "depth-2", "expand-1", "expand-2"]
    assert [phase for _, phase, _, _ in record.steps] == [n for n in names for _ in range(2)]
    for _, name, arch, has_teacher in record.steps:
        limits = uninterrupted.phases[names.index(name)].limits
        uninterrupted.check_subnet(arch, uninterrupted.phases[names.index(name)])  # sampled inside the phase
        assert {arch[k] for k in arch if k.endswith("/expand")} <= set(limits["expand"])
        assert has_teacher == (name != "full")
    assert {arch["stage0/depth"] for _, name, arch, _ in record.steps if name == "depth-2"} <= {2, 3, 4}

    # The "kill": stop after three epochs (in phase depth-1) and resume from the checkpoint in a fresh process state.
    pl.seed_everything(0)
    first, before = _model(), Record()
    trainer = _trainer(tmp_path, max_epochs=3, callbacks=[before])
    trainer.fit(first, datamodule=_data())
    checkpoint = tmp_path / "killed.ckpt"
    trainer.save_checkpoint(checkpoint)
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["lightning_nas"]["phase"] == "depth-1"
    assert saved["lightning_nas"]["phase_index"] == 2
    assert any(k.startswith("teacher.") for k in saved["state_dict"])

    resumed, after = _model(), Record()
    _trainer(tmp_path, max_epochs=6, callbacks=[after]).fit(resumed, datamodule=_data(), ckpt_path=checkpoint)
    assert before.steps + after.steps == record.steps  # same phases and the same subnets at the same steps
    for name, tensor in _teacher_state(uninterrupted).items():
        assert torch.equal(_teacher_state(resumed)[name], tensor), name
        assert torch.equal(_teacher_state(first)[name], tensor), name
    assert resumed.phase.name == "expand-2"


def test_teacher_is_the_largest_network_at_the_end_of_the_first_phase(tmp_path: Path) -> None:
    pl.seed_everything(0)
    model = _model(phase_epochs=[1, 1, 0, 0, 0, 0])
    snapshots: list[torch.Tensor] = []

    class Snapshot(pl.Callback):
        def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            snapshots.append(model.space.classifier.weight.detach().clone())

    _trainer(tmp_path, max_epochs=2, callbacks=[Snapshot()]).fit(model, datamodule=_data())
    assert model.teacher is not None
    assert not model.teacher.training
    assert not any(p.requires_grad for p in model.teacher.parameters())
    assert torch.equal(model.teacher.classifier.weight, snapshots[0])  # type: ignore[union-attr]
    assert not torch.equal(model.space.classifier.weight, snapshots[0])  # the student moved on


def test_learning_rate_follows_each_phase(tmp_path: Path) -> None:
    lrs: list[float] = []

    class Probe(pl.Callback):
        def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    model = _model(
        phase_epochs=[2, 2, 0, 0, 0, 0], phase_lrs=[0.4, 0.2, 1, 1, 1, 1], phase_warmup_epochs=[1, 0, 0, 0, 0, 0]
    )
    _trainer(tmp_path, max_epochs=4, callbacks=[Probe()]).fit(model, datamodule=_data())
    # two batches per epoch: warm-up 0, 0.2 over the first epoch, then cosine from 0.4; the kernel phase restarts
    assert lrs == pytest.approx([0.0, 0.2, 0.4, 0.2, 0.2, 0.2 * (1 + 0.5**0.5) / 2, 0.1, 0.2 * (1 - 0.5**0.5) / 2])


def test_real_mnist_run_trains_both_ends_of_the_space(data_root: Path, tmp_path: Path) -> None:
    """All six phases on 2048 real MNIST images (about 40 s on one busy core); after BN recalibration on 500
    training images, the largest and the smallest subnet (kernel 3, depth 1, expand 3, 8x8 input) both score far
    above chance (0.1) on 1000 test images. A narrow, shallow space keeps the run short."""
    pl.seed_everything(0)
    space = ElasticMobileNetV3(
        in_channels=1,
        num_classes=10,
        preset="cifar",
        widths=TINY_WIDTHS,
        resolutions=(8, 12),
        kernel_sizes=(3, 5),
        depths=(1, 2),
    )
    model = OnceForAll(
        space,
        phase_epochs=[4, 1, 1, 1, 1, 1],
        phase_lrs=[0.1] + [0.05] * 5,
        phase_warmup_epochs=[0] * 6,
        subnets_per_step=[1] * 6,
        label_smoothing=0.0,
        calibration_images=500,
        calibration_batch_size=250,
        channels_last=True,
    )
    data = MNISTDataModule(root=str(data_root), subset=2048, batch_size=64, eval_batch_size=500, augment=False)
    _trainer(tmp_path, max_epochs=9).fit(model, datamodule=data)
    metrics = _trainer(tmp_path, limit_val_batches=2).validate(model, datamodule=data, verbose=False)[0]
    assert set(model.subnet_statistics) == {"max", "min"}
    assert model.evaluation_subnets()["min"] == space.sample_min_subnet()
    assert metrics["val/max/acc"] > 0.6, metrics
    assert metrics["val/min/acc"] > 0.4, metrics


def test_recalibration_callback_gives_each_subnet_its_statistics(tmp_path: Path) -> None:
    model = _model(calibration_images=32, calibration_batch_size=16)
    assert [type(c) for c in model.configure_callbacks()] == [RecalibrateBatchNorm]
    trainer = _trainer(tmp_path, max_epochs=1, limit_val_batches=1)
    trainer.validate(model, datamodule=_data(), verbose=False)
    stats = model.subnet_statistics
    assert stats["max"].keys() == stats["min"].keys()
    name = "stages.0.0.expand_bn.running_mean"
    assert not torch.equal(stats["max"][name], stats["min"][name])
    assert torch.equal(getattr(model.space.stages[0][0].expand_bn, "running_mean"), torch.zeros(48))


def test_subnet_outside_the_phase_is_refused() -> None:
    model = _model()
    arch = model.space.sample_max_subnet()
    with pytest.raises(
        ValueError,
        match=r"phase 'full' does not train this subnet: choice 'stage0/block0/kernel' "
        r"got 3; valid values: 7",
    ):
        model.check_subnet(dict(arch, **{"stage0/block0/kernel": 3}))
    with pytest.raises(
        ValueError,
        match=r"phase 'depth-1' does not train this subnet: choice 'stage2/depth' got 2; "
        r"valid values: 3, 4",
    ):
        model.check_subnet(dict(arch, **{"stage2/depth": 2}), model.phases[2])
    assert model.check_subnet(dict(arch, **{"stage2/depth": 2}), model.phases[3])["stage2/depth"] == 2


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="OnceForAll needs an ElasticSpace, got DartsCellSpace"):
        OnceForAll(DartsCellSpace(in_channels=1, channels=4, layers=3, steps=2))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"phase_epochs needs one value per phase \(full, kernel, depth-1"):
        _model(phase_epochs=[1, 2, 3])
    with pytest.raises(ValueError, match=r"phase epochs must be >= warm-up epochs >= 0"):
        _model(phase_warmup_epochs=[2, 0, 0, 0, 0, 0])
    with pytest.raises(ValueError, match=r"subnets_per_step needs one positive value per phase"):
        _model(subnets_per_step=[1, 1, 0, 2, 4, 4])
