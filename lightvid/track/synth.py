"""Generated tracking sequences: look-alike objects that move, turn, grow or shrink and hide.

Each video (``width x height``, ``frames`` long) shows a background and 2..``max_objects``
textured shapes, drawn by the synthetic-objects generator's code (``lightvid.data.synth_objects``:
its procedural background or a random crop of a photo from an image folder such as the 15-scene
set, its shapes, textures, sprite pasting, visible-pixel annotations and per-video writer); this
module adds the tracking scene. The first object gets 1..``twins`` *distractors*:
copies of its shape and texture colours (slightly perturbed) of about its size. Every object
moves with a random, slowly turning velocity (bouncing off the borders) and changes size
smoothly by up to ``scale_change`` (a factor, in either direction) over the video, some also
stretch (aspect ratio up to ``stretch``) and spin in the image plane (up to ``spin`` degrees per
frame); a soft band of light and shade (``lighting``: its contrast) drifts over the scene; objects are
drawn in a fixed depth order, so crossing paths occlude; an ``occluders`` number of plain bars
also cross the frame on top of everything.

The annotation format is the per-video COCO-style JSON of the synthetic-objects generator
(docs/regions.md): ``OUT/<split>/vNNNNN/annotations.json`` with ``images`` (one PNG per frame,
``file_name`` relative to that folder), ``annotations`` (``bbox`` of the *visible* pixels
``[x, y, w, h]``, ``track_id``, ``visibility`` = visible / full area; no entry when hidden) and
``tracks`` (``distractor_of``). ``OUT/tracks.json`` (the parameters, written last) marks a
finished set; every video comes from ``numpy.random.default_rng([seed, split, index])``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np

from lightvid.data.synth_objects import (
    CATEGORIES,
    draw_texture,
    list_images,
    paste_sprite,
    procedural_background,
    random_crop,
    read_rgb,
    shape_mask,
    texture_spec,
    visible_annotations,
    write_video_folder,
)
from lightvid.errors import UserError
from lightvid.fileio import write_text_atomic

STAMP = "tracks.json"
SPLITS = ("train", "val", "test")
DEFAULTS = dict(train=60, val=20, test=0, frames=48, width=320, height=240, max_objects=5, twins=2,
                min_size=22, max_size=48, speed=3.0, scale_change=1.6, stretch=1.3, spin=4.0, lighting=0.35,
                occluders=1, noise=3.0, seed=0,
                backgrounds=None)


def _background(rng, width: int, height: int, photos: list[Path]) -> np.ndarray:
    """``(H, W, 3)`` float: the top-left of a square procedural background or photo crop."""
    side = max(width, height)
    if photos:
        square = random_crop(rng, read_rgb(photos[int(rng.integers(len(photos)))]), side)
    else:
        square = procedural_background(rng, side)
    return square[:height, :width]


def _paths(rng, p: dict, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Centres ``(T, n, 2)`` and sizes ``(T, n)``: turning velocities bouncing off the borders."""
    T, W, H = p["frames"], p["width"], p["height"]
    size0 = rng.uniform(p["min_size"], p["max_size"], n)
    final = size0 * np.exp(rng.uniform(-1, 1, n) * np.log(p["scale_change"]))
    sizes = size0[None] + (final - size0)[None] * (np.arange(T)[:, None] / max(T - 1, 1))
    pos = np.stack([rng.uniform(0.15 * W, 0.85 * W, n), rng.uniform(0.15 * H, 0.85 * H, n)], 1)
    ang = rng.uniform(0, 2 * np.pi, n)
    speed = rng.uniform(0.4, 1.0, n) * p["speed"]
    turn = rng.normal(0, 0.12, n)
    centres = np.zeros((T, n, 2))
    for t in range(T):
        centres[t] = pos
        ang = ang + turn + rng.normal(0, 0.05, n)
        pos = pos + speed[:, None] * np.stack([np.cos(ang), np.sin(ang)], 1)
        for k, lim in ((0, W), (1, H)):
            lo, hi = 0.5 * sizes[t], lim - 0.5 * sizes[t]
            out = (pos[:, k] < lo) | (pos[:, k] > hi)
            pos[:, k] = np.clip(pos[:, k], lo, hi)
            if out.any():  # bounce: mirror the velocity component
                v = np.stack([np.cos(ang), np.sin(ang)], 1)
                v[out, k] *= -1
                ang = np.where(out, np.arctan2(v[:, 1], v[:, 0]), ang)
    return centres, sizes


