"""GoogLeNet (Inception-v1).

Szegedy, Liu, Jia, Sermanet, Reed, Anguelov, Erhan, Vanhoucke, Rabinovich, "Going Deeper with
Convolutions", CVPR 2015 (arXiv 1409.4842), Table 1 and Figure 3:

* stem: conv1 7x7/2 (64), max-pool 3x3/2, LRN, conv2 = 1x1 (64) then 3x3 (192), LRN,
  max-pool 3x3/2; inception 3a, 3b, max-pool, 4a-4e, max-pool, 5a, 5b; global average
  pool, dropout 40 %, linear. Convolutions have biases and ReLUs; no batch norm.
* an inception module concatenates four branches: 1x1; 1x1 reduce -> 3x3; 1x1 reduce ->
  5x5; 3x3/1 max-pool -> 1x1 "pool proj" (widths in :data:`INCEPTION_V1`).
* LRN as in the Caffe model (size 5, alpha 1e-4, beta 0.75, k 1); max-pools use Caffe's
  ceil rounding (224 -> 112 -> 56 -> 28 -> 14 -> 7).
* ``aux_logits=True`` adds the two auxiliary classifiers on 4a and 4d (5x5/3 average pool
  -> 1x1 conv 128 -> fc 1024 -> dropout 70 % -> linear); in training mode ``forward`` then
  returns :class:`GoogLeNetOutputs` ``(logits, aux1, aux2)`` (the paper weights the
  auxiliary losses by 0.3, see :func:`googlenet_loss`); in eval mode only the logits.

Variants (keyword arguments): ``batch_norm=True`` puts a BatchNorm after every convolution
(bias-free convolutions) and drops LRN; ``b3_kernel=3`` makes the third branch 3x3 and
``pool4_kernel=2`` the max-pool before 5a 2x2/2 (both as in TF-slim's Inception-v1, which
I3D inflates, and torchvision). ``googlenet_bn`` is
``googlenet(batch_norm=True, b3_kernel=3, pool4_kernel=2)``: the 2D twin of ``i3d`` (see
:func:`lightvid.compress.inflate.inflate`). Module names are shared with ``i3d``:
``conv1``, ``conv2.reduce``, ``conv2.conv``, ``inception3a.branch{1..4}``, ..., ``fc``.

At 3x224x224 with 1000 classes ``googlenet`` has 6,998,552 parameters and 1.583 GMACs;
``googlenet_bn`` 6,624,904 parameters (torchvision's GoogLeNet without auxiliary heads).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from lightvid.models.base import IMAGENET_MEAN, IMAGENET_STD, Classifier, make_cfg, make_head, scale_channels
from lightvid.models.registry import register_model

GOOGLENET_PAPER = "Szegedy et al., Going Deeper with Convolutions, CVPR 2015"

# name -> (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj), Table 1 of the paper
INCEPTION_V1 = OrderedDict([
    ("inception3a", (64, 96, 128, 16, 32, 32)),
    ("inception3b", (128, 128, 192, 32, 96, 64)),
    ("inception4a", (192, 96, 208, 16, 48, 64)),
    ("inception4b", (160, 112, 224, 24, 64, 64)),
    ("inception4c", (128, 128, 256, 24, 64, 64)),
    ("inception4d", (112, 144, 288, 32, 64, 64)),
    ("inception4e", (256, 160, 320, 32, 128, 128)),
    ("inception5a", (256, 160, 320, 32, 128, 128)),
    ("inception5b", (384, 192, 384, 48, 128, 128)),
])
# a max-pool 3x3/2 follows these modules (pool3 after 3b, pool4 after 4e)
POOL_AFTER = {"inception3b": "pool3", "inception4e": "pool4"}
AUX_AFTER = {"inception4a": "aux1", "inception4d": "aux2"}


class GoogLeNetOutputs(NamedTuple):
    logits: torch.Tensor
    aux1: torch.Tensor
    aux2: torch.Tensor


def googlenet_loss(outputs, labels: torch.Tensor, aux_weight: float = 0.3) -> torch.Tensor:
    """Cross-entropy of the logits plus ``aux_weight`` x that of each auxiliary classifier."""
    if isinstance(outputs, GoogLeNetOutputs):
        main = F.cross_entropy(outputs.logits, labels)
        return main + aux_weight * (F.cross_entropy(outputs.aux1, labels) + F.cross_entropy(outputs.aux2, labels))
    return F.cross_entropy(outputs, labels)


class ConvUnit(nn.Module):
    """Convolution (+ BatchNorm) + ReLU, 2D or 3D; ``conv`` and ``bn`` are the state_dict names.

    A 3D unit with ``temporal_pad="replicate"`` pads time by repeating the edge frames (so a
    clip of identical frames stays one), instead of the zeros used in space.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel, stride=1, batch_norm: bool = False, dims: int = 2,
                 temporal_pad: str = "zeros"):
        super().__init__()
        kernel = (kernel,) * dims if isinstance(kernel, int) else tuple(kernel)
        stride = (stride,) * dims if isinstance(stride, int) else tuple(stride)
        pad = tuple(k // 2 for k in kernel)
        self.tpad = 0
        if dims == 3 and temporal_pad == "replicate":
            self.tpad, pad = pad[0], (0,) + pad[1:]
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        self.conv = conv(in_ch, out_ch, kernel, stride, pad, bias=not batch_norm)
        if batch_norm:
            self.bn = (nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d)(out_ch, eps=1e-3)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tpad:
            x = F.pad(x, (0, 0, 0, 0, self.tpad, self.tpad), mode="replicate")  # (B, C, T+2p, H, W)
        x = self.conv(x)
        if hasattr(self, "bn"):
            x = self.bn(x)
        return self.relu(x)


class InceptionModule(nn.Module):
    """Four branches concatenated on channels: 1x1 | 1x1->3x3 | 1x1->b3 | maxpool 3/1 -> 1x1.

    ``dims=3`` inflates every kxk to kxkxk (I3D): the same names, one more kernel axis.
    """

    def __init__(self, in_ch: int, widths, width_mult: float = 1.0, batch_norm: bool = False, b3_kernel: int = 5,
                 dims: int = 2, temporal_pad: str = "zeros"):
        super().__init__()
        c1, c3r, c3, c5r, c5, pp = (scale_channels(w, width_mult) for w in widths)
        unit = dict(batch_norm=batch_norm, dims=dims, temporal_pad=temporal_pad)
        self.branch1 = ConvUnit(in_ch, c1, 1, **unit)
        self.branch2 = nn.Sequential(OrderedDict(reduce=ConvUnit(in_ch, c3r, 1, **unit),
                                                 conv=ConvUnit(c3r, c3, 3, **unit)))
        self.branch3 = nn.Sequential(OrderedDict(reduce=ConvUnit(in_ch, c5r, 1, **unit),
                                                 conv=ConvUnit(c5r, c5, b3_kernel, **unit)))
        pool = nn.MaxPool2d(3, 1, 1, ceil_mode=True) if dims == 2 else nn.MaxPool3d(3, 1, 1, ceil_mode=True)
        self.branch4 = nn.Sequential(OrderedDict(pool=pool, proj=ConvUnit(in_ch, pp, 1, **unit)))
        self.out_channels = c1 + c3 + c5 + pp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class AuxClassifier(nn.Module):
    """The paper's auxiliary head: avg-pool 5x5/3 (adaptive to 4x4), 1x1 conv 128, fc 1024, dropout, fc."""

    def __init__(self, in_ch: int, num_classes: int, width_mult: float = 1.0, batch_norm: bool = False):
        super().__init__()
        c, f = scale_channels(128, width_mult), scale_channels(1024, width_mult)
        self.pool = nn.AdaptiveAvgPool2d(4)  # = AvgPool2d(5, 3) on the 14x14 maps of a 224 input
        self.conv = ConvUnit(in_ch, c, 1, batch_norm=batch_norm)
        self.fc1 = nn.Linear(c * 16, f)
        self.drop = nn.Dropout(0.7)
        self.fc2 = make_head(f, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.pool(x)).flatten(1)  # (B, 128*16)
        return self.fc2(self.drop(F.relu(self.fc1(x), inplace=True)))


def make_lrn() -> nn.Module:
    return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)


