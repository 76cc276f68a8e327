"""Spatio-temporal action localisation: a Faster R-CNN whose region head reads a 3D feature map.

Gu et al., "AVA: A Video Dataset of Spatio-temporally Localized Atomic Visual Actions", CVPR 2018
(boxes on a key frame, one multi-label action classifier per box, frame-mAP@0.5) and the detection
head of Feichtenhofer et al., "SlowFast Networks for Video Recognition", ICCV 2019 (ROI align on the
3D backbone's last map, extended over time and pooled temporally). Proposals come from a region
proposal network (Ren et al., NeurIPS 2015) on the time-averaged map, so the model finds the boxes
itself; each box gets an "object" score, a refinement and independent sigmoid scores per action.
A detection of action ``a`` in box ``b`` scores ``sigmoid(object_b) * sigmoid(action_{b,a})``.

``temporal_pool`` chooses how the ROI-aligned 3D features meet the box head: ``"avg"`` / ``"max"``
pool over time (the SlowFast head), ``"keep"`` flattens every time step into fc6 so the head sees
where in the box the object is at each moment (the order of time, i.e. the direction of a motion,
survives). ``frame_diff=True`` feeds the backbone the frame differences next to the frames (6 input
channels): the "temporal residual gradient" input of the light-weight 3D networks review (Wang, Lin
and Wang, "Design Light-Weight 3D Convolutional Networks", 2019), which makes motion explicit.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from lightvid.models.fast_rcnn import match_boxes, sample_balanced
from lightvid.models.faster_rcnn import RegionProposalNetwork
from lightvid.models.features import FeatureTaps, spatial_map
from lightvid.ops import box_iou, clip_boxes, decode_boxes, encode_boxes, nms, roi_align_3d

BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)


class ActionLocalizer(nn.Module):
    """``forward(clips, targets=None)``: clips ``(B, 3, T, H, W)``; targets per clip
    ``{"boxes": (G, 4) on the key frame, "actions": (G, A) multi-hot}``. Training -> losses;
    evaluation -> per clip ``{"boxes", "scores", "labels"}`` with labels = action index + 1."""

    def __init__(self, backbone: nn.Module, num_actions: int, feature_stride: int = 16, anchor_sizes=(16, 32, 64),
                 aspect_ratios=(0.5, 1.0, 2.0), output_size: int = 7, hidden: int = 256, dropout: float = 0.0,
                 rois_per_image: int = 32, box_nms: float = 0.5, boxes_per_clip: int = 20,
                 temporal_pool: str = "avg", frame_diff: bool = False, clip_len: int = 8,
                 action_loss_weight: float = 1.0, **rpn_kwargs):
        super().__init__()
        if temporal_pool not in ("avg", "max", "keep"):
            raise ValueError(f"temporal_pool must be 'avg', 'max' or 'keep', got {temporal_pool!r}")
        in_chans = 6 if frame_diff else 3
        probe = torch.zeros(1, in_chans, clip_len, 64, 64)
        self.taps = FeatureTaps(backbone, (feature_stride,), probe_input=probe)
        if not self.taps.video:
            raise ValueError(f"{type(backbone).__name__} is not a video backbone; action localisation needs "
                             "(B, C, T, H, W) feature maps")
        c = self.taps.channels[0]
        self.temporal_pool, self.frame_diff, self.action_loss_weight = temporal_pool, frame_diff, action_loss_weight
        steps = 1
        if temporal_pool == "keep":  # the map's time steps for a clip of clip_len frames
            was_training = backbone.training
            backbone.eval()
            with torch.no_grad():
                steps = self.taps(probe)[0].shape[2]
            backbone.train(was_training)
        self.num_actions, self.spatial_scale, self.output_size = num_actions, 1.0 / feature_stride, output_size
        self.rois_per_image, self.box_nms, self.boxes_per_clip = rois_per_image, box_nms, boxes_per_clip
        self.rpn = RegionProposalNetwork(c, feature_stride, anchor_sizes, aspect_ratios, **rpn_kwargs)
        self.fc6 = nn.Linear(c * steps * output_size * output_size, hidden)
        self.fc7 = nn.Linear(hidden, hidden)
        self.drop = nn.Dropout(dropout)
        self.object_score = nn.Linear(hidden, 1)
        self.box_pred = nn.Linear(hidden, 4)
        self.action_score = nn.Linear(hidden, num_actions)
        for layer in (self.object_score, self.box_pred, self.action_score):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def head(self, features: torch.Tensor, boxes: list[torch.Tensor]):
        pool = None if self.temporal_pool == "keep" else self.temporal_pool
        pooled = roi_align_3d(features, boxes, self.output_size, self.spatial_scale, sampling_ratio=2,
                              aligned=True, temporal_pool=pool)  # (K, C, P, P) or (K, C, T', P, P)
        x = self.drop(F.relu(self.fc7(self.drop(F.relu(self.fc6(pooled.flatten(1)))))))
        return self.object_score(x).squeeze(1), self.box_pred(x), self.action_score(x)

    def features(self, clips: torch.Tensor) -> torch.Tensor:
        """``(B, 3, T, H, W)`` clips -> the backbone's ``(B, C, T', H/s, W/s)`` map."""
        if self.frame_diff:
            diff = clips[:, :, 1:] - clips[:, :, :-1]  # (B, 3, T-1, H, W): x_{t+1} - x_t
            clips = torch.cat([clips, torch.cat([diff, diff[:, :, -1:]], dim=2)], dim=1)  # (B, 6, T, H, W)
        return self.taps(clips)[0]

    @torch.no_grad()
    def action_scores(self, clips: torch.Tensor, boxes: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per clip ``(G, A)`` action probabilities of the given key-frame boxes (e.g. the ground truth):
        the action head alone, without the proposals."""
        counts = [len(b) for b in boxes]
        _, _, actions = self.head(self.features(clips), boxes)
        return list(torch.sigmoid(actions).split(counts))

    def forward(self, clips: torch.Tensor, targets: list[dict] | None = None):
        features = self.features(clips)  # (B, C, T', H/s, W/s)
        size = tuple(clips.shape[-2:])
        proposals, losses = self.rpn(spatial_map(features), size, targets)
        if self.training:
            if targets is None:
                raise ValueError("ActionLocalizer needs targets in training mode")
            sampled, matched = [], []
            for props, tgt in zip(proposals, targets):
                props = torch.cat([props, tgt["boxes"]])
                m = match_boxes(box_iou(tgt["boxes"], props), 0.5, 0.5)
                pos, neg = sample_balanced(m, self.rois_per_image, 0.25)
                sampled.append(props[torch.cat([pos, neg])])
                matched.append(m[torch.cat([pos, neg])])
            obj, deltas, actions = self.head(features, sampled)
            m = torch.cat(matched)
            fg = m >= 0
            losses["loss_object"] = F.binary_cross_entropy_with_logits(obj, fg.to(obj.dtype))
            gt_boxes = torch.cat([t["boxes"][mm.clamp(min=0)] if t["boxes"].numel() else p
                                  for t, mm, p in zip(targets, matched, sampled)])
            gt_actions = torch.cat([t["actions"][mm.clamp(min=0)] if t["boxes"].numel() else
                                    torch.zeros(len(mm), self.num_actions, device=obj.device)
                                    for t, mm in zip(targets, matched)])
            if fg.any():
                reg = encode_boxes(gt_boxes[fg], torch.cat(sampled)[fg], BOX_WEIGHTS)
                losses["loss_box_reg"] = F.smooth_l1_loss(deltas[fg], reg, reduction="sum") / max(len(m), 1)
                losses["loss_actions"] = self.action_loss_weight * F.binary_cross_entropy_with_logits(
                    actions[fg], gt_actions[fg].to(obj.dtype))  # weight: the backbone's share of motion learning
            else:
                losses["loss_box_reg"] = losses["loss_actions"] = deltas.sum() * 0
            return losses
        obj, deltas, actions = self.head(features, proposals)
        counts = [len(p) for p in proposals]
        out = []
        for o, d, a, props in zip(obj.split(counts), deltas.split(counts), actions.split(counts), proposals):
            boxes = clip_boxes(decode_boxes(d, props, BOX_WEIGHTS), size)
            obj_p = torch.sigmoid(o)
            keep = nms(boxes, obj_p, self.box_nms)[:self.boxes_per_clip]
            boxes, scores = boxes[keep], obj_p[keep, None] * torch.sigmoid(a[keep])  # (N, A)
            labels = torch.arange(1, self.num_actions + 1, device=boxes.device).expand_as(scores)
            out.append({"boxes": boxes[:, None].expand(-1, self.num_actions, -1).reshape(-1, 4),
                        "scores": scores.reshape(-1), "labels": labels.reshape(-1)})
        return out
