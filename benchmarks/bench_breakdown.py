"""Kernel-by-kernel breakdown: lightvid's oneDNN Graph path beside OpenVINO fp32, in one process.

Says where the time of one call goes on this CPU (lightvid.accel.breakdown): the two runtimes
timed interleaved, then a few profiled calls of each, kernels grouped alike (1x1x1 / depthwise
/ other convolutions, element-wise, pooling, matmul, reorders), and what the kernels leave
unaccounted (launch overhead, PyTorch operators outside the fused partitions). Random weights,
400 classes, each model at 3x16x112x112 unless told otherwise.

    python benchmarks/bench_breakdown.py --models x3d_s,ir_csn_50 --batches 1,8 --json breakdown.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch

import lightvid
from lightvid.accel.breakdown import breakdown, format_breakdown
from lightvid.accel.compare import cpu_header, loadavg
from lightvid.errors import UserError
from lightvid.fileio import check_output_file, write_text_atomic

MARKER = "lightvid.bench_breakdown"  # key of every JSON this script writes: a rerun may replace its own file only


def check_json_target(path: str) -> None:
    """Refuse (one line) a ``--json`` path that is a folder or an existing file this script did not write."""
    check_output_file(path)
    if os.path.lexists(path):
        try:
            with open(path) as f:
                ours = MARKER in json.load(f)
        except (OSError, ValueError, TypeError):
            ours = False
        if not ours:
            raise UserError(f"{path}: exists and is not an earlier bench_breakdown result; choose another --json "
                            "(nothing was written)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="x3d_s,ir_csn_50")
    p.add_argument("--batches", default="1")
    p.add_argument("--input", default="3x16x112x112", help="CxTxHxW for every model")
    p.add_argument("--num-classes", type=int, default=400)
    p.add_argument("--rounds", type=int, default=7, help="interleaved timed rounds")
    p.add_argument("--calls", type=int, default=3, help="profiled calls per runtime (kernel times are their mean)")
    p.add_argument("--threads", type=int, default=None, help="torch and OpenVINO threads (default: torch's)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    try:
        shape = tuple(int(v) for v in args.input.lower().split("x"))
        batches = [int(b) for b in args.batches.split(",")]
    except ValueError:
        p.error(f"--input / --batches: expected e.g. 3x16x112x112 and 1,8, got {args.input!r} and {args.batches!r}")
    if args.json:
        check_json_target(args.json)
    if args.threads:
        torch.set_num_threads(args.threads)
    header = cpu_header()
    print(header, flush=True)
    results = {MARKER: 1, "cpu": header, "runs": []}
    torch.manual_seed(0)
    for name in args.models.split(","):
        model = lightvid.create_model(name, num_classes=args.num_classes).eval()
        for b in batches:
            x = torch.randn(b, *shape)
            try:
                r = breakdown(model, x, rounds=args.rounds, calls=args.calls, progress=True)
            except UserError as e:
                print(f"{name}, batch {b}: {e}", file=sys.stderr)
                continue
            lv, ov = r["lightvid"]["wall_ms"], r["openvino"]["wall_ms"]
            print(f"\n{name}, batch {b}, input {args.input}, load {loadavg()}: lightvid {lv:.1f} ms, OpenVINO "
                  f"{ov:.1f} ms ({ov / lv:.2f}x OpenVINO); ms per call (kernels run)\n", flush=True)
            print(format_breakdown(r), flush=True)
            results["runs"].append({"model": name, "batch": b, "input": args.input, **r})
            if args.json:  # after every run: a run stopped early keeps what it measured
                write_text_atomic(args.json, json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
