"""``lightvid predict --window W --stride S``: a per-window timeline of a long video.

Window ``k`` covers ``[k*S, k*S + W)`` seconds of the video. Its clip is the model's
``clip_len`` frames taken at evenly spaced times in the window (the centres of
``clip_len`` equal slices), each the frame on screen at that time. The default window is
the span of one clip of the run's own sampling (``clip_len`` frames ``stride`` apart), so
the default clip is the one the model was trained on; a longer window spreads the same
number of frames over more time. A video shorter than the window gets one window over the
whole video.

Decoding is one forward pass through the file (:mod:`lightvid.data.frames`): a frame is
converted to RGB only when some window takes it, and only the frames of windows still
being filled are held, so memory does not grow with the video's length (peak RSS on a
60-minute video is in docs/video_tools.md). Finished windows are run in batches; the
probabilities can be smoothed by a centred moving average over ``smooth`` windows.
Results go to JSON, CSV and a timeline PNG (probability over time of the top classes).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import resource
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lightvid.accel.runtime import InferenceModel
from lightvid.data.frames import iter_frames, open_source, to_rgb
from lightvid.data.video import probe
from lightvid.errors import UserError


def parse_span(text: str, name: str = "--window") -> tuple[float, str]:
    """``"2"``/``"2s"`` -> ``(2.0, "s")`` seconds; ``"32f"`` -> ``(32.0, "f")`` frames."""
    s = str(text).strip().lower()
    unit = "f" if s.endswith("f") else "s"
    try:
        value = float(s.rstrip("fs"))
    except ValueError:
        raise UserError(f"{name}: expected seconds (2, 2.5s) or frames (32f), got {text!r}") from None
    if not value > 0 or not math.isfinite(value):
        raise UserError(f"{name}: must be > 0, got {text!r}")
    return value, unit


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB (Linux reports KB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if os.uname().sysname == "Darwin" else peak / 1024


def moving_average(x: np.ndarray, k: int) -> np.ndarray:
    """Centred moving average over ``k`` rows of ``(N, C)``; the ends average what exists."""
    if k <= 1 or len(x) < 2:
        return x.copy()
    c = np.cumsum(np.concatenate([np.zeros((1, x.shape[1])), x]), 0)  # (N+1, C)
    n = len(x)
    lo = np.clip(np.arange(n) - k // 2, 0, n)
    hi = np.clip(np.arange(n) + (k - 1) // 2 + 1, 0, n)
    return (c[hi] - c[lo]) / (hi - lo)[:, None]


@dataclass
class Timeline:
    path: str
    classes: list[str]
    window: float  # seconds
    stride: float
    smooth: int
    fps: float
    frames: int
    starts: np.ndarray  # (N,) seconds
    ends: np.ndarray
    probs: np.ndarray  # (N, classes), raw per-window softmax
    seconds: float = 0.0  # wall time, decode + model
    model_seconds: float = 0.0
    peak_rss_mb: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def smoothed(self) -> np.ndarray:
        return moving_average(self.probs, self.smooth)

    @property
    def clips_per_s(self) -> float:
        return len(self.starts) / self.seconds if self.seconds else 0.0

    def topk(self, k: int) -> list[list[tuple[str, float]]]:
        p = self.smoothed
        k = min(k, p.shape[1])
        order = np.argsort(-p, 1)[:, :k]
        return [[(self.classes[j] if j < len(self.classes) else str(j), float(p[i, j])) for j in row]
                for i, row in enumerate(order)]

    def to_dict(self, k: int = 5) -> dict:
        return {"path": self.path, "window_s": round(self.window, 6), "stride_s": round(self.stride, 6),
                "smooth": self.smooth, "fps": self.fps, "frames": self.frames, "windows": len(self.starts),
                "seconds": round(self.seconds, 3), "clips_per_s": round(self.clips_per_s, 2),
                "model_clips_per_s": round(len(self.starts) / self.model_seconds, 2) if self.model_seconds else None,
                "peak_rss_mb": round(self.peak_rss_mb, 1),
                "timeline": [{"start": round(float(s), 4), "end": round(float(e), 4),
                              "topk": [{"class": c, "prob": round(p, 6)} for c, p in top]}
                             for s, e, top in zip(self.starts, self.ends, self.topk(k))]}

    def to_csv(self, k: int = 5) -> str:
        buf = io.StringIO()
        out = csv.writer(buf, lineterminator="\n")
        k = min(k, self.probs.shape[1])
        out.writerow(["start", "end"] + [f"{n}{r}" for r in range(1, k + 1) for n in ("class", "prob")])
        for s, e, top in zip(self.starts, self.ends, self.topk(k)):
            out.writerow([f"{s:.4f}", f"{e:.4f}"] + [v for c, p in top for v in (c, f"{p:.6f}")])
        return buf.getvalue()


class _Window:
    __slots__ = ("start", "end", "targets", "frames")

    def __init__(self, start: float, end: float, clip_len: int):
        self.start, self.end = start, end
        self.targets = start + (end - start) * (np.arange(clip_len) + 0.5) / clip_len  # (T,) seconds
        self.frames: list[np.ndarray] = []

    def fill_before(self, t: float, rgb) -> None:
        """Give the frame ``rgb`` (a thunk) to every target earlier than ``t`` still empty."""
        while len(self.frames) < len(self.targets) and self.targets[len(self.frames)] < t:
            self.frames.append(rgb())

    @property
    def done(self) -> bool:
        return len(self.frames) == len(self.targets)


def window_grid(duration: float, window: float, stride: float) -> tuple[int, float]:
    """``(number of windows, window length)``: windows fully inside the video, at least one."""
    if duration <= window:
        return 1, duration
    return int(math.floor((duration - window) / stride + 1e-9)) + 1, window


def predict_timeline(im: InferenceModel, path: str, window: tuple[float, str] | None = None,
                     stride: tuple[float, str] | None = None, batch: int = 8, smooth: int = 1,
                     progress: bool = True) -> Timeline:
    """Decode ``path`` once and return the :class:`Timeline` of its windows (see the module docstring)."""
    from tqdm import tqdm

    if batch < 1 or smooth < 1:
        raise UserError("--batch and --smooth must be >= 1")
    info = probe(path)  # exact frame count and rate (demuxes only)
    fps = info.fps or 25.0
    duration = info.frames / fps

    def seconds(span, default):
        if span is None:
            return default
        return span[0] / fps if span[1] == "f" else span[0]

    win = seconds(window, im.clip_seconds(fps))
    step = seconds(stride, win)
    n, win_len = window_grid(duration, win, step)
    clip_len = im.cfg.clip_len
    short = im.cfg.short_side
    pending: deque[_Window] = deque()
    ready: list[_Window] = []
    starts, ends, probs = [], [], []
    model_s = 0.0
    t_begin = time.perf_counter()

    def flush():
        nonlocal model_s
        if not ready:
            return
        x = torch.stack([im.prepare(np.stack(w.frames)) for w in ready])  # (B, C, T, H, W)
        t0 = time.perf_counter()
        p = im.probs(x)
        model_s += time.perf_counter() - t0
        probs.append(p.numpy())
        starts.extend(w.start for w in ready)
        ends.extend(w.end for w in ready)
        ready.clear()

    def open_windows(before: float):
        nonlocal opened
        while opened < n and opened * step < before:
            pending.append(_Window(opened * step, opened * step + win_len, clip_len))
            opened += 1

    def collect():
        while pending and pending[0].done:
            ready.append(pending.popleft())
            if len(ready) >= batch:
                flush()

    opened = 0
    prev = None
    container, stream = open_source(path)
    bar = tqdm(total=info.frames, desc=Path(path).name[:30], unit="frame", disable=not progress, leave=False)
    try:
        for i, sf in enumerate(iter_frames(container, stream, str(path))):
            open_windows(sf.time)
            if pending and prev is not None:  # prev is on screen over [prev.time, sf.time)
                rgb = _lazy_rgb(prev.frame, short)
                for w in pending:
                    w.fill_before(sf.time, rgb)
                collect()
            prev = sf
            if i % 64 == 63:
                bar.update(64)
                if starts:
                    bar.set_postfix_str(f"{len(starts) / (time.perf_counter() - t_begin):.1f} clips/s")
        bar.update(max(0, bar.total - bar.n))
    finally:
        container.close()
        bar.close()
    if prev is not None:  # the last frame covers every later target
        rgb = _lazy_rgb(prev.frame, short)
        open_windows(math.inf)
        for w in pending:
            w.fill_before(math.inf, rgb)
        collect()
    flush()
    p = np.concatenate(probs) if probs else np.zeros((0, len(im.classes)))
    classes = list(im.classes) or [str(j) for j in range(p.shape[1])]
    return Timeline(str(path), classes, win_len, step, smooth, fps, info.frames, np.asarray(starts),
                    np.asarray(ends), p, seconds=time.perf_counter() - t_begin, model_seconds=model_s,
                    peak_rss_mb=peak_rss_mb())


def _lazy_rgb(frame, short_side):
    """A thunk converting ``frame`` to RGB on its first call only (most frames are never taken)."""
    cache = []

    def rgb():
        if not cache:
            cache.append(to_rgb(frame, short_side))
        return cache[0]

    return rgb


# ----------------------------------------------------------------------------- outputs


def write_atomic(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write via a temporary file in the same folder and rename: never half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp made it 0600: an ordinary file's permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def plot_timeline(tl: Timeline, lines: int = 5) -> bytes:
    """PNG bytes: smoothed probability over time of the ``lines`` classes with the highest peak."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = tl.smoothed
    centres = (tl.starts + tl.ends) / 2
    top = np.argsort(-p.max(0))[: min(lines, p.shape[1])]
    fig, (ax, band) = plt.subplots(2, 1, figsize=(8, 3.2), dpi=90, sharex=True,
                                   gridspec_kw={"height_ratios": [5, 0.6]})
    colours = plt.get_cmap("tab10")
    for r, j in enumerate(top):
        name = tl.classes[j] if j < len(tl.classes) else str(j)
        ax.plot(centres, p[:, j], color=colours(r % 10), lw=1.4, label=name, marker="." if len(p) < 40 else None)
        peak = int(np.argmax(p[:, j]))
        ax.annotate(name, (centres[peak], p[peak, j]), xytext=(0, 4), textcoords="offset points",
                    ha="center", fontsize=8, color=colours(r % 10))
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("probability")
    title = f"{Path(tl.path).name}: window {tl.window:.2f} s, stride {tl.stride:.2f} s"
    ax.set_title(title + (f", smoothed over {tl.smooth}" if tl.smooth > 1 else ""), fontsize=9)
    ax.legend(fontsize=7, loc="upper right", ncol=min(len(top), 5), framealpha=0.8)
    ax.grid(alpha=0.3)
    # top-1 class per window as a colour band (classes outside the plotted lines in grey)
    best = p.argmax(1)
    rank = {int(j): r for r, j in enumerate(top)}
    edges = np.concatenate([tl.starts, tl.ends[-1:]]) if len(tl.starts) else np.zeros(1)
    for i, j in enumerate(best):
        end = tl.starts[i + 1] if i + 1 < len(tl.starts) else tl.ends[i]
        band.axvspan(tl.starts[i], end, color=colours(rank[int(j)] % 10) if int(j) in rank else "0.7", lw=0)
    band.set_yticks([])
    band.set_ylabel("top-1", rotation=0, ha="right", va="center", fontsize=8)
    band.set_xlim(edges.min(), edges.max() if len(edges) > 1 else 1)
    band.set_xlabel("time (s)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def write_outputs(tl: Timeline, out_dir: str | os.PathLike, k: int = 5, force: bool = False) -> list[Path]:
    """``OUT/<stem>.timeline.{json,csv,png}``; an existing file is refused unless ``force``."""
    out_dir = Path(out_dir)
    stem = Path(tl.path).stem
    paths = [out_dir / f"{stem}.timeline.{ext}" for ext in ("json", "csv", "png")]
    if not force:
        for p in paths:
            if p.exists():
                raise UserError(f"{p}: exists; choose another --out or pass --force to replace it")
    write_atomic(paths[0], json.dumps(tl.to_dict(k), indent=1) + "\n")
    write_atomic(paths[1], tl.to_csv(k))
    write_atomic(paths[2], plot_timeline(tl))
    return paths
