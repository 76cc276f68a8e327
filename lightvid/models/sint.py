"""SINT: the Siamese INstance search Tracker's matching network.

Tao, Gavves and Smeulders, "Siamese Instance Search for Tracking", CVPR 2016. Two branches
with shared weights map a box of an image to an embedding ``f(x)``; trained once on external
videos with boxes by the marginal contrastive loss

    L(x_j, x_k, y_jk) = 1/2 y_jk D^2 + 1/2 (1 - y_jk) max(0, sigma - D^2),  D = ||f(x_j) - f(x_k)||_2,

and then used as is: the most similar box ``m(x_j, x_k) = f(x_j) . f(x_k)`` to the first
frame's query is the target. As in the paper:

* few max-pooling layers (better localisation): a registered VGG backbone keeps only its first
  ``pools`` max-pools (2: stride 4), the later stages run at that resolution;
* region-of-interest pooling: every candidate box of an image is embedded from one pass of the
  backbone (``embed_rois``, by ``lightvid.ops.roi_align`` with ``aligned=True``);
* outputs of several layers: the ends of the last two kept stages (the paper's conv4_3 and
  conv5_3) ROI-pooled to ``roi_size x roi_size`` and a fully connected ``fc6`` on the last;
  each part L2-normalised, concatenated, divided by sqrt(3), so ``f(x)`` has unit norm and
  ``D^2 = 2 - 2 m`` lies in [0, 4].

The two kept stages run at the same stride, so ``forward_features`` returns their
concatenation ``(B, C4 + C5, H/4, W/4)`` and one ROI-align call serves both. As a
:class:`Classifier`, ``forward`` embeds the whole image as one box and applies ``fc``
(``num_classes=0``: the embedding itself).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from lightvid.models.base import IMAGENET_MEAN, IMAGENET_STD, Classifier, init_weights, make_cfg, scale_channels
from lightvid.models.registry import get_builder, register_model
from lightvid.ops import roi_align

SINT_PAPER = "Tao, Gavves & Smeulders, Siamese Instance Search for Tracking, CVPR 2016"


def marginal_contrastive_loss(emb_a: torch.Tensor, emb_b: torch.Tensor, same: torch.Tensor,
                              margin: float = 1.0) -> torch.Tensor:
    """Mean of ``1/2 y D^2 + 1/2 (1 - y) max(0, margin - D^2)`` over pairs of rows (``y`` = ``same``)."""
    d2 = (emb_a - emb_b).pow(2).sum(-1)
    y = same.to(d2.dtype)
    return (0.5 * y * d2 + 0.5 * (1 - y) * F.relu(margin - d2)).mean()


def truncate_vgg(features: nn.Sequential, stages: int, pools: int) -> tuple[nn.Sequential, nn.Sequential, int, int]:
    """Split a VGG ``features`` stack into (stem .. stage ``stages-1``, stage ``stages``), keeping only
    the first ``pools`` max-pools; returns the two parts and their output channels."""
    blocks: list[list[nn.Module]] = [[]]
    for layer in features:
        blocks[-1].append(layer)
        if isinstance(layer, nn.MaxPool2d):
            blocks.append([])
    if not 2 <= stages <= len(blocks) - 1:
        raise ValueError(f"stages must be in 2..{len(blocks) - 1}, got {stages}")
    if not 0 <= pools <= stages - 2:
        raise ValueError(f"pools must be in 0..{stages - 2} (the last two stages share one resolution), got {pools}")
    kept = []
    for i, block in enumerate(blocks[:stages]):
        layers = [m for m in block if not (isinstance(m, nn.MaxPool2d) and (i >= pools or i >= stages - 1))]
        kept.append(layers)
    convs = [[m for m in b if isinstance(m, nn.Conv2d)] for b in kept]
    low = nn.Sequential(*[m for b in kept[:-1] for m in b])
    high = nn.Sequential(*kept[-1])
    return low, high, convs[-2][-1].out_channels, convs[-1][-1].out_channels


class SINT(Classifier):
    """The Siamese matching network: a truncated VGG backbone and a multi-layer ROI embedding.

    Args:
        backbone: a registered VGG model (``vgg11``, ``vgg11_bn``, ``vgg16``...).
        stages: convolutional stages kept (4: up to the paper's conv5 analogue).
        pools: max-pools kept (the first ``pools``; 2 gives stride 4).
        roi_size: ROI-align output cells per side.
        sampling_ratio: bilinear samples per cell side (1: the cell centre).
        fc_width: width of ``fc6`` (before ``width_mult``).
        width_mult: channel multiplier of the backbone and ``fc6``.
    """

    head_names = ("fc",)

    def __init__(self, backbone: str = "vgg11_bn", stages: int = 4, pools: int = 2, roi_size: int = 4,
                 sampling_ratio: int = 1, fc_width: int = 1024, num_classes: int = 0, in_chans: int = 3,
                 width_mult: float = 0.125, img_size: int = 128):
        super().__init__()
        vgg = get_builder(backbone)(num_classes=0, in_chans=in_chans, width_mult=width_mult)
        if not isinstance(getattr(vgg, "features", None), nn.Sequential):
            raise ValueError(f"backbone must be a VGG-style model with a `features` stack, got {backbone!r}")
        self.low, self.high, self.c_mid, self.c_top = truncate_vgg(vgg.features, stages, pools)
        self.stride = 2 ** pools
        self.roi_size, self.sampling_ratio = roi_size, sampling_ratio
        fc = scale_channels(fc_width, width_mult)
        self.fc6 = nn.Sequential(nn.Linear(self.c_top * roi_size * roi_size, fc), nn.ReLU(inplace=True))
        self.init_head(self.c_mid * roi_size ** 2 + self.c_top * roi_size ** 2 + fc, num_classes, video=False)
        init_weights(self)
        self.default_cfg = make_cfg((in_chans, img_size, img_size), SINT_PAPER, IMAGENET_MEAN, IMAGENET_STD,
                                    test_input_size=(in_chans, 32, 32), backbone=backbone, stride=self.stride)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        mid = self.low(x)  # (B, C_mid, H/stride, W/stride)
        top = self.high(mid)  # (B, C_top, H/stride, W/stride)
        return torch.cat([mid, top], 1)  # (B, C_mid + C_top, H/stride, W/stride)

    def pool_rois(self, features: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        """ROI-aligned cells ``(R, C4 + C5, P, P)`` of ``(R, 5)`` boxes ``[b, x1, y1, x2, y2]`` (input pixels)."""
        return roi_align(features, rois, self.roi_size, 1.0 / self.stride, self.sampling_ratio, aligned=True)

    def embed_rois(self, features: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        """Unit-norm embeddings ``(R, num_features)`` of ``(R, 5)`` boxes ``[b, x1, y1, x2, y2]`` (input pixels)."""
        pooled = self.pool_rois(features, rois)  # (R, C4 + C5, P, P)
        mid = pooled[:, :self.c_mid].flatten(1)  # (R, C_mid*P*P)
        top = pooled[:, self.c_mid:].flatten(1)  # (R, C_top*P*P)
        parts = [F.normalize(mid, dim=1), F.normalize(top, dim=1), F.normalize(self.fc6(top), dim=1)]
        return torch.cat(parts, 1) / math.sqrt(len(parts))

    def embed(self, images: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        return self.embed_rois(self.forward_features(images), rois)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        B, _, h, w = x.shape
        s = float(self.stride)
        rois = torch.tensor([[b, 0.0, 0.0, w * s, h * s] for b in range(B)], dtype=x.dtype, device=x.device)
        emb = self.embed_rois(x, rois)  # (B, num_features): the whole image as one box
        return emb if pre_logits else self.fc(emb)


@register_model
def sint(**kwargs):
    return SINT(**kwargs)
