"""Class-folder datasets for the classic baselines: images or videos, read as grayscale.

Layout: ``DIR/train/<class>/*`` and ``DIR/test/<class>/*`` (``val`` is accepted in place of
``test``). A folder holds images (``.jpg``, ``.png``, ...) or videos (``.mp4``, ``.avi``, ...);
which one is decided by the files found. Classes are the training split's folder names,
sorted; a test class absent from training is an error naming the folder.

Videos are read through :mod:`lightvid.data.video` (``probe`` and ``read_clip``), ``frames``
of them sampled uniformly over the whole video (frame ``i`` of ``F`` is the middle of the
``i``-th of ``F`` equal segments). A file that cannot be read is skipped with a warning and
counted (``bad``).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lightvid.data.formats import IMAGE_EXTENSIONS
from lightvid.data.video import VIDEO_EXTENSIONS
from lightvid.errors import UserError

TEST_SPLITS = ("test", "val")


@dataclass
class Split:
    """One split: file paths, integer labels and the shared class names."""

    name: str
    paths: list[Path]
    labels: np.ndarray
    classes: list[str]
    kind: str  # "image" or "video"


@dataclass
class FolderData:
    root: Path
    train: Split
    test: Split
    kind: str
    classes: list[str] = field(default_factory=list)


def _files(folder: Path) -> list[Path]:
    exts = IMAGE_EXTENSIONS + VIDEO_EXTENSIONS
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in exts)


def _scan(root: Path, split: str, classes: list[str] | None) -> tuple[list[Path], list[int], list[str]]:
    folder = root / split
    class_dirs = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise UserError(f"{folder}: no class folders (expected {folder}/<class>/<files>)")
    names = [d.name for d in class_dirs] if classes is None else classes
    paths, labels = [], []
    for d in class_dirs:
        if d.name not in names:
            raise UserError(f"{d}: class {d.name!r} is not among the training classes")
        for f in _files(d):
            paths.append(f)
            labels.append(names.index(d.name))
    if not paths:
        raise UserError(f"{folder}: no image or video files under its class folders")
    return paths, labels, names


def find_data(root: str | Path) -> FolderData:
    """Scan ``root`` (train + test/val class folders); raises :class:`UserError` on a bad layout."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"--data {root}: no such folder")
    if not (root / "train").is_dir():
        raise UserError(f"--data {root}: no train/ folder (expected {root}/train/<class>/ and {root}/test/<class>/)")
    test_name = next((s for s in TEST_SPLITS if (root / s).is_dir()), None)
    if test_name is None:
        raise UserError(f"--data {root}: no test/ or val/ folder beside train/")
    tr_paths, tr_labels, classes = _scan(root, "train", None)
    te_paths, te_labels, _ = _scan(root, test_name, classes)
    kinds = {("video" if p.suffix.lower() in VIDEO_EXTENSIONS else "image") for p in tr_paths + te_paths}
    if len(kinds) > 1:
        raise UserError(f"--data {root}: mixes images and videos; keep one kind per dataset")
    kind = kinds.pop()
    return FolderData(root, Split("train", tr_paths, np.array(tr_labels), classes, kind),
                      Split(test_name, te_paths, np.array(te_labels), classes, kind), kind, classes)


def read_gray_image(path: Path) -> np.ndarray | None:
    """An image as a 2D uint8 array, or ``None`` (with a warning) when it cannot be decoded."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        warnings.warn(f"{path}: cannot decode this image, skipped", stacklevel=2)
    return img


def frame_indices(num_frames: int, count: int) -> list[int]:
    """``count`` frame indices spread uniformly over ``num_frames`` (segment midpoints)."""
    if num_frames < 1:
        return []
    return [min(num_frames - 1, int((i + 0.5) * num_frames / count)) for i in range(count)]


def _probe_frames(info) -> int:
    if isinstance(info, dict):
        return int(info["frames"])
    frames = getattr(info, "frames", None)
    return int(frames if frames is not None else info[0])


def read_gray_frames(path: Path, count: int) -> np.ndarray | None:
    """``count`` frames of a video as ``(count, H, W)`` uint8 grayscale, or ``None`` if unreadable."""
    import cv2

    try:
        from lightvid.data.video import probe, read_clip
    except ImportError as e:  # the data package is built in parallel; say so plainly
        raise UserError(f"video baselines need lightvid.data.video ({e})") from None
    try:
        n = _probe_frames(probe(path))
        idx = frame_indices(n, count)
        if not idx:
            raise ValueError("no frames")
        clip = read_clip(path, idx)  # (T, H, W, 3) uint8
        clip = np.asarray(clip.numpy() if hasattr(clip, "numpy") else clip)
    except Exception as e:  # VideoDecodeError and anything a broken container raises
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        warnings.warn(f"{path}: cannot decode this video ({why}), skipped",
                      stacklevel=2)
        return None
    return np.stack([cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in clip])  # (T, H, W)


def read_item(path: Path, kind: str, frames: int) -> np.ndarray | None:
    """An image ``(H, W)`` or a video's sampled frames ``(T, H, W)``, uint8; ``None`` if unreadable."""
    if kind == "image":
        return read_gray_image(path)
    return read_gray_frames(path, frames)
