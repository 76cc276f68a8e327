"""``lightvid features`` and ``lightvid explain``."""
from __future__ import annotations

import argparse
import sys

from lightvid.errors import UserError


def features_command(argv: list[str], prog: str = "lightvid features") -> int:
    from lightvid.accel.backends import add_backend_args
    from lightvid.accel.runtime import load_inference_model
    from lightvid.analysis.features import FORMATS, extract_features, list_videos
    from lightvid.args import add_model_args, model_kwargs

    p = argparse.ArgumentParser(prog=prog, description="Pooled embeddings (the classifier's input, pre_logits) "
                                "per clip and per video, in resumable shards with an index CSV.")
    p.add_argument("target", help="training checkpoint or registered model name")
    p.add_argument("data", help="folder of videos (label: parent folder), list file (path [label] per line) "
                   "or data config YAML")
    p.add_argument("--out", required=True, help="output folder (rerun to resume: finished shards are kept)")
    p.add_argument("--split", default="val", help="split of a data config (default val)")
    p.add_argument("--clips", type=int, default=None, help="evenly spaced clips per video (default: the run's "
                   "eval_clips, else 1)")
    p.add_argument("--batch", type=int, default=8, help="clips per model call")
    p.add_argument("--shard-size", type=int, default=64, help="videos per shard")
    p.add_argument("--format", default="npy", choices=FORMATS)
    p.add_argument("--weights", default=None, help="weights file for a model name")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_model_args(p)
    add_backend_args(p, "the embedding")
    args = p.parse_args(argv)
    kwargs = model_kwargs(args)
    im = load_inference_model(args.target, weights=args.weights, model_kwargs=kwargs, backend=args.backend,
                              precision=args.precision, calib=args.calib, outputs="features")
    videos = list_videos(args.data, args.split)
    clips = args.clips or im.cfg.eval_clips
    r = extract_features(im, videos, args.out, clips=clips, batch=args.batch, shard_size=args.shard_size,
                         fmt=args.format, progress=not args.quiet)
    print(f"{args.out}: {r.videos} videos ({r.clips} clips, {r.dim}-d) in {r.shards} new shards, "
          f"{r.skipped_done} already done, {r.failed} failed; {r.seconds:.1f} s", file=sys.stderr)
    return 1 if r.failed else 0


def _grid(text: str) -> tuple[int, int, int]:
    try:
        g = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        g = ()
    if len(g) != 3 or min(g) < 1:
        raise argparse.ArgumentTypeError(f"--grid expects TxHxW cells, e.g. 4x4x4, got {text!r}")
    return g


def explain_command(argv: list[str], prog: str = "lightvid explain") -> int:
    import json
    from pathlib import Path

    from lightvid.accel.runtime import load_inference_model
    from lightvid.accel.timeline import write_atomic
    from lightvid.analysis.explain import (
        CAM_METHODS,
        DEFAULT_CAM,
        DEFAULT_MIN_SCALE,
        animation_bytes,
        explain,
        pictures,
    )

    p = argparse.ArgumentParser(prog=prog, description="Grad-CAM over time and space (Captum) and a DeepVID-style "
                                "local linear surrogate for one video (or image, for an image model).")
    p.add_argument("target", help="training checkpoint or registered model name")
    p.add_argument("video", help="video file (an image file for a 2D image model)")
    p.add_argument("--out", required=True, help="folder for <video>.gradcam.gif/.mp4, .explain.png and .explain.json")
    p.add_argument("--class", dest="cls", default=None, help="class name or index to explain (default: top-1)")
    p.add_argument("--layer", default=None, help="module Grad-CAM reads (default: the deepest whose map keeps "
                   f"at least {DEFAULT_MIN_SCALE:g} of the input's height and width)")
    p.add_argument("--cam", default=DEFAULT_CAM, choices=CAM_METHODS, help="gradcam: channel weights averaged over "
                   "the layer (Selvaraju et al.); hirescam: gradient x activation per position (Draelos and Carin) "
                   f"(default {DEFAULT_CAM})")
    p.add_argument("--start", type=float, default=None, help="clip start in seconds (default: the centre clip)")
    p.add_argument("--overlay", default="gif", choices=("gif", "mp4"), help="Grad-CAM overlay animation format")
    p.add_argument("--grid", type=_grid, default=(4, 4, 4), help="surrogate cells TxHxW (default 4x4x4)")
    p.add_argument("--samples", type=int, default=256, help="surrogate perturbations (default 256)")
    p.add_argument("--keep", type=float, default=0.7, help="probability a cell stays visible in a perturbation")
    p.add_argument("--temperature", type=float, default=4.0, help="softmax temperature of the teacher's output "
                   "the surrogate fits (default 4: softens a saturated class probability)")
    p.add_argument("--no-surrogate", action="store_true", help="Grad-CAM only")
    p.add_argument("--scale", type=int, default=None, help="enlarge pictures by this factor (default: to >= 96 px)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="replace existing output files")
    p.add_argument("--weights", default=None, help="weights file for a model name")
    from lightvid.accel.backends import add_backend_args
    from lightvid.args import add_model_args, model_kwargs

    add_model_args(p)
    add_backend_args(p, "the surrogate's forward passes (Grad-CAM needs gradients: it always runs the plain "
                     "PyTorch fp32 model)")
    args = p.parse_args(argv)
    out = Path(args.out)
    stem = Path(args.video).stem
    paths = {"anim": out / f"{stem}.gradcam.{args.overlay}", "png": out / f"{stem}.explain.png",
             "json": out / f"{stem}.explain.json"}
    if not args.force:
        for path in paths.values():
            if path.exists():
                raise UserError(f"{path}: exists; choose another --out or pass --force to replace it")
    if not Path(args.video).is_file():
        raise UserError(f"{args.video}: no such file")
    if args.no_surrogate and (args.backend or args.precision):
        raise UserError("--backend/--precision run the surrogate's forward passes; with --no-surrogate there are "
                        "none (Grad-CAM always runs the plain PyTorch fp32 model)")
    im = load_inference_model(args.target, precision=args.precision, weights=args.weights,
                              model_kwargs=model_kwargs(args), backend=args.backend, calib=args.calib)
    e = explain(im, args.video, target=args.cls, layer=args.layer, start=args.start,
                surrogate=not args.no_surrogate, grid=args.grid, samples=args.samples, keep=args.keep, seed=args.seed,
                temperature=args.temperature, cam=args.cam)
    scale = args.scale or max(1, -(-96 // e.frames.shape[1]))
    cam_frames, png = pictures(e, scale=scale)
    write_atomic(paths["anim"], animation_bytes(cam_frames, "." + args.overlay, scale=scale))
    write_atomic(paths["png"], png)
    write_atomic(paths["json"], json.dumps(e.to_dict(), indent=1) + "\n")
    sur = e.surrogate
    print(f"{args.video}: {e.target_name} ({e.prob:.3f}); {e.cam_method} at {e.layer}"
          + (f"; surrogate fidelity R2 {sur.r2_heldout:.3f} held out ({sur.r2_train:.3f} fitted)" if sur else ""))
    print(f"wrote {', '.join(map(str, paths.values()))}", file=sys.stderr)
    return 0
