"""The optimised inference path: BN folding, channels-last, bf16, Winograd, 3D convs as 2D, torch.compile.

``optimize(model, precision="auto")`` returns an :class:`OptimizedModel` wrapping a copy of
``model`` (the original is untouched):

1. batch norms that directly follow a convolution (found by ``torch.fx`` tracing, or
   adjacent ``nn.Sequential`` children when the model does not trace) are folded into it
   (Ioffe and Szegedy 2015's affine map merged into the weights and bias) and replaced by
   ``nn.Identity``;
2. weights go to channels-last(-3d) memory format, and so does every input. On a CUDA device
   with an ``example_input`` the whole model is timed in both memory formats and the faster is
   kept (:func:`choose_memory_format`: cuDNN's channels-last kernels are slower for some
   layers, e.g. IR-CSN's depthwise 3D convolutions at batch 8 on an H200, 0.71x eager);
3. ``precision="bf16"`` casts weights and inputs to bfloat16 (oneDNN runs them on AMX /
   AVX-512 BF16 where the CPU has them); ``"auto"`` picks bf16 only when the CPU has native
   bf16 (or on a CUDA device that supports it), otherwise fp32. An explicit bf16 (or fp16)
   the device cannot run natively warns in one line and runs fp32 (``allow_slow=True`` keeps
   it; :mod:`lightvid.precision`). Outputs come back as fp32;
4. ``winograd=True`` (fp32 only, needs ``example_input``) runs :func:`lightvid.accelerate`'s
   hybrid per-layer choice;
5. with an ``example_input`` (and ``lower=True``, the default; a model without a ``Conv3d``
   skips this step), the layout step (:func:`lightvid.accel.lowering.choose_layout`): every
   ``Conv3d`` converts its input to channels-last-3d, and each convolution PyTorch would run on
   its reference kernel (some small batch-1 shapes) runs on oneDNN where that is faster on its
   real input; then every ``1 x kh x kw`` or ``kt x 1 x 1`` 3D convolution runs as a 2D one where
   that is faster. Each of the two is kept only if the whole model times faster with it on
   ``example_input`` (ties: without), so the step never costs speed there;
6. with an ``example_input`` (and ``fuse=True``, the default), each convolution that runs on
   oneDNN and whose only use is a residual add (then a ReLU) or a ReLU runs with them as oneDNN
   post-ops, one pass over memory instead of three (:mod:`lightvid.accel.fusion`; the model is
   traced with ``torch.fx``, one that does not trace is left as it is);
7. with an ``example_input`` (and ``onednn_graph=True``, the default; fp32 on a CPU, not with
   ``compile``), the BN-folded model traced into oneDNN Graph partitions
   (:mod:`lightvid.accel.onednn_graph`: each convolution with its bias, add and activation
   compiled once per input shape) is timed whole against the result of the steps above, and
   the faster is kept (``report["onednn_graph"]``; ties keep the steps above);
8. on a CPU with glibc (and ``keep_memory=True``, the default), glibc is told to keep freed
   memory in the process (:func:`lightvid.accel.memory.keep_freed_memory`, process-wide):
   otherwise it maps each activation above 32 MiB afresh and unmaps it on free, so every
   forward takes a page fault per 4 KiB of them (IR-CSN-50's oneDNN Graph model at batch 8:
   50,000-119,000 faults per forward, X3D-S's 41,000-64,000; measured in docs/inference.md).
   ``report["kept_freed_memory"]`` says whether it is in force;
9. ``compile=True`` wraps the model in ``torch.compile`` (inductor, gcc) with inductor's
   *freezing*: the weights become constants, so inductor prepacks them into oneDNN's blocked
   layout once and fuses each convolution with its bias, residual add and activation
   (oneDNN post-ops) instead of running them as separate memory-bound passes. It costs a long
   first call (measured in docs/inference.md); ``compile="auto"`` compiles, times both on
   ``example_input`` and keeps the faster.
"""
from __future__ import annotations

import copy
import time

import torch
import torch.nn as nn

from lightvid.accel import onednn_graph as graph
from lightvid.accel.memory import keep_freed_memory
from lightvid.accel.per_layer import channels_last_format, set_module
from lightvid.accel.timing import median_times
from lightvid.errors import UserError
from lightvid.precision import has_native_bf16, resolve_precision

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


# ----------------------------------------------------------------------------- BN folding


def fold_bn_into_conv(conv: nn.Module, bn: nn.Module) -> None:
    """``bn(conv(x)) == conv'(x)``: scale the conv's output channels, shift its bias (in place)."""
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else 1 / torch.sqrt(
            bn.running_var + bn.eps)
        shift = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
        w = conv.weight
        conv.weight = nn.Parameter(w * scale.reshape(-1, *([1] * (w.dim() - 1))), requires_grad=False)
        b = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        conv.bias = nn.Parameter((b - bn.running_mean) * scale + shift, requires_grad=False)


