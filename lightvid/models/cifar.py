"""The scene-recognition report's CIFAR-10 models, exactly as its report prints them (3x32x32 input, 10 classes).

* ``googlenet_cifar`` ("myNet"): GoogLeNet (Szegedy et al., "Going Deeper with
  Convolutions", CVPR 2015) adapted to 32x32: one 3x3 convolution (with bias) to 192
  channels + BN + ReLU as the stem, inception 3a-5b with BN'd convolutions (eps 1e-3, no
  bias), branch 3 a 1x1 reduce followed by *two* 3x3 convolutions (instead of one 5x5),
  3x3/2 max-pools after 3b and 4e only, AvgPool2d(8), dropout 0.2, linear 1024->10:
  6,158,538 parameters.
* ``resnet18_cifar``: torchvision's ResNet-18 (He et al., CVPR 2016) with the stem replaced
  by a 3x3 stride-1 convolution of padding 3 (so 32x32 becomes 36x36) and the max-pool
  by an identity: 11,173,962 parameters. Its keys are torchvision's; the seed's wrapper
  prefixed them with ``resnet.``.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from lightvid.models.base import Classifier, init_weights, make_cfg, make_head, scale_channels
from lightvid.models.registry import register_model
from lightvid.models.resnet import RESNET_PAPER, ResNet

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
GOOGLENET_PAPER = ("Szegedy et al., Going Deeper with Convolutions, CVPR 2015 "
                   "(the scene-recognition report's CIFAR-10 'myNet')")

# name -> (#1x1, #3x3 reduce, #3x3, #double-3x3 reduce, #double-3x3, pool proj); None = a 3x3/2 max-pool
MYNET_LAYOUT = (
    ("inception_3a", (64, 96, 128, 16, 32, 32)),
    ("inception_3b", (128, 128, 192, 32, 96, 64)),
    ("maxpool_3", None),
    ("inception_4a", (192, 96, 208, 16, 48, 64)),
    ("inception_4b", (160, 112, 224, 24, 64, 64)),
    ("inception_4c", (128, 128, 256, 24, 64, 64)),
    ("inception_4d", (112, 144, 288, 32, 64, 64)),
    ("inception_4e", (256, 160, 320, 32, 128, 128)),
    ("maxpool_4", None),
    ("inception_5a", (256, 160, 320, 32, 128, 128)),
    ("inception_5b", (384, 192, 384, 48, 128, 128)),
)


class BasicConv2d(nn.Module):
    """Conv (no bias) -> BatchNorm (eps 1e-3) -> ReLU (functional, so not printed by the seed)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_ch, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)))


class InceptionCifar(nn.Module):
    """Four branches concatenated: 1x1 | 1x1-3x3 | 1x1-3x3-3x3 | 3x3/1 max-pool-1x1."""

    def __init__(self, in_ch: int, c1: int, c3r: int, c3: int, cdr: int, cd: int, pool_proj: int):
        super().__init__()
        self.branch1 = BasicConv2d(in_ch, c1, 1)
        self.branch2 = nn.Sequential(BasicConv2d(in_ch, c3r, 1), BasicConv2d(c3r, c3, 3))
        self.branch3 = nn.Sequential(BasicConv2d(in_ch, cdr, 1), BasicConv2d(cdr, cd, 3), BasicConv2d(cd, cd, 3))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), BasicConv2d(in_ch, pool_proj, 1))
        self.out_channels = c1 + c3 + cd + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x))
        return torch.cat(branches, 1)  # (B, c1 + c3 + cd + pool_proj, H, W)


class GoogLeNetCifar(Classifier):
    """The scene-recognition report's "myNet" (see the module docstring); ``width_mult`` scales every width."""

    def __init__(self, num_classes: int = 10, in_chans: int = 3, width_mult: float = 1.0, drop_rate: float = 0.2,
                 img_size: int = 32):
        super().__init__()
        stem = scale_channels(192, width_mult)
        self.conv = nn.Sequential(nn.Conv2d(in_chans, stem, 3, padding=1), nn.BatchNorm2d(stem), nn.ReLU(inplace=True))
        ch = stem
        self.layer_order = []
        for name, widths in MYNET_LAYOUT:
            if widths is None:
                module = nn.MaxPool2d(3, stride=2, padding=1)
            else:
                module = InceptionCifar(ch, *(scale_channels(w, width_mult) for w in widths))
                ch = module.out_channels
            setattr(self, name, module)
            self.layer_order.append(name)
        self.avgpool = nn.AvgPool2d(8, stride=1)
        self.dropout = nn.Dropout(drop_rate)
        self.num_features = ch
        self.num_classes = num_classes
        self.fc = make_head(ch, num_classes)
        init_weights(self)
        self.default_cfg = make_cfg((in_chans, img_size, img_size), GOOGLENET_PAPER, CIFAR10_MEAN, CIFAR10_STD,
                                    test_input_size=(in_chans, 32, 32))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        for name in self.layer_order:
            x = getattr(self, name)(x)
        return x  # (B, 1024, H/4, W/4): 8x8 at 32x32

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        # AvgPool2d(8) is the global average at 32x32; larger inputs average its windows
        x = self.avgpool(x).mean((2, 3))  # (B, 1024)
        x = self.dropout(x)
        return x if pre_logits else self.fc(x)


@register_model
def googlenet_cifar(**kwargs):
    return GoogLeNetCifar(**kwargs)


@register_model
def resnet18_cifar(**kwargs):
    kwargs.setdefault("num_classes", 10)
    return ResNet("basic", (2, 2, 2, 2), stem="cifar", img_size=32, mean=CIFAR10_MEAN, std=CIFAR10_STD,
                  paper=RESNET_PAPER + " (the scene-recognition report's CIFAR-10 stem)", **kwargs)
