"""Transforms on uint8 frames ``(T, H, W, 3)``, ending in a normalised float ``(C, T, H, W)``.

Training: short-side resize, random crop, horizontal flip. Testing: short-side resize and a
centre crop, or three crops along the long side (left/centre/right or top/centre/bottom, as
in Feichtenhofer et al., SlowFast, ICCV 2019). Normalisation uses the model's
``default_cfg`` mean and std (on the 0-1 scale). ``input_transform`` (e.g. the temporal
residual gradient of the light-weight models) is applied last, to the normalised clip. A training
``policy`` (``lightvid.train.augment.TemporalRandAugment``) acts on the cropped uint8 clip.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F


def resize_short(x: torch.Tensor, short_side: int) -> torch.Tensor:
    """uint8 ``(T, H, W, 3)`` with its short side resized to ``short_side`` (bilinear, antialiased)."""
    h, w = x.shape[1:3]
    if min(h, w) == short_side:
        return x
    if h <= w:
        size = (short_side, max(1, round(w * short_side / h)))
    else:
        size = (max(1, round(h * short_side / w)), short_side)
    y = F.interpolate(x.permute(0, 3, 1, 2).float(), size=size, mode="bilinear", align_corners=False,
                      antialias=True)  # (T, 3, H', W')
    return y.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def crop(x: torch.Tensor, top: int, left: int, size: int) -> torch.Tensor:
    return x[:, top:top + size, left:left + size]


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    h, w = x.shape[1:3]
    return crop(x, (h - size) // 2, (w - size) // 2, size)


def random_crop(x: torch.Tensor, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    h, w = x.shape[1:3]
    top = int(torch.randint(0, h - size + 1, (1,), generator=generator))
    left = int(torch.randint(0, w - size + 1, (1,), generator=generator))
    return crop(x, top, left, size)


def three_crop(x: torch.Tensor, size: int) -> list[torch.Tensor]:
    """Three ``size`` squares spread along the long side (start, centre, end)."""
    h, w = x.shape[1:3]
    if w >= h:
        top = (h - size) // 2
        return [crop(x, top, left, size) for left in (0, (w - size) // 2, w - size)]
    left = (w - size) // 2
    return [crop(x, top, left, size) for top in (0, (h - size) // 2, h - size)]


def hflip(x: torch.Tensor) -> torch.Tensor:
    return x.flip(2)


def pad(x: torch.Tensor, amount: int) -> torch.Tensor:
    """Zero-pad H and W by ``amount`` on each side (CIFAR-style augmentation)."""
    return F.pad(x, (0, 0, amount, amount, amount, amount)) if amount else x


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 ``(T, H, W, C)`` -> float ``(C, T, H, W)``, ``(x/255 - mean) / std``."""
    c = x.shape[-1]
    mean_t = torch.as_tensor(mean, dtype=torch.float32).view(c, 1, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32).view(c, 1, 1, 1)
    y = x.permute(3, 0, 1, 2).float().div_(255)  # (C, T, H, W)
    return y.sub_(mean_t).div_(std_t)


@dataclass
class ClipTransform:
    """The whole pipeline for one clip; ``__call__`` returns one tensor per crop."""

    size: int
    short_side: int | None
    train: bool
    mean: Sequence[float]
    std: Sequence[float]
    flip: bool = True
    crops: int = 1
    pad: int = 0
    input_transform: Callable | None = None
    policy: Callable | None = None  # training only: uint8 (T, H, W, 3) -> same, e.g. a time-consistent RandAugment

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        if self.short_side and min(x.shape[1:3]) != self.short_side:
            x = resize_short(x, self.short_side)
        if min(x.shape[1:3]) < self.size:
            x = resize_short(x, self.size)
        if self.train:
            x = random_crop(pad(x, self.pad), self.size, generator)
            if self.flip and bool(torch.rand((), generator=generator) < 0.5):
                x = hflip(x)
            if self.policy is not None:
                x = self.policy(x, generator)
            views = [x]
        else:
            views = three_crop(x, self.size) if self.crops == 3 else [center_crop(x, self.size)]
        out = [normalize(v, self.mean, self.std) for v in views]  # each (C, T, H, W)
        if self.input_transform is not None:
            out = [self.input_transform(v) for v in out]
        return out
