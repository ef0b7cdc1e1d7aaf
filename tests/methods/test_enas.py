"""The ENAS LightningModule: a real search on Fashion-MNIST, the phase schedule, rewards, checkpoints, bad inputs."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from torch import Tensor, nn

from lightning_nas.arch import Arch, Choice, Genotype
from lightning_nas.data import FashionMNISTDataModule, SyntheticDataModule
from lightning_nas.functional import mnasnet_reward
from lightning_nas.methods import ENAS, Retrain, RetrainMacro
from lightning_nas.methods._child_cost import child_cost
from lightning_nas.ops import ENAS_MICRO_OPS
from lightning_nas.sampling import step_generator
from lightning_nas.spaces import DartsCellSpace, EnasMacroSpace, SearchSpace
from tests.tiny import quiet_trainer, tiny_darts_space


def _trainer(root: Path, **kwargs: Any) -> pl.Trainer:
    # no sanity check before the first step
    return quiet_trainer(root, **{"num_sanity_val_steps": 0, **kwargs})


def _cell(num_classes: int = 4, channels: int = 4, steps: int = 2) -> DartsCellSpace:
    return tiny_darts_space(num_classes=num_classes, channels=channels, steps=steps, ops=ENAS_MICRO_OPS)


def _synthetic(batch_size: int = 16, num_samples: int = 128) -> SyntheticDataModule:
    return SyntheticDataModule(
        num_samples=num_samples, num_classes=4, in_channels=1, image_size=8, search=True, batch_size=batch_size
    )


class RecordSteps(pl.Callback):
    """Per training step: the search step, the arch the weight step would sample, and parameter snapshots."""

    def __init__(self) -> None:
        self.history: list[dict[str, Any]] = []
        self.sampled: list[float] = []

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object) -> None:
        assert isinstance(pl_module, ENAS)
        self.history.append(
            {
                "global_step": trainer.global_step,
                "policy": torch.cat([p.detach().flatten().clone() for p in pl_module.policy.parameters()]),
                "weights": torch.cat([p.detach().flatten().clone() for p in pl_module.space.parameters()]),
            }
        )

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.sampled.append(float(trainer.callback_metrics["val/sampled_acc"]))


def test_search_on_fashion_mnist_raises_the_accuracy_of_sampled_children(data_root: Path, tmp_path: Path) -> None:
    pl.seed_everything(0)
    data = FashionMNISTDataModule(root=str(data_root), search=True, subset=2048, batch_size=32, seed=0)
    space = tiny_darts_space(num_classes=10, channels=8, ops=ENAS_MICRO_OPS)
    model = ENAS(
        space,
        weight_steps=12,
        controller_steps=4,
        controller_samples=4,
        derive_samples=4,
        weight_lr=0.1,
        controller_lr=0.01,
        channels_last=True,
    )
    recorder = RecordSteps()
    trainer = _trainer(tmp_path, max_epochs=3, callbacks=[recorder])
    trainer.fit(model, datamodule=data)
    first, last = recorder.sampled[0], recorder.sampled[-1]
    assert last > first + 0.05, recorder.sampled
    assert last > 0.25, recorder.sampled  # chance is 0.1
    # 32 batches per epoch in cycles of 12 weight steps and 4 controller steps: global_step counts weight steps.
    assert trainer.global_step == sum(1 for s in range(3 * 32) if s % 16 < 12)
    assert isinstance(model.export(), Genotype)
    assert model.derived_arch is not None


def test_phases_alternate_and_each_trains_only_its_parameters(tmp_path: Path) -> None:
    pl.seed_everything(0)
    model = ENAS(_cell(), weight_steps=2, controller_steps=3, controller_samples=2, derive_samples=2)
    recorder = RecordSteps()
    _trainer(tmp_path, max_steps=4, limit_val_batches=0, callbacks=[recorder]).fit(model, datamodule=_synthetic())
    # Steps 0,1 and 5,6 are weight steps; 2,3,4 are controller steps.
    states = recorder.history
    assert [s["global_step"] for s in states] == [1, 2, 2, 2, 2, 3, 4]
    for before, after, step in zip(states, states[1:], range(1, len(states))):
        weight_phase = step % 5 < 2
        assert torch.equal(before["policy"], after["policy"]) == weight_phase, step
        assert torch.equal(before["weights"], after["weights"]) != weight_phase, step
    assert int(model.search_step) == 7
    assert model.baseline.item() > 0


def test_random_policy_is_one_flag_away(tmp_path: Path) -> None:
    pl.seed_everything(0)
    model = ENAS(_cell(), policy="random", weight_steps=2, controller_steps=2, controller_samples=2, derive_samples=2)
    assert list(model.policy.parameters()) == []
    trainer = _trainer(tmp_path, max_steps=4, limit_val_batches=1)
    trainer.fit(model, datamodule=_synthetic())
    assert len(trainer.optimizers) == 1
    assert trainer.global_step == 4
    assert "search/reward" in trainer.callback_metrics  # rewards still measured, for comparison
    assert model.space.validate_arch(model.current_arch())


class PartlyNaN(ENAS):
    """A reward hook that is NaN for every child with a given value of one choice."""

    nan_if: tuple[str, object] = ("normal/node2/in0", 0)

    def reward(self, logits: Tensor, targets: Tensor, arch: Arch) -> Tensor:
        name, value = self.nan_if
        return torch.tensor(math.nan) if arch[name] == value else super().reward(logits, targets, arch)


def test_nan_rewards_are_skipped_with_a_warning(tmp_path: Path) -> None:
    pl.seed_everything(0)
    model = PartlyNaN(_cell(), weight_steps=1, controller_steps=1, controller_samples=6, derive_samples=2)
    nan_count = sum(model.sample(1, k).arch["normal/node2/in0"] == 0 for k in range(6))  # the draws of step 1
    assert 0 < nan_count < 6
    with pytest.warns(UserWarning, match=rf"{nan_count} of 6 rewards at search step 1 are not finite"):
        _trainer(tmp_path, max_steps=2, limit_val_batches=0).fit(model, datamodule=_synthetic())
    assert torch.isfinite(model.baseline)
    assert model.baseline.item() > 0


class AlwaysNaN(ENAS):
    """A reward hook that never gives a number."""

    def reward(self, logits: Tensor, targets: Tensor, arch: Arch) -> Tensor:
        return torch.tensor(math.nan)


def test_all_nan_rewards_leave_policy_and_baseline_alone(tmp_path: Path) -> None:
    pl.seed_everything(0)
    model = AlwaysNaN(_cell(), weight_steps=1, controller_steps=2, controller_samples=2, derive_samples=2)
    before = [p.detach().clone() for p in model.policy.parameters()]
    with pytest.warns(UserWarning, match="2 of 2 rewards at search step 1 are not finite"):
        _trainer(tmp_path, max_steps=2, limit_val_batches=0).fit(model, datamodule=_synthetic())
    assert all(torch.equal(a, b) for a, b in zip(model.policy.parameters(), before))  # nothing learned
    assert model.baseline.item() == 0.0


def test_mnasnet_reward_uses_the_active_childs_parameter_count(tmp_path: Path) -> None:
    space = _cell()
    model = ENAS(space, reward_cost="params", cost_target=1000.0, cost_exponents=(0.0, -1.0))
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 4, (8,))
    # A child in which every computed state reaches the output (node 2 reads both inputs, node 3 reads node 2).
    arch = {**model.sample(0).arch, "normal/node2/in0": 0, "normal/node2/in1": 1, "normal/node3/in0": 2}
    arch.update({"reduce/node2/in0": 0, "reduce/node2/in1": 1, "reduce/node3/in0": 2})
    reward = model.child_reward(x, y, arch)
    # The parameter count, independently: every parameter that gets a gradient through the active child.
    space.activate(arch)
    space.zero_grad(set_to_none=True)
    space(x).sum().backward()
    params = sum(p.numel() for p in space.weight_parameters() if p.grad is not None)
    assert model.child_cost(arch) == params == child_cost(space, x, "params")
    space.activate(arch)
    with torch.no_grad():
        accuracy = (space.train()(x).argmax(-1) == y).float().mean()
    torch.testing.assert_close(reward, mnasnet_reward(accuracy, params, 1000.0, 0.0, -1.0))
    assert reward < accuracy  # the child is larger than the 1000-parameter target


def test_flops_count_convolutions_and_the_classifier() -> None:
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.Conv2d(8, 8, 5, padding=2, groups=8),
        nn.Flatten(),
        nn.Linear(128, 5),
    )
    expected = (8 * 4 * 4) * 3 * 9 + (8 * 4 * 4) * 1 * 25 + 128 * 5  # outputs x (in / groups) x kernel
    assert child_cost(net, torch.zeros(1, 3, 8, 8), "flops") == expected


def test_checkpoint_restores_policy_baseline_sampler_and_result(tmp_path: Path) -> None:
    pl.seed_everything(0)
    model = ENAS(_cell(), weight_steps=2, controller_steps=2, controller_samples=2, derive_samples=3)
    trainer = _trainer(tmp_path, max_steps=3, limit_val_batches=1)
    trainer.fit(model, datamodule=_synthetic())
    trainer.validate(model, datamodule=_synthetic(), verbose=False)
    path = tmp_path / "search.ckpt"
    trainer.save_checkpoint(path)

    restored = ENAS.load_from_checkpoint(path, space=_cell())
    for (name, a), b in zip(model.state_dict().items(), restored.state_dict().values()):
        if isinstance(a, Tensor):
            assert torch.equal(a, b), name
    assert int(restored.search_step) == int(model.search_step) == 5
    assert restored.baseline.item() != 0
    assert restored.derived_arch == model.derived_arch
    assert restored.current_arch() == model.current_arch()
    step = int(model.search_step)
    assert restored.sample(step).arch == model.sample(step).arch  # the next draw is the same
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["lightning_nas"]["result"] == model.export().to_json()  # type: ignore[union-attr]
    assert len(checkpoint["optimizer_states"]) == 2  # SGD for w, Adam for the controller


def test_checkpoint_of_another_space_is_refused_naming_both(tmp_path: Path) -> None:
    model = ENAS(_cell(steps=2))
    _trainer(tmp_path, max_steps=1, limit_val_batches=0).fit(model, datamodule=_synthetic())
    path = tmp_path / "search.ckpt"
    model.trainer.save_checkpoint(path)
    with pytest.raises(ValueError, match=r"saved for DartsCellSpace with 16 choices .* is for DartsCellSpace with 24"):
        ENAS.load_from_checkpoint(path, space=_cell(steps=3))
    macro = EnasMacroSpace(in_channels=1, num_classes=4, channels=4, layers=3)
    with pytest.raises(ValueError, match=r"from space 'DartsCellSpace'; this run uses space 'EnasMacroSpace'"):
        ENAS.load_from_checkpoint(path, space=macro)


class NoChoices(SearchSpace):
    num_classes, in_channels = 2, 1

    def choices(self) -> list[Choice]:
        return []

    def activate(self, arch: Mapping[str, Any] | None) -> None:
        pass

    def forward(self, x: Tensor) -> Tensor:
        return x.new_zeros(x.shape[0], 2)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="NoChoices has no choices: there is no architecture to search"):
        ENAS(NoChoices())
    with pytest.raises(ValueError, match="policy must be 'lstm' or 'random', got 'evolution'"):
        ENAS(_cell(), policy="evolution")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="need weight_steps >= 1.*got weight_steps=0"):
        ENAS(_cell(), weight_steps=0)
    with pytest.raises(ValueError, match="reward_cost must be None, 'params' or 'flops', got 'latency'"):
        ENAS(_cell(), reward_cost="latency")  # type: ignore[arg-type]


def test_ddp_without_unused_parameter_search_is_refused_with_the_fix(tmp_path: Path) -> None:
    from unittest import mock

    from torch.nn.parallel import DistributedDataParallel

    model = ENAS(_cell())
    fake = mock.MagicMock(spec=DistributedDataParallel)
    fake.find_unused_parameters = False
    trainer = mock.MagicMock()
    trainer.strategy.model = fake
    model._trainer = trainer
    with pytest.raises(ValueError, match="--trainer.strategy=ddp_find_unused_parameters_true"):
        model.on_fit_start()


def test_macro_search_exports_an_architecture_that_retrains(tmp_path: Path) -> None:
    pl.seed_everything(0)
    space = EnasMacroSpace(in_channels=1, num_classes=4, channels=4, layers=4)
    model = ENAS(space, weight_steps=2, controller_steps=2, controller_samples=2, derive_samples=2, skip_weight=0.8)
    _trainer(tmp_path, max_steps=3, limit_val_batches=1).fit(model, datamodule=_synthetic())
    arch = model.export()
    assert isinstance(arch, dict)
    assert space.validate_arch(arch) == arch
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(arch))
    retrain = RetrainMacro(str(path), in_channels=1, num_classes=4, channels=4)
    data = SyntheticDataModule(num_samples=64, num_classes=4, in_channels=1, image_size=8, batch_size=16)
    _trainer(tmp_path, max_steps=2, limit_val_batches=1).fit(retrain, datamodule=data)
    assert retrain.export() == arch


def test_micro_result_retrains_with_retrain(tmp_path: Path) -> None:
    model = ENAS(_cell())
    genotype = model.export()
    assert isinstance(genotype, Genotype)
    assert genotype.ops() <= set(ENAS_MICRO_OPS)
    retrain = Retrain(str(genotype), in_channels=1, num_classes=4, channels=4, layers=3)
    assert retrain(torch.randn(2, 1, 8, 8)).shape == (2, 4)


def test_draws_depend_on_seed_and_step_only() -> None:
    a, b = ENAS(_cell(), seed=3), ENAS(_cell(), seed=3)
    b.policy.load_state_dict(a.policy.state_dict())
    assert [a.sample(s, k).arch for s in range(3) for k in range(2)] == [
        b.sample(s, k).arch for s in range(3) for k in range(2)
    ]
    assert a.sample(0).arch == a.policy.sample(step_generator(3, 0, 0)).arch
