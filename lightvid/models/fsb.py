"""Fully separable blocks (FSB) and the models built from them.

Wang, Lin and Wang, "Design Light-Weight 3D Convolutional Networks for Video Recognition:
Temporal Residual, Fully Separable Block, and Fast Algorithm", 2019 (seed 002).

An N x C x K x R x S 3D convolution (N outputs, C inputs, kernel K x R x S) becomes two
stages, with ``M = round(alpha * N)``:

* stage one: a temporal convolution, M filters of C x K x 1 x 1;
* stage two: a depthwise spatial convolution (M filters of 1 x 1 x R x S, one per channel),
  then a 1x1x1 pointwise convolution M -> N.

Weights: ``M*C*K + M*R*S + N*M`` (``alpha*N*C*K + alpha*N*R*S + alpha*N^2``) instead of
``N*C*K*R*S``. The three stages are linear with no normalisation or non-linearity between
them (the block replaces one convolution; whatever followed that convolution follows the
block); only the pointwise stage may carry a bias.

Models:

* ``fsb_c3d``: C3D (``lightvid.models.c3d``, same ``C3D_STAGES`` table and head) with every
  3x3x3 convolution after conv1 replaced by an FSB (``alpha`` default 1).
* ``fsb_r3d_18`` / ``fsb_r3d_50``: the video ResNet of ``lightvid.models.resnet3d`` with every
  3x3x3 convolution of the residual stages replaced by an FSB (the stem stays).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from lightvid.models.c3d import C3D
from lightvid.models.registry import register_model


FSB_PAPER = ("Wang, Lin, Wang, Design Light-Weight 3D Convolutional Networks for Video Recognition: "
             "Temporal Residual, Fully Separable Block, and Fast Algorithm, 2019")


def _triple(v) -> tuple[int, int, int]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v, v)


def fsb_width(out_channels: int, alpha: float) -> int:
    """``M = round(alpha * N)``, the width of the temporal and depthwise stages (at least 1)."""
    if alpha <= 0:
        raise ValueError(f"FSB alpha must be > 0, got {alpha}")
    return max(1, int(round(alpha * out_channels)))


def fsb_weight_count(in_channels: int, out_channels: int, kernel_size=3, alpha: float = 1.0) -> int:
    """Seed 002's cost ``alpha*N*C*K + alpha*N*R*S + alpha*N^2`` (weights, no biases), with alpha*N rounded."""
    k, r, s = _triple(kernel_size)
    m = fsb_width(out_channels, alpha)
    return m * in_channels * k + m * r * s + m * out_channels


class FullySeparableConv3d(nn.Module):
    """Drop-in for ``nn.Conv3d(C, N, (K, R, S), stride, padding)``: temporal, depthwise spatial, pointwise.

    The temporal stage takes the temporal stride and padding, the depthwise stage the spatial ones.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1, padding=None,
                 alpha: float = 1.0, bias: bool = True):
        super().__init__()
        k, r, s = _triple(kernel_size)
        st, sh, sw = _triple(stride)
        pt, ph, pw = _triple(padding) if padding is not None else (k // 2, r // 2, s // 2)
        m = fsb_width(out_channels, alpha)
        self.in_channels, self.out_channels, self.alpha, self.width = in_channels, out_channels, alpha, m
        self.temporal = nn.Conv3d(in_channels, m, (k, 1, 1), stride=(st, 1, 1), padding=(pt, 0, 0), bias=False)
        self.spatial = nn.Conv3d(m, m, (1, r, s), stride=(1, sh, sw), padding=(0, ph, pw), groups=m, bias=False)
        self.pointwise = nn.Conv3d(m, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.spatial(self.temporal(x)))  # (B, N, T', H', W')

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, alpha={self.alpha}, width={self.width}"


class FSBC3D(C3D):
    """C3D whose 3x3x3 convolutions after conv1 are fully separable blocks.

    Built as a C3D (same stage table, pools, fc6-fc8 head), then each ``convN`` past conv1
    is swapped for an FSB of the same channels. ``alpha`` sets the FSB width ``alpha*N``.
    """

    def __init__(self, alpha: float = 1.0, **kwargs):
        for key in ("conv_type", "fold_from"):
            if kwargs.get(key) not in (None, "3d"):
                raise ValueError(f"fsb_c3d does not take {key}={kwargs[key]!r}")
        super().__init__(**kwargs)
        self.alpha = alpha
        for name in self.layer_order:
            conv = getattr(self, name)
            if name != "conv1" and isinstance(conv, nn.Conv3d):
                setattr(self, name, FullySeparableConv3d(conv.in_channels, conv.out_channels, conv.kernel_size,
                                                         conv.stride, conv.padding, alpha=alpha))
        self.default_cfg = dict(self.default_cfg, paper=FSB_PAPER)


@register_model
def fsb_c3d(**kwargs):
    """C3D with a fully separable block for every 3x3x3 convolution after conv1."""
    return FSBC3D(**kwargs)
