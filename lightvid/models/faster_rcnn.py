"""Faster R-CNN: a region proposal network sharing the detector's feature map.

Ren, He, Girshick, Sun, "Faster R-CNN: Towards Real-Time Object Detection with Region Proposal
Networks", NeurIPS 2015. A small network slides over the feature map (3x3 conv + ReLU); at each
position it scores ``k`` anchor boxes (sizes x aspect ratios) as object / not object and regresses
each anchor to a box. Anchors with IoU >= 0.7 with a ground-truth box (and each box's best anchor)
are positive, < 0.3 negative; 256 anchors per image are sampled (up to half positive). Proposals are
the decoded anchors, clipped, filtered by non-maximum suppression (IoU 0.7) and handed to the Fast
R-CNN head (:mod:`lightvid.models.fast_rcnn`) on the same feature map.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from lightvid.models.fast_rcnn import (
    RoIBoxHead,
    fast_rcnn_loss,
    match_boxes,
    postprocess_detections,
    sample_balanced,
    sample_proposals,
)
from lightvid.models.features import FeatureTaps, spatial_map
from lightvid.ops import batched_nms, box_iou, clip_boxes, decode_boxes, encode_boxes, remove_small_boxes


class AnchorGenerator(nn.Module):
    """``k = len(sizes) * len(aspect_ratios)`` anchors (area ``size^2``, ``h / w = ratio``) centred on
    every feature-map cell; -> ``(H * W * k, 4)`` in image pixels, cell-major (matching the RPN outputs)."""

    def __init__(self, sizes=(16, 32, 64), aspect_ratios=(0.5, 1.0, 2.0), stride: int = 16):
        super().__init__()
        self.stride = stride
        base = []
        for ratio in aspect_ratios:
            for size in sizes:
                w, h = size / ratio ** 0.5, size * ratio ** 0.5
                base.append([-w / 2, -h / 2, w / 2, h / 2])
        self.register_buffer("base", torch.tensor(base, dtype=torch.float32), persistent=False)

    @property
    def num_anchors(self) -> int:
        return self.base.shape[0]

    def forward(self, height: int, width: int) -> torch.Tensor:
        ys = (torch.arange(height, device=self.base.device, dtype=torch.float32) + 0.5) * self.stride
        xs = (torch.arange(width, device=self.base.device, dtype=torch.float32) + 0.5) * self.stride
        cy, cx = torch.meshgrid(ys, xs, indexing="ij")
        centres = torch.stack([cx, cy, cx, cy], dim=-1).reshape(-1, 1, 4)  # (H*W, 1, 4)
        return (centres + self.base[None]).reshape(-1, 4)  # (H*W*k, 4)


class RPNHead(nn.Module):
    def __init__(self, in_channels: int, num_anchors: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.objectness = nn.Conv2d(in_channels, num_anchors, 1)
        self.bbox_pred = nn.Conv2d(in_channels, num_anchors * 4, 1)
        for layer in (self.conv, self.objectness, self.bbox_pred):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.relu(self.conv(x))
        b, _, h, w = x.shape
        obj = self.objectness(x).permute(0, 2, 3, 1).reshape(b, -1)  # (B, H*W*k)
        deltas = self.bbox_pred(x).view(b, -1, 4, h, w).permute(0, 3, 4, 1, 2).reshape(b, -1, 4)  # (B, H*W*k, 4)
        return obj, deltas


class RegionProposalNetwork(nn.Module):
    """Anchors + RPN head + proposal selection; ``forward(features, image_size, targets)`` ->
    (proposals per image, losses (empty in evaluation))."""

    def __init__(self, in_channels: int, stride: int, anchor_sizes=(16, 32, 64), aspect_ratios=(0.5, 1.0, 2.0),
                 pre_nms_top_n: tuple[int, int] = (1000, 500), post_nms_top_n: tuple[int, int] = (300, 100),
                 nms_thresh: float = 0.7, fg_iou: float = 0.7, bg_iou: float = 0.3, batch_size_per_image: int = 256,
                 positive_fraction: float = 0.5, min_size: float = 1.0):
        super().__init__()
        self.anchors = AnchorGenerator(anchor_sizes, aspect_ratios, stride)
        self.head = RPNHead(in_channels, self.anchors.num_anchors)
        self.pre_nms_top_n, self.post_nms_top_n, self.nms_thresh = pre_nms_top_n, post_nms_top_n, nms_thresh
        self.fg_iou, self.bg_iou = fg_iou, bg_iou
        self.batch_size_per_image, self.positive_fraction, self.min_size = (batch_size_per_image, positive_fraction,
                                                                            min_size)

    def forward(self, features: torch.Tensor, image_size: tuple[int, int], targets: list[dict] | None = None):
        obj, deltas = self.head(features)
        anchors = self.anchors(*features.shape[-2:])  # (A, 4)
        mode = 0 if self.training else 1
        proposals = []
        with torch.no_grad():
            for o, d in zip(obj.detach(), deltas.detach()):
                boxes = clip_boxes(decode_boxes(d, anchors), image_size)
                top = o.topk(min(self.pre_nms_top_n[mode], o.numel())).indices
                boxes, scores = boxes[top], o[top]
                keep = remove_small_boxes(boxes, self.min_size)
                boxes, scores = boxes[keep], scores[keep]
                keep = batched_nms(boxes, scores, torch.zeros_like(scores, dtype=torch.int64), self.nms_thresh)
                proposals.append(boxes[keep[:self.post_nms_top_n[mode]]])
        losses = {}
        if self.training:
            if targets is None:
                raise ValueError("the RPN needs targets in training mode")
            losses = self.loss(obj, deltas, anchors, targets)
        return proposals, losses

    def loss(self, obj, deltas, anchors, targets) -> dict:
        sampled, labels, reg_pred, reg_tgt = [], [], [], []
        for i, tgt in enumerate(targets):
            matches = match_boxes(box_iou(tgt["boxes"], anchors), self.fg_iou, self.bg_iou, allow_low_quality=True)
            pos, neg = sample_balanced(matches, self.batch_size_per_image, self.positive_fraction)
            sampled.append(obj[i, torch.cat([pos, neg])])
            labels.append(torch.cat([torch.ones_like(pos), torch.zeros_like(neg)]).to(obj.dtype))
            if pos.numel():
                reg_pred.append(deltas[i, pos])
                reg_tgt.append(encode_boxes(tgt["boxes"][matches[pos]], anchors[pos]))
        n = max(sum(len(s) for s in sampled), 1)
        loss_obj = F.binary_cross_entropy_with_logits(torch.cat(sampled), torch.cat(labels), reduction="sum") / n
        if reg_pred:
            loss_box = F.smooth_l1_loss(torch.cat(reg_pred), torch.cat(reg_tgt), beta=1 / 9, reduction="sum") / n
        else:
            loss_box = deltas.sum() * 0
        return {"loss_objectness": loss_obj, "loss_rpn_box_reg": loss_box}


class FasterRCNN(nn.Module):
    """Backbone -> feature map at ``feature_stride`` -> RPN proposals -> Fast R-CNN head.

    ``feature_stride`` may be a list (e.g. ``[8, 16]``): the RPN runs on the first (finest) map and
    the box head pools every box from all of them (multi-layer ROI pooling, see ``RoIBoxHead``).

    ``forward(images, targets=None)``: images ``(B, 3, H, W)`` (or clips ``(B, 3, T, H, W)`` with a
    video backbone, the feature map averaged over time: detection on the clip's key frame). Training
    returns a dict of the four losses; evaluation a list of ``{"boxes", "scores", "labels"}``.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, feature_stride: int = 16, anchor_sizes=(16, 32, 64),
                 aspect_ratios=(0.5, 1.0, 2.0), pool: str = "align", output_size: int = 7, hidden: int = 256,
                 rois_per_image: int = 64, score_thresh: float = 0.05, detections_per_image: int = 100, **rpn_kwargs):
        super().__init__()
        strides = ([int(feature_stride)] if isinstance(feature_stride, (int, float))
                   else [int(s) for s in feature_stride])
        self.taps = FeatureTaps(backbone, strides)
        channels = self.taps.channels
        self.num_classes, self.rois_per_image = num_classes, rois_per_image
        self.score_thresh, self.detections_per_image = score_thresh, detections_per_image
        self.rpn = RegionProposalNetwork(channels[0], strides[0], anchor_sizes, aspect_ratios, **rpn_kwargs)
        self.box_head = RoIBoxHead(channels, num_classes, [1.0 / s for s in strides], pool, output_size, hidden)

    def forward(self, images: torch.Tensor, targets: list[dict] | None = None):
        features = [spatial_map(f) for f in self.taps(images)]  # (B, C_i, H/s_i, W/s_i), finest first
        size = tuple(images.shape[-2:])
        proposals, losses = self.rpn(features[0], size, targets)
        if self.training:
            proposals, matches = sample_proposals(proposals, targets, self.rois_per_image)
            logits, deltas = self.box_head(features, proposals)
            losses.update(fast_rcnn_loss(logits, deltas, proposals, matches, targets, self.num_classes))
            return losses
        logits, deltas = self.box_head(features, proposals)
        return postprocess_detections(logits, deltas, proposals, size, self.score_thresh,
                                      detections_per_image=self.detections_per_image)
