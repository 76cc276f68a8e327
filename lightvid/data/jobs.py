"""What the dataset-converting commands share (``extract-frames``, ``reencode``, ``shard``).

* :func:`check_src_dst`: the source must exist and the destination may be neither the
  source, nor inside it, nor around it (the source is only ever read).
* :func:`run_parallel`: a function over jobs in worker processes with a progress bar;
  failures are collected (one line each), never fatal for the other jobs.
* :func:`write_json_atomic`, :func:`parse_size`, :func:`remove_stale_temps`.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import re
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

from lightvid.errors import UserError

TEMP_MARK = ".lightvid-tmp-"  # the infix of every temporary name these commands create


def check_src_dst(src: str | os.PathLike, dst: str | os.PathLike) -> tuple[Path, Path]:
    src, dst = Path(src), Path(dst)
    if not src.exists():
        raise UserError(f"{src}: no such source folder")
    s, d = src.resolve(), dst.resolve()
    if d == s:
        raise UserError(f"{dst}: the destination is the source; choose a new folder")
    if s in d.parents:
        raise UserError(f"{dst}: the destination is inside the source {src}; choose a folder outside it")
    if d in s.parents:
        raise UserError(f"{dst}: the destination contains the source {src}; choose a folder outside it")
    return src, dst


def temp_name(final: Path, suffix: str = "") -> Path:
    """A hidden temporary sibling of ``final`` (renamed onto it when complete)."""
    return final.parent / f".{final.name}{TEMP_MARK}{os.getpid()}{suffix}"


def remove_stale_temps(final: Path) -> None:
    """Remove temporaries of ``final`` left by an interrupted run (only names these commands make)."""
    if not final.parent.is_dir():
        return
    for p in final.parent.glob(f".{glob_escape(final.name)}{TEMP_MARK}*"):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)


def glob_escape(name: str) -> str:
    return re.sub(r"([\[\]*?])", r"[\1]", name)


def write_json_atomic(path: Path, obj) -> None:
    tmp = temp_name(path)
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(text: str) -> int:
    """``"1GB"`` -> 10**9, ``"512MiB"`` -> 2**29, ``"2000000"`` -> 2000000 (decimal units, binary with ``i``)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise UserError(f"--shard-size: expected a size like 1GB, 500MB or 512MiB, got {text!r}")
    n = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if n < 1:
        raise UserError(f"--shard-size: must be positive, got {text!r}")
    return n


def run_parallel(fn: Callable, jobs: list, workers: int, desc: str, unit: str = "video",
                 progress: bool = True) -> Iterable:
    """``fn(job)`` for every job, in ``workers`` processes (fork), yielding results as they finish."""
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc=desc, unit=unit, disable=not progress)
    try:
        if workers > 1 and len(jobs) > 1:
            with mp.get_context("fork").Pool(min(workers, len(jobs))) as pool:
                for out in pool.imap_unordered(fn, jobs):
                    bar.update()
                    yield out
        else:
            for job in jobs:
                out = fn(job)
                bar.update()
                yield out
    finally:
        bar.close()
