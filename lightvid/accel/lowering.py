"""Factorised 3D convolutions run as 2D ones, chosen per layer by measurement.

A ``Conv3d`` whose kernel spans one frame (``1 x kh x kw``: the spatial half of a (2+1)D block,
X3D's and CSN's stems, every pointwise ``1x1x1``) is a ``Conv2d`` over the ``N*T`` frames; one
whose kernel is ``kt x 1 x 1`` (the temporal half, X3D's depthwise ``5x1x1``) is a ``Conv2d``
with a ``kt x 1`` kernel over ``(N, C, T, H*W)``. In channels-last(-3d) memory both reshapes are
views (no copy), and for some shapes PyTorch's CPU convolution is much faster in 2D than in 3D
for the same work (X3D's 3-channel stem: 3.2x on an AVX2 EPYC): oneDNN has tuned 2D kernels
where a 3D factorised shape may fall to a generic path, and PyTorch sends some 3D shapes
(channels-last lost, a grouped temporal kernel) to its slow reference ``slow_conv3d``. The
size of the win depends on the shape and the CPU, so :func:`lower_convs` times both forms on
each layer's real input and keeps the faster.
:func:`channels_last_inputs` is the other layout fix ``optimize`` times whole-model against it,
together with :func:`onednn_convs`: PyTorch runs some small batch-1 convolutions (X3D's and
CSN's pointwise layers past the first stage, R(2+1)D's last stages, any stem with few input
channels) on its single-threaded reference kernels, which also return contiguous memory and so
cost the next layer a layout conversion; oneDNN is several times faster on most of them.
"""
from __future__ import annotations

import copy
from functools import partial
from math import nan

import torch
import torch.nn as nn

from lightvid.accel.per_layer import channels_last_format, record_inputs, relative_error, set_module
from lightvid.accel.timing import median_times
from lightvid.accel.winograd import DirectConv2d, DirectConv3d, direct_from_conv


def lowering_mode(conv: nn.Module) -> str | None:
    """``"frames"`` (kernel ``1 x kh x kw``), ``"time"`` (``kt x 1 x 1``) or None (neither, or not a
    plain zero-padded ``nn.Conv3d``, or one the hybrid Winograd choice kept direct). A ``1x1x1``
    kernel is ``"frames"``."""
    if type(conv) not in (nn.Conv3d, DirectConv3d) or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        return None
    (kt, kh, kw), (st, sh, sw), (pt, ph, pw) = conv.kernel_size, conv.stride, conv.padding
    if kt == 1 and st == 1 and pt == 0:
        return "frames"
    if kh == kw == 1 and sh == sw == 1 and ph == pw == 0:
        return "time"
    return None


