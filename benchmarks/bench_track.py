"""Frames per second of the Siamese tracker and the NCC baseline on 320x240 video.

    python benchmarks/bench_track.py [--checkpoint RUN/sint.ckpt] [--frames 60] [--threads 1 2] [--quick]

One generated 320x240 sequence (``lightvid track synth``'s renderer) is tracked from its first
object's box by each setting in turn, frame by frame and interleaved (every tracker handles frame
t before any handles t+1), so a change in machine load hits all alike. Per setting: wall-clock
frames/s (median over repeats of ``update``) and CPU frames/s (``time.process_time`` of the
process: robust on a shared machine, as long as a setting uses one thread). The speed does not
depend on the weights, so without ``--checkpoint`` an untrained ``sint`` is timed.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import lightvid  # noqa: E402
from lightvid.track.ncc import NCCTracker  # noqa: E402
from lightvid.track.synth import DEFAULTS, render_sequence  # noqa: E402
from lightvid.track.tracker import SiameseTracker, TrackerConfig, load_tracker  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint")
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--quick", action="store_true", help="20 frames")
    args = p.parse_args()
    n = 20 if args.quick else args.frames
    frames, _, anns = render_sequence(np.random.default_rng([0, 2, 0]), dict(DEFAULTS, frames=n))
    first = min(anns, key=lambda a: (a["frame"], -a["visibility"]))  # the earliest visible object
    frames = frames[first["frame"]:]
    n = len(frames)
    box = np.array(first["bbox"], dtype=float)

    def sint(threads):
        if args.checkpoint:
            return load_tracker(args.checkpoint, threads=threads)
        return SiameseTracker(lightvid.create_model("sint"), TrackerConfig(threads=threads))

    trackers = {f"sint ({t} thread{'s' if t > 1 else ''})": sint(t) for t in args.threads}
    trackers["ncc (OpenCV)"] = NCCTracker()
    wall = {k: [] for k in trackers}
    cpu = {k: 0.0 for k in trackers}
    for tr in trackers.values():
        tr.init(frames[0], box)
    old = torch.get_num_threads()
    for t in range(1, n):
        for name, tr in trackers.items():
            threads = getattr(getattr(tr, "config", None), "threads", 0)
            if threads:
                torch.set_num_threads(threads)
            c0, w0 = time.process_time(), time.perf_counter()
            tr.update(frames[t])
            wall[name].append(time.perf_counter() - w0)
            cpu[name] += time.process_time() - c0
            torch.set_num_threads(old)
    cands = len(TrackerConfig().scales) * (1 + len(TrackerConfig().radii) * TrackerConfig().angles)
    print(f"tracker update on {frames.shape[2]}x{frames.shape[1]} frames, {n - 1} frames each "
          f"(sint: one backbone pass + {cands} + 27 candidate boxes per frame)")
    print(f"{'tracker':<20} {'wall frames/s (median)':>22} {'CPU frames/s':>13}")
    for name in trackers:
        med = statistics.median(wall[name])
        print(f"{name:<20} {1 / med:>22.1f} {(n - 1) / cpu[name]:>13.1f}")
    with open("/proc/loadavg") as f:
        print(f"load average during the run: {f.read().split()[0]} on {torch.get_num_threads()} threads' machine")


if __name__ == "__main__":
    main()
