"""C3D and its compressed variants.

Tran, Bourdev, Fergus, Torresani, Paluri, "Learning Spatiotemporal Features with 3D
Convolutional Networks", ICCV 2015 (C3D), in the layout of the common PyTorch port;
the C3D compression document's compressed variants:

* ``c3d_2plus1d``: every 3x3x3 convolution C_in->C_out becomes a 1x3x3 convolution
  C_in->C_out followed by a 3x1x1 convolution C_out->C_out, both with bias and no
  non-linearity between them (so the pair is a factorisation of the same linear map).
* ``c3d_mc3`` / ``c3d_mc4`` / ``c3d_mc5``: from stage 3, 4 or 5 on the layers are 2D and
  time is folded into channels, ``(B, C, T, H, W) -> (B, T*C, H, W)`` with channel index
  ``t * C + c``. A 3D layer with ``C`` output channels at ``T`` frames becomes a 2D layer
  with ``T*C`` channels; the last convolution of a stage whose pool halves time emits
  ``(T/2)*C`` channels and the pool becomes spatial only. This reproduces the C3D compression document's
  MC4 exactly (conv4a 1024->2048, conv4b 2048->1024, conv5a 1024->1024, conv5b 1024->512).

The body's parameter counts at 3x16x112x112 are those the C3D compression document reports:
c3d 27,655,936; c3d_2plus1d 12,823,616; c3d_mc3 89,887,488; c3d_mc4 54,790,400;
c3d_mc5 27,656,448.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from lightvid.models.base import Classifier, init_weights, make_cfg, make_head, scale_channels
from lightvid.models.registry import register_model

# (stage, output channels of each convolution, pool kernel, pool padding)
C3D_STAGES = (
    (1, (64,), (1, 2, 2), (0, 0, 0)),
    (2, (128,), (2, 2, 2), (0, 0, 0)),
    (3, (256, 256), (2, 2, 2), (0, 0, 0)),
    (4, (512, 512), (2, 2, 2), (0, 0, 0)),
    (5, (512, 512), (2, 2, 2), (0, 1, 1)),
)
C3D_PAPER = "Tran et al., Learning Spatiotemporal Features with 3D Convolutional Networks, ICCV 2015"


class FoldTime(nn.Module):
    """Fold time into channels: ``(B, C, T, H, W) -> (B, T*C, H, W)``, channel ``t*C + c``."""

    def __init__(self, num_frames: int):
        super().__init__()
        self.num_frames = num_frames

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, T, H, W = x.shape
        if T != self.num_frames:
            raise ValueError(f"FoldTime was built for {self.num_frames} frames at this depth, got {T}")
        return x.transpose(1, 2).reshape(B, T * C, H, W)  # (B, T*C, H, W)


class Conv2Plus1d(nn.Sequential):
    """A 1xkxk spatial convolution C_in->C_out then a kx1x1 temporal one C_out->C_out."""

    def __init__(self, in_ch: int, out_ch: int, k: int = 3):
        super().__init__()
        self.spatial = nn.Conv3d(in_ch, out_ch, (1, k, k), padding=(0, k // 2, k // 2))
        self.temporal = nn.Conv3d(out_ch, out_ch, (k, 1, 1), padding=(k // 2, 0, 0))


def _conv_name(stage: int, i: int, n: int) -> str:
    return f"conv{stage}" if n == 1 else f"conv{stage}{'abcd'[i]}"


class C3D(Classifier):
    """C3D with a choice of convolution per layer: 3D, (2+1)D, or 2D over folded time.

    Args:
        conv_type: ``"3d"`` or ``"2plus1d"`` for the layers before ``fold_from``.
        fold_from: first stage (2-5) whose layers are 2D over folded time; ``None`` keeps all 3D.
        num_frames: clip length; the folded variants need it to size their channels.
        width_mult: multiplies every convolution and fc width.
        mean, std: the input normalisation the weights expect (``default_cfg``), in [0, 1] units;
            ``None``: torchvision's Kinetics values. MMAction2's Sports-1M C3D takes 0-255 pixels
            minus (104, 117, 128): ``mean=(104/255, 117/255, 128/255), std=(1/255,) * 3``.
    """

    head_names = ("fc6", "fc7", "fc8")

    def __init__(self, num_classes: int = 487, in_chans: int = 3, conv_type: str = "3d",
                 fold_from: int | None = None, num_frames: int = 16, img_size: int = 112,
                 width_mult: float = 1.0, fc_width: int = 4096, drop_rate: float = 0.5,
                 mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None):
        super().__init__()
        if conv_type not in ("3d", "2plus1d"):
            raise ValueError(f"conv_type must be '3d' or '2plus1d', got {conv_type!r}")
        if fold_from is not None and fold_from not in (2, 3, 4, 5):
            raise ValueError(f"fold_from must be 2, 3, 4, 5 or None, got {fold_from!r}")
        self.layer_order: list[str] = []
        in_ch, t = in_chans, num_frames
        for stage, widths, pool_k, pool_pad in C3D_STAGES:
            folded = fold_from is not None and stage >= fold_from
            if folded and stage == fold_from:
                self.fold = FoldTime(t)
                self.layer_order.append("fold")
                in_ch = in_ch * t
            for i, width in enumerate(widths):
                out_ch = scale_channels(width, width_mult)
                name = _conv_name(stage, i, len(widths))
                if folded:
                    last = i == len(widths) - 1
                    t_out = t // pool_k[0] if last else t
                    if t_out < 1:
                        raise ValueError(f"num_frames={num_frames} is too short for {name} to fold time")
                    conv = nn.Conv2d(in_ch, out_ch * t_out, 3, padding=1)
                    in_ch = out_ch * t_out
                elif conv_type == "2plus1d":
                    conv = Conv2Plus1d(in_ch, out_ch)
                    in_ch = out_ch
                else:
                    conv = nn.Conv3d(in_ch, out_ch, 3, padding=1)
                    in_ch = out_ch
                setattr(self, name, conv)
                self.layer_order.append(name)
            if folded:
                pool = nn.MaxPool2d(pool_k[1], stride=pool_k[1], padding=pool_pad[1])  # square in C3D
                t = t // pool_k[0]
            else:
                pool = nn.MaxPool3d(pool_k, stride=pool_k, padding=pool_pad)
                t = t // pool_k[0]
            setattr(self, f"pool{stage}", pool)
            self.layer_order.append(f"pool{stage}")
        self.relu = nn.ReLU(inplace=True)
        self.folded = fold_from is not None
        # At 112x112 pool5 already gives 1x4x4 (identity here); smaller clips still work.
        self.head_pool = nn.AdaptiveAvgPool2d(4) if self.folded else nn.AdaptiveAvgPool3d((1, 4, 4))
        self.num_features = fc = scale_channels(fc_width, width_mult)
        self.fc6 = nn.Linear(in_ch * 16, fc)
        self.fc7 = nn.Linear(fc, fc)
        self.dropout = nn.Dropout(drop_rate)
        self.num_classes = num_classes
        self.fc8 = make_head(fc, num_classes)
        # Without batch norm, PyTorch's default init lets the signal die out and a small C3D
        # stays at chance: Kaiming convolutions, He fan-in for the ReLU'd fc6/fc7.
        init_weights(self)
        for fc in (self.fc6, self.fc7):
            nn.init.kaiming_normal_(fc.weight, nonlinearity="relu")
        norm = {k: tuple(v) for k, v in (("mean", mean), ("std", std)) if v is not None}
        self.default_cfg = make_cfg((in_chans, num_frames, img_size, img_size), C3D_PAPER,
                                    test_input_size=(in_chans, num_frames, 32, 32), **norm)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.layer_order:
            layer = getattr(self, name)
            x = self.relu(layer(x)) if name.startswith("conv") else layer(x)
        return x  # (B, C, 1, 4, 4) at 16x112x112, or (B, C, 4, 4) when time is folded

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_pool(x).flatten(1)  # (B, C*16)
        x = self.dropout(self.relu(self.fc6(x)))
        x = self.dropout(self.relu(self.fc7(x)))
        return x if pre_logits else self.fc8(x)

    def get_classifier(self) -> nn.Module:
        return self.fc8

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc8 = make_head(self.num_features, num_classes)


@register_model
def c3d(**kwargs):
    return C3D(**kwargs)


@register_model
def c3d_2plus1d(**kwargs):
    return C3D(conv_type="2plus1d", **kwargs)


@register_model
def c3d_mc3(**kwargs):
    return C3D(fold_from=3, **kwargs)


@register_model
def c3d_mc4(**kwargs):
    return C3D(fold_from=4, **kwargs)


@register_model
def c3d_mc5(**kwargs):
    return C3D(fold_from=5, **kwargs)
