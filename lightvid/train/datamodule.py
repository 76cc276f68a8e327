"""The LightningDataModule over the data package's datasets (``lightvid.data.build``).

Sampling is reproducible per epoch: the training order and the DataLoader's worker seeds
come from ``(seed, epoch)`` only (:class:`EpochSampler`), and :class:`EpochSeed` reseeds the
global generators (augmentation in the main process, dropout) at each epoch start. So an
epoch that is interrupted and re-run after ``--resume`` sees exactly the same clips, crops
and dropout masks as it would have without the interruption. Under DDP each rank takes a
disjoint, seeded share of the permutation; validation is split without padding, so every
clip is counted once.
"""
from __future__ import annotations

import random

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, Sampler

from lightvid.data.build import build_dataset, collate_skip_bad
from lightvid.data.shards import ShardLoader
from lightvid.train.augment import repeated_order


class EpochSampler(Sampler[int]):
    """A permutation of ``range(n)`` drawn from ``(seed, epoch)``; ``rank``'s share under DDP.

    ``set_epoch`` (Lightning calls it before each epoch) also reseeds ``loader_generator``,
    the DataLoader generator from which worker seeds are drawn. ``repeats > 1`` is repeated
    augmentation: copies of a clip follow each other (``augment.repeated_order``).
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True, rank: int = 0, world_size: int = 1,
                 loader_generator: torch.Generator | None = None, repeats: int = 1):
        self.n, self.seed, self.shuffle, self.repeats = n, seed, shuffle, repeats
        self.rank, self.world_size = rank, world_size
        self.loader_generator = loader_generator
        self.epoch = 0
        # every rank gets the same number of items (Lightning needs equal step counts under DDP)
        self.per_rank = n // world_size if shuffle and world_size > 1 else -(-(n - rank) // world_size)
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if self.loader_generator is not None:
            self.loader_generator.manual_seed(self.seed * 1_000_003 + self.epoch)

    def __iter__(self):
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 7919 + self.epoch)
            order = repeated_order(torch.randperm(self.n, generator=g).tolist(), self.repeats)
        else:
            order = list(range(self.n))
        return iter(order[self.rank::self.world_size][:self.per_rank])

    def __len__(self) -> int:
        return self.per_rank


class EpochSeed(L.Callback):
    """Reseed ``torch``, ``numpy`` and ``random`` from ``(seed, epoch)`` at each training epoch start."""

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        s = (self.seed * 1_000_003 + trainer.current_epoch * 7_919 + trainer.global_rank) % 2**32
        torch.manual_seed(s)
        np.random.seed(s)
        random.seed(s)
        ds = getattr(getattr(trainer, "datamodule", None), "train_dataset", None)
        if isinstance(ds, IterableDataset) and hasattr(ds, "set_epoch"):  # streamed shards: the epoch's shard order
            ds.set_epoch(trainer.current_epoch)


class VideoDataModule(L.LightningDataModule):
    """Training and validation datasets of a ``DataConfig``, normalised with the model's mean/std."""

    def __init__(self, data_cfg, batch_size: int = 16, eval_batch_size: int | None = None, mean=None, std=None,
                 seed: int = 0, deterministic: bool = False, policy=None, repeats: int = 1):
        super().__init__()
        self.cfg = data_cfg
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or 2 * batch_size
        self.mean, self.std = mean, std
        self.seed = seed
        self.deterministic = deterministic
        self.policy = policy  # training augmentation of the uint8 clip (TemporalRandAugment)
        self.repeats = repeats
        self.train_dataset = None
        self.val_dataset = None
        self.loader_generator = torch.Generator()

    @property
    def train_split(self) -> str:
        return getattr(self.cfg, "train_split", "train")

    @property
    def val_split(self) -> str:
        return getattr(self.cfg, "val_split", "val")

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is None and stage in (None, "fit"):
            # the model applies its own input transform (create_model(input_transform=...))
            self.train_dataset = build_dataset(self.cfg, self.train_split, True, self.mean, self.std,
                                               policy=self.policy)
        if self.val_dataset is None:
            self.val_dataset = build_dataset(self.cfg, self.val_split, False, self.mean, self.std)

    @property
    def classes(self) -> list[str]:
        ds = self.train_dataset if self.train_dataset is not None else self.val_dataset
        return list(ds.classes)

    def _rank(self) -> tuple[int, int]:
        t = self._trainer if hasattr(self, "_trainer") else None
        t = t or getattr(self, "trainer", None)
        if t is None:
            return 0, 1
        return int(t.global_rank), int(t.world_size)

    def _workers(self) -> int:
        return int(getattr(self.cfg, "num_workers", 0) or 0)

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank()
        if isinstance(self.train_dataset, IterableDataset):  # streamed shards split themselves over ranks/workers
            ds = self.train_dataset
            ds.seed, ds.loader_workers = self.seed, self._workers()
            t = getattr(self, "trainer", None)
            ds.set_epoch(t.current_epoch if t is not None else 0)  # the first iterator is made before the epoch hook
            return ShardLoader(ds, batch_size=self.batch_size, num_workers=self._workers(), collate_fn=collate_skip_bad,
                               generator=self.loader_generator, pin_memory=torch.cuda.is_available())
        n = len(self.train_dataset)
        sampler = EpochSampler(n, self.seed, True, rank, world, loader_generator=self.loader_generator,
                               repeats=self.repeats)
        workers = self._workers()
        return DataLoader(self.train_dataset, batch_size=self.batch_size, sampler=sampler, num_workers=workers,
                          collate_fn=collate_skip_bad, drop_last=len(sampler) > self.batch_size,
                          generator=self.loader_generator, persistent_workers=False,
                          pin_memory=torch.cuda.is_available())

    def val_dataloader(self) -> DataLoader:
        rank, world = self._rank()
        if isinstance(self.val_dataset, IterableDataset):
            return ShardLoader(self.val_dataset, batch_size=self.eval_batch_size, num_workers=self._workers(),
                               collate_fn=collate_skip_bad, pin_memory=torch.cuda.is_available())
        sampler = EpochSampler(len(self.val_dataset), self.seed, False, rank, world)
        return DataLoader(self.val_dataset, batch_size=self.eval_batch_size, sampler=sampler,
                          num_workers=self._workers(), collate_fn=collate_skip_bad,
                          pin_memory=torch.cuda.is_available())
