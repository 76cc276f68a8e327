"""``lightvid features`` and ``lightvid explain``."""
from __future__ import annotations

import argparse
import sys

from lightvid.errors import UserError


def features_command(argv: list[str], prog: str = "lightvid features") -> int:
    from lightvid.accel.runtime import load_inference_model
    from lightvid.analysis.features import FORMATS, extract_features, list_videos
    from lightvid.cli import add_model_args, model_kwargs

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
    p.add_argument("--precision", default=None, choices=("fp32", "bf16", "auto"),
                   help="accepted for symmetry with the other tools; features use the plain model's forward_head")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_model_args(p)
    args = p.parse_args(argv)
    kwargs = model_kwargs(args)
    im = load_inference_model(args.target, weights=args.weights, model_kwargs=kwargs)
    videos = list_videos(args.data, args.split)
    clips = args.clips or im.cfg.eval_clips
    r = extract_features(im, videos, args.out, clips=clips, batch=args.batch, shard_size=args.shard_size,
                         fmt=args.format, progress=not args.quiet)
    print(f"{args.out}: {r.videos} videos ({r.clips} clips, {r.dim}-d) in {r.shards} new shards, "
          f"{r.skipped_done} already done, {r.failed} failed; {r.seconds:.1f} s", file=sys.stderr)
    return 1 if r.failed else 0