def render_sequence(rng: np.random.Generator, p: dict, photos: list[Path] | None = None):
    """-> frames ``(T, H, W, 3)`` uint8, track dicts, annotation dicts (``frame``, ``track_id``, ``bbox``...)."""
    T, W, H = p["frames"], p["width"], p["height"]
    bg = _background(rng, W, H, photos or [])
    n_twins = int(rng.integers(1, p["twins"] + 1)) if p["twins"] > 0 else 0
    n = max(2, int(rng.integers(1 + n_twins, max(p["max_objects"], 1 + n_twins) + 1)))
    objects = []
    for i in range(n):
        twin = 1 <= i <= n_twins
        if twin:
            src = objects[0]
            category = src["category"]
            spec = dict(src["spec"], c1=np.clip(src["spec"]["c1"] + rng.normal(0, 10, 3), 0, 255),
                        c2=np.clip(src["spec"]["c2"] + rng.normal(0, 10, 3), 0, 255))
        else:
            category = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
            spec = texture_spec(rng, bg.mean((0, 1)))
        objects.append(dict(track_id=i + 1, category=category, spec=spec, distractor_of=1 if twin else None))
    centres, sizes = _paths(rng, p, n)
    tt = np.arange(T) / max(T - 1, 1)
    for k, o in enumerate(objects):
        if k > 0 and o["distractor_of"] is not None:
            sizes[:, k] = sizes[:, 0] * np.exp(rng.normal(0, 0.08))  # a twin keeps about the target's size
        spins = rng.uniform() < 0.5
        o["angle"] = rng.uniform(0, 360) * spins + rng.uniform(-1, 1) * p["spin"] * np.arange(T) * spins
        o["aspect"] = np.exp(rng.uniform(-1, 1) * np.log(p["stretch"]) * tt)  # width / height, from 1
        o["width"] = np.maximum(np.round(sizes[:, k] * np.sqrt(o["aspect"])), 4).astype(int)  # (T,)
        o["height"] = np.maximum(np.round(sizes[:, k] / np.sqrt(o["aspect"])), 4).astype(int)
        radius = int(np.ceil(max(o["width"].max(), o["height"].max()) / 2))  # sprite drawn once, shrunk per frame
        o["mask"] = shape_mask(o["category"], radius)
        o["tex"] = draw_texture(o["spec"], 2 * radius + 1, rng, None).astype(np.float32)
    light = (rng.uniform(0.5, 1.0) * p["lighting"], rng.uniform(0, 2 * np.pi), rng.uniform(1.5, 4.0),
             rng.uniform(0, 2 * np.pi), rng.uniform(1.0, 3.0))  # contrast, direction, waves, phase, drift
    order = rng.permutation(n)  # depth order (later = in front)
    bars = []
    for _ in range(p["occluders"]):
        vertical = rng.uniform() < 0.5
        thick = rng.uniform(0.3, 0.7) * p["max_size"]
        t0, t1 = sorted(rng.uniform(-0.2, 1.2, 2) * (W if vertical else H))
        bars.append((vertical, thick, t0, t1, rng.uniform(0, 255, 3)))
    frames = np.zeros((T, H, W, 3), np.uint8)
    annotations = []
    for t in range(T):
        canvas = bg.copy()
        owner = np.zeros((H, W), np.int32)
        full = {}
        for k in order:
            o = objects[k]
            mask, tex = o["mask"], o["tex"]
            s = mask.shape[0]
            if o["angle"][t]:
                rot = cv2.getRotationMatrix2D((s // 2, s // 2), float(o["angle"][t]), 1.0)
                mask = cv2.warpAffine(mask, rot, (s, s), flags=cv2.INTER_LINEAR)
                tex = cv2.warpAffine(tex, rot, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            size = (int(o["width"][t]), int(o["height"][t]))
            mask = (cv2.resize(mask, size, interpolation=cv2.INTER_AREA) > 0.5).astype(np.float32)
            tex = cv2.resize(tex, size, interpolation=cv2.INTER_AREA)
            full[o["track_id"]] = float(mask.sum())
            paste_sprite(canvas, owner, tex, mask, centres[t, k, 0], centres[t, k, 1], o["track_id"])
        for vertical, thick, a, b, colour in bars:  # occluders sweep across during the video
            pos = a + (b - a) * t / max(T - 1, 1)
            lo, hi = int(round(pos - thick / 2)), int(round(pos + thick / 2))
            if vertical:
                lo, hi = max(lo, 0), min(hi, W)
                canvas[:, lo:hi], owner[:, lo:hi] = colour, 0
            else:
                lo, hi = max(lo, 0), min(hi, H)
                canvas[lo:hi, :], owner[lo:hi, :] = colour, 0
        contrast, direction, waves, phase, drift = light  # a drifting band of light and shade
        u = (np.cos(direction) * np.arange(W)[None] / W + np.sin(direction) * np.arange(H)[:, None] / H)
        canvas *= 1 + contrast * np.sin(2 * np.pi * (waves * u - drift * t / max(T - 1, 1)) + phase)[..., None]
        canvas += rng.normal(0, p["noise"], canvas.shape)
        frames[t] = np.clip(canvas, 0, 255).astype(np.uint8)
        annotations += visible_annotations(t, owner, full, masks=False)
    tracks = [dict(track_id=o["track_id"], category_id=CATEGORIES.index(o["category"]) + 1,
                   distractor_of=o["distractor_of"]) for o in objects]
    return frames, tracks, annotations


def coco_document(name: str, split: str, frames: np.ndarray, tracks: list, annotations: list) -> dict:
    T, H, W = frames.shape[:3]
    images = [dict(id=i + 1, file_name=f"{i:06d}.png", frame_index=i, width=W, height=H) for i in range(T)]
    anns = [dict(id=k + 1, image_id=a["frame"] + 1, track_id=a["track_id"], bbox=a["bbox"], area=a["area"],
                 visibility=a["visibility"], category_id=next(t["category_id"] for t in tracks
                                                              if t["track_id"] == a["track_id"]), iscrowd=0)
            for k, a in enumerate(annotations)]
    return dict(info=dict(video=name, split=split, frames=T, width=W, height=H, generator="lightvid track synth"),
                images=images, categories=[dict(id=i + 1, name=c) for i, c in enumerate(CATEGORIES)],
                tracks=tracks, annotations=anns)


def _write(root: Path, split: str, index: int, p: dict, photos: list[Path]) -> None:
    name = f"v{index:05d}"
    final = root / split / name
    if final.is_dir():
        return
    rng = np.random.default_rng([p["seed"], SPLITS.index(split), index])
    frames, tracks, anns = render_sequence(rng, p, photos)
    write_video_folder(final, frames, coco_document(name, split, frames, tracks, anns))


def generate_tracks(out: str | os.PathLike, progress: bool = False, **params) -> Path:
    """Write the set into ``out`` (finished videos are kept, so an interrupted run resumes)."""
    from tqdm import tqdm

    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise UserError(f"unknown track-synth parameter(s): {', '.join(unknown)}")
    p = dict(DEFAULTS, **{k: v for k, v in params.items() if v is not None})
    for key in ("frames", "width", "height", "min_size", "max_size", "max_objects"):
        if int(p[key]) < 2:
            raise UserError(f"{key} must be >= 2, got {p[key]}")
    if p["min_size"] > p["max_size"] or p["max_size"] * 2 > min(p["width"], p["height"]):
        raise UserError(f"need min_size <= max_size <= min(width, height) / 2, got {p['min_size']}, {p['max_size']}")
    for key in ("scale_change", "stretch"):
        if p[key] < 1:
            raise UserError(f"{key} must be >= 1 (a factor), got {p[key]}")
    if not 0 <= p["lighting"] < 1:
        raise UserError(f"lighting must be in [0, 1), got {p['lighting']}")
    root = Path(out)
    stamp = root / STAMP
    if stamp.is_file():
        old = json.loads(stamp.read_text())
        if old.get("params") != json.loads(json.dumps(p)):
            raise UserError(f"{root}: holds a set made with other parameters ({stamp}); choose another folder")
        return root
    photos = list_images(p["backgrounds"]) if p["backgrounds"] else []
    jobs = [(s, i) for s in SPLITS for i in range(int(p[s]))]
    for split, i in tqdm(jobs, desc="track synth", disable=not progress, unit="video"):
        _write(root, split, i, p, photos)
    videos = {s: [f"v{i:05d}" for i in range(int(p[s]))] for s in SPLITS}
    write_text_atomic(stamp, json.dumps(dict(params=p, videos=videos, annotation_file="annotations.json"), indent=1))
    return root
