"""Lightning datamodules for architecture search (bilevel ``{"train", "val"}`` batches) and for plain training.

``search=True`` splits the official training set into a part for the network weights ``w`` and a disjoint part
for the architecture ``alpha`` (DARTS, Liu et al. 2019, Sec. 3.3: ``min_alpha L_val(w*(alpha), alpha)``), and
each training batch is ``{"train": (x, y), "val": (x, y)}``. ``search=False`` trains on the whole training set and
validates on the official test split, which is how a found architecture is retrained.

Images travel as ``uint8`` from the loaders; :meth:`ImageDataModule.on_after_batch_transfer` converts, normalises
and (only while the trainer is training) augments them on the device.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities.combined_loader import CombinedLoader
from torch.utils.data import DataLoader, Dataset
from typing_extensions import override

from lightning_nas.data._download import default_root, ensure_dataset
from lightning_nas.data._resumable import ResumableDataLoader, ResumableSampler
from lightning_nas.data.augment import ImageBatchTransform
from lightning_nas.data.datasets import (
    DatasetSpec,
    InMemoryImageDataset,
    load_cifar10,
    load_cifar100,
    load_fashion_mnist,
    load_mnist,
)
from lightning_nas.sampling import derive_seed

__all__ = ["FileImageDataModule", "ImageDataModule", "resumable_loader", "shard_kwargs", "split_indices"]

Batch = tuple[torch.Tensor, torch.Tensor]


def _check_sizes(search: bool, train_portion: float, subset: int | None, available: int) -> None:
    """Raise ``ValueError`` if ``subset`` exceeds the data or a search half would be empty."""
    if subset is not None and not 1 <= subset <= available:
        raise ValueError(f"subset must be between 1 and the {available} training images, got {subset}")
    size = available if subset is None else subset
    weights = math.floor(train_portion * size)
    if search and not 0 < weights < size:
        raise ValueError(
            f"train_portion={train_portion} of {size} images leaves {weights} for the weights and"
            f" {size - weights} for the architecture; both need at least one"
        )


def split_indices(
    size: int, *, search: bool, train_portion: float, subset: int | None, seed: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The seeded choice of training images: indices for the weights and, in search mode, for the architecture.

    A permutation of ``range(size)`` from ``torch.Generator().manual_seed(seed)`` is cut to ``subset`` (if given);
    without ``search`` it is the training set, with ``search`` its first ``floor(train_portion * n)`` entries train
    the weights and the rest the architecture. Every datamodule (and :class:`~lightning_nas.data.BilevelDataModule`
    around a user's datamodule) splits with this function, so one seed gives one split everywhere.

    The weight indices are sorted (their loader shuffles them); the architecture half keeps the permutation's order,
    because it is also the validation set, read in order: its first batches are then a random sample of it even
    when the data is stored class by class (image folders, the CIFAR-10 JPEG archive), so a search that scores
    architectures on a few validation batches sees every class.

    Args:
        size: Number of training items.
        search: Split into the two halves of bilevel search.
        train_portion: Fraction of the (sub)set for the weights in search mode.
        subset: Keep a seeded random subset of this many items; ``None`` keeps all.
        seed: Seed of the permutation.

    Returns:
        ``(weights, architecture)``: ``int64`` index tensors, the first sorted, the second in the permutation's order;
        ``architecture`` is ``None`` without ``search``.

    Raises:
        ValueError: If ``subset`` exceeds ``size`` or a search half would be empty.

    Example:
        >>> weights, architecture = split_indices(10, search=True, train_portion=0.6, subset=None, seed=0)
        >>> len(weights), len(architecture), sorted(weights.tolist() + architecture.tolist()) == list(range(10))
        (6, 4, True)
    """
    _check_sizes(search, train_portion, subset, available=size)
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:subset]
    if not search:
        return order.sort().values, None
    weights = math.floor(train_portion * len(order))
    return order[:weights].sort().values, order[weights:]


