"""``lightvid features``: pooled embeddings per clip and per video, written in resumable shards.

The embedding is the classifier's input, ``model.forward_head(model.forward_features(x),
pre_logits=True)`` (``num_features`` wide). Each video gives ``clips`` evenly spaced clips
of the model's sampling (the run's ``clip_len``/``stride``/``fps`` for a checkpoint, the
``default_cfg`` input for a model name), centre-cropped; its video embedding is the mean
of its clips' embeddings.

Output folder layout (``fmt`` ``npy`` or ``safetensors``)::

    OUT/shard-00000.clips.npy     (clips, D) float32      | shard-00000.safetensors with
    OUT/shard-00000.videos.npy    (videos, D) float32     | tensors "clips" and "videos"
    OUT/shard-00000.csv           kind,row,path,label,clip,start,end   (written last: marks the shard done)
    OUT/index.csv                 the shards' rows with a shard column, rewritten at the end

Every file is written to a temporary name and renamed. A rerun skips the videos of
finished shards (resumable after a kill) and retries the ones that failed; failures are
one-line warnings, counted, and never stop the run.
"""
from __future__ import annotations

import csv
import io
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lightvid.accel.runtime import InferenceModel
from lightvid.data.video import VideoDecodeError, probe, read_clip
from lightvid.errors import UserError

FORMATS = ("npy", "safetensors")
COLUMNS = ["kind", "row", "path", "label", "clip", "start", "end"]


@dataclass
class FeatureRun:
    videos: int = 0  # written this run
    skipped_done: int = 0  # already in finished shards
    failed: int = 0
    clips: int = 0
    shards: int = 0
    seconds: float = 0.0
    dim: int = 0


def list_videos(data: str, split: str = "val") -> list[tuple[str, str]]:
    """``[(path, label)]`` of a folder (label: the parent folder's name), a list file or a data config."""
    p = Path(data)
    if p.is_dir():
        from lightvid.data.formats import scan_video_files

        files = scan_video_files(p)
        if not files:
            raise UserError(f"{p}: no video files")
        return [(str(f), f.parent.name if f.parent != p else "") for f in files]
    if not p.is_file():
        raise UserError(f"{p}: no such folder, list file or data config")
    if p.suffix in (".yaml", ".yml"):
        import yaml

        from lightvid.data.build import DataConfig, video_samples

        try:
            raw = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise UserError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
        section = raw.get("data", raw) if isinstance(raw, dict) else None
        if not isinstance(section, dict):
            raise UserError(f"{p}: expected a mapping with a 'data' section")
        cfg = DataConfig.from_dict(section, where=f"{p}: data")
        samples, classes = video_samples(cfg, split)
        return [(str(path), classes[label] if 0 <= label < len(classes) else str(label)) for path, label in samples]
    out = []
    for line in p.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(maxsplit=1)  # "relative/path.mp4 label" or just the path
        whole = Path(line) if Path(line).is_absolute() else p.parent / line
        path, label = (line, "") if len(parts) == 1 or whole.is_file() else (parts[0], parts[1])
        full = Path(path) if Path(path).is_absolute() else p.parent / path
        out.append((str(full), label))
    if not out:
        raise UserError(f"{p}: no videos listed")
    return out


