"""Data for architecture search: datasets, readers, on-device batch augmentation and Lightning datamodules.

Datamodules give ``{"train": (x, y), "val": (x, y)}`` batches for bilevel search (``search=True``) or plain
``(x, y)`` batches for training, with ``uint8`` images turned into normalised floats on the device.
"""

from lightning_nas.data._download import DATASET_FILES, DatasetFiles, default_root, download_and_verify, ensure_dataset
from lightning_nas.data._readers import read_cifar, read_idx
from lightning_nas.data.augment import ImageBatchTransform
from lightning_nas.data.bilevel import BilevelDataModule
from lightning_nas.data.cifar import CIFAR10DataModule, CIFAR100DataModule
from lightning_nas.data.datamodule import FileImageDataModule, ImageDataModule
from lightning_nas.data.datasets import (
    DatasetSpec,
    InMemoryImageDataset,
    load_cifar10,
    load_cifar100,
    load_digits,
    load_fashion_mnist,
    load_mnist,
    make_synthetic,
)
from lightning_nas.data.folder import CIFAR10JPEGDataModule, ImageFolderDataModule
from lightning_nas.data.image_folder import load_cifar10_jpeg, read_image_folder
from lightning_nas.data.mnist import FashionMNISTDataModule, MNISTDataModule
from lightning_nas.data.toy import DigitsDataModule, SyntheticDataModule

__all__ = [
    "BilevelDataModule",
    "DATASET_FILES",
    "CIFAR100DataModule",
    "CIFAR10JPEGDataModule",
    "CIFAR10DataModule",
    "DatasetFiles",
    "DatasetSpec",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "FileImageDataModule",
    "ImageBatchTransform",
    "ImageDataModule",
    "ImageFolderDataModule",
    "InMemoryImageDataset",
    "MNISTDataModule",
    "SyntheticDataModule",
    "default_root",
    "download_and_verify",
    "ensure_dataset",
    "load_cifar10",
    "load_cifar100",
    "load_cifar10_jpeg",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist",
    "make_synthetic",
    "read_cifar",
    "read_idx",
    "read_image_folder",
]
