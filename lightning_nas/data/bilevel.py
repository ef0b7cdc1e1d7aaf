"""Bilevel search over any user's LightningDataModule: its training set, split as the built-in datamodules split.

A one-shot method such as DARTS trains the weights on one part of the training data and the architecture on a
disjoint part, and wants ``{"train": (x, y), "val": (x, y)}`` batches. :class:`BilevelDataModule` wraps an existing
datamodule, takes the dataset of its ``train_dataloader()``, splits it with :func:`split_indices` (the function the
built-in datamodules use for ``search=True``) and serves the two halves through the same resumable, seeded
loaders, so one seed gives the same batches whether the data comes from a built-in datamodule or a user's one.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities.combined_loader import CombinedLoader
from lightning.pytorch.utilities.model_helpers import is_overridden
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset
from typing_extensions import override

from lightning_nas.data.datamodule import resumable_loader, shard_kwargs, split_indices

__all__ = ["BilevelDataModule"]


class BilevelDataModule(pl.LightningDataModule):
    """Serve a user datamodule's training set as bilevel ``{"train": (x, y), "val": (x, y)}`` batches.

    The wrapped datamodule's ``prepare_data``, ``setup`` and ``teardown`` run as usual. Its ``train_dataloader()``
    is called once, in ``setup("fit")``, for its dataset (map-style: it needs a length and indexing), batch size,
    ``collate_fn`` and ``num_workers``; its sampler and shuffling are replaced by the seeded split: a permutation of
    the dataset from ``seed`` (cut to ``subset`` if given), whose first ``floor(train_portion * n)`` items train the
    weights and the rest the architecture. Each half gets its own shuffled loader, and the two are combined with
    ``mode="max_size_cycle"``, exactly as :class:`~lightning_nas.data.ImageDataModule` does with ``search=True``.

    ``val_dataloader()`` and ``test_dataloader()`` are the wrapped datamodule's; if it has no validation loader,
    validation covers the architecture half. The wrapped datamodule's batch-transfer hooks run on each pair.

    Args:
        datamodule: The user's datamodule.
        train_portion: Fraction of the (sub)set for the weights; the rest tunes the architecture.
        seed: Seed of the split and of the shuffling.
        batch_size: Batch size of each half; ``None`` keeps the wrapped training loader's.
        subset: Use a seeded random subset of this many training items; ``None`` uses all.

    Raises:
        ValueError: If ``train_portion`` is not strictly between 0 and 1, ``batch_size``/``subset`` is not positive,
            or (in ``setup``) a half would be empty.
        TypeError: If the wrapped training loader is not a ``DataLoader`` over a map-style dataset with a batch size.

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> class Plain(pl.LightningDataModule):
        ...     def train_dataloader(self):
        ...         return DataLoader(TensorDataset(torch.arange(10.0), torch.arange(10)), batch_size=2, shuffle=True)
        >>> data = BilevelDataModule(Plain(), train_portion=0.6, seed=0)
        >>> data.setup("fit")
        >>> batch, _, _ = next(iter(data.train_dataloader()))
        >>> sorted(batch), len(data.train_indices), len(data.val_indices)
        (['train', 'val'], 6, 4)
    """

    def __init__(
        self,
        datamodule: pl.LightningDataModule,
        train_portion: float = 0.5,
        seed: int = 0,
        batch_size: int | None = None,
        subset: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(datamodule, pl.LightningDataModule):
            raise TypeError(f"datamodule must be a LightningDataModule, got {type(datamodule).__name__}")
        if not 0.0 < train_portion < 1.0:
            raise ValueError(f"train_portion must lie strictly between 0 and 1, got {train_portion}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be at least 1 (or None for the wrapped loader's), got {batch_size}")
        if subset is not None and subset < 1:
            raise ValueError(f"subset must be at least 1 (or None for all), got {subset}")
        self.save_hyperparameters(ignore=["datamodule"])
        self.datamodule = datamodule
        self.train_portion = train_portion
        self.seed = seed
        self.batch_size = batch_size
        self.subset = subset
        self.train_indices: torch.Tensor | None = None
        self.val_indices: torch.Tensor | None = None
        self.train_dataset: Dataset[Any] | None = None
        self.val_dataset: Dataset[Any] | None = None
        self._collate_fn: Any = None
        self._num_workers = 0
        self._train_batches = 0

    @override
    def prepare_data(self) -> None:
        """The wrapped datamodule's ``prepare_data``."""
        self.datamodule.prepare_data()

    @override
    def setup(self, stage: str) -> None:
        """The wrapped datamodule's ``setup(stage)``; for ``"fit"`` also split its training set."""
        self.datamodule.trainer = self.trainer
        self.datamodule.setup(stage)
        if stage == "fit" and self.train_dataset is None:
            self._split(self.datamodule.train_dataloader())

    @override
    def teardown(self, stage: str) -> None:
        """The wrapped datamodule's ``teardown(stage)``."""
        self.datamodule.teardown(stage)

    def _split(self, loader: Any) -> None:
        if not isinstance(loader, DataLoader):
            raise TypeError(
                f"{type(self.datamodule).__name__}.train_dataloader() returned a {type(loader).__name__}; the wrapper"
                " needs one DataLoader over a map-style dataset"
            )
        dataset = loader.dataset
        if isinstance(dataset, IterableDataset) or not hasattr(dataset, "__len__"):
            raise TypeError(
                f"{type(self.datamodule).__name__}'s training dataset {type(dataset).__name__} is not map-style"
                " (indexable, with a length); the seeded split needs one"
            )
        batch_size = self.batch_size if self.batch_size is not None else loader.batch_size
        if batch_size is None:
            raise TypeError(
                f"{type(self.datamodule).__name__}'s training loader has no batch_size (it uses a batch_sampler);"
                " pass batch_size= to the wrapper"
            )
        self.batch_size = batch_size
        self.train_indices, self.val_indices = split_indices(
            len(dataset), search=True, train_portion=self.train_portion, subset=self.subset, seed=self.seed
        )
        assert self.val_indices is not None
        self.train_dataset = Subset(dataset, self.train_indices.tolist())
        self.val_dataset = Subset(dataset, self.val_indices.tolist())
        self._collate_fn = loader.collate_fn
        self._num_workers = loader.num_workers

    def _half(self, name: str) -> Dataset[Any]:
        if getattr(self, name) is None:
            self.setup("fit")
        dataset = getattr(self, name)
        assert dataset is not None, "setup('fit') splits the training set"
        return dataset

    def _training_loader(self, dataset: Dataset[Any], stream: int) -> DataLoader:
        assert self.batch_size is not None
        return resumable_loader(
            dataset,
            batch_size=self.batch_size,
            seed=self.seed,
            stream=stream,
            counter=lambda: self._train_batches,
            shard=shard_kwargs(self.trainer),
            num_workers=self._num_workers,
            collate_fn=self._collate_fn,
        )

    @override
    def train_dataloader(self) -> CombinedLoader:
        """``CombinedLoader({"train": weights half, "val": architecture half}, mode="max_size_cycle")``."""
        loaders = {
            "train": self._training_loader(self._half("train_dataset"), stream=0),
            "val": self._training_loader(self._half("val_dataset"), stream=1),
        }
        return CombinedLoader(loaders, mode="max_size_cycle")

    @override
    def val_dataloader(self) -> Any:
        """The wrapped datamodule's validation loader, or the architecture half if it has none."""
        if is_overridden("val_dataloader", self.datamodule, pl.LightningDataModule):
            return self.datamodule.val_dataloader()
        dataset = self._half("val_dataset")
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=False, collate_fn=self._collate_fn)

    @override
    def test_dataloader(self) -> Any:
        """The wrapped datamodule's test loader."""
        return self.datamodule.test_dataloader()

    @override
    def predict_dataloader(self) -> Any:
        """The wrapped datamodule's predict loader."""
        return self.datamodule.predict_dataloader()

    @override
    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """The wrapped datamodule's hook, on each pair of a bilevel batch."""
        return self._each_pair(batch, lambda pair: self.datamodule.on_before_batch_transfer(pair, dataloader_idx))

    @override
    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """The wrapped datamodule's hook, on each pair of a bilevel batch."""
        return self._each_pair(
            batch, lambda pair: self.datamodule.transfer_batch_to_device(pair, device, dataloader_idx)
        )

    @override
    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """The wrapped datamodule's hook, on each pair of a bilevel batch; counts the training batches."""
        self._train_batches += int(self.trainer is not None and self.trainer.training)
        return self._each_pair(batch, lambda pair: self.datamodule.on_after_batch_transfer(pair, dataloader_idx))

    def _each_pair(self, batch: Any, hook: Any) -> Any:
        if isinstance(batch, dict) and set(batch) == {"train", "val"}:
            return {key: hook(pair) for key, pair in batch.items()}
        return hook(batch)

    @override
    def state_dict(self) -> dict[str, Any]:
        """The count of training batches (it places the resumable loaders) and the wrapped datamodule's state."""
        return {"train_batches": self._train_batches, "datamodule": self.datamodule.state_dict()}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved."""
        self._train_batches = int(state_dict.get("train_batches", 0))
        self.datamodule.load_state_dict(state_dict.get("datamodule", {}))
