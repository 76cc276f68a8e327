"""Comparing a converted (or distilled) model with its source on real clips.

* :func:`first_clips`: ``n`` evenly spaced decodable clips of a dataset, stacked, for
  calibrating a conversion;
* :func:`top1_agreement`: clip-level top-1 agreement of two models and each one's accuracy.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from lightvid.data.build import collate_skip_bad
from lightvid.errors import UserError


def first_clips(dataset, n: int) -> torch.Tensor:
    """``(n', C, T, H, W)``: up to ``n`` decodable clips, evenly spaced over ``dataset``."""
    clips = []
    step = max(1, len(dataset) // n)
    for i in range(0, len(dataset), step):
        item = dataset[i]
        if item is not None:
            clips.append(item[0])
        if len(clips) == n:
            break
    if not clips:
        raise UserError("no validation clip could be decoded for calibration")
    return torch.stack(clips)


def top1_agreement(src: nn.Module, dst: nn.Module, dataset, batch_size: int) -> dict:
    """Top-1 agreement (clip level) and both models' clip accuracy on ``dataset``.

    Returns ``{"clips", "agreement", "source_top1", "converted_top1"}``.
    """
    src.eval()
    dst.eval()
    same = right_src = right_dst = n = 0
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate_skip_bad)
    with torch.no_grad():
        for x, y, _, _ in tqdm(loader, desc="agreement", unit="batch", leave=False):
            if x.shape[0] == 0:
                continue
            a, b = src(x).argmax(1), dst(x).argmax(1)
            same += int((a == b).sum())
            right_src += int((a == y).sum())
            right_dst += int((b == y).sum())
            n += x.shape[0]
    if n == 0:
        raise UserError("no validation clip could be decoded")
    return {"clips": n, "agreement": same / n, "source_top1": right_src / n, "converted_top1": right_dst / n}
