"""Streaming tar shards (the WebDataset layout) for multi-node training: ``data.format: shards``.

A split is ``ROOT/<split>/shard-000000.tar ...`` with ``ROOT/<split>/shards.json`` (written by
``lightvid data shard``: the shards, their sample counts, the classes). A sample is
``<key>.mp4`` (the encoded video, decoded from memory) and ``<key>.json`` (``label``, ``index``).

Reading: each loader stream (a DataLoader worker of a DDP rank; rank and world size from
``torch.distributed``, read when the dataset is built and at ``set_epoch``, so loader workers
started with "spawn" know them too; the worker from ``get_worker_info``) reads whole shards sequentially
(tar members in order, the ``webdataset`` tar iterator) through a shuffle buffer of
``data.shuffle_buffer`` samples. The split is shard-level: in each epoch the shard list is
shuffled with ``(seed, epoch)``, identically on every rank, and dealt to the ``world_size *
num_workers`` streams, largest first onto the stream with the fewest samples, so no sample
is read twice and the streams' counts are as even as whole shards allow. ``data.shard_equalize``
chooses what happens to the remaining difference:

* ``pad`` (the default for training): every stream yields as many samples as the fullest
  one, streams with fewer repeat their own first samples. Every sample is seen at least once
  per epoch, and every rank takes the same number of steps (DDP needs equal step counts: a
  rank that runs out first would wait forever in the gradient all-reduce).
* ``drop``: every stream stops at the emptiest one's count (equal steps; a few samples
  are not seen that epoch, different ones each epoch).
* ``none``: each stream yields its shards exactly once (every sample exactly once per
  epoch; unequal step counts, so for single-process training and for evaluation, which is
  always read this way).

Needs at least as many shards as streams for ``pad``/``drop`` (an error says so); with
fewer, write smaller shards (``--shard-size``).
"""
from __future__ import annotations

import json
import random
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from lightvid.data.video import VideoBytes, VideoDecodeError
from lightvid.errors import UserError

MANIFEST = "shards.json"
EQUALIZE = ("pad", "drop", "none")


def read_manifest(root: Path, split: str) -> dict:
    path = root / split / MANIFEST
    if not path.is_file():
        raise UserError(f"{path}: no such shard list (write the shards with `lightvid data shard`)")
    try:
        m = json.loads(path.read_text())
        shards = [(str(s["name"]), int(s["samples"])) for s in m["shards"]]
        classes = [str(c) for c in m["classes"]]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError):
        raise UserError(f"{path}: not a shard list written by `lightvid data shard`") from None
    if not m.get("complete"):
        raise UserError(f"{path}: the shards are incomplete (an interrupted `lightvid data shard`; rerun it)")
    for name, _ in shards:
        if not (root / split / name).is_file():
            raise UserError(f"{path}: listed shard {root / split / name} does not exist")
    return {"shards": shards, "classes": classes, "samples": sum(n for _, n in shards)}


def assign_shards(counts: list[int], streams: int, seed: int, epoch: int, shuffle: bool,
                  equalize: str) -> list[tuple[list[int], int]]:
    """Per stream: ``(shard indices in reading order, samples to yield)``; the same on every rank."""
    order = list(range(len(counts)))
    if shuffle:
        random.Random(seed * 1_000_003 + epoch).shuffle(order)
    pos = {s: k for k, s in enumerate(order)}
    loads, own = [0] * streams, [[] for _ in range(streams)]
    for s in sorted(order, key=lambda s: -counts[s]):  # stable: ties keep the shuffled order
        p = min(range(streams), key=lambda q: (loads[q], q))
        own[p].append(s)
        loads[p] += counts[s]
    for p in own:
        p.sort(key=pos.__getitem__)
    if equalize == "none":
        return [(own[p], loads[p]) for p in range(streams)]
    if len(counts) < streams:
        raise UserError(f"data.shard_equalize={equalize}: {len(counts)} shards for {streams} loader streams "
                        "(ranks x workers); write smaller shards (--shard-size) or use fewer workers")
    target = max(loads) if equalize == "pad" else min(loads)
    return [(own[p], target) for p in range(streams)]


