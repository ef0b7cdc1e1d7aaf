"""In-memory image datasets and the functions that load each supported dataset into one.

Every loader returns an :class:`InMemoryImageDataset`: ``uint8`` images ``[N, C, H, W]`` and ``int64`` labels
``[N]``. Conversion to float, normalisation and augmentation happen later, on whole batches on the device
(see :mod:`lightning_nas.data.augment`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from lightning_nas.data._download import default_root, ensure_dataset
from lightning_nas.data._readers import CIFAR_FOLDERS, read_cifar, read_idx

__all__ = [
    "DatasetSpec",
    "InMemoryImageDataset",
    "load_cifar10",
    "load_cifar100",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist",
    "make_synthetic",
]


@dataclass(frozen=True)
class DatasetSpec:
    """Facts about a dataset that models and augmentation need before any data is loaded.

    Args:
        num_classes: Number of classes; labels are ``0 .. num_classes - 1``.
        in_channels: Channels per image.
        image_size: Height and width (all images are square).
        train_size: Number of training images.
        mean: Per-channel mean of the training images scaled to ``[0, 1]``.
        std: Per-channel standard deviation of the training images scaled to ``[0, 1]``.
        crop_padding: Default zero padding for random crops during training.
        flip: Whether random horizontal flips suit the dataset (not for digits, whose shapes are chiral).
    """

    num_classes: int
    in_channels: int
    image_size: int
    train_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_padding: int
    flip: bool


class InMemoryImageDataset(Dataset[tuple[torch.Tensor, int]]):
    """A map-style dataset over ``uint8`` images and ``int64`` labels held in memory.

    Args:
        images: ``uint8`` tensor of shape ``[N, C, H, W]``.
        labels: ``int64`` tensor of shape ``[N]``.
        source: where the samples were read from (a file or folder), named by :meth:`check_labels`.

    Raises:
        TypeError: If the dtypes are not ``uint8`` / ``int64``.
        ValueError: If the shapes do not match ``[N, C, H, W]`` / ``[N]``.

    Example:
        >>> dataset = InMemoryImageDataset(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.arange(4))
        >>> image, label = dataset[3]
        >>> len(dataset), tuple(image.shape), label
        (4, (1, 8, 8), 3)
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, source: str = "in-memory data") -> None:
        if images.dtype != torch.uint8 or labels.dtype != torch.int64:
            raise TypeError(f"expected uint8 images and int64 labels, got {images.dtype} and {labels.dtype}")
        if images.ndim != 4 or labels.shape != (images.shape[0],):
            raise ValueError(
                f"expected images [N, C, H, W] and labels [N], got {tuple(images.shape)} and {tuple(labels.shape)}"
            )
        self.images = images
        self.labels = labels
        self.source = source

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])

    def subset(self, indices: torch.Tensor) -> InMemoryImageDataset:
        """Return a new dataset holding the samples at ``indices`` (a copy, in that order).

        Args:
            indices: 1-d integer tensor of positions.

        Returns:
            The selected samples.
        """
        return InMemoryImageDataset(self.images[indices], self.labels[indices], self.source)

    def check_labels(self, num_classes: int) -> None:
        """Refuse a label outside ``0 .. num_classes - 1``, naming :attr:`source`, the value and the valid range.

        Raises:
            ValueError: the first out-of-range label, its position and how many labels are out of range.
        """
        if len(self) == 0:
            return
        bad = ((self.labels < 0) | (self.labels >= num_classes)).nonzero().flatten()
        if bad.numel():
            first = int(bad[0])
            raise ValueError(
                f"{self.source}: label {int(self.labels[first])} at position {first} is outside the valid range "
                f"0..{num_classes - 1} of this {num_classes}-class dataset ({bad.numel()} labels out of range)"
            )


