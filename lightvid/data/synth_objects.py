"""Synthetic "objects over real photos" videos with boxes, masks, track ids and actions.

Each video shows a static background (procedural by default: a colour gradient with blurred
low-frequency blobs and noise; or a random crop of a photo from any image folder, e.g. the
15-scene photos) with 1..``max_objects`` textured shapes moving over it. Every object has

* a **category** (its shape: circle, square, triangle, star, cross),
* an **action** (its motion class: still, right, left, down, up, rotate),
* a **track id**, and per frame a **box** and a **mask** of its *visible* pixels: objects are
  drawn in depth order and later ones occlude earlier ones;
* sometimes a **distractor** twin: another object of the same shape and the same texture
  colours (``distractor_of`` names the original's track id), moving differently.

Textures are stripes, checkers, gradients or noise in two contrasting colours, or (``patches``,
needs ``backgrounds``) a patch of another photo.

Layout of ``OUT`` (the annotation format, documented in docs/regions.md)::

    objects.json                      categories, actions, parameters, split -> video names (written last)
    train/v00000/000000.png ...       frames (RGB PNG, lossless)
    train/v00000/annotations.json     COCO-style: info, images (= frames), categories, actions, tracks,
                                      annotations (bbox [x, y, w, h], segmentation as uncompressed RLE,
                                      area, track_id, category_id, action_id, visibility, iscrowd=0)
    val/...

Every video is drawn from ``numpy.random.default_rng([seed, split, index])``: a seed gives the
same set whatever the worker count; a finished video folder is moved into place in one rename.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
from pathlib import Path

import numpy as np

from lightvid.data.formats import IMAGE_EXTENSIONS
from lightvid.errors import UserError
from lightvid.fileio import write_text_atomic

OBJECTS_VERSION = 1
STAMP = "objects.json"
PARTIAL = ".objects-partial"
CATEGORIES = ("circle", "square", "triangle", "star", "cross")
ACTIONS = ("still", "right", "left", "down", "up", "rotate")
DIRECTIONS = {"right": (1, 0), "left": (-1, 0), "down": (0, 1), "up": (0, -1)}
DEFAULTS = dict(train=200, val=50, frames=8, size=96, max_objects=3, min_radius=9, max_radius=16,
                distractor_prob=0.3, noise=4.0, seed=0, fps=10, backgrounds=None, patches=False)
SPLITS = ("train", "val")


# ---------------------------------------------------------------- RLE (COCO's uncompressed form)
def mask_to_rle(mask: np.ndarray) -> dict:
    """Binary ``(H, W)`` mask -> ``{"size": [H, W], "counts": [...]}``: run lengths in column-major
    order, starting with a run of zeros (COCO's uncompressed RLE)."""
    flat = np.asarray(mask, dtype=bool).flatten(order="F")
    change = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": [int(c) for c in counts]}


def rle_to_mask(rle: dict) -> np.ndarray:
    """Inverse of :func:`mask_to_rle` -> bool ``(H, W)``."""
    h, w = rle["size"]
    counts = np.asarray(rle["counts"], dtype=np.int64)
    values = np.arange(len(counts)) % 2 == 1
    flat = np.repeat(values, counts)
    if flat.size != h * w:
        raise UserError(f"RLE counts sum to {flat.size}, expected {h}x{w}={h * w}")
    return flat.reshape((w, h)).T


# ---------------------------------------------------------------- drawing
def list_images(folder: str | os.PathLike) -> list[Path]:
    root = Path(folder)
    if not root.is_dir():
        raise UserError(f"backgrounds: {root} is not a folder")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not paths:
        raise UserError(f"backgrounds: no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) under {root}")
    return paths


def read_rgb(path: Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise UserError(f"backgrounds: {path} is not a readable image")
    return img[..., ::-1].astype(np.float32)


def random_crop(rng, img: np.ndarray, size: int) -> np.ndarray:
    import cv2

    h, w = img.shape[:2]
    side = int(rng.uniform(0.5, 1.0) * min(h, w))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    return cv2.resize(img[y:y + side, x:x + side], (size, size), interpolation=cv2.INTER_AREA)


def procedural_background(rng, size: int) -> np.ndarray:
    """Gradient + blurred random blobs + fine noise: clutter without sharp object-like shapes. (H, W, 3)."""
    import cv2

    c0, c1 = rng.uniform(30, 225, 3), rng.uniform(30, 225, 3)
    theta = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size] / size
    g = np.cos(theta) * xx + np.sin(theta) * yy
    g = (g - g.min()) / (np.ptp(g) + 1e-6)
    bg = c0 * (1 - g[..., None]) + c1 * g[..., None]
    low = rng.normal(0, 1, (6, 6, 3)).astype(np.float32)
    bg += 25 * cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)
    for _ in range(int(rng.integers(2, 7))):
        blob = np.zeros((size, size), np.float32)
        cx, cy = (int(v) for v in rng.integers(0, size, 2))
        axes = tuple(int(v) for v in rng.integers(size // 12, size // 4, 2))
        cv2.ellipse(blob, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
        blob = cv2.GaussianBlur(blob, (0, 0), size / 24)
        bg += blob[..., None] * rng.normal(0, 40, 3)
    return np.clip(bg + rng.normal(0, 6, bg.shape), 0, 255).astype(np.float32)


def shape_mask(category: str, radius: int) -> np.ndarray:
    """``(S, S)`` float mask of a category's shape centred in a square of side ``S = 2 * radius + 1``."""
    import cv2

    s = 2 * radius + 1
    m = np.zeros((s, s), np.float32)
    c = radius
    if category == "circle":
        cv2.circle(m, (c, c), radius, 1.0, -1)
    elif category == "square":
        h = int(radius * 0.7)  # the diagonal stays inside the sprite when rotated
        cv2.rectangle(m, (c - h, c - h), (c + h, c + h), 1.0, -1)
    elif category == "triangle":
        pts = [(c + radius * np.cos(a), c + radius * np.sin(a)) for a in np.deg2rad([-90, 30, 150])]
        cv2.fillPoly(m, [np.round(pts).astype(np.int32)], 1.0)
    elif category == "star":
        angles = np.deg2rad(np.arange(10) * 36 - 90)
        radii = np.where(np.arange(10) % 2 == 0, radius, radius * 0.45)
        pts = np.stack([c + radii * np.cos(angles), c + radii * np.sin(angles)], 1)
        cv2.fillPoly(m, [np.round(pts).astype(np.int32)], 1.0)
    elif category == "cross":
        t = max(2, int(round(radius * 0.33)))
        cv2.rectangle(m, (c - radius, c - t), (c + radius, c + t), 1.0, -1)
        cv2.rectangle(m, (c - t, c - radius), (c + t, c + radius), 1.0, -1)
    else:
        raise UserError(f"unknown object category {category!r}; known: {', '.join(CATEGORIES)}")
    return m


def texture_spec(rng, bg_mean: np.ndarray) -> dict:
    """Two texture colours that stand out from ``bg_mean`` and from each other, a pattern kind, phase, period."""
    for _ in range(100):
        c1, c2 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        if abs((c1 + c2).mean() / 2 - bg_mean.mean()) >= 50 and np.abs(c1 - c2).max() >= 60:
            break
    return dict(c1=c1, c2=c2, kind=int(rng.integers(4)), phase=float(rng.uniform(0, np.pi)),
                period=float(rng.uniform(3, 7)))


def draw_texture(spec: dict, s: int, rng, patch: np.ndarray | None) -> np.ndarray:
    """``(s, s, 3)`` float texture of ``spec`` (stripes, checker, gradient or blotches), or ``patch`` as it is."""
    if patch is not None:
        return patch
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    kind, phi, period = spec["kind"], spec["phase"], spec["period"]
    if kind == 0:  # stripes
        t = (np.sin(2 * np.pi * (np.cos(phi) * xx + np.sin(phi) * yy) / period) > 0).astype(np.float32)
    elif kind == 1:  # checker
        p = max(2, int(period / 1.5))
        t = (((xx // p) + (yy // p)) % 2).astype(np.float32)
    elif kind == 2:  # gradient
        t = (np.cos(phi) * (xx - s / 2) + np.sin(phi) * (yy - s / 2)) / s + 0.5
    else:  # blotchy noise
        import cv2

        t = cv2.GaussianBlur(rng.uniform(0, 1, (s, s)).astype(np.float32), (0, 0), 1.5)
        t = (t > np.median(t)).astype(np.float32)
    return spec["c1"] * (1 - t[..., None]) + spec["c2"] * t[..., None]


def _trajectory(action: str, rng, frames: int, size: int, radius: int):
    """Per-frame centre (x, y) and rotation angle (degrees) keeping the object inside the frame."""
    speed = rng.uniform(2.0, 3.5) if action in DIRECTIONS else 0.0
    dx, dy = DIRECTIONS.get(action, (0, 0))
    travel = speed * (frames - 1)
    lo, hi = radius + 1, size - radius - 2
    x0 = rng.uniform(lo + max(0, -dx) * travel, hi - max(0, dx) * travel)
    y0 = rng.uniform(lo + max(0, -dy) * travel, hi - max(0, dy) * travel)
    t = np.arange(frames)
    xs, ys = x0 + dx * speed * t, y0 + dy * speed * t
    if action == "still":
        xs = xs + rng.normal(0, 0.3, frames)  # a still object still jitters a little
        ys = ys + rng.normal(0, 0.3, frames)
    angle0 = rng.uniform(0, 360)
    spin = rng.choice([-1, 1]) * rng.uniform(12, 25) if action == "rotate" else 0.0
    return xs, ys, angle0 + spin * t


def paste_sprite(canvas, vis_owner, colour, mask, cx, cy, owner: int) -> None:
    """Alpha-paste a ``(sh, sw)`` sprite centred at (cx, cy), clipped to the canvas; record the owner of
    covered pixels."""
    sh, sw = mask.shape
    x0, y0 = int(round(cx)) - sw // 2, int(round(cy)) - sh // 2
    h, w = vis_owner.shape
    ax0, ay0, ax1, ay1 = max(x0, 0), max(y0, 0), min(x0 + sw, w), min(y0 + sh, h)
    if ax1 <= ax0 or ay1 <= ay0:
        return
    m = mask[ay0 - y0:ay1 - y0, ax0 - x0:ax1 - x0]
    c = colour[ay0 - y0:ay1 - y0, ax0 - x0:ax1 - x0]
    region = canvas[ay0:ay1, ax0:ax1]
    region[:] = region * (1 - m[..., None]) + c * m[..., None]
    vis_owner[ay0:ay1, ax0:ax1][m > 0.5] = owner


def visible_annotations(frame: int, owner: np.ndarray, full_area: dict[int, float], masks: bool = True) -> list[dict]:
    """One annotation per object (by track id) with pixels on top in ``owner`` (``(H, W)``: the track id
    drawn last at each pixel, 0 for none): the box ``[x, y, w, h]`` and ``area`` of its visible pixels,
    ``visibility`` = visible / ``full_area`` (its whole sprite) and, with ``masks``, the visible mask as RLE."""
    annotations = []
    for track_id in sorted(full_area):
        visible = owner == track_id
        area = int(visible.sum())
        if area == 0:
            continue
        ys, xs = np.nonzero(visible)
        x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
        ann = dict(frame=frame, track_id=track_id, bbox=[x0, y0, x1 - x0, y1 - y0], area=area)
        if masks:
            ann["segmentation"] = mask_to_rle(visible)
        ann["visibility"] = round(area / max(full_area[track_id], 1.0), 4)
        annotations.append(ann)
    return annotations


def render_video(rng: np.random.Generator, p: dict, background_paths: list[Path] | None):
    """-> frames uint8 ``(T, H, W, 3)``, tracks (list of dicts) and per-frame annotation dicts."""
    import cv2

    size, frames = p["size"], p["frames"]
    photo = None
    if background_paths:
        photo = read_rgb(background_paths[int(rng.integers(len(background_paths)))])
        bg = random_crop(rng, photo, size)
    else:
        bg = procedural_background(rng, size)
    bg_mean = bg.mean((0, 1))
    n_obj = int(rng.integers(1, p["max_objects"] + 1))
    objects = []
    for i in range(n_obj):
        twin = objects and rng.uniform() < p["distractor_prob"] and not any(o["distractor_of"] is not None
                                                                           for o in objects)
        if twin:
            src = objects[int(rng.integers(len(objects)))]
            category, spec = src["category"], dict(src["spec"])
            spec["c1"] = np.clip(spec["c1"] + rng.normal(0, 8, 3), 0, 255)
            spec["c2"] = np.clip(spec["c2"] + rng.normal(0, 8, 3), 0, 255)
            radius = int(np.clip(src["radius"] + rng.integers(-2, 3), p["min_radius"], p["max_radius"]))
        else:
            category = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
            spec = texture_spec(rng, bg_mean)
            radius = int(rng.integers(p["min_radius"], p["max_radius"] + 1))
        action = ACTIONS[int(rng.integers(len(ACTIONS)))]
        s = 2 * radius + 1
        patch = None
        if p["patches"] and photo is not None and rng.uniform() < 0.5 and not twin:
            patch = random_crop(rng, read_rgb(background_paths[int(rng.integers(len(background_paths)))]), s)
        elif twin and src.get("patch") is not None:
            patch = src["patch"]
        texture = draw_texture(spec, s, rng, patch)
        xs, ys, angles = _trajectory(action, rng, frames, size, radius)
        objects.append(dict(track_id=i + 1, category=category, action=action, radius=radius, spec=spec,
                            patch=patch, texture=texture, mask=shape_mask(category, radius), xs=xs, ys=ys,
                            angles=angles, distractor_of=src["track_id"] if twin else None))
    out_frames = np.zeros((frames, size, size, 3), np.uint8)
    annotations = []
    for t in range(frames):
        canvas = bg.copy()
        owner = np.zeros((size, size), np.int32)
        full_area = {}
        for o in objects:  # depth order: later objects occlude earlier ones
            s = o["mask"].shape[0]
            rot = cv2.getRotationMatrix2D((s // 2, s // 2), float(o["angles"][t]), 1.0)
            mask = cv2.warpAffine(o["mask"], rot, (s, s), flags=cv2.INTER_LINEAR)
            mask = (mask > 0.5).astype(np.float32)
            colour = cv2.warpAffine(o["texture"].astype(np.float32), rot, (s, s), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REFLECT)
            full_area[o["track_id"]] = float(mask.sum())
            paste_sprite(canvas, owner, colour, mask, o["xs"][t], o["ys"][t], o["track_id"])
        canvas += rng.normal(0, p["noise"], canvas.shape)
        out_frames[t] = np.clip(canvas, 0, 255).astype(np.uint8)
        annotations += visible_annotations(t, owner, full_area)
    tracks = [dict(track_id=o["track_id"], category_id=CATEGORIES.index(o["category"]) + 1,
                   action_id=ACTIONS.index(o["action"]) + 1, distractor_of=o["distractor_of"]) for o in objects]
    return out_frames, tracks, annotations


def coco_document(name: str, split: str, frames: np.ndarray, tracks: list, annotations: list, fps: int) -> dict:
    """The per-video COCO-style annotation document (see the module docstring)."""
    t, h, w = frames.shape[:3]
    by_track = {tr["track_id"]: tr for tr in tracks}
    images = [dict(id=i + 1, file_name=f"{i:06d}.png", frame_index=i, width=w, height=h) for i in range(t)]
    anns = []
    for k, a in enumerate(annotations):
        tr = by_track[a["track_id"]]
        anns.append(dict(id=k + 1, image_id=a["frame"] + 1, track_id=a["track_id"], category_id=tr["category_id"],
                         action_id=tr["action_id"], bbox=a["bbox"], area=a["area"], segmentation=a["segmentation"],
                         visibility=a["visibility"], iscrowd=0))
    return dict(info=dict(video=name, split=split, frames=t, width=w, height=h, fps=fps, generator="lightvid",
                          version=OBJECTS_VERSION),
                images=images,
                categories=[dict(id=i + 1, name=c, supercategory="shape") for i, c in enumerate(CATEGORIES)],
                actions=[dict(id=i + 1, name=a) for i, a in enumerate(ACTIONS)],
                tracks=tracks, annotations=anns)


def write_video_folder(final: Path, frames: np.ndarray, doc: dict) -> None:
    """Frames ``(T, H, W, 3)`` RGB as ``000000.png ...`` and ``doc`` as ``annotations.json`` in a
    temporary sibling of ``final`` (one of this process's, cleared first), moved into place in one rename."""
    import cv2

    tmp = final.parent / f".{final.name}.tmp{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for i, frame in enumerate(frames):
        if not cv2.imwrite(str(tmp / f"{i:06d}.png"), frame[..., ::-1]):
            raise UserError(f"{tmp}: cannot write frame {i}")
    (tmp / "annotations.json").write_text(json.dumps(doc))
    os.replace(tmp, final)


def _write_video(job: tuple) -> str:
    root, split, index, params = job
    name = f"v{index:05d}"
    final = Path(root) / split / name
    if final.is_dir():  # finished earlier (a video folder appears in one rename)
        return name
    split_id = SPLITS.index(split)
    rng = np.random.default_rng([params["seed"], split_id, index])
    paths = list_images(params["backgrounds"]) if params["backgrounds"] else None
    frames, tracks, annotations = render_video(rng, params, paths)
    write_video_folder(final, frames, coco_document(name, split, frames, tracks, annotations, params["fps"]))
    return name


def _check_params(p: dict) -> None:
    if p["train"] < 1 or p["val"] < 1:
        raise UserError("synth-objects: --train and --val must be >= 1")
    if p["frames"] < 2:
        raise UserError(f"synth-objects: --frames must be >= 2, got {p['frames']}")
    if not 1 <= p["min_radius"] <= p["max_radius"]:
        raise UserError(f"synth-objects: need 1 <= --min-radius <= --max-radius, "
                        f"got {p['min_radius']}, {p['max_radius']}")
    need = 2 * p["max_radius"] + 4 + 3.5 * (p["frames"] - 1)
    if p["size"] < need:
        raise UserError(f"synth-objects: --size {p['size']} is too small for --max-radius {p['max_radius']} and "
                        f"--frames {p['frames']} (need >= {int(np.ceil(need))})")
    if p["max_objects"] < 1:
        raise UserError(f"synth-objects: --max-objects must be >= 1, got {p['max_objects']}")
    if not 0 <= p["distractor_prob"] <= 1:
        raise UserError(f"synth-objects: --distractor-prob must be in [0, 1], got {p['distractor_prob']}")
    if p["patches"] and not p["backgrounds"]:
        raise UserError("synth-objects: --patches cuts textures from photos; give --backgrounds FOLDER too")


def read_objects_stamp(root: str | os.PathLike) -> dict | None:
    path = Path(root) / STAMP
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: not a readable lightvid objects stamp ({e})") from None


def generate_objects(out: str | os.PathLike, workers: int = 2, progress: bool = False, **params) -> tuple[Path, bool]:
    """Write (or finish) the set; -> (root, written). A finished set with the same parameters is kept
    as it is; a non-empty folder that is not an (unfinished) lightvid objects set is refused."""
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise UserError(f"synth-objects: unknown parameter(s) {', '.join(sorted(unknown))}; "
                        f"known: {', '.join(DEFAULTS)}")
    p = {**DEFAULTS, **params}
    if p["backgrounds"]:
        p["backgrounds"] = str(Path(p["backgrounds"]).resolve())
        list_images(p["backgrounds"])
    _check_params(p)
    root = Path(out)
    stamp = read_objects_stamp(root)
    if stamp is not None:
        if stamp.get("params") == p and stamp.get("version") == OBJECTS_VERSION:
            return root, False
        raise UserError(f"{root}: holds a lightvid objects set made with other parameters "
                        f"({root / STAMP}); choose another folder")
    if root.exists() and any(root.iterdir()) and not (root / PARTIAL).exists():
        raise UserError(f"{root}: exists, is not empty and is not a lightvid objects set; choose an empty folder")
    root.mkdir(parents=True, exist_ok=True)
    partial = root / PARTIAL
    if partial.exists() and json.loads(partial.read_text() or "{}") not in ({}, p):
        raise UserError(f"{root}: an unfinished objects set with other parameters is there ({partial}); "
                        "finish it with those parameters or choose another folder")
    write_text_atomic(partial, json.dumps(p))
    jobs = [(str(root), split, i, p) for split in SPLITS for i in range(p[split])]
    for split in SPLITS:
        (root / split).mkdir(exist_ok=True)
        for stale in (root / split).glob(".v*.tmp*"):  # our own unfinished video folders from a stopped run
            shutil.rmtree(stale)
    if workers > 1 and len(jobs) > 1:
        with mp.get_context("spawn").Pool(workers) as pool:
            names = pool.map(_write_video, jobs, chunksize=max(1, len(jobs) // (4 * workers)))
    else:
        names = [_write_video(j) for j in jobs]
    videos = {split: [n for (r, s, i, q), n in zip(jobs, names) if s == split] for split in SPLITS}
    stamp = dict(version=OBJECTS_VERSION, params=p, categories=list(CATEGORIES), actions=list(ACTIONS),
                 videos=videos, annotation_file="annotations.json")
    write_text_atomic(root / STAMP, json.dumps(stamp, indent=1))
    partial.unlink()
    return root, True


def ensure_objects(root: str | os.PathLike, workers: int = 2, **params) -> Path:
    return generate_objects(root, workers=workers, **params)[0]