def rank_and_world(default: tuple[int, int] = (0, 1)) -> tuple[int, int]:
    """``(rank, world_size)`` from ``torch.distributed``; ``default`` where it is not initialised (a loader
    worker started with "spawn", which a process started by ``torch.multiprocessing.spawn`` uses)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return default


def require_webdataset():
    try:
        import webdataset
    except ImportError:
        raise UserError("tar shards need the webdataset package: pip install 'lightvid[shards]'") from None
    return webdataset


def iter_shard(path: Path) -> Iterator[dict]:
    """The samples of one tar shard in order: ``{"__key__", "<ext>": bytes, ...}`` (webdataset's tar iterator)."""
    require_webdataset()
    from webdataset.tariterators import group_by_keys, tar_file_iterator

    with open(path, "rb") as fh:
        yield from group_by_keys({**f, "__url__": str(path)} for f in tar_file_iterator(fh))


class ShardLoader(DataLoader):
    """A DataLoader over a :class:`ShardDataset` whose ``len()`` is the exact number of batches
    (each worker makes its own last, partial batch, which the plain DataLoader does not count)."""

    def __len__(self) -> int:
        return self.dataset.num_batches(self.batch_size, self.num_workers, self.drop_last)


class ShardDataset(IterableDataset):
    """Clips streamed from tar shards; items ``(clip, label, video_index)`` as :class:`VideoDataset`'s.

    ``loader_workers`` (the DataLoader's ``num_workers``) only serves ``len()``; the split itself
    reads the actual worker count.
    """

    def __init__(self, root: str | Path, split: str, sampler, transform, train: bool, decoder,
                 eval_clips: int = 1, crops: int = 1, shuffle_buffer: int = 256, equalize: str = "pad",
                 seed: int = 0, loader_workers: int = 0):
        if equalize not in EQUALIZE:
            raise UserError(f"data.shard_equalize: must be one of {', '.join(EQUALIZE)}, got {equalize!r}")
        require_webdataset()
        self.root, self.split = Path(root), split
        m = read_manifest(self.root, split)
        self.shards, self.classes = m["shards"], m["classes"]
        self.num_videos = m["samples"]
        self.sampler, self.transform, self.train, self.decoder = sampler, transform, train, decoder
        self.eval_clips, self.crops = eval_clips, crops
        self.views = 1 if train else eval_clips * crops
        self.shuffle_buffer = shuffle_buffer if train else 0
        self.equalize = equalize if train else "none"
        self.seed, self.epoch, self.loader_workers = seed, 0, loader_workers
        self.rank_world = rank_and_world()  # kept for loader workers that do not share the process group

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.rank_world = rank_and_world(self.rank_world)

    def plan(self, world: int, workers: int) -> list[tuple[list[int], int]]:
        return assign_shards([n for _, n in self.shards], world * max(1, workers), self.seed, self.epoch,
                             self.train, self.equalize)

    def _targets(self, workers: int) -> list[int]:
        """Samples each of this rank's ``workers`` streams yields."""
        rank, world = self.rank_world = rank_and_world(self.rank_world)
        w = max(1, workers)
        return [n for _, n in self.plan(world, w)[rank * w:(rank + 1) * w]]

    def __len__(self) -> int:
        return sum(self._targets(self.loader_workers)) * self.views

    def num_batches(self, batch_size: int, workers: int, drop_last: bool = False) -> int:
        """Batches a DataLoader makes on this rank: each worker batches its own stream."""
        per = [n * self.views for n in self._targets(workers)]
        return sum(n // batch_size if drop_last else -(-n // batch_size) for n in per)

    def _samples(self, shard_ids: list[int], target: int, rng: random.Random) -> Iterator[dict]:
        """``target`` samples from ``shard_ids`` read in order (again from the start when padding)."""
        from webdataset.filters import _shuffle

        n = 0
        while n < target:
            stream = (s for k in shard_ids for s in iter_shard(self.root / self.split / self.shards[k][0]))
            if self.shuffle_buffer > 1:
                stream = _shuffle(stream, bufsize=self.shuffle_buffer, initial=self.shuffle_buffer, rng=rng)
            before = n
            for sample in stream:
                yield sample
                n += 1
                if n == target:
                    return
            if n == before:
                raise UserError(f"{self.root / self.split}: shards {shard_ids} hold no samples")

    def __iter__(self):
        rank, world = rank_and_world(self.rank_world)
        info = get_worker_info()
        wid, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        shard_ids, target = self.plan(world, workers)[rank * workers + wid]
        rng = random.Random((self.seed * 1_000_003 + self.epoch) * 7919 + rank * workers + wid)
        for sample in self._samples(shard_ids, target, rng):
            yield from self._items(sample)

    def _items(self, sample: dict):
        key = sample["__key__"]
        ext = next((k for k in sample if not k.startswith("__") and k != "json"), None)
        try:
            meta = json.loads(sample["json"])
            label, index = int(meta["label"]), int(meta["index"])
        except (KeyError, TypeError, ValueError, json.JSONDecodeError):
            warnings.warn(f"skipping sample {key} of {sample.get('__url__')}: no readable .json label",
                          stacklevel=2)
            yield from [None] * self.views
            return
        source = VideoBytes(f"{sample.get('__url__')}:{key}.{ext}", sample.get(ext, b""))
        try:
            if self.train:
                frames = self.decoder.read_clip(source, lambda i: self.sampler.train_clip(i.frames, i.fps),
                                                self.transform.short_side)
                yield self.transform(frames)[0], label, index
                return
            for c in range(self.eval_clips):
                frames = self.decoder.read_clip(source, lambda i, c=c: self.sampler.eval_clips(
                    i.frames, i.fps, self.eval_clips)[c], self.transform.short_side)
                for crop in self.transform(frames):
                    yield crop, label, index
        except VideoDecodeError as e:
            warnings.warn(f"skipping a video that failed to decode: {e}", stacklevel=2)
            yield from [None] * self.views

    def labels(self) -> list[int]:
        raise TypeError("a streamed shard set has no random access to its labels")