class Conv3dAsConv2d(nn.Module):
    """A ``1 x kh x kw`` or ``kt x 1 x 1`` ``Conv3d`` computed by one ``Conv2d`` (same weights)."""

    def __init__(self, conv: nn.Conv3d):
        super().__init__()
        self.mode = lowering_mode(conv)
        if self.mode is None:
            raise ValueError(f"{conv}: not a 1xkxk or kx1x1 zero-padded Conv3d")
        frames = self.mode == "frames"
        w = conv.weight.detach()
        w = w[:, :, 0] if frames else w[..., 0]  # (Co, Ci/g, kh, kw) or (Co, Ci/g, kt, 1)
        pick = (lambda t, _: tuple(t[1:])) if frames else (lambda t, rest: (t[0], rest))  # (kh, kw) or (kt, 1)
        self.conv2d = nn.Conv2d(conv.in_channels, conv.out_channels, tuple(w.shape[2:]), stride=pick(conv.stride, 1),
                                padding=pick(conv.padding, 0), dilation=pick(conv.dilation, 1), groups=conv.groups,
                                bias=conv.bias is not None, device=w.device, dtype=w.dtype)
        with torch.no_grad():
            self.conv2d.weight.copy_(w)
            self.conv2d.weight.data = self.conv2d.weight.data.contiguous(memory_format=torch.channels_last)
            if conv.bias is not None:
                self.conv2d.bias.copy_(conv.bias)
        self.conv2d.requires_grad_(conv.weight.requires_grad)  # optimize() freezes every parameter
        if getattr(conv, "onednn", False):  # forced to oneDNN (onednn_convs): so is its 2D form
            self.conv2d = direct_from_conv(self.conv2d, torch.channels_last)
            self.conv2d.onednn = True
        # what lightvid summary and the FLOP counters read off a Conv3d
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.kernel_size = conv.kernel_size
        self.train(conv.training)

    def extra_repr(self) -> str:
        return f"mode={self.mode}, kernel_size={self.kernel_size}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:  # unbatched (C, T, H, W), as nn.Conv3d accepts
            return self(x.unsqueeze(0)).squeeze(0)
        N, C, T, H, W = x.shape
        if self.mode == "frames":
            x2 = x.transpose(1, 2).reshape(N * T, C, H, W)  # (N*T, C, H, W); a view in channels-last-3d
            y = self.conv2d(x2)  # (N*T, Co, Ho, Wo)
            y = y.unflatten(0, (N, T)).transpose(1, 2)  # (N, Co, T, Ho, Wo)
        else:
            y = self.conv2d(x.reshape(N, C, T, H * W)).unflatten(3, (H, W))  # (N, Co, To, H*W) -> (N, Co, To, H, W)
        # oneDNN returns some shapes (few input channels, depthwise) in NCHW order: give the next
        # layer channels-last-3d, the layout optimize() runs every layer in (a no-op when it is already)
        return y.contiguous(memory_format=torch.channels_last_3d)


def lower_convs(model: nn.Module, example_input: torch.Tensor, repeats: int = 3, verbose: bool = False) -> list:
    """Swap each ``1 x kh x kw`` / ``kt x 1 x 1`` ``Conv3d`` of ``model`` (in place) for a
    :class:`Conv3dAsConv2d` where that times faster on the layer's real input.

    ``example_input`` is run once to record every eligible layer's input; each layer is then
    timed both ways on it (interleaved, median of ``repeats``). Returns ``[(layer, mode or
    "direct", conv3d_ms, conv2d_ms)]``; the chosen forms agree with the 3D convolution to float
    rounding (checked: a relative error over 1e-4 keeps the 3D form, with NaN times).
    """
    eligible = [(n, m) for n, m in model.named_modules() if lowering_mode(m) is not None]
    inputs = record_inputs(model, eligible, example_input)
    choices = []
    for name, conv in eligible:
        if name not in inputs:  # not reached by the example input
            continue
        x = inputs[name]
        lowered = Conv3dAsConv2d(conv)
        with torch.inference_mode():
            ref = conv(x)
            err = relative_error(lowered(x), ref)
            # a 2D form that does not agree (it should always) is not timed and not used
            t = median_times({"3d": conv, "2d": lowered}, x, repeats) if err <= 1e-4 else {"3d": nan, "2d": nan}
        keep = t["2d"] < t["3d"]  # False for NaN
        if keep:
            set_module(model, name, lowered)
        choices.append((name, lowered.mode if keep else "direct", 1e3 * t["3d"], 1e3 * t["2d"]))
        if verbose:
            print(f"{name:<28} {'x'.join(map(str, x.shape)):<20} {'x'.join(map(str, conv.kernel_size)):<6} "
                  f"3d {1e3 * t['3d']:7.2f} ms  2d {1e3 * t['2d']:7.2f} ms -> {choices[-1][1]}", flush=True)
    return choices


