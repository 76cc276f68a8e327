"""Builders of the region and dense-prediction models on any registered backbone.

``build_region_model(task, backbone, num_classes, backbone_kwargs=..., **head_kwargs)``:

* ``"detect"``: :class:`~lightvid.models.faster_rcnn.FasterRCNN` (Ren et al., NeurIPS 2015);
* ``"fast_rcnn"``: :class:`~lightvid.models.fast_rcnn.FastRCNN` on given proposals (Girshick, ICCV 2015);
* ``"localize"``: :class:`~lightvid.models.action_localization.ActionLocalizer` (AVA-style, video backbone);
* ``"segment"``: :class:`~lightvid.models.fcn.FCN` (Long et al., CVPR 2015).

These are not classifiers, so they are not in the classifier registry (``lightvid list``); their
backbones are.
"""
from __future__ import annotations

import torch.nn as nn

from lightvid.models.action_localization import ActionLocalizer
from lightvid.models.fast_rcnn import FastRCNN
from lightvid.models.faster_rcnn import FasterRCNN
from lightvid.models.fcn import FCN
from lightvid.models.registry import create_model

REGION_MODELS = {"detect": FasterRCNN, "fast_rcnn": FastRCNN, "localize": ActionLocalizer, "segment": FCN}


def build_region_model(task: str, backbone: str, num_classes: int, backbone_kwargs: dict | None = None,
                       **head_kwargs) -> nn.Module:
    if task not in REGION_MODELS:
        raise ValueError(f"unknown region task {task!r}; known: {', '.join(REGION_MODELS)}")
    bkw = dict(backbone_kwargs or {})
    if task == "segment":
        bkw.setdefault("num_classes", num_classes)  # FCN turns the classifier into the stride-32 score layer
    else:
        bkw.setdefault("num_classes", 0)
    if task == "localize" and head_kwargs.get("frame_diff"):
        bkw.setdefault("in_chans", 6)  # frames and their differences
    net = create_model(backbone, **bkw)
    return REGION_MODELS[task](net, num_classes, **head_kwargs)
