"""Highway networks for images.

Srivastava, Greff, Schmidhuber, "Training Very Deep Networks", NeurIPS 2015 (and
"Highway Networks", arXiv:1505.00387): every highway layer computes

    y = H(x) * T(x) + x * (1 - T(x)),   T(x) = sigmoid(W_T x + b_T)

a learned transform gate ``T`` mixing the transformation ``H`` (here ReLU(conv) or
ReLU(linear)) with the carried input. ``b_T`` starts negative (the paper uses -1 to -3) so
the layers begin close to the identity and very deep stacks still train.

* ``highway_cifar``: a convolutional highway network for 32x32 images: a plain 3x3
  convolution at the start of each of three stages (32, 64, 128 channels), five 3x3 highway
  layers per stage, 2x2 max-pools between stages, global average pool, linear
  (19 weight layers; our own layout, not the paper's exact CIFAR network).
* ``highway_mlp``: a fully connected highway network on the flattened image (a linear
  projection to 71 units, then 9 highway layers), the paper's MNIST setting in spirit.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from lightvid.models.base import Classifier, init_weights, make_cfg, scale_channels
from lightvid.models.registry import register_model

HIGHWAY_PAPER = "Srivastava, Greff & Schmidhuber, Training Very Deep Networks, NeurIPS 2015"
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


class HighwayConv2d(nn.Module):
    """``y = relu(conv_h(x)) * t + x * (1 - t)`` with ``t = sigmoid(conv_t(x))``; channels unchanged."""

    def __init__(self, channels: int, kernel_size: int = 3, gate_bias: float = -2.0, norm: bool = False):
        super().__init__()
        pad = kernel_size // 2
        self.conv_h = nn.Conv2d(channels, channels, kernel_size, padding=pad, bias=not norm)
        self.norm_h = nn.BatchNorm2d(channels) if norm else nn.Identity()
        self.conv_t = nn.Conv2d(channels, channels, kernel_size, padding=pad)
        self.gate_bias = gate_bias

    def reset_gate(self) -> None:
        nn.init.constant_(self.conv_t.bias, self.gate_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.norm_h(self.conv_h(x)))
        t = torch.sigmoid(self.conv_t(x))
        return h * t + x * (1 - t)  # (B, C, H, W)


class HighwayLinear(nn.Module):
    """``y = relu(W_H x) * t + x * (1 - t)`` with ``t = sigmoid(W_T x + b_T)``; width unchanged."""

    def __init__(self, width: int, gate_bias: float = -2.0):
        super().__init__()
        self.h = nn.Linear(width, width)
        self.t = nn.Linear(width, width)
        self.gate_bias = gate_bias

    def reset_gate(self) -> None:
        nn.init.constant_(self.t.bias, self.gate_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.sigmoid(self.t(x))
        return torch.relu(self.h(x)) * t + x * (1 - t)  # (B, D)


def _reset_gates(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, (HighwayConv2d, HighwayLinear)):
            m.reset_gate()


class HighwayNet(Classifier):
    """Convolutional highway network: per stage a plain 3x3 conv, ``depth`` highway layers, a max-pool.

    Args:
        widths, depths: channels and number of highway layers of each stage.
        gate_bias: initial transform-gate bias ``b_T`` (negative: start near the identity).
        norm: batch norm inside ``H`` (the paper has none).
        width_mult: multiplies every stage's channels.
    """

    def __init__(self, widths=(32, 64, 128), depths=(5, 5, 5), num_classes: int = 10, in_chans: int = 3,
                 gate_bias: float = -2.0, norm: bool = False, width_mult: float = 1.0, drop_rate: float = 0.0,
                 img_size: int = 32):
        super().__init__()
        if len(widths) != len(depths) or not widths or min(depths) < 0:
            raise ValueError(f"widths and depths must be equally long, non-empty lists, got {widths!r}, {depths!r}")
        stages, in_ch = [], in_chans
        for i, (width, depth) in enumerate(zip(widths, depths)):
            ch = scale_channels(width, width_mult)
            layers = [nn.Conv2d(in_ch, ch, 3, padding=1), nn.ReLU(inplace=True)]
            layers += [HighwayConv2d(ch, 3, gate_bias, norm) for _ in range(depth)]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2, stride=2))
            stages.append(nn.Sequential(*layers))
            in_ch = ch
        self.stages = nn.Sequential(*stages)
        self.init_head(in_ch, num_classes, drop_rate, video=False)
        init_weights(self)
        _reset_gates(self)
        self.default_cfg = make_cfg((in_chans, img_size, img_size), HIGHWAY_PAPER, CIFAR10_MEAN, CIFAR10_STD,
                                    test_input_size=(in_chans, 32, 32))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x)  # (B, C, H/4, W/4) with three stages


class HighwayMLP(Classifier):
    """Fully connected highway network on the flattened image: linear projection, ``depth`` highway layers."""

    def __init__(self, width: int = 71, depth: int = 9, num_classes: int = 10, in_chans: int = 3,
                 img_size: int = 32, gate_bias: float = -2.0, width_mult: float = 1.0, drop_rate: float = 0.0):
        super().__init__()
        self.img_size = img_size
        w = scale_channels(width, width_mult)
        self.proj = nn.Linear(in_chans * img_size * img_size, w)
        self.layers = nn.Sequential(*[HighwayLinear(w, gate_bias) for _ in range(depth)])
        self.init_head(w, num_classes, drop_rate, video=False)
        self.global_pool = nn.Identity()  # features are already a vector
        init_weights(self)
        _reset_gates(self)
        self.default_cfg = make_cfg((in_chans, img_size, img_size), HIGHWAY_PAPER, CIFAR10_MEAN, CIFAR10_STD,
                                    test_input_size=(in_chans, img_size, img_size))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.img_size, self.img_size):
            raise ValueError(f"highway_mlp was built for {self.img_size}x{self.img_size} images, "
                             f"got {x.shape[-2]}x{x.shape[-1]} (set img_size)")
        x = torch.relu(self.proj(x.flatten(1)))  # (B, width)
        return self.layers(x)  # (B, width)


@register_model
def highway_cifar(**kwargs):
    return HighwayNet(**kwargs)


@register_model
def highway_mlp(**kwargs):
    return HighwayMLP(**kwargs)
