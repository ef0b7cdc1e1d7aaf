"""Image folders and archives: the real CIFAR-10 JPEG archive, the cache, bad folders, the datamodules, the
wrapper around a user's datamodule, and search/retraining through the CLI."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

from lightning_nas.cli import main
from lightning_nas.data import (
    BilevelDataModule,
    CIFAR10JPEGDataModule,
    DigitsDataModule,
    ImageBatchTransform,
    ImageFolderDataModule,
    image_folder,
    load_cifar10_jpeg,
    read_image_folder,
)
from lightning_nas.data.image_folder import ImageFolderData, read_image_folder_data
from lightning_nas.methods import DARTS
from tests.tiny import once_per_run, quiet_trainer, tiny_darts_space

REPO = Path(__file__).resolve().parents[2]
ARCHIVE = "CIFAR10-jpeg/CIFAR-10-images.tar.gz"
# CIFAR-10's label names in label order, from the dataset's batches.meta (https://www.cs.toronto.edu/~kriz/cifar.html)
CIFAR10_LABEL_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(scope="session")
def image_cache(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache folder of this run, never the user's home, holding the real archive's two splits: decoded once per
    run, whichever worker comes first, and read by the others."""
    with once_per_run(tmp_path_factory, "image_cache") as (cache, first):
        if first:
            for split in ("train", "test"):
                read_image_folder_data(data_root / ARCHIVE, split, cache_dir=cache)
    return cache


@pytest.fixture(scope="session")
def cifar_jpeg(data_root: Path, image_cache: Path) -> dict[str, ImageFolderData]:
    """The real archive's two splits, read from ``image_cache``."""
    return {
        split: read_image_folder_data(data_root / ARCHIVE, split, cache_dir=image_cache) for split in ("train", "test")
    }


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg(seed: int, size: int = 16) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _write_folder(root: Path, files: dict[str, bytes], empty_dirs: tuple[str, ...] = ()) -> Path:
    for name, blob in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(blob)
    for name in empty_dirs:
        (root / name).mkdir(parents=True, exist_ok=True)
    return root


def _write_tar(archive: Path, files: dict[str, bytes], empty_dirs: tuple[str, ...] = ()) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        for name in empty_dirs:
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        for name, blob in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return archive


def _tiny_files() -> dict[str, bytes]:
    """Two classes in train/ and test/, 16x16 JPEGs of seeded noise."""
    files = {}
    for split, count in (("train", 4), ("test", 2)):
        for label, name in enumerate(("bee", "ant")):
            for i in range(count):
                files[f"{split}/{name}/{i}.jpg"] = _jpeg(seed=100 * len(split) + 10 * label + i)
    return files


# ---------------------------------------------------------------------------------------------------------------
# The real archive


def test_cifar10_archive_has_cifar10s_splits_labels_and_counts(cifar_jpeg: dict[str, ImageFolderData]) -> None:
    train, test = cifar_jpeg["train"], cifar_jpeg["test"]
    assert train.classes == test.classes == CIFAR10_LABEL_NAMES
    assert tuple(train.dataset.images.shape) == (50_000, 3, 32, 32)
    assert tuple(test.dataset.images.shape) == (10_000, 3, 32, 32)
    assert train.dataset.images.dtype == torch.uint8
    assert torch.bincount(train.dataset.labels).tolist() == [5000] * 10
    assert torch.bincount(test.dataset.labels).tolist() == [1000] * 10
    # the training mean/std are CIFAR-10's (DARTS' utils.py values) up to the JPEG compression
    assert train.mean == pytest.approx((0.4914, 0.4822, 0.4465), abs=2e-3)
    assert train.std == pytest.approx((0.2470, 0.2435, 0.2616), abs=3e-3)


