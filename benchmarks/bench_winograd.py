"""Winograd vs direct ``F.conv3d`` per layer, and the hybrid whole-model forward (C3D or R(2+1)D-18).

``--model c3d`` (default): per layer (real C3D shapes at ``--batch``, fp32) the direct
convolution (best of contiguous and channels-last-3d input) and the Winograd module with each
tile ``algo="auto"`` tries (F(2x2x2,3x3x3), F(4x2x2,..), F(2x4x4,..), F(4x4x4,..)), interleaved,
median of ``--repeats``, with each tile's relative max error against the float64 convolution.
Then the whole C3D forward: eager vs ``lightvid.accelerate(model, x, algo="auto")``.

``--model r2plus1d_18``: the same per layer for every eligible (2+1)D-separable convolution of
R(2+1)D-18 (1x3x3 spatial: F(1x2x2,1x3x3), F(1x4x4,1x3x3); 3x1x1 temporal: F(2x1x1,3x1x1),
F(4x1x1,3x1x1)), on the inputs recorded from one forward of the real model at ``--batch``
(layers of the same shape timed once, ``xN`` says how many share it). Then the whole forward,
interleaved: eager, ``lightvid.optimize(model, "fp32")`` and ``optimize(..., winograd=True)``.
Speed figures depend on the machine's load; ratios of interleaved runs are what to read.

    python benchmarks/bench_winograd.py            # batch 4, conv3a..conv5b, full forward
    python benchmarks/bench_winograd.py --quick    # batch 1, fewer repeats
    python benchmarks/bench_winograd.py --model r2plus1d_18 --batch 8 --threads 2   # the docs' R(2+1)D figures
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import os
import time

import torch
import torch.nn as nn
from tqdm import tqdm

import lightvid
from lightvid.accel import winograd as W
from lightvid.accel.compare import loadavg
from lightvid.accel.per_layer import record_inputs
from lightvid.accel.timing import median_times

# name: (C_in, C_out, T, H=W) of C3D at 16x112x112
TILES = W.candidate_tiles(3)  # the tiles algo="auto" tries on a 3D layer
C3D_LAYERS = {
    "conv2a": (64, 128, 16, 56), "conv3a": (128, 256, 8, 28), "conv3b": (256, 256, 8, 28),
    "conv4a": (256, 512, 4, 14), "conv4b": (512, 512, 4, 14), "conv5a": (512, 512, 2, 7),
    "conv5b": (512, 512, 2, 7),
}



def separable_layers(model: nn.Module, x: torch.Tensor) -> list[tuple[list[str], nn.Conv3d, torch.Tensor]]:
    """Eligible layers of ``model`` with their recorded input on ``x``, one entry per distinct
    (kernel, padding, channels, input shape): ``(names, conv, input)``."""
    eligible = [(n, m) for n, m in model.named_modules() if W.supports(m)]
    inputs = record_inputs(model, eligible, x)
    groups: dict = {}
    for n, m in eligible:
        key = (tuple(m.kernel_size), tuple(m.padding), m.in_channels, m.out_channels, tuple(inputs[n].shape))
        groups.setdefault(key, ([], m, inputs[n]))[0].append(n)
    return list(groups.values())


def model_layers(args) -> int:
    """Per layer and whole-model figures of a model with (2+1)D-separable layers (R(2+1)D)."""
    torch.manual_seed(0)
    model = lightvid.create_model(args.model, num_classes=400).eval()
    x = torch.randn(args.batch, 3, 16, 112, 112)
    print(f"{args.model} batch {args.batch}, {torch.get_num_threads()} threads, CPU "
          f"{cpu_name()}, load average {loadavg()}", flush=True)
    rows = []
    layers = separable_layers(model, x) if not args.no_layers else []
    for names, conv, xin in tqdm(layers, desc="layers"):
        tiles = W.candidate_tiles(conv.kernel_size)
        winos = {W.tile_name(t): W.from_conv(conv, t) for t in tiles}
        xcl = xin.contiguous(memory_format=torch.channels_last_3d)
        xc = xin.contiguous()
        with torch.no_grad():  # error on the first sample (float64 on the whole batch is slow)
            ref = nn.functional.conv3d(xin[:1].double(), conv.weight.double(), None, padding=conv.padding)
            errs = {k: ((w(xcl[:1]).double() - ref).abs().max() / ref.abs().max()).item() for k, w in winos.items()}
        # inputs already in each format: in the optimized model a layer's input arrives channels-last
        fns = {"direct": lambda _, c=conv, t=xc: c(t), "direct_cl": lambda _, c=conv, t=xcl: c(t), **winos}
        if torch.get_num_threads() > 1:  # each tile also with each op split over the threads (THREADED off)
            fns.update((k + " op-threaded", functools.partial(op_threaded, w)) for k, w in winos.items())
        tm = median_times(fns, xcl, args.repeats)
        direct = min(tm["direct"], tm["direct_cl"])
        best = min(winos, key=tm.get)
        rows.append(dict(layers=names, kernel="x".join(map(str, conv.kernel_size)),
                         shape="x".join(map(str, xin.shape)), c_out=conv.out_channels, direct_ms=1e3 * direct,
                         direct_fmt="cl" if tm["direct_cl"] <= tm["direct"] else "contig", best_tile=best,
                         tiles={k: dict(ms=1e3 * tm[k], speedup=direct / tm[k], rel_err=errs[k],
                                        op_threaded_ms=1e3 * tm.get(k + " op-threaded", math.nan)) for k in winos}))
    if rows:
        print(f"{'layer (xN same shape)':<28} {'kernel':<6} {'input':<18} {'Cout':>4} {'direct ms':>10}   "
              "Winograd ms (speedup over direct) per tile")
        for r in rows:
            name = r["layers"][0] + (f" x{len(r['layers'])}" if len(r["layers"]) > 1 else "")
            print(f"{name:<28} {r['kernel']:<6} {r['shape']:<18} {r['c_out']:>4} {r['direct_ms']:>8.1f} "
                  f"{r['direct_fmt']:<6} " + "  ".join(
                      f"{k} {v['ms']:7.1f} ({v['speedup']:.2f}x){'*' if k == r['best_tile'] else ''}"
                      for k, v in r["tiles"].items()), flush=True)
        per_kernel: dict = {}
        for r in rows:
            n = len(r["layers"])
            acc = per_kernel.setdefault(r["kernel"], [0.0, 0.0])
            acc[0] += n * r["direct_ms"]
            acc[1] += n * min(r["direct_ms"], min(v["ms"] for v in r["tiles"].values()))
        for k, (d, h) in per_kernel.items():
            print(f"sum over all {k} layers: direct {d:.0f} ms, best of direct/Winograd per layer {h:.0f} ms "
                  f"({d / h:.2f}x)")
        if torch.get_num_threads() > 1:
            best = [(r["layers"][0], r["tiles"][r["best_tile"]]) for r in rows]
            print("op-threaded (THREADED off) / chunk-threaded time, best tile: " + ", ".join(
                f"{name} {t['op_threaded_ms'] / t['ms']:.2f}" for name, t in best))
        print("relative max error vs float64 (worst layer): " + ", ".join(
            f"{k} {max(r['tiles'][k]['rel_err'] for r in rows if k in r['tiles']):.1e}"
            for k in dict.fromkeys(k for r in rows for k in r["tiles"])), flush=True)
    result = {"model": args.model, "batch": args.batch, "threads": torch.get_num_threads(), "cpu": cpu_name(),
              "layers": rows}
    if not args.no_model:
        load0 = loadavg()
        opt = lightvid.optimize(model, precision="fp32")
        t0 = time.perf_counter()
        wino = lightvid.optimize(model, precision="fp32", winograd=True, example_input=x, verbose=args.verbose)
        choose_s = time.perf_counter() - t0
        choices = wino.model.winograd_choices
        with torch.inference_mode():
            ref = model(x)
            err = {k: ((m(x) - ref).abs().max() / ref.abs().max()).item() for k, m in (("opt", opt), ("wino", wino))}
        tm = median_times({"eager": model, "optimize": opt, "optimize+winograd": wino}, x, args.model_repeats)
        load = f"{load0} -> {loadavg()}"
        n_w = sum(c[1] != "direct" for c in choices)
        kinds: dict = {}
        for c in choices:
            kinds[c[1]] = kinds.get(c[1], 0) + 1
        result["model_times"] = dict(eager_ms=1e3 * tm["eager"], optimize_ms=1e3 * tm["optimize"],
                                     winograd_ms=1e3 * tm["optimize+winograd"], choose_s=choose_s,
                                     rel_max_err=err, choices=[c[:2] for c in choices], loadavg=load)
        e, o, w = (1e3 * tm[k] for k in ("eager", "optimize", "optimize+winograd"))
        print(f"{args.model} forward batch {args.batch} ({args.model_repeats} interleaved rounds, medians; "
              f"load average {load}):\n  eager {e:.0f} ms, optimize fp32 {o:.0f} ms ({e / o:.2f}x), "
              f"optimize + hybrid Winograd {w:.0f} ms ({e / w:.2f}x eager, {o / w:.2f}x optimize)\n"
              f"  Winograd on {n_w} of {len(choices)} eligible layers: "
              + ", ".join(f"{k} {v}" for k, v in kinds.items())
              + f"; choice took {choose_s:.0f} s; rel max err to eager: optimize {err['opt']:.1e}, "
              f"+ Winograd {err['wino']:.1e}", flush=True)
    if args.json:
        print(json.dumps(result))
    return 0


def op_threaded(wino: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``wino(x)`` with ``THREADED`` off: the chunks in turn, each torch op on all threads."""
    before, W.THREADED = W.THREADED, False
    try:
        return wino(x)
    finally:
        W.THREADED = before


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            name = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
    except OSError:
        name = "?"
    return f"{name} ({os.cpu_count()} logical CPUs)"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="c3d", choices=["c3d", "r2plus1d_18", "r2plus1d_34"],
                   help="c3d: its 3x3x3 layers; r2plus1d_*: the (2+1)D-separable 1x3x3 / 3x1x1 layers")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--layers", default="conv3a,conv3b,conv4a,conv4b,conv5a,conv5b")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-model", action="store_true", help="skip the whole-model comparison")
    p.add_argument("--no-layers", action="store_true", help="r2plus1d: skip the per-layer table")
    p.add_argument("--model-repeats", type=int, default=5, help="r2plus1d: interleaved rounds of the whole model")
    p.add_argument("--verbose", action="store_true", help="r2plus1d: print accelerate's per-layer choice")
    p.add_argument("--quick", action="store_true", help="batch 1, 2 repeats")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.repeats = 1, 2
    torch.set_num_threads(args.threads)
    if args.model != "c3d":
        return model_layers(args)
    torch.manual_seed(0)
    rows = []
    for name in tqdm(args.layers.split(","), desc="layers"):
        ci, co, t, h = C3D_LAYERS[name]
        conv = nn.Conv3d(ci, co, 3, padding=1).eval()
        x = torch.randn(args.batch, ci, t, h, h)
        xcl = x.contiguous(memory_format=torch.channels_last_3d)
        winos = {W.tile_name(tile): W.from_conv(conv, tile) for tile in TILES}
        with torch.no_grad():
            ref = nn.functional.conv3d(x.double(), conv.weight.double(), conv.bias.double(), padding=1)
            errs = {k: ((w(x).double() - ref).abs().max() / ref.abs().max()).item() for k, w in winos.items()}
        fns = {"direct": conv, "direct_cl": lambda _, conv=conv, xcl=xcl: conv(xcl), **winos}
        tm = median_times(fns, x, args.repeats)
        direct = min(tm["direct"], tm["direct_cl"])
        macs = args.batch * co * t * h * h * ci * 27
        best = min(winos, key=tm.get)
        rows.append(dict(layer=name, shape=f"{args.batch}x{ci}x{t}x{h}x{h}", direct_ms=1e3 * direct,
                         direct_gflops=2 * macs / direct / 1e9, best_tile=best,
                         tiles={k: dict(ms=1e3 * tm[k], speedup=direct / tm[k], rel_err=errs[k]) for k in winos}))
    names = [W.tile_name(t) for t in TILES]
    print(f"{'layer':<8} {'input':<18} {'direct ms':>9} " + " ".join(f"{n[:9] + ')':>17}" for n in names)
          + "  (Winograd ms, speedup over direct)")
    for r in rows:
        print(f"{r['layer']:<8} {r['shape']:<18} {r['direct_ms']:>9.1f} " + " ".join(
            f"{r['tiles'][n]['ms']:>8.1f} {r['tiles'][n]['speedup']:>5.2f}x{'*' if n == r['best_tile'] else ' '}"
            for n in names) + "  (* fastest)")
    print("relative max error vs float64: " + ", ".join(
        f"{n} {max(r['tiles'][n]['rel_err'] for r in rows):.1e}" for n in names))
    result = {"batch": args.batch, "threads": args.threads, "layers": rows}
    if not args.no_model:
        model = lightvid.create_model("c3d", num_classes=101).eval()
        x = torch.randn(args.batch, 3, 16, 112, 112)
        eager = lightvid.create_model("c3d", num_classes=101).eval()
        eager.load_state_dict(model.state_dict())
        t0 = time.perf_counter()
        lightvid.accelerate(model, x, algo="auto")
        choose_s = time.perf_counter() - t0
        with torch.no_grad():
            err = ((model(x) - eager(x)).abs().max() / eager(x).abs().max()).item()
        tm = median_times({"eager": eager, "auto": model}, x, max(2, args.repeats // 2))
        result["model"] = dict(eager_ms=1e3 * tm["eager"], auto_ms=1e3 * tm["auto"],
                               speedup=tm["eager"] / tm["auto"], choose_s=choose_s, rel_max_err=err,
                               choices=[c[:2] for c in model.winograd_choices])
        print(f"C3D forward batch {args.batch}: eager {1e3 * tm['eager']:.0f} ms, algo=auto "
              f"{1e3 * tm['auto']:.0f} ms -> {tm['eager'] / tm['auto']:.2f}x (choice took {choose_s:.1f} s, "
              f"rel max err {err:.1e})")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
