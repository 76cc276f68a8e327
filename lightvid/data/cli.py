"""``lightvid data synth OUT`` and ``lightvid data check DATASET``."""
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


def _check(argv: list[str], prog: str) -> int:
    from lightvid.data.build import FORMATS
    from lightvid.data.check import check_dataset

    p = argparse.ArgumentParser(prog=prog, description="List every bad file of a dataset with its reason; "
                                "exit status 1 when there is any.")
    p.add_argument("dataset", help="dataset folder (or .zip of images, or 'digits')")
    p.add_argument("--format", default="auto", choices=FORMATS)
    p.add_argument("--split", action="append", default=None, help="split to check (repeatable; default train and val)")
    p.add_argument("--annotations", default=None, help="folder of annotation files when not in the dataset folder")
    p.add_argument("--fold", type=int, default=1, help="UCF101/HMDB51 split 1-3")
    p.add_argument("--full", action="store_true", help="decode every frame (default: index + first and last frame)")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    checked, bad = check_dataset(args.dataset, args.format, args.split, full=args.full, workers=args.workers,
                                 annotations=args.annotations, fold=args.fold)
    for line in bad:
        print(f"bad: {line}")
    print(f"{args.dataset}: {checked} files checked, {len(bad)} bad", file=sys.stderr if bad else sys.stdout)
    return 1 if bad else 0


SUBCOMMANDS = {"synth": _synth, "synth-objects": _synth_objects, "check": _check}


def data_command(argv: list[str], prog: str = "lightvid data") -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: {prog} {{synth,synth-objects,check}} ...\n\n"
              "  synth OUT      write the synthetic motion set (see `synth --help`)\n"
              "  synth-objects OUT  write moving-objects videos with boxes, masks, tracks, actions\n"
              "  check DATASET  list every bad file with its reason (exit 1 if any)")
        return 0
    if argv[0] not in SUBCOMMANDS:
        print(f"error: unknown data subcommand {argv[0]!r}; use synth, synth-objects or check", file=sys.stderr)
        return 2
    return SUBCOMMANDS[argv[0]](argv[1:], f"{prog} {argv[0]}")
