"""Fully separable blocks (FSB) and the models built from them.

Wang, Lin and Wang, "Design Light-Weight 3D Convolutional Networks for Video Recognition:
Temporal Residual, Fully Separable Block, and Fast Algorithm", 2019 (the light-weight 3D networks review).

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
from torch.nn.modules.utils import _triple

from lightvid.models.c3d import C3D
from lightvid.models.registry import register_model
from lightvid.models.resnet3d import VideoResNet

FSB_PAPER = ("Wang, Lin, Wang, Design Light-Weight 3D Convolutional Networks for Video Recognition: "
             "Temporal Residual, Fully Separable Block, and Fast Algorithm, 2019")


def fsb_width(out_channels: int, alpha: float) -> int:
    """``M = round(alpha * N)``, the width of the temporal and depthwise stages (at least 1)."""
    if alpha <= 0:
        raise ValueError(f"FSB alpha must be > 0, got {alpha}")
    return max(1, int(round(alpha * out_channels)))


def fsb_weight_count(in_channels: int, out_channels: int, kernel_size=3, alpha: float = 1.0) -> int:
    """The light-weight 3D networks review's cost ``alpha*N*C*K + alpha*N*R*S + alpha*N^2`` (weights, no biases),
    with alpha*N rounded."""
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
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Variance-preserving init of the three linear stages, as one Kaiming-initialised conv.

        The temporal and depthwise stages keep the signal's variance (std ``1/sqrt(fan_in)``,
        fan_in ``C*K`` and ``R*S``); the pointwise stage, which a ReLU follows, gets Kaiming's
        ``sqrt(2/fan_in)``. PyTorch's default init shrinks the variance about 3x per stage
        (``1/(3 fan_in)``), 27x per block: a stack of blocks without batch norm (fsb_c3d)
        then starts with vanishing activations and does not learn.
        """
        nn.init.kaiming_normal_(self.temporal.weight, mode="fan_in", nonlinearity="linear")
        nn.init.kaiming_normal_(self.spatial.weight, mode="fan_in", nonlinearity="linear")
        nn.init.kaiming_normal_(self.pointwise.weight, mode="fan_in", nonlinearity="relu")
        if self.pointwise.bias is not None:
            nn.init.zeros_(self.pointwise.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.spatial(self.temporal(x)))  # (B, N, T', H', W')

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, alpha={self.alpha}, width={self.width}"


def fully_separate(module: nn.Module, alpha: float = 1.0, skip: tuple[str, ...] = ()) -> int:
    """Replace, in place, every dense 3D convolution of ``module`` whose kernel is > 1 along T, H
    and W by an FSB with the same channels, kernel, stride, padding and bias; returns how many.

    Convolutions named in ``skip`` or inside a module named there (``"conv1"``, ``"stem"``) are kept. 1x1x1,
    1xkxk, kx1x1 and grouped convolutions are not 3D convolutions in the FSB sense and stay.
    """
    targets = [(name, m) for name, m in module.named_modules()
               if isinstance(m, nn.Conv3d) and m.groups == 1 and min(m.kernel_size) > 1
               and not any(name == k or name.startswith(k + ".") for k in skip)]
    for name, conv in targets:
        if conv.dilation != (1, 1, 1) or conv.padding_mode != "zeros":
            raise ValueError(f"{name}: a fully separable block replaces only undilated zero-padded convolutions")
        fsb = FullySeparableConv3d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                                   conv.padding, alpha=alpha, bias=conv.bias is not None)
        parent_name, _, child = name.rpartition(".")
        setattr(module.get_submodule(parent_name) if parent_name else module, child, fsb)
    return len(targets)


def _with_fsb(model: nn.Module, alpha: float, skip: tuple[str, ...]) -> nn.Module:
    """Make ``model`` fully separable (each block initialised by its own ``reset_parameters``)."""
    if fully_separate(model, alpha, skip) == 0:
        raise ValueError(f"{type(model).__name__} has no 3D convolution to make fully separable")
    model.fsb_alpha = alpha
    model.default_cfg = dict(model.default_cfg, paper=FSB_PAPER, fsb_alpha=alpha)
    return model


@register_model
def fsb_c3d(alpha: float = 1.0, **kwargs):
    """C3D with a fully separable block for every 3x3x3 convolution after conv1."""
    return _with_fsb(C3D(**kwargs), alpha, skip=("conv1",))


@register_model
def fsb_r3d_18(alpha: float = 1.0, **kwargs):
    """R3D-18 with a fully separable block for every 3x3x3 convolution of its four stages."""
    return _with_fsb(VideoResNet(18, **kwargs), alpha, skip=("stem",))


@register_model
def fsb_r3d_50(alpha: float = 1.0, **kwargs):
    """R3D-50 (bottleneck) with a fully separable block for every 3x3x3 convolution of its stages."""
    return _with_fsb(VideoResNet(50, **kwargs), alpha, skip=("stem",))
