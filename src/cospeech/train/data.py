"""Resumable data order: the batch for any step is a pure function of (seed, step, rank).

There is no sampler state to save: after a restart at step ``s`` the loop asks for batches
from ``s * grad_accum`` on and gets exactly what the uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler


class ResumableBatchSampler(Sampler[list[int]]):
    """Batches of ``epoch * N + index`` keys, epoch-shuffled and sharded over ranks.

    Each epoch is a permutation of the N samples drawn from ``seed + epoch``; rank ``r`` of
    ``W`` takes every W-th sample of it, cut into batches (the last partial batch dropped).
    Iteration starts at global batch number ``start_batch`` and never ends.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
    ) -> None:
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.start_batch = start_batch
        self.batches_per_epoch = num_samples // world_size // batch_size
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"{num_samples} samples are too few for batch size {batch_size} x {world_size} "
                "processes"
            )

    def epoch_order(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed + epoch)
        order = torch.randperm(self.num_samples, generator=generator)
        return order[self.rank :: self.world_size].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        batch = self.start_batch
        while True:
            epoch, offset = divmod(batch, self.batches_per_epoch)
            shard = self.epoch_order(epoch)
            for b in range(offset, self.batches_per_epoch):
                chunk = shard[b * self.batch_size : (b + 1) * self.batch_size]
                yield [epoch * self.num_samples + i for i in chunk]
            batch = (epoch + 1) * self.batches_per_epoch

    def __len__(self) -> int:  # infinite; DataLoader only needs it for its own bookkeeping
        return 2**62


class EpochIndexed(Dataset):
    """Maps key ``epoch * N + i`` to ``dataset[i]`` after ``dataset.set_epoch(epoch)``.

    Datasets that draw random windows seed them from (index, epoch), so an item is the same
    whichever worker process or run produces it.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.size = len(dataset)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, key: int) -> Any:
        epoch, index = divmod(int(key), self.size)
        set_epoch = getattr(self.dataset, "set_epoch", None)
        if set_epoch is not None:
            set_epoch(epoch)
        return self.dataset[index]
