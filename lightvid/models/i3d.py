"""I3D: Inflated Inception-v1.

Carreira and Zisserman, "Quo Vadis, Action Recognition? A New Model and the Kinetics
Dataset", CVPR 2017, Figure 3: GoogLeNet with every NxN kernel inflated to NxNxN and batch
norm after every convolution:

* conv1 7x7x7 stride 2; max-pool 1x3x3 stride 1x2x2; conv2 = 1x1x1 (64) then 3x3x3 (192);
  max-pool 1x3x3 stride 1x2x2; inception 3a, 3b (the paper's Mixed_3b, 3c); max-pool 3x3x3
  stride 2; 4a-4e (Mixed_4b-4f); max-pool 2x2x2 stride 2; 5a, 5b (Mixed_5b, 5c); average
  pool; dropout; linear. The first two pools keep time, as in the paper.
* an inception module's third branch is 3x3x3 (the paper's "Inc." submodule); ``b3_kernel=5``
  gives GoogLeNet's 5x5x5, and ``pool4_kernel=3`` a 2x3x3 max-pool before 5a (GoogLeNet's 3x3).
  ``i3d(batch_norm=False, lrn=True, b3_kernel=5, pool4_kernel=3)`` is the inflation of the
  paper's ``googlenet``.
* the paper's logits are a 1x1x1 convolution after a 2x7x7 average pool, averaged over
  time; here a global average pool and a linear layer (the same linear map on the pooled
  features, except that the paper's 2-frame windows count the first and last frame half).

Module and state_dict names are those of :mod:`lightvid.models.googlenet` (``conv1.conv``,
``conv1.bn``, ``inception3a.branch2.conv.conv``, ..., ``fc``), so
:func:`lightvid.compress.inflate.inflate` maps ``googlenet_bn`` into ``i3d`` by name.

``temporal_pad``: ``"zeros"`` (default, TensorFlow's SAME padding of the paper) or
``"replicate"`` (time padded with copies of the edge frames). With ``"replicate"`` a
"boring" clip (one frame repeated) stays boring through every layer, and an inflated I3D
gives exactly its 2D twin's output on that frame; with zeros the edge frames see padding.

At 3x64x224x224 with 400 classes ``i3d`` has 12,697,264 parameters.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn

from lightvid.models.base import KINETICS_MEAN, KINETICS_STD, Classifier, make_cfg, scale_channels
from lightvid.models.googlenet import INCEPTION_V1, POOL_AFTER, ConvUnit, InceptionModule, make_lrn
from lightvid.models.registry import register_model

I3D_PAPER = "Carreira and Zisserman, Quo Vadis, Action Recognition? A New Model and the Kinetics Dataset, CVPR 2017"
# pool name -> (kernel, stride), time first
I3D_POOLS = {"pool1": ((1, 3, 3), (1, 2, 2)), "pool2": ((1, 3, 3), (1, 2, 2)),
             "pool3": ((3, 3, 3), (2, 2, 2)), "pool4": ((2, 2, 2), (2, 2, 2))}
TEMPORAL_PADS = ("zeros", "replicate")


class I3D(Classifier):
    """Inflated Inception-v1 for ``(B, C, T, H, W)`` clips (see the module docstring)."""

    def __init__(self, num_classes: int = 400, in_chans: int = 3, width_mult: float = 1.0,
                 batch_norm: bool = True, lrn: bool = False, b3_kernel: int = 3, temporal_pad: str = "zeros",
                 pool4_kernel: int = 2, drop_rate: float = 0.5, num_frames: int = 64, img_size: int = 224):
        super().__init__()
        if temporal_pad not in TEMPORAL_PADS:
            raise ValueError(f"temporal_pad must be one of {TEMPORAL_PADS}, got {temporal_pad!r}")
        self.temporal_pad = temporal_pad
        unit = dict(batch_norm=batch_norm, dims=3, temporal_pad=temporal_pad)
        c64, c192 = scale_channels(64, width_mult), scale_channels(192, width_mult)
        self.conv1 = ConvUnit(in_chans, c64, 7, 2, **unit)
        self.pool1 = nn.MaxPool3d(*I3D_POOLS["pool1"], ceil_mode=True)
        self.lrn1 = make_lrn() if lrn else nn.Identity()
        self.conv2 = nn.Sequential(OrderedDict(reduce=ConvUnit(c64, c64, 1, **unit),
                                               conv=ConvUnit(c64, c192, 3, **unit)))
        self.lrn2 = make_lrn() if lrn else nn.Identity()
        self.pool2 = nn.MaxPool3d(*I3D_POOLS["pool2"], ceil_mode=True)
        self.blocks: list[str] = []
        in_ch = c192
        for name, widths in INCEPTION_V1.items():
            block = InceptionModule(in_ch, widths, width_mult, batch_norm, b3_kernel, dims=3,
                                    temporal_pad=temporal_pad)
            setattr(self, name, block)
            self.blocks.append(name)
            in_ch = block.out_channels
            if name in POOL_AFTER:
                pool = POOL_AFTER[name]
                kernel, stride = I3D_POOLS[pool]
                if pool == "pool4":
                    kernel = (kernel[0], pool4_kernel, pool4_kernel)
                setattr(self, pool, nn.MaxPool3d(kernel, stride, ceil_mode=True))
                self.blocks.append(pool)
        self.init_head(in_ch, num_classes, drop_rate, video=True)
        self.default_cfg = make_cfg((in_chans, num_frames, img_size, img_size), I3D_PAPER, KINETICS_MEAN,
                                    KINETICS_STD, test_input_size=(in_chans, 8, 32, 32))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.conv1(x))  # (B, 64, T/2, H/4, W/4)
        x = self.pool2(self.lrn2(self.conv2(self.lrn1(x))))  # (B, 192, T/2, H/8, W/8)
        for name in self.blocks:
            x = getattr(self, name)(x)
        return x  # (B, 1024, T/8, H/32, W/32)


@register_model
def i3d(**kwargs):
    """Inflated Inception-v1 with batch norm (RGB stream), 3x3x3 third branch."""
    return I3D(**kwargs)
