"""Evaluation of region outputs: COCO box mAP (pycocotools' COCOeval) and mean IoU (torchmetrics).

torchmetrics' ``MeanAveragePrecision`` (1.9) delegates to pycocotools or faster-coco-eval but refuses
to start without torchvision (it uses ``torchvision.ops.box_convert`` only), which cannot be imported
next to this torch; :class:`CocoBoxMAP` therefore feeds pycocotools' COCOeval directly, the same
computation: ``map`` is COCO's AP@[0.5:0.95], ``map_50`` AP@0.5 (frame-mAP@0.5 when the images are
key frames and the labels actions, as in AVA). Ground truth flagged ``iscrowd`` is COCO's ignore
region: detections on it are neither rewarded nor penalised.
"""
from __future__ import annotations

import contextlib
import io

import numpy as np
import torch


class CocoBoxMAP:
    """Accumulate ``update(preds, targets)`` (lists of dicts of tensors, boxes x1 y1 x2 y2) -> ``compute()``."""

    def __init__(self, num_classes: int, label_key: str = "labels"):
        self.num_classes, self.label_key = num_classes, label_key
        self.reset()

    def reset(self) -> None:
        self.images: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.dets: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def update(self, preds: list[dict], targets: list[dict]) -> None:
        for p, t in zip(preds, targets):
            if self.label_key == "actions":  # one ground-truth entry per (box, action) pair
                box_i, act = torch.nonzero(t["actions"] > 0.5, as_tuple=True)
                gt_boxes, gt_labels, crowd = t["boxes"][box_i], act + 1, t["iscrowd"][box_i]
            else:
                gt_boxes, gt_labels, crowd = t["boxes"], t["labels"], t["iscrowd"]
            self.images.append((gt_boxes.detach().cpu().numpy(), gt_labels.cpu().numpy(), crowd.cpu().numpy()))
            self.dets.append((p["boxes"].detach().float().cpu().numpy(), p["scores"].detach().float().cpu().numpy(),
                              p["labels"].cpu().numpy()))

    def compute(self) -> dict:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        images, anns, dets = [], [], []
        for i, ((gb, gl, gc), (db, ds, dl)) in enumerate(zip(self.images, self.dets)):
            images.append({"id": i + 1})
            for b, lab, c in zip(gb, gl, gc):
                w, h = float(b[2] - b[0]), float(b[3] - b[1])
                anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(lab), "iscrowd": int(c),
                             "bbox": [float(b[0]), float(b[1]), w, h], "area": w * h})
            for b, s, lab in zip(db, ds, dl):
                dets.append({"image_id": i + 1, "category_id": int(lab), "score": float(s),
                             "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]})
        result = {"map": 0.0, "map_50": 0.0, "ap50_per_class": [0.0] * self.num_classes}
        if not anns:
            return result
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns,
                      "categories": [{"id": c + 1} for c in range(self.num_classes)]}
        with contextlib.redirect_stdout(io.StringIO()):
            gt.createIndex()
            if not dets:
                return result
            dt = gt.loadRes(dets)
            ev = COCOeval(gt, dt, iouType="bbox")
            ev.params.maxDets = [1, 10, 100]
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        result["map"], result["map_50"] = float(ev.stats[0]), float(ev.stats[1])
        precision = ev.eval["precision"][0, :, :, 0, -1]  # IoU 0.5, all recalls, classes, area all, 100 dets
        per_class = []
        for c in range(self.num_classes):
            p = precision[:, c]
            per_class.append(float(p[p > -1].mean()) if (p > -1).any() else float("nan"))
        result["ap50_per_class"] = per_class
        return result