def resumable_loader(
    dataset: Dataset[Any],
    *,
    batch_size: int,
    seed: int,
    stream: int,
    counter: Callable[[], int],
    shard: dict[str, int],
    num_workers: int = 0,
    collate_fn: Callable[[list[Any]], Any] | None = None,
) -> ResumableDataLoader:
    """A shuffled training loader whose position survives a checkpoint (see :class:`ResumableSampler`).

    It drops the last partial batch when the data exceeds one batch. ``stream`` tells the loaders of one run apart
    (0 weights, 1 architecture); ``counter`` returns the number of training batches taken so far; ``shard`` is
    :func:`shard_kwargs`.
    """
    size = len(dataset)  # type: ignore[arg-type]
    drop_last = size > batch_size
    sampler = ResumableSampler(
        size, seed=seed, stream=stream, counter=counter, batch_size=batch_size, drop_last=drop_last, **shard
    )
    return ResumableDataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        collate_fn=collate_fn,
    )


def shard_kwargs(trainer: pl.Trainer | None) -> dict[str, int]:
    """This process's ``num_replicas``/``rank`` for a training sampler: Lightning's distributed settings."""
    kwargs = None if trainer is None else trainer.distributed_sampler_kwargs
    # Trainer(use_distributed_sampler=False) asks for every rank to see all the data
    if not kwargs or not getattr(trainer, "_accelerator_connector").use_distributed_sampler:
        return {}
    return {"num_replicas": int(kwargs.get("num_replicas", 1)), "rank": int(kwargs.get("rank", 0))}


