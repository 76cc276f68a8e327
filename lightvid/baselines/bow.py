"""Bag of visual words over dense SIFT (the scene-recognition report Part 1; Csurka et al. 2004, Lazebnik et al. 2006).

1. Dense SIFT: OpenCV's SIFT descriptor (``cv2.SIFT_create().compute``) at upright keypoints
   on a regular grid, every ``step`` pixels, of keypoint size ``sift_size``. In OpenCV a
   keypoint of size ``s`` has spatial bins of ``1.5 s`` pixels, so the 4x4-bin descriptor
   covers a ``6 s`` pixel square (``sift_size=4``: 24 px). Descriptors are 128 bytes.
2. Vocabulary: k-means (scikit-learn ``MiniBatchKMeans``) with ``vocab`` words on at most
   ``vocab_samples`` descriptors drawn evenly from the training items. Cached on disk as
   ``<cache>/<key>.npz``, the key hashing every parameter that shapes it and the training
   file list (relative paths and sizes); a second run with the same inputs skips k-means.
3. A histogram of nearest words per item (for a video: the words of all its sampled frames
   pooled). ``levels=0`` is the plain bag of words; ``levels=L`` > 0 (default 1) concatenates the
   histograms of a spatial pyramid (Lazebnik, Schmid, Ponce 2006): level ``l`` splits the
   image into ``2^l x 2^l`` cells, each level's histograms sum to 1 and are weighted
   ``1/2^L`` (level 0) and ``1/2^(L-l+1)`` (level ``l``). Normalised ``l1``, ``l2`` or
   ``sqrt`` (Hellinger: square root of the L1-normalised vector, then unit L2).
4. A classifier: k-nearest neighbours (``euclidean``/``cityblock``/``cosine``) or a linear SVM
   (``LinearSVC``, one-vs-rest, cost ``C``).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lightvid.baselines.folders import FolderData, read_item
from lightvid.baselines.tiny import METRICS, knn_predict
from lightvid.errors import UserError
from lightvid.fileio import atomic_path

VOCAB_VERSION = 1
HIST_NORMS = ("l1", "l2", "sqrt")
CLASSIFIERS = ("knn", "svm")


@dataclass
class BowConfig:
    step: int = 4
    sift_size: float = 4.0
    vocab: int = 400
    vocab_samples: int = 200_000
    levels: int = 1
    hist_norm: str = "sqrt"
    classifier: str = "svm"
    k: int = 15
    metric: str = "cityblock"
    C: float = 1.0
    frames: int = 8  # videos only
    seed: int = 0
    jobs: int = 1

    def validate(self) -> None:
        if self.step < 1:
            raise UserError(f"--step must be >= 1, got {self.step}")
        if self.sift_size <= 0:
            raise UserError(f"--sift-size must be > 0, got {self.sift_size}")
        if self.vocab < 2:
            raise UserError(f"--vocab must be >= 2, got {self.vocab}")
        if self.vocab_samples < self.vocab:
            raise UserError(f"--vocab-samples ({self.vocab_samples}) must be >= --vocab ({self.vocab})")
        if not 0 <= self.levels <= 3:
            raise UserError(f"--levels must be 0 (plain bag of words) to 3, got {self.levels}")
        if self.hist_norm not in HIST_NORMS:
            raise UserError(f"--hist-norm must be one of {', '.join(HIST_NORMS)}, got {self.hist_norm!r}")
        if self.classifier not in CLASSIFIERS:
            raise UserError(f"--classifier must be one of {', '.join(CLASSIFIERS)}, got {self.classifier!r}")
        if self.metric not in METRICS:
            raise UserError(f"--metric must be one of {', '.join(METRICS)}, got {self.metric!r}")
        if self.k < 1:
            raise UserError(f"--k must be >= 1, got {self.k}")
        if self.C <= 0:
            raise UserError(f"--C must be > 0, got {self.C}")
        if self.frames < 1:
            raise UserError(f"--frames must be >= 1, got {self.frames}")
        if self.jobs < 1:
            raise UserError(f"--jobs must be >= 1, got {self.jobs}")


_SIFT = None


def grid(h: int, w: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    """The keypoint grid: x and y coordinates (pixels), row-major, ``step`` apart from ``step // 2``."""
    ys, xs = np.meshgrid(np.arange(step // 2, h, step), np.arange(step // 2, w, step), indexing="ij")
    return xs.ravel(), ys.ravel()


def dense_sift(gray: np.ndarray, step: int = 4, size: float = 4.0) -> np.ndarray:
    """``(H, W)`` uint8 -> ``(N, 128)`` uint8 SIFT descriptors on a ``step``-pixel grid (see :func:`grid`)."""
    import cv2

    global _SIFT
    if _SIFT is None:
        _SIFT = cv2.SIFT_create()
    xs, ys = grid(*gray.shape, step)
    kps = [cv2.KeyPoint(float(x), float(y), float(size), 0.0) for x, y in zip(xs, ys)]
    if not kps:
        return np.zeros((0, 128), np.uint8)
    _, desc = _SIFT.compute(np.ascontiguousarray(gray), kps)
    if desc is None or len(desc) != len(kps):
        got = 0 if desc is None else len(desc)
        raise RuntimeError(f"OpenCV SIFT returned {got} descriptors for {len(kps)} keypoints")
    return np.clip(np.rint(desc), 0, 255).astype(np.uint8)  # OpenCV's values are integers in [0, 255]


def item_descriptors(args) -> tuple[np.ndarray, np.ndarray] | None:
    """``(descriptors (N, 128) uint8, positions (N, 2) float16 in [0, 1))`` of one image, or of
    all sampled frames of one video; ``None`` if unreadable."""
    path, kind, frames, step, size = args
    import cv2

    cv2.setNumThreads(1)
    item = read_item(path, kind, frames)
    if item is None:
        return None
    descs, pos = [], []
    for f in (item[None] if item.ndim == 2 else item):
        h, w = f.shape
        xs, ys = grid(h, w, step)
        descs.append(dense_sift(f, step, size))
        pos.append(np.stack([xs / w, ys / h], 1).astype(np.float16))
    return np.concatenate(descs), np.concatenate(pos)  # (frames * N, 128), (frames * N, 2)


def extract_all(paths, kind: str, cfg: BowConfig, desc: str) -> list[np.ndarray | None]:
    jobs = [(p, kind, cfg.frames, cfg.step, cfg.sift_size) for p in paths]
    if cfg.jobs == 1:
        return [item_descriptors(j) for j in tqdm(jobs, desc=desc, unit=kind, leave=False)]
    with ProcessPoolExecutor(cfg.jobs) as ex:
        return list(tqdm(ex.map(item_descriptors, jobs, chunksize=8), total=len(jobs), desc=desc, unit=kind,
                         leave=False))


def default_cache_dir() -> Path:
    base = os.environ.get("LIGHTVID_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "lightvid")
    return Path(base) / "vocab"


def vocab_key(cfg: BowConfig, data: FolderData) -> str:
    """Hash of what determines the vocabulary: its parameters and the training file list."""
    files = [(str(p.relative_to(data.root)), p.stat().st_size) for p in data.train.paths]
    spec = dict(version=VOCAB_VERSION, step=cfg.step, sift_size=cfg.sift_size, vocab=cfg.vocab,
                vocab_samples=cfg.vocab_samples, seed=cfg.seed, kind=data.kind,
                frames=cfg.frames if data.kind == "video" else None, files=files)
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]


def sample_descriptors(items: list, total: int, seed: int) -> np.ndarray:
    """At most ``total`` descriptors, an even share from each item (random within an item)."""
    rng = np.random.default_rng(seed)
    descs = [it[0] for it in items if it is not None and len(it[0])]
    if not descs:
        raise UserError("no SIFT descriptors in the training items (images too small for --step/--sift-size?)")
    per = max(1, total // len(descs))
    picks = [d if len(d) <= per else d[rng.choice(len(d), per, replace=False)] for d in descs]
    return np.concatenate(picks).astype(np.float32)


def fit_vocabulary(sample: np.ndarray, words: int, seed: int, threads: int = 1) -> np.ndarray:
    """k-means centres ``(words, 128)``; ``threads`` caps OpenMP/BLAS threads (oversubscribed
    OpenMP threads on a busy machine made k-means ten times slower than one thread)."""
    from sklearn.cluster import MiniBatchKMeans
    from threadpoolctl import threadpool_limits

    if len(sample) < words:
        raise UserError(f"only {len(sample)} descriptors for a {words}-word vocabulary; lower --vocab or --step")
    km = MiniBatchKMeans(n_clusters=words, batch_size=4096, n_init=3, max_iter=20, random_state=seed)  # epochs
    with threadpool_limits(threads):
        km.fit(sample)
    return km.cluster_centers_.astype(np.float32)  # (words, 128)


def load_or_fit_vocabulary(cfg: BowConfig, data: FolderData, train_descs, cache_dir: Path | None) -> tuple[np.ndarray,
                                                                                                           bool]:
    """The vocabulary and whether it came from the cache."""
    path = None
    if cache_dir is not None:
        path = cache_dir / f"{vocab_key(cfg, data)}.npz"
        if path.is_file():
            try:
                with np.load(path) as z:
                    centers = z["centers"]
                if centers.shape == (cfg.vocab, 128):
                    return centers.astype(np.float32), True
            except (OSError, ValueError, KeyError):
                pass  # a damaged cache entry is rebuilt below
    centers = fit_vocabulary(sample_descriptors(train_descs, cfg.vocab_samples, cfg.seed), cfg.vocab, cfg.seed,
                             cfg.jobs)
    if path is not None:
        with atomic_path(path) as tmp:  # a cache entry is whole or absent; only its own name is written
            np.savez(tmp, centers=centers, params=json.dumps(asdict(cfg)))
    return centers, False


def assign_words(desc: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Index of the nearest word (squared euclidean) for each descriptor."""
    d = desc.astype(np.float32)
    dist = (centers * centers).sum(1)[None, :] - 2.0 * d @ centers.T  # + |d|^2, constant per row
    return dist.argmin(1)


def pyramid_histogram(words: np.ndarray, pos: np.ndarray | None, num_words: int, norm: str,
                      levels: int = 0) -> np.ndarray:
    """Histogram of word indices (or the spatial pyramid of them, see the module docstring), normalised."""
    V, n = num_words, max(len(words), 1)
    parts = []
    for level in range(levels + 1):
        cells = 2 ** level
        weight = 1.0 / 2 ** levels if level == 0 else 1.0 / 2 ** (levels - level + 1)
        if level == 0:
            idx = words
        else:
            cx = np.minimum((pos[:, 0].astype(np.float32) * cells).astype(np.int64), cells - 1)
            cy = np.minimum((pos[:, 1].astype(np.float32) * cells).astype(np.int64), cells - 1)
            idx = (cy * cells + cx) * V + words  # (cell, word) -> one bin
        parts.append(weight * np.bincount(idx, minlength=V * cells * cells).astype(np.float32) / n)
    h = np.concatenate(parts)  # (V * sum_l 4^l,)
    if norm == "l2":
        return h / max(float(np.linalg.norm(h)), 1e-12)
    h = h / max(float(h.sum()), 1e-12)
    return np.sqrt(h) if norm == "sqrt" else h


def histogram(desc: np.ndarray, centers: np.ndarray, norm: str, pos: np.ndarray | None = None,
              levels: int = 0) -> np.ndarray:
    """Descriptors -> nearest words -> :func:`pyramid_histogram`."""
    words = assign_words(desc, centers) if len(desc) else np.zeros(0, np.int64)
    return pyramid_histogram(words, pos, len(centers), norm, levels)


def classify(cfg: BowConfig, train_x, train_y, test_x) -> np.ndarray:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(cfg.jobs):
        if cfg.classifier == "knn":
            return knn_predict(train_x, train_y, test_x, cfg.k, cfg.metric)
        from sklearn.svm import LinearSVC

        clf = LinearSVC(C=cfg.C, max_iter=20_000, random_state=cfg.seed)
        clf.fit(train_x, train_y)
        return clf.predict(test_x)


@dataclass
class BowWords:
    """Nearest-word indices and grid positions of every readable train and test item."""

    train: list[tuple[np.ndarray, np.ndarray]]
    train_y: np.ndarray
    test: list[tuple[np.ndarray, np.ndarray]]
    test_y: np.ndarray
    num_words: int
    timings: dict
    num_bad: int

    def histograms(self, levels: int, norm: str) -> tuple[np.ndarray, np.ndarray]:
        """``(train_x, test_x)``: one (pyramid) histogram per item."""
        def stack(items):
            dim = self.num_words * sum(4 ** level for level in range(levels + 1))
            rows = [pyramid_histogram(w, p, self.num_words, norm, levels) for w, p in items]
            return np.stack(rows) if rows else np.zeros((0, dim), np.float32)

        return stack(self.train), stack(self.test)


def _encode(items, centers) -> tuple[list, np.ndarray]:
    ok = np.array([it is not None for it in items], dtype=bool)
    return [(assign_words(d, centers) if len(d) else np.zeros(0, np.int64), p) for d, p in
            (it for it in items if it is not None)], ok


def bow_words(data: FolderData, cfg: BowConfig, cache_dir: Path | None = None) -> BowWords:
    """Dense SIFT and vocabulary (cached); every readable item's words and positions."""
    cfg.validate()
    t0 = time.perf_counter()
    train_items = extract_all(data.train.paths, data.kind, cfg, "sift train")
    t1 = time.perf_counter()
    centers, cached = load_or_fit_vocabulary(cfg, data, train_items, cache_dir)
    t2 = time.perf_counter()
    train, tr_ok = _encode(train_items, centers)
    del train_items
    test, te_ok = _encode(extract_all(data.test.paths, data.kind, cfg, "sift test"), centers)
    t3 = time.perf_counter()
    if not train:
        raise UserError(f"{data.root}: no readable training {data.kind}")
    timings = {"sift_train": t1 - t0, "vocabulary" + (" (cached)" if cached else ""): t2 - t1,
               "sift_test+words": t3 - t2}
    bad = int((~tr_ok).sum() + (~te_ok).sum())
    return BowWords(train, data.train.labels[tr_ok], test, data.test.labels[te_ok], len(centers), timings, bad)


def run_bow(data: FolderData, cfg: BowConfig, cache_dir: Path | None = None) -> tuple[np.ndarray, np.ndarray, dict,
                                                                                      int]:
    """(true labels, predictions, timings, unreadable count) on ``data``'s test split."""
    w = bow_words(data, cfg, cache_dir)
    t = time.perf_counter()
    train_x, test_x = w.histograms(cfg.levels, cfg.hist_norm)
    pred = classify(cfg, train_x, w.train_y, test_x) if len(test_x) else np.zeros(0, int)
    return w.test_y, pred, {**w.timings, "histograms+classify": time.perf_counter() - t}, w.num_bad


def unused_params(cfg: BowConfig) -> tuple[str, ...]:
    """Config fields that do not shape the result: threads, and the other classifier's parameters."""
    return ("jobs", "C") if cfg.classifier == "knn" else ("jobs", "k", "metric")
