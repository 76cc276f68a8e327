"""Fast R-CNN: a region head on a shared convolutional feature map.

Girshick, "Fast R-CNN", ICCV 2015. The image goes once through the convolutional layers; each
candidate box is ROI-pooled into a fixed ``P x P`` grid of the feature map, passed through two
fully connected layers and split into a softmax over ``K + 1`` classes (background is 0) and
class-specific box refinements (R-CNN box coding, Girshick et al. CVPR 2014). Training samples
mini-batches of ROIs per image (25% foreground: IoU >= 0.5 with a ground-truth box; background:
IoU < 0.5) and minimises cross-entropy plus a smooth-L1 loss on the foreground refinements.

:class:`RoIBoxHead` is the head; :class:`FastRCNN` puts it on any registered backbone and takes the
proposals as input (``forward(images, proposals, targets)``). ``pool="align"`` uses ROI align
(He et al., Mask R-CNN, ICCV 2017) instead of the max pooling of the paper.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from lightvid.models.features import FeatureTaps, spatial_map
from lightvid.ops import (
    batched_nms,
    box_iou,
    clip_boxes,
    decode_boxes,
    encode_boxes,
    remove_small_boxes,
    roi_align,
    roi_pool,
)

BOX_CODER_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # Fast R-CNN head (RPN uses 1, 1, 1, 1)


def match_boxes(iou: torch.Tensor, high: float, low: float, allow_low_quality: bool = False) -> torch.Tensor:
    """``iou`` is ``(G, N)`` (ground truth x candidates) -> per candidate the matched gt index,
    ``-1`` below ``low`` (negative) or ``-2`` in ``[low, high)`` (ignored).

    ``allow_low_quality``: each ground-truth box also claims the candidates of its highest IoU
    (the RPN rule of Faster R-CNN, so that every object has at least one positive anchor).
    """
    if iou.shape[0] == 0:
        return torch.full((iou.shape[1],), -1, dtype=torch.int64, device=iou.device)
    best, idx = iou.max(dim=0)
    matches = idx.clone()
    matches[best < high] = -2
    matches[best < low] = -1
    if allow_low_quality:
        best_per_gt = iou.max(dim=1, keepdim=True).values
        gt_i, cand = torch.nonzero((iou == best_per_gt) & (best_per_gt > 0), as_tuple=True)
        matches[cand] = idx[cand]
    return matches


def sample_balanced(matches: torch.Tensor, batch_size: int, positive_fraction: float,
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of sampled positives (``matches >= 0``) and negatives (``== -1``)."""
    pos = torch.nonzero(matches >= 0).squeeze(1)
    neg = torch.nonzero(matches == -1).squeeze(1)
    n_pos = min(pos.numel(), int(batch_size * positive_fraction))
    n_neg = min(neg.numel(), batch_size - n_pos)
    pos = pos[torch.randperm(pos.numel(), generator=generator, device=pos.device)[:n_pos]]
    neg = neg[torch.randperm(neg.numel(), generator=generator, device=neg.device)[:n_neg]]
    return pos, neg


