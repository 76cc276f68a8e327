"""A plain small 3D ConvNet with batch norm: the quickstart's model for small motion sets.

Tran et al., "Learning Spatiotemporal Features with 3D Convolutional Networks" (C3D), ICCV 2015
(3x3x3 convolutions throughout, the first pool spatial only), with batch norm after every
convolution (Ioffe and Szegedy, ICML 2015) and global average pooling before one linear
classifier instead of C3D's fc6/fc7 (Lin et al., "Network in Network", ICLR 2014). Each stage is
conv 3x3x3 -> BN -> ReLU -> max pool; the first pools 1x2x2, the next ones 2x2x2 (time is kept
at first, so short clips keep their motion into the deeper layers), the last stage does not
pool. At 16-128 channels it has about 0.3 M parameters: small enough to learn a few hundred
clips in minutes on two CPU cores, where deeper residual networks sit at chance for epochs.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from lightvid.models.base import Classifier, init_weights, make_cfg, scale_channels
from lightvid.models.registry import register_model

C3D_PAPER = "Tran et al., Learning Spatiotemporal Features with 3D Convolutional Networks, ICCV 2015"


class Plain3D(Classifier):
    """Stages of conv-BN-ReLU-pool; ``widths`` gives one stage each (scaled by ``width_mult``)."""

    head_names = ("fc",)

    def __init__(self, num_classes: int = 400, in_chans: int = 3, widths=(16, 32, 64, 128), width_mult: float = 1.0,
                 drop_rate: float = 0.2, num_frames: int = 8, img_size: int = 32):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_chans
        for i, w in enumerate(widths):
            w = scale_channels(w, width_mult)
            layers += [nn.Conv3d(c, w, 3, padding=1, bias=False), nn.BatchNorm3d(w), nn.ReLU(inplace=True)]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool3d((1, 2, 2) if i == 0 else (2, 2, 2), ceil_mode=True))
            c = w
        self.features = nn.Sequential(*layers)
        self.global_pool = nn.AdaptiveAvgPool3d(1)
        self.num_features = c
        self.drop = nn.Dropout(drop_rate)
        self.num_classes = num_classes
        self.fc = nn.Linear(c, num_classes) if num_classes > 0 else nn.Identity()
        init_weights(self)
        self.default_cfg = make_cfg((in_chans, num_frames, img_size, img_size), C3D_PAPER,
                                    test_input_size=(in_chans, num_frames, img_size, img_size))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (B, C, T/4, H/8, W/8)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(self.global_pool(x).flatten(1))  # (B, C)
        return x if pre_logits else self.fc(x)


@register_model
def plain3d_4(**kwargs):
    """Four 3x3x3 conv-BN-ReLU stages, 16-32-64-128 channels (0.3 M parameters), global pool, linear."""
    return Plain3D(**kwargs)
