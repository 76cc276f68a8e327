"""Raw-frame datasets: one folder of JPEG/PNG frames per video (the MMAction2 rawframe layout).

A video's frames are ``<frame_dir>/img_00001.jpg``, ``img_00002.jpg``, ... (MMAction2's
``filename_tmpl='img_{:05}.jpg'``, ``start_index=1``; ``.png`` and ``.jpeg`` work too): frame
``i`` of the clip sampler is file ``i + 1``, so the clips are sampled exactly as from the
videos. Two layouts:

* list file ``ROOT/<split>.txt``, lines ``frame_dir total_frames label`` (MMAction2's
  RawframeDataset; ``frame_dir`` relative to ROOT; ``label`` an integer or a name in
  ``classes.txt``);
* class folders ``ROOT/<split>/<class>/<video>/img_00001.jpg`` (frames counted per folder).

``lightvid data extract-frames SRC DST`` (:func:`lightvid.data.convert.extract_frames`) makes
such a set from videos, with ``rawframes.json`` holding every video's frame rate (so
``data.fps`` works as for videos).
"""
from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import numpy as np
import torch

from lightvid.data.formats import _read_lines, parse_label, read_classes_txt
from lightvid.data.video import VideoDecodeError, VideoInfo, output_size
from lightvid.errors import UserError

FRAME_EXTENSIONS = ("jpg", "png", "jpeg")
STAMP = "rawframes.json"


def frame_name(i: int, ext: str) -> str:
    """File of 0-based frame ``i``: ``img_00001.jpg`` for ``i = 0``."""
    return f"img_{i + 1:05d}.{ext}"


def frame_ext(folder: Path) -> str | None:
    for ext in FRAME_EXTENSIONS:
        if (folder / frame_name(0, ext)).is_file():
            return ext
    return None


def count_frames(folder: Path, ext: str) -> int:
    pat = re.compile(rf"img_\d{{5,}}\.{ext}$")
    return sum(1 for e in os.scandir(folder) if pat.match(e.name))


class RawFrames:
    """The "decoder" of a raw-frame dataset: ``read_clip`` / ``probe`` as for videos.

    ``frames`` and ``fps`` map a frame folder (``str(path)``) to its frame count and rate
    (rate 0 when unknown); a folder missing from ``frames`` is counted on first use.
    """

    name = "rawframes"

    def __init__(self, frames: dict[str, int] | None = None, fps: dict[str, float] | None = None):
        self.frames, self.fps = dict(frames or {}), dict(fps or {})
        self._ext: dict[str, str] = {}

    def _ext_of(self, folder: Path) -> str:
        key = str(folder)
        if key not in self._ext:
            if not folder.is_dir():
                raise VideoDecodeError(f"{folder}: no such frame folder")
            ext = frame_ext(folder)
            if ext is None:
                raise VideoDecodeError(f"{folder}: no img_00001.jpg/.png frame file")
            self._ext[key] = ext
        return self._ext[key]

    def _count(self, folder: Path) -> int:
        key = str(folder)
        if key not in self.frames:
            self.frames[key] = count_frames(folder, self._ext_of(folder))
        return self.frames[key]

    def _load(self, folder: Path, i: int, ext: str) -> np.ndarray:
        import cv2

        f = folder / frame_name(i, ext)
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if img is None:
            raise VideoDecodeError(f"{f}: " + ("missing frame file" if not f.is_file() else "not a readable image"))
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)

    def probe(self, folder) -> VideoInfo:
        folder = Path(folder)
        ext = self._ext_of(folder)
        h, w = self._load(folder, 0, ext).shape[:2]
        return VideoInfo(self._count(folder), self.fps.get(str(folder), 0.0), w, h)

    def read_clip(self, folder, frame_indices, short_side: int | None = None) -> torch.Tensor:
        import cv2

        folder = Path(folder)
        ext = self._ext_of(folder)
        n = self._count(folder)
        info = VideoInfo(n, self.fps.get(str(folder), 0.0), 0, 0)  # the size is known after reading
        indices = [int(i) for i in (frame_indices(info) if callable(frame_indices) else frame_indices)]
        if not indices:
            raise ValueError("read_clip needs at least one frame index")
        bad = [i for i in indices if not 0 <= i < n]
        if bad:
            raise VideoDecodeError(f"{folder}: frame index {bad[0]} outside [0, {n})")
        got = {}
        for i in dict.fromkeys(indices):
            img = self._load(folder, i, ext)
            w, h = output_size(img.shape[1], img.shape[0], short_side)
            if (w, h) != (img.shape[1], img.shape[0]):
                img = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
            got[i] = img
        return torch.from_numpy(np.stack([got[i] for i in indices]))  # (T, H, W, 3)


