"""Decode-and-transform throughput of lightvid.data against a naive loader, and against the demo's training step.

    python benchmarks/bench_data.py [--quick] [--kinetics ../shared/data/kinetics5] [--workers 2]

* ``lightvid``: ``build_dataset(train=True)`` -- per sample: open once, seek to the keyframe
  before the first needed frame, decode forward to the last needed one (skipping unwanted
  non-reference frames), convert/resize only the needed frames.
* ``naive``: decode every frame of the video to RGB, index the clip, then the same transforms.
* The synthetic set is small, so by default (``DataConfig.cache``) it is decoded once into
  memory at build time; the table shows it both ways.

Both run through a ``DataLoader`` (``--workers`` processes, batches of 8) over the same
random clips (16 frames); the table gives clips/s (wall clock, interleaved repeats, median)
and CPU ms per clip (one process, ``time.process_time``: robust when the machine is shared).
The last table compares the loader with the training step (forward, backward, AdamW) of
the ``make demo`` model from ``configs/quickstart.yaml``.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lightvid.data.build import DataConfig, build_dataset, collate_skip_bad  # noqa: E402
from lightvid.data.video import read_all_frames  # noqa: E402

MEAN, STD = (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)


class NaiveDataset(Dataset):
    """Decode every frame, then index: the baseline."""

    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        path, label = self.ds.samples[i]
        frames = read_all_frames(path)  # (N, H, W, 3)
        idx = self.ds.sampler.train_clip(len(frames), 0.0)  # no target fps here: the rate is unused
        return self.ds.transform(frames[idx])[0], label, i


def loader_rate(ds, n: int, workers: int, seed: int) -> float:
    g = torch.Generator().manual_seed(seed)
    sampler = torch.utils.data.RandomSampler(ds, replacement=True, num_samples=n, generator=g)
    loader = DataLoader(ds, batch_size=8, sampler=sampler, num_workers=workers, collate_fn=collate_skip_bad,
                        persistent_workers=False)
    it = iter(loader)
    next(it)  # worker start-up is not throughput: time from the first batch on
    t = time.perf_counter()
    count = sum(len(b[0]) for b in it)
    return count / (time.perf_counter() - t)


def cpu_ms(ds, n: int) -> float:
    torch.manual_seed(0)
    t = time.process_time()
    for i in range(n):
        ds[i % len(ds)]
    return (time.process_time() - t) / n * 1000


def demo_step_rate(cfg_path: Path, steps: int) -> tuple[str, float]:
    import yaml

    import lightvid

    cfg = yaml.safe_load(cfg_path.read_text())
    m, d = cfg["model"], cfg["data"]
    bs = cfg.get("trainer", {}).get("batch_size", 16)
    classes = d.get("synth", {}).get("classes", 10)
    model = lightvid.create_model(m["name"], num_classes=classes, **m.get("kwargs", {}))
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(bs, 3, d.get("clip_len", 16), d["size"], d["size"])
    y = torch.randint(0, classes, (bs,))
    rates = []
    for s in range(steps + 2):
        t = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if s >= 2:
            rates.append(bs / (time.perf_counter() - t))
    return f"{m['name']} {m.get('kwargs', {})} batch {bs} at {tuple(x.shape[1:])}", statistics.median(rates)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer clips and repeats")
    p.add_argument("--kinetics", default=str(REPO.parent / "shared" / "data" / "kinetics5"))
    p.add_argument("--synth-root", default=None, help="synthetic set (default: generated into a temp folder)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--config", default=str(REPO / "configs" / "quickstart.yaml"), help="the demo config")
    args = p.parse_args(argv)
    n = 48 if args.quick else 160
    repeats = args.repeats or (1 if args.quick else 3)
    torch.set_num_threads(1)  # what a DataLoader worker gets

    from lightvid.data.synth import ensure_synth

    tmp = tempfile.TemporaryDirectory()
    synth = Path(args.synth_root or Path(tmp.name) / "synth")
    ensure_synth(synth, classes=10, train=200 if args.quick else 800, val=10, frames=16, size=64)
    sets = {"synth 16x64x64 (crop 56), streamed from disk": DataConfig(
                root=str(synth), clip_len=16, stride=1, size=56, short_side=64, cache=False),
            "synth 16x64x64 (crop 56), in memory (synth default)": DataConfig(
                root=str(synth), clip_len=16, stride=1, size=56, short_side=64)}
    if Path(args.kinetics).is_dir():
        sets["kinetics5 16 frames (stride 2, short side 128, crop 112)"] = DataConfig(
            root=args.kinetics, clip_len=16, stride=2, size=112, short_side=128)
        sets["kinetics5 16 frames (stride 2, short side 64, crop 56)"] = DataConfig(
            root=args.kinetics, clip_len=16, stride=2, size=56, short_side=64)
    else:
        print(f"({args.kinetics} absent: kinetics5 rows skipped)")

    rows = []
    for name, cfg in sets.items():
        ours = build_dataset(cfg, "train", True, MEAN, STD)
        naive = NaiveDataset(ours)
        r_ours, r_naive = [], []
        for rep in range(repeats):  # interleaved, so both see the same machine load
            r_ours.append(loader_rate(ours, n, args.workers, rep))
            r_naive.append(loader_rate(naive, n, args.workers, rep))
        c_ours, c_naive = cpu_ms(ours, n // 2), cpu_ms(naive, n // 2)
        ro, rn = statistics.median(r_ours), statistics.median(r_naive)
        rows.append((name, ro, rn, c_ours, c_naive))
    print(f"\ndecode + transform, {args.workers} workers, batches of 8, {n} clips x {repeats} repeats (median)")
    print(f"{'dataset':<58} {'lightvid':>9} {'naive':>8} {'x':>6} {'cpu ms/clip':>12} {'naive':>7} {'x':>6}")
    for name, ro, rn, co, cn in rows:
        print(f"{name:<58} {ro:>8.1f}/s {rn:>6.1f}/s {ro / rn:>6.2f} {co:>12.1f} {cn:>7.1f} {cn / co:>6.2f}")

    cfg_path = Path(args.config)
    if cfg_path.is_file():
        import yaml

        d = yaml.safe_load(cfg_path.read_text())["data"]
        demo = DataConfig(root=str(synth), clip_len=d.get("clip_len", 16), stride=d.get("stride", 1),
                          size=d["size"], short_side=d.get("short_side"), pad=d.get("pad", 0))
        if d.get("synth", {}).get("size", 64) != 64:
            root32 = Path(tmp.name) / "synth-demo"
            ensure_synth(root32, **{**d["synth"], "train": 200 if args.quick else 800, "val": 10})
            demo.root = str(root32)
        ds = build_dataset(demo, "train", True, MEAN, STD)
        load = statistics.median(loader_rate(ds, n * 2, args.workers, r) for r in range(repeats))
        torch.set_num_threads(2)
        what, step = demo_step_rate(cfg_path, 5 if args.quick else 15)
        print(f"\nmake demo ({cfg_path.name}): {what}")
        print(f"loader ({args.workers} workers) {load:.0f} clips/s vs training step {step:.0f} clips/s: "
              f"loader/step = {load / step:.1f}x (target >= 2x)")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
