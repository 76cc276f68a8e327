"""Boxes ``(x1, y1, x2, y2)``: area, pairwise IoU and greedy non-maximum suppression.

Greedy NMS is the procedure of Fast R-CNN (Girshick, ICCV 2015) and torchvision.ops.nms:
visit boxes by decreasing score and drop every later box whose IoU with a kept one is above
the threshold.
"""
from __future__ import annotations

import math

import numpy as np
import torch


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """``(K, 4)`` -> ``(K,)``."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of ``(N, 4)`` and ``(M, 4)`` boxes -> ``(N, M)``."""
    area1, area2 = box_area(boxes1), box_area(boxes2)
    top_left = torch.maximum(boxes1[:, None, :2], boxes2[None, :, :2])  # (N, M, 2)
    bottom_right = torch.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])  # (N, M, 2)
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[:, None] + area2[None, :] - inter
    return inter / union.clamp(min=torch.finfo(inter.dtype).tiny if inter.is_floating_point() else 1)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Indices (int64) of the kept boxes, by decreasing score; a box is dropped when its IoU with a
    higher-scoring kept box is ``> iou_threshold``."""
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores.detach(), descending=True, stable=True).indices
    iou = box_iou(boxes.detach()[order], boxes.detach()[order])  # (K, K), sorted
    overlaps = (iou > iou_threshold).triu(diagonal=1).cpu().numpy()
    removed = np.zeros(len(order), dtype=bool)
    keep = []
    for i in range(len(order)):  # one step per box; each step is a numpy row
        if removed[i]:
            continue
        keep.append(i)
        removed |= overlaps[i]
    return order[torch.as_tensor(keep, dtype=torch.int64, device=order.device)]


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """NMS done independently per category ``idxs``: boxes of different categories never suppress
    each other (each category is shifted to its own disjoint region of the plane)."""
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    span = boxes.detach().max() - boxes.detach().min() + 1
    shifted = boxes.detach() - boxes.detach().min() + (idxs.to(boxes.dtype) * span)[:, None]
    return nms(shifted, scores, iou_threshold)


def clip_boxes(boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Clip ``(K, 4)`` boxes to an image of ``size = (H, W)``."""
    h, w = size
    x = boxes[:, 0::2].clamp(0, w)
    y = boxes[:, 1::2].clamp(0, h)
    return torch.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], dim=1)


def remove_small_boxes(boxes: torch.Tensor, min_size: float) -> torch.Tensor:
    """Indices of the boxes whose sides are both ``>= min_size``."""
    wh = boxes[:, 2:] - boxes[:, :2]
    return torch.nonzero((wh >= min_size).all(dim=1)).squeeze(1)


# Largest log-scale change a decoded box may get (as in Fast R-CNN implementations: 1000/16 px).
BBOX_XFORM_CLIP = math.log(1000.0 / 16)


def encode_boxes(targets: torch.Tensor, references: torch.Tensor, weights=(1.0, 1.0, 1.0, 1.0)) -> torch.Tensor:
    """R-CNN box coding (Girshick et al. CVPR 2014, appendix C): ``targets`` relative to ``references``
    -> ``(K, 4)`` deltas ``(wx*dx/w, wy*dy/h, ww*log(w'/w), wh*log(h'/h))``."""
    wx, wy, ww, wh = weights
    rw, rh = references[:, 2] - references[:, 0], references[:, 3] - references[:, 1]
    rx, ry = references[:, 0] + 0.5 * rw, references[:, 1] + 0.5 * rh
    tw, th = targets[:, 2] - targets[:, 0], targets[:, 3] - targets[:, 1]
    tx, ty = targets[:, 0] + 0.5 * tw, targets[:, 1] + 0.5 * th
    return torch.stack([wx * (tx - rx) / rw, wy * (ty - ry) / rh, ww * torch.log(tw / rw), wh * torch.log(th / rh)],
                       dim=1)


def decode_boxes(deltas: torch.Tensor, references: torch.Tensor, weights=(1.0, 1.0, 1.0, 1.0)) -> torch.Tensor:
    """Inverse of :func:`encode_boxes`; ``deltas`` may be ``(K, 4 * C)`` (one box per class)."""
    wx, wy, ww, wh = weights
    rw, rh = references[:, 2:3] - references[:, 0:1], references[:, 3:4] - references[:, 1:2]
    rx, ry = references[:, 0:1] + 0.5 * rw, references[:, 1:2] + 0.5 * rh
    dx, dy = deltas[:, 0::4] / wx, deltas[:, 1::4] / wy
    dw = (deltas[:, 2::4] / ww).clamp(max=BBOX_XFORM_CLIP)
    dh = (deltas[:, 3::4] / wh).clamp(max=BBOX_XFORM_CLIP)
    cx, cy = dx * rw + rx, dy * rh + ry
    w, h = torch.exp(dw) * rw, torch.exp(dh) * rh
    out = torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=2)  # (K, C, 4)
    return out.reshape(deltas.shape)