def _load_idx_pair(name: str, root: str | Path | None, train: bool, download: bool) -> InMemoryImageDataset:
    """Load the images and labels of one split of an MNIST-family dataset."""
    folder = ensure_dataset(name, root=root, download=download)
    prefix = "train" if train else "t10k"
    images = read_idx(_idx_path(folder, f"{prefix}-images-idx3-ubyte"))
    label_file = _idx_path(folder, f"{prefix}-labels-idx1-ubyte")
    labels = read_idx(label_file)
    if labels.is_floating_point() or labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"{str(label_file)!r} holds {labels.dtype} labels of shape {tuple(labels.shape)}; expected one integer "
            f"label per image, shape ({images.shape[0]},)"
        )
    return InMemoryImageDataset(images.unsqueeze(1), labels.long(), source=repr(str(label_file)))


def _idx_path(folder: Path, name: str) -> Path:
    """The ``.gz`` file if present, else the uncompressed one."""
    compressed = folder / f"{name}.gz"
    return compressed if compressed.is_file() else folder / name


def load_mnist(root: str | Path | None = None, *, train: bool = True, download: bool = False) -> InMemoryImageDataset:
    """Load MNIST (60000 training / 10000 test digits, 1x28x28) from ``<root>/MNIST/raw``.

    Args:
        root: Data root; ``None`` means ``$LIGHTNING_NAS_DATA`` or ``~/.cache/lightning_nas``.
        train: The training split if ``True``, else the test split.
        download: Fetch missing files (md5-checked) instead of raising ``FileNotFoundError``.

    Returns:
        The split as ``uint8`` images ``[N, 1, 28, 28]`` with ``int64`` labels.
    """
    return _load_idx_pair("mnist", root, train, download)


def load_fashion_mnist(
    root: str | Path | None = None, *, train: bool = True, download: bool = False
) -> InMemoryImageDataset:
    """Load Fashion-MNIST (60000 / 10000 clothing images, 1x28x28) from ``<root>/FashionMNIST/raw``.

    Args:
        root: Data root; ``None`` means ``$LIGHTNING_NAS_DATA`` or ``~/.cache/lightning_nas``.
        train: The training split if ``True``, else the test split.
        download: Fetch missing files (md5-checked) instead of raising ``FileNotFoundError``.

    Returns:
        The split as ``uint8`` images ``[N, 1, 28, 28]`` with ``int64`` labels.
    """
    return _load_idx_pair("fashion_mnist", root, train, download)


def load_cifar10(root: str | Path | None = None, *, train: bool = True, download: bool = False) -> InMemoryImageDataset:
    """Load CIFAR-10 (50000 / 10000 images, 3x32x32) from ``<root>/cifar-10-batches-py``.

    The batches are pickles read with plain values and numpy arrays only: a batch naming anything else is refused.

    Args:
        root: Data root; ``None`` means ``$LIGHTNING_NAS_DATA`` or ``~/.cache/lightning_nas``.
        train: The training split if ``True``, else the test split.
        download: Fetch and unpack the md5-checked archive instead of raising ``FileNotFoundError``.

    Returns:
        The split as ``uint8`` images ``[N, 3, 32, 32]`` with ``int64`` labels.
    """
    ensure_dataset("cifar10", root=root, download=download)
    images, labels = read_cifar(default_root(root), "cifar10", train)
    return InMemoryImageDataset(images, labels, source=_cifar_source(root, "cifar10", train))


def load_cifar100(
    root: str | Path | None = None, *, train: bool = True, download: bool = False
) -> InMemoryImageDataset:
    """Load CIFAR-100 (50000 / 10000 images, 3x32x32, 100 fine labels) from ``<root>/cifar-100-python``.

    The batches are pickles read with plain values and numpy arrays only: a batch naming anything else is refused.

    Args:
        root: Data root; ``None`` means ``$LIGHTNING_NAS_DATA`` or ``~/.cache/lightning_nas``.
        train: The training split if ``True``, else the test split.
        download: Fetch and unpack the md5-checked archive instead of raising ``FileNotFoundError``.

    Returns:
        The split as ``uint8`` images ``[N, 3, 32, 32]`` with ``int64`` fine labels.
    """
    ensure_dataset("cifar100", root=root, download=download)
    images, labels = read_cifar(default_root(root), "cifar100", train)
    return InMemoryImageDataset(images, labels, source=_cifar_source(root, "cifar100", train))


