"""Baseline tracker: template matching by normalised cross-correlation (OpenCV).

The template is the first frame's box (grey levels), never updated, as the Siamese tracker's
query is never updated either. In every frame, ``cv2.matchTemplate`` with
``TM_CCOEFF_NORMED`` scores every position of the template, at each of a few scales, inside a
search region around the last box; the best-scoring position and scale is the new box.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


def clip_box(box, width: int, height: int, min_size: float = 4.0) -> np.ndarray:
    """Keep an ``[x, y, w, h]`` box at least ``min_size`` wide and high, its centre inside the frame."""
    x, y, w, h = (float(v) for v in box)
    w = min(max(w, min_size), float(width))
    h = min(max(h, min_size), float(height))
    cx = min(max(x + w / 2, 0.0), float(width))
    cy = min(max(y + h / 2, 0.0), float(height))
    return np.array([cx - w / 2, cy - h / 2, w, h])


@dataclass
class NCCConfig:
    search: float = 2.0  # the search region is the box enlarged by this factor on each side (of its size)
    scales: tuple[float, ...] = (0.95, 1.0, 1.05)  # template scales tried per frame (relative to the last)

    def validate(self) -> "NCCConfig":
        if self.search <= 0:
            raise ValueError(f"ncc.search must be > 0, got {self.search}")
        if not self.scales or min(self.scales) <= 0:
            raise ValueError(f"ncc.scales must be positive, got {self.scales}")
        return self


class NCCTracker:
    """``init(frame, box)`` then ``update(frame) -> box`` per frame; frames are RGB ``(H, W, 3)`` uint8."""

    name = "ncc"

    def __init__(self, config: NCCConfig | None = None):
        self.config = (config or NCCConfig()).validate()

    def init(self, frame: np.ndarray, box) -> None:
        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        h, w = gray.shape
        self.box = clip_box(box, w, h)
        x, y, bw, bh = np.round(self.box).astype(int)
        x0, y0 = max(x, 0), max(y, 0)
        self.template = gray[y0:max(y + bh, y0 + 1), x0:max(x + bw, x0 + 1)].copy()
        self.size0 = np.array([bw, bh], dtype=np.float64)  # template size at scale 1
        self.scale = 1.0

    def update(self, frame: np.ndarray) -> np.ndarray:
        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        H, W = gray.shape
        x, y, bw, bh = self.box
        pad_x, pad_y = self.config.search * bw, self.config.search * bh
        rx0, ry0 = int(max(0, np.floor(x - pad_x))), int(max(0, np.floor(y - pad_y)))
        rx1, ry1 = int(min(W, np.ceil(x + bw + pad_x))), int(min(H, np.ceil(y + bh + pad_y)))
        region = gray[ry0:ry1, rx0:rx1]
        best = (-np.inf, None)
        for s in self.config.scales:
            scale = self.scale * s
            tw, th = (int(round(v)) for v in self.size0 * scale)
            tw, th = max(tw, 4), max(th, 4)
            if tw > region.shape[1] or th > region.shape[0]:
                continue
            templ = cv2.resize(self.template, (tw, th), interpolation=cv2.INTER_LINEAR)
            res = cv2.matchTemplate(region, templ, cv2.TM_CCOEFF_NORMED)
            _, score, _, (px, py) = cv2.minMaxLoc(res)
            if score > best[0]:
                best = (score, (rx0 + px, ry0 + py, tw, th, scale))
        if best[1] is not None:  # else the region is smaller than every template: keep the last box
            bx, by, tw, th, self.scale = best[1]
            self.box = clip_box((bx, by, tw, th), W, H)
        return self.box.copy()