def _read_stamp(root: Path) -> dict:
    f = root / STAMP
    if not f.is_file():
        return {}
    try:
        return json.loads(f.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{f}: not a JSON file written by `lightvid data extract-frames`") from None


def samples(root: Path, split: str, annotations: Path | None = None,
            on_missing: str = "error") -> tuple[list[tuple[Path, int]], list[str], RawFrames]:
    """``(samples, classes, reader)`` of a raw-frame split: a list file when there is one, else class folders."""
    ann = annotations if annotations and annotations.is_file() else (annotations or root) / f"{split}.txt"
    stamp = _read_stamp(root)
    fps = {str(root / rel): float(v) for rel, v in stamp.get("fps", {}).items()}
    classes = read_classes_txt(root / "classes.txt") if (root / "classes.txt").is_file() else None
    out, frames = [], {}
    if ann.is_file():
        missing = []
        for n, line in _read_lines(ann):
            parts = line.rsplit(maxsplit=2)
            if len(parts) != 3 or not parts[1].isdigit():
                raise UserError(f"{ann}:{n}: expected 'frame_dir total_frames label', got {line!r}")
            rel, total, lab = parts
            label = parse_label(lab, classes, f"{ann}:{n}")
            if int(total) < 1:
                raise UserError(f"{ann}:{n}: total_frames must be at least 1, got {total}")
            folder = root / rel
            if not folder.is_dir():
                if on_missing == "error":
                    raise UserError(f"{ann}:{n}: listed frame folder {folder} does not exist")
                missing.append(folder)
                if on_missing == "skip":
                    continue
            frames[str(folder)] = int(total)
            out.append((folder, label))
        if missing and on_missing == "skip":
            warnings.warn(f"skipping {len(missing)} listed frame folders that do not exist (first: {missing[0]})",
                          stacklevel=2)
        if not out:
            raise UserError(f"{ann}: no samples")
        if classes is None:
            classes = [str(i) for i in range(max(s[1] for s in out) + 1)]
        return out, classes, RawFrames(frames, fps)
    split_dir = root / split
    if not split_dir.is_dir():
        raise UserError(f"{root}: neither a list file {ann.name} nor a split folder {split}/ of frame folders")
    if classes is None:
        classes = sorted(d.name for d in split_dir.iterdir() if d.is_dir())
    for d in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        if d.name not in classes:
            raise UserError(f"{d}: class folder {d.name!r} is not in the class list ({root / 'classes.txt'})")
        for v in sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")):
            ext = frame_ext(v)
            if ext is not None:
                frames[str(v)] = count_frames(v, ext)
                out.append((v, classes.index(d.name)))
    if not out:
        raise UserError(f"{split_dir}: no frame folders (<class>/<video>/img_00001.jpg)")
    return out, classes, RawFrames(frames, fps)


def looks_like_rawframes(root: Path, split: str) -> bool:
    """For ``data.format: auto``: a ``rawframes.json``, a ``<split>.txt`` of ``frame_dir total_frames label``
    lines naming folders, or ``<split>/<class>/<video>/img_00001.*``."""
    if (root / STAMP).is_file():
        return True
    ann = root / f"{split}.txt"
    if ann.is_file():
        try:
            with open(ann, encoding="utf-8-sig") as fh:
                first = next((line.split() for line in fh if line.strip() and not line.startswith("#")), [])
        except (OSError, UnicodeDecodeError):
            return False
        return len(first) == 3 and first[1].isdigit() and (root / first[0]).is_dir()
    split_dir = root / split
    if not split_dir.is_dir():
        return False
    for d in split_dir.iterdir():
        if d.is_dir():
            for v in d.iterdir():  # the first class folder decides
                if v.is_dir() and not v.name.startswith("."):
                    return frame_ext(v) is not None
                if v.is_file() and not v.name.startswith("."):
                    return False
    return False
