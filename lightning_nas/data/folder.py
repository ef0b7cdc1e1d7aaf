"""Datamodules over images in class subfolders (a user's folder or archive) and over CIFAR-10's JPEG archive.

Both are :class:`~lightning_nas.data.ImageDataModule` subclasses, so the seeded search split, the resumable
loaders and the on-device augmentation are the ones every other datamodule uses. Images are read by
:func:`~lightning_nas.data.read_image_folder` (decoded once, then loaded from its cache).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from typing_extensions import override

from lightning_nas.data.cifar import CIFAR10DataModule
from lightning_nas.data.datamodule import ImageDataModule
from lightning_nas.data.datasets import DatasetSpec, InMemoryImageDataset
from lightning_nas.data.image_folder import load_cifar10_jpeg, read_image_folder_data

__all__ = ["CIFAR10JPEGDataModule", "ImageFolderDataModule"]


class ImageFolderDataModule(ImageDataModule):
    """Images in class subfolders, ``<path>/<train_split>/<class>/...`` and ``<path>/<test_split>/<class>/...``.

    ``path`` is a folder or a ``.tar`` / ``.tar.gz`` / ``.tgz`` archive of that layout; the class index is the
    position of the folder name in sorted order (torchvision's ``ImageFolder`` convention). The training split is
    read (or loaded from the cache) when the datamodule is built, because its facts come from the data: the number
    of classes, channels and size, and the per-channel mean/std of the training images, which are cached with
    them. Default augmentation: random crop with padding ``size // 8`` (4 for 32 pixels) and horizontal flips.

    Args:
        path: The folder or archive.
        train_split: Split folder with the training images; ``None`` if the class folders are at the top of
            ``path`` (then there is no test split: use ``search=True``, or give ``test_split`` of another layout).
        test_split: Split folder with the test images (``"test"``, ``"val"``, ...); ``None`` if there is none, and
            then only search mode's loaders can be used.
        image_size: ``None``: all images share one square size. An int ``s``: scale each image to cover ``s x s``
            and centre-crop it (see :func:`~lightning_nas.data.read_image_folder`).
        grayscale: One channel instead of three.
        cache_dir: Cache folder; ``None`` means ``$LIGHTNING_NAS_CACHE`` or ``~/.cache/lightning_nas/images``.
        skip_corrupt: Leave unreadable images out with a counted warning instead of raising.
        search: Split the training set for bilevel search: batches are ``{"train": (x, y), "val": (x, y)}``.
        train_portion: Fraction of the (sub)set used for the weights in search mode; the rest tunes the architecture.
        batch_size: Training batch size (per half in search mode).
        eval_batch_size: Batch size of the validation and test loaders; ``None`` means ``batch_size``.
        subset: Use a seeded random subset of this many training images (quick runs); ``None`` uses all.
        num_workers: DataLoader worker processes (``0`` loads in the main process).
        seed: Seed of the split, the subset, the shuffling and the augmentation.
        augment: Augment training batches (crop, flip, cutout as configured); ``False`` only normalises.
        crop_padding: Zero padding of the random crop; ``None`` means ``size // 8`` (at least 1), ``0`` disables it.
        flip: Random horizontal flips; ``None`` means yes.
        cutout: Side of the cutout square (DeVries & Taylor 2017); ``0`` disables it.

    Raises:
        ValueError: For an unusable folder (see :func:`~lightning_nas.data.read_image_folder`), non-square images
            without ``image_size``, a test split whose classes differ from the training split's, or an argument
            out of range; the message names the value.

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> root = Path(tempfile.mkdtemp())
        >>> for split, name, colour in [("train", "a", 0), ("train", "b", 255), ("test", "a", 0), ("test", "b", 255)]:
        ...     (root / split / name).mkdir(parents=True)
        ...     for i in range(2):
        ...         Image.new("L", (8, 8), colour).save(root / split / name / f"{i}.png")
        >>> data = ImageFolderDataModule(path=str(root), grayscale=True, cache_dir=str(root / "cache"), batch_size=2)
        >>> data.classes, data.num_classes, data.in_channels, data.image_size, data.spec.mean
        (['a', 'b'], 2, 1, 8, (0.5,))
    """

    def __init__(
        self,
        *,
        path: str,
        train_split: str | None = "train",
        test_split: str | None = "test",
        image_size: int | None = None,
        grayscale: bool = False,
        cache_dir: str | None = None,
        skip_corrupt: bool = False,
        search: bool = False,
        train_portion: float = 0.5,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        subset: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        augment: bool = True,
        crop_padding: int | None = None,
        flip: bool | None = None,
        cutout: int = 0,
    ) -> None:
        # Read by _make_spec inside super().__init__, so set first.
        self.path = Path(path).expanduser()
        self.train_split = train_split
        self.test_split = test_split
        self.read_options = {
            "image_size": image_size,
            "grayscale": grayscale,
            "cache_dir": cache_dir,
            "skip_corrupt": skip_corrupt,
        }
        self.classes: list[str] = []
        self._train_images: InMemoryImageDataset | None = None
        super().__init__(
            search=search,
            train_portion=train_portion,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            subset=subset,
            num_workers=num_workers,
            seed=seed,
            augment=augment,
            crop_padding=crop_padding,
            flip=flip,
            cutout=cutout,
        )

    @override
    def _make_spec(self) -> DatasetSpec:
        data = read_image_folder_data(self.path, self.train_split, **self.read_options)  # type: ignore[arg-type]
        _, channels, height, width = data.dataset.images.shape
        if height != width:
            raise ValueError(
                f"{self.path}: the images are {height}x{width} (h x w) but the datamodule needs square images;"
                " pass image_size= to scale and crop them to a square"
            )
        self.classes = data.classes
        self._train_images = data.dataset
        return DatasetSpec(
            num_classes=len(data.classes),
            in_channels=channels,
            image_size=height,
            train_size=len(data.dataset),
            mean=data.mean,
            std=tuple(value if value > 0 else 1.0 for value in data.std),
            crop_padding=max(1, height // 8),
            flip=True,
        )

    def _image_shape(self) -> tuple[int, int, int]:
        """``(channels, height, width)`` of the images."""
        return self.spec.in_channels, self.spec.image_size, self.spec.image_size

    @override
    def _load_split(self, train: bool) -> InMemoryImageDataset:
        if train:
            assert self._train_images is not None, "_make_spec reads the training split"
            return self._train_images
        if self.test_split is None:
            raise ValueError(
                f"{self.path} has no test split (test_split=None): use search=True, whose validation loader is the"
                " architecture half, or name the test split folder"
            )
        data = read_image_folder_data(self.path, self.test_split, **self.read_options)  # type: ignore[arg-type]
        if data.classes != self.classes:
            raise ValueError(
                f"{self.path}: the {self.test_split!r} split has classes {data.classes}, but the"
                f" {self.train_split!r} split has {self.classes}"
            )
        train_shape, test_shape = self._image_shape(), tuple(data.dataset.images.shape[1:])
        if test_shape != train_shape:
            raise ValueError(
                f"{self.path}: {self.test_split!r} images are {test_shape}, training images {train_shape};"
                " pass image_size= to give both one size"
            )
        return data.dataset


class CIFAR10JPEGDataModule(ImageDataModule):
    """CIFAR-10 from the JPEG archive ``<root>/CIFAR10-jpeg/CIFAR-10-images.tar.gz`` (see :func:`load_cifar10_jpeg`).

    The facts (and so the normalisation and the default crop/flip) are :class:`CIFAR10DataModule`'s; the pixels
    differ from the pickled CIFAR-10 by the JPEG compression. Nothing is downloaded.

    Args:
        root: Data root; ``None`` means ``$LIGHTNING_NAS_DATA`` or ``~/.cache/lightning_nas``.
        cache_dir: Cache folder of the decoded images; ``None`` means ``$LIGHTNING_NAS_CACHE`` or
            ``~/.cache/lightning_nas/images``.
        search: Split the training set for bilevel search: batches are ``{"train": (x, y), "val": (x, y)}``.
        train_portion: Fraction of the (sub)set used for the weights in search mode; the rest tunes the architecture.
        batch_size: Training batch size (per half in search mode).
        eval_batch_size: Batch size of the validation and test loaders; ``None`` means ``batch_size``.
        subset: Use a seeded random subset of this many training images (quick runs); ``None`` uses all.
        num_workers: DataLoader worker processes (``0`` loads in the main process).
        seed: Seed of the split, the subset, the shuffling and the augmentation.
        augment: Augment training batches (crop, flip, cutout as configured); ``False`` only normalises.
        crop_padding: Zero padding of the random crop; ``None`` means 4, ``0`` disables it.
        flip: Random horizontal flips; ``None`` means yes.
        cutout: Side of the cutout square (DeVries & Taylor 2017); ``0`` disables it.

    Example:
        >>> data = CIFAR10JPEGDataModule(root="/nonexistent", cutout=16)
        >>> data.num_classes, data.in_channels, data.image_size
        (10, 3, 32)
    """

    SPEC: ClassVar[DatasetSpec | None] = CIFAR10DataModule.SPEC

    def __init__(
        self,
        *,
        root: str | None = None,
        cache_dir: str | None = None,
        search: bool = False,
        train_portion: float = 0.5,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        subset: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        augment: bool = True,
        crop_padding: int | None = None,
        flip: bool | None = None,
        cutout: int = 0,
    ) -> None:
        super().__init__(
            search=search,
            train_portion=train_portion,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            subset=subset,
            num_workers=num_workers,
            seed=seed,
            augment=augment,
            crop_padding=crop_padding,
            flip=flip,
            cutout=cutout,
        )
        self.root = root
        self.cache_dir = cache_dir

    @override
    def _load_split(self, train: bool) -> InMemoryImageDataset:
        return load_cifar10_jpeg(self.root, train, cache_dir=self.cache_dir)
