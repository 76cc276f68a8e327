"""End-to-end latency and sustained frame rate of ``lightvid stream`` on a file paced at real time (25 fps).

    python benchmarks/bench_stream.py --ckpt runs/quickstart/checkpoints/best.ckpt \
        [--synth .cache/synth-motion10] [--models demo c3d] [--seconds 20] [--backend auto --precision fp32]

``demo`` is ``--ckpt`` (its own input size, plain PyTorch); any other name is a registered
model at its default input (random weights: speed does not depend on them) run through
``lightvid.optimize`` with ``--backend`` and ``--precision`` (default "auto" at fp32: the
fastest of PyTorch (BN folded, channels-last), ONNX Runtime and OpenVINO that agrees with
eager on an example batch; the table names the one chosen). The source is a looped
synthetic video (``benchmarks/long_video.py``) at the model's crop size, delivered at 25
fps by the reader thread as a camera would. Reported: predictions/s, input and predicted
frames/s, dropped frames, and latency (prediction done minus arrival of the window's newest
frame) p50/p95/max.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from long_video import DEMO_SYNTH, LONG_VIDEO_CACHE, cached_long_video  # noqa: E402

from lightvid.accel.runtime import load_inference_model  # noqa: E402
from lightvid.accel.stream import run_stream  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--synth", default=str(DEMO_SYNTH))
    ap.add_argument("--models", nargs="+", default=["demo", "c3d"])
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--backend", default="auto", help="lightvid.optimize backend of the full-size models")
    ap.add_argument("--hop", type=int, default=None)
    ap.add_argument("--cache", default=str(LONG_VIDEO_CACHE))
    ap.add_argument("--plot", default=None, help="PNG: latency of each prediction over stream time, per model")
    args = ap.parse_args()
    rows = []
    for name in args.models:
        im = (load_inference_model(args.ckpt) if name == "demo" else
              load_inference_model(name, precision=args.precision, backend=args.backend))
        size = im.cfg.short_side or im.cfg.size
        video = cached_long_video(args.seconds / 60, size, args.synth, args.cache, segment_s=min(60, int(args.seconds)))
        results = []
        stats = run_stream(im, str(video), realtime=True, hop=args.hop, on_result=results.append)
        d = stats.to_dict()
        rows.append((name, im, d, results))
        print(json.dumps({"model": name, **im.backend, **d}), flush=True)
    print(f"\nrealtime source at 25 fps, {args.seconds:g} s")
    print(f"{'model':<26} {'input':>10} {'pred/s':>6} {'input fps':>9} {'predicted fps':>13} {'dropped':>7} "
          f"{'infer ms':>8} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7}")
    for name, im, d, _ in rows:
        shape = f"{im.cfg.clip_len}x{im.cfg.size}x{im.cfg.size}"
        lat = d["latency_ms"]
        who = f"{name} {im.backend['backend']} {im.backend['precision']}"
        print(f"{who:<26} {shape:>10} "
              f"{d['predictions_per_s']:6.2f} {d['input_fps']:9.1f} "
              f"{d['predicted_fps']:13.1f} {d['dropped']:7d} {d['inference_ms_p50']:8.0f} "
              f"{lat['p50']:7.0f} {lat['p95']:7.0f} {lat['max']:7.0f}")
    if args.plot:
        plot(rows, args.plot)


def plot(rows, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 2.8), dpi=90)
    for name, im, d, results in rows:
        who = f"{name} ({im.backend['backend']} {im.backend['precision']})"
        label = f"{who}: {d['dropped']} of {d['frames_read']} frames dropped"
        ax.plot([r.time for r in results], [r.latency * 1000 for r in results], marker=".", lw=1, label=label)
    ax.set_xlabel("stream time (s)")
    ax.set_ylabel("latency (ms)")
    ax.set_yscale("log")
    ax.set_title("lightvid stream on a 25 fps source: latency per prediction", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