def _cifar_source(root: str | Path | None, which: str, train: bool) -> str:
    return f"{which} {'training' if train else 'test'} batches in {str(default_root(root) / CIFAR_FOLDERS[which])!r}"


def load_digits() -> InMemoryImageDataset:
    """Load scikit-learn's 1797 handwritten 8x8 digits, scaled from ``0..16`` to ``uint8`` ``0..255``.

    The data ships inside scikit-learn, so nothing is downloaded. There is no official test split.

    Returns:
        All 1797 images as ``uint8`` ``[1797, 1, 8, 8]`` with ``int64`` labels ``0..9``.

    Raises:
        ImportError: If scikit-learn is not installed.

    Example:
        >>> digits = load_digits()
        >>> tuple(digits.images.shape), int(digits.images.max())
        ((1797, 1, 8, 8), 255)
    """
    try:
        from sklearn.datasets import load_digits as sklearn_load_digits
    except ImportError as error:
        raise ImportError(
            "the digits dataset needs scikit-learn: pip install 'lightning-nas[demo]' (or scikit-learn)"
        ) from error
    bunch = sklearn_load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float64).mul(255.0 / 16.0).round().to(torch.uint8)
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    return InMemoryImageDataset(images.unsqueeze(1), labels, source="scikit-learn digits")


def make_synthetic(
    num_samples: int,
    *,
    num_classes: int = 10,
    in_channels: int = 1,
    image_size: int = 16,
    noise: float = 0.2,
    seed: int = 0,
) -> InMemoryImageDataset:
    """Make a learnable synthetic image dataset for tests and quick runs.

    Each class ``k`` has a smooth random prototype ``P_k`` in ``[0, 1]`` (a 4x4 random grid, bilinearly
    upsampled). A sample of class ``k`` is ``clamp(P_k + noise * N(0, 1), 0, 1)`` scaled to ``uint8``. Labels are
    balanced (``i % num_classes``) and shuffled. The same ``seed`` gives the same dataset; samples ``[:n]`` of a
    bigger call share the prototypes, so slicing one call into train and test parts gives two splits of one task.

    Args:
        num_samples: Number of images.
        num_classes: Number of classes (at least 2).
        in_channels: Channels per image.
        image_size: Height and width.
        noise: Standard deviation of the per-pixel Gaussian noise, relative to the ``[0, 1]`` range.
        seed: Seed of the generator that draws prototypes, labels and noise.

    Returns:
        ``uint8`` images ``[num_samples, in_channels, image_size, image_size]`` with ``int64`` labels.

    Raises:
        ValueError: If a size is not positive, ``num_classes < 2`` or ``noise < 0``.

    Example:
        >>> data = make_synthetic(20, num_classes=4, in_channels=3, image_size=8)
        >>> tuple(data.images.shape), torch.bincount(data.labels).tolist()
        ((20, 3, 8, 8), [5, 5, 5, 5])
    """
    for name, value in {"num_samples": num_samples, "in_channels": in_channels, "image_size": image_size}.items():
        if value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    if noise < 0:
        raise ValueError(f"noise must be non-negative, got {noise}")
    generator = torch.Generator().manual_seed(seed)
    grid = min(4, image_size)
    prototypes = torch.rand(num_classes, in_channels, grid, grid, generator=generator)
    prototypes = F.interpolate(prototypes, size=(image_size, image_size), mode="bilinear", align_corners=False)
    labels = (torch.arange(num_samples) % num_classes)[torch.randperm(num_samples, generator=generator)]
    clean = prototypes[labels]
    noisy = clean + noise * torch.randn(clean.shape, generator=generator)
    images = noisy.clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)
    return InMemoryImageDataset(images, labels)
