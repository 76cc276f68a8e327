"""Clip- and video-level evaluation of a classifier (torchmetrics).

Video level follows Karpathy et al. (CVPR 2014) and C3D (Tran et al., ICCV 2015): the
softmax of the K clips x crops a video yields (items sharing a ``video_index``) is
averaged and the video is classified by the average. Reported: clip and video top-1 and
top-5, per-class video accuracy and the video-level confusion matrix.
"""
from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
from torch.utils.data import DataLoader
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix
from tqdm import tqdm


@dataclass
class EvalResult:
    num_clips: int
    num_videos: int
    num_bad: int
    clip_top1: float
    clip_top5: float
    video_top1: float
    video_top5: float
    classes: list[str]
    per_class: list[float]  # video-level accuracy of each class (nan: class absent)
    confusion: list[list[int]]  # video level, rows = true class, columns = predicted
    video_probs: torch.Tensor | None = field(default=None, repr=False)  # (V, K) mean softmax
    video_labels: torch.Tensor | None = field(default=None, repr=False)  # (V,)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("video_probs")
        d.pop("video_labels")
        return d


def autocast_for(precision: str, device: torch.device):
    """An autocast context for a Lightning precision string (no-op for 32/64)."""
    if precision in ("bf16-mixed", "bf16-true", "bf16"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision in ("16-mixed", "16-true", "16") and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate(model: nn.Module, dataset, classes: list[str] | None = None, batch_size: int = 32,
             num_workers: int = 0, precision: str = "32", device: str | torch.device | None = None,
             progress: bool = True) -> EvalResult:
    """Evaluate ``model`` on an eval-mode dataset of ``(clip, label, video_index)`` items."""
    from lightvid.data.build import collate_skip_bad

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = model.to(device).eval()
    classes = list(classes if classes is not None else dataset.classes)
    k = len(classes)
    k5 = min(5, k)
    local = dict(sync_on_compute=False)  # rank 0 evaluates alone, even inside a DDP run
    clip1 = MulticlassAccuracy(k, average="micro", **local).to(device)
    clip5 = MulticlassAccuracy(k, top_k=k5, average="micro", **local).to(device)
    n_videos = int(getattr(dataset, "num_videos", 0) or 0)
    probs = torch.zeros(n_videos, k, device=device)
    counts = torch.zeros(n_videos, device=device)
    labels = torch.full((n_videos,), -1, dtype=torch.long, device=device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=collate_skip_bad)
    n_clips = n_bad = 0
    for x, y, vid, bad in tqdm(loader, desc="eval", unit="batch", disable=not progress, leave=False):
        n_bad += int(bad)
        if x.shape[0] == 0:
            continue
        x, y, vid = x.to(device), y.to(device), vid.to(device).long()
        with autocast_for(precision, device):
            logits = model(x)
        logits = logits.float()
        if logits.shape[1] != k:
            raise ValueError(f"the model has {logits.shape[1]} outputs but the data has {k} classes")
        clip1.update(logits, y)
        clip5.update(logits, y)
        need = int(vid.max()) + 1
        if need > probs.shape[0]:  # dataset without num_videos: grow
            grow = need - probs.shape[0]
            probs = torch.cat([probs, probs.new_zeros(grow, k)])
            counts = torch.cat([counts, counts.new_zeros(grow)])
            labels = torch.cat([labels, labels.new_full((grow,), -1)])
        probs.index_add_(0, vid, logits.softmax(1))
        counts.index_add_(0, vid, torch.ones_like(vid, dtype=torch.float))
        labels[vid] = y
        n_clips += x.shape[0]
    if n_clips == 0:
        raise ValueError("no clip could be evaluated (the dataset is empty or every file failed to decode)")
    seen = counts > 0
    vp, vl = probs[seen] / counts[seen, None], labels[seen]
    v1 = MulticlassAccuracy(k, average="micro", **local).to(device)(vp, vl)
    v5 = MulticlassAccuracy(k, top_k=k5, average="micro", **local).to(device)(vp, vl)
    per_class = MulticlassAccuracy(k, average=None, **local).to(device)(vp, vl)
    present = torch.bincount(vl, minlength=k) > 0
    per_class = torch.where(present, per_class, torch.full_like(per_class, float("nan")))
    confusion = MulticlassConfusionMatrix(k, **local).to(device)(vp, vl)
    return EvalResult(
        num_clips=n_clips, num_videos=int(seen.sum()), num_bad=n_bad,
        clip_top1=float(clip1.compute()), clip_top5=float(clip5.compute()),
        video_top1=float(v1), video_top5=float(v5), classes=classes,
        per_class=[float(v) for v in per_class.cpu()], confusion=confusion.cpu().tolist(),
        video_probs=vp.cpu(), video_labels=vl.cpu(),
    )
