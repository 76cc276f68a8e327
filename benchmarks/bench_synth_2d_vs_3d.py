"""A frame-wise 2D CNN averaged over time vs a 3D CNN on the synthetic motion set.

    python benchmarks/bench_synth_2d_vs_3d.py [--quick] [--epochs 15] [--size 32]

Both networks are the same four-stage CNN (widths 16-32-64-128, batch norm, global average
pooling, one linear layer); the 2D one has 1x3x3 kernels and spatial-only pooling, so it sees
each frame alone and its pooled features are averaged over time (a linear head makes that
the average of per-frame logits). The 3D one has 3x3x3 kernels. Same data, optimiser and
epochs. The synthetic set is built so that a class and its time-reverse (right/left,
down/up, clockwise/anticlockwise, in/out) have identical distributions of single frames:
the 2D model must stay near chance within those pairs, the 3D model must not.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lightvid.data.build import DataConfig, build_dataset  # noqa: E402
from lightvid.data.synth import ensure_synth  # noqa: E402

MEAN, STD = (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)


def tiny_cnn(num_classes: int, temporal: bool, width: int = 16) -> nn.Sequential:
    k = (3, 3, 3) if temporal else (1, 3, 3)
    p = (0, 1, 1) if not temporal else (1, 1, 1)

    def block(i, o, pool):
        return [nn.Conv3d(i, o, k, padding=p, bias=False), nn.BatchNorm3d(o), nn.ReLU(inplace=True), nn.MaxPool3d(pool)]

    tpool = 2 if temporal else 1
    return nn.Sequential(*block(3, width, (1, 2, 2)), *block(width, 2 * width, (tpool, 2, 2)),
                         *block(2 * width, 4 * width, (tpool, 2, 2)), *block(4 * width, 8 * width, 1),
                         nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(8 * width, num_classes))  # (B, classes)


def load(root: Path, split: str, size: int, frames: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    cfg = DataConfig(root=str(root), clip_len=frames, size=size, short_side=size, num_workers=0)
    ds = build_dataset(cfg, split, False, MEAN, STD)
    items = [ds[i] for i in range(len(ds))]
    return torch.stack([x for x, _, _ in items]), torch.tensor([y for _, y, _ in items]), ds.classes


def train_eval(model, xtr, ytr, xva, yva, epochs: int, seed: int) -> tuple[torch.Tensor, float]:
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    steps = epochs * ((len(xtr) + 15) // 16)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.15)
    t = time.process_time()
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(xtr))
        for i in range(0, len(perm), 16):
            idx = perm[i:i + 16]
            loss = nn.functional.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    cpu = time.process_time() - t
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(xva[i:i + 64]).argmax(1) for i in range(0, len(xva), 64)])
    return pred, cpu


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="4 direction classes, 320 clips, 6 epochs")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--size", type=int, default=32, help="frame size of the generated set")
    p.add_argument("--root", default=None, help="synthetic set folder (default: a temp folder)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    params = (dict(classes=4, train=320, val=160, frames=16, size=args.size) if args.quick
              else dict(classes=10, train=800, val=200, frames=16, size=args.size))
    epochs = args.epochs or (6 if args.quick else 15)
    tmp = tempfile.TemporaryDirectory()
    root = ensure_synth(Path(args.root or Path(tmp.name) / "synth"), **params)
    xtr, ytr, classes = load(root, "train", args.size, 16)
    xva, yva, _ = load(root, "val", args.size, 16)
    print(f"synthetic set {params}, {epochs} epochs, batch 16, AdamW one-cycle 3e-3")
    pairs = [("right", "left"), ("down", "up"), ("rotate_cw", "rotate_ccw"), ("zoom_in", "zoom_out")]
    direction = [classes.index(c) for c in ("right", "left", "down", "up") if c in classes]
    results = {}
    for name, temporal in (("2D frame-wise, averaged over time", False), ("3D", True)):
        torch.manual_seed(args.seed)
        model = tiny_cnn(len(classes), temporal)
        pred, cpu = train_eval(model, xtr, ytr, xva, yva, epochs, args.seed)
        results[name] = (pred, cpu)
    print(f"\n{'model':<36} {'all classes':>11} {'directions':>10} " + " ".join(f"{a}/{b:<10}" for a, b in pairs
                                                                             if a in classes) + "  train CPU s")
    for name, (pred, cpu) in results.items():
        acc = (pred == yva).float().mean().item()
        dmask = torch.isin(yva, torch.tensor(direction))
        dacc = (pred[dmask] == yva[dmask]).float().mean().item()
        cells = []
        for a, b in pairs:
            if a in classes and b in classes:
                ia, ib = classes.index(a), classes.index(b)
                m = (yva == ia) | (yva == ib)
                # within the pair: of the clips predicted as a or b, how many got the right one
                hit = ((pred == yva) & m).sum().item()
                either = (m & ((pred == ia) | (pred == ib))).sum().item()
                cells.append(f"{hit / max(either, 1):>15.2f}")
        print(f"{name:<36} {acc:>11.3f} {dacc:>10.3f} " + " ".join(cells) + f"  {cpu:>10.0f}")
    print(f"\nchance: all {1 / len(classes):.3f}, directions {1 / len(direction):.3f}, within a pair 0.50 "
          "(pair columns: accuracy among clips of the pair predicted as either class of the pair)")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
