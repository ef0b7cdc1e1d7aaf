"""In-memory datasets and loaders: real MNIST-family splits, digits, synthetic data, dataset constants."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from lightning_nas.data import (
    CIFAR10DataModule,
    DigitsDataModule,
    FashionMNISTDataModule,
    InMemoryImageDataset,
    MNISTDataModule,
    load_digits,
    load_fashion_mnist,
    load_mnist,
    make_synthetic,
)


def test_in_memory_dataset_items_and_collation() -> None:
    images = torch.arange(5 * 2 * 3 * 3, dtype=torch.uint8).view(5, 2, 3, 3)
    dataset = InMemoryImageDataset(images, torch.tensor([4, 3, 2, 1, 0]))
    image, label = dataset[1]
    assert torch.equal(image, images[1])
    assert label == 3
    assert isinstance(label, int)
    x, y = next(iter(DataLoader(dataset, batch_size=5)))
    assert x.dtype == torch.uint8
    assert torch.equal(x, images)
    assert y.dtype == torch.int64
    assert y.tolist() == [4, 3, 2, 1, 0]
    part = dataset.subset(torch.tensor([4, 0]))
    assert len(part) == 2
    assert part.labels.tolist() == [0, 4]
    assert torch.equal(part.images[0], images[4])


def test_in_memory_dataset_rejects_bad_inputs() -> None:
    with pytest.raises(TypeError, match="float32"):
        InMemoryImageDataset(torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.long))
    with pytest.raises(TypeError, match="int32"):
        InMemoryImageDataset(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(2, dtype=torch.int32))
    with pytest.raises(ValueError, match=r"\(2, 4, 4\)"):
        InMemoryImageDataset(torch.zeros(2, 4, 4, dtype=torch.uint8), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(3,\)"):
        InMemoryImageDataset(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(3, dtype=torch.long))


@pytest.fixture(scope="module")
def fashion_train(data_root: Path) -> InMemoryImageDataset:
    return load_fashion_mnist(data_root, train=True)


def test_fashion_mnist_loader(data_root: Path, fashion_train: InMemoryImageDataset) -> None:
    test = load_fashion_mnist(data_root, train=False)
    assert fashion_train.images.shape == (60000, 1, 28, 28)
    assert test.images.shape == (10000, 1, 28, 28)
    assert fashion_train.labels.dtype == torch.int64
    assert torch.bincount(test.labels).tolist() == [1000] * 10


def _mean_std(images: torch.Tensor) -> tuple[float, float]:
    """Exact mean and standard deviation of ``images / 255`` from the 256-bin histogram."""
    counts = torch.bincount(images.flatten(), minlength=256).double()
    values = torch.arange(256, dtype=torch.float64) / 255
    mean = (counts * values).sum() / counts.sum()
    variance = (counts * (values - mean) ** 2).sum() / (counts.sum() - 1)
    return mean.item(), variance.sqrt().item()


@pytest.mark.parametrize("module", [MNISTDataModule, FashionMNISTDataModule])
def test_mean_std_constants_match_the_training_images(
    data_root: Path, fashion_train: InMemoryImageDataset, module: type[MNISTDataModule]
) -> None:
    train = load_mnist(data_root, train=True) if module is MNISTDataModule else fashion_train
    spec = module.SPEC
    assert spec is not None
    mean, std = _mean_std(train.images)
    assert mean == pytest.approx(spec.mean[0], abs=1e-4)
    assert std == pytest.approx(spec.std[0], abs=1e-4)
    assert (len(train), spec.in_channels, spec.image_size) == (spec.train_size, *train.images.shape[1:3])
    if module is MNISTDataModule:
        assert train.labels[:5].tolist() == [5, 0, 4, 1, 9]


def test_uncompressed_idx_files_are_read_too(tmp_path: Path) -> None:
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, count in (("train", 3), ("t10k", 2)):
        images = np.full((count, 28, 28), 200, dtype=np.uint8)
        header = struct.pack(">BBBBIII", 0, 0, 8, 3, count, 28, 28)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(header + images.tobytes())
        labels = np.arange(count, dtype=np.uint8)
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">BBBBI", 0, 0, 8, 1, count) + labels.tobytes())
    test = load_fashion_mnist(tmp_path, train=False)
    assert test.images.shape == (2, 1, 28, 28)
    assert int(test.images.min()) == 200
    assert test.labels.tolist() == [0, 1]


def test_digits_match_scikit_learn() -> None:
    from sklearn.datasets import load_digits as sklearn_digits

    reference = sklearn_digits()
    digits = load_digits()
    assert digits.images.shape == (1797, 1, 8, 8)
    assert digits.images.dtype == torch.uint8
    assert digits.labels.tolist() == reference.target.tolist()
    # 0..16 maps to 0..255 one-to-one: scaling back recovers scikit-learn's values exactly.
    recovered = (digits.images[:, 0].double() * 16 / 255).round()
    assert torch.equal(recovered, torch.as_tensor(reference.images))
    assert int(digits.images.max()) == 255
    assert int(digits.images.min()) == 0
    spec = DigitsDataModule.SPEC
    assert spec is not None
    mean, std = _mean_std(digits.images)
    assert mean == pytest.approx(spec.mean[0], abs=1e-3)
    assert std == pytest.approx(spec.std[0], abs=1e-3)


def test_digits_missing_scikit_learn_message(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"lightning-nas\[demo\]"):
        load_digits()


def test_synthetic_is_seeded_balanced_and_learnable() -> None:
    data = make_synthetic(600, num_classes=6, in_channels=2, image_size=10, seed=3)
    again = make_synthetic(600, num_classes=6, in_channels=2, image_size=10, seed=3)
    other = make_synthetic(600, num_classes=6, in_channels=2, image_size=10, seed=4)
    assert torch.equal(data.images, again.images)
    assert torch.equal(data.labels, again.labels)
    assert not torch.equal(data.images, other.images)
    assert data.images.shape == (600, 2, 10, 10)
    assert torch.bincount(data.labels).tolist() == [100] * 6
    # Nearest class mean, fit on the first 400 and scored on the last 200, separates the classes.
    features = data.images.flatten(1).float()
    train, test = slice(0, 400), slice(400, 600)
    means = torch.stack([features[train][data.labels[train] == k].mean(0) for k in range(6)])
    predicted = torch.cdist(features[test], means).argmin(1)
    assert (predicted == data.labels[test]).float().mean().item() > 0.95
    with pytest.raises(ValueError, match="num_classes must be at least 2, got 1"):
        make_synthetic(10, num_classes=1)
    with pytest.raises(ValueError, match="image_size must be a positive integer, got 0"):
        make_synthetic(10, image_size=0)


def test_cifar10_spec_matches_darts_constants() -> None:
    spec = CIFAR10DataModule.SPEC
    assert spec is not None
    assert spec.mean == (0.49139968, 0.48215827, 0.44653124)
    assert (spec.crop_padding, spec.flip, spec.train_size, spec.num_classes) == (4, True, 50000, 10)
