"""One-pass evaluation of single-object trackers, as OTB does it (Wu, Lim, Yang, CVPR 2013).

* success plot: for each overlap threshold t in 0, 0.05, ..., 1, the fraction of frames whose
  IoU with the ground truth is above t; its area under the curve (AUC, the mean of the curve)
  ranks trackers;
* precision plot: for each distance d in 0..50 px, the fraction of frames whose predicted box
  centre lies within d px of the ground-truth centre; "precision" is the value at 20 px.

Boxes are ``[x, y, w, h]`` in pixels (top-left corner, width, height). Frames whose ground
truth is missing (``None`` or a non-positive size: the object fully hidden) are left out and
counted. A sequence's curves are computed on its frames, the set's curves are the mean over
sequences (OTB's averaging), so a long sequence does not outweigh the others.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SUCCESS_THRESHOLDS = np.linspace(0.0, 1.0, 21)
PRECISION_THRESHOLDS = np.arange(0, 51, dtype=np.float64)
PRECISION_AT = 20.0


def as_boxes(boxes) -> np.ndarray:
    """A list of ``[x, y, w, h]`` (``None`` for a missing one) -> ``(N, 4)`` float, NaN rows where missing."""
    rows = [[np.nan] * 4 if b is None else [float(v) for v in b] for b in boxes]
    arr = np.asarray(rows, dtype=np.float64).reshape(-1, 4)
    return arr


def iou_xywh(a, b) -> np.ndarray:
    """Row-wise IoU of two ``(N, 4)`` arrays of ``[x, y, w, h]`` boxes -> ``(N,)``."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, 0], b[:, 0])
    y1 = np.maximum(a[:, 1], b[:, 1])
    x2 = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2])
    y2 = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def centre_error(a, b) -> np.ndarray:
    """Row-wise Euclidean distance between box centres, ``(N,)`` pixels."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ca, cb = a[:, :2] + a[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2
    return np.sqrt(((ca - cb) ** 2).sum(1))


def success_curve(ious, thresholds=SUCCESS_THRESHOLDS) -> np.ndarray:
    """Fraction of frames with IoU > t for each threshold t."""
    ious = np.asarray(ious, dtype=np.float64)
    if ious.size == 0:
        return np.full(len(thresholds), np.nan)
    return (ious[None, :] > np.asarray(thresholds)[:, None]).mean(1)


def precision_curve(errors, thresholds=PRECISION_THRESHOLDS) -> np.ndarray:
    """Fraction of frames with centre error <= d for each distance d."""
    errors = np.asarray(errors, dtype=np.float64)
    if errors.size == 0:
        return np.full(len(thresholds), np.nan)
    return (errors[None, :] <= np.asarray(thresholds)[:, None]).mean(1)


@dataclass
class SequenceScore:
    """Per-frame overlaps and centre errors of one tracked sequence."""

    name: str
    ious: np.ndarray
    errors: np.ndarray
    skipped: int = 0  # frames without ground truth

    @property
    def success(self) -> np.ndarray:
        return success_curve(self.ious)

    @property
    def precision(self) -> np.ndarray:
        return precision_curve(self.errors)


def score_sequence(pred, gt, name: str = "") -> SequenceScore:
    """Compare predicted and ground-truth boxes frame by frame (the same number of each)."""
    pred, gt = as_boxes(pred), as_boxes(gt)
    if len(pred) != len(gt):
        raise ValueError(f"{name or 'sequence'}: {len(pred)} predicted boxes for {len(gt)} ground-truth frames")
    valid = np.isfinite(gt).all(1) & (gt[:, 2] > 0) & (gt[:, 3] > 0)
    p = np.where(np.isfinite(pred), pred, 0.0)[valid]  # a tracker that gives no box scores IoU 0
    g = gt[valid]
    lost = ~np.isfinite(pred[valid]).all(1)
    errors = centre_error(p, g)
    errors[lost] = np.inf
    return SequenceScore(name, iou_xywh(p, g), errors, int((~valid).sum()))


@dataclass
class TrackerScore:
    """A tracker's result over a set of sequences: mean success and precision curves."""

    name: str
    sequences: list[SequenceScore] = field(default_factory=list)

    @property
    def success(self) -> np.ndarray:
        return np.nanmean([s.success for s in self.sequences], axis=0)

    @property
    def precision(self) -> np.ndarray:
        return np.nanmean([s.precision for s in self.sequences], axis=0)

    @property
    def auc(self) -> float:
        """Area under the success curve (its mean over the 21 thresholds)."""
        return float(np.mean(self.success))

    @property
    def precision_at_20(self) -> float:
        return float(self.precision[int(np.searchsorted(PRECISION_THRESHOLDS, PRECISION_AT))])

    @property
    def mean_iou(self) -> float:
        return float(np.mean([s.ious.mean() for s in self.sequences if s.ious.size]))

    def to_dict(self) -> dict:
        return {"tracker": self.name, "sequences": len(self.sequences),
                "frames": int(sum(s.ious.size for s in self.sequences)),
                "frames_without_ground_truth": int(sum(s.skipped for s in self.sequences)),
                "success_auc": round(self.auc, 4), "precision_20px": round(self.precision_at_20, 4),
                "mean_iou": round(self.mean_iou, 4),
                "success_curve": [round(float(v), 4) for v in self.success],
                "precision_curve": [round(float(v), 4) for v in self.precision],
                "per_sequence": {s.name: {"success_auc": round(float(np.mean(s.success)), 4),
                                          "precision_20px": round(float(s.precision[20]), 4)}
                                 for s in self.sequences}}


def plot_curves(scores: list[TrackerScore], out_dir: str | Path, title: str = "") -> tuple[Path, Path]:
    """``success_plot.png`` and ``precision_plot.png`` in ``out_dir``, one line per tracker (best first)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for kind in ("success", "precision"):
        fig, ax = plt.subplots(figsize=(4.2, 3.4), dpi=90)
        key = (lambda s: s.auc) if kind == "success" else (lambda s: s.precision_at_20)
        for s in sorted(scores, key=key, reverse=True):
            if kind == "success":
                ax.plot(SUCCESS_THRESHOLDS, s.success, label=f"{s.name} [{s.auc:.3f}]")
            else:
                ax.plot(PRECISION_THRESHOLDS, s.precision, label=f"{s.name} [{s.precision_at_20:.3f}]")
        if kind == "success":
            ax.set(xlabel="overlap threshold", ylabel="success rate", xlim=(0, 1), ylim=(0, 1.02))
            ax.set_title(f"Success plot{': ' + title if title else ''}", fontsize=9)
        else:
            ax.set(xlabel="location error threshold (px)", ylabel="precision", xlim=(0, 50), ylim=(0, 1.02))
            ax.axvline(PRECISION_AT, color="0.7", lw=0.8, ls="--")
            ax.set_title(f"Precision plot{': ' + title if title else ''}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower left" if kind == "success" else "lower right")
        fig.tight_layout()
        path = out_dir / f"{kind}_plot.png"
        tmp = path.with_name(path.stem + ".tmp.png")
        fig.savefig(tmp)
        plt.close(fig)
        tmp.replace(path)
        paths.append(path)
    return paths[0], paths[1]
