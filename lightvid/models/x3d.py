"""X3D: efficient video networks expanded from a tiny 2D base along time, space, width and depth.

Feichtenhofer, "X3D: Expanding Architectures for Efficient Video Recognition", CVPR 2020,
in the layout of the SlowFast / pytorchvideo reference (written here from the paper's
Table 1 and those projects' published figures, not copied):

* stem ("conv1"): a 1x3x3 convolution 3->24 with spatial stride 2, then a 5x1x1 depthwise
  temporal convolution (a channel-wise (2+1)D stem), batch norm, ReLU;
* four res stages (res2-res5) of bottleneck blocks, widths 24, 48, 96, 192 (base 12, 24,
  48, 96 x width factor 2), depths 3, 5, 11, 7 (1, 2, 5, 3 x depth factor 2.2, rounded up);
  each block is 1x1x1 (d -> 2.25 d) -> BN -> ReLU -> 3x3x3 depthwise (spatial stride 2 in a
  stage's first block) -> BN -> squeeze-excitation (every other block, the 1st, 3rd, ...,
  reduction 1/16 rounded to a multiple of 8) -> swish (``nn.SiLU``) -> 1x1x1 (2.25 d -> d)
  -> BN, plus the identity (or a strided 1x1x1 projection + BN), then ReLU;
* "conv5": 1x1x1 192 -> 432 (2.25 x 192), BN, ReLU (here the end of ``forward_features``);
* head: global average pooling, a bias-free linear 432 -> 2048 ("lin5"), ReLU, dropout 0.5,
  and the classifier. ``num_features`` is 2048.

``x3d_xs``, ``x3d_s`` and ``x3d_m`` are one network (3.79M parameters with 400 classes) at
the inputs the paper expands to: 4x160x160, 13x160x160 and 16x224x224. Their MACs there,
0.605, 1.963 and 4.732 G, are the SlowFast model zoo's "FLOPs" 0.60, 1.96 and 4.73 (fvcore
counts one multiply-add as one flop; tests/test_x3d.py checks them, docs/light3d.md explains
the rounding and the pytorchvideo zoo's 0.91 / 2.96 / 6.72 G at the larger test crops).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from lightvid.models.base import Classifier, make_cfg, make_head
from lightvid.models.registry import register_model

X3D_PAPER = "Feichtenhofer, X3D: Expanding Architectures for Efficient Video Recognition, CVPR 2020"
X3D_BASE_WIDTHS = (12, 24, 48, 96)  # res2-res5 before the width factor (X3D-XS/S/M/L share them)
X3D_BASE_DEPTHS = (1, 2, 5, 3)  # res2-res5 before the depth factor


def round_width(width: float, multiplier: float, divisor: int = 8, min_width: int = 8) -> int:
    """``width * multiplier`` to the nearest multiple of ``divisor``, never under 90% of it (X3D's rule)."""
    width = width * multiplier
    out = max(min_width, int(width + divisor / 2) // divisor * divisor)
    if out < 0.9 * width:
        out += divisor
    return int(out)


def round_repeats(repeats: int, multiplier: float) -> int:
    return int(math.ceil(repeats * multiplier))


class SqueezeExcite3d(nn.Module):
    """Squeeze-excitation (Hu et al. 2018): global pool, 1x1x1 C->r, ReLU, 1x1x1 r->C, sigmoid gate."""

    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc1 = nn.Conv3d(channels, reduced, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv3d(reduced, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.gate(self.fc2(self.relu(self.fc1(self.pool(x)))))  # (B, C, 1, 1, 1)
        return x * s


class X3DBlock(nn.Module):
    """Bottleneck: 1x1x1 expand, 3x3x3 depthwise (+SE), swish, 1x1x1 project; residual, ReLU."""

    def __init__(self, dim_in: int, dim_inner: int, dim_out: int, stride: int, se_ratio: float):
        super().__init__()
        self.conv_a = nn.Conv3d(dim_in, dim_inner, 1, bias=False)
        self.bn_a = nn.BatchNorm3d(dim_inner)
        self.conv_b = nn.Conv3d(dim_inner, dim_inner, 3, stride=(1, stride, stride), padding=1,
                                groups=dim_inner, bias=False)
        self.bn_b = nn.BatchNorm3d(dim_inner)
        self.se = SqueezeExcite3d(dim_inner, round_width(dim_inner, se_ratio)) if se_ratio > 0 else nn.Identity()
        self.swish = nn.SiLU(inplace=True)
        self.conv_c = nn.Conv3d(dim_inner, dim_out, 1, bias=False)
        self.bn_c = nn.BatchNorm3d(dim_out)
        self.bn_c.is_last_bn = True  # zero-initialised: each block starts as the identity
        self.relu = nn.ReLU(inplace=True)
        if dim_in != dim_out or stride != 1:
            self.proj = nn.Sequential(nn.Conv3d(dim_in, dim_out, 1, stride=(1, stride, stride), bias=False),
                                      nn.BatchNorm3d(dim_out))
        else:
            self.proj = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn_a(self.conv_a(x)))
        y = self.swish(self.se(self.bn_b(self.conv_b(y))))
        y = self.bn_c(self.conv_c(y))
        return self.relu(y + (x if self.proj is None else self.proj(x)))


class X3D(Classifier):
    """X3D network; the size variants differ only in their input (``num_frames``, ``img_size``).

    Args:
        width_factor / depth_factor / bottleneck_factor: X3D's expansion factors (2, 2.2, 2.25).
        width_mult: lightvid's extra channel multiplier on top (rounded to multiples of 8).
        head_width: the 1x1x1 "lin5" projection before the classifier (2048).
    """

    head_names = ("lin5", "fc")

    def __init__(self, num_classes: int = 400, in_chans: int = 3, num_frames: int = 16, img_size: int = 224,
                 width_factor: float = 2.0, depth_factor: float = 2.2, bottleneck_factor: float = 2.25,
                 se_ratio: float = 0.0625, head_width: int = 2048, drop_rate: float = 0.5,
                 width_mult: float = 1.0, stem_kernel_t: int = 5, test_input_size=None):
        super().__init__()
        w = width_factor * width_mult
        stem_out = round_width(X3D_BASE_WIDTHS[0], w)
        self.stem_xy = nn.Conv3d(in_chans, stem_out, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), bias=False)
        self.stem_t = nn.Conv3d(stem_out, stem_out, (stem_kernel_t, 1, 1), padding=(stem_kernel_t // 2, 0, 0),
                                groups=stem_out, bias=False)
        self.stem_bn = nn.BatchNorm3d(stem_out)
        self.stem_relu = nn.ReLU(inplace=True)
        dim_in = stem_out
        self.stage_names = []
        for i, (base, depth) in enumerate(zip(X3D_BASE_WIDTHS, X3D_BASE_DEPTHS)):
            dim_out = round_width(base, w)
            dim_inner = int(bottleneck_factor * dim_out)
            blocks = [X3DBlock(dim_in if b == 0 else dim_out, dim_inner, dim_out, 2 if b == 0 else 1,
                               se_ratio if b % 2 == 0 else 0.0)
                      for b in range(round_repeats(depth, depth_factor))]
            name = f"res{i + 2}"
            setattr(self, name, nn.Sequential(*blocks))
            self.stage_names.append(name)
            dim_in = dim_out
        self.conv5 = nn.Conv3d(dim_in, dim_inner, 1, bias=False)
        self.conv5_bn = nn.BatchNorm3d(dim_inner)
        self.conv5_relu = nn.ReLU(inplace=True)
        self.global_pool = nn.AdaptiveAvgPool3d(1)
        self.num_features = round_width(head_width, width_mult) if width_mult != 1.0 else head_width
        self.lin5 = nn.Linear(dim_inner, self.num_features, bias=False)
        self.lin5_relu = nn.ReLU(inplace=True)
        self.head_drop = nn.Dropout(drop_rate)
        self.num_classes = num_classes
        self.fc = make_head(self.num_features, num_classes)
        self._init_weights()
        self.default_cfg = make_cfg((in_chans, num_frames, img_size, img_size), X3D_PAPER,
                                    test_input_size=test_input_size or (in_chans, 4, 32, 32))

    def _init_weights(self) -> None:
        """Kaiming convolutions and linears, unit BNs except the zeroed last BN of each block."""
        for m in self.modules():
            if isinstance(m, (nn.Conv3d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.constant_(m.weight, 0.0 if getattr(m, "is_last_bn", False) else 1.0)
                nn.init.zeros_(m.bias)
        if isinstance(self.fc, nn.Linear):
            nn.init.normal_(self.fc.weight, 0, 0.01)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_relu(self.stem_bn(self.stem_t(self.stem_xy(x))))  # (B, 24, T, H/2, W/2)
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return self.conv5_relu(self.conv5_bn(self.conv5(x)))  # (B, 432, T, H/32, W/32)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x).flatten(1)  # (B, 432)
        x = self.head_drop(self.lin5_relu(self.lin5(x)))  # (B, 2048)
        return x if pre_logits else self.fc(x)


@register_model
def x3d_xs(**kwargs):
    """X3D-XS: 4 frames (sampling stride 12) at 160x160."""
    return X3D(**{"num_frames": 4, "img_size": 160, **kwargs})


@register_model
def x3d_s(**kwargs):
    """X3D-S: 13 frames (sampling stride 6) at 160x160."""
    return X3D(**{"num_frames": 13, "img_size": 160, **kwargs})


@register_model
def x3d_m(**kwargs):
    """X3D-M: 16 frames (sampling stride 5) at 224x224."""
    return X3D(**{"num_frames": 16, "img_size": 224, **kwargs})
