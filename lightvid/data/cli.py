"""``lightvid data synth|check|extract-frames|reencode|shard``."""
from __future__ import annotations

import argparse
import sys


def _synth(argv: list[str], prog: str) -> int:
    from lightvid.data.synth import DEFAULTS, ensure_synth, read_stamp

    p = argparse.ArgumentParser(prog=prog, description="Write the synthetic motion set (H.264 mp4, class folders, "
                                "classes.txt, train.txt/val.txt); a folder already holding it is left as is.")
    p.add_argument("out", help="output folder")
    for key in ("classes", "train", "val", "frames", "size", "seed", "fps"):
        p.add_argument(f"--{key}", type=int, default=DEFAULTS[key], help=f"(default {DEFAULTS[key]})")
    p.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    args = p.parse_args(argv)
    params = {k: getattr(args, k) for k in DEFAULTS}
    before = read_stamp(args.out)
    root = ensure_synth(args.out, workers=max(1, args.workers), **params)
    state = "already there" if before == read_stamp(root) else "written"
    print(f"{root}: {params['train']} train + {params['val']} val clips, {params['classes']} classes, "
          f"{params['frames']}x{params['size']}x{params['size']} ({state})")
    return 0


def _synth_objects(argv: list[str], prog: str) -> int:
    from lightvid.data.synth_objects import DEFAULTS, generate_objects

    p = argparse.ArgumentParser(prog=prog, description="Write synthetic videos of moving textured shapes over "
                                "procedural or photo backgrounds, with per-frame boxes, masks, track ids and actions "
                                "(COCO-style annotations.json per video; see docs/regions.md).")
    p.add_argument("out", help="output folder (empty, or an unfinished / identical objects set)")
    for key in ("train", "val", "frames", "size", "max_objects", "min_radius", "max_radius", "seed", "fps",
                "distractor_prob", "noise"):
        p.add_argument(f"--{key.replace('_', '-')}", type=type(DEFAULTS[key]), default=DEFAULTS[key],
                       help=f"(default {DEFAULTS[key]})")
    p.add_argument("--backgrounds", default=None, help="image folder (searched recursively) for photo backgrounds "
                   "(default: procedural backgrounds)")
    p.add_argument("--patches", action="store_true", help="texture some objects with patches of the photos")
    p.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    args = p.parse_args(argv)
    params = {k: getattr(args, k) for k in DEFAULTS}
    root, written = generate_objects(args.out, workers=max(1, args.workers), **params)
    print(f"{root}: {params['train']} train + {params['val']} val videos of {params['frames']} frames "
          f"{params['size']}x{params['size']} ({'written' if written else 'already there'})")
    return 0


def _add_dataset_options(p: argparse.ArgumentParser, split_help: str) -> None:
    """Which dataset layout, splits and annotations to read (``check``, ``shard``)."""
    from lightvid.data.build import FORMATS

    p.add_argument("--format", default="auto", choices=FORMATS)
    p.add_argument("--split", action="append", default=None, help=f"{split_help} (repeatable; default train and val)")
    p.add_argument("--annotations", default=None, help="folder of annotation files when not in the dataset folder")
    p.add_argument("--fold", type=int, default=1, help="UCF101/HMDB51 split 1-3")


def _add_src_dst(p: argparse.ArgumentParser, src_help: str) -> None:
    p.add_argument("src", help=src_help)
    p.add_argument("dst", help="output folder (not inside SRC)")


def _check(argv: list[str], prog: str) -> int:
    from lightvid.data.check import check_dataset

    p = argparse.ArgumentParser(prog=prog, description="List every bad file of a dataset with its reason; "
                                "exit status 1 when there is any.")
    p.add_argument("dataset", help="dataset folder (or .zip of images, or 'digits')")
    _add_dataset_options(p, "split to check")
    p.add_argument("--full", action="store_true", help="decode every frame (default: index + first and last frame)")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    checked, bad = check_dataset(args.dataset, args.format, args.split, full=args.full, workers=args.workers,
                                 annotations=args.annotations, fold=args.fold)
    for line in bad:
        print(f"bad: {line}")
    print(f"{args.dataset}: {checked} files checked, {len(bad)} bad", file=sys.stderr if bad else sys.stdout)
    return 1 if bad else 0


def _report(done: str, result: dict, dst) -> int:
    for line in result["failed"]:
        print(f"bad: {line}")
    print(f"{dst}: {done}, {len(result['failed'])} failed", file=sys.stderr if result["failed"] else sys.stdout)
    return 1 if result["failed"] else 0


