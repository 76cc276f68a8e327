"""Videos with per-frame object boxes, as the tracker's training and evaluation read them.

A :class:`Sequence` is the decoded frames (RGB uint8, read once, lazily) and, per track id, a
``(T, 4)`` array of ``[x, y, w, h]`` boxes (NaN rows where the object is absent) with the
fraction of each box that is visible (1 where the annotation does not say).

On disk, :func:`load_sequence` reads one video's COCO-style JSON, the format of the
synthetic-objects generator (docs/regions.md) and of ``lightvid track synth``:

    {"info": {"frames": 48, "width": 320, "height": 240, ...},
     "images": [{"id": 1, "frame_index": 0, "file_name": "000000.png"}, ...],
     "annotations": [{"image_id": 1, "track_id": 3, "bbox": [x, y, w, h], "visibility": 0.8}, ...]}

Frames are the ``images[].file_name`` pictures next to the JSON file or, when the document has
``"video": {"file_name": "clip.mp4"}``, that video's frames. ``visibility`` (the visible
fraction of the object) is optional; a frame without an annotation of a track has no box for it.
A bad file or key is one :class:`UserError` naming it.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lightvid.errors import UserError


class Sequence:
    def __init__(self, name: str, tracks: dict[int, np.ndarray], visible: dict[int, np.ndarray] | None = None,
                 frames: np.ndarray | None = None, video: Path | None = None,
                 frame_files: list[Path] | None = None, num_frames: int | None = None,
                 lookalikes: dict[int, int] | None = None):
        self.name, self.video, self.frame_files = name, video, frame_files
        self.lookalikes = dict(lookalikes or {})  # track id -> the track it is a look-alike (distractor) of
        self._frames = frames
        self.tracks = {int(k): np.asarray(v, dtype=np.float64).reshape(-1, 4) for k, v in tracks.items()}
        n = num_frames if num_frames is not None else (len(frames) if frames is not None else
                                                        max((len(v) for v in self.tracks.values()), default=0))
        self.num_frames = int(n)
        self.visible = {k: np.asarray((visible or {}).get(k, np.ones(n)), dtype=np.float64) for k in self.tracks}

    @property
    def frames(self) -> np.ndarray:
        """``(T, H, W, 3)`` uint8, read on first use."""
        if self._frames is None:
            if self.frame_files is not None:
                import cv2

                frames = []
                for f in self.frame_files:
                    img = cv2.imread(str(f), cv2.IMREAD_COLOR)
                    if img is None:
                        raise UserError(f"{f}: missing or unreadable frame")
                    frames.append(img[..., ::-1])
                self._frames = np.stack(frames)
            else:
                from lightvid.data.video import read_all_frames

                self._frames = read_all_frames(self.video).numpy()
            if len(self._frames) != self.num_frames:
                raise UserError(f"{self.video or self.name}: {len(self._frames)} frames read, the annotation "
                                f"says {self.num_frames}")
        return self._frames

    def frame(self, i: int) -> np.ndarray:
        return self.frames[i]

    def usable(self, track_id: int, min_visible: float = 0.5) -> np.ndarray:
        """``(T,)`` bool: the track has a box there, at least ``min_visible`` of it in view."""
        b = self.tracks[track_id]
        return np.isfinite(b).all(1) & (b[:, 2] > 1) & (b[:, 3] > 1) & (self.visible[track_id] >= min_visible)

    def first_box(self, track_id: int) -> tuple[int, np.ndarray]:
        """The first frame where the track is fully usable and its box (the tracker's start)."""
        ok = np.flatnonzero(self.usable(track_id, 0.99))
        if not len(ok):
            ok = np.flatnonzero(self.usable(track_id, 0.0))
        if not len(ok):
            raise UserError(f"{self.name}: track {track_id} has no box")
        return int(ok[0]), self.tracks[track_id][ok[0]]


def _need(obj: dict, key: str, where: str):
    if not isinstance(obj, dict) or key not in obj:
        raise UserError(f"{where}: missing key {key!r}")
    return obj[key]


def load_sequence(path: str | Path) -> Sequence:
    """One video's COCO-style annotation file -> :class:`Sequence` (frames read on first use)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such annotation file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not JSON ({e})") from None
    images = _need(doc, "images", str(path))
    frame_of, files = {}, {}
    for k, im in enumerate(images):
        where = f"{path}: images[{k}]"
        t = int(_need(im, "frame_index", where))
        frame_of[_need(im, "id", where)] = t
        if "file_name" in im:
            files[t] = path.parent / im["file_name"]
    n = len(images)
    if sorted(frame_of.values()) != list(range(n)):
        raise UserError(f"{path}: images' frame_index values must be 0..{n - 1}, each once")
    video = doc.get("video")
    if video is not None:
        video = path.parent / _need(video, "file_name", f"{path}: video")
    elif len(files) != n:
        raise UserError(f"{path}: images need a file_name each (or a top-level video.file_name)")
    tracks: dict[int, np.ndarray] = {}
    visible: dict[int, np.ndarray] = {}
    for k, ann in enumerate(_need(doc, "annotations", str(path))):
        where = f"{path}: annotations[{k}]"
        image_id = _need(ann, "image_id", where)
        if image_id not in frame_of:
            raise UserError(f"{where}: image_id {image_id!r} is not in images")
        t = frame_of[image_id]
        tid = int(_need(ann, "track_id", where))
        bbox = _need(ann, "bbox", where)
        if not (isinstance(bbox, list) and len(bbox) == 4):
            raise UserError(f"{where}: bbox must be [x, y, w, h], got {bbox!r}")
        if tid not in tracks:
            tracks[tid], visible[tid] = np.full((n, 4), np.nan), np.zeros(n)
        tracks[tid][t] = [float(v) for v in bbox]
        visible[tid][t] = float(ann.get("visibility", 1.0))
    lookalikes = {int(t["track_id"]): int(t["distractor_of"]) for t in doc.get("tracks") or []
                  if isinstance(t, dict) and t.get("distractor_of") is not None and "track_id" in t}
    name = path.parent.name if path.name == "annotations.json" else path.stem
    return Sequence(name, tracks, visible, video=video, lookalikes=lookalikes,
                    frame_files=None if video is not None else [files[t] for t in range(n)], num_frames=n)


def find_sequences(root: str | Path, split: str | None = None) -> list[Path]:
    """The per-video annotation files under ``root`` (``root/split`` when given): every
    ``annotations.json``, or else every ``*.json`` with an ``annotations`` list; sorted."""
    root = Path(root)
    if root.is_file():
        return [root]
    folder = root / split if split else root
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder or annotation file")
    files = sorted(p for p in folder.rglob("annotations.json") if not any(q.startswith(".") for q in p.parts))
    if not files:
        files = []
        for p in sorted(folder.rglob("*.json")):
            try:
                if isinstance(json.loads(p.read_text()).get("annotations"), list):
                    files.append(p)
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
                continue
    if not files:
        raise UserError(f"{folder}: no per-video annotation JSON files found")
    return files
