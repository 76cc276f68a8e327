"""The run folder: its default name, the files a run writes, and opening it safely.

Shared by classification runs (:mod:`lightvid.train.run`) and region runs
(:mod:`lightvid.train.regions`): a new run refuses a folder holding another run's files, leaves
the user's other files alone, and a second process on the same folder is refused by its lock.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from lightvid.errors import UserError
from lightvid.fileio import FolderLock
from lightvid.train.config import TrainConfig


def default_out_dir(cfg: TrainConfig) -> Path:
    return Path("runs") / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"


# Files a run writes in its folder (besides checkpoints/): a new run refuses a folder holding any of them.
RUN_FILES = ("config.yaml", "metrics.csv", "hparams.yaml", "learning_curves.png", "confusion_matrix.png",
             "confusion_matrix.csv", "per_class.csv", "summary.txt", "report.json")


def open_run_folder(out: Path, resume: bool) -> FolderLock:
    """Create ``out`` if needed and lock it; refuse a folder a new run would overwrite anything in.

    A new run needs a folder without any of :data:`RUN_FILES`, ``checkpoints/`` or
    ``metrics.part*.csv`` (other files and folders of the user's are fine and left alone);
    ``--resume`` needs ``checkpoints/last.ckpt``. A second process on the same folder is
    refused by the lock (:class:`lightvid.fileio.FolderLock`).
    """
    last = out / "checkpoints" / "last.ckpt"
    if resume and not last.is_file():
        raise UserError(f"{last}: no checkpoint to resume from")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    lock = FolderLock(out, "training run").acquire()
    try:
        if not resume:
            if last.exists():
                raise UserError(f"{out}: already holds a run; pass --resume to continue it, or choose another --out")
            taken = [n for n in (*RUN_FILES, "checkpoints") if os.path.lexists(out / n)]
            taken += sorted(p.name for p in out.glob("metrics.part*.csv"))
            if taken:
                raise UserError(f"{out / taken[0]}: exists, and a new run would overwrite it; choose another --out "
                                "(an empty or new folder) or move it away (nothing was changed)")
    except BaseException:
        lock.release()
        raise
    return lock
