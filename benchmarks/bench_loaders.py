"""Loader throughput per decoder and per layout on the real Kinetics clips, against training steps.

    python benchmarks/bench_loaders.py [--quick] [--kinetics ../shared/data/kinetics5] [--work DIR]

The training split of kinetics5 (49 clips of ~10 s, short side 128, a keyframe every 250
frames) is prepared in four layouts with lightvid's own commands (timed):

* video: the files as they are;
* short-GOP video: ``lightvid data reencode --gop 16`` (libx264, preset medium, CRF 23);
* raw frames: ``lightvid data extract-frames`` (JPEG quality 95, MMAction2 layout);
* shards: ``lightvid data shard --shard-size 2MB`` (tar, WebDataset layout, the mp4s as they are).

Each row reads random training clips of 16 frames at stride 2, resized to short side 128
and cropped to 112 (the Kinetics recipe), with the decoders that load (``pyav``, ``decord``,
``torchcodec``). Columns: CPU ms per clip in one process (``time.process_time``: the fair
figure on a shared machine) and clips/s through a DataLoader with ``--workers`` processes
(batches of 8, timed from the first batch on). Rows are measured in interleaved rounds (every
row once per round, then again), and the median is printed, so all rows see the same load.

The last table sets the best loader against training steps (forward, backward, AdamW, 2
threads) of the ``make demo`` model and of ``r2plus1d_18`` at 16x112x112, batch 8.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, IterableDataset

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_data import demo_step_rate, loader_rate  # noqa: E402

from lightvid.data.build import DataConfig, build_dataset, collate_skip_bad  # noqa: E402
from lightvid.data.convert import extract_frames, reencode, write_shards  # noqa: E402
from lightvid.data.decoders import DECODERS, get_decoder  # noqa: E402
from lightvid.errors import UserError  # noqa: E402

MEAN, STD = (0.43, 0.39, 0.38), (0.23, 0.22, 0.22)


class Epochs(IterableDataset):
    """A shard dataset read for several epochs inside each worker (no worker restart per epoch)."""

    def __init__(self, ds, epochs: int):
        self.ds, self.epochs = ds, epochs

    def __iter__(self):
        for e in range(self.epochs):
            self.ds.set_epoch(e)
            yield from self.ds


def shard_loader_rate(ds, n: int, workers: int) -> float:
    loader = DataLoader(Epochs(ds, -(-n // ds.num_videos) + 1), batch_size=8, num_workers=workers,
                        collate_fn=collate_skip_bad)
    it = iter(loader)
    next(it)
    t = time.perf_counter()
    count = 0
    for b in it:
        count += len(b[0])
        if count >= n:
            break
    return count / (time.perf_counter() - t)


def cpu_ms(ds, n: int, seed: int) -> float:
    torch.manual_seed(seed)
    t = time.process_time()
    if isinstance(ds, IterableDataset):
        ds.set_epoch(seed)
        it = iter(Epochs(ds, -(-n // ds.num_videos)))
        for _ in range(n):
            next(it)
    else:
        for i in torch.randint(0, len(ds), (n,)).tolist():
            ds[i]
    return (time.process_time() - t) / n * 1000


def timed(fn, *args, **kw):
    t, c = time.perf_counter(), time.process_time()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t, time.process_time() - c


def step_rate(name: str, bs: int, frames: int, size: int, steps: int, **kw) -> tuple[float, float, float]:
    """``(clips/s, seconds per step, CPU seconds per step)`` of forward + backward + AdamW, median over
    ``steps`` after a warm-up."""
    import lightvid

    model = lightvid.create_model(name, num_classes=400, **kw).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x, y = torch.randn(bs, 3, frames, size, size), torch.randint(0, 400, (bs,))
    times, cpus = [], []
    for s in range(steps + 1):
        t, c = time.perf_counter(), time.process_time()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if s >= 1:
            times.append(time.perf_counter() - t)
            cpus.append(time.process_time() - c)
    sec = statistics.median(times)
    return bs / sec, sec, statistics.median(cpus)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer clips and rounds, one full-size step")
    p.add_argument("--kinetics", default=str(REPO.parent / "shared" / "data" / "kinetics5"))
    p.add_argument("--work", default=None, help="keep the prepared layouts here (default: a temp folder)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--no-steps", action="store_true", help="skip the training-step comparison")
    p.add_argument("--only-steps", action="store_true", help="only the training steps (compare with a loader table)")
    args = p.parse_args(argv)
    src = Path(args.kinetics)
    if not src.is_dir():
        print(f"{src} is absent: nothing to measure")
        return 0
    if args.only_steps:
        steps_table(args.quick, {})
        return 0
    n = 24 if args.quick else 64
    rounds = args.rounds or (2 if args.quick else 3)
    tmp = tempfile.TemporaryDirectory()
    work = Path(args.work or tmp.name)
    torch.set_num_threads(1)  # what a DataLoader worker gets
    print(f"cpu: {_cpu_name()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start")

    # -- prepare the layouts (training split) with lightvid's commands --------------------------
    prep = {}
    _, wall, cpu = timed(reencode, src / "train", work / "gop16" / "train", gop=16, workers=args.workers,
                         progress=False)
    prep["reencode --gop 16"] = (wall, cpu)
    _, wall, cpu = timed(extract_frames, src / "train", work / "frames" / "train", ext="jpg", quality=95,
                         workers=args.workers, progress=False)
    prep["extract-frames (JPEG q95)"] = (wall, cpu)
    _, wall, cpu = timed(write_shards, src, work / "shards", shard_size=2 * 10**6, splits=["train"], progress=False)
    prep["shard --shard-size 2MB"] = (wall, cpu)
    sizes = {"video": _du(src / "train"), "short-GOP video": _du(work / "gop16"), "raw frames": _du(work / "frames"),
             "shards": _du(work / "shards")}
    print("\npreparation of the 49 training clips:")
    for k, (w, _) in prep.items():
        print(f"  {k:<28} {w:7.1f} s wall")
    print("sizes: " + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in sizes.items()))

    common = dict(clip_len=16, stride=2, size=112, short_side=128, num_workers=args.workers, cache=False)
    decoders = []
    for d in DECODERS:
        try:
            get_decoder(d)
            decoders.append(d)
        except UserError as e:
            print(f"({e})")
    rows = {}
    for d in decoders:
        rows[f"video, {d}"] = DataConfig(root=str(src), decoder=d, **common)
        rows[f"short-GOP video (gop 16), {d}"] = DataConfig(root=str(work / "gop16"), decoder=d, **common)
    rows["raw frames (JPEG), OpenCV"] = DataConfig(root=str(work / "frames"), **common)
    for d in decoders:
        rows[f"shards (tar), {d}"] = DataConfig(root=str(work / "shards"), decoder=d, shard_equalize="none",
                                               shuffle_buffer=16, **common)
    datasets = {k: build_dataset(c, "train", True, MEAN, STD) for k, c in rows.items()}
    cpu = {k: [] for k in rows}
    rate = {k: [] for k in rows}
    for r in range(rounds):  # interleaved: every row once per round
        for k, ds in datasets.items():
            cpu[k].append(cpu_ms(ds, n // 2, r))
            rate[k].append(shard_loader_rate(ds, n, args.workers) if isinstance(ds, IterableDataset)
                           else loader_rate(ds, n, args.workers, r))
    base = statistics.median(rate["video, pyav"])
    base_cpu = statistics.median(cpu["video, pyav"])
    print(f"\nkinetics5 train (49 clips), 16 frames stride 2, short side 128, crop 112; {args.workers} workers, "
          f"batches of 8; {n} clips x {rounds} interleaved rounds (median)")
    print(f"{'layout, decoder':<40} {'clips/s':>8} {'x':>6} {'CPU ms/clip':>12} {'x':>6}")
    for k in rows:
        rt, c = statistics.median(rate[k]), statistics.median(cpu[k])
        print(f"{k:<40} {rt:8.1f} {rt / base:6.2f} {c:12.1f} {base_cpu / c:6.2f}")
    best = max(rows, key=lambda k: statistics.median(rate[k]))

    if not args.no_steps:
        steps_table(args.quick, {k: (statistics.median(rate[k]), statistics.median(cpu[k]))
                                 for k in ("video, pyav", best)})
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    tmp.cleanup()
    return 0


def demo_loader_cpu_ms(n: int = 320) -> dict:
    """CPU ms per training clip of the ``make demo`` data (4 synthetic classes, 8x32x32), in memory and from disk."""
    import yaml

    from lightvid.data.synth import ensure_synth

    d = yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())["data"]
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = ensure_synth(Path(tmp) / "s", **{**d["synth"], "train": 160, "val": 8}, progress=False, workers=1)
        cfg = DataConfig(root=str(root), clip_len=d["clip_len"], stride=d["stride"], size=d["size"],
                         short_side=d["short_side"], pad=d.get("pad", 0))
        ds = build_dataset(cfg, "train", True, MEAN, STD)
        torch.set_num_threads(1)
        for mode in ("in memory", "from disk"):
            if mode == "from disk":
                ds._cache = None  # what `cache: false` gives
            out[mode] = cpu_ms(ds, n, 0)
    return out


def steps_table(quick: bool, loaders: dict) -> None:
    """Training steps (2 threads) against ``loaders`` = ``{name: (clips/s, CPU ms per clip)}``."""
    demo_loader = demo_loader_cpu_ms()
    torch.set_num_threads(2)
    what, demo = demo_step_rate(REPO / "configs" / "quickstart.yaml", 3 if quick else 10)
    _, demo_sec, demo_cpu = step_rate("r3d_10", 16, 8, 32, 5 if quick else 10, width_mult=0.125)
    full, sec, cpu_s = step_rate("r2plus1d_18", 8, 16, 112, 1 if quick else 2)
    print(f"\ntraining steps (forward, backward, AdamW; {torch.get_num_threads()} threads)")
    print(f"  make demo ({what}): {demo:.0f} clips/s; {demo_cpu / 16 * 1000:.1f} CPU ms per clip")
    for k, c in demo_loader.items():
        print(f"  demo loader {k}: {c:.2f} CPU ms per clip = 1/{demo_cpu / 16 * 1000 / c:.0f} of the demo step's")
    print(f"  r2plus1d_18, batch 8 of 16x112x112: {sec:.1f} s per step ({cpu_s:.1f} CPU s) = {full:.2f} clips/s, "
          f"{cpu_s / 8 * 1000:.0f} CPU ms per clip")
    for k, (rt, c) in loaders.items():
        print(f"  loader '{k}' {rt:.1f} clips/s = {rt / full:.0f}x the r2plus1d_18 step; "
              f"{c:.1f} CPU ms per clip = 1/{cpu_s / 8 * 1000 / c:.0f} of the step's")


def _du(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
