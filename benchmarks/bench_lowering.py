"""The layout step of ``optimize``: channels-last inputs, oneDNN for the convolutions PyTorch
would give its reference kernels, factorised 3D convolutions as 2D ones; per-layer and
whole-model A/B.

For each model and batch size, ``lightvid.optimize(model, "fp32", example_input=x)`` (Winograd
off, so the layout is what differs) prints each timed layer's default and oneDNN time, each
eligible layer's 3D and 2D time on its real input and which it kept, and the whole-model times
of the variants it chose among (the model as it was; with every ``Conv3d``'s input converted to
channels-last-3d and the oneDNN choice; that one lowered). Then the forward is timed interleaved,
median of ``--rounds``: eager, ``optimize(lower=False)``, ``optimize`` as chosen, and with
``--force-cl`` ``optimize(lower=False)`` with channels-last inputs forced (that conversion alone,
without oneDNN). Random weights, 400 classes.

    python benchmarks/bench_lowering.py                                   # x3d_s, r2plus1d_18, ir_csn_50 at batch 1
    python benchmarks/bench_lowering.py --models x3d_s --batches 1,8 --force-cl
"""
from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

import lightvid  # noqa: E402
from lightvid.accel.compare import cpu_header, loadavg  # noqa: E402
from lightvid.accel.lowering import channels_last_inputs  # noqa: E402
from lightvid.accel.timing import median_times  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="x3d_s,r2plus1d_18,ir_csn_50")
    p.add_argument("--batches", default="1")
    p.add_argument("--input", default="3x16x112x112", help="CxTxHxW")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--force-cl", action="store_true", help="also time the lowered model with channels-last forced")
    p.add_argument("--quiet", action="store_true", help="leave out the per-layer lines")
    p.add_argument("--quick", action="store_true", help="x3d_xs on 3x2x32x32, one round (a smoke run, not a figure)")
    args = p.parse_args(argv)
    if args.quick:
        args.models, args.batches, args.input, args.rounds = "x3d_xs", "1", "3x2x32x32", 1
    if args.threads:
        torch.set_num_threads(args.threads)
    size = tuple(int(v) for v in args.input.split("x"))
    print(cpu_header(), flush=True)
    for name in args.models.split(","):
        model = lightvid.create_model(name, num_classes=400).eval()
        for batch in (int(b) for b in args.batches.split(",")):
            x = torch.randn(batch, *size)
            print(f"\n{name} batch {batch}: per-layer choice (ms on the layer's recorded input)", flush=True)
            # Winograd and the oneDNN Graph candidate off: the layout step is what is measured
            steps = dict(precision="fp32", example_input=x, winograd=False, onednn_graph=False)
            chosen = lightvid.optimize(model, **steps)
            if not args.quiet:
                for layer, choice, ms_default, ms_onednn in getattr(chosen.model, "onednn_choices", []):
                    print(f"  {layer:<28} default {ms_default:8.2f}  oneDNN {ms_onednn:8.2f}  -> {choice}")
                for layer, choice, ms3d, ms2d in getattr(chosen.model, "lowering_choices", []):
                    print(f"  {layer:<28} 3d {ms3d:8.2f}  2d {ms2d:8.2f}  -> {choice}")
            plain = lightvid.optimize(model, **steps, lower=False)
            fns = {"eager": model, "optimize (lower=False)": plain, "optimize (chosen)": chosen}
            if args.force_cl:
                forced = lightvid.optimize(model, **steps, lower=False)
                channels_last_inputs(forced.model)
                fns["lower=False + channels-last inputs"] = forced
            load0 = loadavg()
            with torch.inference_mode():
                ref = model(x)
                diff = max((f(x) - ref).abs().max().item() for k, f in fns.items() if k != "eager")
                times = median_times(fns, x, args.rounds)
            rep = chosen.report
            print(f"{name} batch {batch}: whole-model ms of the variants {rep.get('layout_ms')} -> "
                  f"{rep['lowered_layers']} layers lowered, channels-last inputs {rep['channels_last_inputs']}, "
                  f"{rep['onednn_layers']} forced to oneDNN; "
                  f"max |logit diff| {diff:.1e}; load {load0} -> {loadavg()}")
            base = times["optimize (lower=False)"]
            for k, t in times.items():
                print(f"  {k:<36} {1e3 * t:9.1f} ms  {base / t:5.2f}x lower=False", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
