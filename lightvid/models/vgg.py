"""VGG configurations A, A-LRN, B, C, D and E.

Simonyan and Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015 (Table 1): stacks of 3x3 convolutions (stride 1, padding 1) with
ReLU, 2x2/2 max-pools between five stages of 64, 128, 256, 512, 512 channels, then
FC-4096, FC-4096, FC-1000. A-LRN adds local response normalisation after the first
layer; C adds a 1x1 convolution ("conv1-256/512") as the third layer of stages 3-5, D
a third 3x3, E a third and fourth 3x3.

At 3x224x224 with 1000 classes: A 132,863,336, B 133,047,848, C 133,638,952,
D 138,357,544, E 143,667,240 parameters (the paper's 133/133/134/138/144 M). The
``_bn`` variants put a batch norm after every convolution. The state_dict keys are
torchvision's (``features.<i>``, ``classifier.0/3/6``), so its vgg checkpoints load.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from lightvid.models.base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Classifier,
    init_weights,
    make_cfg,
    make_head,
    scale_channels,
)
from lightvid.models.registry import register_model

VGG_PAPER = "Simonyan & Zisserman, Very Deep Convolutional Networks for Large-Scale Image Recognition, ICLR 2015"
VGG_WIDTHS = (64, 128, 256, 512, 512)

# configuration -> per stage, its layers: 3 (conv3), 1 (conv1) or "lrn"
VGG_CONFIGS = {
    "A": ((3,), (3,), (3, 3), (3, 3), (3, 3)),
    "A-LRN": ((3, "lrn"), (3,), (3, 3), (3, 3), (3, 3)),
    "B": ((3, 3), (3, 3), (3, 3), (3, 3), (3, 3)),
    "C": ((3, 3), (3, 3), (3, 3, 1), (3, 3, 1), (3, 3, 1)),
    "D": ((3, 3), (3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3)),
    "E": ((3, 3), (3, 3), (3, 3, 3, 3), (3, 3, 3, 3), (3, 3, 3, 3)),
}


def make_features(config: str, in_chans: int, batch_norm: bool, width_mult: float) -> tuple[nn.Sequential, int]:
    """The convolutional stages of ``config`` as one flat ``nn.Sequential`` (torchvision's layout)."""
    layers: list[nn.Module] = []
    in_ch = in_chans
    for width, stage in zip(VGG_WIDTHS, VGG_CONFIGS[config]):
        out_ch = scale_channels(width, width_mult)
        for item in stage:
            if item == "lrn":  # Krizhevsky et al.'s setting, as the paper says
                layers.append(nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0))
                continue
            layers.append(nn.Conv2d(in_ch, out_ch, item, padding=item // 2))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_ch))
            layers.append(nn.ReLU(inplace=True))
            in_ch = out_ch
        layers.append(nn.MaxPool2d(2, stride=2))
    return nn.Sequential(*layers), in_ch


class VGG(Classifier):
    """VGG: ``features`` (conv stages), 7x7 adaptive average pool, ``classifier`` (3 linears).

    Args:
        config: ``"A"``, ``"A-LRN"``, ``"B"``, ``"C"``, ``"D"`` or ``"E"``.
        batch_norm: a BatchNorm2d after every convolution.
        fc_width: width of the two hidden fully connected layers (4096).
        width_mult: multiplies every convolution and ``fc_width``.
    """

    head_names = ("classifier",)

    def __init__(self, config: str = "D", num_classes: int = 1000, in_chans: int = 3, batch_norm: bool = False,
                 width_mult: float = 1.0, fc_width: int = 4096, drop_rate: float = 0.5, img_size: int = 224):
        super().__init__()
        if config not in VGG_CONFIGS:
            raise ValueError(f"config must be one of {', '.join(VGG_CONFIGS)}, got {config!r}")
        self.features, ch = make_features(config, in_chans, batch_norm, width_mult)
        self.avgpool = nn.AdaptiveAvgPool2d(7)  # identity at 224x224 (already 7x7)
        fc = scale_channels(fc_width, width_mult)
        self.num_features = fc
        self.num_classes = num_classes
        self.classifier = nn.Sequential(
            nn.Linear(ch * 7 * 7, fc), nn.ReLU(inplace=True), nn.Dropout(drop_rate),
            nn.Linear(fc, fc), nn.ReLU(inplace=True), nn.Dropout(drop_rate),
            make_head(fc, num_classes),
        )
        init_weights(self)  # torchvision's: kaiming fan-out convs, N(0, 0.01) linears
        self.default_cfg = make_cfg((in_chans, img_size, img_size), VGG_PAPER, IMAGENET_MEAN, IMAGENET_STD,
                                    test_input_size=(in_chans, 32, 32), config=config)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (B, 512, H/32, W/32)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.avgpool(x).flatten(1)  # (B, 512*7*7)
        x = self.classifier[:6](x)  # fc6, fc7 with ReLU and dropout
        return x if pre_logits else self.classifier[6](x)

    def get_classifier(self) -> nn.Module:
        return self.classifier[6]

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.classifier[6] = make_head(self.num_features, num_classes)


@register_model
def vgg11(**kwargs):
    return VGG("A", **kwargs)


@register_model
def vgg11_lrn(**kwargs):
    return VGG("A-LRN", **kwargs)


@register_model
def vgg13(**kwargs):
    return VGG("B", **kwargs)


@register_model
def vgg16_c(**kwargs):
    return VGG("C", **kwargs)


@register_model
def vgg16(**kwargs):
    return VGG("D", **kwargs)


@register_model
def vgg19(**kwargs):
    return VGG("E", **kwargs)


@register_model
def vgg11_bn(**kwargs):
    return VGG("A", batch_norm=True, **kwargs)


@register_model
def vgg13_bn(**kwargs):
    return VGG("B", batch_norm=True, **kwargs)


@register_model
def vgg16_bn(**kwargs):
    return VGG("D", batch_norm=True, **kwargs)


@register_model
def vgg19_bn(**kwargs):
    return VGG("E", batch_norm=True, **kwargs)
