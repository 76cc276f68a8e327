"""``DataConfig`` (every data key) and ``build_dataset``, the one entry point training uses.

Items are ``(clip, label, video_index)``: ``clip`` float32 ``(C, T, H, W)`` for videos and
``(C, H, W)`` for images. In evaluation a video yields ``eval_clips * crops`` items that
share its ``video_index`` (the evaluator averages their softmax per video). A file that
fails to decode makes ``__getitem__`` return ``None`` with a warning naming it;
``collate_skip_bad`` drops those and counts them.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch.utils.data import Dataset

from lightvid.data import formats, rawframes
from lightvid.data.decoders import DECODERS, PyAVDecoder, get_decoder
from lightvid.data.sampling import LOOPS, SAMPLINGS, ClipSampler
from lightvid.data.transforms import ClipTransform
from lightvid.data.video import VideoDecodeError
from lightvid.errors import UserError

VIDEO_FORMATS = ("folders", "list", "ucf101", "hmdb51", "kinetics_csv", "synth", "rawframes", "shards")
IMAGE_FORMATS = ("image_folder", "image_zip", "cifar10", "digits")
FORMATS = ("auto",) + VIDEO_FORMATS + IMAGE_FORMATS


@dataclass
class DataConfig:
    """Every data key (batch size and the like belong to the trainer)."""

    root: str = "data/synth"  # dataset folder (a .zip for image_zip; unused for digits)
    format: str = "auto"  # one of FORMATS; "auto" guesses from the files
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "val"
    fold: int = 1  # UCF101 / HMDB51 official split 1, 2 or 3
    annotations: str | None = None  # folder/file of annotation files when not in root
    on_missing: str = "error"  # listed video absent: "error" or "skip" (warned, counted)
    clip_len: int = 16  # frames per clip
    stride: int = 1  # frame interval (at `fps` when set)
    fps: float | None = None  # target frame rate; None keeps the video's
    sampling: str = "clip"  # "clip" (random / K uniform clips) or "tsn" (one frame per segment)
    eval_clips: int = 1  # K clips per video in evaluation
    crops: int = 1  # 1 (centre) or 3 (three-crop) in evaluation
    size: int = 112  # crop side
    short_side: int | None = 128  # resize the short side first (None: keep)
    pad: int = 0  # zero padding before a training random crop (CIFAR-style)
    hflip: bool | None = None  # training flips; None = on, except synth (flips reverse motion)
    loop: str = "loop"  # short videos: "loop" or "repeat_last"
    num_workers: int = 2
    max_bad_fraction: float = 0.05  # the trainer stops when more of an epoch fails to decode
    cache: bool | None = None  # decode every video once into memory (None: on for the synthetic set)
    cache_mb: int = 2048  # the most memory `cache` may take; a larger dataset streams from disk
    synth: dict = field(default_factory=dict)  # ensure_synth parameters for format "synth"
    decoder: str = "pyav"  # video decoder: "pyav", "decord" or "torchcodec" (see lightvid.data.decoders)
    shuffle_buffer: int = 256  # format "shards": samples held for shuffling in each loader stream
    shard_equalize: str = "pad"  # format "shards", training: "pad", "drop" or "none" (see lightvid.data.shards)

    def validate(self) -> "DataConfig":
        def bad(key, why):
            raise UserError(f"data.{key}: {why}")

        if self.format not in FORMATS:
            bad("format", f"{self.format!r} is not one of {', '.join(FORMATS)}")
        if self.format != "digits" and not self.root:
            bad("root", "is empty")
        for key in ("clip_len", "stride", "eval_clips", "size"):
            v = getattr(self, key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                bad(key, f"must be a positive integer, got {v!r}")
        if self.fps is not None and (not isinstance(self.fps, (int, float)) or self.fps <= 0):
            bad("fps", f"must be a positive number or null, got {self.fps!r}")
        if self.short_side is not None and (not isinstance(self.short_side, int) or self.short_side < self.size):
            bad("short_side", f"must be null or an integer >= size ({self.size}), got {self.short_side!r}")
        if self.crops not in (1, 3):
            bad("crops", f"must be 1 or 3, got {self.crops!r}")
        if self.sampling not in SAMPLINGS:
            bad("sampling", f"must be one of {', '.join(SAMPLINGS)}, got {self.sampling!r}")
        if self.loop not in LOOPS:
            bad("loop", f"must be one of {', '.join(LOOPS)}, got {self.loop!r}")
        if self.on_missing not in ("error", "skip"):
            bad("on_missing", f"must be 'error' or 'skip', got {self.on_missing!r}")
        if self.fold not in (1, 2, 3):
            bad("fold", f"must be 1, 2 or 3, got {self.fold!r}")
        if not isinstance(self.num_workers, int) or self.num_workers < 0:
            bad("num_workers", f"must be an integer >= 0, got {self.num_workers!r}")
        if not isinstance(self.pad, int) or self.pad < 0:
            bad("pad", f"must be an integer >= 0, got {self.pad!r}")
        if not 0 <= self.max_bad_fraction <= 1:
            bad("max_bad_fraction", f"must be in [0, 1], got {self.max_bad_fraction!r}")
        if self.cache not in (None, True, False):
            bad("cache", f"must be true, false or null, got {self.cache!r}")
        if not isinstance(self.cache_mb, int) or self.cache_mb < 0:
            bad("cache_mb", f"must be an integer >= 0, got {self.cache_mb!r}")
        if self.hflip not in (None, True, False):
            bad("hflip", f"must be true, false or null, got {self.hflip!r}")
        if self.decoder not in DECODERS:
            bad("decoder", f"must be one of {', '.join(DECODERS)}, got {self.decoder!r}")
        if not isinstance(self.shuffle_buffer, int) or isinstance(self.shuffle_buffer, bool) or self.shuffle_buffer < 0:
            bad("shuffle_buffer", f"must be an integer >= 0, got {self.shuffle_buffer!r}")
        if self.shard_equalize not in ("pad", "drop", "none"):
            bad("shard_equalize", f"must be 'pad', 'drop' or 'none', got {self.shard_equalize!r}")
        if not isinstance(self.synth, dict):
            bad("synth", f"must be a mapping of synth parameters, got {self.synth!r}")
        return self

    @classmethod
    def from_dict(cls, d: dict, where: str = "data") -> "DataConfig":
        """From a mapping (a YAML ``data:`` section); unknown keys are a one-line error."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            import difflib

            close = difflib.get_close_matches(unknown[0], names, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise UserError(f"{where}.{unknown[0]}: unknown data key{hint}")
        return cls(**d).validate()

    def is_video(self) -> bool:
        return self.resolved_format() in VIDEO_FORMATS

    def resolved_format(self, split: str | None = None) -> str:
        if self.format != "auto":
            return self.format
        if self.root == "digits":
            return "digits"
        root = Path(self.root)
        if (root / "shards.json").is_file():
            return "shards"
        if root.is_dir() and rawframes.looks_like_rawframes(root, split or self.train_split):
            return "rawframes"
        return formats.detect(Path(self.root), split or self.train_split)


def video_samples(cfg: DataConfig, split: str) -> tuple[formats.Samples, list[str]]:
    """``([(path, label)], classes)`` of a video split, generating the synthetic set if asked."""
    fmt = cfg.resolved_format(split)
    root = Path(cfg.root)
    ann = Path(cfg.annotations) if cfg.annotations else None
    if fmt == "synth":
        from lightvid.data.synth import ensure_synth, read_stamp

        # no `synth:` parameters and a finished set already there: use it as it is (the
        # defaults must not regenerate a set that was made with other parameters)
        if cfg.synth or read_stamp(root) is None:
            ensure_synth(root, **cfg.synth)
        fmt = "list"
    if fmt == "folders":
        return formats.folders(root, split)
    if fmt == "list":
        return formats.list_file(root, split, ann, cfg.on_missing)
    if fmt == "ucf101":
        return formats.ucf101(root, split, cfg.fold, ann, cfg.on_missing, cfg.train_split)
    if fmt == "hmdb51":
        return formats.hmdb51(root, split, cfg.fold, ann, cfg.on_missing, cfg.train_split)
    if fmt == "kinetics_csv":
        return formats.kinetics_csv(root, split, ann, cfg.on_missing, cfg.train_split)
    if fmt == "rawframes":
        return rawframes.samples(root, split, ann, cfg.on_missing)[:2]
    raise UserError(f"data.format: {fmt!r} is not a video format")


class VideoDataset(Dataset):
    """Clips of videos; see the module docstring for items and evaluation expansion."""

    def __init__(self, samples: formats.Samples, classes: list[str], sampler: ClipSampler,
                 transform: ClipTransform, train: bool, eval_clips: int = 1, crops: int = 1, decoder=None):
        self.samples, self.classes = samples, classes
        self.decoder = decoder or PyAVDecoder()  # read_clip/probe: a video decoder or raw-frame folders
        self.sampler, self.transform, self.train = sampler, transform, train
        self.views = 1 if train else eval_clips * crops
        self.eval_clips, self.crops = eval_clips, crops
        self.num_videos = len(samples)
        self._last = None  # (video, clip) -> crops, so three crops decode once
        self._cache = None  # per video: ((N, H, W, 3) uint8 frames at short_side, fps) or None

    def preload(self, max_mb: int) -> bool:
        """Decode every video once into memory (DataLoader workers share it after fork).

        Skipped (``False``) when the first video suggests more than ``max_mb`` in all. A video
        that fails to decode stays ``None`` and is skipped, with its warning, when sampled.
        """
        from tqdm import tqdm

        from lightvid.data.video import read_all_frames

        if not self.samples:
            return False
        def read_all(path):
            if isinstance(self.decoder, PyAVDecoder):
                return read_all_frames(path, self.transform.short_side)
            return self.decoder.read_clip(path, lambda info: range(info.frames), self.transform.short_side)

        try:
            first = read_all(self.samples[0][0])
        except VideoDecodeError:
            return False
        if first.numel() * len(self.samples) > max_mb * 2**20:
            return False
        cache = []
        for path, _ in tqdm(self.samples, desc="decoding into memory", unit="video", leave=False):
            try:
                cache.append((read_all(path), self.decoder.probe(path).fps))
            except VideoDecodeError:
                cache.append(None)
        self._cache = cache
        return True

    def _frames(self, v: int, path, pick) -> torch.Tensor:
        if self._cache is None:  # one open per sample: the sampler gets the frame count from read_clip
            return self.decoder.read_clip(path, lambda info: pick(info.frames, info.fps), self.transform.short_side)
        entry = self._cache[v]
        if entry is None:
            self.decoder.read_clip(path, [0])  # raises the decode error that names the file
        frames, fps = entry
        return frames[pick(len(frames), fps)]

    def __len__(self) -> int:
        return self.num_videos * self.views

    def labels(self) -> list[int]:
        return [label for _, label in self.samples for _ in range(self.views)]

    def __getitem__(self, i: int):
        v, view = divmod(i, self.views)
        path, label = self.samples[v]
        clip_i, crop_i = divmod(view, self.crops)
        try:
            if self.train:
                frames = self._frames(v, path, self.sampler.train_clip)
                return self.transform(frames)[0], label, v
            if self._last is None or self._last[0] != (v, clip_i):
                frames = self._frames(v, path, lambda n, fps: self.sampler.eval_clips(n, fps, self.eval_clips)[clip_i])
                self._last = ((v, clip_i), self.transform(frames))
            return self._last[1][crop_i], label, v
        except VideoDecodeError as e:
            warnings.warn(f"skipping a video that failed to decode: {e}", stacklevel=2)
            return None


class ImageDataset(Dataset):
    """Images as ``(C, H, W)`` items; evaluation with ``crops=3`` yields three per image."""

    def __init__(self, source, transform: ClipTransform, train: bool, crops: int = 1):
        self.source, self.transform, self.train = source, transform, train
        self.classes = source.classes
        self.views = 1 if train else crops
        self.num_videos = len(source)

    def __len__(self) -> int:
        return len(self.source) * self.views

    def labels(self) -> list[int]:
        return [label for label in self.source.labels for _ in range(self.views)]

    def __getitem__(self, i: int):
        v, view = divmod(i, self.views)
        try:
            img = self.source.load(v)  # (H, W, 3)
        except UserError as e:
            warnings.warn(f"skipping an image that failed to decode: {e}", stacklevel=2)
            return None
        return self.transform(img[None])[view][:, 0], self.source.labels[v], v  # (C, H, W)


def image_source(cfg: DataConfig, split: str):
    from lightvid.data import images

    fmt = cfg.resolved_format(split)
    root = Path(cfg.root)
    if fmt == "image_folder":
        return images.FolderImages(root, split)
    if fmt == "image_zip":
        return images.ZipImages(root, split, cfg.train_split)
    if fmt == "cifar10":
        return images.cifar10(root, split, cfg.train_split)
    if fmt == "digits":
        return images.digits(split, cfg.train_split)
    raise UserError(f"data.format: {fmt!r} is not an image format")


def build_dataset(cfg: DataConfig, split: str, train: bool, mean: Sequence[float], std: Sequence[float],
                  input_transform: Callable | None = None, policy: Callable | None = None) -> Dataset:
    """The dataset of ``split`` (a name like ``cfg.train_split``), with training or evaluation transforms;
    ``policy`` is an extra training augmentation of the cropped uint8 clip (see ``ClipTransform``)."""
    cfg.validate()
    fmt = cfg.resolved_format(split)
    flip = cfg.hflip if cfg.hflip is not None else fmt != "synth" and not _is_synth_root(cfg.root)
    transform = ClipTransform(size=cfg.size, short_side=cfg.short_side, train=train, mean=mean, std=std,
                              flip=flip, crops=cfg.crops, pad=cfg.pad, input_transform=input_transform,
                              policy=policy if train else None)
    if fmt in IMAGE_FORMATS:
        return ImageDataset(image_source(cfg, split), transform, train, cfg.crops)
    sampler = ClipSampler(cfg.clip_len, cfg.stride, cfg.fps, cfg.sampling, cfg.loop)
    if fmt == "shards":
        from lightvid.data.shards import ShardDataset

        return ShardDataset(cfg.root, split, sampler, transform, train, get_decoder(cfg.decoder), cfg.eval_clips,
                            cfg.crops, cfg.shuffle_buffer, cfg.shard_equalize, loader_workers=cfg.num_workers)
    if fmt == "rawframes":
        if cfg.decoder != "pyav":
            raise UserError(f"data.decoder: {cfg.decoder} decodes videos; raw frames are read as images (leave pyav)")
        ann = Path(cfg.annotations) if cfg.annotations else None
        samples, classes, decoder = rawframes.samples(Path(cfg.root), split, ann, cfg.on_missing)
        if cfg.fps and any(decoder.fps.get(str(p), 0) <= 0 for p, _ in samples):
            raise UserError(f"data.fps: the frame rate of the frame folders of {cfg.root} is unknown (no "
                            f"{rawframes.STAMP} from `lightvid data extract-frames`); set data.fps to null")
    else:
        samples, classes = video_samples(cfg, split)
        decoder = get_decoder(cfg.decoder)
    ds = VideoDataset(samples, classes, sampler, transform, train, cfg.eval_clips, cfg.crops, decoder)
    synth = fmt == "synth" or _is_synth_root(cfg.root)
    if cfg.cache or (cfg.cache is None and synth):
        ds.preload(cfg.cache_mb)
    return ds


def _is_synth_root(root: str) -> bool:
    return bool(root) and (Path(root) / "synth.json").is_file()


def collate_skip_bad(batch: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int] | None:
    """Stack the good items; returns ``(clips, labels, video_indices, num_bad)``.

    A batch in which every item failed gives empty tensors and ``num_bad = len(batch)``.
    """
    good = [b for b in batch if b is not None]
    bad = len(batch) - len(good)
    if not good:
        return torch.empty(0), torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long), bad
    clips = torch.stack([b[0] for b in good])
    labels = torch.tensor([b[1] for b in good], dtype=torch.long)
    vids = torch.tensor([b[2] for b in good], dtype=torch.long)
    return clips, labels, vids, bad
