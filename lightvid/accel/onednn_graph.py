"""oneDNN Graph: the whole network compiled into fused oneDNN partitions, a candidate of ``optimize``.

PyTorch runs each convolution through ``torch.mkldnn_convolution``, which sets up oneDNN's
primitive on every call; on the 2-core EPYC a trivial 1x1x1 convolution costs 45-52 us that way
against 5 us in OpenVINO, and X3D-S has 115 convolutions and as many element-wise operators per
forward. oneDNN's *Graph* API (the "LLGA" fuser of PyTorch's TorchScript executor,
``torch.jit.enable_onednn_fusion``) instead takes the traced, frozen graph, groups convolutions
with their bias, residual add and activations into partitions, and compiles each partition once
per input shape, passing oneDNN's own layouts between them.

:func:`build` traces a model (BN already folded, fp32) with ``torch.jit.trace``, freezes it and
runs it until the executor has compiled its partitions; the result is checked against the model
on the example input (same output structure, every tensor within relative error 1e-4) and
dropped on any difference or failure. :class:`OneDNNGraphModel` switches the fuser on only
around its own calls, so other TorchScript code in the process is left as it was, and a new
input shape is profiled and compiled on its first two calls (0.3 s for X3D-S). ``optimize``
keeps it only where the whole model times faster than its own path on the example input
(docs/inference.md).

Where a partition hands a tensor to an operator the fuser does not take (X3D's
squeeze-excitation pool, IR-CSN's 3D max pool, an activation after a multiply), the tensor
leaves in the strides the executor *recorded* for it while profiling the unfused graph, and
PyTorch's eager kernels return contiguous tensors at batch 1 (a small convolution goes to its
reference kernel), while the partitions compute channels-last: a reorder out and one back in at
every such boundary (32 per X3D-S forward, and a max pool on contiguous memory 6x slower than
on channels-last). So :func:`build` profiles with every convolution run by oneDNN channels-last
(:func:`_channels_last_convolutions`, for the profiling calls of each input shape only, one
thread at a time; a convolution another thread runs meanwhile also comes out channels-last,
with the same values), on a copy whose in-place activations are out-of-place (the fuser gives
an in-place op's result no recorded strides, and the boundary then falls back to contiguous)
and whose ``nn.SiLU`` is written ``x * sigmoid(x)`` (which oneDNN fuses where ``silu`` after a
multiply stays an unfused operator). On the 2-core EPYC, in one process with OpenVINO, this
took X3D-S from 0.68x to 0.81x OpenVINO at batch 1 and 0.78x to 1.03x at batch 8
(``OMP_WAIT_POLICY=PASSIVE``), IR-CSN-50 from 0.90x to 1.07x (batch 1) and 0.77x to 1.00x
(batch 8, libgomp's default waiting).

Two pools are rewritten in the traced copy for the same reason: operators the fuser leaves to
ATen. A global average pool (X3D's squeeze-excitation, every head) becomes a matmul with a row
of 1/N over the channels-last view, and a 3D max pool that pools within frames (the (1, 3, 3)
stems of the ResNet3D family, C3D's first pool) becomes ``max_pool2d`` over the frames stacked
in the batch, which the fuser runs in oneDNN. Where the time of the rest goes, kernel by kernel
against OpenVINO: :mod:`lightvid.accel.breakdown`.
"""
from __future__ import annotations

import contextlib
import copy
import threading
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.utils import _triple

from lightvid.accel.per_layer import channels_last_format, same_output


def available() -> bool:
    """Whether this PyTorch has TorchScript's oneDNN Graph fuser and oneDNN itself."""
    return (hasattr(torch.jit, "enable_onednn_fusion") and hasattr(torch.jit, "onednn_fusion_enabled")
            and torch.backends.mkldnn.is_available())


_FUSER = threading.Lock()
_fuser_users = 0  # calls inside _FuserOn right now, all threads together
_fuser_before = False  # the setting the first of them found