def channels_last_inputs(model: nn.Module) -> int:
    """Make every plain ``nn.Conv3d`` of ``model`` (in place) convert its input to channels-last-3d
    first (a :class:`~lightvid.accel.winograd.DirectConv3d`); returns how many.

    ``optimize`` runs the whole model in channels-last-3d, but an element-wise op can hand the
    next convolution contiguous memory (X3D's squeeze-excitation gate, a ``(B, C, T, H, W)``
    tensor times a ``(B, C, 1, 1, 1)`` one, at batch 1), which sends it to a slower kernel.
    """
    convs = [(n, m) for n, m in model.named_modules() if type(m) is nn.Conv3d]
    for name, conv in convs:
        set_module(model, name, direct_from_conv(conv, torch.channels_last_3d))
    return len(convs)


PLAIN_CONVS = (nn.Conv2d, nn.Conv3d, DirectConv2d, DirectConv3d)


def plain_convs(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, conv)`` of each plain ``Conv2d``/``Conv3d`` of ``model`` (or one that only sets its
    input's layout) with zero padding given as numbers: what oneDNN's call can take as it is."""
    return [(n, m) for n, m in model.named_modules()
            if type(m) in PLAIN_CONVS and m.padding_mode == "zeros" and not isinstance(m.padding, str)]


def runs_on_onednn(conv: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``conv`` runs on oneDNN given ``x`` in channels-last memory: forced to
    (:func:`onednn_convs`), or PyTorch's own choice of kernel."""
    return bool(getattr(conv, "onednn", False)
                or pytorch_picks_onednn(conv, x.contiguous(memory_format=channels_last_format(x.dim()))))


def pytorch_picks_onednn(conv: nn.Module, x: torch.Tensor) -> bool | None:
    """Whether PyTorch's own choice of kernel for ``conv`` on ``x`` is already oneDNN (None: it
    cannot say; ``torch._C._select_conv_backend`` is the test suite's hook for that choice)."""
    try:
        backend = torch._C._select_conv_backend(x, conv.weight, conv.bias, list(conv.stride), list(conv.padding),
                                                list(conv.dilation), False, [0] * len(conv.stride), conv.groups,
                                                None)
    except Exception:  # not in this PyTorch: time the layer instead
        return None
    return backend == torch._C._ConvBackend.Mkldnn


def _to_format(conv: nn.Module, fmt: torch.memory_format, x: torch.Tensor) -> torch.Tensor:
    return conv(x).contiguous(memory_format=fmt)


def onednn_convs(model: nn.Module, example_input: torch.Tensor, repeats: int = 3, verbose: bool = False,
                 inputs: dict | None = None) -> list:
    """Run on oneDNN (in channels-last memory) each convolution of ``model`` that PyTorch would
    give its reference kernel on the example input, where that times faster (in place).

    Each eligible layer (a plain ``Conv2d``/``Conv3d``, zero padding given as numbers) is run once
    to record its input; the ones PyTorch already sends to oneDNN are left as they are, the others
    are timed both ways on it (interleaved, median of ``repeats``). Returns ``[(layer, "onednn" or
    "default", default_ms, onednn_ms)]``; a oneDNN result that does not agree to float rounding
    (relative error over 1e-4) is never used (NaN times). ``inputs``: the layers' inputs already
    recorded on ``example_input`` (by layer name), to skip recording them again.
    """
    if not torch.backends.mkldnn.is_available():
        return []
    eligible = plain_convs(model)
    if inputs is None:
        inputs = record_inputs(model, eligible, example_input)
    choices = []
    for name, conv in eligible:
        x = inputs.get(name)
        if x is None or x.device.type != "cpu" or x.dim() != conv.weight.dim():  # not reached, or unbatched
            continue
        if runs_on_onednn(conv, x):
            continue
        fmt = channels_last_format(x.dim())
        fast = direct_from_conv(conv, fmt)
        fast.onednn = True
        with torch.inference_mode():
            ref = conv(x)
            try:
                err = relative_error(fast(x), ref)
            except RuntimeError:  # a dtype or shape oneDNN does not take
                err = nan
            # the reference kernels return contiguous memory, which the next layer converts back to
            # channels-last: that conversion is part of their cost
            default = partial(_to_format, conv, fmt)
            t = median_times({"default": default, "onednn": fast}, x, repeats) if err <= 1e-4 else {
                "default": nan, "onednn": nan}
        keep = t["onednn"] < t["default"]  # False for NaN
        if keep:
            set_module(model, name, fast)
        choices.append((name, "onednn" if keep else "default", 1e3 * t["default"], 1e3 * t["onednn"]))
        if verbose:
            print(f"{name:<28} {'x'.join(map(str, x.shape)):<20} default {1e3 * t['default']:7.2f} ms  "
                  f"oneDNN {1e3 * t['onednn']:7.2f} ms -> {choices[-1][1]}", flush=True)
    return choices


def choose_layout(model: nn.Module, x: torch.Tensor, channels_last: bool = True,
                  verbose: bool = False) -> tuple[nn.Module, dict]:
    """``optimize``'s layout step on ``model`` (already in its dtype and, with ``channels_last``,
    its weights in channels-last memory), timed on ``x`` (the prepared example input).

    First (``channels_last`` only) a copy whose every ``Conv3d`` converts its input to
    channels-last-3d (:func:`channels_last_inputs`), with :func:`onednn_convs`' per-layer choice,
    is timed whole against the model as given; the faster is kept (when every input already is
    channels-last and no layer moved to oneDNN, the copy is the same computation: not timed).
    Then a copy of that one with :func:`lower_convs`' per-layer choice is timed whole against it,
    and again the faster is kept.
    A tie keeps the model without the change, so the result is never slower than ``model`` on
    ``x`` (timing noise aside). Returns ``(model, report)``: ``report["layout_ms"]`` holds each
    variant's whole-model time, and ``lowered_layers``, ``channels_last_inputs`` and
    ``onednn_layers`` say what was kept; the returned model's ``lowering_choices`` (and, when
    timed, ``onednn_choices``) list the per-layer times.
    """
    timings: dict[str, float] = {}

    def faster(current: tuple[str, nn.Module], candidate: tuple[str, nn.Module]) -> tuple[str, nn.Module]:
        # a layer's output layout changes the next one's speed, so a per-layer choice is kept only
        # if the whole model is faster with it too
        with torch.inference_mode():
            t = median_times(dict([current, candidate]), x)
        timings.update(t)
        return candidate if t[candidate[0]] < t[current[0]] else current

    best = ("3d", model)
    on_onednn = 0
    if channels_last:
        forced = copy.deepcopy(model)
        if channels_last_inputs(forced):
            # one forward records every convolution's input; the copy's layers keep their names
            # and see the same inputs (they convert them only inside)
            convs = plain_convs(model)
            inputs = record_inputs(model, convs, x)
            forced.onednn_choices = onednn_convs(forced, x, verbose=verbose, inputs=inputs)
            on_onednn = sum(c[1] == "onednn" for c in forced.onednn_choices)
            # nothing to time when every Conv3d already gets channels-last input and none moved
            # to oneDNN: the copy would run exactly as the model does
            lost = any(type(m) is nn.Conv3d and n in inputs and inputs[n].dim() == 5
                       and not inputs[n].is_contiguous(memory_format=torch.channels_last_3d) for n, m in convs)
            if on_onednn or lost:
                best = faster(best, ("channels-last inputs" + (", oneDNN" if on_onednn else ""), forced))
    lowered = copy.deepcopy(best[1])
    choices = lower_convs(lowered, x, verbose=verbose)
    n_lowered = sum(c[1] != "direct" for c in choices)
    if n_lowered:
        best = faster(best, (("" if best[0] == "3d" else best[0] + ", ") + "lowered", lowered))
    name, chosen = best
    chosen.lowering_choices = choices if chosen is lowered else [(n, "direct", a, b) for n, _, a, b in choices]
    report = {"layout_ms": {k: round(1e3 * v, 2) for k, v in timings.items()},
              "lowered_layers": n_lowered if chosen is lowered else 0,
              "channels_last_inputs": "channels-last" in name,
              "onednn_layers": sum(getattr(m, "onednn", False) for m in chosen.modules())}
    return chosen, report
