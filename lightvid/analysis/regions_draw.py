"""Pictures of region predictions: boxes with labels and scores, and class masks, drawn on frames with
OpenCV; a grid of validation frames (PNG) and one validation video with its predictions (MP4)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

# distinct BGR-free RGB colours per class id (0 = background, not drawn)
PALETTE = np.array([[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                    [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60]], dtype=np.uint8)


def colour(i: int) -> tuple[int, int, int]:
    c = PALETTE[1 + (i - 1) % (len(PALETTE) - 1)] if i > 0 else PALETTE[0]
    return int(c[0]), int(c[1]), int(c[2])


def draw_boxes(frame: np.ndarray, boxes, labels, scores, names: list[str], scale: int = 3,
               min_score: float = 0.5, at_least: int = 0) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)`` -> enlarged copy with each box (score >= ``min_score``, or else the
    ``at_least`` best), its name and score."""
    import cv2

    img = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    scores = np.asarray(scores)
    if at_least and len(scores):
        min_score = min(min_score, float(np.sort(scores)[::-1][:at_least][-1]))
    for b, lab, s in zip(np.asarray(boxes), np.asarray(labels), scores):
        if s < min_score:
            continue
        x1, y1, x2, y2 = (int(round(v * scale)) for v in b)
        c = colour(int(lab))
        cv2.rectangle(img, (x1, y1), (x2, y2), c, 2)
        text = f"{names[int(lab) - 1]} {s:.2f}"
        cv2.putText(img, text, (x1 + 2, max(y1 - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(img, text, (x1 + 2, max(y1 - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, c, 1, cv2.LINE_AA)
    return img


def draw_mask(frame: np.ndarray, classes: np.ndarray, names: list[str], scale: int = 3, alpha: float = 0.55):
    """Blend a per-pixel class map (0 = background) over the enlarged frame, with class outlines."""
    import cv2

    img = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST).astype(np.float32)
    cls = cv2.resize(classes.astype(np.uint8), None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    labels = [c for c in np.unique(cls) if c != 0]
    for c in labels:
        m = cls == c
        img[m] = (1 - alpha) * img[m] + alpha * np.array(colour(int(c)), np.float32)
    img = img.clip(0, 255).astype(np.uint8)
    for c in labels:
        n, comp, stats, _ = cv2.connectedComponentsWithStats((cls == c).astype(np.uint8))
        for k in range(1, n):  # name each blob of the class at its top-left corner
            x, y, w, h, area = stats[k]
            if area >= 20 * scale * scale:
                cv2.putText(img, names[int(c) - 1], (int(x), int(y) + 10), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                            (255, 255, 255), 1, cv2.LINE_AA)
    return img


def best_action_per_box(pred: dict, num_actions: int) -> dict:
    """Action-localisation output (one entry per box x action) -> one entry per box, its best action."""
    if pred["boxes"].numel() == 0:
        return pred
    boxes = pred["boxes"].view(-1, num_actions, 4)[:, 0]
    scores = pred["scores"].view(-1, num_actions)
    best, idx = scores.max(dim=1)
    return {"boxes": boxes, "scores": best, "labels": idx + 1}


def _render(module, dataset, i: int) -> np.ndarray:
    x, tgt = dataset[i]
    frame = dataset.frame(tgt["video"], tgt["frame"])
    with torch.no_grad():
        out = module.model(x[None])
    if module.task == "segment":
        return draw_mask(frame, out.argmax(1)[0].numpy(), module.class_names)
    pred = out[0]
    if module.task == "localize":
        pred = best_action_per_box(pred, len(module.class_names))
    return draw_boxes(frame, pred["boxes"], pred["labels"], pred["scores"], module.class_names,
                      min_score=0.5, at_least=2)  # a weak model's two best guesses are still drawn


def write_pictures(module, dataset, out_dir: str | os.PathLike, n: int = 6, fps: int = 5) -> dict:
    """``predictions.png`` (``n`` validation samples from different videos, in a grid) and
    ``clip.mp4`` (every key frame of the first validation video); -> their paths."""
    import cv2

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    module.eval()
    if n <= 0:
        return {}
    firsts = {}
    for i, (v, _) in enumerate(dataset.samples):
        firsts.setdefault(v, []).append(i)
    videos = sorted(firsts)
    picks = [firsts[v][len(firsts[v]) // 2] for v in videos[:: max(1, len(videos) // n)][:n]]
    tiles = [_render(module, dataset, i) for i in picks]
    cols = min(3, len(tiles))
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    grid = np.concatenate([np.concatenate(tiles[r:r + cols], axis=1) for r in range(0, len(tiles), cols)], axis=0)
    png = out / "predictions.png"
    tmp = out / ".predictions.tmp.png"
    cv2.imwrite(str(tmp), grid[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9])
    os.replace(tmp, png)
    frames = [_render(module, dataset, i) for i in firsts[videos[0]]]
    mp4 = out / "clip.mp4"
    tmp = out / ".clip.tmp.mp4"
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for f in frames:
        writer.write(np.ascontiguousarray(f[..., ::-1]))
    writer.release()
    if tmp.is_file() and tmp.stat().st_size > 0:
        os.replace(tmp, mp4)
        return {"png": str(png), "mp4": str(mp4)}
    return {"png": str(png)}
