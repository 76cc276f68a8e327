"""Tiny images + k-nearest neighbours (the scene-recognition report Part 1; Torralba, Fergus, Freeman 2008).

Each grayscale image is resized to ``size x size`` (area interpolation), flattened, made
zero-mean (``center``) and divided by its L1 or L2 norm. A video becomes a "tiny clip": its
``frames`` sampled frames, each made tiny, concatenated ``(frames * size * size,)`` and
normalised as one vector. Test items take the majority label of their ``k`` nearest
training items (scikit-learn's ``KNeighborsClassifier``; ``euclidean`` or ``cityblock``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from lightvid.baselines.folders import FolderData, read_item
from lightvid.errors import UserError

NORMS = ("l1", "l2", "none")
METRICS = ("euclidean", "cityblock", "cosine")  # kNN distances (knn_predict; the BoW baseline too)


@dataclass
class TinyConfig:
    size: int = 16
    norm: str = "l2"
    center: bool = True
    metric: str = "cityblock"
    k: int = 1
    frames: int = 8  # videos only

    def validate(self) -> None:
        if self.size < 1:
            raise UserError(f"--size must be >= 1, got {self.size}")
        if self.norm not in NORMS:
            raise UserError(f"--norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        if self.metric not in METRICS:
            raise UserError(f"--metric must be one of {', '.join(METRICS)}, got {self.metric!r}")
        if self.k < 1:
            raise UserError(f"--k must be >= 1, got {self.k}")
        if self.frames < 1:
            raise UserError(f"--frames must be >= 1, got {self.frames}")


def tiny_feature(item: np.ndarray, size: int, norm: str = "l1", center: bool = True) -> np.ndarray:
    """``(H, W)`` image or ``(T, H, W)`` frames (uint8) -> normalised flat float32 vector."""
    import cv2

    frames = item[None] if item.ndim == 2 else item
    tiny = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])
    v = tiny.astype(np.float32).reshape(-1)  # (T*size*size,)
    if center:
        v = v - v.mean()
    if norm != "none":
        n = np.linalg.norm(v, ord=1 if norm == "l1" else 2)
        v = v / n if n > 0 else v
    return v


def extract(paths, kind: str, cfg: TinyConfig, desc: str) -> tuple[np.ndarray, np.ndarray]:
    """Features of every readable item and the mask of readable ones."""
    feats, ok = [], np.zeros(len(paths), dtype=bool)
    for i, p in enumerate(tqdm(paths, desc=desc, unit=kind, leave=False)):
        item = read_item(p, kind, cfg.frames)
        if item is None:
            continue
        feats.append(tiny_feature(item, cfg.size, cfg.norm, cfg.center))
        ok[i] = True
    dim = cfg.size * cfg.size * (1 if kind == "image" else cfg.frames)
    return (np.stack(feats) if feats else np.zeros((0, dim), np.float32)), ok


def knn_predict(train_x, train_y, test_x, k: int, metric: str) -> np.ndarray:
    from sklearn.neighbors import KNeighborsClassifier

    k = min(k, len(train_x))
    clf = KNeighborsClassifier(n_neighbors=k, metric=metric, algorithm="brute", n_jobs=1)
    clf.fit(train_x, train_y)
    return clf.predict(test_x)


def run_tiny(data: FolderData, cfg: TinyConfig) -> tuple[np.ndarray, np.ndarray, dict, int]:
    """(true labels, predictions, timings, unreadable count) on ``data``'s test split."""
    cfg.validate()
    t0 = time.perf_counter()
    tr_x, tr_ok = extract(data.train.paths, data.kind, cfg, "tiny train")
    te_x, te_ok = extract(data.test.paths, data.kind, cfg, "tiny test")
    t1 = time.perf_counter()
    if not len(tr_x):
        raise UserError(f"{data.root}: no readable training {data.kind}")
    pred = knn_predict(tr_x, data.train.labels[tr_ok], te_x, cfg.k, cfg.metric) if len(te_x) else np.zeros(0, int)
    t2 = time.perf_counter()
    bad = int((~tr_ok).sum() + (~te_ok).sum())
    return data.test.labels[te_ok], pred, {"features": t1 - t0, "classify": t2 - t1}, bad