class ImageDataModule(pl.LightningDataModule):
    """Base datamodule over an in-memory image dataset; subclasses say what the data is and how to load it.

    A subclass sets ``SPEC`` (or overrides ``_make_spec``) and implements ``_load_split``.

    Batches:
        * ``search=True``: ``train_dataloader()`` is a ``CombinedLoader({"train": ..., "val": ...},
          mode="max_size_cycle")``; each training batch is ``{"train": (x, y), "val": (x, y)}`` drawn from the two
          disjoint halves, and the shorter half's iterator cycles without restarting the other. ``val_dataloader()``
          covers the architecture half, ``test_dataloader()`` the official test split.
        * ``search=False``: ``train_dataloader()`` covers the training set (or ``subset``); ``val_dataloader()``
          and ``test_dataloader()`` both cover the official test split.

        The evaluation loaders read in order, and their datasets are held in a seeded random order (the
        architecture half in :func:`split_indices`'s, the test split in a permutation from ``seed``), so the first
        batches of a validation or test loader are a random sample of it, whatever order the files are stored in.

    Loaders yield ``uint8`` images ``[B, C, H, W]`` and ``int64`` labels ``[B]``. After the transfer to the device,
    :meth:`on_after_batch_transfer` returns ``(x, y)`` tuples (inside the dict in search mode) with ``x`` ``float32``
    and normalised, augmented only while ``trainer.training``.

    Randomness: the split and subset come from ``torch.Generator().manual_seed(seed)``; each training loader shuffles
    with its own generator seeded from ``seed``; augmentation draws from a fresh generator on the batch's device
    seeded from ``(seed, trainer.global_rank, n)`` where ``n`` counts augmented batches. ``n`` is saved in
    :meth:`state_dict`, so a resumed run continues the same augmentation stream, and ranks differ.

    Args:
        search: Split the training set for bilevel search (see Batches).
        train_portion: Fraction of the (sub)set used for the weights in search mode; the rest tunes the architecture.
        batch_size: Training batch size (per half in search mode).
        eval_batch_size: Batch size of the validation and test loaders; ``None`` means ``batch_size``.
        subset: Use a seeded random subset of this many training images (quick runs); ``None`` uses all.
        num_workers: DataLoader worker processes (``0`` loads in the main process).
        seed: Seed of the split, the subset, the shuffling and the augmentation.
        augment: Augment training batches (crop, flip, cutout as configured); ``False`` only normalises.
        crop_padding: Zero padding of the random crop; ``None`` uses the dataset's default, ``0`` disables it.
        flip: Random horizontal flips; ``None`` uses the dataset's default.
        cutout: Side of the cutout square (DeVries & Taylor 2017); ``0`` disables it.

    Raises:
        ValueError: If an argument is out of range; the message names the value.
    """

    SPEC: ClassVar[DatasetSpec | None] = None

    def __init__(
        self,
        *,
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
        super().__init__()
        self.save_hyperparameters()
        self.spec = self._make_spec()
        self._check_arguments(search, train_portion, batch_size, eval_batch_size, subset, num_workers)
        self.search = search
        self.train_portion = train_portion
        self.batch_size = batch_size
        self.eval_batch_size = batch_size if eval_batch_size is None else eval_batch_size
        self.subset = subset
        self.num_workers = num_workers
        self.seed = seed
        self.augment = augment
        self.transform = ImageBatchTransform(
            mean=self.spec.mean,
            std=self.spec.std,
            crop_padding=self.spec.crop_padding if crop_padding is None else crop_padding,
            flip=self.spec.flip if flip is None else flip,
            cutout=cutout,
        )
        self.train_dataset: InMemoryImageDataset | None = None
        self.val_dataset: InMemoryImageDataset | None = None
        self.test_dataset: InMemoryImageDataset | None = None
        self.train_indices: torch.Tensor | None = None
        self.val_indices: torch.Tensor | None = None
        self._train_batches = 0

    @property
    def num_classes(self) -> int:
        """Number of classes; labels are ``0 .. num_classes - 1``."""
        return self.spec.num_classes

    @property
    def in_channels(self) -> int:
        """Channels per image."""
        return self.spec.in_channels

    @property
    def image_size(self) -> int:
        """Height and width of the (square) images."""
        return self.spec.image_size

    def _make_spec(self) -> DatasetSpec:
        """Return the dataset's facts; called at the start of ``__init__``."""
        if self.SPEC is None:
            raise TypeError(f"{type(self).__name__} must set SPEC or override _make_spec")
        return self.SPEC

    def _load_split(self, train: bool) -> InMemoryImageDataset:
        """Load the official training (``train=True``) or test split."""
        raise NotImplementedError(f"{type(self).__name__} must implement _load_split")

    def _check_arguments(
        self,
        search: bool,
        train_portion: float,
        batch_size: int,
        eval_batch_size: int | None,
        subset: int | None,
        num_workers: int,
    ) -> None:
        if batch_size < 1 or (eval_batch_size is not None and eval_batch_size < 1):
            raise ValueError(f"batch sizes must be at least 1, got batch_size={batch_size}, {eval_batch_size=}")
        if not 0.0 < train_portion < 1.0:
            raise ValueError(f"train_portion must lie strictly between 0 and 1, got {train_portion}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be non-negative, got {num_workers}")
        _check_sizes(search, train_portion, subset, available=self.spec.train_size)

    @override
    def setup(self, stage: str) -> None:
        """Load the splits that ``stage`` (``"fit"``, ``"validate"``, ``"test"``, ``"predict"``) needs."""
        if self.train_dataset is None and (stage == "fit" or (stage == "validate" and self.search)):
            self._setup_train()
        if self.test_dataset is None and (stage in ("test", "predict") or not self.search):
            test = self._load_checked(train=False)
            # a fixed seeded order: the first batches of the (sequential) evaluation loaders are a random sample of
            # the split even when it is stored class by class (image folders, the CIFAR-10 JPEG archive)
            self.test_dataset = test.subset(
                torch.randperm(len(test), generator=torch.Generator().manual_seed(self.seed))
            )
        if not self.search:
            self.val_dataset = self.test_dataset

    def _load_checked(self, train: bool) -> InMemoryImageDataset:
        """A split from :meth:`_load_split`, its labels checked once against ``num_classes`` before any training."""
        dataset = self._load_split(train=train)
        dataset.check_labels(self.num_classes)
        return dataset

    def _setup_train(self) -> None:
        """Pick the (sub)set of the training split and, in search mode, split it into weight/architecture halves."""
        full = self._load_checked(train=True)
        _check_sizes(self.search, self.train_portion, self.subset, available=len(full))
        if self.subset is None and not self.search:
            self.train_indices = torch.arange(len(full))
            self.train_dataset = full
            return
        self.train_indices, self.val_indices = split_indices(
            len(full), search=self.search, train_portion=self.train_portion, subset=self.subset, seed=self.seed
        )
        self.train_dataset = full.subset(self.train_indices)
        if self.val_indices is not None:
            self.val_dataset = full.subset(self.val_indices)

    def _loader(self, dataset: InMemoryImageDataset, train: bool, stream: int = 0) -> DataLoader:
        """A shuffled training loader (``drop_last`` when the data exceeds one batch) or a sequential eval loader."""
        batch_size = self.batch_size if train else self.eval_batch_size
        workers, persistent = self.num_workers, self.num_workers > 0
        if not train:
            return DataLoader(
                dataset, batch_size=batch_size, shuffle=False, num_workers=workers, persistent_workers=persistent
            )
        return resumable_loader(
            dataset,
            batch_size=batch_size,
            seed=self.seed,
            stream=stream,
            counter=self._trained_batches,
            shard=shard_kwargs(self.trainer),
            num_workers=workers,
        )

    def _trained_batches(self) -> int:
        return self._train_batches

    def _dataset(self, name: str, stage: str) -> InMemoryImageDataset:
        """Return the split stored under ``name``, running ``setup(stage)`` first if it is not loaded yet."""
        if getattr(self, name) is None:
            self.setup(stage)
        dataset = getattr(self, name)
        assert isinstance(dataset, InMemoryImageDataset), f"setup({stage!r}) did not load {name}"
        return dataset

    @override
    def train_dataloader(self) -> DataLoader | CombinedLoader:
        """The training loader, or in search mode the ``{"train", "val"}`` ``CombinedLoader``."""
        train = self._loader(self._dataset("train_dataset", "fit"), train=True, stream=0)
        if not self.search:
            return train
        architecture = self._loader(self._dataset("val_dataset", "fit"), train=True, stream=1)
        return CombinedLoader({"train": train, "val": architecture}, mode="max_size_cycle")

    @override
    def val_dataloader(self) -> DataLoader:
        """The architecture half in search mode, else the official test split; never augmented."""
        return self._loader(self._dataset("val_dataset", "validate"), train=False)

    @override
    def test_dataloader(self) -> DataLoader:
        """The official test split."""
        return self._loader(self._dataset("test_dataset", "test"), train=False)

    @override
    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Turn ``uint8`` images into normalised floats on the device, augmenting only while training.

        Args:
            batch: ``(x, y)`` / ``[x, y]``, or a dict of them such as ``{"train": (x, y), "val": (x, y)}``.
            dataloader_idx: Index of the loader the batch came from (unused).

        Returns:
            The same structure with every pair as a tuple ``(x_float, y)``.
        """
        training = self.trainer is not None and self.trainer.training
        augment = self.augment and training
        generator = self._augment_generator(_first_tensor(batch).device) if augment else None
        self._train_batches += int(training)
        if isinstance(batch, dict):
            return {key: self._transform_pair(pair, augment, generator) for key, pair in batch.items()}
        return self._transform_pair(batch, augment, generator)

    def _augment_generator(self, device: torch.device) -> torch.Generator:
        """A generator on ``device`` seeded from ``(seed, rank, n)`` for the ``n``-th training batch."""
        rank = 0 if self.trainer is None else self.trainer.global_rank
        seed = derive_seed(self.seed, "augment", rank, self._train_batches)
        return torch.Generator(device=device).manual_seed(seed)

    def _transform_pair(self, pair: Any, augment: bool, generator: torch.Generator | None) -> Batch:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(f"expected an (images, labels) pair, got {type(pair).__name__}")
        images, labels = pair
        return self.transform(images, augment=augment, generator=generator), labels

    @override
    def state_dict(self) -> dict[str, Any]:
        """The count of training batches (it seeds augmentation and places the loaders), for an exact resume."""
        return {"train_batches": self._train_batches}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the augmentation counter saved by :meth:`state_dict`."""
        self._train_batches = int(state_dict.get("train_batches", 0))


def _first_tensor(batch: Any) -> torch.Tensor:
    """The first tensor inside a batch (a pair, or a dict of pairs)."""
    if isinstance(batch, torch.Tensor):
        return batch
    values = batch.values() if isinstance(batch, dict) else batch
    for value in values:
        return _first_tensor(value)
    raise TypeError(f"batch of type {type(batch).__name__} holds no tensor")


_FILE_LOADERS: dict[str, Callable[..., InMemoryImageDataset]] = {
    "mnist": load_mnist,
    "fashion_mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
}


class FileImageDataModule(ImageDataModule):
    """Base of the datamodules whose files live under a data root and can be downloaded.

    A subclass sets ``SPEC`` and ``DATASET_NAME`` (``"mnist"``, ``"fashion_mnist"``, ``"cifar10"`` or
    ``"cifar100"``). Files are read from ``<root>/MNIST/raw``, ``<root>/FashionMNIST/raw``,
    ``<root>/cifar-10-batches-py`` or ``<root>/cifar-100-python``. With ``download=True``, ``prepare_data`` (rank 0
    only) fetches missing files from the mirrors and checks their md5; otherwise a missing file raises
    ``FileNotFoundError`` in ``setup`` naming the folder and the files.

    Args:
        root: Data root; ``None`` means ``$LIGHTNING_NAS_DATA`` or, if unset, ``~/.cache/lightning_nas``.
        download: Download missing files in ``prepare_data``.
        search: Split the training set for bilevel search: batches are ``{"train": (x, y), "val": (x, y)}``.
        train_portion: Fraction of the (sub)set used for the weights in search mode; the rest tunes the architecture.
        batch_size: Training batch size (per half in search mode).
        eval_batch_size: Batch size of the validation and test loaders; ``None`` means ``batch_size``.
        subset: Use a seeded random subset of this many training images (quick runs); ``None`` uses all.
        num_workers: DataLoader worker processes (``0`` loads in the main process).
        seed: Seed of the split, the subset, the shuffling and the augmentation.
        augment: Augment training batches (crop, flip, cutout as configured); ``False`` only normalises.
        crop_padding: Zero padding of the random crop; ``None`` uses the dataset's default, ``0`` disables it.
        flip: Random horizontal flips; ``None`` uses the dataset's default.
        cutout: Side of the cutout square (DeVries & Taylor 2017); ``0`` disables it.

    Raises:
        ValueError: If an argument is out of range; the message names the value.
    """

    DATASET_NAME: ClassVar[str] = ""

    def __init__(
        self,
        *,
        root: str | None = None,
        download: bool = False,
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
        if self.DATASET_NAME not in _FILE_LOADERS:
            valid = ", ".join(map(repr, _FILE_LOADERS))
            raise TypeError(f"{type(self).__name__}.DATASET_NAME is {self.DATASET_NAME!r}; valid names are {valid}")
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
        self.root: Path = default_root(root)
        self.download = download

    @override
    def prepare_data(self) -> None:
        """Download missing files when ``download=True`` (Lightning runs this on one process only)."""
        if self.download:
            ensure_dataset(self.DATASET_NAME, root=self.root, download=True)

    @override
    def _load_split(self, train: bool) -> InMemoryImageDataset:
        return _FILE_LOADERS[self.DATASET_NAME](self.root, train=train, download=False)
