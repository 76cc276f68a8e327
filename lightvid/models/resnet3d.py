"""Generic video ResNet: R3D, R2D, f-R2D, MCx, rMCx, R(2+1)D, ip-CSN, ir-CSN and Slow.

Tran, Wang, Torresani, Ray, LeCun, Paluri, "A Closer Look at Spatiotemporal Convolutions
for Action Recognition", CVPR 2018 (R2D, f-R2D, R3D, MCx, rMCx, R(2+1)D); Tran, Wang,
Torresani, Feiszli, "Video Classification with Channel-Separated Convolutional Networks",
ICCV 2019 (ip-CSN, ir-CSN; the CSN paper); Feichtenhofer, Fan, Malik, He, "SlowFast Networks
for Video Recognition", ICCV 2019 (the Slow pathway alone: Slow-R50).

One network, :class:`VideoResNet`: a stem, four stages of basic or bottleneck blocks and a
per-stage convolution type, all given as data:

* ``"3d"``: 3x3x3; downsampling strides time too (2x2x2);
* ``"2d"``: 1x3x3 ("no temporal"); downsampling is spatial only (1x2x2);
* ``"2plus1d"``: 1x3x3 to ``midplanes`` channels, BN, ReLU, then 3x1x1. ``midplanes="paper"``
  computes the middle width per convolution, ``M = floor(27 N_in N_out / (9 N_in + 3 N_out))``,
  so the pair has the parameters of the 3x3x3 it replaces; ``"torchvision"`` computes it once
  per block from the block's input and output widths and uses it for both convolutions;
* ``"ip"`` (interaction-preserved CSN): 1x1x1 convolution, BN, 3x3x3 depthwise convolution;
* ``"ir"`` (interaction-reduced CSN): the 3x3x3 depthwise convolution alone;
* ``"2plus1d_tfirst"``: 3x1x1 to ``planes`` channels, BN, ReLU, then 1x3x3 (the temporal
  convolution first, middle width = output width: PyTorchVideo's R(2+1)D bottleneck).

A stage's stride is ``(temporal, spatial)``: by default ``(1, 1)`` for the first stage and
``(2, 2)`` after (``(1, 2)`` for ``"2d"`` stages); ``strides=`` sets all four. The stride sits
on the block's 3x3x3-position convolution and on the shortcut. Bottleneck blocks can give their
first 1x1x1 convolution a temporal kernel per stage (``conv1_t``: Slow-R50's 1, 1, 3, 3).
``shortcut="2plus1d"`` projects a shortcut with a 1x1x1 pair in the (2+1)D pattern (MMAction2's
R(2+1)D builds it with its (2+1)D convolution class).

Stems: ``"3d"`` 3x7x7 stride 1x2x2; ``"2d"`` 1x7x7; ``"2plus1d"`` 1x7x7 to 45 then 3x1x1 to 64
(torchvision's and the released Caffe2 models'); ``"2plus1d_paper"`` the same pair with the
paper's middle width for a 3x7x7 (83 for RGB to 64: MMAction2's R(2+1)D); ``"fold"`` a T x 7 x 7 convolution without
temporal padding, which is exactly a 2D convolution over the clip's T*3 folded input channels
(R2D). ``pool1=True`` adds the CSN paper's max pool 1x3x3 stride 1x2x2 (the CSN layout).

``r3d_18``, ``mc3_18`` and ``r2plus1d_18`` have torchvision.models.video's module tree, so its
Kinetics-400 state_dicts load strictly and give the same outputs. :func:`inflate_from_resnet2d`
initialises any of these networks from a 2D ResNet (names mapped, kernels inflated).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from lightvid.errors import UserError
from lightvid.models.base import IMAGENET_MEAN, IMAGENET_STD, Classifier, init_weights, make_cfg, scale_channels
from lightvid.models.inflation import inflate_state_dict
from lightvid.models.registry import register_model

TRAN2018 = "Tran et al., A Closer Look at Spatiotemporal Convolutions for Action Recognition, CVPR 2018"
CSN2019 = "Tran et al., Video Classification with Channel-Separated Convolutional Networks, ICCV 2019"

SLOWFAST2019 = "Feichtenhofer et al., SlowFast Networks for Video Recognition, ICCV 2019"

CONV_TYPES = ("3d", "2d", "2plus1d", "ip", "ir", "2plus1d_tfirst")
STEMS = ("3d", "2d", "2plus1d", "2plus1d_paper", "fold")
SHORTCUTS = ("conv", "2plus1d")
# PyTorchVideo's Kinetics models normalise with 0.45 / 0.225; MMAction2's with ImageNet's values
PYTORCHVIDEO_MEAN, PYTORCHVIDEO_STD = (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)
# depth -> (block type, blocks per stage)
DEPTHS = {
    10: ("basic", (1, 1, 1, 1)),
    18: ("basic", (2, 2, 2, 2)),
    26: ("bottleneck", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
STAGE_WIDTHS = (64, 128, 256, 512)
# Mixed convolutions (Tran et al. 2018, Sec. 3.2): MCx has 3D convolutions in groups conv1 ..
# conv{x-1} and 2D ones after; rMCx the reverse. Group 1 is the stem, groups 2-5 the stages.
MC = {x: ("3d",) * (x - 2) + ("2d",) * (6 - x) for x in (2, 3, 4, 5)}
RMC = {x: ("2d",) * (x - 2) + ("3d",) * (6 - x) for x in (2, 3, 4, 5)}


def midplanes_for(in_ch: int, out_ch: int, k: int = 3, kt: int = 3) -> int:
    """Middle width giving a 1xkxk + kt x1x1 pair the parameters of a kt x k x k ``in_ch -> out_ch``.

    ``M = floor(kt k^2 N_in N_out / (k^2 N_in + kt N_out))`` (Tran et al. 2018, Sec. 3.5).
    """
    return (kt * k * k * in_ch * out_ch) // (k * k * in_ch + kt * out_ch)


def stride_pair(kind: str, stride: int | tuple[int, int]) -> tuple[int, int]:
    """``(temporal, spatial)`` stride; an int strides time too except for ``"2d"`` convolutions."""
    if isinstance(stride, int):
        return (1 if kind == "2d" else stride), stride
    return tuple(stride)


def make_pair(in_ch: int, mid: int, out_ch: int, k: int, kt: int, stride: tuple[int, int], bn_eps: float,
              temporal_first: bool = False) -> nn.Sequential:
    """A (2+1)D pair: 1xkxk (spatial stride) and kt x1x1 (temporal stride) with BN and ReLU between."""
    st, ss = stride
    spatial = dict(kernel_size=(1, k, k), stride=(1, ss, ss), padding=(0, k // 2, k // 2), bias=False)
    temporal = dict(kernel_size=(kt, 1, 1), stride=(st, 1, 1), padding=(kt // 2, 0, 0), bias=False)
    first, second = (temporal, spatial) if temporal_first else (spatial, temporal)
    return nn.Sequential(nn.Conv3d(in_ch, mid, **first), nn.BatchNorm3d(mid, eps=bn_eps), nn.ReLU(inplace=True),
                         nn.Conv3d(mid, out_ch, **second))


def make_conv(kind: str, in_ch: int, out_ch: int, stride: int | tuple[int, int] = 1, mid: int | None = None,
              bn_eps: float = 1e-5) -> nn.Module:
    """The 3x3x3-position convolution of a block, of type ``kind`` (see the module docstring).

    ``bn_eps`` is the epsilon of the batch norm inside a (2+1)D pair or an ip-CSN convolution.
    """
    st, ss = stride_pair(kind, stride)
    if kind == "3d":
        return nn.Conv3d(in_ch, out_ch, 3, stride=(st, ss, ss), padding=1, bias=False)
    if kind == "2d":
        return nn.Conv3d(in_ch, out_ch, (1, 3, 3), stride=(st, ss, ss), padding=(0, 1, 1), bias=False)
    if kind == "2plus1d":
        return make_pair(in_ch, mid if mid is not None else midplanes_for(in_ch, out_ch), out_ch, 3, 3, (st, ss),
                         bn_eps)
    if kind == "2plus1d_tfirst":
        return make_pair(in_ch, out_ch, out_ch, 3, 3, (st, ss), bn_eps, temporal_first=True)
    if in_ch != out_ch:
        raise ValueError(f"a channel-separated ({kind!r}) convolution keeps its width, got {in_ch} -> {out_ch}")
    depthwise = nn.Conv3d(out_ch, out_ch, 3, stride=(st, ss, ss), padding=1, groups=out_ch, bias=False)
    if kind == "ir":
        return depthwise
    if kind == "ip":
        return nn.Sequential(nn.Conv3d(in_ch, out_ch, 1, bias=False), nn.BatchNorm3d(out_ch, eps=bn_eps), depthwise)
    raise ValueError(f"conv type must be one of {CONV_TYPES}, got {kind!r}")


def make_shortcut(kind: str, in_ch: int, out_ch: int, stride: tuple[int, int], bn_eps: float,
                  mid_bn_eps: float) -> nn.Sequential:
    """The projection shortcut: a strided 1x1x1 convolution and BN (``"conv"``), or a 1x1x1 (2+1)D
    pair to ``floor(3 N_in N_out / (N_in + 3 N_out))`` channels and BN (``"2plus1d"``)."""
    st, ss = stride
    if kind == "2plus1d":
        mid = midplanes_for(in_ch, out_ch, k=1, kt=3)
        pair = nn.Sequential(nn.Conv3d(in_ch, mid, 1, stride=(1, ss, ss), bias=False),
                             nn.BatchNorm3d(mid, eps=mid_bn_eps), nn.ReLU(inplace=True),
                             nn.Conv3d(mid, out_ch, 1, stride=(st, 1, 1), bias=False))
        return nn.Sequential(pair, nn.BatchNorm3d(out_ch, eps=bn_eps))
    return nn.Sequential(nn.Conv3d(in_ch, out_ch, 1, stride=(st, ss, ss), bias=False),
                         nn.BatchNorm3d(out_ch, eps=bn_eps))


class BasicBlock(nn.Module):
    """Two 3x3x3-position convolutions with BN (and ReLU after the first), plus the shortcut."""

    expansion = 1

    def __init__(self, in_ch: int, planes: int, kind: str, stride: int | tuple[int, int] = 1,
                 downsample: nn.Module | None = None, midplanes: str = "torchvision", bn_eps: float = 1e-5,
                 mid_bn_eps: float | None = None, conv1_t: int = 1):
        super().__init__()  # conv1_t: accepted for one block signature; VideoResNet checks it is 1 here
        mid_eps = bn_eps if mid_bn_eps is None else mid_bn_eps
        block_mid = midplanes_for(in_ch, planes) if midplanes == "torchvision" else None
        self.conv1 = nn.Sequential(make_conv(kind, in_ch, planes, stride, block_mid, mid_eps),
                                   nn.BatchNorm3d(planes, eps=bn_eps), nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(make_conv(kind, planes, planes, 1, block_mid, mid_eps),
                                   nn.BatchNorm3d(planes, eps=bn_eps))
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.conv2(self.conv1(x))
        return self.relu(out + residual)


class Bottleneck(nn.Module):
    """1x1x1 reduce (``conv1_t``x1x1 with a temporal kernel), a 3x3x3-position convolution (carrying
    the stride), 1x1x1 expand (x4)."""

    expansion = 4

    def __init__(self, in_ch: int, planes: int, kind: str, stride: int | tuple[int, int] = 1,
                 downsample: nn.Module | None = None, midplanes: str = "torchvision", bn_eps: float = 1e-5,
                 mid_bn_eps: float | None = None, conv1_t: int = 1):
        super().__init__()
        out_ch = planes * self.expansion
        mid = midplanes_for(in_ch, planes) if midplanes == "torchvision" else None
        reduce = nn.Conv3d(in_ch, planes, (conv1_t, 1, 1), padding=(conv1_t // 2, 0, 0), bias=False)
        self.conv1 = nn.Sequential(reduce, nn.BatchNorm3d(planes, eps=bn_eps), nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(make_conv(kind, planes, planes, stride, mid,
                                             bn_eps if mid_bn_eps is None else mid_bn_eps),
                                   nn.BatchNorm3d(planes, eps=bn_eps), nn.ReLU(inplace=True))
        self.conv3 = nn.Sequential(nn.Conv3d(planes, out_ch, 1, bias=False), nn.BatchNorm3d(out_ch, eps=bn_eps))
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.conv3(self.conv2(self.conv1(x)))
        return self.relu(out + residual)


def make_stem(kind: str, in_chans: int, width: int, num_frames: int, pool1: bool, bn_eps: float,
              width_mult: float, mid_bn_eps: float | None = None) -> nn.Sequential:
    """conv1 (and pool1): ``(B, C, T, H, W) -> (B, width, T', H/2, W/2)`` (``H/4`` with pool1)."""
    if kind == "3d":
        layers = [nn.Conv3d(in_chans, width, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False)]
    elif kind == "2d":
        layers = [nn.Conv3d(in_chans, width, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False)]
    elif kind == "fold":  # the kernel spans the whole clip: (B, C, T, H, W) -> (B, width, 1, H/2, W/2)
        layers = [nn.Conv3d(in_chans, width, (num_frames, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False)]
    elif kind in ("2plus1d", "2plus1d_paper"):
        mid = scale_channels(45, width_mult) if kind == "2plus1d" else midplanes_for(in_chans, width, k=7)
        layers = list(make_pair(in_chans, mid, width, 7, 3, (1, 2), bn_eps if mid_bn_eps is None else mid_bn_eps))
    else:
        raise ValueError(f"stem must be one of {STEMS}, got {kind!r}")
    layers += [nn.BatchNorm3d(width, eps=bn_eps), nn.ReLU(inplace=True)]
    if pool1:
        layers.append(nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)))
    return nn.Sequential(*layers)


