"""Input transforms that sit in front of a video model: the temporal residual gradient (TRG).

Wang, Lin and Wang, "Design Light-Weight 3D Convolutional Networks for Video Recognition:
Temporal Residual, Fully Separable Block, and Fast Algorithm", 2019 (the light-weight 3D networks review): a clip of
T frames x_0 .. x_{T-1} (per channel, per pixel) is replaced by its T-1 temporal residuals
plus the mean frame, again T frames:

    out[:, 0]   = (x_0 + ... + x_{T-1}) / T          the mean frame comes FIRST
    out[:, t]   = x_t - x_{t-1}        for t = 1 .. T-1   (frame t+1 minus frame t, in order)

The map is linear and invertible (:func:`inverse_temporal_residual_gradient`), keeps the
shape ``(C, T, H, W)`` (or ``(B, C, T, H, W)``) and commutes with per-channel normalisation
except for the mean frame (normalise first, then transform: that is what the model wrapper
does on its already-normalised input).

``create_model(name, input_transform=...)``:

* ``"trg"``: TRG in front; the network sees C channels x T frames, so its first layer keeps
  its shape (``in_chans`` channels, same T); only what the first layer learns changes.
* ``"rgb_trg"``: the frames and their TRG concatenated on channels, ``(B, 2C, T, H, W)``;
  the network is built with ``in_chans = 2C``, i.e. its first convolution takes 2C inputs.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from lightvid.models.base import FrontedClassifier


def temporal_residual_gradient(x: torch.Tensor) -> torch.Tensor:
    """TRG of a clip ``(C, T, H, W)`` or a batch ``(B, C, T, H, W)``: mean frame, then the T-1 differences."""
    if x.dim() not in (4, 5):
        raise ValueError("temporal_residual_gradient expects (C, T, H, W) or (B, C, T, H, W), "
                         f"got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.float()
    t_dim = x.dim() - 3
    mean = x.mean(dim=t_dim, keepdim=True)  # (..., C, 1, H, W)
    diffs = torch.diff(x, dim=t_dim)  # (..., C, T-1, H, W): x_t - x_{t-1}
    return torch.cat([mean, diffs], dim=t_dim)  # (..., C, T, H, W)


def inverse_temporal_residual_gradient(g: torch.Tensor) -> torch.Tensor:
    """The frames back from their TRG: x_t = x_0 + cumsum(diffs), x_0 = mean - mean_t(cumsum)."""
    t_dim = g.dim() - 3
    mean, diffs = g.narrow(t_dim, 0, 1), g.narrow(t_dim, 1, g.shape[t_dim] - 1)
    offsets = torch.cat([torch.zeros_like(mean), diffs.cumsum(t_dim)], dim=t_dim)  # x_t - x_0
    return offsets + (mean - offsets.mean(dim=t_dim, keepdim=True))


class TemporalResidualGradient(nn.Module):
    """:func:`temporal_residual_gradient` as a module; ``keep_rgb`` prepends the frames (2C channels)."""

    def __init__(self, keep_rgb: bool = False):
        super().__init__()
        self.keep_rgb = keep_rgb

    def out_chans(self, in_chans: int) -> int:
        return 2 * in_chans if self.keep_rgb else in_chans

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            raise ValueError(f"TemporalResidualGradient expects (B, C, T, H, W), got shape {tuple(x.shape)}")
        g = temporal_residual_gradient(x)
        return torch.cat([x, g], dim=1) if self.keep_rgb else g  # (B, 2C or C, T, H, W)

    def extra_repr(self) -> str:
        return f"keep_rgb={self.keep_rgb}"


INPUT_TRANSFORMS: dict[str, Callable[[], nn.Module]] = {
    "trg": lambda: TemporalResidualGradient(keep_rgb=False),
    "rgb_trg": lambda: TemporalResidualGradient(keep_rgb=True),
}


class WithInputTransform(FrontedClassifier):
    """A video classifier with a fixed input transform in front; the interface is the inner model's."""

    front_attr, inner_attr = "transform", "model"

    def __init__(self, transform: nn.Module, model: nn.Module, name: str, in_chans: int):
        super().__init__()
        self.transform = transform
        self.model = model
        cfg = dict(getattr(model, "default_cfg", {}))
        for key in ("input_size", "test_input_size"):
            if key in cfg:
                cfg[key] = (in_chans, *tuple(cfg[key])[1:])
        self.default_cfg = dict(cfg, input_transform=name)
        self.head_names = tuple(f"model.{n}" for n in getattr(model, "head_names", ()))


def with_input_transform(builder: Callable[..., nn.Module], name: str, in_chans: int = 3, **kwargs) -> nn.Module:
    """Build ``builder`` behind the input transform ``name``, its first layer sized to the transform's output."""
    if name not in INPUT_TRANSFORMS:
        raise ValueError(f"unknown input_transform {name!r}; choose from {', '.join(INPUT_TRANSFORMS)}")
    transform = INPUT_TRANSFORMS[name]()
    model = builder(in_chans=transform.out_chans(in_chans), **kwargs)
    size = getattr(model, "default_cfg", {}).get("input_size", ())
    if len(size) != 4:
        raise ValueError(f"input_transform {name!r} needs a video model (C x T x H x W input), "
                         f"{builder.__name__} takes {'x'.join(map(str, size)) or 'unknown'}")
    return WithInputTransform(transform, model, name, in_chans)
