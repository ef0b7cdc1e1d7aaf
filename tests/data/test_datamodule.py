"""Datamodules: search splits, bilevel batches, device-side transforms, and plain training on real and toy data."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities.combined_loader import CombinedLoader
from torch import nn

from lightning_nas.data import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    DigitsDataModule,
    FashionMNISTDataModule,
    ImageDataModule,
    MNISTDataModule,
    SyntheticDataModule,
    load_fashion_mnist,
)
from tests.tiny import quiet_trainer

FASHION_MEAN, FASHION_STD = 0.2860, 0.3530


@pytest.fixture(scope="module")
def fashion_search(data_root: Path) -> FashionMNISTDataModule:
    data = FashionMNISTDataModule(root=str(data_root), search=True, subset=400, batch_size=32, seed=0)
    data.setup("fit")
    return data


def _split(data: ImageDataModule) -> tuple[set[int], set[int]]:
    assert data.train_indices is not None
    assert data.val_indices is not None
    return set(data.train_indices.tolist()), set(data.val_indices.tolist())


def test_search_split_is_disjoint_seeded_and_covers_the_subset(
    data_root: Path, fashion_search: FashionMNISTDataModule
) -> None:
    weights, architecture = _split(fashion_search)
    assert len(weights) == len(architecture) == 200
    assert not weights & architecture
    same = FashionMNISTDataModule(root=str(data_root), search=True, subset=400, batch_size=32, seed=0)
    same.setup("fit")
    assert _split(same) == (weights, architecture)
    other = FashionMNISTDataModule(root=str(data_root), search=True, subset=400, batch_size=32, seed=1)
    other.setup("fit")
    assert _split(other)[0] != weights
    # The search halves split exactly the subset that plain training with the same seed uses.
    plain = FashionMNISTDataModule(root=str(data_root), subset=400, seed=0)
    plain.setup("fit")
    assert plain.train_indices is not None
    assert set(plain.train_indices.tolist()) == weights | architecture
    # The halves hold the official training images at those indices.
    full = load_fashion_mnist(data_root, train=True)
    halves = [
        (fashion_search.train_dataset, fashion_search.train_indices),
        (fashion_search.val_dataset, fashion_search.val_indices),
    ]
    for dataset, indices in halves:
        assert dataset is not None
        assert indices is not None
        assert torch.equal(dataset.images, full.images[indices])
        assert torch.equal(dataset.labels, full.labels[indices])


def test_search_batches_are_dicts_and_transfer_normalises(fashion_search: FashionMNISTDataModule) -> None:
    loader = fashion_search.train_dataloader()
    assert isinstance(loader, CombinedLoader)
    iterator = iter(loader)
    assert len(loader) == 200 // 32  # drop_last: each half is larger than one batch
    batch, _, _ = next(iterator)
    assert set(batch) == {"train", "val"}
    for images, labels in batch.values():
        assert images.dtype == torch.uint8
        assert images.shape == (32, 1, 28, 28)
        assert labels.dtype == torch.int64
    out = fashion_search.on_after_batch_transfer(batch, 0)  # no trainer: not training, so no augmentation
    for key in ("train", "val"):
        images, labels = out[key]
        assert images.dtype == torch.float32
        expected = (batch[key][0].double() / 255 - FASHION_MEAN) / FASHION_STD
        assert torch.allclose(images.double(), expected, atol=1e-5)
        assert torch.equal(labels, batch[key][1])


def _search_loader(data: ImageDataModule) -> CombinedLoader:
    loader = data.train_dataloader()
    assert isinstance(loader, CombinedLoader)
    return loader


def _image_keys(images: torch.Tensor) -> list[bytes]:
    return [image.numpy().tobytes() for image in images]


@pytest.mark.parametrize(("portion", "train_batches", "val_batches"), [(0.5, 6, 6), (0.75, 9, 3)])
def test_val_iterator_persists_over_an_epoch(
    data_root: Path, portion: float, train_batches: int, val_batches: int
) -> None:
    data = FashionMNISTDataModule(root=str(data_root), search=True, subset=400, train_portion=portion, batch_size=32)
    data.setup("fit")
    assert data.val_dataset is not None
    architecture = set(_image_keys(data.val_dataset.images))
    loader = _search_loader(data)
    seen = [_image_keys(batch["val"][0]) for batch, _, _ in loader]
    assert len(seen) == train_batches  # max_size_cycle: the longer half sets the epoch
    for start in range(0, len(seen), val_batches):
        cycle = [key for keys in seen[start : start + val_batches] for key in keys]
        assert len(set(cycle)) == len(cycle) == 32 * val_batches  # one pass: no batch repeated
        assert set(cycle) <= architecture


class _Recorder(pl.LightningModule):
    """Linear classifier that records what the trainer hands to each step."""

    def __init__(self, features: int, classes: int) -> None:
        super().__init__()
        self.layer = nn.Linear(features, classes)
        self.train_batches: list[Any] = []
        self.val_batches: list[Any] = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        self.train_batches.append(batch)
        images, labels = batch["train"] if isinstance(batch, dict) else batch
        return F.cross_entropy(self.layer(images.flatten(1)), labels)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.val_batches.append(batch)
        images, labels = batch
        accuracy = (self.layer(images.flatten(1)).argmax(1) == labels).float().mean()
        self.log("val_acc", accuracy)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=0.05)


def test_trainer_gets_augmented_train_pairs_and_clean_val(fashion_search: FashionMNISTDataModule) -> None:
    model = _Recorder(28 * 28, 10)
    quiet_trainer(fast_dev_run=2).fit(model, datamodule=fashion_search)
    assert len(model.train_batches) == 2
    assert len(model.val_batches) == 2
    grid = torch.arange(256, dtype=torch.float64) / 255
    for batch in model.train_batches:
        assert set(batch) == {"train", "val"}
        for images, labels in batch.values():
            assert images.dtype == torch.float32
            assert images.shape == (32, 1, 28, 28)
            assert labels.shape == (32,)
            pixels = images.double() * FASHION_STD + FASHION_MEAN  # crops and flips keep the 0..255 grid
            assert torch.allclose(pixels, (pixels * 255).round() / 255, atol=1e-5)
            assert pixels.min() >= grid[0] - 1e-5
            assert pixels.max() <= grid[-1] + 1e-5
    # Validation: the architecture half, in order, not augmented.
    val_images, val_labels = model.val_batches[0]
    assert fashion_search.val_dataset is not None
    expected = (fashion_search.val_dataset.images[:32].double() / 255 - FASHION_MEAN) / FASHION_STD
    assert torch.allclose(val_images.double(), expected, atol=1e-5)
    assert torch.equal(val_labels, fashion_search.val_dataset.labels[:32])


def test_augmentation_only_while_training_and_resumable() -> None:
    data = SyntheticDataModule(num_samples=64, image_size=12, search=True, batch_size=16, crop_padding=2, flip=True)
    data.setup("fit")
    batch, _, _ = next(iter(_search_loader(data)))
    trainer = quiet_trainer(max_epochs=1)
    data.trainer = trainer
    trainer.validating = True
    clean = data.on_after_batch_transfer(batch, 0)
    trainer.training = True
    state = data.state_dict()
    first = data.on_after_batch_transfer(batch, 0)
    second = data.on_after_batch_transfer(batch, 0)
    assert data.state_dict() == {"train_batches": state["train_batches"] + 2}
    for key in ("train", "val"):
        assert not torch.equal(first[key][0], clean[key][0])  # augmented
        assert not torch.equal(first[key][0], second[key][0])  # a new draw per batch
        assert torch.equal(first[key][1], batch[key][1])  # labels untouched
    data.load_state_dict(state)
    assert torch.equal(data.on_after_batch_transfer(batch, 0)["train"][0], first["train"][0])
    no_augment = SyntheticDataModule(num_samples=64, image_size=12, search=True, batch_size=16, augment=False)
    no_augment.trainer = trainer
    assert torch.equal(no_augment.on_after_batch_transfer(batch, 0)["val"][0], clean["val"][0])


def test_plain_mode_loaders(data_root: Path) -> None:
    data = FashionMNISTDataModule(root=str(data_root), subset=300, batch_size=64, eval_batch_size=2500)
    data.setup("fit")
    assert data.val_indices is None
    assert data.train_dataset is not None
    assert len(data.train_dataset) == 300
    train = data.train_dataloader()
    images, labels = next(iter(train))
    assert images.shape == (64, 1, 28, 28)
    assert len(train) == 300 // 64
    assert data.val_dataset is data.test_dataset
    assert data.val_dataset is not None
    assert len(data.val_dataset) == 10000
    assert len(data.val_dataloader()) == len(data.test_dataloader()) == 4
    assert data.hparams["subset"] == 300
    assert data.hparams["root"] == str(data_root)


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        (MNISTDataModule, (10, 1, 28)),
        (FashionMNISTDataModule, (10, 1, 28)),
        (CIFAR10DataModule, (10, 3, 32)),
        (CIFAR100DataModule, (100, 3, 32)),
        (DigitsDataModule, (10, 1, 8)),
        (SyntheticDataModule, (10, 1, 16)),
    ],
)
def test_shape_facts_before_setup(module: type[ImageDataModule], expected: tuple[int, int, int]) -> None:
    data = module()
    assert (data.num_classes, data.in_channels, data.image_size) == expected
    assert data.train_dataset is None


def test_argument_errors_name_the_value() -> None:
    with pytest.raises(ValueError, match="train_portion.*got 1.0"):
        MNISTDataModule(train_portion=1.0)
    with pytest.raises(ValueError, match="train_portion.*got 0"):
        MNISTDataModule(train_portion=0)
    with pytest.raises(ValueError, match="60000 training images, got 70000"):
        FashionMNISTDataModule(subset=70000)
    with pytest.raises(ValueError, match="batch_size=0"):
        CIFAR10DataModule(batch_size=0)
    with pytest.raises(ValueError, match="eval_batch_size=-1"):
        DigitsDataModule(eval_batch_size=-1)
    with pytest.raises(ValueError, match="leaves 0 for the weights"):
        DigitsDataModule(search=True, subset=1)
    with pytest.raises(ValueError, match="num_workers.*-2"):
        SyntheticDataModule(num_workers=-2)
    with pytest.raises(ValueError, match="num_samples.*got 0"):
        SyntheticDataModule(num_samples=0)


def test_digits_datamodule_splits_and_learns() -> None:
    data = DigitsDataModule(batch_size=64, augment=False)
    data.setup("fit")
    assert data.train_dataset is not None
    assert data.test_dataset is not None
    assert len(data.train_dataset) + len(data.test_dataset) == 1797
    assert data.train_dataset.images.shape[1:] == (1, 8, 8)
    assert set(torch.cat([data.train_dataset.labels, data.test_dataset.labels]).tolist()) == set(range(10))
    model = _Recorder(64, 10)
    trainer = quiet_trainer(max_epochs=2, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=data)
    assert trainer.callback_metrics["val_acc"].item() > 0.85  # logistic regression on held-out digits
    search = DigitsDataModule(search=True, batch_size=32)
    search.setup("validate")
    assert search.train_dataset is not None
    assert search.val_dataset is not None
    assert (len(search.train_dataset), len(search.val_dataset)) == (718, 719)


def test_drop_last_only_when_the_half_exceeds_a_batch() -> None:
    small = SyntheticDataModule(num_samples=40, search=True, batch_size=32)
    small.setup("fit")
    batches = list(_search_loader(small))
    assert len(batches) == 1
    assert batches[0][0]["train"][0].shape[0] == 20
    large = SyntheticDataModule(num_samples=40, search=True, batch_size=8, eval_batch_size=3)
    large.setup("fit")
    assert len(list(_search_loader(large))) == 2
    assert sum(len(labels) for _, labels in large.val_dataloader()) == 20  # eval keeps the last partial batch


def test_worker_processes_feed_the_combined_loader() -> None:
    data = SyntheticDataModule(num_samples=96, image_size=8, search=True, batch_size=16, num_workers=2)
    data.setup("fit")
    batches = [batch for batch, _, _ in _search_loader(data)]
    assert len(batches) == 3
    assert all(batch["val"][0].shape == (16, 1, 8, 8) for batch in batches)


def test_cifar10_datamodule_on_fake_batches(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        batch = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": [0, 1, 2, 3]}
        (folder / name).write_bytes(pickle.dumps(batch))
    data = CIFAR10DataModule(root=str(tmp_path), search=True, batch_size=4, cutout=8)
    model = _Recorder(3 * 32 * 32, 10)
    quiet_trainer(fast_dev_run=1).fit(model, datamodule=data)
    images, _ = model.train_batches[0]["val"]
    assert images.shape == (4, 3, 32, 32)
    assert images.dtype == torch.float32
    too_many = CIFAR10DataModule(root=str(tmp_path), subset=21)  # the spec allows 50000, the folder holds 20
    with pytest.raises(ValueError, match="20 training images, got 21"):
        too_many.setup("fit")
    data.setup("test")
    assert data.test_dataset is not None
    assert len(data.test_dataset) == 4
