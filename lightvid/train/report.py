"""What a run reports, the way the scene-recognition report does: learning curves, confusion matrix, tables.

* ``learning_curves.png``: four panels, train loss, validation loss, train accuracy,
  validation accuracy (clip and video level), per epoch, from Lightning's ``metrics.csv``;
* ``confusion_matrix.png`` / ``.csv``: video-level counts, rows true, columns predicted;
* a final table (printed) and ``report.json``.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lightvid.fileio import atomic_path, write_text_atomic  # noqa: E402


def epoch_metrics(metrics_csv) -> list[dict]:
    """One dict per epoch: the last value of every column logged in that epoch.

    ``metrics_csv`` is a file or a list of files, oldest first (a resumed run's parts); an
    epoch re-run after an interruption overrides what the interrupted session logged.
    """
    files = [metrics_csv] if isinstance(metrics_csv, (str, Path)) else list(metrics_csv)
    rows: dict[int, dict] = {}
    for path in files:
        if not Path(path).is_file():
            continue
        seen: dict[int, dict] = {}
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                if not row.get("epoch"):
                    continue
                ep = int(float(row["epoch"]))
                d = seen.setdefault(ep, {"epoch": ep})
                for k, v in row.items():
                    if v not in ("", None) and k != "epoch":
                        d[k] = float(v)
        rows.update(seen)
    return [rows[e] for e in sorted(rows)]


def plot_learning_curves(epochs: list[dict], path: str | Path, title: str = "") -> Path:
    panels = [
        ("train loss", [("train/loss_epoch", "train")]),
        ("validation loss", [("val/loss", "val")]),
        ("train accuracy", [("train/acc", "train")]),
        ("validation accuracy", [("val/acc_clip", "clip"), ("val/acc_video", "video")]),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    for ax, (name, series) in zip(axes.flat, panels):
        for key, label in series:
            pts = [(e["epoch"] + 1, e[key]) for e in epochs if key in e]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=label)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if "accuracy" in name:
            ax.set_ylim(0, 1.02)
        if len(series) > 1:
            ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return Path(path)


def write_confusion(confusion: list[list[int]], classes: list[str], png: str | Path, csv_path: str | Path,
                    title: str = "") -> tuple[Path, Path]:
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["true \\ predicted", *classes])
        for name, row in zip(classes, confusion):
            w.writerow([name, *row])
    k = len(classes)
    size = max(5.0, min(20.0, 0.45 * k + 2))
    fig, ax = plt.subplots(figsize=(size, size))
    totals = [max(1, sum(r)) for r in confusion]
    norm = [[v / t for v in row] for row, t in zip(confusion, totals)]
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), classes, rotation=60, ha="right", fontsize=8 if k <= 30 else 5)
    ax.set_yticks(range(k), classes, fontsize=8 if k <= 30 else 5)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 30:
        for i in range(k):
            for j in range(k):
                if confusion[i][j]:
                    ax.text(j, i, str(confusion[i][j]), ha="center", va="center", fontsize=7,
                            color="white" if norm[i][j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of the true class")
    ax.set_title(title or "confusion matrix (video level)")
    fig.tight_layout()
    with atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return Path(png), Path(csv_path)


def format_table(rows: list[tuple[str, str]], title: str = "") -> str:
    width = max(len(k) for k, _ in rows)
    lines = [title] if title else []
    lines.append("-" * (width + 30))
    lines += [f"{k:<{width}}  {v}" for k, v in rows]
    lines.append("-" * (width + 30))
    return "\n".join(lines)


def format_per_class(classes: list[str], per_class: list[float]) -> str:
    width = max(len(c) for c in classes)
    lines = [f"{'class':<{width}}  video top-1"]
    for c, a in zip(classes, per_class):
        lines.append(f"{c:<{width}}  {'-' if math.isnan(a) else f'{a:.3f}'}")
    return "\n".join(lines)


def write_json(obj: dict, path: str | Path) -> Path:
    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    return write_text_atomic(path, json.dumps(clean(obj), indent=1) + "\n")
