"""IDX and CIFAR readers: the real MNIST-family files, and hand-written files checked byte for byte."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_nas.data import read_cifar, read_idx

# ---------------------------------------------------------------- real IDX files


@pytest.mark.parametrize("name", ["MNIST", "FashionMNIST"])
def test_real_idx_shapes_and_dtypes(data_root: Path, name: str) -> None:
    raw = data_root / name / "raw"
    train_labels = read_idx(raw / "train-labels-idx1-ubyte.gz")
    test_images = read_idx(raw / "t10k-images-idx3-ubyte.gz")
    test_labels = read_idx(raw / "t10k-labels-idx1-ubyte.gz")
    assert train_labels.shape == (60000,)
    assert test_images.shape == (10000, 28, 28)
    assert test_labels.shape == (10000,)
    assert test_images.dtype == train_labels.dtype == torch.uint8
    assert int(train_labels.max()) == 9


def test_real_mnist_train_images_and_first_labels(data_root: Path) -> None:
    raw = data_root / "MNIST" / "raw"
    images = read_idx(raw / "train-images-idx3-ubyte.gz")
    labels = read_idx(raw / "train-labels-idx1-ubyte.gz")
    assert images.shape == (60000, 28, 28)
    assert images.dtype == torch.uint8
    assert labels[:5].tolist() == [5, 0, 4, 1, 9]
    # The first image is a 5: ink (non-zero pixels) in the middle rows, blank borders.
    assert int(images[0, 0].max()) == 0
    assert int(images[0, 14].max()) > 0


def test_real_fashion_mnist_classes_are_balanced(data_root: Path) -> None:
    raw = data_root / "FashionMNIST" / "raw"
    train = read_idx(raw / "train-labels-idx1-ubyte.gz")
    test = read_idx(raw / "t10k-labels-idx1-ubyte.gz")
    assert torch.bincount(train.long()).tolist() == [6000] * 10
    assert torch.bincount(test.long()).tolist() == [1000] * 10


# ---------------------------------------------------------------- synthetic IDX files

_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}


def _write_idx(path: Path, array: np.ndarray, code: int | None = None) -> Path:
    """Write ``array`` as IDX with numpy's own big-endian conversion (independent of the reader's byte flipping)."""
    code = _CODES[array.dtype.type] if code is None else code
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


@pytest.mark.parametrize("dtype", list(_CODES))
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip_every_type(tmp_path: Path, dtype: type, suffix: str) -> None:
    rng = np.random.default_rng(0)
    array: np.ndarray
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        array = rng.integers(info.min, info.max, size=(3, 4, 5), endpoint=True).astype(dtype)
    else:
        array = (rng.standard_normal((3, 4, 5)) * 1e3).astype(dtype)
    result = read_idx(_write_idx(tmp_path / f"data-idx3{suffix}", array))
    expected = torch.from_numpy(array.copy())
    assert result.dtype == expected.dtype
    assert torch.equal(result, expected)


def test_idx_int32_known_values(tmp_path: Path) -> None:
    path = tmp_path / "ints"
    values = [1, -2, 2**31 - 1, -(2**31), 258]
    path.write_bytes(bytes([0, 0, 0x0C, 1, 0, 0, 0, 5]) + b"".join(v.to_bytes(4, "big", signed=True) for v in values))
    assert read_idx(path).tolist() == values


def test_idx_zero_dimensional_and_empty(tmp_path: Path) -> None:
    scalar = tmp_path / "scalar"
    scalar.write_bytes(bytes([0, 0, 0x08, 0, 42]))
    assert read_idx(scalar).item() == 42
    empty = _write_idx(tmp_path / "empty", np.zeros((0, 28, 28), dtype=np.uint8))
    assert read_idx(empty).shape == (0, 28, 28)


def test_idx_bad_magic_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "bad-magic"
    path.write_bytes(bytes([1, 0, 0x08, 1, 0, 0, 0, 1, 7]))
    with pytest.raises(ValueError, match="not an IDX file") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_idx_unknown_type_code_lists_valid_codes(tmp_path: Path) -> None:
    path = _write_idx(tmp_path / "weird", np.zeros(3, dtype=np.uint8), code=0x0A)
    with pytest.raises(ValueError, match=r"0x0A.*0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E"):
        read_idx(path)


@pytest.mark.parametrize("cut", [3, 9, 20])
def test_idx_truncated_file(tmp_path: Path, cut: int) -> None:
    whole = _write_idx(tmp_path / "whole", np.arange(24, dtype=np.int16).reshape(2, 12)).read_bytes()
    path = tmp_path / "cut"
    path.write_bytes(whole[: len(whole) - cut])
    with pytest.raises(ValueError, match="truncated|not an IDX") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_idx_trailing_bytes_and_broken_gzip(tmp_path: Path) -> None:
    path = tmp_path / "long"
    path.write_bytes(_write_idx(tmp_path / "ok", np.arange(4, dtype=np.uint8)).read_bytes() + b"\x00")
    with pytest.raises(ValueError, match="longer than its header"):
        read_idx(path)
    broken = tmp_path / "broken.gz"
    broken.write_bytes(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 4, 1, 2, 3, 4]))[:-6])
    with pytest.raises(ValueError, match="gzip"):
        read_idx(broken)
    with pytest.raises(FileNotFoundError, match="missing-file"):
        read_idx(tmp_path / "missing-file")


# ---------------------------------------------------------------- CIFAR pickle batches


def _cifar_rows(count: int, offset: int) -> np.ndarray:
    """Rows whose every byte encodes (sample, channel, position), so any reshaping mistake shows."""
    rng = np.random.default_rng(offset)
    return rng.integers(0, 256, size=(count, 3072), dtype=np.uint8)


def _write_batch(path: Path, rows: np.ndarray, labels: list[int], label_key: bytes) -> None:
    with path.open("wb") as stream:
        pickle.dump({b"batch_label": b"fake", b"data": rows, label_key: labels}, stream, protocol=2)


def test_cifar10_reads_all_batches_in_order_with_rgb_planes(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batches = []
    for index, name in enumerate([*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]):
        batch_rows = _cifar_rows(3, index)
        batch_labels = [(index + k) % 10 for k in range(3)]
        _write_batch(folder / name, batch_rows, batch_labels, b"labels")
        batches.append((batch_rows, batch_labels))
    images, labels = read_cifar(tmp_path, "cifar10", train=True)
    assert images.shape == (15, 3, 32, 32)
    assert images.dtype == torch.uint8
    assert labels.dtype == torch.int64
    assert labels.tolist() == [label for _, part in batches[:5] for label in part]
    rows = np.concatenate([part for part, _ in batches[:5]])
    # Channel planes: byte c * 1024 + y * 32 + x of a row is pixel (c, y, x).
    for sample, channel, y, x in [(0, 0, 0, 0), (4, 1, 5, 31), (14, 2, 31, 7), (7, 2, 16, 16)]:
        assert int(images[sample, channel, y, x]) == int(rows[sample, channel * 1024 + y * 32 + x])
    assert torch.equal(images[:, 0].reshape(15, -1), torch.from_numpy(rows[:, :1024]))
    test_images, test_labels = read_cifar(tmp_path, "cifar10", train=False)
    assert torch.equal(test_images.reshape(3, -1), torch.from_numpy(batches[5][0]))
    assert test_labels.tolist() == batches[5][1]


def test_cifar100_uses_fine_labels(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name in ("train", "test"):
        with (folder / name).open("wb") as stream:
            data = {b"data": _cifar_rows(4, 9), b"fine_labels": [99, 0, 50, 7], b"coarse_labels": [19, 0, 1, 2]}
            pickle.dump(data, stream)
    images, labels = read_cifar(tmp_path, "cifar100", train=True)
    assert images.shape == (4, 3, 32, 32)
    assert labels.tolist() == [99, 0, 50, 7]


def test_cifar_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'cifar10', 'cifar100'"):
        read_cifar(tmp_path, "cifar1000", train=True)  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match=r"data_batch_1.*cifar-10-batches-py.*download=True"):
        read_cifar(tmp_path, "cifar10", train=True)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    _write_batch(folder / "test", np.zeros((2, 100), dtype=np.uint8), [0, 1], b"fine_labels")
    with pytest.raises(ValueError, match="3072"):
        read_cifar(tmp_path, "cifar100", train=False)
    _write_batch(folder / "test", np.zeros((2, 3072), dtype=np.uint8), [0, 1], b"labels")
    with pytest.raises(ValueError, match="fine_labels"):
        read_cifar(tmp_path, "cifar100", train=False)
