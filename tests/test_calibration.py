"""BN recalibration (issue 4): the supernet's recalibrated statistics for a subnet equal the statistics a fresh
static copy of that subnet computes with PyTorch's own batch norm, and shards merge to the whole."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from lightning_nas.calibration import (
    apply_moments,
    batch_statistics,
    batchnorm_moments,
    batchnorm_state,
    collect_calibration_images,
    recalibrate_batchnorm,
)
from lightning_nas.callbacks import RecalibrateBatchNorm
from lightning_nas.data import SyntheticDataModule
from lightning_nas.sampling import sample_arch, step_generator
from lightning_nas.spaces import ElasticMobileNetV3
from tests.tiny import quiet_trainer


def _space() -> ElasticMobileNetV3:
    return ElasticMobileNetV3(
        in_channels=1, num_classes=3, preset="cifar", widths=(8, 8, 8, 16, 16, 24, 24, 48, 64), resolutions=(8, 16)
    )


def test_recalibrated_statistics_equal_a_fresh_static_model() -> None:
    """Truth: the exported subnet with reset statistics, one training-mode pass of torch's BN with momentum 1 over
    the whole calibration set as one batch (running_mean = batch mean, running_var = unbiased batch variance)."""
    space = _space()
    x = torch.randn(48, 1, 16, 16)
    for step in range(3):
        arch = sample_arch(space.choices(), step_generator(1, step))
        space.activate(arch)
        recalibrate_batchnorm(space, [x])
        fresh = space.export_subnet(arch)
        for m in fresh.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = 1.0
        fresh.train()
        with torch.no_grad():
            fresh(x)
        recalibrated = space.export_subnet(arch)  # copies the supernet's (sliced) statistics
        expected, got = batchnorm_state(fresh), batchnorm_state(recalibrated)
        assert expected.keys() == got.keys()
        for name in expected:
            torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-5, msg=name)


def test_population_statistics_over_many_batches_in_closed_form() -> None:
    net = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 1))
    x = torch.randn(50, 2, 6, 6) * 2 + 1
    moments = recalibrate_batchnorm(net, x.split(8))  # uneven batches: 8, ..., 8, 2
    features = net[0](x).detach().transpose(0, 1).flatten(1).double()
    torch.testing.assert_close(net[1].running_mean.double(), features.mean(1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(net[1].running_var.double(), features.var(1), rtol=1e-5, atol=1e-6)
    assert moments["1"][0].item() == 50 * 4 * 4


def test_shards_reduced_by_sum_equal_the_whole_set() -> None:
    """What DDP does: each rank sums its shard's moments and an all-reduce adds them. Batches of one image make
    every batch normalise the same way however the images are sharded."""
    space = _space()
    space.activate(sample_arch(space.choices(), step_generator(2, 0)))
    x = torch.randn(12, 1, 16, 16)
    whole = batchnorm_moments(space, x.split(1))
    rank0, rank1 = batchnorm_moments(space, x[::2].split(1)), batchnorm_moments(space, x[1::2].split(1))
    for name in whole:
        torch.testing.assert_close(rank0[name] + rank1[name], whole[name])
    rank1_flat = torch.cat([rank1[name] for name in sorted(rank1)])
    recalibrate_batchnorm(space, x[::2].split(1), reduce=lambda flat: flat + rank1_flat)  # rank 0's view
    reference = _space()
    reference.load_state_dict(space.state_dict())
    apply_moments(reference, whole)
    expected, got = batchnorm_state(reference), batchnorm_state(space)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)


def test_modes_and_statistics_are_restored_after_measuring() -> None:
    space = _space().eval()
    before = batchnorm_state(space)
    batchnorm_moments(space, [torch.randn(4, 1, 16, 16)])
    assert not any(m.training for m in space.modules())
    for name, tensor in batchnorm_state(space).items():
        assert torch.equal(tensor, before[name])


def test_collect_calibration_images() -> None:
    loader = [(torch.full((4, 1), float(i)), torch.arange(4)) for i in range(3)]
    images, labels = collect_calibration_images(loader, 6)
    assert images.flatten().tolist() == [0, 0, 0, 0, 1, 1]
    assert len(labels) == 6
    images, _ = collect_calibration_images([{"train": pair, "val": pair} for pair in loader], 2)
    assert len(images) == 2
    with pytest.raises(ValueError, match="the loader holds 12 images; 20 were asked"):
        collect_calibration_images(loader, 20)
    with pytest.raises(ValueError, match="num_images must be at least 1, got 0"):
        collect_calibration_images(loader, 0)


def test_batch_statistics_ignore_and_keep_the_running_statistics_of_an_elastic_subnet() -> None:
    """Scoring a narrower subnet with batch statistics: the output does not depend on the running statistics
    (garbage ones give the same logits), no running statistic changes, and every module's mode is restored."""
    space = _space().eval()
    arch = sample_arch(space.choices(), step_generator(0, 0, "test"))
    space.activate(arch)
    x = torch.randn(8, 1, 8, 8)
    with batch_statistics(space):
        reference = space(x)
    norms = [m for m in space.modules() if isinstance(m, nn.BatchNorm2d)]
    for norm in norms:
        norm.running_mean.uniform_(-5, 5)
        norm.running_var.uniform_(0.1, 9)
    garbage = batchnorm_state(space)
    with batch_statistics(space):
        torch.testing.assert_close(space(x), reference)
    for name, value in batchnorm_state(space).items():
        assert torch.equal(value, garbage[name]), name
    assert not any(m.training for m in space.modules())
    assert all(norm.track_running_stats for norm in norms)
    assert not torch.allclose(space(x), reference)  # outside the block the (garbage) running statistics are used


class _ConvBN(pl.LightningModule):
    """A plain network (no subnets): conv, BN, pooled logits; trained at a high learning rate for two epochs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.norm = nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 3)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.conv(x)).mean((2, 3)))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return nn.functional.cross_entropy(self(batch[0]), batch[1])

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        if batch_idx == 0:
            self.seen.append(self.norm.running_mean.clone())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.5)


def test_a_plain_network_validates_with_its_population_statistics(tmp_path: Path) -> None:
    """Truth: the mean of the conv features of the first 40 (normalised) training images under the weights being
    validated, i.e. the weights after training (the last validation comes after the last step)."""
    data = SyntheticDataModule(num_samples=64, num_classes=3, image_size=8, batch_size=16, augment=False)
    module = _ConvBN()
    trainer = quiet_trainer(
        tmp_path, max_epochs=2, num_sanity_val_steps=0, callbacks=[RecalibrateBatchNorm(num_images=40, batch_size=16)]
    )
    trainer.fit(module, datamodule=data)
    images, labels = collect_calibration_images(data.train_dataloader(), 40)
    x, _ = data.on_after_batch_transfer((images, labels), 0)
    with torch.no_grad():
        expected = module.conv(x).mean((0, 2, 3))
    assert len(module.seen) == 2
    assert torch.allclose(module.seen[-1], expected, atol=1e-5)
