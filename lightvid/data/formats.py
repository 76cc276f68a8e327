"""Video dataset formats, each parsed into ``(samples, classes)``; ``samples`` = ``[(path, label)]``.

* ``folders``: ``ROOT/<split>/<class>/*.mp4`` (classes from ``ROOT/classes.txt`` when present,
  else the sorted folder names of the training split).
* ``list``: ``ROOT/<split>.txt`` with ``relative/path.mp4 label`` per line (MMAction2's
  VideoDataset form; paths relative to ROOT; ``classes.txt`` names the labels when present).
* ``ucf101``: ``classInd.txt`` (``1 ApplyEyeMakeup``) with ``trainlist0N.txt``
  (``Class/v_x.avi 1``) and ``testlist0N.txt`` (``Class/v_x.avi``); Soomro et al. 2012.
* ``hmdb51``: ``<class>_test_split{1,2,3}.txt`` (``video.avi 1``: 1 = train, 2 = test,
  0 = unused); videos in ``ROOT/<class>/``; Kuehne et al. ICCV 2011.
* ``kinetics_csv``: ``label,youtube_id,time_start,time_end,split`` with files named
  ``<id>_<start:06d>_<end:06d>.mp4`` under ``ROOT/<split>/<label>/``, ``ROOT/<split>/``,
  ``ROOT/<label>/`` or ``ROOT/``; Kay et al. 2017.

Every malformed line or unknown label is a :class:`UserError` naming file and line; a
listed video that does not exist is one too, unless ``on_missing="skip"`` (then a warning
counts them).
"""
from __future__ import annotations

import csv
import os
import warnings
from pathlib import Path

from lightvid.data.video import is_video
from lightvid.errors import UserError

Samples = list[tuple[Path, int]]


def _read_lines(path: Path) -> list[tuple[int, str]]:
    if not path.is_file():
        raise UserError(f"{path}: no such annotation file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a UTF-8 text file") from None
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(),
                                                       1) if line.strip() and not line.startswith("#")]


def parse_label(lab: str, classes: list[str] | None, where: str) -> int:
    """A list file's label column: an integer index or a class name; ``where`` is ``file:line``."""
    if lab.lstrip("-").isdigit():
        label = int(lab)
    elif classes and lab in classes:
        label = classes.index(lab)
    else:
        raise UserError(f"{where}: label {lab!r} is not an integer" + (" or a class name" if classes else ""))
    if label < 0 or (classes is not None and label >= len(classes)):
        raise UserError(f"{where}: unknown label {label}" + (f" ({len(classes)} classes)" if classes else ""))
    return label


def read_classes_txt(path: Path) -> list[str]:
    """One class name per line (an optional leading index ``1 name`` is dropped)."""
    names = []
    for _, line in _read_lines(path):
        parts = line.split(maxsplit=1)
        names.append(parts[1] if len(parts) == 2 and parts[0].isdigit() else line)
    if len(set(names)) != len(names):
        raise UserError(f"{path}: duplicate class names")
    return names


def check_missing(samples: Samples, where: dict, on_missing: str) -> Samples:
    """Drop or refuse samples whose file does not exist; ``where[path]`` names the annotation line."""
    missing = [s for s in samples if not s[0].is_file()]
    if not missing or on_missing == "keep":  # "keep": `data check` reports them itself
        return samples
    first = missing[0][0]
    if on_missing != "skip":
        raise UserError(f"{where.get(first, '?')}: listed video {first} does not exist"
                        + (f" (and {len(missing) - 1} more; data.on_missing=skip drops them)"
                           if len(missing) > 1 else ""))
    warnings.warn(f"skipping {len(missing)} of {len(samples)} listed videos that do not exist (first: {first})",
                  stacklevel=2)
    return [s for s in samples if s[0].is_file()]


def folders(root: Path, split: str, extensions=None) -> tuple[Samples, list[str]]:
    split_dir = root / split
    if not split_dir.is_dir():
        raise UserError(f"{split_dir}: no such split folder")
    if (root / "classes.txt").is_file():
        classes = read_classes_txt(root / "classes.txt")
    else:
        classes = sorted(d.name for d in split_dir.iterdir() if d.is_dir())
    keep = extensions or None
    samples = []
    for d in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        if d.name not in classes:
            raise UserError(f"{d}: class folder {d.name!r} is not in the class list ({root / 'classes.txt'})")
        for f in sorted(d.iterdir()):
            if f.is_file() and (is_video(f) if keep is None else f.suffix.lower() in keep):
                samples.append((f, classes.index(d.name)))
    if not samples:
        raise UserError(f"{split_dir}: no video files in <class>/ subfolders")
    return samples, classes


