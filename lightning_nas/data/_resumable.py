"""A training loader whose position Lightning saves in checkpoints, so a run resumed mid-epoch sees exactly the
batches an uninterrupted run would have seen.

Each pass over the data is a permutation seeded from ``(seed, stream, epoch, cycle)``: ``epoch`` comes from
Lightning's ``set_epoch`` call at the start of every epoch, and ``cycle`` counts completed passes within the
epoch (a short loader is cycled in search mode). The loader's position is not counted by the loader itself,
because Lightning prefetches one batch ahead: it is the number of batches training has taken this epoch, read
from the owner's counter (the datamodule counts batches in ``on_after_batch_transfer``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from lightning_nas.sampling import derive_seed

__all__ = ["ResumableDataLoader", "ResumableSampler"]


class ResumableSampler(DistributedSampler):
    """Shuffled indices, a fresh permutation per pass, that can start a pass part-way through.

    Under a distributed strategy every rank draws the same permutation and takes every ``num_replicas``-th index
    from position ``rank`` (the permutation is first padded by repeating its start to a multiple of
    ``num_replicas``, as ``DistributedSampler`` does), so the ranks' shards are disjoint and cover the data. It is a
    ``DistributedSampler`` so that Lightning keeps it instead of wrapping it, and a resumed DDP run continues
    mid-epoch too.

    Args:
        num_items: dataset size.
        seed: run seed.
        stream: which loader this is (0 weights, 1 architecture), so loaders do not share permutations.
        counter: the number of training batches taken so far in the whole run (on this rank).
        batch_size: batch size of the loader, to turn a batch position into an index position.
        drop_last: whether the loader drops the last partial batch.
        num_replicas: number of ranks.
        rank: this rank.

    Example:
        >>> sampler = ResumableSampler(6, seed=0, stream=0, counter=lambda: 0, batch_size=2, drop_last=True)
        >>> sorted(sampler) == list(range(6))
        True
        >>> shards = [list(ResumableSampler(5, seed=0, stream=0, counter=lambda: 0, batch_size=2, drop_last=True,
        ...                                 num_replicas=2, rank=r)) for r in (0, 1)]
        >>> len(shards[0]), len(shards[1]), sorted(set(shards[0] + shards[1]))
        (3, 3, [0, 1, 2, 3, 4])
    """

    def __init__(
        self,
        num_items: int,
        *,
        seed: int,
        stream: int,
        counter: Callable[[], int],
        batch_size: int,
        drop_last: bool,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        Sampler.__init__(self)  # not DistributedSampler's: it would query the process group
        if not 0 <= rank < num_replicas:
            raise ValueError(f"need 0 <= rank < num_replicas, got {rank=}, {num_replicas=}")
        self.num_items, self.seed, self.stream = num_items, seed, stream
        self.counter, self.batch_size, self.drop_last = counter, batch_size, drop_last
        self.num_replicas, self.rank, self.shuffle = num_replicas, rank, True
        self.num_samples = -(-num_items // num_replicas)  # this rank's share of one pass
        self.total_size = self.num_samples * num_replicas
        self.epoch = 0
        self.cycle = 0
        self.epoch_start = 0
        self._resume_consumed: int | None = None

    def __len__(self) -> int:
        return self.num_samples

    def batches_per_pass(self) -> int:
        full, rest = divmod(self.num_samples, self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of each epoch; a new epoch starts at its first pass."""
        if self._resume_consumed is not None and epoch == self.epoch:
            self.epoch_start = self.counter() - self._resume_consumed
            return
        if epoch != self.epoch:
            self.epoch, self.cycle, self._resume_consumed = epoch, 0, None
        self.epoch_start = self.counter()

    def consumed(self) -> int:
        """Batches training has taken from this loader in the current epoch."""
        return self.counter() - self.epoch_start

    def __iter__(self) -> Iterator[int]:
        start = 0
        if self._resume_consumed is not None:
            self.cycle, offset = divmod(self._resume_consumed, self.batches_per_pass())
            start = offset * self.batch_size
            self._resume_consumed = None
        seed = derive_seed(self.seed, "shuffle", self.stream, self.epoch, self.cycle)
        order = torch.randperm(self.num_items, generator=torch.Generator().manual_seed(seed))
        if self.num_replicas > 1:
            order = torch.cat([order, order[: self.total_size - self.num_items]])[self.rank :: self.num_replicas]
        yield from order[start:].tolist()
        self.cycle += 1  # only a pass that ran to the end counts; discarded iterators do not

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "consumed": self.consumed()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self._resume_consumed = int(state["consumed"])
        self.epoch_start = self.counter() - self._resume_consumed


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` with Lightning's ``state_dict``/``load_state_dict`` protocol for mid-epoch resume.

    The state lives in its :class:`ResumableSampler` (one per rank under a distributed strategy).
    """

    def state_dict(self) -> dict[str, int]:
        return self.sampler.state_dict() if isinstance(self.sampler, ResumableSampler) else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state and isinstance(self.sampler, ResumableSampler):
            self.sampler.load_state_dict(state)
