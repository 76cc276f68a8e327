"""DenseNet-BC for images.

Huang, Liu, van der Maaten, Weinberger, "Densely Connected Convolutional Networks",
CVPR 2017: every layer of a dense block sees the concatenation of all earlier outputs
(``y = h([x_0, x_1, ..., x_{l-1}])``), a BN-ReLU-1x1 bottleneck to ``bn_size * k``
channels then BN-ReLU-3x3 to ``k`` (the growth rate); transitions halve the channels
(compression 0.5) and the resolution.

State_dict keys are torchvision's (``features.conv0``, ``features.denseblock1.denselayer1.norm1``,
``features.transition1.conv``, ``features.norm5``, ``classifier``), so its densenet
checkpoints load strictly. torchvision's *old* checkpoint files name the dense-layer
modules ``norm.1``, ``conv.2``, ...; :func:`remap_legacy_keys` (also applied automatically
by ``load_state_dict``) renames them the way torchvision's own loader does.
densenet121 has 7,978,856 parameters at 3x224x224 with 1000 classes.
"""
from __future__ import annotations

import re
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp

from lightvid.models.base import IMAGENET_MEAN, IMAGENET_STD, Classifier, make_cfg, make_head, scale_channels
from lightvid.models.registry import register_model

DENSENET_PAPER = "Huang et al., Densely Connected Convolutional Networks, CVPR 2017"

# name -> (growth rate k, layers per block, stem channels)
DENSENET_CONFIGS = {
    "densenet121": (32, (6, 12, 24, 16), 64),
    "densenet169": (32, (6, 12, 32, 32), 64),
    "densenet201": (32, (6, 12, 48, 32), 64),
    "densenet161": (48, (6, 12, 36, 24), 96),
}

_LEGACY_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\."
                         r"((?:[12])\.(?:weight|bias|running_mean|running_var))$")


def remap_legacy_keys(state_dict: dict) -> dict:
    """Rename old torchvision keys ``...denselayer1.norm.1.weight`` -> ``...denselayer1.norm1.weight``."""
    out = OrderedDict()
    for key, value in state_dict.items():
        m = _LEGACY_KEY.match(key)
        out[m.group(1) + m.group(2) if m else key] = value
    return out


class DenseLayer(nn.Sequential):
    """BN-ReLU-conv1x1 (to ``bn_size * k``), BN-ReLU-conv3x3 (to ``k``) on the concatenated inputs."""

    def __init__(self, in_ch: int, growth_rate: int, bn_size: int, drop_rate: float, memory_efficient: bool):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_ch)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_ch, bn_size * growth_rate, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False)
        self.drop_rate = drop_rate
        self.memory_efficient = memory_efficient

    def bottleneck(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.conv1(self.relu1(self.norm1(torch.cat(inputs, 1))))  # (B, bn_size*k, H, W)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        if self.memory_efficient and any(f.requires_grad for f in features):
            out = cp.checkpoint(self.bottleneck, *features, use_reentrant=False)
        else:
            out = self.bottleneck(*features)
        out = self.conv2(self.relu2(self.norm2(out)))  # (B, k, H, W)
        return F.dropout(out, p=self.drop_rate, training=self.training) if self.drop_rate > 0 else out


class DenseBlock(nn.ModuleDict):
    def __init__(self, num_layers: int, in_ch: int, growth_rate: int, bn_size: int, drop_rate: float,
                 memory_efficient: bool):
        super().__init__()
        for i in range(num_layers):
            self[f"denselayer{i + 1}"] = DenseLayer(in_ch + i * growth_rate, growth_rate, bn_size, drop_rate,
                                                    memory_efficient)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)  # (B, C_in + L*k, H, W)


class Transition(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(in_ch)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.pool = nn.AvgPool2d(2, stride=2)


class DenseNet(Classifier):
    """DenseNet-BC with torchvision's module names.

    Args:
        growth_rate: ``k``; block_config: layers per dense block; num_init_features: stem width.
        bn_size: bottleneck width factor (4); drop_rate: dropout after each dense layer.
        memory_efficient: recompute the bottleneck in the backward pass (less memory, slower).
        width_mult: multiplies ``k`` and the stem width.
    """

    head_names = ("classifier",)

    def __init__(self, growth_rate: int = 32, block_config=(6, 12, 24, 16), num_init_features: int = 64,
                 bn_size: int = 4, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0,
                 head_drop_rate: float = 0.0, memory_efficient: bool = False, width_mult: float = 1.0,
                 img_size: int = 224):
        super().__init__()
        k = scale_channels(growth_rate, width_mult)
        ch = scale_channels(num_init_features, width_mult)
        self.features = nn.Sequential(OrderedDict([
            ("conv0", nn.Conv2d(in_chans, ch, 7, stride=2, padding=3, bias=False)),
            ("norm0", nn.BatchNorm2d(ch)),
            ("relu0", nn.ReLU(inplace=True)),
            ("pool0", nn.MaxPool2d(3, stride=2, padding=1)),
        ]))
        for i, n in enumerate(block_config):
            self.features.add_module(f"denseblock{i + 1}", DenseBlock(n, ch, k, bn_size, drop_rate, memory_efficient))
            ch += n * k
            if i != len(block_config) - 1:
                self.features.add_module(f"transition{i + 1}", Transition(ch, ch // 2))
                ch //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(ch))
        self.num_features = ch
        self.num_classes = num_classes
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.head_drop = nn.Dropout(head_drop_rate)
        self.classifier = make_head(ch, num_classes)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)
        self._register_load_state_dict_pre_hook(self._remap_legacy)
        self.default_cfg = make_cfg((in_chans, img_size, img_size), DENSENET_PAPER, IMAGENET_MEAN, IMAGENET_STD,
                                    test_input_size=(in_chans, 64, 64))

    # lightvid.checkpoint.load_state_dict_into calls this before comparing keys.
    remap_state_dict = staticmethod(remap_legacy_keys)

    @staticmethod
    def _remap_legacy(state_dict, prefix, *args):
        for key in [k for k in state_dict if k.startswith(prefix) and _LEGACY_KEY.match(k[len(prefix):])]:
            m = _LEGACY_KEY.match(key[len(prefix):])
            state_dict[prefix + m.group(1) + m.group(2)] = state_dict.pop(key)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.features(x))  # (B, C, H/32, W/32)

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.global_pool(x).flatten(1))  # (B, C)
        return x if pre_logits else self.classifier(x)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.classifier = make_head(self.num_features, num_classes)


def _densenet(name: str, **kwargs) -> DenseNet:
    k, blocks, stem = DENSENET_CONFIGS[name]
    return DenseNet(k, blocks, stem, **kwargs)


@register_model
def densenet121(**kwargs):
    return _densenet("densenet121", **kwargs)


@register_model
def densenet169(**kwargs):
    return _densenet("densenet169", **kwargs)


@register_model
def densenet201(**kwargs):
    return _densenet("densenet201", **kwargs)


@register_model
def densenet161(**kwargs):
    return _densenet("densenet161", **kwargs)