def list_file(root: Path, split: str, annotations: Path | None = None, on_missing: str = "error") -> tuple[Samples,
                                                                                                           list[str]]:
    ann = annotations if annotations and annotations.is_file() else (annotations or root) / f"{split}.txt"
    classes = read_classes_txt(root / "classes.txt") if (root / "classes.txt").is_file() else None
    samples, where = [], {}
    for n, line in _read_lines(ann):
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2:
            raise UserError(f"{ann}:{n}: expected 'relative/path.mp4 label', got {line!r}")
        rel, lab = parts
        label = parse_label(lab, classes, f"{ann}:{n}")
        path = root / rel
        where[path] = f"{ann}:{n}"
        samples.append((path, label))
    if not samples:
        raise UserError(f"{ann}: no samples")
    if classes is None:
        classes = [str(i) for i in range(max(s[1] for s in samples) + 1)]
    return check_missing(samples, where, on_missing), classes


def _find_ann(root: Path, annotations: Path | None, probe: str, subdirs: tuple[str, ...]) -> Path:
    for d in ([annotations] if annotations else []) + [root] + [root / s for s in subdirs]:
        if d is not None and (d / probe).exists() or (d is not None and list(d.glob(probe))):
            return d
    raise UserError(f"{annotations or root}: no {probe} found (set data.annotations to the folder holding it)")


def ucf101(root: Path, split: str, fold: int = 1, annotations: Path | None = None,
           on_missing: str = "error", train_split: str = "train") -> tuple[Samples, list[str]]:
    ann = _find_ann(root, annotations, "classInd.txt", ("ucfTrainTestlist", "annotations"))
    classes = read_classes_txt(ann / "classInd.txt")
    name = f"{'trainlist' if split == train_split else 'testlist'}0{fold}.txt"
    samples, where = [], {}
    for n, line in _read_lines(ann / name):
        parts = line.split()
        if len(parts) not in (1, 2) or "/" not in parts[0]:
            raise UserError(f"{ann / name}:{n}: expected 'Class/v_name.avi [label]', got {line!r}")
        cls = parts[0].split("/")[0]
        if cls not in classes:
            raise UserError(f"{ann / name}:{n}: unknown class {cls!r} (not in classInd.txt)")
        label = classes.index(cls)
        if len(parts) == 2 and (not parts[1].isdigit() or int(parts[1]) - 1 != label):
            raise UserError(f"{ann / name}:{n}: label {parts[1]!r} does not match class {cls!r} in classInd.txt")
        path = root / parts[0]
        where[path] = f"{ann / name}:{n}"
        samples.append((path, label))
    if not samples:
        raise UserError(f"{ann / name}: no samples")
    return check_missing(samples, where, on_missing), classes


def hmdb51(root: Path, split: str, fold: int = 1, annotations: Path | None = None,
           on_missing: str = "error", train_split: str = "train") -> tuple[Samples, list[str]]:
    suffix = f"_test_split{fold}.txt"
    ann = _find_ann(root, annotations, f"*{suffix}", ("testTrainMulti_7030_splits", "splits", "annotations"))
    files = sorted(ann.glob(f"*{suffix}"))
    classes = [f.name[: -len(suffix)] for f in files]
    want = "1" if split == train_split else "2"
    samples, where = [], {}
    for label, f in enumerate(files):
        for n, line in _read_lines(f):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise UserError(f"{f}:{n}: expected 'video.avi 0|1|2', got {line!r}")
            if parts[1] == want:
                path = root / classes[label] / parts[0]
                where[path] = f"{f}:{n}"
                samples.append((path, label))
    if not samples:
        raise UserError(f"{ann}: no samples marked {want} in *{suffix}")
    return check_missing(samples, where, on_missing), classes


KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end", "split")


