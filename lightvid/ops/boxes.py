"""Boxes ``(x1, y1, x2, y2)``: area, pairwise IoU and greedy non-maximum suppression.

Greedy NMS is the procedure of Fast R-CNN (Girshick, ICCV 2015) and torchvision.ops.nms:
visit boxes by decreasing score and drop every later box whose IoU with a kept one is above
the threshold.
"""
from __future__ import annotations

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