def _fx_pairs(model: nn.Module) -> list[tuple[str, str]] | None:
    """(conv, bn) module names where the bn is the conv output's only user; None if fx fails."""
    try:
        import torch.fx

        graph = torch.fx.symbolic_trace(model).graph
    except Exception:
        return None
    mods = dict(model.named_modules())
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(mods.get(node.target), _BN):
            continue
        src = node.args[0] if node.args else None
        if (isinstance(src, torch.fx.Node) and src.op == "call_module"
                and isinstance(mods.get(src.target), _CONV) and len(src.users) == 1):
            pairs.append((src.target, node.target))
    return pairs


def _sequential_pairs(model: nn.Module) -> list[tuple[str, str]]:
    pairs = []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Sequential):
            kids = list(mod.named_children())
            for (n1, a), (n2, b) in zip(kids, kids[1:]):
                if isinstance(a, _CONV) and isinstance(b, _BN):
                    prefix = f"{name}." if name else ""
                    pairs.append((prefix + n1, prefix + n2))
    return pairs


def fold_batchnorms(model: nn.Module) -> int:
    """Fold every conv -> BN pair of an eval-mode ``model`` in place; returns how many."""
    pairs = _fx_pairs(model)
    if pairs is None:
        pairs = _sequential_pairs(model)
    uses: dict[str, int] = {}
    for conv_name, _ in pairs:  # a conv shared by two BNs cannot be folded
        uses[conv_name] = uses.get(conv_name, 0) + 1
    done = 0
    for conv_name, bn_name in pairs:
        conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
        if uses[conv_name] != 1 or bn.running_mean is None or conv.out_channels != bn.num_features:
            continue
        fold_bn_into_conv(conv, bn)
        set_module(model, bn_name, nn.Identity())
        done += 1
    return done


# ----------------------------------------------------------------------------- the wrapper


class OptimizedModel(nn.Module):
    """Casts the input to the model's dtype and memory format, returns fp32 outputs."""

    def __init__(self, model: nn.Module, dtype: torch.dtype, channels_last: bool, report: dict):
        super().__init__()
        self.model = model
        self.dtype = dtype
        self.channels_last = channels_last
        self.report = report
        self.default_cfg = getattr(model, "default_cfg", {})
        self.num_classes = getattr(model, "num_classes", None)
        object.__setattr__(self, "compiled", None)  # the torch.compile'd model, not a registered submodule

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.dtype)
        if self.channels_last and x.dim() in (4, 5):
            x = x.contiguous(memory_format=channels_last_format(x.dim()))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            out = (self.model if self.compiled is None else self.compiled)(self.prepare(x))
        return out.float()



