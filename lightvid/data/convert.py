"""The dataset-converting commands: ``extract-frames``, ``reencode`` and ``shard``.

None of them writes into or deletes anything of the source (a destination inside, equal to
or around the source is refused). Every output file or frame folder is written under a
temporary name and renamed when complete, so an interrupted run leaves no half-written
output, and a rerun skips what is finished. Bad source videos are counted and listed, never
fatal for the others.

* :func:`extract_frames`: videos -> raw-frame folders (``img_00001.jpg``, MMAction2 layout).
* :func:`reencode`: videos -> H.264 with a short keyframe interval (``gop``) and optionally a
  smaller short side, through PyAV/libx264 (MMAction2's data-preparation advice: short GOPs
  make the seek before each clip cheap).
* :func:`write_shards`: a labelled video dataset -> tar shards in the WebDataset layout
  (``<key>.mp4`` + ``<key>.json`` per sample), written with the ``webdataset`` library.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import warnings
from fractions import Fraction
from pathlib import Path

from lightvid.data.build import DataConfig, video_samples
from lightvid.data.formats import scan_video_files
from lightvid.data.jobs import (
    check_src_dst,
    remove_stale_temps,
    run_parallel,
    temp_name,
    write_json_atomic,
)
from lightvid.data.rawframes import (
    FRAME_EXTENSIONS,
    count_frames,
    frame_ext,
    frame_name,
)
from lightvid.data.rawframes import STAMP as RAWFRAMES_STAMP
from lightvid.data.video import VideoDecodeError, _open, _reason, output_size, probe
from lightvid.errors import UserError


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{path}: not a JSON file written by lightvid") from None


def _frames_by_timestamp(container):
    """The frames of ``container``'s first video stream in decoding order, one per timestamp (a
    duplicate timestamp is one frame in ``read_clip``'s index too), on one decoder thread."""
    stream = container.streams.video[0]
    stream.codec_context.thread_count = 1
    last = None
    for frame in container.decode(stream):
        ts = frame.pts if frame.pts is not None else frame.dts
        if ts is not None and ts == last:
            continue
        last = ts
        yield frame


def _check_all_decoded(src: Path, decoded: int, frames: int) -> None:
    if decoded < frames:
        raise VideoDecodeError(f"{src}: truncated or corrupt, {decoded} of {frames} frames decode")


