"""Fully convolutional networks for semantic segmentation.

Long, Shelhamer, Darrell, "Fully Convolutional Networks for Semantic Segmentation", CVPR 2015.
A classifier becomes fully convolutional (its final linear layer is the equivalent 1x1 convolution,
:func:`~lightvid.models.features.linear_to_conv1x1`), so sliding it over a larger input gives a
coarse map of class scores; learnable up-convolutions (transposed convolutions initialised to
bilinear interpolation) bring it back to the input resolution, coarse to fine. FCN-8s fuses the
stride-32 scores with 1x1 score layers on the stride-16 and stride-8 feature maps (zero-initialised)
before the final 8x up-convolution; ``strides`` chooses the skips (``(32,)`` is FCN-32s,
``(16, 32)`` FCN-16s, ``(4, 8, 16, 32)`` adds a stride-4 skip). A video backbone's maps are averaged
over time: the output segments the clip's key frame.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from lightvid.models.features import FeatureTaps, linear_to_conv1x1, spatial_map


def bilinear_kernel(channels: int, kernel_size: int) -> torch.Tensor:
    """``(C, C, k, k)`` weights of a per-channel bilinear up-sampling transposed convolution."""
    factor = (kernel_size + 1) // 2
    centre = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float32)
    filt = 1 - (og - centre).abs() / factor
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    weight[range(channels), range(channels)] = filt[:, None] * filt[None, :]
    return weight


def up_convolution(channels: int, factor: int) -> nn.ConvTranspose2d:
    """A learnable ``factor`` x up-sampling, initialised to bilinear interpolation."""
    up = nn.ConvTranspose2d(channels, channels, 2 * factor, stride=factor, padding=factor // 2, bias=False)
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(channels, 2 * factor))
    return up


class FCN(nn.Module):
    """``forward(images)`` -> per-pixel class scores ``(B, num_classes, H, W)``."""

    def __init__(self, backbone: nn.Module, num_classes: int, strides=(8, 16, 32)):
        super().__init__()
        strides = tuple(sorted(int(s) for s in strides))
        self.taps = FeatureTaps(backbone, strides)
        self.strides = strides
        deepest = self.taps.channels[-1]
        fc = getattr(backbone, "fc", None)
        if isinstance(fc, nn.Linear) and fc.in_features == deepest and fc.out_features == num_classes \
                and strides[-1] == max(self.taps.strides):
            score = linear_to_conv1x1(fc)  # the classifier, made fully convolutional
        else:
            score = nn.Conv2d(deepest, num_classes, 1)
        skips = [nn.Conv2d(c, num_classes, 1) for c in self.taps.channels[:-1]]
        for s in skips:  # FCN-8s: new score layers start at zero, so training starts from the coarser net
            nn.init.zeros_(s.weight)
            nn.init.zeros_(s.bias)
        self.score = nn.ModuleList([*skips, score])  # finest ... coarsest
        self.up = nn.ModuleList([up_convolution(num_classes, strides[i + 1] // strides[i])
                                 for i in range(len(strides) - 1)])
        self.up_final = up_convolution(num_classes, strides[0])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        feats = [spatial_map(f) for f in self.taps(images)]  # finest ... coarsest, (B, C_i, H/s_i, W/s_i)
        x = self.score[-1](feats[-1])
        for i in range(len(feats) - 2, -1, -1):  # coarse to fine
            skip = self.score[i](feats[i])
            x = self.up[i](x)
            if x.shape[-2:] != skip.shape[-2:]:
                x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = x + skip
        x = self.up_final(x)
        if x.shape[-2:] != images.shape[-2:]:
            x = F.interpolate(x, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return x  # (B, num_classes, H, W)
