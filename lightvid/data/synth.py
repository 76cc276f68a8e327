"""The synthetic motion benchmark: classes that only motion tells apart.

Each clip shows one textured, irregular object moving over a cluttered static background
with sensor noise. The class is the motion: translation right/left/down/up, rotation
clockwise/anticlockwise, zoom in/out, "still" and "shake" (independent per-frame jitter).
Trajectories are symmetric around the clip's middle frame (random midpoint, angle, size),
so a class and its time-reverse (right/left, cw/ccw, in/out) have the *same* distribution
of single frames: a frame-wise 2D model averaged over time cannot tell them apart, while
a 3D model sees the direction. Shape, colour, texture, size, speed, start position,
clutter and noise vary per clip.

Files are real H.264 ``.mp4`` (PyAV, libx264, yuv420p) in ``OUT/{train,val}/<class>/``
with ``classes.txt``, ``train.txt``/``val.txt`` list files (``relative/path.mp4 label``)
and ``synth.json`` (the parameters; written last, it marks a complete set). Every clip is
drawn from ``numpy.random.default_rng([seed, split, index])``, so a seed gives identical
decoded frames whatever the number of workers.

Bookkeeping (lightvid deletes only what it provably wrote): before the first clip,
``.lightvid-synth.json`` (the manifest) records the parameters and every relative path the
set will hold. Regenerating with other parameters deletes only files listed there (and
folders left empty by that); an interrupted run with the same parameters resumes, keeping
its finished clips (each is written to ``.NAME.part`` and renamed into place). A non-empty
folder without a manifest or stamp is not a synthetic set and is refused untouched, and a
path the set would write that already holds something not listed is refused too.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import re
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

from lightvid.errors import UserError

SYNTH_VERSION = 3
CLASSES = ("right", "left", "down", "up", "rotate_cw", "rotate_ccw", "zoom_in", "zoom_out", "still", "shake")
# class -> (dx, dy) unit direction of translation (image y points down)
DIRECTIONS = {"right": (1, 0), "left": (-1, 0), "down": (0, 1), "up": (0, -1)}
DEFAULTS = dict(classes=10, train=800, val=200, frames=16, size=64, seed=0, fps=25)
STAMP = "synth.json"
MANIFEST = ".lightvid-synth.json"  # parameters and every path of the set, written before the first clip
LIST_FILES = ("classes.txt", "train.txt", "val.txt")
_CLIP_PATH = re.compile(r"^(train|val)/([a-z0-9_]+)/\2_\d{5}\.mp4$")  # what _clip_path writes


def _contrast_colours(rng: np.random.Generator, bg_mean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two object colours whose mean luminance differs from the background by >= 70."""
    for _ in range(100):
        c1, c2 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        if abs((c1 + c2).mean() / 2 - bg_mean.mean()) >= 70:
            return c1, c2
    return np.full(3, 255.0 if bg_mean.mean() < 128 else 0.0), rng.uniform(0, 255, 3)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A colour gradient with static clutter (ellipses, rectangles, lines). (H, W, 3) float."""
    import cv2

    c0, c1 = rng.uniform(20, 235, 3), rng.uniform(20, 235, 3)
    theta = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size] / size
    w = (np.cos(theta) * xx + np.sin(theta) * yy)
    w = (w - w.min()) / (w.max() - w.min() + 1e-6)
    bg = c0 * (1 - w[..., None]) + c1 * w[..., None]
    for _ in range(int(rng.integers(0, 6))):
        colour = tuple(float(v) for v in np.clip(bg.mean((0, 1)) + rng.normal(0, 35, 3), 0, 255))
        cx, cy = (int(v) for v in rng.integers(0, size, 2))
        kind = rng.integers(3)
        if kind == 0:
            axes = tuple(int(v) for v in rng.integers(2, max(3, size // 6), 2))
            cv2.ellipse(bg, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
        elif kind == 1:
            dx, dy = (int(v) for v in rng.integers(2, max(3, size // 5), 2))
            cv2.rectangle(bg, (cx - dx, cy - dy), (cx + dx, cy + dy), colour, -1)
        else:
            ex, ey = (int(v) for v in rng.integers(0, size, 2))
            cv2.line(bg, (cx, cy), (ex, ey), colour, int(rng.integers(1, 3)))
    return bg


def _sprite(rng: np.random.Generator, radius: int, bg_mean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An irregular textured polygon (never rotation-symmetric): (S, S, 3) colour, (S, S) alpha."""
    import cv2

    s = 2 * radius + 1
    n = int(rng.integers(3, 8))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = rng.uniform(0.45, 1.0, n) * radius
    radii[0] = radius  # one far vertex: an orientation the eye (and a conv) can follow
    pts = np.stack([radius + radii * np.cos(angles), radius + radii * np.sin(angles)], 1)
    mask = np.zeros((s, s), np.float32)
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1.0)
    if mask.sum() < 0.25 * s * s:  # thin polygon: add a blob so the object stays visible
        cv2.ellipse(mask, (radius, radius), (radius // 2, max(2, radius // 3)), float(rng.uniform(0, 180)),
                    0, 360, 1.0, -1)
    c1, c2 = _contrast_colours(rng, bg_mean)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    kind = rng.integers(4)
    if kind == 0:  # stripes
        phi = rng.uniform(0, np.pi)
        period = rng.uniform(3, max(4, radius))
        t = (np.sin(2 * np.pi * (np.cos(phi) * xx + np.sin(phi) * yy) / period) > 0).astype(np.float32)
    elif kind == 1:  # checker
        p = int(rng.integers(2, max(3, radius // 2 + 1)))
        t = (((xx // p) + (yy // p)) % 2).astype(np.float32)
    elif kind == 2:  # linear gradient
        phi = rng.uniform(0, 2 * np.pi)
        t = (np.cos(phi) * (xx - radius) + np.sin(phi) * (yy - radius)) / (2 * radius) + 0.5
    else:  # solid with a contrasting spot off-centre
        t = np.zeros((s, s), np.float32)
        a = rng.uniform(0, 2 * np.pi)
        cv2.circle(t, (int(radius + 0.5 * radius * np.cos(a)), int(radius + 0.5 * radius * np.sin(a))),
                   max(1, radius // 3), 1.0, -1)
    colour = c1 * (1 - t[..., None]) + c2 * t[..., None]
    return colour.astype(np.float32), mask


def trajectory(cls: str, rng: np.random.Generator, frames: int, size: int, radius: float):
    """Per-frame centre x, y, angle (degrees, anticlockwise) and scale, symmetric around the middle frame."""
    u = np.arange(frames) - (frames - 1) / 2  # centred time
    span = max(frames - 1, 1)
    angle = np.full(frames, rng.uniform(0, 360))
    scale = np.ones(frames)
    lo, hi = radius * 0.6, size - radius * 0.6  # centre may leave the frame by 40% of the object
    if cls in DIRECTIONS:
        dx, dy = DIRECTIONS[cls]
        dist = rng.uniform(0.4, 0.65) * size  # whole-clip displacement
        along = rng.uniform(lo + dist / 2, hi - dist / 2)
        across = rng.uniform(lo, hi)
        step = dist / span * u
        x = along + dx * step if dx else np.full(frames, across)
        y = along + dy * step if dy else np.full(frames, across)
        return x, y, angle, scale
    x = np.full(frames, rng.uniform(lo, hi))
    y = np.full(frames, rng.uniform(lo, hi))
    if cls in ("rotate_cw", "rotate_ccw"):
        total = rng.uniform(240, 400)  # degrees over the clip
        angle = angle + (-1 if cls == "rotate_cw" else 1) * total / span * u
    elif cls in ("zoom_in", "zoom_out"):
        ratio = rng.uniform(2.5, 3.5)  # last/first size
        sign = 1 if cls == "zoom_in" else -1
        scale = rng.uniform(0.8, 1.0) * ratio ** (sign * u / span)
        x = np.full(frames, rng.uniform(size * 0.35, size * 0.65))
        y = np.full(frames, rng.uniform(size * 0.35, size * 0.65))
    elif cls == "shake":
        amp = rng.uniform(0.04, 0.07) * size
        x = x + rng.uniform(-amp, amp, frames)
        y = y + rng.uniform(-amp, amp, frames)
    elif cls != "still":
        raise UserError(f"unknown synthetic class {cls!r}; known: {', '.join(CLASSES)}")
    return x, y, angle, scale


def render_clip(cls: str, rng: np.random.Generator, frames: int = 16, size: int = 64,
                masks: list | None = None) -> np.ndarray:
    """One clip of class ``cls`` as uint8 (T, H, W, 3) RGB; ``masks`` (a list) receives each frame's object alpha."""
    import cv2

    bg = _background(rng, size)
    radius = int(round(rng.uniform(0.16, 0.24) * size))
    colour, mask = _sprite(rng, radius, bg.mean((0, 1)))
    x, y, angle, scale = trajectory(cls, rng, frames, size, radius)
    noise = rng.uniform(1, 6)
    out = np.empty((frames, size, size, 3), np.uint8)
    for t in range(frames):
        m = cv2.getRotationMatrix2D((float(radius), float(radius)), float(angle[t]), float(scale[t]))
        m[:, 2] += (x[t] - radius, y[t] - radius)  # move the sprite centre to (x, y)
        a = cv2.warpAffine(mask, m, (size, size), flags=cv2.INTER_LINEAR)[..., None]
        if masks is not None:
            masks.append(a[..., 0].copy())
        c = cv2.warpAffine(colour, m, (size, size), flags=cv2.INTER_LINEAR)
        frame = bg * (1 - a) + c * a + rng.normal(0, noise, (size, size, 3))
        out[t] = np.clip(frame, 0, 255).astype(np.uint8)
    return out


def rgb_to_yuv420p(rgb: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) RGB -> planar yuv420p (H*3/2, W), BT.601 limited range, in numpy.

    Converting here rather than in libswscale keeps the encoder's input bit-exact from run to
    run (the swscale path gave occasional differing clips).
    """
    x = rgb.astype(np.float32)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    h, w = y.shape
    u = u.reshape(h // 2, 2, w // 2, 2).mean((1, 3))  # (H/2, W/2)
    v = v.reshape(h // 2, 2, w // 2, 2).mean((1, 3))
    planes = [y.ravel(), u.ravel(), v.ravel()]
    return np.clip(np.round(np.concatenate(planes)), 0, 255).astype(np.uint8).reshape(h * 3 // 2, w)


def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: int = 25, qp: int = 20) -> None:
    """Encode uint8 (T, H, W, 3) RGB frames as H.264 yuv420p (even H and W)."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        # Constant QP without adaptive quantisation or macroblock-tree: x264's CRF/AQ path gave
        # occasionally differing bytes for identical input; this one is bit-exact run to run.
        stream.options = {"qp": str(qp), "preset": "veryfast", "threads": "1",
                          "x264-params": "threads=1:aq-mode=0:mbtree=0:psy=0"}
        stream.codec_context.thread_count = 1
        for t, frame in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(rgb_to_yuv420p(frame), format="yuv420p")
            vf.pts, vf.time_base = t, Fraction(1, fps)  # explicit timestamps keep x264 deterministic
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def object_masks(seed: int, split: str, index: int, cls: str, frames: int = 16, size: int = 64) -> np.ndarray:
    """Float (T, H, W) alpha in [0, 1] of the moving object in clip ``index`` of ``split`` (as ``generate`` drew it)."""
    masks: list = []
    render_clip(cls, np.random.default_rng([seed, 0 if split == "train" else 1, index]), frames, size, masks)
    return np.stack(masks)


def _work(job: tuple) -> str:
    import cv2

    cv2.setNumThreads(1)
    out, split, index, cls, seed, frames, size, fps = job
    rng = np.random.default_rng([seed, 0 if split == "train" else 1, index])
    rel = _clip_path(split, cls, index)
    path = Path(out) / rel
    part = _part(path)  # a killed worker leaves at most a .part file, never half a clip under its name
    write_mp4(part, render_clip(cls, rng, frames, size), fps=fps)
    os.replace(part, path)
    return rel


def _clip_path(split: str, cls: str, index: int) -> str:
    return f"{split}/{cls}/{cls}_{index:05d}.mp4"


def _part(path: Path) -> Path:
    return path.with_name(f".{path.name}.part")


def _check_params(p: dict) -> None:
    if not 2 <= p["classes"] <= len(CLASSES):
        raise UserError(f"synth: --classes must be 2..{len(CLASSES)}, got {p['classes']}")
    if p["train"] < p["classes"] or p["val"] < p["classes"]:
        raise UserError(f"synth: --train and --val need at least one clip per class ({p['classes']})")
    if p["frames"] < 2:
        raise UserError(f"synth: --frames must be >= 2, got {p['frames']}")
    if p["size"] < 32 or p["size"] % 2:
        raise UserError(f"synth: --size must be an even number >= 32, got {p['size']}")


def generate(out: str | os.PathLike, workers: int = 2, progress: bool = True, **params) -> Path:
    """Write the synthetic set to ``out`` (see module docstring); returns ``out``.

    ``out`` must be absent, empty, or a synthetic set of lightvid's (see the bookkeeping in the
    module docstring); anything else in it is left as it is.
    """
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise UserError(f"synth: unknown parameter(s) {', '.join(sorted(unknown))}; known: {', '.join(DEFAULTS)}")
    p = {**DEFAULTS, **params}
    _check_params(p)
    out = Path(out)
    classes = CLASSES[: p["classes"]]
    jobs = [(str(out), split, i, classes[i % len(classes)], p["seed"], p["frames"], p["size"], p["fps"])
            for split in ("train", "val") for i in range(p[split])]
    files = [_clip_path(j[1], j[3], j[2]) for j in jobs] + [*LIST_FILES, STAMP]
    resumed = _claim(out, {"version": SYNTH_VERSION, **p}, files)
    if resumed:  # same parameters, interrupted: finished clips (renamed into place) are kept
        jobs = [j for j in jobs if not (out / _clip_path(j[1], j[3], j[2])).is_file()]
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc=f"synth {out.name}", unit="clip", disable=not progress)
    if workers > 1 and len(jobs) > 1:
        with mp.get_context("fork").Pool(workers) as pool:
            for _ in pool.imap(_work, jobs, chunksize=8):
                bar.update()
    else:
        for job in jobs:
            _work(job)
            bar.update()
    bar.close()
    rels = files[: -len(LIST_FILES) - 1]
    _write_atomic(out / "classes.txt", "".join(f"{c}\n" for c in classes))
    for split in ("train", "val"):
        lines = [f"{rel} {classes.index(rel.split('/')[1])}\n" for rel in rels if rel.startswith(split + "/")]
        _write_atomic(out / f"{split}.txt", "".join(lines))
    _write_atomic(out / STAMP, json.dumps({"version": SYNTH_VERSION, **p}, indent=1, sort_keys=True) + "\n")
    return out


def read_stamp(root: str | os.PathLike) -> dict | None:
    try:
        return json.loads((Path(root) / STAMP).read_text())
    except (OSError, ValueError):
        return None


def ensure_synth(root: str | os.PathLike, workers: int = 2, progress: bool = True, **params) -> Path:
    """Generate the synthetic set into ``root`` unless it is already there with these parameters.

    ``root`` holding a synthetic set made with other parameters is regenerated (only the files
    its manifest lists are deleted); a non-empty folder that is not a synthetic set is refused
    and nothing in it is touched.
    """
    root = Path(root)
    want = {"version": SYNTH_VERSION, **DEFAULTS, **params}
    have = read_stamp(root)
    if have == want:
        return root
    check_synth_root(root)
    if have is not None:
        diff = ", ".join(f"{k} {have.get(k)} -> {v}" for k, v in want.items() if have.get(k) != v)
        print(f"{root}: regenerating the synthetic set ({diff})", file=sys.stderr, flush=True)
    return generate(root, workers=workers, progress=progress, **params)


# ----------------------------------------------------------------------------- bookkeeping


def check_synth_root(root: str | os.PathLike) -> None:
    """Raise a one-line :class:`UserError` unless ``root`` is absent, empty or a synthetic set of lightvid's."""
    owned_files(Path(root))


def owned_files(root: Path) -> set[str]:
    """Relative paths under ``root`` that lightvid wrote there (its manifest's list); raises for a foreign folder.

    A set finished by a lightvid without manifests (``synth.json`` but no ``.lightvid-synth.json``)
    owns its list files, its stamp and the clips its ``train.txt``/``val.txt`` list under the
    names the generator gives them.
    """
    if not root.exists():
        return set()
    if not root.is_dir():
        raise UserError(f"{root}: is a file, not a folder for the synthetic set; choose another data.root")
    manifest = root / MANIFEST
    if manifest.is_file():
        try:
            files = json.loads(manifest.read_text())["files"]
            assert isinstance(files, list) and all(isinstance(f, str) for f in files)
        except (OSError, ValueError, KeyError, TypeError, AssertionError):
            raise UserError(f"{manifest}: unreadable synthetic-set manifest; lightvid will not delete or overwrite "
                            f"anything in {root}: choose an empty folder, or delete it yourself") from None
        return {f for f in files if _safe_rel(f)} | {MANIFEST}
    if (root / STAMP).is_file():
        owned = {STAMP, *LIST_FILES}
        for split in ("train", "val"):
            try:
                lines = (root / f"{split}.txt").read_text().splitlines()
            except OSError:
                continue
            owned |= {line.split()[0] for line in lines if line.split() and _CLIP_PATH.match(line.split()[0])}
        return owned
    if any(root.iterdir()):
        raise UserError(f"{root}: is not a lightvid synthetic set (it holds files lightvid did not write; nothing "
                        "was changed); for your own videos use data.format=folders (or list, ucf101, ...), "
                        "for the synthetic set choose an empty or new folder")
    return set()


def _safe_rel(rel: str) -> bool:
    """A relative path inside the set (no absolute path, no ``..``): a manifest never points outside."""
    parts = Path(rel).parts
    return bool(parts) and not Path(rel).is_absolute() and ".." not in parts


def _claim(out: Path, params: dict, files: list[str]) -> bool:
    """Make ``out`` ready for a set of ``files``; returns True when resuming an interrupted run of ``params``.

    Order, so a kill at any point leaves every file of lightvid's listed in a manifest: the
    manifest listing old and new files is written first, then the stamp and the old set's
    files that the new one does not have are deleted (and folders that leaves empty).
    """
    owned = owned_files(out)
    new = set(files)
    clash = sorted(f for f in new if f not in owned and os.path.lexists(out / f))
    clash += sorted({str(d.relative_to(out)) for f in new for d in (out / f).parents
                     if d != out and out in d.parents and (d.is_symlink() or (d.exists() and not d.is_dir()))})
    if clash:
        more = f" (+{len(clash) - 1} more)" if len(clash) > 1 else ""
        raise UserError(f"{out}: holds {clash[0]}{more}, which the synthetic set would overwrite but lightvid did not "
                        "write; move it away or choose another folder (nothing was changed)")
    before = None
    try:
        before = json.loads((out / MANIFEST).read_text()).get("params") if MANIFEST in owned else None
    except (OSError, ValueError, AttributeError):
        pass
    resume = before == params
    # Other parameters: every old file goes (a clip kept under the same name would be the old
    # content). The interim manifest has no parameters, so a kill before the deletions finish
    # makes the next run delete again rather than resume.
    stale = sorted(owned - {MANIFEST} - (new if resume else set()))
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(out / MANIFEST, json.dumps({"params": params if resume else None,
                                              "files": sorted(new | set(stale))}, indent=0) + "\n")
    (out / STAMP).unlink(missing_ok=True)  # listed: the set is incomplete until it is written again
    partials = [str(Path(f).parent / _part(Path(f)).name) for f in [*new, *stale, MANIFEST]]
    for rel in [*stale, *partials]:
        path = out / rel
        if any(d.is_symlink() for d in path.parents if out in d.parents):
            continue  # lightvid makes no links: a linked folder leads to someone else's files
        if path.is_file() or path.is_symlink():
            path.unlink()
    for d in sorted({d for rel in stale for d in (out / rel).parents if out in d.parents}, key=lambda d: -len(d.parts)):
        try:
            d.rmdir()  # only when empty: a folder holding anything else stays
        except OSError:
            pass
    _write_atomic(out / MANIFEST, json.dumps({"params": params, "files": sorted(new)}, indent=0) + "\n")
    return resume


def _write_atomic(path: Path, text: str) -> None:
    part = _part(path)  # a fixed name: a kill leaves at most this, which the next run deletes
    part.write_text(text)
    os.replace(part, path)