def _write_atomic(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp made it 0600: an ordinary file's permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _done_shards(out: Path) -> tuple[set[str], int]:
    """Paths of videos in finished shards, and the next shard number."""
    done, last = set(), -1
    for f in sorted(out.glob("shard-*.csv")):
        try:
            last = max(last, int(f.stem.split("-")[1]))
        except (IndexError, ValueError):
            continue
        with open(f, newline="") as fh:
            done.update(r["path"] for r in csv.DictReader(fh) if r.get("kind") == "video")
    return done, last + 1


def _save_shard(out: Path, number: int, fmt: str, clips: np.ndarray, videos: np.ndarray, rows: list[list]) -> None:
    name = f"shard-{number:05d}"
    if fmt == "npy":
        for kind, arr in (("clips", clips), ("videos", videos)):
            def save(tmp, arr=arr):
                with open(tmp, "wb") as f:
                    np.save(f, arr)

            _write_atomic(out / f"{name}.{kind}.npy", save)
    else:
        from safetensors.numpy import save_file

        _write_atomic(out / f"{name}.safetensors", lambda tmp: save_file({"clips": clips, "videos": videos}, tmp))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    w.writerows(rows)
    _write_atomic(out / f"{name}.csv", lambda tmp: Path(tmp).write_text(buf.getvalue()))


def write_index(out: Path) -> Path:
    """``OUT/index.csv``: every finished shard's rows, with the shard's name first."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["shard"] + COLUMNS)
    for f in sorted(out.glob("shard-*.csv")):
        with open(f, newline="") as fh:
            for r in csv.DictReader(fh):
                w.writerow([f.stem] + [r[c] for c in COLUMNS])
    path = out / "index.csv"
    _write_atomic(path, lambda tmp: Path(tmp).write_text(buf.getvalue()))
    return path


def extract_features(im: InferenceModel, videos: list[tuple[str, str]], out: str | os.PathLike, clips: int = 1,
                     batch: int = 8, shard_size: int = 64, fmt: str = "npy", progress: bool = True) -> FeatureRun:
    """Embed ``videos`` into shards under ``out`` (see the module docstring); returns the counts."""
    from tqdm import tqdm

    if fmt not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if clips < 1 or batch < 1 or shard_size < 1:
        raise UserError("--clips, --batch and --shard-size must be >= 1")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    done, number = _done_shards(out)
    todo = [(p, lab) for p, lab in videos if p not in done]
    run = FeatureRun(skipped_done=len(videos) - len(todo))
    t0 = time.perf_counter()
    sampler = im.sampler
    bar = tqdm(total=len(todo), desc="features", unit="video", disable=not progress)
    for s in range(0, len(todo), shard_size):
        part = todo[s: s + shard_size]
        clip_feats, video_feats, rows = [], [], []
        pending: list[torch.Tensor] = []  # clips waiting for a batch
        owners: list[int] = []  # index in `part` of each pending clip
        per_video: dict[int, list[np.ndarray]] = {}
        clip_rows: dict[int, list[list]] = {}

        def run_batch(pending=pending, owners=owners, per_video=per_video):
            if pending:
                f = im.embed(torch.stack(pending)).numpy()  # (B, D)
                for v, vec in zip(owners, f):
                    per_video.setdefault(v, []).append(vec)
                pending.clear()
                owners.clear()

        for v, (path, label) in enumerate(part):
            try:
                info = probe(path)
                fps = info.fps or 25.0
                for c, idx in enumerate(sampler.eval_clips(info.frames, fps, clips)):
                    pending.append(im.prepare(read_clip(path, idx, im.cfg.short_side)))
                    owners.append(v)
                    clip_rows.setdefault(v, []).append([path, label, c, round(min(idx) / fps, 4),
                                                        round((max(idx) + 1) / fps, 4)])
                    if len(pending) >= batch:
                        run_batch()
            except (VideoDecodeError, OSError, ValueError) as e:
                run.failed += 1
                pending[:] = [x for x, o in zip(pending, owners) if o != v]
                owners[:] = [o for o in owners if o != v]
                clip_rows.pop(v, None)
                per_video.pop(v, None)
                print(f"warning: skipped {str(e).splitlines()[0] if str(e) else path}", file=sys.stderr)
            bar.update()
        run_batch()
        for v in sorted(per_video):
            vecs = per_video[v]  # the video's clips, in order
            for r, vec in zip(clip_rows[v], vecs):
                rows.append(["clip", len(clip_feats)] + r)
                clip_feats.append(vec)
            path, label = part[v]
            rows.append(["video", len(video_feats), path, label, "", clip_rows[v][0][3], clip_rows[v][-1][4]])
            video_feats.append(np.mean(vecs, 0))
        if video_feats:
            dim = len(video_feats[0])
            _save_shard(out, number, fmt, np.stack(clip_feats).astype(np.float32),
                        np.stack(video_feats).astype(np.float32), rows)
            number += 1
            run.shards += 1
            run.videos += len(video_feats)
            run.clips += len(clip_feats)
            run.dim = dim
    bar.close()
    write_index(out)
    run.seconds = time.perf_counter() - t0
    return run


def load_features(out: str | os.PathLike, kind: str = "videos") -> tuple[np.ndarray, list[dict]]:
    """All finished shards' ``clips`` or ``videos`` embeddings ``(N, D)`` and their index rows, in order."""
    out = Path(out)
    arrays, rows = [], []
    for f in sorted(out.glob("shard-*.csv")):
        name = f.stem
        if (out / f"{name}.safetensors").is_file():
            from safetensors.numpy import load_file

            arrays.append(load_file(str(out / f"{name}.safetensors"))[kind])
        else:
            arrays.append(np.load(out / f"{name}.{kind}.npy"))
        with open(f, newline="") as fh:
            rows += [r for r in csv.DictReader(fh) if r["kind"] == kind[:-1]]
    if not arrays:
        raise UserError(f"{out}: no finished feature shards")
    return np.concatenate(arrays), rows