class GoogLeNet(Classifier):
    """Inception-v1 for ``(B, C, H, W)`` images (see the module docstring)."""

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, width_mult: float = 1.0,
                 batch_norm: bool = False, lrn: bool | None = None, b3_kernel: int = 5,
                 pool4_kernel: int = 3, aux_logits: bool = False, drop_rate: float = 0.4, img_size: int = 224):
        super().__init__()
        use_lrn = (not batch_norm) if lrn is None else lrn
        unit = dict(batch_norm=batch_norm)
        c64, c192 = scale_channels(64, width_mult), scale_channels(192, width_mult)
        self.conv1 = ConvUnit(in_chans, c64, 7, 2, **unit)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.lrn1 = make_lrn() if use_lrn else nn.Identity()
        self.conv2 = nn.Sequential(OrderedDict(reduce=ConvUnit(c64, c64, 1, **unit),
                                               conv=ConvUnit(c64, c192, 3, **unit)))
        self.lrn2 = make_lrn() if use_lrn else nn.Identity()
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.blocks: list[str] = []
        in_ch = c192
        for name, widths in INCEPTION_V1.items():
            block = InceptionModule(in_ch, widths, width_mult, batch_norm, b3_kernel)
            setattr(self, name, block)
            self.blocks.append(name)
            in_ch = block.out_channels
            if name in POOL_AFTER:
                k = pool4_kernel if POOL_AFTER[name] == "pool4" else 3
                setattr(self, POOL_AFTER[name], nn.MaxPool2d(k, 2, ceil_mode=True))
                self.blocks.append(POOL_AFTER[name])
        self.aux_logits = aux_logits
        if aux_logits:
            self.aux1 = AuxClassifier(self.inception4a.out_channels, num_classes, width_mult, batch_norm)
            self.aux2 = AuxClassifier(self.inception4d.out_channels, num_classes, width_mult, batch_norm)
            self.head_names = ("fc", "aux1", "aux2")
        self.init_head(in_ch, num_classes, drop_rate, video=False)
        self.default_cfg = make_cfg((in_chans, img_size, img_size), GOOGLENET_PAPER, IMAGENET_MEAN, IMAGENET_STD,
                                    test_input_size=(in_chans, 64, 64))

    def _features(self, x: torch.Tensor, aux: bool):
        x = self.pool1(self.conv1(x))  # (B, 64, H/4, W/4)
        x = self.pool2(self.lrn2(self.conv2(self.lrn1(x))))  # (B, 192, H/8, W/8)
        aux_in = {}
        for name in self.blocks:
            x = getattr(self, name)(x)
            if aux and name in AUX_AFTER:
                aux_in[AUX_AFTER[name]] = x
        return x, aux_in  # (B, 1024, H/32, W/32)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._features(x, aux=False)[0]

    def forward(self, x: torch.Tensor):
        if self.aux_logits and self.training:
            feats, aux_in = self._features(x, aux=True)
            return GoogLeNetOutputs(self.forward_head(feats), self.aux1(aux_in["aux1"]), self.aux2(aux_in["aux2"]))
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        super().reset_classifier(num_classes)
        if self.aux_logits:
            for aux in (self.aux1, self.aux2):
                aux.fc2 = make_head(aux.fc1.out_features, num_classes)



@register_model
def googlenet(**kwargs):
    """Inception-v1 as in the paper: 5x5 third branch, LRN, no batch norm, aux classifiers off."""
    return GoogLeNet(**kwargs)


@register_model
def googlenet_bn(**kwargs):
    """TF-slim's Inception-v1 (batch norm, 3x3 third branch, 2x2 pool4, no LRN): the 2D twin of i3d."""
    kwargs.setdefault("batch_norm", True)
    kwargs.setdefault("b3_kernel", 3)
    kwargs.setdefault("pool4_kernel", 2)
    return GoogLeNet(**kwargs)
