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


class VideoScores:
    """The video-level accumulator: per video, the sum of its clips' softmax, their count and the label.

    ``add`` grows the table when a video index exceeds it (a dataset without ``num_videos``);
    ``mean()`` gives ``(probs (V', K), labels (V',))`` of the videos seen.
    """

    def __init__(self, num_videos: int, num_classes: int, device: torch.device | str | None = None):
        self.num_classes = num_classes
        self.probs = torch.zeros(num_videos, num_classes, device=device)  # (V, K) summed softmax
        self.count = torch.zeros(num_videos, device=device)  # (V,)
        self.label = torch.full((num_videos,), -1, dtype=torch.long, device=device)  # (V,)

    def grow(self, n: int) -> None:
        extra = n - self.probs.shape[0]
        if extra > 0:
            self.probs = torch.cat([self.probs, self.probs.new_zeros(extra, self.num_classes)])
            self.count = torch.cat([self.count, self.count.new_zeros(extra)])
            self.label = torch.cat([self.label, self.label.new_full((extra,), -1)])

    def add(self, logits: torch.Tensor, labels: torch.Tensor, video_index: torch.Tensor) -> None:
        vid = video_index.to(self.probs.device).long()
        self.grow(int(vid.max()) + 1)
        self.probs.index_add_(0, vid, logits.float().softmax(1))
        self.count.index_add_(0, vid, torch.ones_like(vid, dtype=torch.float))
        self.label[vid] = labels.to(self.label.device)

    def mean(self) -> tuple[torch.Tensor, torch.Tensor]:
        seen = self.count > 0
        return self.probs[seen] / self.count[seen, None], self.label[seen]


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
    videos = VideoScores(int(getattr(dataset, "num_videos", 0) or 0), k, device)
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
        videos.add(logits, y, vid)
        n_clips += x.shape[0]
    if n_clips == 0:
        raise ValueError("no clip could be evaluated (the dataset is empty or every file failed to decode)")
    vp, vl = videos.mean()
    v1 = MulticlassAccuracy(k, average="micro", **local).to(device)(vp, vl)
    v5 = MulticlassAccuracy(k, top_k=k5, average="micro", **local).to(device)(vp, vl)
    per_class = MulticlassAccuracy(k, average=None, **local).to(device)(vp, vl)
    present = torch.bincount(vl, minlength=k) > 0
    per_class = torch.where(present, per_class, torch.full_like(per_class, float("nan")))
    confusion = MulticlassConfusionMatrix(k, **local).to(device)(vp, vl)
    return EvalResult(
        num_clips=n_clips, num_videos=len(vl), num_bad=n_bad,
        clip_top1=float(clip1.compute()), clip_top5=float(clip5.compute()),
        video_top1=float(v1), video_top5=float(v5), classes=classes,
        per_class=[float(v) for v in per_class.cpu()], confusion=confusion.cpu().tolist(),
        video_probs=vp.cpu(), video_labels=vl.cpu(),
    )
