"""``lightvid track``: follow one object through a video; ``track synth``, ``track train``; ``eval --task track``.

    lightvid track VIDEO --box x,y,w,h --checkpoint RUN/sint.ckpt [--out boxes.json] [--video out.mp4]
    lightvid track VIDEO --box x,y,w,h --tracker ncc
    lightvid track synth OUT [--train 40 --val 8 --test 16 ...]
    lightvid track train --data OUT --out RUN [--steps 600 ...]
    lightvid eval --task track --checkpoint RUN/sint.ckpt --data OUT [--split test] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lightvid.errors import UserError
from lightvid.fileio import atomic_path, write_text_atomic


def _parse_box(text: str) -> list[float]:
    try:
        box = [float(v) for v in text.split(",")]
    except ValueError:
        box = []
    if len(box) != 4 or box[2] <= 0 or box[3] <= 0:
        raise argparse.ArgumentTypeError(f"--box expects x,y,w,h with w, h > 0, got {text!r}")
    return box


def _parse_set(items: list[str]) -> dict:
    """``["radii=(0.1,0.2)", "context=3.5"]`` -> dict of Python literals."""
    from lightvid.args import parse_kw

    return parse_kw(items)


def _read_frames(path: Path):
    """A video file or a folder of frame images -> ``(T, H, W, 3)`` uint8 numpy."""
    import numpy as np

    if path.is_dir():
        import cv2

        from lightvid.data.formats import IMAGE_EXTENSIONS

        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise UserError(f"{path}: no frame images in this folder")
        frames = []
        for f in files:
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is None:
                raise UserError(f"{f}: unreadable image")
            frames.append(img[..., ::-1])
        if len({f.shape for f in frames}) > 1:
            raise UserError(f"{path}: frames differ in size")
        return np.stack(frames)
    if not path.is_file():
        raise UserError(f"{path}: no such video file or frame folder")
    from lightvid.data.video import read_all_frames

    return read_all_frames(path).numpy()


def make_tracker(name: str, checkpoint: str | None, settings: dict):
    from lightvid.track.ncc import NCCConfig, NCCTracker

    if name == "ncc":
        try:
            return NCCTracker(NCCConfig(**settings))
        except TypeError as e:
            raise UserError(f"--set: {e}") from None
    if checkpoint is None:
        raise UserError("the sint tracker needs --checkpoint (a `lightvid track train` run's sint.ckpt)")
    from lightvid.track.tracker import load_tracker

    try:
        return load_tracker(checkpoint, **settings)
    except ValueError as e:
        raise UserError(f"--set: {e}") from None


def annotate(frames, boxes, colour=(255, 64, 32)):
    """Copies of ``frames`` with each frame's box drawn and its index written."""
    import cv2
    import numpy as np

    out = frames.copy()
    for t, (frame, b) in enumerate(zip(out, boxes)):
        x, y, w, h = (int(round(v)) for v in b)
        cv2.rectangle(frame, (x, y), (x + w, y + h), colour, 2)
        cv2.putText(frame, str(t), (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return np.ascontiguousarray(out)


def _write_mp4(path: Path, frames, fps: int) -> None:
    import numpy as np

    from lightvid.data.synth import write_mp4

    h, w = frames.shape[1:3]
    if h % 2 or w % 2:  # yuv420p needs even sizes
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    with atomic_path(path) as tmp:
        write_mp4(tmp, frames, fps=fps)


def _refuse_existing(*paths: Path | None) -> None:
    for p in paths:
        if p is not None and p.exists():
            raise UserError(f"{p} exists; nothing is overwritten (choose another path)")


def track_command(argv: list[str], prog: str = "lightvid track") -> int:
    if argv and argv[0] in ("synth", "train") and not Path(argv[0]).exists():
        return {"synth": synth_command, "train": train_command}[argv[0]](argv[1:], prog=f"{prog} {argv[0]}")
    p = argparse.ArgumentParser(prog=prog, description="Follow the object in --box through VIDEO (Siamese "
                                "instance search, Tao et al. CVPR 2016; or the NCC template-matching baseline). "
                                "Also: `track synth OUT` (generated sequences), `track train` (the model).")
    p.add_argument("video", help="a video file or a folder of frame images")
    p.add_argument("--box", required=True, type=_parse_box, help="the object in the first frame: x,y,w,h (pixels)")
    p.add_argument("--checkpoint", help="sint.ckpt from `lightvid track train` (the sint tracker)")
    p.add_argument("--tracker", choices=("sint", "ncc"), default="sint", help="default: sint")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="tracker setting, e.g. context=4.0 or scales=(0.95,1.0,1.05) (repeatable)")
    p.add_argument("--out", help="boxes JSON (default VIDEO-stem.boxes.json next to the video)")
    p.add_argument("--video", dest="video_out", help="also write the frames with the box drawn as this MP4")
    p.add_argument("--fps", type=int, default=25, help="frame rate of --video (default 25)")
    args = p.parse_args(argv)
    src = Path(args.video)
    out = Path(args.out) if args.out else src.with_name(f"{src.stem}.boxes.json")
    video_out = Path(args.video_out) if args.video_out else None
    _refuse_existing(out, video_out)
    tracker = make_tracker(args.tracker, args.checkpoint, _parse_set(args.set))
    frames = _read_frames(src)
    H, W = frames.shape[1:3]
    x, y, w, h = args.box
    if x + w <= 0 or y + h <= 0 or x >= W or y >= H:
        raise UserError(f"--box {args.box} lies outside the {W}x{H} first frame")
    from lightvid.track.tracker import run_tracker

    result = run_tracker(tracker, frames, args.box, progress=True, total=len(frames))
    write_text_atomic(out, json.dumps({"boxes": result.boxes, "tracker": tracker.name, "video": str(src),
                                       "fps": round(result.fps, 1) if len(frames) > 1 else None}))
    print(f"{len(result.boxes)} boxes -> {out} ({result.fps:.1f} frames/s)" if len(frames) > 1
          else f"1 box -> {out}")
    if video_out is not None:
        _write_mp4(video_out, annotate(frames, result.boxes), args.fps)
        print(f"annotated video -> {video_out}")
    return 0


def synth_command(argv: list[str], prog: str = "lightvid track synth") -> int:
    from lightvid.track.synth import DEFAULTS, generate_tracks

    p = argparse.ArgumentParser(prog=prog, description="Generate tracking sequences: look-alike objects that "
                                "move, change size and hide (COCO-style JSON per video, PNG frames).")
    p.add_argument("out", help="output folder (an interrupted run resumes; another set's folder is refused)")
    for key, value in DEFAULTS.items():
        kind = float if isinstance(value, float) else (str if value is None else int)
        p.add_argument(f"--{key.replace('_', '-')}", type=kind, default=None, help=f"default {value}")
    args = p.parse_args(argv)
    params = {k: getattr(args, k) for k in DEFAULTS}
    root = generate_tracks(args.out, progress=True, **params)
    print(f"sequences -> {root}")
    return 0


def train_command(argv: list[str], prog: str = "lightvid track train") -> int:
    from lightvid.track.pairs import PairConfig
    from lightvid.track.train import TrainConfig, train_sint

    p = argparse.ArgumentParser(prog=prog, description="Train the Siamese matching network (marginal "
                                "contrastive loss) on pairs from videos with per-frame track boxes.")
    p.add_argument("--data", required=True, action="append", help="folder of per-video annotation JSON (repeatable)")
    p.add_argument("--split", default="train", help="sub-folder of each --data to use (default train; '' for none)")
    p.add_argument("--out", required=True, help="run folder for sint.ckpt, train.json and logs/")
    p.add_argument("--steps", type=int, help=f"default {TrainConfig.steps}")
    p.add_argument("--batch-size", type=int, help=f"pairs per step (default {TrainConfig.batch_size})")
    p.add_argument("--lr", type=float, help=f"default {TrainConfig.lr}")
    p.add_argument("--threads", type=int, help=f"torch threads (default {TrainConfig.threads})")
    p.add_argument("--pairs", action="append", default=[], metavar="KEY=VALUE", help="PairConfig field")
    p.add_argument("--kw", action="append", default=[], metavar="KEY=VALUE", help="sint model keyword")
    args = p.parse_args(argv)
    from lightvid.track.sequences import find_sequences, load_sequence

    files = [f for d in args.data for f in find_sequences(d, args.split or None)]
    sequences = [load_sequence(f) for f in files]
    cfg = TrainConfig(model_kwargs=_parse_set(args.kw))
    for key in ("steps", "batch_size", "lr", "threads"):
        if getattr(args, key) is not None:
            setattr(cfg, key, getattr(args, key))
    try:
        pairs = PairConfig(**_parse_set(args.pairs))
        ckpt = train_sint(sequences, args.out, cfg, pairs)
    except (TypeError, ValueError) as e:
        raise UserError(str(e).splitlines()[0]) from None
    print(f"{len(sequences)} sequences; checkpoint -> {ckpt}")
    return 0


def eval_track_command(argv: list[str], prog: str = "lightvid eval --task track") -> int:
    p = argparse.ArgumentParser(prog=prog, description="OTB-style success and precision plots of the sint tracker "
                                "and the NCC baseline on annotated sequences.")
    p.add_argument("--task", choices=("track",), default="track")
    p.add_argument("--checkpoint", help="sint.ckpt (leave out to evaluate the NCC baseline only)")
    p.add_argument("--data", required=True, help="folder of per-video annotation JSON (or one file)")
    p.add_argument("--split", default="test", help="sub-folder of --data (default test; '' for none)")
    p.add_argument("--trackers", default="sint,ncc", help="comma list of sint, ncc (default both)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="sint tracker setting")
    p.add_argument("--min-frames", type=int, default=10, help="shortest target track scored (default 10)")
    p.add_argument("--out", help="folder for track_eval.json, success_plot.png, precision_plot.png "
                   "(default: next to the checkpoint, eval-track-SPLIT)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    from lightvid.track.evaluate import evaluate_trackers, write_results
    from lightvid.track.metrics import plot_curves
    from lightvid.track.sequences import find_sequences, load_sequence

    names = [n.strip() for n in args.trackers.split(",") if n.strip()]
    bad = [n for n in names if n not in ("sint", "ncc")]
    if bad or not names:
        raise UserError(f"--trackers: unknown tracker(s) {bad or names}; choose from sint, ncc")
    if "sint" in names and not args.checkpoint:
        names.remove("sint")
        if not names:
            raise UserError("--trackers sint needs --checkpoint")
    settings = _parse_set(args.set)
    make_tracker("sint" if "sint" in names else "ncc", args.checkpoint, settings if "sint" in names else {})
    factories = {n: (lambda n=n: make_tracker(n, args.checkpoint, settings if n == "sint" else {})) for n in names}
    sequences = [load_sequence(f) for f in find_sequences(args.data, args.split or None)]
    res = evaluate_trackers(factories, sequences, args.min_frames, progress=not args.json)
    if args.out:
        out = Path(args.out)
    elif args.checkpoint:
        out = Path(args.checkpoint).parent / f"eval-track-{args.split or 'all'}"
    else:
        out = Path(args.data) / f"eval-track-{args.split or 'all'}"
    out.mkdir(parents=True, exist_ok=True)
    res["checkpoint"], res["data"], res["split"], res["settings"] = args.checkpoint, args.data, args.split, settings
    write_results(res, out / "track_eval.json")
    success, precision = plot_curves(list(res["scores"].values()), out, title=f"{Path(args.data).name} {args.split}")
    if args.json:
        print(json.dumps({k: v for k, v in res["results"].items()}))
        return 0
    print(f"{res['targets']} targets in {len(sequences)} sequences ({args.data} {args.split})")
    print(f"{'tracker':<8} {'success AUC':>11} {'prec@20px':>9} {'AUC look-alike':>14} {'frames/s':>8}")
    for name, r in res["results"].items():
        twin = r["with_lookalike"]["success_auc"] if r["with_lookalike"] else float("nan")
        print(f"{name:<8} {r['success_auc']:>11.3f} {r['precision_20px']:>9.3f} {twin:>14.3f} {r['fps'] or 0:>8.1f}")
    print(f"plots -> {success}, {precision}; results -> {out / 'track_eval.json'}", file=sys.stderr)
    return 0
