"""Image datasets as uint8 ``(N?, H, W, 3)`` sources: class folders (also in a .zip), CIFAR-10, digits.

* ``image_folder``: ``ROOT/<split>/<class>/*.jpg|png``.
* ``image_zip``: the same layout inside ``ROOT.zip`` (optionally under one top folder).
* ``cifar10``: the python pickle batches (``data_batch_1..5``, ``test_batch``,
  ``batches.meta``) of Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009.
* ``digits``: scikit-learn's 8x8 handwritten digits (UCI, Alpaydin & Kaynak 1998), split
  deterministically: every fifth image (index % 5 == 4) is validation, the rest training.
"""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch

from lightvid.data.formats import IMAGE_EXTENSIONS, read_classes_txt
from lightvid.errors import UserError


class ImageDecodeError(UserError):
    """An image that cannot be read; the message names the file."""


def decode_image(data: bytes, name: str) -> torch.Tensor:
    """Encoded image bytes -> uint8 ``(H, W, 3)`` RGB (grey images are replicated)."""
    import cv2

    if not data:
        raise ImageDecodeError(f"{name}: empty file")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ImageDecodeError(f"{name}: not a readable image")
    return torch.from_numpy(np.ascontiguousarray(img[..., ::-1]))  # BGR -> RGB


class ImageSource:
    """A list of images with labels; ``load(i)`` -> uint8 ``(H, W, 3)``."""

    classes: list[str]
    labels: list[int]
    names: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, i: int) -> torch.Tensor:
        raise NotImplementedError


class FolderImages(ImageSource):
    def __init__(self, root: Path, split: str):
        d = root / split
        if not d.is_dir():
            raise UserError(f"{d}: no such split folder")
        self.classes = (read_classes_txt(root / "classes.txt") if (root / "classes.txt").is_file()
                        else sorted(p.name for p in d.iterdir() if p.is_dir()))
        self.paths, self.labels = [], []
        for c in sorted(p for p in d.iterdir() if p.is_dir()):
            if c.name not in self.classes:
                raise UserError(f"{c}: class folder {c.name!r} is not in {root / 'classes.txt'}")
            for f in sorted(c.iterdir()):
                if f.suffix.lower() in IMAGE_EXTENSIONS:
                    self.paths.append(f)
                    self.labels.append(self.classes.index(c.name))
        if not self.paths:
            raise UserError(f"{d}: no images in <class>/ subfolders")
        self.names = [str(p) for p in self.paths]

    def load(self, i: int) -> torch.Tensor:
        try:
            data = self.paths[i].read_bytes()
        except OSError as e:
            raise ImageDecodeError(f"{self.paths[i]}: {e.strerror}") from None
        return decode_image(data, str(self.paths[i]))


class ZipImages(ImageSource):
    """``split/<class>/x.jpg`` members of a zip (a single top-level folder is looked through)."""

    def __init__(self, zip_path: Path, split: str, train_split: str = "train"):
        if not zip_path.is_file():
            raise UserError(f"{zip_path}: no such zip file")
        try:
            with zipfile.ZipFile(zip_path) as zf:
                members = [m for m in zf.namelist() if Path(m).suffix.lower() in IMAGE_EXTENSIONS]
        except zipfile.BadZipFile:
            raise UserError(f"{zip_path}: not a zip file") from None
        self.zip_path = zip_path
        parts = [m.split("/") for m in members]
        offset = 0
        if parts and all(len(p) >= 4 for p in parts) and len({p[0] for p in parts}) == 1:
            offset = 1  # everything under one top folder
        by_split = [p[offset:] for p in parts if len(p) - offset == 3]
        train_classes = sorted({p[1] for p in by_split if p[0] == train_split})
        picked = sorted((m, p) for m, p in zip(members, [q[offset:] for q in parts]) if len(p) == 3 and p[0] == split)
        if not picked:
            splits = sorted({p[0] for p in by_split})
            inside = ", ".join(splits) or "none"
            raise UserError(f"{zip_path}: no images under {split}/<class>/ (splits inside: {inside})")
        self.classes = train_classes or sorted({p[1] for _, p in picked})
        self.members, self.labels = [], []
        for m, p in picked:
            if p[1] not in self.classes:
                raise UserError(f"{zip_path}: {m}: class {p[1]!r} is not in the {train_split} split")
            self.members.append(m)
            self.labels.append(self.classes.index(p[1]))
        self.names = [f"{zip_path}:{m}" for m in self.members]
        self._zf = None  # opened lazily per process (zip handles do not survive fork safely)

    def load(self, i: int) -> torch.Tensor:
        if self._zf is None:
            self._zf = zipfile.ZipFile(self.zip_path)
        return decode_image(self._zf.read(self.members[i]), self.names[i])

    def __getstate__(self):
        return {**self.__dict__, "_zf": None}


class ArrayImages(ImageSource):
    """Images already in memory: uint8 ``(N, H, W, 3)``."""

    def __init__(self, images: np.ndarray, labels, classes: list[str], name: str):
        self.images = torch.from_numpy(np.ascontiguousarray(images))
        self.labels = [int(v) for v in labels]
        self.classes = classes
        self.names = [f"{name}[{i}]" for i in range(len(self.labels))]

    def load(self, i: int) -> torch.Tensor:
        return self.images[i]


def _unpickle(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"{path}: no such CIFAR-10 batch file")
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh, encoding="bytes")  # the official format is a pickle of arrays
    except (pickle.UnpicklingError, EOFError, ValueError) as e:
        raise UserError(f"{path}: not a CIFAR-10 pickle batch ({e})") from None


def cifar10(root: Path, split: str, train_split: str = "train") -> ArrayImages:
    if (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == train_split else ["test_batch"]
    xs, ys = [], []
    for name in names:
        d = _unpickle(root / name)
        try:
            data, labels = np.asarray(d[b"data"], np.uint8), d[b"labels"]
        except KeyError:
            raise UserError(f"{root / name}: lacks 'data'/'labels' (not a CIFAR-10 batch)") from None
        if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
            raise UserError(f"{root / name}: data must be (N, 3072) with N labels, got {data.shape}")
        xs.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))  # (N, 32, 32, 3)
        ys += list(labels)
    meta = root / "batches.meta"
    classes = ([c.decode() for c in _unpickle(meta)[b"label_names"]] if meta.is_file()
               else [str(i) for i in range(10)])
    return ArrayImages(np.concatenate(xs), ys, classes, str(root / names[0]))


def digits(split: str, train_split: str = "train") -> ArrayImages:
    from sklearn.datasets import load_digits

    d = load_digits()
    keep = np.arange(len(d.target)) % 5 != 4 if split == train_split else np.arange(len(d.target)) % 5 == 4
    imgs = np.clip(d.images[keep] * 16, 0, 255).astype(np.uint8)  # 0..16 -> 0..255, (N, 8, 8)
    imgs = np.repeat(imgs[..., None], 3, axis=-1)  # (N, 8, 8, 3)
    return ArrayImages(imgs, d.target[keep], [str(i) for i in range(10)], f"digits:{split}")