def _extract_frames(argv: list[str], prog: str) -> int:
    from lightvid.data.convert import extract_frames

    p = argparse.ArgumentParser(prog=prog, description="Decode every video under SRC into a folder of frames "
                                "DST/<relative path>/img_00001.jpg (MMAction2 rawframe layout), plus <split>.txt "
                                "lists ('frame_dir total_frames label') when SRC is a dataset. SRC is only read; "
                                "finished folders are skipped on a rerun.")
    _add_src_dst(p, "video file or folder")
    p.add_argument("--ext", default="jpg", choices=("jpg", "png"), help="frame file type (png: lossless)")
    p.add_argument("--quality", type=int, default=95, help="JPEG quality (default 95)")
    p.add_argument("--short-side", type=int, default=None, help="resize the short side (default: keep)")
    p.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    args = p.parse_args(argv)
    r = extract_frames(args.src, args.dst, args.ext, args.quality, args.short_side, max(1, args.workers))
    lists = f", lists {', '.join(r['lists'])}" if r["lists"] else ""
    return _report(f"{r['written']} videos extracted, {r['skipped']} already there{lists}", r, args.dst)


def _reencode(argv: list[str], prog: str) -> int:
    from lightvid.data.convert import reencode

    p = argparse.ArgumentParser(prog=prog, description="Re-encode every video under SRC to H.264 (libx264) in DST "
                                "with a keyframe every GOP frames, optionally a smaller short side; annotation files "
                                "are copied. SRC is only read; finished files are skipped on a rerun.")
    _add_src_dst(p, "video file or folder")
    p.add_argument("--gop", type=int, default=16, help="keyframe interval in frames (default 16)")
    p.add_argument("--short-side", type=int, default=None, help="scale the short side down to this (default: keep)")
    p.add_argument("--crf", type=int, default=23, help="x264 constant rate factor (default 23; lower = better)")
    p.add_argument("--preset", default="medium", help="x264 preset (default medium)")
    p.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    args = p.parse_args(argv)
    r = reencode(args.src, args.dst, args.gop, args.short_side, args.crf, args.preset, max(1, args.workers))
    return _report(f"{r['written']} videos re-encoded, {r['skipped']} already there, {r['copied']} annotation "
                   "files copied", r, args.dst)


def _shard(argv: list[str], prog: str) -> int:
    from lightvid.data.convert import write_shards
    from lightvid.data.jobs import parse_size

    p = argparse.ArgumentParser(prog=prog, description="Write a labelled video dataset as tar shards in the "
                                "WebDataset layout (<key>.mp4 + <key>.json per sample), DST/<split>/shard-NNNNNN.tar, "
                                "for `data.format: shards`. SRC is only read; finished shards are skipped on a rerun.")
    _add_src_dst(p, "dataset folder")
    p.add_argument("--shard-size", default="1GB", help="bytes per shard at most (1GB, 500MB, 512MiB; default 1GB)")
    _add_dataset_options(p, "split to write")
    p.add_argument("--seed", type=int, default=0, help="the order of the samples in the shards (default 0)")
    args = p.parse_args(argv)
    report = write_shards(args.src, args.dst, parse_size(args.shard_size), args.format, args.split, args.seed,
                          annotations=args.annotations, fold=args.fold)
    missing = 0
    for split, r in report.items():
        missing += r["missing"]
        print(f"{args.dst}/{split}: {r['samples']} samples in {r['shards']} shards ({r['written']} written, "
              f"{r['skipped']} already there)" + (f"; {r['missing']} listed videos missing, left out" if r["missing"]
                                                   else ""))
    return 1 if missing else 0


SUBCOMMANDS = {"synth": _synth, "synth-objects": _synth_objects, "check": _check, "extract-frames": _extract_frames,
               "reencode": _reencode,
               "shard": _shard}


def data_command(argv: list[str], prog: str = "lightvid data") -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: {prog} {{{','.join(SUBCOMMANDS)}}} ...\n\n"
              "  synth OUT                write the synthetic motion set (see `synth --help`)\n"
              "  synth-objects OUT        moving-objects videos with boxes, masks, tracks, actions\n"
              "  check DATASET            list every bad file with its reason (exit 1 if any)\n"
              "  extract-frames SRC DST   videos -> folders of JPEG/PNG frames (rawframes format)\n"
              "  reencode SRC DST         re-encode videos with short keyframe intervals (--gop 16)\n"
              "  shard SRC DST            a dataset -> tar shards, WebDataset layout (shards format)")
        return 0
    if argv[0] not in SUBCOMMANDS:
        print(f"error: unknown data subcommand {argv[0]!r}; use {', '.join(SUBCOMMANDS)}", file=sys.stderr)
        return 2
    return SUBCOMMANDS[argv[0]](argv[1:], f"{prog} {argv[0]}")