# -- raw frames -------------------------------------------------------------------------------
def _extract_job(job) -> tuple[str, int, float, str | None]:
    """Decode one video into a frame folder; ``(rel, frames, fps, error or None)``."""
    import av
    import cv2

    src, dst, rel, ext, quality, short_side = job
    src, dst = Path(src), Path(dst)
    if dst.is_dir():
        try:
            info = probe(src)
        except VideoDecodeError as e:
            return rel, 0, 0.0, str(e)
        return rel, count_frames(dst, frame_ext(dst) or ext), info.fps, None
    remove_stale_temps(dst)
    tmp = temp_name(dst)
    try:
        info = probe(src)
        tmp.mkdir(parents=True)
        params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext in ("jpg", "jpeg") else [cv2.IMWRITE_PNG_COMPRESSION, 1]
        w, h = output_size(info.width, info.height, short_side)
        container = _open(src)
        n = 0
        try:
            for frame in _frames_by_timestamp(container):
                if (w, h) != (info.width, info.height):
                    rgb = frame.reformat(width=w, height=h, format="rgb24", interpolation="BILINEAR").to_ndarray()
                else:
                    rgb = frame.to_ndarray(format="rgb24")
                if not cv2.imwrite(str(tmp / frame_name(n, ext)), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params):
                    raise OSError(f"cannot write {tmp / frame_name(n, ext)}")
                n += 1
        except av.FFmpegError as e:
            raise VideoDecodeError(f"{src}: decoding failed ({_reason(e)})") from None
        finally:
            container.close()
        _check_all_decoded(src, n, info.frames)
        os.rename(tmp, dst)
        return rel, n, info.fps, None
    except (VideoDecodeError, OSError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        return rel, 0, 0.0, str(e)


def extract_frames(src: str | os.PathLike, dst: str | os.PathLike, ext: str = "jpg", quality: int = 95,
                   short_side: int | None = None, workers: int = 2, progress: bool = True) -> dict:
    """Write every video under ``src`` as a frame folder under ``dst``; ``src`` is only read.

    Returns ``{"written": n, "skipped": n (already there), "failed": ["path: reason", ...],
    "lists": [split list files written]}``.
    """
    src, dst = check_src_dst(src, dst)
    ext = ext.lower().lstrip(".")
    if ext not in FRAME_EXTENSIONS:
        raise UserError(f"--ext: must be one of {', '.join(FRAME_EXTENSIONS)}, got {ext!r}")
    if not 1 <= quality <= 100:
        raise UserError(f"--quality: must be in [1, 100], got {quality}")
    stamp = _read_json(dst / RAWFRAMES_STAMP)
    params = {"ext": ext, "quality": quality, "short_side": short_side}
    if stamp and any(stamp.get(k) != v for k, v in params.items()):
        old = {k: stamp.get(k) for k in params}
        raise UserError(f"{dst / RAWFRAMES_STAMP}: this folder holds frames extracted with {old}, "
                        f"not {params}; choose another destination")
    videos = [src] if src.is_file() else scan_video_files(src)
    if not videos:
        raise UserError(f"{src}: no video files")
    base = src.parent if src.is_file() else src
    jobs = []
    for v in videos:
        rel = v.relative_to(base).with_suffix("").as_posix()
        jobs.append((str(v), str(dst / rel), rel, ext, quality, short_side))
    dst.mkdir(parents=True, exist_ok=True)
    already = sum(Path(j[1]).is_dir() for j in jobs)
    frames, fps, failed = {}, {}, []
    for rel, n, rate, err in run_parallel(_extract_job, jobs, workers, f"extract {src.name}", progress=progress):
        if err:
            failed.append(err)
        else:
            frames[rel], fps[rel] = n, rate
    lists = [] if src.is_file() else _write_lists(src, dst, frames)
    write_json_atomic(dst / RAWFRAMES_STAMP, {**params, "source": str(src.resolve()), "fps": dict(sorted(fps.items())),
                                    "frames": dict(sorted(frames.items()))})
    return {"written": len(frames) - already, "skipped": already, "failed": sorted(failed), "lists": lists}


def _write_lists(src: Path, dst: Path, frames: dict[str, int]) -> list[str]:
    """``<split>.txt`` (``frame_dir total_frames label``) and ``classes.txt`` when ``src`` parses as a dataset."""
    cfg = DataConfig(root=str(src), on_missing="skip")
    try:
        cfg.resolved_format()
    except UserError:
        return []
    written, classes = [], None
    for split in dict.fromkeys((cfg.train_split, cfg.val_split, cfg.test_split)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                samples_, classes_ = video_samples(cfg, split)
        except UserError:
            continue
        lines = []
        for path, label in samples_:
            rel = path.relative_to(src).with_suffix("").as_posix()
            if rel in frames:  # failed videos are left out (and reported)
                lines.append(f"{rel} {frames[rel]} {label}\n")
        if lines:
            target = dst / f"{split}.txt"
            tmp = temp_name(target)
            tmp.write_text("".join(lines))
            os.replace(tmp, target)
            written.append(target.name)
            classes = classes or classes_
    if classes:
        target = dst / "classes.txt"
        tmp = temp_name(target)
        tmp.write_text("".join(f"{c}\n" for c in classes))
        os.replace(tmp, target)
    return written


# -- short-GOP re-encoding --------------------------------------------------------------------
REENCODE_STAMP = "reencode.json"
COPIED_SUFFIXES = (".txt", ".csv", ".json", ".lst")  # annotation files travel with the videos
NOT_COPIED = ("synth.json", REENCODE_STAMP, RAWFRAMES_STAMP, "shards.json")  # stamps that would lie about DST


def _even(x: int) -> int:
    return max(2, x - x % 2)  # yuv420p needs even sides: one pixel less at most


def reencode_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    """Output ``(w, h)``: the short side scaled down to ``short_side`` (never up), both even (yuv420p)."""
    if short_side and short_side < min(width, height):
        width, height = output_size(width, height, short_side)
    return _even(width), _even(height)


def _reencode_job(job) -> tuple[str, str, str | None]:
    """``(rel, "written" | "skipped", error or None)``."""
    import av

    src, dst, rel, gop, short_side, crf, preset = job
    src, dst = Path(src), Path(dst)
    if dst.exists():
        return rel, "skipped", None
    remove_stale_temps(dst)
    tmp = temp_name(dst, dst.suffix)  # the suffix lets FFmpeg choose the container
    try:
        info = probe(src)
        w, h = reencode_size(info.width, info.height, short_side)
        inp = _open(src)
        try:
            vs = inp.streams.video[0]
            rate = vs.average_rate or Fraction(info.fps or 25).limit_denominator(1001)
            dst.parent.mkdir(parents=True, exist_ok=True)
            out = av.open(str(tmp), "w")
            try:
                options = {"crf": str(crf), "preset": preset, "threads": "1"}
                if dst.suffix.lower() == ".avi":
                    options["bf"] = "0"  # AVI has no presentation timestamps for B-frames
                st = out.add_stream("libx264", rate=rate, options=options)
                st.width, st.height, st.pix_fmt = w, h, "yuv420p"
                st.codec_context.gop_size = gop
                tb = Fraction(rate.denominator, rate.numerator)
                n = 0
                for frame in _frames_by_timestamp(inp):
                    # frame i stays frame i: constant rate (a variable-rate source keeps its average)
                    f = frame.reformat(width=w, height=h, format="yuv420p", interpolation="AREA")
                    f.pts, f.time_base = n, tb
                    for packet in st.encode(f):
                        out.mux(packet)
                    n += 1
                for packet in st.encode():
                    out.mux(packet)
            finally:
                out.close()
        except av.FFmpegError as e:
            raise VideoDecodeError(f"{src}: re-encoding failed ({_reason(e)})") from None
        finally:
            inp.close()
        _check_all_decoded(src, n, info.frames)
        os.replace(tmp, dst)
        return rel, "written", None
    except (VideoDecodeError, OSError, ValueError) as e:
        tmp.unlink(missing_ok=True)
        return rel, "failed", str(e)


def reencode(src: str | os.PathLike, dst: str | os.PathLike, gop: int = 16, short_side: int | None = None,
             crf: int = 23, preset: str = "medium", workers: int = 2, progress: bool = True) -> dict:
    """Re-encode every video under ``src`` into ``dst`` (same relative paths and names) with keyframes every
    ``gop`` frames; annotation files (``*.txt``, ``*.csv``, ``*.json``, ``*.lst``) are copied.

    Returns ``{"written": n, "skipped": n, "failed": ["path: reason", ...], "copied": n}``.
    """
    src, dst = check_src_dst(src, dst)
    if not isinstance(gop, int) or gop < 1:
        raise UserError(f"--gop: must be a positive integer, got {gop!r}")
    if short_side is not None and short_side < 2:
        raise UserError(f"--short-side: must be at least 2, got {short_side!r}")
    if not 0 <= crf <= 51:
        raise UserError(f"--crf: must be in [0, 51], got {crf!r}")
    params = {"gop": gop, "short_side": short_side, "crf": crf, "preset": preset}
    stamp = _read_json(dst / REENCODE_STAMP)
    if stamp and any(stamp.get(k) != v for k, v in params.items()):
        raise UserError(f"{dst / REENCODE_STAMP}: this folder holds videos re-encoded with "
                        f"{ {k: stamp.get(k) for k in params} }, not {params}; choose another destination")
    videos = [src] if src.is_file() else scan_video_files(src)
    if not videos:
        raise UserError(f"{src}: no video files")
    base = src.parent if src.is_file() else src
    dst.mkdir(parents=True, exist_ok=True)
    write_json_atomic(dst / REENCODE_STAMP, {**params, "source": str(src.resolve()), "complete": False})
    jobs = [(str(v), str(dst / v.relative_to(base)), v.relative_to(base).as_posix(), gop, short_side, crf, preset)
            for v in videos]
    counts, failed = {"written": 0, "skipped": 0, "failed": 0}, []
    for _, state, err in run_parallel(_reencode_job, jobs, workers, f"reencode {src.name}", progress=progress):
        counts[state] += 1
        if err:
            failed.append(err)
    copied = 0
    if src.is_dir():
        for dp, _, files in os.walk(src):
            for name in files:
                f = Path(dp) / name
                if f.suffix.lower() in COPIED_SUFFIXES and name not in NOT_COPIED:
                    target = dst / f.relative_to(src)
                    if not target.exists():
                        target.parent.mkdir(parents=True, exist_ok=True)
                        tmp = temp_name(target)
                        shutil.copyfile(f, tmp)
                        os.replace(tmp, target)
                        copied += 1
    write_json_atomic(dst / REENCODE_STAMP, {**params, "source": str(src.resolve()), "complete": not failed,
                                            "videos": len(jobs), "failed": len(failed)})
    return {"written": counts["written"], "skipped": counts["skipped"], "failed": sorted(failed), "copied": copied}


# -- tar shards (WebDataset layout) -------------------------------------------------------------
SHARDS_MANIFEST = "shards.json"
TAR_OVERHEAD = 3 * 512  # two member headers and padding per sample, roughly


def _plan(samples: list[tuple[Path, int]], shard_size: int) -> list[list[int]]:
    """Consecutive groups of sample positions whose bytes stay under ``shard_size`` (at least one each)."""
    groups, cur, size = [], [], 0
    for i, (path, _) in enumerate(samples):
        n = path.stat().st_size + TAR_OVERHEAD
        if cur and size + n > shard_size:
            groups.append(cur)
            cur, size = [], 0
        cur.append(i)
        size += n
    if cur:
        groups.append(cur)
    return groups


def write_shards(src: str | os.PathLike, dst: str | os.PathLike, shard_size: int = 10**9, fmt: str = "auto",
                 splits: list[str] | None = None, seed: int = 0, progress: bool = True, **cfg_kwargs) -> dict:
    """Write each split of the labelled video dataset ``src`` as tar shards ``dst/<split>/shard-000000.tar``.

    The samples are shuffled once (``seed``) before packing, so every shard mixes the classes
    (a reader streams shards sequentially with a bounded shuffle buffer). Each sample is
    ``<key>.<ext>`` (the video file's bytes as they are) and ``<key>.json``
    (``{"label", "class", "path", "index"}``; ``index`` is the sample's position in the split).
    ``dst/<split>/shards.json`` lists the shards and their sample counts; it is written first
    with ``"complete": false`` (a rerun with the same plan skips finished shards, another plan
    is refused) and rewritten as complete at the end. Returns ``{split: {"shards", "samples",
    "written", "skipped", "missing"}}``.
    """
    from tqdm import tqdm

    from lightvid.data.shards import require_webdataset

    TarWriter = require_webdataset().TarWriter
    src, dst = check_src_dst(src, dst)
    if fmt in ("rawframes", "shards"):
        raise UserError(f"--format: {fmt} cannot be sharded; shard a video dataset")
    cfg = DataConfig(root=str(src), format=fmt, on_missing="skip", **cfg_kwargs)
    resolved = cfg.resolved_format()
    if resolved in ("rawframes", "shards") or resolved not in ("folders", "list", "ucf101", "hmdb51", "kinetics_csv",
                                                                  "synth"):
        raise UserError(f"{src}: a {resolved} dataset; `data shard` takes a labelled video dataset")
    report, classes = {}, None
    wanted = splits or list(dict.fromkeys((cfg.train_split, cfg.val_split, cfg.test_split)))
    for split in wanted:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                samples, split_classes = video_samples(cfg, split)
        except UserError as e:
            if splits:
                raise
            if split != cfg.train_split:
                continue  # an absent optional split
            raise UserError(f"{src}: cannot read the {split} split ({e})") from None
        missing = sum("do not exist" in str(w.message) for w in caught)
        classes = classes or split_classes
        order = list(range(len(samples)))
        random.Random(seed).shuffle(order)
        samples = [samples[i] for i in order]
        groups = _plan(samples, shard_size)
        shards = []
        for k, g in enumerate(groups):
            ident = "\n".join(f"{p.relative_to(src).as_posix()}:{p.stat().st_size}:{lab}"
                               for p, lab in (samples[i] for i in g))
            digest = hashlib.sha1(ident.encode()).hexdigest()[:16]
            shards.append({"name": f"shard-{k:06d}.tar", "samples": len(g), "digest": digest})
        out = dst / split
        manifest_path = out / SHARDS_MANIFEST
        old = _read_json(manifest_path)
        if old and [(s["name"], s["samples"], s["digest"]) for s in old.get("shards", [])] != \
                [(s["name"], s["samples"], s["digest"]) for s in shards]:
            raise UserError(f"{manifest_path}: this folder holds shards of another source, shard size or seed; "
                            "choose another destination")
        out.mkdir(parents=True, exist_ok=True)
        manifest = {"split": split, "classes": split_classes, "samples": len(samples), "shards": shards,
                    "shard_size": shard_size, "seed": seed, "source": str(src.resolve()), "complete": False}
        write_json_atomic(manifest_path, manifest)
        written = skipped = 0
        for k, g in enumerate(tqdm(groups, desc=f"shard {split}", unit="shard", disable=not progress)):
            target = out / shards[k]["name"]
            if target.exists():
                skipped += 1
                continue
            remove_stale_temps(target)
            tmp = temp_name(target)
            with open(tmp, "wb") as fh:
                writer = TarWriter(fh, encoder=False)
                for i in g:
                    path, label = samples[i]
                    meta = {"label": int(label), "class": split_classes[label], "index": i,
                            "path": path.relative_to(src).as_posix()}
                    writer.write({"__key__": f"{i:08d}", path.suffix.lower().lstrip("."): path.read_bytes(),
                                  "json": json.dumps(meta).encode()})
                writer.close()
            os.replace(tmp, target)
            written += 1
        write_json_atomic(manifest_path, {**manifest, "complete": True})
        report[split] = {"shards": len(shards), "samples": len(samples), "written": written, "skipped": skipped,
                         "missing": missing}
    if classes:
        target = dst / "classes.txt"
        tmp = temp_name(target)
        tmp.write_text("".join(f"{c}\n" for c in classes))
        os.replace(tmp, target)
    write_json_atomic(dst / SHARDS_MANIFEST, {"splits": sorted(report), "shard_size": shard_size, "seed": seed,
                                              "source": str(src.resolve())})
    return report
