"""Spatial transformer networks.

Jaderberg, Simonyan, Zisserman, Kavukcuoglu, "Spatial Transformer Networks", NeurIPS 2015
(the modern-ConvNets lecture): a small localisation network predicts a 2x3 affine matrix ``theta`` per image,
a grid generator maps every output pixel ``(x_t, y_t)`` to the source point
``theta @ (x_t, y_t, 1)`` (``F.affine_grid``, normalised coordinates in [-1, 1]) and a
differentiable bilinear sampler reads the input there (``F.grid_sample``). The last layer
of the localisation network starts at zero weights and the identity bias, so an untrained
transformer leaves the image unchanged and training learns only what helps the classifier.

:class:`SpatialTransformerClassifier` puts a transformer in front of any image
:class:`~lightvid.models.base.Classifier`; ``stn_resnet18_cifar`` is a registered example::

    model = SpatialTransformerClassifier(lightvid.create_model("vgg11_bn", num_classes=10))
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from lightvid.models.base import Classifier, FrontedClassifier
from lightvid.models.registry import register_model

STN_PAPER = "Jaderberg et al., Spatial Transformer Networks, NeurIPS 2015"
IDENTITY_THETA = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


class SpatialTransformer(nn.Module):
    """Localisation net -> ``theta`` (B, 2, 3) -> affine grid -> bilinear sampling.

    Args:
        in_chans: image channels.
        channels: widths of the localisation net's two conv layers (7x7 and 5x5, each
            followed by a 2x2 max-pool and ReLU, as in the PyTorch STN tutorial).
        hidden: width of its hidden fully connected layer.
        out_size: ``(H, W)`` of the output; ``None`` keeps the input size.
    """

    def __init__(self, in_chans: int = 3, channels=(8, 10), hidden: int = 32, out_size=None):
        super().__init__()
        c1, c2 = channels
        self.localization = nn.Sequential(
            nn.Conv2d(in_chans, c1, 7, padding=3), nn.MaxPool2d(2, stride=2), nn.ReLU(inplace=True),
            nn.Conv2d(c1, c2, 5, padding=2), nn.MaxPool2d(2, stride=2), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(4),  # any input size -> (B, c2, 4, 4)
        )
        self.fc_loc = nn.Sequential(nn.Linear(c2 * 16, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 6))
        self.out_size = tuple(out_size) if out_size is not None else None
        self.reset_identity()

    def reset_identity(self) -> None:
        """Zero weights and identity bias in the last layer: ``theta = [[1, 0, 0], [0, 1, 0]]``."""
        nn.init.zeros_(self.fc_loc[2].weight)
        with torch.no_grad():
            self.fc_loc[2].bias.copy_(torch.tensor(IDENTITY_THETA))

    def theta(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_loc(self.localization(x).flatten(1)).view(-1, 2, 3)  # (B, 2, 3)

    def transform(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """Sample ``x`` (B, C, H, W) at ``theta @ (x_t, y_t, 1)`` for every output pixel."""
        size = (x.shape[0], x.shape[1], *(self.out_size or x.shape[-2:]))
        grid = F.affine_grid(theta, list(size), align_corners=False)  # (B, H, W, 2)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"the spatial transformer takes images (B, C, H, W), got shape {tuple(x.shape)}")
        return self.transform(x, self.theta(x))


class SpatialTransformerClassifier(FrontedClassifier):
    """``backbone(stn(x))``: a spatial transformer in front of an image classifier.

    The classifier interface (``forward_head``, ``reset_classifier``, ``num_features``,
    ``num_classes``, head parameters) is the backbone's; ``default_cfg`` is the backbone's
    with the STN paper added.
    """

    head_names = ()  # the head lives in the backbone; see head_parameters
    front_attr, inner_attr = "stn", "backbone"

    def __init__(self, backbone: Classifier, **stn_kwargs):
        super().__init__()
        if not isinstance(backbone, Classifier) or len(backbone.default_cfg.get("input_size", ())) != 3:
            raise ValueError("SpatialTransformerClassifier needs an image Classifier (input C x H x W)")
        stn_kwargs.setdefault("in_chans", backbone.default_cfg["input_size"][0])
        self.stn = SpatialTransformer(**stn_kwargs)
        self.backbone = backbone
        cfg = dict(backbone.default_cfg)
        cfg["paper"] = f"{STN_PAPER} + {cfg.get('paper', '')}"
        self.default_cfg = cfg


@register_model
def stn_resnet18_cifar(**kwargs):
    from lightvid.models.cifar import resnet18_cifar

    stn = {k: kwargs.pop(k) for k in ("stn_channels", "stn_hidden") if k in kwargs}
    return SpatialTransformerClassifier(resnet18_cifar(**kwargs), **{k[4:]: v for k, v in stn.items()})
