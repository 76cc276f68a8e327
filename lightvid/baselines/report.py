"""Results of a baseline: accuracy, per-class accuracy, confusion matrix (CSV + PNG), timing."""
from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lightvid.fileio import atomic_path, check_result_folder, write_text_atomic


@dataclass
class BaselineResult:
    """What ``lightvid baseline`` prints and ``--json`` emits (one object)."""

    method: str
    data: str
    kind: str  # "image" or "video"
    params: dict
    classes: list[str]
    accuracy: float
    per_class: dict[str, float]
    confusion: list[list[int]]  # rows: true class, columns: predicted class
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    num_train: int = 0
    num_test: int = 0
    num_bad: int = 0
    outputs: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """``C[i, j]`` = number of test items of class ``i`` predicted as ``j``."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def per_class_accuracy(cm: np.ndarray, classes: list[str]) -> dict[str, float]:
    """Recall of each class (diagonal over row sum); a class with no test item gets NaN."""
    rows = cm.sum(axis=1)
    return {c: (float(cm[i, i] / rows[i]) if rows[i] else float("nan")) for i, c in enumerate(classes)}


def write_confusion_csv(cm: np.ndarray, classes: list[str], path: Path) -> Path:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["true\\predicted", *classes])
        for name, row in zip(classes, cm):
            w.writerow([name, *map(int, row)])
    return path


def write_confusion_png(cm: np.ndarray, classes: list[str], path: Path, title: str) -> Path:
    """Row-normalised confusion matrix as a heat map with the counts written in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(classes)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.45 * n + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=6,
                            color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return path


def make_result(method: str, data, params: dict, y_true, y_pred, seconds: float, timings: dict,
                num_bad: int, out_dir: Path | None) -> BaselineResult:
    """Score predictions and, when ``out_dir`` is given, write ``confusion.csv``/``.png`` and ``result.json``."""
    classes = data.classes
    cm = confusion_matrix(y_true, y_pred, len(classes))
    acc = float((np.asarray(y_true) == np.asarray(y_pred)).mean()) if len(y_true) else float("nan")
    res = BaselineResult(method=method, data=str(data.root), kind=data.kind, params=params, classes=classes,
                         accuracy=acc, per_class=per_class_accuracy(cm, classes), confusion=cm.tolist(),
                         seconds=round(seconds, 3), timings={k: round(v, 3) for k, v in timings.items()},
                         num_train=len(data.train.paths), num_test=len(data.test.paths), num_bad=num_bad)
    if out_dir is not None:
        _check_out_dir(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        res.outputs = {
            "confusion_csv": str(write_confusion_csv(cm, classes, out_dir / "confusion.csv")),
            "confusion_png": str(write_confusion_png(cm, classes, out_dir / "confusion.png",
                                                     f"{method}: accuracy {acc:.4f}")),
            "result_json": str(out_dir / "result.json"),
        }
        write_text_atomic(out_dir / "result.json", json.dumps(res.to_dict(), indent=1))
    return res


def params_of(cfg, kind: str, unused: tuple[str, ...] = ()) -> dict:
    """The parameters of a baseline's config that shaped its result: every field but ``unused``
    (and ``frames`` for images)."""
    drop = set(unused) | ({"frames"} if kind == "image" else set())
    return {k: v for k, v in asdict(cfg).items() if k not in drop}


RESULT_FILES = ("confusion.csv", "confusion.png", "result.json")


def _check_out_dir(out_dir: Path) -> None:
    """Refuse to overwrite result-named files that are not an earlier baseline result's (nothing is changed)."""
    check_result_folder(out_dir, RESULT_FILES, "result.json", "method", "baseline result")


def format_baseline(res: BaselineResult) -> str:
    """A :class:`BaselineResult` as the lines ``lightvid baseline`` prints."""
    width = max(len(c) for c in res.classes)
    lines = [f"{res.method} on {res.data} ({res.kind}s: {res.num_train} train, {res.num_test} test"
             + (f", {res.num_bad} unreadable skipped" if res.num_bad else "") + ")",
             "params: " + ", ".join(f"{k}={v}" for k, v in res.params.items()),
             f"accuracy: {res.accuracy:.4f}", "per-class accuracy:"]
    lines += [f"  {c:<{width}}  {a:.4f}" for c, a in res.per_class.items()]
    lines.append(f"time: {res.seconds:.1f} s (" + ", ".join(f"{k} {v:.1f} s" for k, v in res.timings.items()) + ")")
    for k, v in res.outputs.items():
        lines.append(f"{k}: {v}")
    return "\n".join(lines)