class RoIBoxHead(nn.Module):
    """ROI pool/align -> fc6 -> fc7 -> ``cls_score`` (K + 1) and ``bbox_pred`` (4 (K + 1)).

    ``in_channels`` / ``spatial_scale`` may be lists: each box is then pooled from several feature
    maps (e.g. strides 8 and 16) and the pooled grids are concatenated along channels, the
    multi-layer ROI pooling of HyperNet (Kong et al., CVPR 2016) and Inside-Outside Net (Bell et al.,
    CVPR 2016): fine maps localise, deeper maps tell the classes apart.
    """

    def __init__(self, in_channels, num_classes: int, spatial_scale, pool: str = "pool",
                 output_size: int = 7, hidden: int = 256, dropout: float = 0.0):
        super().__init__()
        if pool not in ("pool", "align"):
            raise ValueError(f"pool must be 'pool' (Fast R-CNN) or 'align' (Mask R-CNN), got {pool!r}")
        channels = [in_channels] if isinstance(in_channels, int) else list(in_channels)
        scales = [spatial_scale] if isinstance(spatial_scale, (int, float)) else list(spatial_scale)
        if len(channels) != len(scales):
            raise ValueError(f"one spatial_scale per input map: {len(channels)} maps, {len(scales)} scales")
        self.num_classes, self.spatial_scales, self.pool, self.output_size = num_classes, scales, pool, output_size
        self.fc6 = nn.Linear(sum(channels) * output_size * output_size, hidden)
        self.fc7 = nn.Linear(hidden, hidden)
        self.drop = nn.Dropout(dropout)
        self.cls_score = nn.Linear(hidden, num_classes + 1)
        self.bbox_pred = nn.Linear(hidden, 4 * (num_classes + 1))
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def pool_features(self, features, proposals: list[torch.Tensor]) -> torch.Tensor:
        maps = [features] if isinstance(features, torch.Tensor) else list(features)
        pooled = []
        for fmap, scale in zip(maps, self.spatial_scales):
            if self.pool == "pool":
                pooled.append(roi_pool(fmap, proposals, self.output_size, scale))
            else:
                pooled.append(roi_align(fmap, proposals, self.output_size, scale, sampling_ratio=2, aligned=True))
        return torch.cat(pooled, dim=1)  # (K, sum C, P, P)

    def represent(self, pooled: torch.Tensor) -> torch.Tensor:
        x = pooled.flatten(1)  # (K, C*P*P)
        return self.drop(F.relu(self.fc7(self.drop(F.relu(self.fc6(x))))))

    def forward(self, features, proposals: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.represent(self.pool_features(features, proposals))
        return self.cls_score(x), self.bbox_pred(x)


def sample_proposals(proposals: list[torch.Tensor], targets: list[dict], batch_size: int = 64,
                     positive_fraction: float = 0.25, fg_iou: float = 0.5, bg_iou: float = 0.5):
    """Fast R-CNN mini-batch: per image, the proposals plus the ground-truth boxes, matched and sampled.

    -> sampled proposals (list), matched gt index per sampled proposal (-1: background), per image.
    """
    out_props, out_matches = [], []
    for props, tgt in zip(proposals, targets):
        gt = tgt["boxes"]
        props = torch.cat([props.detach(), gt]) if gt.numel() else props.detach()
        matches = match_boxes(box_iou(gt, props), fg_iou, bg_iou)
        pos, neg = sample_balanced(matches, batch_size, positive_fraction)
        keep = torch.cat([pos, neg])
        out_props.append(props[keep])
        out_matches.append(matches[keep])
    return out_props, out_matches


def fast_rcnn_loss(class_logits, box_deltas, proposals, matches, targets, num_classes: int) -> dict:
    labels, reg_targets = [], []
    for props, m, tgt in zip(proposals, matches, targets):
        fg = m >= 0
        lab = torch.zeros_like(m)
        lab[fg] = tgt["labels"][m[fg]]
        labels.append(lab)
        gt = tgt["boxes"][m.clamp(min=0)] if tgt["boxes"].numel() else props
        reg_targets.append(encode_boxes(gt, props, BOX_CODER_WEIGHTS))
    labels, reg_targets = torch.cat(labels), torch.cat(reg_targets)
    loss_cls = F.cross_entropy(class_logits, labels)
    fg = torch.nonzero(labels > 0).squeeze(1)
    deltas = box_deltas.view(box_deltas.shape[0], num_classes + 1, 4)[fg, labels[fg]]  # (F, 4)
    loss_box = F.smooth_l1_loss(deltas, reg_targets[fg], beta=1.0, reduction="sum") / max(labels.numel(), 1)
    return {"loss_classifier": loss_cls, "loss_box_reg": loss_box}


def postprocess_detections(class_logits, box_deltas, proposals, image_size, score_thresh: float = 0.05,
                           nms_thresh: float = 0.5, detections_per_image: int = 100) -> list[dict]:
    """Softmax scores and refined boxes per class -> per image ``{"boxes", "scores", "labels"}``."""
    num_classes = class_logits.shape[1] - 1
    counts = [len(p) for p in proposals]
    scores_all = F.softmax(class_logits, dim=1).split(counts)
    deltas_all = box_deltas.split(counts)
    out = []
    for scores, deltas, props in zip(scores_all, deltas_all, proposals):
        boxes = decode_boxes(deltas, props, BOX_CODER_WEIGHTS).view(-1, num_classes + 1, 4)[:, 1:]  # (K, C, 4)
        boxes = clip_boxes(boxes.reshape(-1, 4), image_size).view(-1, num_classes, 4)
        labels = torch.arange(1, num_classes + 1, device=scores.device).expand(len(props), -1)
        boxes, scores, labels = boxes.reshape(-1, 4), scores[:, 1:].reshape(-1), labels.reshape(-1)
        keep = torch.nonzero(scores > score_thresh).squeeze(1)
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        keep = remove_small_boxes(boxes, 1e-2)
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        keep = batched_nms(boxes, scores, labels, nms_thresh)[:detections_per_image]
        out.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
    return out


class FastRCNN(nn.Module):
    """Fast R-CNN on a backbone's feature map at ``feature_stride``, on given proposals.

    ``forward(images, proposals, targets=None)``: ``images`` ``(B, 3, H, W)`` (or a clip
    ``(B, 3, T, H, W)`` for a video backbone: its feature map is averaged over time); ``proposals``
    a list of ``Tensor[L, 4]`` per image in pixels; ``targets`` a list of ``{"boxes", "labels"}``
    (labels 1..K). Training returns a dict of losses, evaluation a list of detections.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, feature_stride: int = 16, pool: str = "pool",
                 output_size: int = 7, hidden: int = 256, rois_per_image: int = 64):
        super().__init__()
        self.taps = FeatureTaps(backbone, (feature_stride,))
        self.num_classes, self.rois_per_image = num_classes, rois_per_image
        self.box_head = RoIBoxHead(self.taps.channels[0], num_classes, 1.0 / feature_stride, pool, output_size, hidden)

    def forward(self, images: torch.Tensor, proposals: list[torch.Tensor], targets: list[dict] | None = None):
        features = spatial_map(self.taps(images)[0])  # (B, C, H/s, W/s)
        size = tuple(images.shape[-2:])
        if self.training:
            if targets is None:
                raise ValueError("FastRCNN needs targets in training mode")
            proposals, matches = sample_proposals(proposals, targets, self.rois_per_image)
            logits, deltas = self.box_head(features, proposals)
            return fast_rcnn_loss(logits, deltas, proposals, matches, targets, self.num_classes)
        logits, deltas = self.box_head(features, proposals)
        return postprocess_detections(logits, deltas, proposals, size)
