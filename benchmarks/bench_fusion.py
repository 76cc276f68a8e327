"""Convolution + residual add + ReLU as one oneDNN call: one chain, and whole models, A/B.

First one residual chain alone, ``relu(conv1x1(x) + shortcut)`` at IR-CSN-50's stage shapes,
run as three operators and as one ``torch.ops.mkldnn._convolution_pointwise`` call with the add
and the ReLU as post-ops. Then, for each model and batch size,
``lightvid.optimize(model, "fp32", example_input=x, winograd=False, fuse=False)`` and a copy of
it with the fusion applied (the same layout choices, so only the fusion differs), timed
interleaved, median of ``--rounds``, with how many convolutions were fused and the largest logit
difference between the two. Random weights, 400 classes.

    python benchmarks/bench_fusion.py                      # ir_csn_50, x3d_s, r2plus1d_18; batch 1 and 8
    python benchmarks/bench_fusion.py --models ir_csn_50 --batches 8 --rounds 3
"""
from __future__ import annotations

import argparse
import copy
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

import lightvid  # noqa: E402
from lightvid.accel.compare import cpu_header, loadavg  # noqa: E402
from lightvid.accel.fusion import FusedConv, fuse_conv_pointwise  # noqa: E402
from lightvid.accel.timing import median_times  # noqa: E402

CHAINS = [  # (batch, in, out, T, H, W): 1x1x1 expansions ending IR-CSN-50's residual blocks
    (8, 64, 256, 16, 28, 28),
    (8, 128, 512, 8, 14, 14),
    (1, 64, 256, 16, 28, 28),
]


def chains(rounds: int, scale: float = 1.0) -> None:
    print("one chain: relu(conv1x1x1(x) + shortcut), channels-last-3d (ms)", flush=True)
    for b, cin, cout, t, h, w in CHAINS:
        h, w = max(2, int(h * scale)), max(2, int(w * scale))
        x = torch.randn(b, cin, t, h, w).contiguous(memory_format=torch.channels_last_3d)
        shortcut = torch.randn(b, cout, t, h, w).contiguous(memory_format=torch.channels_last_3d)
        conv = nn.Conv3d(cin, cout, 1).eval().to(memory_format=torch.channels_last_3d)
        fused = FusedConv(conv, add=True, activation="relu")
        fns = {"three operators": lambda v: torch.relu_(conv(v) + shortcut), "fused": lambda v: fused(v, shortcut)}
        with torch.inference_mode():
            diff = (fns["fused"](x) - fns["three operators"](x)).abs().max().item()
            t_ms = {k: 1e3 * v for k, v in median_times(fns, x, rounds).items()}
        print(f"  {b}x{cin}x{t}x{h}x{w} -> {cout}: three operators {t_ms['three operators']:8.2f}  "
              f"fused {t_ms['fused']:8.2f}  {t_ms['three operators'] / t_ms['fused']:5.2f}x  "
              f"max |diff| {diff:.1e}", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="ir_csn_50,x3d_s,r2plus1d_18")
    p.add_argument("--batches", default="1,8")
    p.add_argument("--input", default="3x16x112x112", help="CxTxHxW")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--width", type=float, default=1.0, help="width multiplier of every model (a quick run: 0.25)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--quick", action="store_true",
                   help="a quarter-width IR-CSN-50 at batch 2 on 3x4x32x32, one round (a smoke run, not a figure)")
    args = p.parse_args(argv)
    if args.quick:
        args.models, args.batches, args.input, args.width, args.rounds = "ir_csn_50", "2", "3x4x32x32", 0.25, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    size = tuple(int(v) for v in args.input.split("x"))
    print(cpu_header(), flush=True)
    chains(args.rounds, scale=size[-1] / 112)
    for name in args.models.split(","):
        model = lightvid.create_model(name, num_classes=400, width_mult=args.width).eval()
        for batch in (int(b) for b in args.batches.split(",")):
            x = torch.randn(batch, *size)
            plain = lightvid.optimize(model, precision="fp32", example_input=x, winograd=False, onednn_graph=False,
                                      fuse=False)
            fused = copy.deepcopy(plain)  # the same layout choices: only the fusion differs
            fused.model, n_fused = fuse_conv_pointwise(fused.model, fused.prepare(x))
            load0 = loadavg()
            with torch.inference_mode():
                diff = (fused(x) - plain(x)).abs().max().item()
                t = median_times({"fuse=False": plain, "fuse=True": fused}, x, args.rounds)
            print(f"{name} batch {batch}: {n_fused} convolutions fused; "
                  f"fuse=False {1e3 * t['fuse=False']:8.1f} ms  fuse=True {1e3 * t['fuse=True']:8.1f} ms  "
                  f"{t['fuse=False'] / t['fuse=True']:5.2f}x; max |logit diff| {diff:.1e}; "
                  f"load {load0} -> {loadavg()}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
