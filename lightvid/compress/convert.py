"""Weight transfer between 3D, (2+1)D, time-folded 2D and 2D networks (the C3D compression document).

``convert(model, to=NAME, **model_kwargs) -> (converted_model, report)``:

* ``c3d`` (or ``c3d_2plus1d``) -> ``c3d_mc3`` / ``c3d_mc4`` / ``c3d_mc5``: time folded into
  channels; exact banded block-Toeplitz weights where the folded layer keeps every frame,
  a linear pair-pooling construction (the frame pair's mean by default) where it absorbs
  the 2x temporal max-pool (:mod:`lightvid.compress.fold`);
* ``c3d`` -> ``c3d_2plus1d``: SVD factorisation of every 3x3x3 convolution
  (:mod:`lightvid.compress.factorize`); ``c3d_2plus1d`` -> ``c3d``: the exact composition;
* a 2D model -> a 3D model: inflation, :func:`lightvid.compress.inflate.inflate`
  (Carreira & Zisserman, "Quo Vadis, Action Recognition?", CVPR 2017).

The report has one :class:`LayerRecord` per transferred layer: ``exact`` (by construction),
``rel_err`` = ``||out - ref|| / ||ref||`` of the layer's output on random N(0, 1) input at that
layer, ``rel_err_act`` the same on the source network's own activations for the calibration
clips, and a final ``logits`` record (end-to-end on the calibration clips). A layer that
absorbs a pool is compared after ReLU and pool, where the two networks' tensors first match.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from lightvid.compress.factorize import compose_2plus1d, factorize_conv3d
from lightvid.compress.fold import TIME_POOL_MODES, fold_conv, fold_time
from lightvid.errors import UserError
from lightvid.models.base import scale_channels
from lightvid.models.c3d import C3D, Conv2Plus1d
from lightvid.models.registry import create_model, get_builder

EXACT_TOL = 1e-5


@dataclass
class LayerRecord:
    layer: str
    method: str  # copy | toeplitz | fold_pool:<mode> | svd | compose | fc_fold | inflate | end-to-end
    exact: bool
    rel_err: float
    rel_err_act: float | None = None
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out - ref).norm() / ref.norm().clamp_min(1e-12))


def format_report(report: list[LayerRecord], title: str = "") -> str:
    """The report of :func:`convert` as a table, one row per layer."""
    lines = [title] if title else []
    lines.append(f"{'layer':<10} {'method':<18} {'transfer':<8} {'rel_err (random)':>17} {'rel_err (clips)':>16}  note")
    for r in report:
        act = "-" if r.rel_err_act is None else f"{r.rel_err_act:.2e}"
        err = "nan" if math.isnan(r.rel_err) else f"{r.rel_err:.2e}"
        exact = "exact" if r.exact else "approx"
        lines.append(f"{r.layer:<10} {r.method:<18} {exact:<8} {err:>17} {act:>16}  {r.note}")
    return "\n".join(lines)


def convert(model: nn.Module, to: str, calib: torch.Tensor | None = None, time_pool: str = "mean",
            seed: int = 0, **model_kwargs) -> tuple[nn.Module, list[LayerRecord]]:
    """Build model ``to`` and initialise it from ``model``; returns ``(model, report)``.

    ``calib``: clips ``(B, C, T, H, W)`` run through the source to fit pooled layers (``"fit"``) and
    measure ``rel_err_act`` (default: 2 random N(0, 1) clips of the source's input size).
    ``time_pool``: ``"mean"`` (default), ``"fit"`` or ``"even"`` for folded layers that absorb a
    temporal pool (:mod:`lightvid.compress.fold`). ``model_kwargs`` override the target's constructor
    arguments (default: those inferred from the source). The converted model is returned in eval mode, with the
    constructor arguments it was built with in ``model.convert_kwargs``.
    """
    if time_pool not in TIME_POOL_MODES:
        raise UserError(f"time_pool must be one of {', '.join(TIME_POOL_MODES)}, got {time_pool!r}")
    src_name = getattr(model, "default_cfg", {}).get("architecture", type(model).__name__)
    gen = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        if isinstance(model, C3D):
            if model.folded:
                raise UserError(f"convert: the source {src_name} is already time-folded; "
                                "convert from c3d or c3d_2plus1d")
            if get_builder(to).__module__ != C3D.__module__:
                raise UserError(f"convert: no transfer from {src_name} to {to}; C3D converts to c3d, "
                                "c3d_2plus1d, c3d_mc3, c3d_mc4, c3d_mc5")
            kwargs = dict(_c3d_kwargs(model), **model_kwargs)
            dst = _build(to, kwargs)
            dst.convert_kwargs = kwargs
            dst.eval()
            if calib is None:
                calib = torch.randn(2, *model.default_cfg["input_size"], generator=gen)
            report = _convert_c3d(model, dst, calib, time_pool, gen)
        else:
            dst, report = _convert_inflate(model, to, src_name, calib, gen, model_kwargs)
    finally:
        model.train(was_training)
    return dst, report


def _build(name: str, kwargs: dict) -> nn.Module:
    try:
        return create_model(name, **kwargs)
    except TypeError as e:
        raise UserError(f"convert: cannot build {name} with {kwargs}: {e}") from None


def _c3d_kwargs(src: C3D) -> dict:
    """Constructor arguments of a C3D, read back from its layers."""
    conv1 = src.conv1.spatial if isinstance(src.conv1, Conv2Plus1d) else src.conv1
    width = conv1.out_channels / 64
    size = src.default_cfg["input_size"]
    fc_width = round(src.num_features / width)
    if scale_channels(fc_width, width) != src.num_features:
        fc_width = src.num_features
    return dict(num_classes=src.num_classes, in_chans=conv1.in_channels, num_frames=size[1], img_size=size[2],
                width_mult=width, fc_width=fc_width, drop_rate=src.dropout.p)


def _effective_3d(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """``(weight, bias, exact)`` of the single 3D convolution ``layer`` computes."""
    if isinstance(layer, nn.Conv3d):
        return layer.weight.detach(), layer.bias.detach(), True
    w, b = compose_2plus1d(layer.spatial.weight, layer.spatial.bias, layer.temporal.weight, layer.temporal.bias)
    return w, b, not bool(layer.spatial.bias.detach().abs().max() > 0)


def _check_shape(name: str, param: torch.Tensor, value: torch.Tensor) -> None:
    if param.shape != value.shape:
        raise UserError(f"convert: {name} has shape {tuple(param.shape)} in the target but the transfer gives "
                        f"{tuple(value.shape)}; pass the source's width_mult/fc_width/num_frames")


@torch.no_grad()
def _set(module: nn.Module, name: str, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    _check_shape(f"{name}.weight", module.weight, weight)
    module.weight.copy_(weight)
    if bias is not None:
        _check_shape(f"{name}.bias", module.bias, bias)
        module.bias.copy_(bias)


@torch.no_grad()
def _convert_c3d(src: C3D, dst: C3D, calib: torch.Tensor, time_pool: str, gen: torch.Generator) -> list[LayerRecord]:
    inputs: dict[str, torch.Tensor] = {}
    convs = [n for n in src.layer_order if n.startswith("conv")]
    hooks = [getattr(src, n).register_forward_hook(lambda m, i, o, n=n: inputs.__setitem__(n, i[0].detach()))
             for n in convs]
    try:
        ref_logits = src(calib)
    finally:
        for h in hooks:
            h.remove()
    report: list[LayerRecord] = []
    for name in [n for n in dst.layer_order if n.startswith("conv")]:
        s, d, x = getattr(src, name), getattr(dst, name), inputs[name]  # x: (B, C_in, T, H, W)
        T = x.shape[2]
        note = ""
        if isinstance(d, nn.Conv3d):
            w, b, exact = _effective_3d(s)
            _set(d, name, w, b)
            method = "copy" if isinstance(s, nn.Conv3d) else "compose"
            ref_fn, out_fn = s, d
        elif isinstance(d, Conv2Plus1d):
            if isinstance(s, Conv2Plus1d):
                d.load_state_dict(s.state_dict())
                method, exact = "copy", True
            else:
                ws, bs, wt, bt, kept = factorize_conv3d(s.weight, s.bias, d.spatial.out_channels, gen)
                _set(d.spatial, f"{name}.spatial", ws, bs)
                _set(d.temporal, f"{name}.temporal", wt, bt)
                method, exact = "svd", kept > 1 - 1e-9
                note = f"kept {kept:.1%} of ||W||^2"
            ref_fn, out_fn = s, d
        else:  # nn.Conv2d over folded time
            w3, b3, exact = _effective_3d(s)
            C_out = w3.shape[0]
            T_out = d.out_channels // C_out
            mode = time_pool if T_out < T else "exact"
            w, b = fold_conv(w3, b3, T, T_out, time_pool, calib=x if T_out < T else None, padding=s_padding(s))
            _set(d, name, w, b)
            if T_out == T:
                method = "toeplitz" if isinstance(s, nn.Conv3d) else "compose+toeplitz"
                ref_fn = lambda x3, s=s: fold_time(s(x3))  # noqa: E731
                out_fn = lambda x3, d=d: d(fold_time(x3))  # noqa: E731
            else:
                exact = False
                method = f"fold_pool:{mode}"
                stage = name[4]
                sp, dp = getattr(src, f"pool{stage}"), getattr(dst, f"pool{stage}")
                note = f"{T}->{T_out} frames; compared after ReLU and pool{stage}"
                ref_fn = lambda x3, s=s, sp=sp: fold_time(sp(F.relu(s(x3))))  # noqa: E731
                out_fn = lambda x3, d=d, dp=dp: dp(F.relu(d(fold_time(x3))))  # noqa: E731
        rnd = torch.randn(x.shape, generator=gen)
        report.append(LayerRecord(name, method, bool(exact), rel_err(out_fn(rnd), ref_fn(rnd)),
                                  rel_err(out_fn(x), ref_fn(x)), note))
    report += _convert_c3d_head(src, dst, gen)
    out_logits = dst(calib)
    all_exact = all(r.exact for r in report)
    agree = float((out_logits.argmax(1) == ref_logits.argmax(1)).float().mean())
    report.append(LayerRecord("logits", "end-to-end", all_exact, rel_err(out_logits, ref_logits), None,
                              f"top-1 agreement {agree:.0%} on {len(calib)} calibration clips"))
    return report


def s_padding(layer: nn.Module) -> int:
    """Temporal padding of a 3D convolution or (2+1)D pair."""
    conv = layer.temporal if isinstance(layer, Conv2Plus1d) else layer
    return int(conv.padding[0])


@torch.no_grad()
def _convert_c3d_head(src: C3D, dst: C3D, gen: torch.Generator) -> list[LayerRecord]:
    records = []
    w, b = src.fc6.weight, src.fc6.bias  # (F, C*16)
    T_end = dst.fc6.in_features // src.fc6.in_features if dst.folded else 1
    if T_end < 1 or T_end * src.fc6.in_features != dst.fc6.in_features:
        raise UserError(f"convert: fc6 takes {dst.fc6.in_features} features in the target, "
                        f"{src.fc6.in_features} in the source; pass the source's width_mult/num_frames")
    if dst.folded:
        # the 3D head averages the T_end remaining frames; folded channel t*C + c -> c
        _set(dst.fc6, "fc6", w.repeat(1, T_end) / T_end, b)
        feats = torch.randn(2, dst.fc6.in_features, generator=gen)  # (B, T_end*C*16), index (t*C + c)*16 + hw
        mean = feats.view(2, T_end, -1).mean(1)  # (B, C*16)
        records.append(LayerRecord("fc6", "fc_fold" if T_end > 1 else "copy", True,
                                   rel_err(dst.fc6(feats), src.fc6(mean)), None,
                                   f"averages {T_end} folded frames" if T_end > 1 else ""))
    else:
        _set(dst.fc6, "fc6", w, b)
        records.append(LayerRecord("fc6", "copy", True, 0.0))
    for name in ("fc7", "fc8"):
        s, d = getattr(src, name), getattr(dst, name)
        if isinstance(s, nn.Linear) and isinstance(d, nn.Linear):
            _set(d, name, s.weight, s.bias)
            records.append(LayerRecord(name, "copy", True, 0.0))
    return records


@torch.no_grad()
def _convert_inflate(src: nn.Module, to: str, src_name: str, calib, gen, model_kwargs) -> tuple[nn.Module, list]:
    has2d = any(isinstance(m, nn.Conv2d) for m in src.modules())
    has3d = any(isinstance(m, nn.Conv3d) for m in src.modules())
    if not has2d or has3d:
        raise UserError(f"convert: no transfer from {src_name} to {to}; supported: c3d -> c3d_2plus1d/c3d_mc3/"
                        "c3d_mc4/c3d_mc5, c3d_2plus1d -> c3d, and a 2D model -> a 3D model (inflation)")
    try:
        from lightvid.compress.inflate import inflate
    except ImportError as e:
        raise UserError(f"convert: 2D->3D inflation needs lightvid.compress.inflate ({e})") from None
    kwargs = dict(num_classes=getattr(src, "num_classes", None), **model_kwargs)
    if kwargs["num_classes"] is None:
        kwargs.pop("num_classes")
    dst = _build(to, kwargs)
    dst.convert_kwargs = kwargs
    if not any(isinstance(m, nn.Conv3d) for m in dst.modules()):
        raise UserError(f"convert: {to} has no 3D convolution to inflate {src_name} into")
    dst = inflate(src, dst)
    dst.convert_kwargs = kwargs
    dst.eval()
    convs2d = {n: m for n, m in src.named_modules() if isinstance(m, nn.Conv2d)}
    report = []
    for name, c3 in dst.named_modules():
        c2 = convs2d.get(name)
        if not isinstance(c3, nn.Conv3d) or c2 is None:
            continue
        err = _static_error(c2, c3, gen)
        report.append(LayerRecord(name, "inflate", err < EXACT_TOL, err, None,
                                  "static clip vs 2D on one frame, frames clear of the temporal padding"))
    if not report:
        raise UserError(f"convert: no convolution of {to} matches one of {src_name} by name; cannot inflate")
    # end to end on a "boring" video: the 3D model on a repeated frame vs the 2D model on the frame
    if calib is not None:
        clip = calib
    else:
        size = dst.default_cfg.get("test_input_size") or dst.default_cfg["input_size"]
        clip = torch.randn(2, *size, generator=gen)
    frame = clip[:, :, clip.shape[2] // 2]  # (B, C, H, W)
    boring = frame[:, :, None].expand(-1, -1, clip.shape[2], -1, -1).contiguous()  # (B, C, T, H, W)
    src.eval()
    ref, out = src(frame), dst(boring)
    err = rel_err(out, ref) if out.shape == ref.shape else float("nan")
    agree = float((out.argmax(1) == ref.argmax(1)).float().mean()) if out.shape == ref.shape else float("nan")
    report.append(LayerRecord("logits", "end-to-end", err < EXACT_TOL, err, None,
                              f"boring clip vs 2D on its frame; top-1 agreement {agree:.0%} on {len(frame)} clips"))
    return dst, report


def _static_error(c2: nn.Conv2d, c3: nn.Conv3d, gen: torch.Generator) -> float:
    """Inflation check: a 3D conv on a clip of one repeated frame equals the 2D conv on that frame."""
    k, s, p = c3.kernel_size[0], c3.stride[0], c3.padding[0]
    T = k + 2 * p + 2 * s
    frame = torch.randn(1, c2.in_channels, 9, 9, generator=gen)
    out2 = c2(frame)  # (1, C_out, H', W')
    out3 = c3(frame[:, :, None].expand(-1, -1, T, -1, -1).contiguous())  # (1, C_out, T', H', W')
    inside = [t for t in range(out3.shape[2]) if t * s - p >= 0 and t * s - p + k <= T]
    if not inside or out3.shape[-2:] != out2.shape[-2:]:
        return float("nan")
    return max(rel_err(out3[:, :, t], out2) for t in inside)