def test_cat_0000_is_test_image_0_with_label_3(data_root: Path, cifar_jpeg: dict[str, ImageFolderData]) -> None:
    with tarfile.open(data_root / ARCHIVE) as tar:
        handle = tar.extractfile("test/cat/0000.jpg")
        assert handle is not None
        direct = np.asarray(Image.open(io.BytesIO(handle.read())).convert("RGB"))
    test = cifar_jpeg["test"].dataset
    position = 3 * 1000  # classes in sorted order, 1000 each; cat is CIFAR-10 label 3, 0000.jpg its first file
    image, label = test[position]
    assert label == 3
    assert torch.equal(image, torch.from_numpy(direct).permute(2, 0, 1))


def test_second_read_loads_the_cache_without_decoding(
    data_root: Path, tmp_path: Path, cifar_jpeg: dict[str, ImageFolderData], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = read_image_folder_data(data_root / ARCHIVE, "test", cache_dir=tmp_path)  # decoded, then cached
    assert not first.from_cache
    assert torch.equal(first.dataset.images, cifar_jpeg["test"].dataset.images)
    mtime = first.cache_file.stat().st_mtime_ns

    def refuse(*args: Any) -> None:
        raise AssertionError("decoded although the cache is valid")

    monkeypatch.setattr(image_folder, "_decode", refuse)
    again = read_image_folder_data(data_root / ARCHIVE, "test", cache_dir=tmp_path)
    assert again.from_cache
    assert again.cache_file == first.cache_file
    assert first.cache_file.stat().st_mtime_ns == mtime
    assert torch.equal(again.dataset.images, first.dataset.images)
    assert torch.equal(again.dataset.labels, first.dataset.labels)
    via_loader = load_cifar10_jpeg(data_root, train=False, cache_dir=tmp_path)
    assert torch.equal(via_loader.images, first.dataset.images)


def test_cifar10_jpeg_datamodule_serves_the_archive(data_root: Path, image_cache: Path) -> None:
    data = CIFAR10JPEGDataModule(root=str(data_root), cache_dir=str(image_cache), search=True, subset=100, seed=3)
    data.setup("fit")
    assert data.train_dataset is not None
    assert data.val_dataset is not None
    assert data.train_indices is not None
    assert len(data.train_dataset) == len(data.val_dataset) == 50
    full = load_cifar10_jpeg(data_root, train=True, cache_dir=image_cache)
    assert torch.equal(data.train_dataset.images, full.images[data.train_indices])


def test_missing_cifar_archive_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="CIFAR-10-images.tar.gz"):
        load_cifar10_jpeg(tmp_path, cache_dir=tmp_path)


# ---------------------------------------------------------------------------------------------------------------
# Small folders and archives built here


@pytest.mark.parametrize("kind", ["folder", "tar.gz"])
def test_folder_and_archive_give_the_pixels_pillow_decodes(kind: str, tmp_path: Path) -> None:
    files = _tiny_files()
    source = _write_folder(tmp_path / "src", files) if kind == "folder" else _write_tar(tmp_path / "a.tar.gz", files)
    dataset, classes = read_image_folder(source, "train", cache_dir=tmp_path / "cache")
    assert classes == ["ant", "bee"]  # sorted folder names, not the order written
    expected = [np.asarray(Image.open(io.BytesIO(files[f"train/{c}/{i}.jpg"]))) for c in classes for i in range(4)]
    assert torch.equal(dataset.images, torch.from_numpy(np.stack(expected)).permute(0, 3, 1, 2))
    assert dataset.labels.tolist() == [0] * 4 + [1] * 4


