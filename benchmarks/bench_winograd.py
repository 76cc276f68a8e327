"""Winograd vs direct ``F.conv3d`` on C3D's layers, and the hybrid C3D forward.

Per layer (real C3D shapes at ``--batch``, fp32): the direct convolution (best of contiguous
and channels-last-3d input) and the Winograd module with each tile ``algo="auto"`` tries
(F(2x2x2,3x3x3), F(4x2x2,..), F(2x4x4,..), F(4x4x4,..)), interleaved, median of ``--repeats``,
with each tile's relative max error against the float64 convolution.
Then the whole C3D forward: eager vs ``lightvid.accelerate(model, x, algo="auto")``.
Speed figures depend on the machine's load; ratios of interleaved runs are what to read.

    python benchmarks/bench_winograd.py            # batch 4, conv3a..conv5b, full forward
    python benchmarks/bench_winograd.py --quick    # batch 1, fewer repeats
"""
from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn as nn
from tqdm import tqdm

import lightvid
from lightvid.accel import winograd as W
from lightvid.accel.timing import median_times

# name: (C_in, C_out, T, H=W) of C3D at 16x112x112
TILES = W.candidate_tiles(3)  # the tiles algo="auto" tries on a 3D layer
C3D_LAYERS = {
    "conv2a": (64, 128, 16, 56), "conv3a": (128, 256, 8, 28), "conv3b": (256, 256, 8, 28),
    "conv4a": (256, 512, 4, 14), "conv4b": (512, 512, 4, 14), "conv5a": (512, 512, 2, 7),
    "conv5b": (512, 512, 2, 7),
}



def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--layers", default="conv3a,conv3b,conv4a,conv4b,conv5a,conv5b")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-model", action="store_true", help="skip the whole-C3D comparison")
    p.add_argument("--quick", action="store_true", help="batch 1, 2 repeats")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.repeats = 1, 2
    torch.set_num_threads(args.threads)
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