class _FuserOn:
    """``torch.jit.enable_onednn_fusion(True)`` inside the block, the previous setting after.

    The setting is process-wide, so calls overlapping in several threads share it: the first to
    enter turns the fuser on, the last to leave restores what the first found (one thread's exit
    neither turns it off under another's running call nor leaves it on for good).
    """

    def __enter__(self):
        global _fuser_users, _fuser_before
        with _FUSER:
            if _fuser_users == 0:
                _fuser_before = torch.jit.onednn_fusion_enabled()
                torch.jit.enable_onednn_fusion(True)
            _fuser_users += 1

    def __exit__(self, *exc):
        global _fuser_users
        with _FUSER:
            _fuser_users -= 1
            if _fuser_users == 0:
                torch.jit.enable_onednn_fusion(_fuser_before)


def _profiled_runs() -> int:
    """Calls the TorchScript executor needs on a new input shape before it runs compiled code:
    the profiling run(s) and the one that compiles."""
    return 1 + getattr(torch._C, "_jit_get_num_profiled_runs", lambda: 1)()


class OneDNNGraphModel(nn.Module):
    """A traced, frozen model run with the oneDNN Graph fuser on (contiguous fp32 input).

    With ``channels_last_profile`` the calls the executor profiles and compiles a new input shape
    on (the first :func:`_profiled_runs` calls of each shape) run with channels-last
    convolutions (module docstring); every later call runs the compiled partitions only.
    """

    def __init__(self, scripted: torch.jit.ScriptModule, source: nn.Module, channels_last_profile: bool = False):
        super().__init__()
        self.scripted = scripted
        self.channels_last_profile = channels_last_profile
        self.calls_per_shape: dict[tuple, int] = {}
        self.default_cfg = getattr(source, "default_cfg", {})
        self.num_classes = getattr(source, "num_classes", None)

    def forward(self, x: torch.Tensor):
        x = x.contiguous()
        shape = (tuple(x.shape), x.dtype)
        with _FUSER:  # threads calling at once count each call once
            calls = self.calls_per_shape.get(shape, 0)
            profiling = self.channels_last_profile and calls < _profiled_runs()
            if profiling:
                self.calls_per_shape[shape] = calls + 1
        with _channels_last_convolutions() if profiling else contextlib.nullcontext(), _FuserOn():
            return self.scripted(x)


class _SiLU(nn.Module):
    """``x * sigmoid(x)``: SiLU as two operators the fuser takes (it leaves ``aten::silu`` out)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


class _GlobalAvgPool3d(nn.Module):
    """``AdaptiveAvgPool3d(1)`` as a matmul with a row of 1/N over the channels-last view (the
    fuser leaves adaptive pooling to ATen, whose reduction over channels-last memory took X3D-S's
    squeeze-excitation pools 2.5x OpenVINO's time; the matmul is the same sum, 2.5x faster on
    its largest map)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        v = x.permute(0, 2, 3, 4, 1).reshape(b, -1, c)  # (B, T*H*W, C): a view of channels-last memory
        w = torch.full((1, v.shape[1]), 1.0 / v.shape[1], dtype=x.dtype)
        return torch.matmul(w, v).reshape(b, c, 1, 1, 1)  # (B, 1, C) -> (B, C, 1, 1, 1)


class _FrameMaxPool(nn.Module):
    """A ``MaxPool3d`` that pools within frames (temporal kernel, stride 1, no temporal padding)
    as ``max_pool2d`` over the frames stacked in the batch, which the fuser runs in oneDNN (it
    leaves 3D max pooling to ATen)."""

    def __init__(self, pool: nn.MaxPool3d):
        super().__init__()
        self.kernel, self.stride = _triple(pool.kernel_size)[1:], _triple(pool.stride)[1:]
        self.padding, self.dilation = _triple(pool.padding)[1:], _triple(pool.dilation)[1:]
        self.ceil_mode = pool.ceil_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        y = x.transpose(1, 2).reshape(b * t, c, h, w)  # (B*T, C, H, W): a view of channels-last memory
        y = F.max_pool2d(y, self.kernel, self.stride, self.padding, self.dilation, self.ceil_mode)
        return y.reshape(b, t, c, y.shape[-2], y.shape[-1]).transpose(1, 2)  # (B, C, T, H', W')


def _pools_within_frames(pool: nn.MaxPool3d) -> bool:
    k, s = _triple(pool.kernel_size), _triple(pool.stride)  # nn.MaxPool3d's stride defaults to its kernel
    return (k[0] == 1 and s[0] == 1 and _triple(pool.padding)[0] == 0 and _triple(pool.dilation)[0] == 1
            and not pool.return_indices)


