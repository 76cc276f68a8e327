"""Search regions: a square window around a box, resized to the network's input (one affine warp).

The window's side is ``context * sqrt(w * h)`` of the box it is centred on, so the object always
appears at about ``size / context`` pixels whatever its size in the frame; parts outside the
frame are filled with the mean colour (zero after normalisation). Boxes move between frame and
window coordinates with :class:`Window`.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


@dataclass
class Window:
    """Frame -> window map ``u = (x - x0) * scale``: ``x0, y0`` the window's top-left in the frame."""

    x0: float
    y0: float
    scale: float

    def to_window(self, boxes: np.ndarray) -> np.ndarray:
        """``(N, 4)`` frame ``[x, y, w, h]`` -> window ``[x1, y1, x2, y2]``."""
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        x1 = (b[:, 0] - self.x0) * self.scale
        y1 = (b[:, 1] - self.y0) * self.scale
        return np.stack([x1, y1, x1 + b[:, 2] * self.scale, y1 + b[:, 3] * self.scale], 1)

    def to_frame(self, boxes: np.ndarray) -> np.ndarray:
        """``(N, 4)`` window ``[x1, y1, x2, y2]`` -> frame ``[x, y, w, h]``."""
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        x = b[:, 0] / self.scale + self.x0
        y = b[:, 1] / self.scale + self.y0
        return np.stack([x, y, (b[:, 2] - b[:, 0]) / self.scale, (b[:, 3] - b[:, 1]) / self.scale], 1)


def window_around(box, context: float, size: int) -> Window:
    """The square window of side ``context * sqrt(w * h)`` centred on ``box``, seen at ``size`` pixels."""
    x, y, w, h = (float(v) for v in box)
    side = context * np.sqrt(max(w, 1.0) * max(h, 1.0))
    cx, cy = x + w / 2, y + h / 2
    return Window(cx - side / 2, cy - side / 2, size / side)


def crop(frame: np.ndarray, window: Window, size: int) -> np.ndarray:
    """Warp the window of an RGB ``(H, W, 3)`` uint8 frame to ``(size, size, 3)`` uint8."""
    m = np.array([[window.scale, 0, -window.x0 * window.scale], [0, window.scale, -window.y0 * window.scale]])
    fill = tuple(float(v) for v in MEAN * 255)
    interp = cv2.INTER_AREA if window.scale < 0.7 else cv2.INTER_LINEAR
    return cv2.warpAffine(frame, m, (size, size), flags=interp, borderMode=cv2.BORDER_CONSTANT, borderValue=fill)


def to_tensor(crops: np.ndarray) -> torch.Tensor:
    """``(N, S, S, 3)`` or ``(S, S, 3)`` uint8 -> normalised ``(N, 3, S, S)`` float."""
    arr = np.asarray(crops, dtype=np.float32).reshape(-1, *np.shape(crops)[-3:]) / 255.0
    arr = (arr - MEAN) / STD
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2)))  # (N, 3, S, S)
