"""Speed of lightvid.ops' vectorised ROI align / ROI pool against a per-box loop of the same op.

    python benchmarks/bench_roi.py [--quick]

For each setting (feature map ``N x C x H x W``, ``K`` boxes, output 7x7, spatial scale 1/16, as in a
Fast R-CNN head on conv5), it times, interleaved in one process (median of repeats):

* ``vectorised``: one call with all ``K`` boxes;
* ``per-box loop``: ``K`` calls with one box each (what a straightforward port does);

forward only (no grad) and forward + backward (gradient w.r.t. the feature map), and checks that both
give the same numbers. Times are CPU milliseconds of this process (one thread by default), robust on a
shared machine. Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lightvid.ops import roi_align, roi_pool  # noqa: E402


def random_boxes(gen, n, k, image_h, image_w):
    b = torch.randint(0, n, (k,), generator=gen).float()
    wh = torch.rand(k, 2, generator=gen) * torch.tensor([image_w, image_h]) * 0.5 + 16
    xy = torch.rand(k, 2, generator=gen) * (torch.tensor([image_w, image_h]) - wh)
    return torch.cat([b[:, None], xy, xy + wh], dim=1)


def per_box(op, x, rois, **kw):
    return torch.cat([op(x, rois[i:i + 1], **kw) for i in range(len(rois))])


def timed(fns: dict, repeats: int) -> dict[str, float]:
    """Median CPU milliseconds (``time.process_time``: this process's CPU time, which other jobs on a
    shared machine inflate far less than wall time) per call, interleaved round-robin."""
    times = {k: [] for k in fns}
    for f in fns.values():
        f()  # warm-up
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.process_time()
            f()
            times[k].append(time.process_time() - t0)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small settings, 2 repeats")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = [(2, 64, 38, 50, 64), (2, 256, 38, 50, 128)] if not args.quick else [(1, 16, 20, 20, 16)]
    repeats = 2 if args.quick else 3
    gen = torch.Generator().manual_seed(0)
    print("| op | N x C x H x W | boxes | vectorised fwd CPU ms | loop fwd CPU ms | speed-up | vectorised fwd+bwd "
          "CPU ms | loop fwd+bwd CPU ms | speed-up | max abs diff |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n, c, h, w, k in settings:
        x = torch.randn(n, c, h, w, generator=gen)
        rois = random_boxes(gen, n, k, h * 16, w * 16)
        for name, op, kw in [("roi_align", roi_align, dict(output_size=7, spatial_scale=1 / 16, sampling_ratio=2,
                                                                  aligned=True)),
                             ("roi_pool", roi_pool, dict(output_size=7, spatial_scale=1 / 16))]:
            with torch.no_grad():
                diff = (op(x, rois, **kw) - per_box(op, x, rois, **kw)).abs().max().item()
            xg = x.clone().requires_grad_(True)

            def fwd_vec():
                with torch.no_grad():
                    op(x, rois, **kw)

            def fwd_loop():
                with torch.no_grad():
                    per_box(op, x, rois, **kw)

            def bwd_vec():
                op(xg, rois, **kw).sum().backward()

            def bwd_loop():
                per_box(op, xg, rois, **kw).sum().backward()

            t = timed({"fv": fwd_vec, "fl": fwd_loop, "bv": bwd_vec, "bl": bwd_loop}, repeats)
            print(f"| {name} | {n}x{c}x{h}x{w} | {k} | {t['fv']:.1f} | {t['fl']:.1f} | {t['fl'] / t['fv']:.1f}x | "
                  f"{t['bv']:.1f} | {t['bl']:.1f} | {t['bl'] / t['bv']:.1f}x | {diff:.1e} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
