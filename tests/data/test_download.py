"""Download helper (through file:// URLs, no network), archive extraction and missing-data errors."""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_nas.data import (
    DATASET_FILES,
    DatasetFiles,
    MNISTDataModule,
    _download,
    default_root,
    download_and_verify,
    ensure_dataset,
    load_cifar10,
    load_mnist,
)


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_download_with_correct_md5(tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(b"x" * 3_000_000)  # more than one read chunk
    dest = tmp_path / "out" / "file.bin"
    assert download_and_verify(source.as_uri(), dest, _md5(source.read_bytes())) == dest
    assert dest.read_bytes() == source.read_bytes()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["file.bin"]


def test_download_md5_mismatch_leaves_nothing(tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(b"payload")
    dest = tmp_path / "out" / "file.bin"
    with pytest.raises(ValueError, match=f"md5 mismatch.*expected {'0' * 32}, got {_md5(b'payload')}"):
        download_and_verify(source.as_uri(), dest, "0" * 32)
    assert list(dest.parent.iterdir()) == []


def test_download_keeps_existing_file_with_right_md5_and_replaces_a_wrong_one(tmp_path: Path) -> None:
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"good")
    missing_url = (tmp_path / "no-such-source").as_uri()
    assert download_and_verify(missing_url, dest, _md5(b"good")) == dest  # never opened the URL
    source = tmp_path / "source.bin"
    source.write_bytes(b"fresh")
    dest.write_bytes(b"stale")
    download_and_verify(source.as_uri(), dest, _md5(b"fresh"))
    assert dest.read_bytes() == b"fresh"
    with pytest.raises(OSError, match="No such file"):
        download_and_verify(missing_url, tmp_path / "other.bin", _md5(b"x"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.bin", "source.bin"]


def test_missing_dataset_error_names_folder_and_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        ensure_dataset("fashion_mnist", root=tmp_path)
    message = str(info.value)
    assert str(tmp_path / "FashionMNIST" / "raw") in message
    for name in DATASET_FILES["fashion_mnist"].files:
        assert name in message
    assert "download=True" in message
    assert "root" in message
    with pytest.raises(ValueError, match="'mnist'"):
        ensure_dataset("imagenet", root=tmp_path)


def test_missing_dataset_through_loader_and_datamodule(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py.*data_batch_1"):
        load_cifar10(tmp_path)
    data = MNISTDataModule(root=str(tmp_path))
    data.prepare_data()  # download=False: nothing to do
    with pytest.raises(FileNotFoundError, match=r"MNIST/raw.*train-images-idx3-ubyte\.gz"):
        data.setup("fit")


def test_default_root_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LIGHTNING_NAS_DATA", str(tmp_path))
    assert default_root() == tmp_path
    assert default_root(tmp_path / "explicit") == tmp_path / "explicit"
    monkeypatch.delenv("LIGHTNING_NAS_DATA")
    assert default_root() == Path.home() / ".cache" / "lightning_nas"
    assert MNISTDataModule().root == Path.home() / ".cache" / "lightning_nas"


def _idx_gz(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(size.to_bytes(4, "big") for size in array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def test_ensure_downloads_idx_files_from_a_mirror(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    arrays = {
        "train-images-idx3-ubyte.gz": np.arange(2 * 28 * 28).reshape(2, 28, 28) % 256,
        "train-labels-idx1-ubyte.gz": np.array([3, 7]),
        "t10k-images-idx3-ubyte.gz": np.zeros((1, 28, 28)),
        "t10k-labels-idx1-ubyte.gz": np.array([9]),
    }
    md5 = {}
    for name, array in arrays.items():
        (mirror / name).write_bytes(_idx_gz(array))
        md5[name] = _md5((mirror / name).read_bytes())
    fake = DatasetFiles(
        folder="MNIST/raw",
        files=tuple(arrays),
        md5=md5,
        mirrors=((tmp_path / "dead").as_uri() + "/", mirror.as_uri() + "/"),  # the first mirror fails
    )
    monkeypatch.setitem(_download.DATASET_FILES, "mnist", fake)
    root = tmp_path / "root"
    data = MNISTDataModule(root=str(root), download=True)
    data.prepare_data()
    assert sorted(p.name for p in (root / "MNIST" / "raw").iterdir()) == sorted(arrays)
    train = load_mnist(root, train=True)
    assert train.images.shape == (2, 1, 28, 28)
    assert train.labels.tolist() == [3, 7]
    assert torch.equal(train.images[1, 0].flatten().long(), torch.arange(784, 1568) % 256)

    # a truncated file (an interrupted copy) is fetched again with download=True, not read as a broken gzip
    labels = root / "MNIST" / "raw" / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:20])
    with pytest.raises(ValueError, match="is not a readable gzip file: .*with download=True it is fetched again"):
        load_mnist(root, train=True)
    MNISTDataModule(root=str(root), download=True).prepare_data()
    assert labels.read_bytes() == (mirror / labels.name).read_bytes()
    assert load_mnist(root, train=True).labels.tolist() == [3, 7]


def _cifar_archive(path: Path) -> None:
    rows = np.full((2, 3072), 5, dtype=np.uint8)
    with tarfile.open(path, "w:gz") as tar:
        for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"]:
            payload = pickle.dumps({b"data": rows, b"labels": [1, 2]})
            member = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            member.size = len(payload)
            tar.addfile(member, io.BytesIO(payload))


def test_ensure_downloads_and_extracts_cifar(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    archive = tmp_path / "cifar-10-python.tar.gz"
    _cifar_archive(archive)
    real = DATASET_FILES["cifar10"]
    fake = DatasetFiles(
        folder=real.folder,
        files=real.files,
        md5={"cifar-10-python.tar.gz": _md5(archive.read_bytes())},
        mirrors=(tmp_path.as_uri() + "/",),
        archive=real.archive,
    )
    monkeypatch.setitem(_download.DATASET_FILES, "cifar10", fake)
    root = tmp_path / "root"
    train = load_cifar10(root, train=True, download=True)
    assert train.images.shape == (10, 3, 32, 32)
    assert int(train.images.min()) == 5
    assert load_cifar10(root, train=False).labels.tolist() == [1, 2]


def test_extract_refuses_paths_outside_the_folder(tmp_path: Path) -> None:
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        member = tarfile.TarInfo("../escape.txt")
        member.size = 1
        tar.addfile(member, io.BytesIO(b"x"))
    with pytest.raises(ValueError, match="unsafe"):
        _download.extract_tar(archive, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()
