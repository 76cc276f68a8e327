"""Small motion sets in class-folder layout, made independently of ``lightvid.data.synth``.

A recipe tuned on one generator learns that generator. This script draws different sets with
OpenCV only (its own shapes, backgrounds, speeds and codec: ``cv2.VideoWriter`` MPEG-4 part 2)
so the quickstart recipe can be checked on motion it has never been tuned for::

    OUT/train/<class>/<class>_0000.mp4 ...   100 clips per class (default)
    OUT/val/<class>/<class>_0000.mp4 ...     25 clips per class

Classes (any subset): left, right, up, down (translation), cw, ccw (rotation), grow, shrink
(scaling). A variant fixes the frame size, the number of frames, the speed range, the
background (``flat``, ``noise``, ``stripes``, ``blobs``) and the shapes (``arrow``, ``letter``,
``polygon``); everything else is random per clip from ``numpy.random.default_rng([seed, split, i])``.

    python benchmarks/make_motion_variants.py OUT --size 64 --frames 16 --texture noise
    python benchmarks/make_motion_variants.py --preset all --root /tmp/motion-variants
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np

CLASSES = ("left", "right", "up", "down", "cw", "ccw", "grow", "shrink")
TEXTURES = ("flat", "noise", "stripes", "blobs")
SHAPES = ("arrow", "letter", "polygon")

# name -> keyword arguments of make_set: different sizes, speeds, textures and class subsets
PRESETS = {
    "v64": dict(size=64, frames=16, texture="noise", shapes="polygon"),
    "v48-fast": dict(size=48, frames=16, texture="flat", shapes="arrow", speed=(1.5, 2.5)),
    "v96-slow": dict(size=96, frames=20, texture="stripes", shapes="letter", speed=(0.5, 0.9)),
    "v80-blobs": dict(size=80, frames=12, texture="blobs", shapes="polygon"),
    "v64-6cls": dict(size=64, frames=16, texture="blobs", shapes="arrow", classes="left,right,cw,ccw,grow,shrink"),
    # few clips of only the classes a direction-tuned recipe missed, every shape mixed in one set
    "v56-rot-small": dict(size=56, frames=16, texture="noise", shapes="arrow,letter,polygon",
                          classes="cw,ccw,grow,shrink", train=40),
}


def background(rng: np.random.Generator, size: int, texture: str) -> np.ndarray:
    """(H, W, 3) uint8 static background."""
    base = rng.integers(0, 256, 3)
    if texture == "flat":
        return np.broadcast_to(base, (size, size, 3)).astype(np.uint8).copy()
    if texture == "noise":  # low-pass random field
        small = rng.integers(0, 256, (max(2, size // 8), max(2, size // 8), 3)).astype(np.uint8)
        field = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC).astype(np.float32)
        return (0.5 * field + 0.5 * base).astype(np.uint8)  # half-contrast clutter
    if texture == "stripes":
        img = np.broadcast_to(base, (size, size, 3)).astype(np.uint8).copy()
        other = tuple(int(v) for v in rng.integers(0, 256, 3))
        period = int(rng.integers(4, 12))
        for k in range(-size, 2 * size, period):
            cv2.line(img, (k, 0), (k + size // 2, size), other, max(1, period // 3))
        return img
    img = np.broadcast_to(base, (size, size, 3)).astype(np.uint8).copy()
    for _ in range(int(rng.integers(3, 9))):
        c = tuple(int(v) for v in rng.integers(0, 256, 3))
        cv2.circle(img, tuple(int(v) for v in rng.integers(0, size, 2)), int(rng.integers(2, size // 5)), c, -1)
    return img


def shape_points(rng: np.random.Generator, shape: str) -> np.ndarray:
    """Outline of an asymmetric shape around the origin, radius ~1. (N, 2) float."""
    if shape == "arrow":
        return np.array([[1.0, 0.0], [0.1, 0.7], [0.1, 0.25], [-0.9, 0.25], [-0.9, -0.25], [0.1, -0.25], [0.1, -0.7]])
    if shape == "letter":  # an "L"
        return np.array([[-0.6, -0.9], [-0.1, -0.9], [-0.1, 0.4], [0.7, 0.4], [0.7, 0.9], [-0.6, 0.9]])
    n = int(rng.integers(4, 7))
    ang = np.sort(rng.uniform(0, 2 * np.pi / n, n) + np.arange(n) * 2 * np.pi / n)  # spread: never a sliver
    rad = rng.uniform(0.6, 1.0, n)
    rad[0] = 1.0
    return np.stack([rad * np.cos(ang), rad * np.sin(ang)], 1)


def render(cls: str, rng: np.random.Generator, size: int, frames: int, texture: str, shapes: list[str],
           speed: tuple[float, float]) -> np.ndarray:
    """(T, H, W, 3) uint8 BGR frames of one clip."""
    bg = background(rng, size, texture)
    pts = shape_points(rng, shapes[int(rng.integers(len(shapes)))])
    dark = bg.mean() > 128  # a dark object on a light background and the reverse: always visible
    colour = tuple(int(v) for v in (rng.uniform(0, 60, 3) if dark else rng.uniform(195, 255, 3)))
    r = rng.uniform(0.13, 0.2) * size
    v = rng.uniform(*speed)  # pixels (at 64 px) per frame; scaled to the frame size
    v *= size / 64
    theta0 = rng.uniform(0, 2 * np.pi)
    travel = v * (frames - 1)
    cx0 = rng.uniform(r + 2, size - r - 2)
    cy0 = rng.uniform(r + 2, size - r - 2)
    if cls in ("left", "right", "up", "down"):  # start so that the path stays mostly inside
        lo, hi = r, size - r
        start = rng.uniform(lo, max(lo, hi - travel)) if hi - lo > travel else lo
        if cls == "right":
            cx0 = start
        elif cls == "left":
            cx0 = size - start
        elif cls == "down":
            cy0 = start
        else:
            cy0 = size - start
    omega = rng.uniform(0.1, 0.25) * v / (size / 64)  # radians per frame
    growth = (1.0 + rng.uniform(0.04, 0.08) * v / (size / 64))
    out = np.empty((frames, size, size, 3), np.uint8)
    for t in range(frames):
        cx, cy, theta, scale = cx0, cy0, theta0, 1.0
        if cls == "right":
            cx = cx0 + v * t
        elif cls == "left":
            cx = cx0 - v * t
        elif cls == "down":
            cy = cy0 + v * t
        elif cls == "up":
            cy = cy0 - v * t
        elif cls == "cw":
            theta = theta0 + omega * t  # image y points down: increasing angle turns clockwise
        elif cls == "ccw":
            theta = theta0 - omega * t
        elif cls == "grow":
            scale = 0.6 * growth ** t
        elif cls == "shrink":
            scale = 0.6 * growth ** (frames - 1 - t)
        rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        poly = (pts @ rot.T) * r * scale + (cx, cy)
        img = bg.copy()
        cv2.fillPoly(img, [np.round(poly * 4).astype(np.int32)], colour, lineType=cv2.LINE_AA, shift=2)
        img = img.astype(np.int16) + rng.normal(0, 4, img.shape).astype(np.int16)
        out[t] = img.clip(0, 255).astype(np.uint8)
    return out


def write(path: Path, frames: np.ndarray, fps: int = 25) -> None:
    tmp = path.with_name(path.stem + ".part.mp4")
    w = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (frames.shape[2], frames.shape[1]))
    if not w.isOpened():
        raise SystemExit(f"{tmp}: OpenCV cannot write mp4v here")
    for f in frames:
        w.write(f)
    w.release()
    os.replace(tmp, path)


def make_set(out: str | Path, size: int = 64, frames: int = 16, texture: str = "noise", shapes: str = "polygon",
             speed: tuple[float, float] = (0.8, 1.6), classes: str = ",".join(CLASSES), train: int = 100,
             val: int = 25, seed: int = 0) -> Path:
    out = Path(out)
    names = [c.strip() for c in classes.split(",") if c.strip()]
    bad = [c for c in names if c not in CLASSES]
    if bad or texture not in TEXTURES:
        raise SystemExit(f"unknown class {bad} or texture {texture!r}; classes {CLASSES}, textures {TEXTURES}")
    shape_list = shapes.split(",")
    if (out / "variant.json").is_file():
        print(f"{out}: already made, kept", file=sys.stderr)
        return out
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out}: exists and is not a finished variant set; choose an empty folder")
    for si, (split, n) in enumerate((("train", train), ("val", val))):
        for ci, cls in enumerate(names):
            d = out / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                rng = np.random.default_rng([seed, si, ci, i])
                write(d / f"{cls}_{i:04d}.mp4", render(cls, rng, size, frames, texture, shape_list, speed))
    params = dict(size=size, frames=frames, texture=texture, shapes=shapes, speed=list(speed), classes=names,
                  train=train, val=val, seed=seed)
    (out / "variant.json").write_text(json.dumps(params, indent=1) + "\n")
    return out


def contact_sheet(path: str | Path, cell: int = 48) -> Path:
    """One clip per class of every preset (first, middle and last frame side by side), as a PNG."""
    rows = []
    for kw in PRESETS.values():
        names = kw.get("classes", ",".join(CLASSES)).split(",")
        cells = []
        for ci, cls in enumerate(CLASSES):
            if cls not in names:
                cells.append(np.full((cell, 3 * cell, 3), 255, np.uint8))
                continue
            rng = np.random.default_rng([0, 9, ci, 0])
            f = render(cls, rng, kw["size"], kw["frames"], kw["texture"], kw["shapes"].split(","),
                       kw.get("speed", (0.8, 1.6)))
            picks = [cv2.resize(f[t], (cell, cell), interpolation=cv2.INTER_AREA) for t in (0, len(f) // 2, -1)]
            cells.append(np.concatenate(picks, 1))
        rows.append(np.concatenate([np.pad(c, ((2, 2), (4, 4), (0, 0)), constant_values=255) for c in cells], 1))
    img = np.concatenate(rows, 0)
    cv2.imwrite(str(path), img)
    return Path(path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", nargs="?")
    p.add_argument("--preset", choices=[*PRESETS, "all"])
    p.add_argument("--root", default="/tmp/motion-variants", help="parent folder for --preset")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--texture", choices=TEXTURES, default="noise")
    p.add_argument("--shapes", default="polygon", help=f"comma-separated subset of {SHAPES}")
    p.add_argument("--speed", type=float, nargs=2, default=(0.8, 1.6), help="pixels per frame at 64 px")
    p.add_argument("--classes", default=",".join(CLASSES))
    p.add_argument("--train", type=int, default=100, help="clips per class (v56-rot-small fixes 40)")
    p.add_argument("--val", type=int, default=25, help="clips per class")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sheet", help="write a PNG with one clip per class of every preset (first/middle/last frame)")
    a = p.parse_args(argv)
    cv2.setNumThreads(1)
    if a.sheet:
        print(contact_sheet(a.sheet))
        return 0
    if a.preset:
        for name in PRESETS if a.preset == "all" else [a.preset]:
            kw = {"train": a.train, "val": a.val, **PRESETS[name]}  # a preset may fix its own clip count
            print(make_set(Path(a.root) / name, seed=a.seed, **kw))
        return 0
    if not a.out:
        p.error("give OUT or --preset")
    print(make_set(a.out, a.size, a.frames, a.texture, a.shapes, tuple(a.speed), a.classes, a.train, a.val, a.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