def test_changing_the_archive_rebuilds_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _write_tar(tmp_path / "a.tar", _tiny_files())
    calls: list[int] = []
    decode = image_folder._decode

    def counting(*args: Any) -> Any:
        calls.append(1)
        return decode(*args)

    monkeypatch.setattr(image_folder, "_decode", counting)
    first = read_image_folder_data(archive, "test", cache_dir=tmp_path)
    assert not first.from_cache
    assert len(calls) == 4
    assert read_image_folder_data(archive, "test", cache_dir=tmp_path).from_cache
    assert len(calls) == 4
    stat = archive.stat()
    os.utime(archive, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    rebuilt = read_image_folder_data(archive, "test", cache_dir=tmp_path)
    assert not rebuilt.from_cache
    assert len(calls) == 8
    assert rebuilt.cache_file == first.cache_file
    # other options are other caches
    assert not read_image_folder_data(archive, "test", cache_dir=tmp_path, grayscale=True).from_cache


def test_adding_an_image_to_a_folder_rebuilds_the_cache(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "src", _tiny_files())
    assert len(read_image_folder(root, "test", cache_dir=tmp_path / "c")[0]) == 4
    (root / "test" / "ant" / "9.jpg").write_bytes(_jpeg(seed=9))
    dataset, _ = read_image_folder(root, "test", cache_dir=tmp_path / "c")
    assert dataset.labels.tolist() == [0, 0, 0, 1, 1]


@pytest.mark.parametrize("kind", ["folder", "tar.gz"])
def test_truncated_jpeg_is_named_or_skipped_with_a_count(kind: str, tmp_path: Path) -> None:
    files = _tiny_files()
    files["train/bee/2.jpg"] = files["train/bee/2.jpg"][: len(files["train/bee/2.jpg"]) // 2]
    source = _write_folder(tmp_path / "src", files) if kind == "folder" else _write_tar(tmp_path / "a.tgz", files)
    with pytest.raises(ValueError, match=r"cannot decode image .*train/bee/2\.jpg.*skip_corrupt=True"):
        read_image_folder(source, "train", cache_dir=tmp_path)
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image\(s\) .*train/bee/2\.jpg"):
        dataset, _ = read_image_folder(source, "train", cache_dir=tmp_path, skip_corrupt=True)
    assert dataset.labels.tolist() == [0] * 4 + [1] * 3
    with pytest.warns(UserWarning, match="skipped 1"):  # the cached result says so again
        read_image_folder(source, "train", cache_dir=tmp_path, skip_corrupt=True)


@pytest.mark.parametrize("kind", ["folder", "tar.gz"])
def test_bad_layouts_are_named(kind: str, tmp_path: Path) -> None:
    def source(files: dict[str, bytes], name: str, empty: tuple[str, ...] = ()) -> Path:
        if kind == "folder":
            return _write_folder(tmp_path / name, files, empty)
        return _write_tar(tmp_path / f"{name}.tar.gz", files, empty)

    good = _tiny_files()
    with pytest.raises(ValueError, match=r"class folder\(s\) 'wasp' hold no image files"):
        read_image_folder(source(good, "empty", ("train/wasp",)), "train", cache_dir=tmp_path)
    with pytest.raises(ValueError, match=r"no split folder 'val'; its top-level folders are: test, train"):
        read_image_folder(source(good, "split"), "val", cache_dir=tmp_path)
    with pytest.raises(ValueError, match=r"'train/ant/notes\.txt' is not an image file; image files end in \.jpg"):
        read_image_folder(source({**good, "train/ant/notes.txt": b"hi"}, "text"), "train", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="holds split folders .*pass split="):
        read_image_folder(source(good, "nosplit"), cache_dir=tmp_path)
    flat = {"a.jpg": good["train/ant/0.jpg"], "b.jpg": good["train/ant/1.jpg"]}
    with pytest.raises(ValueError, match="no class folders"):
        read_image_folder(source(flat, "flat"), cache_dir=tmp_path)


def test_mixed_sizes_need_image_size_and_resizing_keeps_the_centre(tmp_path: Path) -> None:
    wide = np.zeros((4, 8, 3), dtype=np.uint8)  # h=4, w=8: red left half, blue right half
    wide[:, :4, 0] = 255
    wide[:, 4:, 2] = 255
    files = {"a/wide.png": _png(Image.fromarray(wide)), "a/flat.png": _png(Image.new("RGB", (16, 16), (10, 20, 30)))}
    root = _write_folder(tmp_path / "src", files)
    with pytest.raises(ValueError, match=r"a/wide\.png is 4x8 .* a/flat\.png is 16x16.*pass image_size="):
        read_image_folder(root, cache_dir=tmp_path)
    dataset, _ = read_image_folder(root, image_size=4, cache_dir=tmp_path)
    flat, centre = dataset.images  # sorted: flat.png, wide.png
    assert torch.equal(flat, torch.tensor([10, 20, 30], dtype=torch.uint8).view(3, 1, 1).expand(3, 4, 4))
    # 4x8 covers 4x4 unscaled: the centre crop keeps columns 2..5, two red then two blue
    expected = torch.from_numpy(wide[:, 2:6]).permute(2, 0, 1)
    assert torch.equal(centre, expected)


def test_grayscale_uses_the_itu_r_601_luma(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "src", {"r/0.png": _png(Image.new("RGB", (2, 2), (255, 0, 0))), "g/0.png": b""})
    (root / "g" / "0.png").write_bytes(_png(Image.new("RGBA", (2, 2), (0, 255, 0, 7))))
    dataset, classes = read_image_folder(root, grayscale=True, cache_dir=tmp_path)
    assert classes == ["g", "r"]
    assert tuple(dataset.images.shape) == (2, 1, 2, 2)
    # L = R * 299/1000 + G * 587/1000 + B * 114/1000 (Pillow's convert("L")), alpha dropped
    assert dataset.images[:, 0, 0, 0].tolist() == [int(255 * 587 / 1000 + 0.5), int(255 * 299 / 1000)]


@pytest.mark.parametrize("grayscale", [True, False])
def test_sixteen_bit_images_are_scaled_to_eight_bits_not_clipped(grayscale: bool, tmp_path: Path) -> None:
    # a 16-bit grey ramp (Pillow mode I;16); Pillow's own convert would make every level above 255 white
    levels = np.array([[0, 257, 32768], [40000, 65000, 65535]], dtype=np.uint16)
    sixteen = Image.fromarray(levels)
    assert sixteen.mode == "I;16"
    root = _write_folder(tmp_path / "src", {"a/0.png": _png(sixteen), "b/0.png": _png(Image.new("L", (3, 2), 9))})
    dataset, _ = read_image_folder(root, grayscale=grayscale, cache_dir=tmp_path)
    expected = torch.from_numpy(np.round(levels.astype(np.float64) * 255 / 65535).astype(np.uint8))
    assert dataset.images.shape[1] == (1 if grayscale else 3)
    for channel in dataset.images[0]:  # RGB: the grey level in every channel
        assert torch.equal(channel, expected)
    (root / "c").mkdir()
    Image.fromarray(levels.astype(np.float32)).save(root / "c" / "0.tiff")
    with pytest.raises(ValueError, match=r"cannot decode image .*c/0\.tiff: a 32-bit floating-point image \(mode F\)"):
        read_image_folder(root, grayscale=grayscale, cache_dir=tmp_path)


def test_bad_options_are_refused(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "src", _tiny_files())
    with pytest.raises(FileNotFoundError, match="absent"):
        read_image_folder(tmp_path / "absent")
    with pytest.raises(ValueError, match="image_size must be"):
        read_image_folder(root, "train", image_size=(4, 0), cache_dir=tmp_path)
    (tmp_path / "x.zip").write_bytes(b"")
    with pytest.raises(ValueError, match=r"not an archive; give a folder or one of \.tar, \.tar\.gz, \.tgz"):
        read_image_folder(tmp_path / "x.zip")


# ---------------------------------------------------------------------------------------------------------------
# The datamodules


def test_image_folder_datamodule_derives_its_spec_from_the_data(tmp_path: Path) -> None:
    files = _tiny_files()
    root = _write_folder(tmp_path / "src", files)
    data = ImageFolderDataModule(path=str(root), cache_dir=str(tmp_path), batch_size=2, search=True)
    pixels = np.stack(
        [np.asarray(Image.open(io.BytesIO(files[f"train/{c}/{i}.jpg"]))) for c in ("ant", "bee") for i in range(4)]
    )
    scaled = pixels.astype(np.float64) / 255.0
    assert (data.num_classes, data.in_channels, data.image_size, data.spec.train_size) == (2, 3, 16, 8)
    assert data.spec.mean == pytest.approx(tuple(scaled.mean(axis=(0, 1, 2))), abs=1e-12)
    assert data.spec.std == pytest.approx(tuple(scaled.std(axis=(0, 1, 2))), abs=1e-12)
    data.setup("test")
    assert data.test_dataset is not None
    assert sorted(data.test_dataset.labels.tolist()) == [0, 0, 1, 1]  # held in a seeded random order
    (root / "test" / "bee").rename(root / "test" / "wasp")
    other = ImageFolderDataModule(path=str(root), cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"'test' split has classes \['ant', 'wasp'\].*'train' split has"):
        other.setup("fit")


# ---------------------------------------------------------------------------------------------------------------
# A user's own datamodule, wrapped


class PlainDigits(pl.LightningDataModule):
    """A user's datamodule: the digits training split as a TensorDataset, normalised after the transfer."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean: float, std: float) -> None:
        super().__init__()
        self.dataset = TensorDataset(images, labels)
        self.normalise = ImageBatchTransform(mean=(mean,), std=(std,), crop_padding=0, flip=False)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=32, shuffle=True)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        images, labels = batch
        return self.normalise(images, augment=False), labels


def _wrapped_digits(seed: int) -> BilevelDataModule:
    digits = DigitsDataModule()
    digits.setup("fit")
    train = digits.train_dataset
    assert train is not None
    spec = digits.spec
    return BilevelDataModule(PlainDigits(train.images, train.labels, spec.mean[0], spec.std[0]), seed=seed)


def test_wrapped_user_datamodule_gives_the_built_in_search_batches(tmp_path: Path) -> None:
    built_in = DigitsDataModule(search=True, batch_size=32, seed=5, augment=False)
    wrapped = _wrapped_digits(seed=5)
    built_in.setup("fit")
    wrapped.setup("fit")
    assert built_in.train_indices is not None
    assert wrapped.train_indices is not None
    assert torch.equal(built_in.train_indices, wrapped.train_indices)
    for step, ((mine, _, _), (theirs, _, _)) in enumerate(zip(built_in.train_dataloader(), wrapped.train_dataloader())):
        for half in ("train", "val"):
            assert torch.equal(mine[half][0], theirs[half][0])
            assert torch.equal(mine[half][1], theirs[half][1])
        if step == 3:
            break

    def search(data: pl.LightningDataModule) -> torch.Tensor:
        pl.seed_everything(0)
        model = DARTS(tiny_darts_space(num_classes=10), order="first")
        trainer = quiet_trainer(tmp_path, max_steps=4, limit_val_batches=0)
        trainer.fit(model, datamodule=data)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    searched = search(DigitsDataModule(search=True, batch_size=32, seed=5, augment=False))
    assert torch.equal(searched, search(_wrapped_digits(seed=5)))
    assert not torch.equal(searched, search(_wrapped_digits(seed=6)))


def test_wrapper_refuses_what_it_cannot_split() -> None:
    class Iterable(pl.LightningDataModule):
        def train_dataloader(self) -> Any:
            return [torch.zeros(2)]

    with pytest.raises(TypeError, match="returned a list"):
        BilevelDataModule(Iterable()).setup("fit")
    with pytest.raises(ValueError, match="train_portion must lie strictly between 0 and 1, got 1.0"):
        BilevelDataModule(Iterable(), train_portion=1.0)


# ---------------------------------------------------------------------------------------------------------------
# The CLI


def _cli_quick(tmp_path: Path) -> list[str]:
    return [
        f"--trainer.logger.init_args.save_dir={tmp_path}",
        "--trainer.max_epochs=1",
        "--trainer.limit_val_batches=2",
        "--trainer.enable_model_summary=false",
        "--trainer.enable_progress_bar=false",
    ]


def test_search_and_retrain_on_a_tiny_folder_through_the_cli(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "src", _tiny_files())
    data = [
        "--data=lightning_nas.data.ImageFolderDataModule",
        f"--data.path={root}",
        f"--data.cache_dir={tmp_path / 'cache'}",
        "--data.batch_size=2",
    ]
    main(
        [
            "fit",
            "--config",
            str(REPO / "configs/darts/cifar10_jpeg.yaml"),
            *_cli_quick(tmp_path),
            *data,
            "--data.search=true",
            "--model.space.init_args.num_classes=2",
            "--model.space.init_args.channels=4",
            "--model.space.init_args.layers=3",
            "--model.order=first",
        ]
    )
    found = tmp_path / "darts_cifar10_jpeg" / "version_0" / "architecture.json"
    assert found.is_file()
    main(
        [
            "fit",
            "--config",
            str(REPO / "configs/retrain/cifar10_jpeg.yaml"),
            *_cli_quick(tmp_path),
            *data,
            f"--model.arch={found}",
            "--model.num_classes=2",
            "--model.channels=8",
            "--model.layers=3",
            "--model.auxiliary=false",
        ]
    )
    metrics = (tmp_path / "retrain_cifar10_jpeg" / "version_0" / "metrics.csv").read_text()
    assert "val/acc" in metrics


@pytest.mark.slow
def test_cifar10_jpeg_recipes_run_through_the_cli(data_root: Path, image_cache: Path, tmp_path: Path) -> None:
    data = [f"--data.root={data_root}", f"--data.cache_dir={image_cache}", "--data.subset=256"]
    main(
        [
            "fit",
            "--config",
            str(REPO / "configs/darts/cifar10_jpeg.yaml"),
            *_cli_quick(tmp_path),
            *data,
            "--model.space.init_args.channels=4",
            "--model.space.init_args.layers=3",
            "--model.order=first",
        ]
    )
    found = tmp_path / "darts_cifar10_jpeg" / "version_0" / "architecture.json"
    main(
        [
            "fit",
            "--config",
            str(REPO / "configs/retrain/cifar10_jpeg.yaml"),
            *_cli_quick(tmp_path),
            *data,
            f"--model.arch={found}",
            "--model.channels=8",
            "--model.layers=3",
            "--model.auxiliary=false",
        ]
    )
    assert "val/acc" in (tmp_path / "retrain_cifar10_jpeg" / "version_0" / "metrics.csv").read_text()


def test_first_evaluation_batches_of_a_class_sorted_folder_are_a_random_sample(tmp_path: Path) -> None:
    """Files stored class by class (here 4 classes of 12): the validation loader (the architecture half) and the test
    loader read their datasets in order, so those datasets are held in a seeded random order, and the first batch
    of either sees most classes. Before, the architecture half was sorted and its first batches held one class."""
    names = ("ant", "bee", "cat", "dog")
    files = {
        f"{split}/{name}/{i}.jpg": _jpeg(seed=1000 * len(split) + 100 * label + i)
        for split, count in (("train", 12), ("test", 12))
        for label, name in enumerate(names)
        for i in range(count)
    }
    root = _write_folder(tmp_path / "src", files)
    data = ImageFolderDataModule(path=str(root), cache_dir=str(tmp_path), batch_size=8, search=True, seed=3)
    data.setup("fit")
    data.setup("test")
    # the architecture half is the seeded permutation's tail, in the permutation's order
    order = torch.randperm(48, generator=torch.Generator().manual_seed(3))
    assert data.val_indices is not None
    assert torch.equal(data.val_indices, order[24:])
    assert torch.equal(data.train_indices, order[:24].sort().values)
    (_, val_labels), (_, test_labels) = next(iter(data.val_dataloader())), next(iter(data.test_dataloader()))
    assert len(set(val_labels.tolist())) >= 3
    assert len(set(test_labels.tolist())) >= 3
    # the test split (also 48 images) is every test image once, in the same seed's permutation
    assert data.test_dataset is not None
    assert data.test_dataset.labels.tolist() == (torch.arange(48) // 12)[order].tolist()
