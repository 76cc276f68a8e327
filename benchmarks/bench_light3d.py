"""Measure the light-weight 3D networks: parameters, GMACs and CPU forward latency (docs/light3d.md).

For each model, at one clip of 3x16x112x112 (fp32, eval mode, ``torch.inference_mode``):
parameters, MACs (``lightvid summary``'s convention), and the median wall time of a
forward pass at batch 1 and batch 8, measured interleaved (round r times every model once
before round r+1 starts), so that load from other processes disturbs all models alike.
The "GMAC/s" column is MACs x batch / time: how well the CPU kernels run each model
(depthwise 3D convolutions run far below dense ones in PyTorch on CPU).

    python benchmarks/bench_light3d.py                # 1 warm-up + 5 timed rounds
    python benchmarks/bench_light3d.py --quick        # 1 warm-up + 2 rounds
    python benchmarks/bench_light3d.py --models c3d fsb_c3d --batches 1 --json out.json

Models that are not registered are skipped with a note. On a machine shared with other work,
use ``--threads 1``: with more threads than free cores, networks of many small operators (X3D)
slow down by an order of magnitude (docs/light3d.md).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import lightvid  # noqa: E402
from lightvid.accel.timing import time_calls  # noqa: E402
from lightvid.analysis.summary import build_and_summarize  # noqa: E402
from lightvid.models.registry import is_model  # noqa: E402

MODELS = ("c3d", "c3d_2plus1d", "c3d_mc4", "fsb_c3d", "r3d_18", "r2plus1d_18", "ir_csn_50", "x3d_s")
CLIP = (3, 16, 112, 112)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    p.add_argument("--rounds", type=int, default=5, help="timed rounds (median reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--quick", action="store_true", help="2 timed rounds")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds = min(args.rounds, 2)
    if args.rounds < 1 or args.warmup < 0 or min(args.batches) < 1:
        p.error("--rounds must be >= 1, --warmup >= 0 and every batch >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [n for n in args.models if is_model(n)]
    skipped = [n for n in args.models if not is_model(n)]
    rows = {}
    for n in names:  # static figures: shapes only, on the meta device
        with torch.device("meta"):
            s = build_and_summarize(n, CLIP)
        rows[n] = dict(model=n, params=s.params, params_features=s.params_features, gmacs=s.macs / 1e9)
    torch.manual_seed(0)
    models = {n: lightvid.create_model(n).eval() for n in names}
    for b in args.batches:
        x = torch.randn(b, *CLIP)
        times = time_calls(models, x, args.rounds, args.warmup, progress=True, desc=f"batch {b}")
        for n in names:
            med = statistics.median(times[n])
            rows[n][f"ms_b{b}"] = med * 1e3
            rows[n][f"spread_b{b}"] = (max(times[n]) - min(times[n])) / med if len(times[n]) > 1 else 0.0
            rows[n][f"gmacs_per_s_b{b}"] = rows[n]["gmacs"] * b / med
    env = (f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
           f"{platform.processor() or platform.machine()}, load avg {os.getloadavg()[0]:.1f}, "
           f"{args.warmup} warm-up + {args.rounds} rounds")
    print(f"clip {'x'.join(map(str, CLIP))}, fp32, CPU; {env}")
    head = "| model | params (M) | features (M) | GMACs |"
    head += "".join(f" ms b={b} | GMAC/s b={b} |" for b in args.batches)
    print(head)
    print("|" + "---|" * (4 + 2 * len(args.batches)))
    for n in names:
        r = rows[n]
        line = f"| {n} | {r['params'] / 1e6:.2f} | {r['params_features'] / 1e6:.2f} | {r['gmacs']:.2f} |"
        line += "".join(f" {r[f'ms_b{b}']:.0f} | {r[f'gmacs_per_s_b{b}']:.1f} |" for b in args.batches)
        print(line)
    if skipped:
        print(f"skipped (not registered): {', '.join(skipped)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"env": env, "clip": CLIP, "rows": list(rows.values()), "skipped": skipped}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
