"""``lightvid data check``: scan a dataset and list every bad file with its reason.

A dataset in a known format is parsed split by split (a malformed annotation line or an
unknown label is reported with file and line); every listed video is then opened, indexed
and its first and last frames decoded (``full=True`` decodes every frame), which finds
missing, empty, truncated and non-video files. A folder in no known format is scanned for
video files. Images are decoded one by one.
"""
from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

from lightvid.data import formats
from lightvid.errors import UserError


def check_video(path: str | Path, full: bool = False) -> str | None:
    """``None`` when ``path`` decodes, else the reason (one line)."""
    from lightvid.data.video import VideoDecodeError, probe, read_all_frames, read_clip

    try:
        info = probe(path)
        if full:
            n = len(read_all_frames(path))
            if n < info.frames:
                return f"{path}: truncated, {n} of {info.frames} frames decode"
        else:
            read_clip(path, [0, info.frames - 1])
    except VideoDecodeError as e:
        return str(e)
    except Exception as e:  # noqa: BLE001 - any decoder failure is a bad file
        return f"{path}: {type(e).__name__}: {e}"
    return None


def _check_job(job):
    return job[0], check_video(job[0], job[1])


def check_dataset(root: str | Path, fmt: str = "auto", splits: list[str] | None = None, full: bool = False,
                  workers: int = 2, progress: bool = True, **cfg_kwargs) -> tuple[int, list[str]]:
    """``(files checked, ["path: reason", ...])`` for every bad file or annotation line."""
    from tqdm import tqdm

    from lightvid.data.build import IMAGE_FORMATS, DataConfig, image_source, video_samples

    root = Path(root)
    if not root.exists() and str(root) != "digits":
        raise UserError(f"{root}: no such dataset")
    cfg = DataConfig(root=str(root), format=fmt, **cfg_kwargs)
    bad: list[str] = []
    try:
        resolved = cfg.resolved_format(splits[0] if splits else cfg.train_split)
    except UserError:
        resolved = None
    if resolved is None:  # a bare folder: every video file in it
        paths = formats.scan_video_files(root)
        if not paths:
            raise UserError(f"{root}: no dataset format recognised and no video files inside")
    elif resolved in ("rawframes", "shards"):
        return _check_streams(root, resolved, splits or list(dict.fromkeys([cfg.train_split, cfg.val_split])), full,
                              progress, cfg)
    elif resolved in IMAGE_FORMATS:
        checked = 0
        for split in splits or [cfg.train_split, cfg.val_split]:
            try:
                src = image_source(cfg, split)
            except UserError as e:
                bad.append(str(e))
                continue
            for i in tqdm(range(len(src)), desc=f"check {split}", unit="img", disable=not progress):
                checked += 1
                try:
                    src.load(i)
                except UserError as e:
                    bad.append(str(e))
        return checked, bad
    else:
        paths = []
        for split in dict.fromkeys(splits or [cfg.train_split, cfg.val_split, cfg.test_split]):
            if resolved in ("folders", "synth", "list") and not _split_exists(root, split, resolved):
                if splits:
                    bad.append(f"{root}: split {split!r} not found")
                continue
            try:
                samples, _ = video_samples(DataConfig(root=str(root), format=resolved, on_missing="keep",
                                                      **cfg_kwargs), split)
            except UserError as e:
                bad.append(str(e))
                continue
            paths += [p for p, _ in samples]
        paths = sorted(set(paths))
    jobs = [(str(p), full) for p in paths]
    bar = tqdm(total=len(jobs), desc=f"check {root.name}", unit="video", disable=not progress)
    if workers > 1 and len(jobs) > 8:
        with mp.get_context("fork").Pool(workers) as pool:
            for _, reason in pool.imap(_check_job, jobs, chunksize=4):
                bar.update()
                if reason:
                    bad.append(reason)
    else:
        for job in jobs:
            reason = _check_job(job)[1]
            bar.update()
            if reason:
                bad.append(reason)
    bar.close()
    return len(jobs), bad


def _check_streams(root: Path, fmt: str, splits: list[str], full: bool, progress: bool, cfg) -> tuple[int, list[str]]:
    """Raw-frame folders (every frame file present, first and last readable) or tar shards (every
    sample's label readable, its video decodable); ``full`` reads every frame."""
    from tqdm import tqdm

    from lightvid.data import rawframes, shards
    from lightvid.data.video import VideoBytes, VideoDecodeError, probe, read_clip

    checked, bad = 0, []
    for split in splits:
        try:
            if fmt == "rawframes":
                samples, _, reader = rawframes.samples(root, split, Path(cfg.annotations) if cfg.annotations else None,
                                                       "keep")
                items = [(folder, None) for folder, _ in samples]
            else:
                m = shards.read_manifest(root, split)
                items = [(root / split / name, n) for name, n in m["shards"]]
        except UserError as e:
            bad.append(str(e))
            continue
        for path, n in tqdm(items, desc=f"check {split}", unit="video" if fmt == "rawframes" else "shard",
                            disable=not progress):
            try:
                if fmt == "rawframes":
                    checked += 1
                    info = reader.probe(path)
                    missing = [i for i in range(info.frames)
                               if not (path / rawframes.frame_name(i, reader._ext_of(path))).is_file()]
                    if missing:
                        raise VideoDecodeError(f"{path / rawframes.frame_name(missing[0], reader._ext_of(path))}: "
                                               f"missing frame file ({len(missing)} of {info.frames} missing)")
                    reader.read_clip(path, range(info.frames) if full else [0, info.frames - 1])
                    continue
                count = 0
                for sample in shards.iter_shard(path):
                    checked += 1
                    count += 1
                    key = f"{path}:{sample['__key__']}"
                    try:
                        meta = json.loads(sample["json"])
                        int(meta["label"]), int(meta["index"])
                    except (KeyError, TypeError, ValueError):
                        bad.append(f"{key}: no readable .json label")
                        continue
                    ext = next((k for k in sample if not k.startswith("__") and k != "json"), None)
                    try:
                        src = VideoBytes(f"{key}.{ext}", sample.get(ext, b""))
                        frames = probe(src).frames
                        read_clip(src, range(frames) if full else [0, frames - 1])
                    except VideoDecodeError as e:
                        bad.append(str(e))
                if count != n:
                    bad.append(f"{path}: {count} samples, shards.json lists {n}")
            except (VideoDecodeError, OSError) as e:
                bad.append(str(e) if isinstance(e, VideoDecodeError) else f"{path}: {e}")
            except Exception as e:  # noqa: BLE001 - a tar reader error is a bad shard
                bad.append(f"{path}: {type(e).__name__}: {e}")
    return checked, bad


def _split_exists(root: Path, split: str, fmt: str) -> bool:
    return (root / split).is_dir() if fmt == "folders" else (root / f"{split}.txt").is_file()