class VideoResNet(Classifier):
    """A video ResNet described by data.

    Args:
        depth: 10, 18, 26, 34, 50, 101 or 152 (block type and counts from ``DEPTHS``).
        stem: ``"3d"``, ``"2d"``, ``"2plus1d"`` or ``"fold"`` (R2D: needs ``num_frames``).
        conv_types: one convolution type per stage (``CONV_TYPES``), or one string for all four.
        midplanes: ``"torchvision"`` (per block) or ``"paper"`` (per convolution), for ``"2plus1d"``.
        pool1: the CSN paper's max pool after the stem (CSN layout).
        num_frames: clip length; only the ``"fold"`` stem depends on it (and checks it).
        bn_eps: batch-norm epsilon (1e-5 as torchvision; the Caffe2 VMZ models used 1e-3).
        width_mult: multiplies every width (stem, stages, ``midplanes``).
        strides: four ``(temporal, spatial)`` stage strides; ``None``: ``(1, 1)`` then ``(2, 2)``
            (``(1, 2)`` for ``"2d"`` stages).
        conv1_t: temporal kernel of each bottleneck's first convolution, one int or one per stage.
        shortcut: ``"conv"`` (1x1x1 + BN) or ``"2plus1d"`` (a 1x1x1 (2+1)D pair + BN).
        mid_bn_eps: epsilon of the batch norms inside (2+1)D pairs (``None``: ``bn_eps``).
        mean, std: the input normalisation the weights expect (``default_cfg``; the data pipeline
            uses it), per channel in [0, 1] units; ``None``: torchvision's Kinetics values.
    """

    def __init__(self, depth: int = 18, stem: str = "3d", conv_types: str | tuple[str, ...] = "3d",
                 midplanes: str = "torchvision", pool1: bool = False, num_classes: int = 400, in_chans: int = 3,
                 num_frames: int = 16, img_size: int = 112, width_mult: float = 1.0, drop_rate: float = 0.0,
                 bn_eps: float = 1e-5, paper: str = TRAN2018, strides: tuple | None = None,
                 conv1_t: int | tuple[int, ...] = 1, shortcut: str = "conv", mid_bn_eps: float | None = None,
                 mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None):
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"depth must be one of {sorted(DEPTHS)}, got {depth!r}")
        if isinstance(conv_types, str):
            conv_types = (conv_types,) * 4
        conv_types = tuple(conv_types)
        if len(conv_types) != 4 or any(k not in CONV_TYPES for k in conv_types):
            raise ValueError(f"conv_types must be 4 of {CONV_TYPES}, got {conv_types!r}")
        if midplanes not in ("torchvision", "paper"):
            raise ValueError(f"midplanes must be 'torchvision' or 'paper', got {midplanes!r}")
        if shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut must be one of {SHORTCUTS}, got {shortcut!r}")
        if strides is None:
            strides = [stride_pair(kind, 1 if i == 0 else 2) for i, kind in enumerate(conv_types)]
        strides = [tuple(int(v) for v in st) for st in strides]
        if len(strides) != 4 or any(len(st) != 2 or min(st) < 1 for st in strides):
            raise ValueError(f"strides must be 4 (temporal, spatial) pairs of positive ints, got {strides!r}")
        conv1_t = (conv1_t,) * 4 if isinstance(conv1_t, int) else tuple(conv1_t)
        if len(conv1_t) != 4 or any(k < 1 or k % 2 == 0 for k in conv1_t):
            raise ValueError(f"conv1_t must be one odd kernel size or 4 of them, got {conv1_t!r}")
        block_type, counts = DEPTHS[depth]
        block = BasicBlock if block_type == "basic" else Bottleneck
        if block is BasicBlock and any(k in ("ip", "ir") for k in conv_types):
            raise ValueError("channel-separated convolutions need bottleneck blocks (depth 26, 50, 101 or 152)")
        if block is BasicBlock and any(k != 1 for k in conv1_t):
            raise ValueError("conv1_t (a temporal kernel on the bottleneck's first 1x1x1) needs bottleneck blocks")
        mid_bn_eps = bn_eps if mid_bn_eps is None else mid_bn_eps
        self.num_frames = num_frames
        self.stem_type = stem
        in_ch = scale_channels(64, width_mult)
        self.stem = make_stem(stem, in_chans, in_ch, num_frames, pool1, bn_eps, width_mult, mid_bn_eps)
        for i, (kind, n, width, stride, kt) in enumerate(zip(conv_types, counts, STAGE_WIDTHS, strides, conv1_t)):
            planes = scale_channels(width, width_mult)
            out_ch = planes * block.expansion
            downsample = None
            if stride != (1, 1) or in_ch != out_ch:
                downsample = make_shortcut(shortcut, in_ch, out_ch, stride, bn_eps, mid_bn_eps)
            blocks = [block(in_ch, planes, kind, stride, downsample, midplanes, bn_eps, mid_bn_eps, kt)]
            blocks += [block(out_ch, planes, kind, 1, None, midplanes, bn_eps, mid_bn_eps, kt) for _ in range(n - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            in_ch = out_ch
        self.init_head(in_ch, num_classes, drop_rate, video=True)
        init_weights(self)
        # the sweep's small clip: 4 frames (the "fold" stem needs its own) at 16x16 keeps the
        # 152-layer models' CPU forward+backward in a few seconds
        test_t = num_frames if stem == "fold" else 4
        norm = {k: tuple(v) for k, v in (("mean", mean), ("std", std)) if v is not None}
        self.default_cfg = make_cfg((in_chans, num_frames, img_size, img_size), paper,
                                    test_input_size=(in_chans, test_t, 16, 16), **norm)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.stem_type == "fold" and x.shape[2] != self.num_frames:
            raise ValueError(f"this R2D folds {self.num_frames} frames into its first layer, got a clip of "
                             f"{x.shape[2]} (build it with num_frames={x.shape[2]})")
        x = self.stem(x)  # (B, 64, T, H/2, W/2); T = 1 for the "fold" stem
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)  # (B, C, T/8, H/16, W/16) for 3D stages at 112: (B, 512, T/8, 7, 7)



def resnet2d_key(key3d: str) -> str:
    """The 2D ResNet (torchvision/lightvid ``resnet*``) state_dict name of a :class:`VideoResNet` one.

    ``stem.0`` <- ``conv1``, ``stem.1`` <- ``bn1``, ``layerX.Y.convN.0`` <- ``layerX.Y.convN``,
    ``layerX.Y.convN.1`` <- ``layerX.Y.bnN``; ``downsample`` and ``fc`` keep their names. Names
    with no 2D counterpart (the (2+1)D and ip-CSN inner modules) are returned unchanged.
    """
    parts = key3d.split(".")
    if parts[0] == "stem" and parts[1] in ("0", "1"):
        return ".".join([("conv1" if parts[1] == "0" else "bn1")] + parts[2:])
    if parts[0].startswith("layer") and len(parts) == 5 and parts[2].startswith("conv") and parts[3] in ("0", "1"):
        n = parts[2][4:]
        return ".".join(parts[:2] + [("conv" if parts[3] == "0" else "bn") + n, parts[4]])
    return key3d


@torch.no_grad()
def inflate_from_resnet2d(model2d: nn.Module, model3d: "VideoResNet", exclude: tuple[str, ...] = ()) -> "VideoResNet":
    """Initialise a 3D/2D-stage video ResNet from a 2D ResNet of the same depth (I3D-style inflation).

    Each 2D kernel ``(O, I, kh, kw)`` becomes ``(O, I, kt, kh, kw)`` by
    :func:`lightvid.models.inflation.inflate_tensor` (repeat along time, divide by ``kt``);
    everything else is copied. Names are mapped by :func:`resnet2d_key`; every tensor of
    ``model3d`` (outside the ``exclude`` prefixes, e.g. ``("fc",)``) must find a 2D source of a
    matching shape, or a ``UserError`` lists the ones that do not. With ``kt = 1`` everywhere
    (``fr2d_18(pool1=True)`` against ``resnet18``) the video model is the 2D one applied per frame.
    """
    src, dst = model2d.state_dict(), model3d.state_dict()
    new, unmatched = inflate_state_dict(src, dst, key_map=resnet2d_key, exclude=exclude)
    if unmatched:
        bad = [f"{u.key} <- {u.src_key}" + ("" if u.src_shape is None else f" {u.got_shape} vs {u.dst_shape}")
               for u in unmatched]
        more = f" (+{len(bad) - 6} more)" if len(bad) > 6 else ""
        raise UserError(f"inflate_from_resnet2d: no matching 2D tensor for {', '.join(bad[:6])}{more}")
    model3d.load_state_dict(new, strict=False)
    return model3d

# ---- R3D: full 3D convolutions (r3d_18 is torchvision's) ----
@register_model
def r3d_10(**kwargs):
    return VideoResNet(10, **kwargs)


@register_model
def r3d_18(**kwargs):
    return VideoResNet(18, **kwargs)


@register_model
def r3d_34(**kwargs):
    return VideoResNet(34, **kwargs)


@register_model
def r3d_50(**kwargs):
    return VideoResNet(50, **kwargs)


@register_model
def r3d_101(**kwargs):
    return VideoResNet(101, **kwargs)


@register_model
def r3d_152(**kwargs):
    return VideoResNet(152, **kwargs)


# ---- 2D baselines of Tran et al. 2018 ----
@register_model
def r2d_18(**kwargs):
    return VideoResNet(18, stem="fold", conv_types="2d", **kwargs)


@register_model
def fr2d_18(**kwargs):
    return VideoResNet(18, stem="2d", conv_types="2d", **kwargs)


# ---- mixed convolutions MCx / reversed rMCx (mc3_18 is torchvision's) ----
@register_model
def mc2_18(**kwargs):
    return VideoResNet(18, stem="3d", conv_types=MC[2], **kwargs)


@register_model
def mc3_18(**kwargs):
    return VideoResNet(18, stem="3d", conv_types=MC[3], **kwargs)


@register_model
def mc4_18(**kwargs):
    return VideoResNet(18, stem="3d", conv_types=MC[4], **kwargs)


@register_model
def mc5_18(**kwargs):
    return VideoResNet(18, stem="3d", conv_types=MC[5], **kwargs)


@register_model
def rmc2_18(**kwargs):
    return VideoResNet(18, stem="2d", conv_types=RMC[2], **kwargs)


@register_model
def rmc3_18(**kwargs):
    return VideoResNet(18, stem="2d", conv_types=RMC[3], **kwargs)


@register_model
def rmc4_18(**kwargs):
    return VideoResNet(18, stem="2d", conv_types=RMC[4], **kwargs)


@register_model
def rmc5_18(**kwargs):
    return VideoResNet(18, stem="2d", conv_types=RMC[5], **kwargs)


# ---- R(2+1)D (r2plus1d_18 is torchvision's; 34/50 use the paper's per-convolution widths) ----
@register_model
def r2plus1d_18(**kwargs):
    return VideoResNet(18, stem="2plus1d", conv_types="2plus1d", **{"midplanes": "torchvision", **kwargs})


@register_model
def r2plus1d_34(**kwargs):
    return VideoResNet(34, stem="2plus1d", conv_types="2plus1d", **{"midplanes": "paper", **kwargs})


@register_model
def r2plus1d_50(**kwargs):
    return VideoResNet(50, stem="2plus1d", conv_types="2plus1d", **{"midplanes": "paper", **kwargs})


@register_model
def r2plus1d_34_mmaction(**kwargs):
    """R(2+1)D-34 as MMAction2 builds it (``ResNet2Plus1d``, ``r2plus1d_r34`` configs): the paper's
    middle widths everywhere (83 in the stem), a max pool after the stem, a (2+1)D 1x1x1 pair in
    the projection shortcuts; batch norms at eps 1e-3 outside and 1e-5 inside the pairs."""
    cfg = dict(stem="2plus1d_paper", conv_types="2plus1d", midplanes="paper", pool1=True, shortcut="2plus1d",
               bn_eps=1e-3, mid_bn_eps=1e-5, num_frames=8, img_size=112, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return VideoResNet(34, **{**cfg, **kwargs})


@register_model
def r2plus1d_50_pytorchvideo(**kwargs):
    """R(2+1)D-50 as PyTorchVideo builds it (``create_r2plus1d``, the hub's ``r2plus1d_r50``): a
    1x7x7 stem without pool, bottlenecks whose (2+1)D convolution runs the 3x1x1 first at the
    bottleneck width, spatial stride 2 in every stage and temporal stride 2 in the last two."""
    cfg = dict(stem="2d", conv_types="2plus1d_tfirst", strides=((1, 2), (1, 2), (2, 2), (2, 2)), num_frames=16,
               img_size=224, mean=PYTORCHVIDEO_MEAN, std=PYTORCHVIDEO_STD)
    return VideoResNet(50, **{**cfg, **kwargs})


# ---- Slow: the SlowFast paper's Slow pathway alone (PyTorchVideo's slow_r50) ----
@register_model
def slow_r50(**kwargs):
    """Slow-R50: 1x7x7 stem and max pool, 1x3x3 bottleneck convolutions, a temporal kernel of 3 in
    the first 1x1x1 of res4 and res5 only, no temporal downsampling (8 frames in, 8 at the head)."""
    cfg = dict(stem="2d", conv_types="2d", pool1=True, conv1_t=(1, 1, 3, 3), num_frames=8, img_size=224,
               paper=SLOWFAST2019, mean=PYTORCHVIDEO_MEAN, std=PYTORCHVIDEO_STD)
    return VideoResNet(50, **{**cfg, **kwargs})


# ---- channel-separated networks (the CSN paper layout: pool1, stages at T, T/2, T/4, T/8) ----
def _csn(depth: int, kind: str, **kwargs) -> VideoResNet:
    cfg = dict(stem="3d", conv_types=kind, pool1=True, num_frames=32, img_size=224, bn_eps=1e-3, paper=CSN2019)
    return VideoResNet(depth, **{**cfg, **kwargs})


@register_model
def ip_csn_26(**kwargs):
    return _csn(26, "ip", **kwargs)


@register_model
def ip_csn_50(**kwargs):
    return _csn(50, "ip", **kwargs)


@register_model
def ip_csn_101(**kwargs):
    return _csn(101, "ip", **kwargs)


@register_model
def ip_csn_152(**kwargs):
    return _csn(152, "ip", **kwargs)


@register_model
def ir_csn_26(**kwargs):
    return _csn(26, "ir", **kwargs)


@register_model
def ir_csn_50(**kwargs):
    return _csn(50, "ir", **kwargs)


@register_model
def ir_csn_101(**kwargs):
    return _csn(101, "ir", **kwargs)


@register_model
def ir_csn_152(**kwargs):
    return _csn(152, "ir", **kwargs)
