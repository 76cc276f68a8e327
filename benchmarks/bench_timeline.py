"""Peak memory and throughput of ``lightvid predict --window`` on long videos: memory must not grow with length.

    python benchmarks/bench_timeline.py --ckpt runs/quickstart/checkpoints/best.ckpt \
        [--synth .cache/synth-motion10] [--minutes 1 10 60] [--size 64] [--window 2 --stride 1]

For each length a looped video is made with ``benchmarks/long_video.py`` (cached in
``--cache``), then ``lightvid predict CKPT VIDEO --window W --stride S --json`` runs in a
fresh process, which reports its own peak RSS (``ru_maxrss``), windows, clips/s end to end
and in the model. The table also gives the memory that decoding the whole video to RGB
frames would need (frames x H x W x 3 bytes), for comparison.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from long_video import DEMO_SYNTH, LONG_VIDEO_CACHE, cached_long_video  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--synth", default=str(DEMO_SYNTH))
    ap.add_argument("--minutes", type=float, nargs="+", default=[1, 10, 60])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--window", default="2")
    ap.add_argument("--stride", default="1")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--cache", default=str(LONG_VIDEO_CACHE))
    args = ap.parse_args()
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    rows = []
    for minutes in args.minutes:
        video = cached_long_video(minutes, args.size, args.synth, args.cache)
        cmd = [sys.executable, "-m", "lightvid.cli", "predict", args.ckpt, str(video), "--window", args.window,
               "--stride", args.stride, "--batch", str(args.batch), "--json", "--quiet", "--topk", "2"]
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if r.returncode:
            sys.exit(f"{' '.join(cmd)} failed:\n{r.stderr}")
        d = json.loads(r.stdout)
        full_mb = d["frames"] * args.size * args.size * 3 / 2**20
        rows.append((minutes, d, video.stat().st_size / 2**20, full_mb))
        print(json.dumps({k: v for k, v in d.items() if k != "timeline"}), flush=True)
    print(f"\nwindow {args.window} s, stride {args.stride} s, {args.size}x{args.size}, batch {args.batch}")
    print(f"{'minutes':>7} {'file MB':>8} {'frames':>7} {'windows':>7} {'seconds':>8} {'clips/s':>8} "
          f"{'model clips/s':>13} {'peak RSS MB':>11} {'all frames MB':>13}")
    for minutes, d, file_mb, full_mb in rows:
        print(f"{minutes:7g} {file_mb:8.1f} {d['frames']:7d} {d['windows']:7d} {d['seconds']:8.1f} "
              f"{d['clips_per_s']:8.1f} {d['model_clips_per_s']:13.1f} {d['peak_rss_mb']:11.0f} {full_mb:13.0f}")


if __name__ == "__main__":
    main()
