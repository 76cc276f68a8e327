"""``lightvid baseline tiny|bow``: the classic baselines of the scene-recognition report's Part 1 on class folders.

    lightvid baseline tiny --data DIR [--size 16] [--norm l1|l2] [--metric cityblock] [--k 1]
    lightvid baseline bow  --data DIR [--step 4] [--sift-size 4] [--vocab 400] [--classifier knn|svm]

``DIR`` holds ``train/<class>/*`` and ``test/<class>/*`` (or ``val/``), images or videos.
Both print accuracy, per-class accuracy and run time and write ``confusion.csv``,
``confusion.png`` and ``result.json`` under ``--out``; ``--json`` prints one JSON object.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

from lightvid.errors import UserError


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="folder with train/<class>/ and test/<class>/ (or val/)")
    p.add_argument("--out", default=None, help="output folder (default: runs/baselines/<method>-<data name>)")
    p.add_argument("--frames", type=int, default=8, help="frames sampled uniformly per video (video data only)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the text report")
    p.add_argument("--no-outputs", action="store_true", help="write no files (no confusion matrix)")


def _parser(prog: str) -> argparse.ArgumentParser:
    from lightvid.baselines.bow import CLASSIFIERS, HIST_NORMS, BowConfig
    from lightvid.baselines.tiny import METRICS, NORMS, TinyConfig

    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="method", required=True, metavar="{tiny,bow}")
    t, td = sub.add_parser("tiny", help="tiny images (or tiny clips) + k-nearest neighbours"), TinyConfig()
    _common(t)
    t.add_argument("--size", type=int, default=td.size, help="side of the tiny image (default 16)")
    t.add_argument("--norm", choices=NORMS, default=td.norm, help="vector normalisation (default l2)")
    t.add_argument("--no-center", action="store_true", help="do not subtract each vector's mean")
    t.add_argument("--metric", choices=METRICS, default=td.metric, help="kNN distance (default cityblock)")
    t.add_argument("--k", type=int, default=td.k, help="neighbours (default 1)")
    b, bd = sub.add_parser("bow", help="bag of dense-SIFT words + kNN or linear SVM"), BowConfig()
    _common(b)
    b.add_argument("--step", type=int, default=bd.step, help="grid step in pixels (default 4)")
    b.add_argument("--sift-size", type=float, default=bd.sift_size,
                   help="OpenCV keypoint size; bins are 1.5x this, the patch 6x (default 4)")
    b.add_argument("--vocab", type=int, default=bd.vocab, help="number of visual words (default 400)")
    b.add_argument("--vocab-samples", type=int, default=bd.vocab_samples, help="descriptors fed to k-means")
    b.add_argument("--levels", type=int, default=bd.levels,
                   help="spatial pyramid levels: 0 = plain bag of words, 1 (default) adds 2x2 cells, 2 adds 4x4")
    b.add_argument("--hist-norm", choices=HIST_NORMS, default=bd.hist_norm, help="histogram normalisation")
    b.add_argument("--classifier", choices=CLASSIFIERS, default=bd.classifier, help="knn or svm (default svm)")
    b.add_argument("--k", type=int, default=bd.k, help="kNN neighbours (default 15)")
    b.add_argument("--metric", choices=METRICS, default=bd.metric, help="kNN distance (default cityblock)")
    b.add_argument("--C", type=float, default=bd.C, help="linear SVM cost (default 1)")
    b.add_argument("--seed", type=int, default=bd.seed, help="k-means and SVM seed")
    b.add_argument("--jobs", type=int, default=bd.jobs, help="SIFT processes and k-means/BLAS threads (default 1)")
    b.add_argument("--cache", default=None, help="vocabulary cache folder (default ~/.cache/lightvid/vocab)")
    b.add_argument("--no-cache", action="store_true", help="always run k-means; store nothing")
    return p


def run_baseline(args: argparse.Namespace):
    """Run the parsed command; returns a :class:`~lightvid.baselines.report.BaselineResult`."""
    from lightvid.baselines import bow, tiny
    from lightvid.baselines.folders import find_data
    from lightvid.baselines.report import make_result, params_of

    data = find_data(args.data)
    start = time.perf_counter()
    if args.method == "tiny":
        cfg = tiny.TinyConfig(size=args.size, norm=args.norm, center=not args.no_center, metric=args.metric,
                              k=args.k, frames=args.frames)
        y, pred, timings, bad = tiny.run_tiny(data, cfg)
        params = params_of(cfg, data.kind)
    else:
        cfg = bow.BowConfig(step=args.step, sift_size=args.sift_size, vocab=args.vocab,
                            vocab_samples=args.vocab_samples, levels=args.levels, hist_norm=args.hist_norm,
                            classifier=args.classifier, k=args.k, metric=args.metric, C=args.C,
                            frames=args.frames, seed=args.seed, jobs=args.jobs)
        cache = None if args.no_cache else Path(args.cache) if args.cache else bow.default_cache_dir()
        y, pred, timings, bad = bow.run_bow(data, cfg, cache)
        params = params_of(cfg, data.kind, bow.unused_params(cfg))
    seconds = time.perf_counter() - start
    method = f"{args.method}" + (f"+{args.classifier}" if args.method == "bow" else "")
    out = None
    if not args.no_outputs:
        out = Path(args.out) if args.out else Path("runs") / "baselines" / f"{method}-{data.root.resolve().name}"
    return make_result(method, data, params, y, pred, seconds, timings, bad, out)


def baseline_command(argv: list[str], prog: str = "lightvid baseline") -> int:
    from lightvid.baselines.report import format_baseline

    args = _parser(prog).parse_args(argv)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = run_baseline(args)
    for w in caught:  # unreadable files etc., one line each, on stderr
        print(f"warning: {w.message}", file=sys.stderr)
    if res.num_test == 0:
        raise UserError(f"{res.data}: no test items")
    print(res.to_json() if args.json else format_baseline(res))
    return 0
