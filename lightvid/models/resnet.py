"""2D ResNets for images: ResNet, pre-activation ResNet and ResNeXt.

* He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016
  (``resnet18/34/50/101/152``; basic and bottleneck blocks, projection shortcuts).
* He, Zhang, Ren, Sun, "Identity Mappings in Deep Residual Networks", ECCV 2016
  (``preact_resnet18/34/50``: full pre-activation units BN -> ReLU -> conv, a clean identity
  path, and one BN -> ReLU after the last stage).
* Xie, Girshick, Dollar, Tu, He, "Aggregated Residual Transformations for Deep Neural
  Networks", CVPR 2017 (``resnext50_32x4d``: grouped 3x3 convolutions, cardinality 32).

The state_dict keys are torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer2.0.downsample.0``, ..., ``fc``), so torchvision's ImageNet checkpoints of
resnet18/34/50/101/152 and resnext50_32x4d load strictly. At 3x224x224 with 1000 classes:
resnet18 11,689,512, resnet50 25,557,032, resnext50_32x4d 25,028,904 parameters.

``stem="cifar"`` is the scene-recognition report's ResNet-18 stem for 32x32 images: a 3x3 stride-1
convolution with padding 3 and no max-pool (see :mod:`lightvid.models.cifar`).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from lightvid.models.base import IMAGENET_MEAN, IMAGENET_STD, Classifier, make_cfg, scale_channels
from lightvid.models.registry import register_model

RESNET_PAPER = "He et al., Deep Residual Learning for Image Recognition, CVPR 2016"
PREACT_PAPER = "He et al., Identity Mappings in Deep Residual Networks, ECCV 2016"
RESNEXT_PAPER = "Xie et al., Aggregated Residual Transformations for Deep Neural Networks, CVPR 2017"

# name -> (block, blocks per stage)
RESNET_DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}


def conv3x3(in_ch: int, out_ch: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, groups=groups, bias=False)


def conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)


def _check_basic(groups: int, base_width: int) -> None:
    if groups != 1 or base_width != 64:
        raise ValueError("the basic block supports only groups=1 and base_width=64 (use a bottleneck)")


def bottleneck_width(planes: int, groups: int, base_width: int) -> int:
    """Channels of a bottleneck's grouped 3x3: ``groups`` x ``planes * base_width / 64`` (ResNeXt's ``C x d``)."""
    return max(1, int(planes * (base_width / 64.0))) * groups


class BasicBlock(nn.Module):
    """Two 3x3 convolutions; ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``."""

    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64):
        super().__init__()
        _check_basic(groups, base_width)
        self.conv1 = conv3x3(in_ch, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (grouped for ResNeXt, stride here as torchvision's "v1.5"), 1x1 expand x4."""

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64):
        super().__init__()
        width = bottleneck_width(planes, groups, base_width)
        self.conv1 = conv1x1(in_ch, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class PreActBasicBlock(nn.Module):
    """Full pre-activation unit (Fig. 4e): ``x + conv2(relu(bn2(conv1(relu(bn1(x))))))``.

    A projection shortcut (stride or width change) takes the pre-activated input, as in
    the authors' code, so the identity path itself carries no BN or ReLU.
    """

    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64):
        super().__init__()
        _check_basic(groups, base_width)
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.relu = nn.ReLU(inplace=False)  # the raw input stays the identity path
        self.conv1 = conv3x3(in_ch, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu(self.bn1(x))
        identity = x if self.downsample is None else self.downsample(pre)
        out = self.conv1(pre)
        out = self.conv2(self.relu(self.bn2(out)))
        return out + identity


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck: BN-ReLU-1x1, BN-ReLU-3x3, BN-ReLU-1x1, plus the identity."""

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64):
        super().__init__()
        width = bottleneck_width(planes, groups, base_width)
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = conv1x1(in_ch, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride, groups)
        self.bn3 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.relu = nn.ReLU(inplace=False)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu(self.bn1(x))
        identity = x if self.downsample is None else self.downsample(pre)
        out = self.conv1(pre)
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        return out + identity


BLOCKS = {
    ("basic", False): BasicBlock,
    ("bottleneck", False): Bottleneck,
    ("basic", True): PreActBasicBlock,
    ("bottleneck", True): PreActBottleneck,
}


class ResNet(Classifier):
    """ResNet / pre-activation ResNet / ResNeXt for ``(B, C, H, W)`` images.

    Args:
        block: ``"basic"`` or ``"bottleneck"``.
        layers: blocks per stage (four stages of 64, 128, 256, 512 planes).
        preact: full pre-activation units (and a final BN-ReLU, ``bn_final``).
        groups, width_per_group: ResNeXt cardinality and bottleneck width per group.
        stem: ``"imagenet"`` (7x7/2 conv + 3x3/2 max-pool) or ``"cifar"`` (3x3/1 conv with
            padding 3, no max-pool: the scene-recognition report's ResNet-18).
        zero_init_residual: zero the last BN of each residual branch (post-activation only).
        width_mult: multiplies every stage's planes and the stem.
    """

    def __init__(self, block: str = "basic", layers=(2, 2, 2, 2), num_classes: int = 1000, in_chans: int = 3,
                 preact: bool = False, groups: int = 1, width_per_group: int = 64, stem: str = "imagenet",
                 width_mult: float = 1.0, drop_rate: float = 0.0, zero_init_residual: bool = False,
                 img_size: int = 224, paper: str = RESNET_PAPER, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        if (block, preact) not in BLOCKS:
            raise ValueError(f"block must be 'basic' or 'bottleneck', got {block!r}")
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")
        if len(layers) != 4 or min(layers) < 1:
            raise ValueError(f"layers must be four positive block counts, got {layers!r}")
        block_cls = BLOCKS[(block, preact)]
        self.preact = preact
        self.groups, self.base_width = groups, width_per_group
        stem_ch = scale_channels(64, width_mult)
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_chans, stem_ch, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        else:  # the scene-recognition report: Conv2d(3, 64, 3, stride=1, padding=3), maxpool = Identity()
            self.conv1 = nn.Conv2d(in_chans, stem_ch, 3, stride=1, padding=3, bias=False)
            self.maxpool = nn.Identity()
        # conv-BN-ReLU(-max-pool) stem in both variants, as in the authors' pre-activation code
        self.bn1 = nn.BatchNorm2d(stem_ch)
        self.relu = nn.ReLU(inplace=True)
        self.in_ch = stem_ch
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            stage = self._make_layer(block_cls, scale_channels(planes, width_mult), n, stride=1 if i == 0 else 2)
            setattr(self, f"layer{i + 1}", stage)
        if preact:
            self.bn_final = nn.BatchNorm2d(self.in_ch)
            self.relu_final = nn.ReLU(inplace=True)
        self.init_head(self.in_ch, num_classes, drop_rate, video=False)
        self._init_weights(zero_init_residual)
        self.default_cfg = make_cfg((in_chans, img_size, img_size), paper, mean, std,
                                    test_input_size=(in_chans, 32, 32) if stem == "cifar" else (in_chans, 64, 64))

    def _make_layer(self, block_cls, planes: int, blocks: int, stride: int) -> nn.Sequential:
        out_ch = planes * block_cls.expansion
        downsample = None
        if stride != 1 or self.in_ch != out_ch:
            if self.preact:  # the projection sees the pre-activated input; no BN after it
                downsample = nn.Sequential(conv1x1(self.in_ch, out_ch, stride))
            else:
                downsample = nn.Sequential(conv1x1(self.in_ch, out_ch, stride), nn.BatchNorm2d(out_ch))
        layers = [block_cls(self.in_ch, planes, stride, downsample, self.groups, self.base_width)]
        self.in_ch = out_ch
        layers += [block_cls(out_ch, planes, 1, None, self.groups, self.base_width) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual and not self.preact:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        if self.preact:
            x = self.relu_final(self.bn_final(x))
        return x  # (B, C, H/32, W/32) with the ImageNet stem


def _resnet(depth: int, **kwargs) -> ResNet:
    block, layers = RESNET_DEPTHS[depth]
    return ResNet(block, layers, **kwargs)


@register_model
def resnet18(**kwargs):
    return _resnet(18, **kwargs)


@register_model
def resnet34(**kwargs):
    return _resnet(34, **kwargs)


@register_model
def resnet50(**kwargs):
    return _resnet(50, **kwargs)


@register_model
def resnet101(**kwargs):
    return _resnet(101, **kwargs)


@register_model
def resnet152(**kwargs):
    return _resnet(152, **kwargs)


@register_model
def preact_resnet18(**kwargs):
    return _resnet(18, preact=True, paper=PREACT_PAPER, **kwargs)


@register_model
def preact_resnet34(**kwargs):
    return _resnet(34, preact=True, paper=PREACT_PAPER, **kwargs)


@register_model
def preact_resnet50(**kwargs):
    return _resnet(50, preact=True, paper=PREACT_PAPER, **kwargs)


@register_model
def resnext50_32x4d(**kwargs):
    return _resnet(50, groups=32, width_per_group=4, paper=RESNEXT_PAPER, **kwargs)