def optimize(model: nn.Module, precision: str = "auto", compile: bool | str = False, winograd: bool = False,
             example_input: torch.Tensor | None = None, channels_last: bool = True, lower: bool = True,
             fuse: bool = True, onednn_graph: bool = True, verbose: bool = False,
             allow_slow: bool = False, keep_memory: bool = True) -> OptimizedModel:
    """An inference-only copy of ``model``: BN folded, channels-last, bf16/fp32, optionally compiled.

    ``model.report`` records what was done: precision, folded BNs, Winograd layers, compile
    time. See the module docstring for each step.
    """
    if compile not in (True, False, "auto"):
        raise UserError(f"compile must be True, False or 'auto', got {compile!r}")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    prec = resolve_precision(precision, device, training=False, allow_slow=allow_slow)
    m = copy.deepcopy(model).eval()
    for p in m.parameters():
        p.requires_grad_(False)
    report = {"precision": prec, "requested_precision": precision, "native_bf16": has_native_bf16(device),
              "folded_bn": fold_batchnorms(m), "channels_last": channels_last, "winograd_layers": 0,
              "lowered_layers": 0, "channels_last_inputs": False, "onednn_layers": 0, "fused_convs": 0,
              "onednn_graph": False, "compiled": False, "compile_s": None,
              # before anything is timed, so that every choice below is made as the model will run
              "kept_freed_memory": keep_memory and device.type == "cpu" and keep_freed_memory()}
    # the oneDNN Graph candidate starts from the BN-folded model as it is now (fp32, contiguous)
    plain = copy.deepcopy(m) if (onednn_graph and example_input is not None and not compile and prec == "fp32"
                                 and device.type == "cpu" and graph.available()) else None
    if channels_last:
        to_channels_last(m)
    if winograd:
        if prec != "fp32" or precision in ("bf16", "fp16"):
            raise UserError("winograd=True needs precision='fp32' (bf16 runs natively on AMX/AVX512-BF16)")
        if example_input is None:
            raise UserError("winograd=True needs an example_input to time each layer on")
        from lightvid.accel.winograd import accelerate

        accelerate(m, example_input.to(device), algo="auto", verbose=verbose)
        report["winograd_layers"] = sum(c[1] != "direct" for c in m.winograd_choices)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(prec, torch.float32)
    m = m.to(dtype)
    if channels_last and example_input is not None and times_memory_format(device):
        m, channels_last, report["memory_format_ms"] = choose_memory_format(m, example_input.to(device, dtype))
        report["channels_last"] = channels_last
    opt = OptimizedModel(m, dtype, channels_last, report)
    if lower and example_input is not None and any(isinstance(mod, nn.Conv3d) for mod in m.modules()):
        from lightvid.accel.lowering import choose_layout

        opt.model, layout = choose_layout(m, opt.prepare(example_input.to(device)), channels_last, verbose=verbose)
        report.update(layout)
        m = opt.model
    if fuse and example_input is not None:
        from lightvid.accel.fusion import fuse_conv_pointwise

        opt.model, report["fused_convs"] = fuse_conv_pointwise(m, opt.prepare(example_input.to(device)))
        m = opt.model
    if plain is not None:
        x = example_input.to(device)
        candidate = graph.build(plain, x)
        if candidate is not None:
            with torch.inference_mode():  # 5 rounds: the two are often within 20% of each other
                t = median_times({"steps": opt, "oneDNN Graph": candidate}, x, repeats=5)
            report["onednn_graph_ms"] = {k: round(1e3 * v, 2) for k, v in t.items()}
            if t["oneDNN Graph"] < t["steps"]:  # the traced graph replaces what the layout steps built
                opt.model, opt.channels_last = candidate, False
                report.update(onednn_graph=True, channels_last=False, winograd_layers=0, lowered_layers=0,
                              channels_last_inputs=False, onednn_layers=0, fused_convs=0)
    if compile:
        if compile == "auto" and example_input is None:
            raise UserError("compile='auto' needs an example_input to time on")
        t0 = time.perf_counter()
        # inference only: freezing folds the weights into the graph (prepacked, conv + add + relu fused)
        object.__setattr__(opt, "compiled", torch.compile(m, options={"freezing": True}))
        if example_input is not None:
            with torch.inference_mode():
                opt.compiled(opt.prepare(example_input.to(device)))  # the compilation happens here
        report["compile_s"] = time.perf_counter() - t0
        report["compiled"] = True
        if compile == "auto":
            x = opt.prepare(example_input.to(device))
            with torch.inference_mode():
                t = median_times({"eager": m, "compiled": opt.compiled}, x)
                t_eager, t_comp = t["eager"], t["compiled"]
            report.update(eager_ms=1e3 * t_eager, compiled_ms=1e3 * t_comp)
            if t_comp >= t_eager:
                object.__setattr__(opt, "compiled", None)
                report["compiled"] = False
    if verbose:
        print("optimize: " + ", ".join(f"{k}={v}" for k, v in report.items()), flush=True)
    return opt


def times_memory_format(device: torch.device) -> bool:
    """Whether ``optimize`` times channels-last against contiguous memory on ``device`` (CUDA: on
    the CPU channels-last is what oneDNN runs, and the layout step chooses per layer)."""
    return device.type == "cuda"


def choose_memory_format(model: nn.Module, x: torch.Tensor, repeats: int = 5) -> tuple[nn.Module, bool, dict]:
    """``model`` (weights channels-last) timed whole on ``x`` in channels-last memory against a
    copy with contiguous weights on contiguous ``x``; returns ``(the faster, whether it is the
    channels-last one, {format: ms})``. A tie keeps channels-last."""
    contiguous = copy.deepcopy(model)
    with torch.no_grad():
        for p in contiguous.parameters():
            p.data = p.data.contiguous()
    x_cl = x.contiguous(memory_format=channels_last_format(x.dim())) if x.dim() in (4, 5) else x
    x = x.contiguous()
    with torch.inference_mode():  # warmup 2: cuDNN's benchmark mode times its algorithms on the first call
        t = median_times({"channels-last": lambda _: model(x_cl), "contiguous": lambda _: contiguous(x)}, x,
                         repeats=repeats, warmup=2)
    keep = t["channels-last"] <= t["contiguous"]
    return (model if keep else contiguous), keep, {k: round(1e3 * v, 3) for k, v in t.items()}


def to_channels_last(model: nn.Module) -> nn.Module:
    """4-D parameters to channels-last, 5-D ones to channels-last-3d (in place)."""
    fmts = {4: torch.channels_last, 5: torch.channels_last_3d}
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() in fmts:
                p.data = p.data.contiguous(memory_format=fmts[p.dim()])
    return model