def traceable_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` to trace: in-place activations made out-of-place, ``nn.SiLU`` as
    ``x * sigmoid(x)``, global average pools as a matmul and within-frame 3D max pools as 2D
    ones (same values; see the module docstring for why)."""
    model = copy.deepcopy(model).eval()
    for module in list(model.modules()):
        if getattr(module, "inplace", None) is True:
            module.inplace = False
        for name, child in list(module.named_children()):
            if isinstance(child, nn.SiLU):
                setattr(module, name, _SiLU())
            elif isinstance(child, nn.AdaptiveAvgPool3d) and child.output_size in (1, (1, 1, 1)):
                setattr(module, name, _GlobalAvgPool3d())
            elif isinstance(child, nn.MaxPool3d) and _pools_within_frames(child):
                setattr(module, name, _FrameMaxPool(child))
    return model


def _convolution_channels_last(input, weight, bias, stride, padding, dilation, transposed, output_padding,
                               groups, *flags):
    """``aten::_convolution`` on oneDNN with channels-last output (2D and 3D fp32 forward only)."""
    if transposed or input.dim() not in (4, 5) or input.dtype != torch.float32 or input.is_mkldnn:
        raise NotImplementedError("channels-last profiling covers 2D/3D fp32 forward convolutions only")
    fmt = channels_last_format(input.dim())
    out = torch.mkldnn_convolution(input.contiguous(memory_format=fmt), weight.contiguous(memory_format=fmt),
                                   bias, padding, stride, dilation, groups)
    return out.contiguous(memory_format=fmt)


_PROFILING = threading.RLock()  # one registration at a time; a nested block reuses the outer one
_profiling_depth = 0


@contextlib.contextmanager
def _channels_last_convolutions():
    """Inside the block every CPU ``aten::_convolution`` (the op a traced graph calls) runs through
    :func:`_convolution_channels_last`; the registration is removed on exit. Blocks in other
    threads wait for this one; a block nested in it (one model's profiling call inside
    another's) reuses its registration."""
    global _profiling_depth
    with _PROFILING:
        outermost = _profiling_depth == 0
        with torch.library._scoped_library("aten", "IMPL") if outermost else contextlib.nullcontext() as lib:
            if outermost:
                lib.impl("_convolution", _convolution_channels_last, "CPU")
            _profiling_depth += 1
            try:
                yield
            finally:
                _profiling_depth -= 1


def _trace(model: nn.Module, x: torch.Tensor, warmup: int, channels_last: bool) -> OneDNNGraphModel:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TorchScript's deprecation and tracer warnings
        traced = torch.jit.trace(traceable_copy(model), x, check_trace=False, strict=False)
        graph = OneDNNGraphModel(torch.jit.freeze(traced), model, channels_last_profile=channels_last)
        for _ in range(max(warmup, _profiled_runs())):  # the executor profiles, then compiles the partitions
            graph(x)
    return graph


def build(model: nn.Module, example_input: torch.Tensor, warmup: int = 3,
          channels_last: bool = True) -> OneDNNGraphModel | None:
    """``model`` (eval, BN folded, fp32, on the CPU) as a :class:`OneDNNGraphModel`, or None where
    it does not trace, the fuser is missing, or its output differs from ``model``'s on
    ``example_input`` (relative error over 1e-4). ``channels_last`` profiles with channels-last
    convolutions (module docstring); a model that cannot be profiled so (a transposed or 1D
    convolution) is built with PyTorch's own kernels instead. ``model`` is not modified."""
    if (not available() or example_input.device.type != "cpu" or example_input.dtype != torch.float32
            or any(p.dtype != torch.float32 for p in model.parameters())):
        return None
    x = example_input.contiguous()
    for cl in ((True, False) if channels_last else (False,)):
        try:
            graph = _trace(model, x, warmup, cl)
            with torch.inference_mode():
                if same_output(model(x), graph(x)):
                    return graph
        except Exception:  # noqa: BLE001 (a model the tracer or the fuser cannot take keeps its own path)
            continue
    return None
