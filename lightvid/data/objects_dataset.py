"""A lightvid objects set (``lightvid data synth-objects``) as a torch Dataset of frames or clips with
region targets.

An item is one key frame (``clip_len=1``: the image ``(3, H, W)``) or a clip of ``clip_len`` frames
whose key frame is the middle one (``(3, T, H, W)``), and its target::

    boxes     (G, 4) float, x1 y1 x2 y2 in pixels, of the objects visible on the key frame
    labels    (G,)   category ids (1..K; 0 is background)
    actions   (G, A) multi-hot actions (the generator gives each object one)
    iscrowd   (G,)   bool: visibility below ``min_visibility`` (hard, mostly occluded: ignored by
                     training and matched without penalty by the mAP evaluation)
    semantic  (H, W) long: category id per pixel (0 background), from the visible masks
    video, frame     indices of the sample

``hflip`` (training) mirrors images, boxes and masks and swaps the left / right actions.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from lightvid.data.synth_objects import ACTIONS, CATEGORIES, STAMP, rle_to_mask
from lightvid.errors import UserError


class ObjectsDataset(Dataset):
    def __init__(self, root: str | Path, split: str, clip_len: int = 1, step: int = 1, hflip: bool = False,
                 min_visibility: float = 0.25, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), seed: int = 0):
        self.root = Path(root)
        stamp_path = self.root / STAMP
        if not stamp_path.is_file():
            raise UserError(f"{self.root}: not a lightvid objects set (no {STAMP}); "
                            "write one with `lightvid data synth-objects`")
        stamp = json.loads(stamp_path.read_text())
        if split not in stamp["videos"]:
            raise UserError(f"{stamp_path}: no split {split!r}; have {', '.join(stamp['videos'])}")
        self.categories, self.actions = list(stamp["categories"]), list(stamp["actions"])
        self.clip_len, self.hflip, self.min_visibility = clip_len, hflip, min_visibility
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.rng = np.random.default_rng(seed)
        self.videos, self.samples = [], []
        for name in stamp["videos"][split]:
            folder = self.root / split / name
            doc_path = folder / stamp.get("annotation_file", "annotations.json")
            try:
                doc = json.loads(doc_path.read_text())
            except (OSError, json.JSONDecodeError) as e:
                raise UserError(f"{doc_path}: unreadable annotations ({e})") from None
            per_frame: dict[int, list] = {}
            for ann in doc["annotations"]:
                per_frame.setdefault(ann["image_id"], []).append(ann)
            files = [folder / im["file_name"] for im in sorted(doc["images"], key=lambda im: im["frame_index"])]
            ids = [im["id"] for im in sorted(doc["images"], key=lambda im: im["frame_index"])]
            v = len(self.videos)
            self.videos.append({"files": files, "anns": [per_frame.get(i, []) for i in ids], "frames": {}})
            for start in range(0, len(files) - clip_len + 1, step):
                self.samples.append((v, start + clip_len // 2))
        if not self.samples:
            raise UserError(f"{self.root}/{split}: no samples (clip_len {clip_len} longer than the videos?)")
        self.swap = {ACTIONS.index("left"): ACTIONS.index("right"), ACTIONS.index("right"): ACTIONS.index("left")}
        if self.categories != list(CATEGORIES) or self.actions != list(ACTIONS):
            raise UserError(f"{stamp_path}: categories/actions differ from this lightvid version's")

    def __len__(self) -> int:
        return len(self.samples)

    def frame(self, v: int, t: int) -> np.ndarray:
        """uint8 ``(H, W, 3)`` RGB, decoded once and kept."""
        import cv2

        video = self.videos[v]
        t = min(max(t, 0), len(video["files"]) - 1)
        if t not in video["frames"]:
            img = cv2.imread(str(video["files"][t]), cv2.IMREAD_COLOR)
            if img is None:
                raise UserError(f"{video['files'][t]}: not a readable frame")
            video["frames"][t] = np.ascontiguousarray(img[..., ::-1])
        return video["frames"][t]

    def target(self, v: int, t: int) -> dict:
        anns = self.videos[v]["anns"][t]
        h, w = self.frame(v, t).shape[:2]
        semantic = np.zeros((h, w), np.int64)
        boxes, labels, actions, crowd = [], [], [], []
        for a in anns:
            semantic[rle_to_mask(a["segmentation"])] = a["category_id"]
            x, y, bw, bh = a["bbox"]
            boxes.append([x, y, x + bw, y + bh])
            labels.append(a["category_id"])
            multi_hot = np.zeros(len(self.actions), np.float32)
            multi_hot[a["action_id"] - 1] = 1
            actions.append(multi_hot)
            crowd.append(a.get("visibility", 1.0) < self.min_visibility)
        return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                "labels": torch.tensor(labels, dtype=torch.int64),
                "actions": torch.from_numpy(np.stack(actions)) if actions else torch.zeros(0, len(self.actions)),
                "iscrowd": torch.tensor(crowd, dtype=torch.bool),
                "semantic": torch.from_numpy(semantic)}

    def __getitem__(self, i: int):
        v, key = self.samples[i]
        start = key - self.clip_len // 2
        frames = np.stack([self.frame(v, t) for t in range(start, start + self.clip_len)])  # (T, H, W, 3)
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(255)  # (T, 3, H, W)
        x = (x - self.mean) / self.std
        tgt = self.target(v, key)
        if self.hflip and self.rng.uniform() < 0.5:
            w = x.shape[-1]
            x = x.flip(-1)
            tgt["boxes"] = torch.stack([w - tgt["boxes"][:, 2], tgt["boxes"][:, 1], w - tgt["boxes"][:, 0],
                                        tgt["boxes"][:, 3]], dim=1)
            tgt["semantic"] = tgt["semantic"].flip(-1)
            perm = [self.swap.get(j, j) for j in range(len(self.actions))]
            tgt["actions"] = tgt["actions"][:, perm]
        x = x[0] if self.clip_len == 1 else x.permute(1, 0, 2, 3)  # (3, H, W) or (3, T, H, W)
        tgt["video"], tgt["frame"] = v, key
        return x, tgt


def collate_regions(batch):
    """-> images ``(B, ...)`` and the list of target dicts."""
    return torch.stack([b[0] for b in batch]), [b[1] for b in batch]