def _kinetics_rows(path: Path) -> list[tuple[int, dict]]:
    if not path.is_file():
        raise UserError(f"{path}: no such annotation file")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in KINETICS_COLUMNS[:4] if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{path}:1: CSV header lacks {', '.join(missing)} (expected {','.join(KINETICS_COLUMNS)})")
        rows = []
        for row in reader:
            n = reader.line_num
            if None in row or any(row.get(c) is None for c in KINETICS_COLUMNS[:4]):
                raise UserError(f"{path}:{n}: wrong number of fields")
            try:
                row["time_start"], row["time_end"] = int(float(row["time_start"])), int(float(row["time_end"]))
            except ValueError:
                raise UserError(f"{path}:{n}: time_start/time_end are not numbers") from None
            rows.append((n, row))
    return rows


def kinetics_csv(root: Path, split: str, annotations: Path | None = None, on_missing: str = "error",
                 train_split: str = "train") -> tuple[Samples, list[str]]:
    def csv_for(s: str) -> Path:
        if annotations and annotations.is_file():
            return annotations
        base = annotations or root
        for name in (f"{s}.csv", "validate.csv" if s == "val" else f"{s}.csv"):
            if (base / name).is_file():
                return base / name
        found = sorted(base.glob("*.csv"))
        if len(found) == 1:
            return found[0]
        raise UserError(f"{base}: no {s}.csv (or a single *.csv) Kinetics annotation file")

    def rows_of(s: str) -> list[tuple[Path, int, dict]]:
        path = csv_for(s)
        rows = _kinetics_rows(path)
        if "split" in (rows[0][1] if rows else {}):
            aliases = {s, "validate"} if s == "val" else {s}
            rows = [(n, r) for n, r in rows if r["split"] in aliases or r["split"] == ""]
        return [(path, n, r) for n, r in rows]

    train_rows = rows_of(train_split)
    classes = sorted({r["label"] for _, _, r in train_rows})
    rows = train_rows if split == train_split else rows_of(split)
    samples, where = [], {}
    for path, n, r in rows:
        if r["label"] not in classes:
            raise UserError(f"{path}:{n}: unknown label {r['label']!r} (not in the {train_split} split)")
        name = f"{r['youtube_id']}_{r['time_start']:06d}_{r['time_end']:06d}.mp4"
        cands = [root / split / r["label"] / name, root / split / r["label"].replace(" ", "_") / name,
                 root / split / name, root / r["label"] / name, root / name]
        video = next((c for c in cands if c.is_file()), cands[0])
        where[video] = f"{path}:{n}"
        samples.append((video, classes.index(r["label"])))
    if not samples:
        raise UserError(f"{csv_for(split)}: no rows for split {split!r}")
    return check_missing(samples, where, on_missing), classes


def detect(root: Path, split: str) -> str:
    """Guess the format of ``root`` (see ``DataConfig.format``)."""
    if root.is_file():
        if root.suffix.lower() == ".zip":
            return "image_zip"
        raise UserError(f"{root}: a file, not a dataset folder (a .zip of images is the one file format)")
    if not root.is_dir():
        raise UserError(f"{root}: no such dataset folder")
    if (root / "synth.json").is_file():
        return "list"
    if list(root.glob("classInd.txt")) or list(root.glob("*/classInd.txt")):
        return "ucf101"
    if list(root.glob("*_test_split1.txt")) or list(root.glob("*/*_test_split1.txt")):
        return "hmdb51"
    if (root / "data_batch_1").is_file() or (root / "cifar-10-batches-py" / "data_batch_1").is_file():
        return "cifar10"
    if list(root.glob("*.csv")):
        return "kinetics_csv"
    if (root / f"{split}.txt").is_file():
        return "list"
    split_dir = root / split
    if split_dir.is_dir():
        for d in split_dir.iterdir():
            if d.is_dir():
                for f in d.iterdir():
                    if is_video(f):
                        return "folders"
                    if f.suffix.lower() in IMAGE_EXTENSIONS:
                        return "image_folder"
    raise UserError(f"{root}: cannot tell the dataset format; set data.format")


# what OpenCV reads
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".pgm", ".ppm")


def scan_video_files(root: Path) -> list[Path]:
    """Every video file under ``root`` (for ``lightvid data check`` on a bare folder)."""
    return sorted(Path(dp) / f for dp, _, fs in os.walk(root) for f in fs if is_video(f))
