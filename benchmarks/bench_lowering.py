"""Factorised 3D convolutions as 2D ones: per-layer choice and whole-model A/B.

For each model and batch size: ``lightvid.optimize(model, "fp32", example_input=x)`` with the
2D lowering (``lower=True``, the default) prints every eligible layer's 3D and 2D time on its
real input and which it kept; then the whole forward is timed interleaved, median of
``--rounds``: eager, ``optimize`` without the lowering, with it, and (``--force-cl``) the
lowered model with every remaining ``Conv3d``'s input converted to channels-last-3d (the
experiment for squeeze-excitation models, whose gate multiply returns contiguous memory).
Winograd is off in all of them so the lowering is what differs. Random weights, 400 classes.

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
from lightvid.accel.timing import median_times  # noqa: E402


def force_channels_last(model: torch.nn.Module) -> int:
    """Convert the input of every ``nn.Conv3d`` of ``model`` to channels-last-3d (forward pre-hooks)."""
    n = 0
    for mod in model.modules():
        if isinstance(mod, torch.nn.Conv3d):
            mod.register_forward_pre_hook(lambda _, args: (args[0].contiguous(memory_format=torch.channels_last_3d),))
            n += 1
    return n


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="x3d_s,r2plus1d_18,ir_csn_50")
    p.add_argument("--batches", default="1")
    p.add_argument("--input", default="3x16x112x112", help="CxTxHxW")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--force-cl", action="store_true", help="also time the lowered model with channels-last forced")
    p.add_argument("--quiet", action="store_true", help="leave out the per-layer lines")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    size = tuple(int(v) for v in args.input.split("x"))
    print(cpu_header(), flush=True)
    for name in args.models.split(","):
        model = lightvid.create_model(name, num_classes=400).eval()
        for batch in (int(b) for b in args.batches.split(",")):
            x = torch.randn(batch, *size)
            print(f"\n{name} batch {batch}: per-layer choice (ms on the layer's recorded input)", flush=True)
            lowered = lightvid.optimize(model, precision="fp32", example_input=x, winograd=False, verbose=False)
            for layer, choice, ms3d, ms2d in getattr(lowered.model, "lowering_choices", []):
                if not args.quiet:
                    print(f"  {layer:<28} 3d {ms3d:8.2f}  2d {ms2d:8.2f}  -> {choice}")
            plain = lightvid.optimize(model, precision="fp32", example_input=x, winograd=False, lower=False)
            fns = {"eager": model, "optimize (3D)": plain, "optimize (lowered)": lowered}
            if args.force_cl:
                forced = lightvid.optimize(model, precision="fp32", example_input=x, winograd=False)
                force_channels_last(forced.model)
                fns["lowered + channels-last forced"] = forced
            load0 = loadavg()
            with torch.inference_mode():
                ref = model(x)
                diff = max((f(x) - ref).abs().max().item() for k, f in fns.items() if k != "eager")
                times = median_times(fns, x, args.rounds)
            rep = lowered.report
            print(f"{name} batch {batch}: {rep['lowered_layers']} layers lowered (whole-model check "
                  f"{rep.get('lowering_ms')}); max |logit diff| {diff:.1e}; load {load0} -> {loadavg()}")
            base = times["optimize (3D)"]
            for k, t in times.items():
                print(f"  {k:<32} {1e3 * t:9.1f} ms  {base / t:5.2f}x optimize (3D)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
