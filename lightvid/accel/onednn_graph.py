"""oneDNN Graph: the whole network compiled into fused oneDNN partitions, a candidate of ``optimize``.

PyTorch runs each convolution through ``torch.mkldnn_convolution``, which sets up oneDNN's
primitive on every call; on the 2-core EPYC a trivial 1x1x1 convolution costs 45-52 us that
way against 5 us in OpenVINO, and X3D-S has 115 convolutions and as many element-wise
operators per forward. oneDNN's *Graph* API (the "LLGA" fuser of PyTorch's TorchScript
executor, ``torch.jit.enable_onednn_fusion``) instead takes the traced, frozen graph, groups
convolutions with their bias, residual add and activations into partitions, and compiles each
partition once per input shape, passing oneDNN's own blocked layouts between them.

:func:`build` traces a model (BN already folded, fp32) with ``torch.jit.trace``, freezes it
and runs it until the executor has compiled its partitions; the result is checked against the
model on the example input (same output structure, every tensor within relative error 1e-4) and dropped on any
difference or failure. :class:`OneDNNGraphModel` switches the fuser on only around its own
calls, so other TorchScript code in the process is left as it was, and a new input shape is
compiled on its first call (0.3 s for X3D-S). ``optimize`` keeps it only where the whole model
times faster than its own path on the example input: on the EPYC at batch 1, X3D-S 55-60 ms
against 84-100 ms; at batch 8 it lost (docs/inference.md).
"""
from __future__ import annotations

import copy
import warnings

import torch
import torch.nn as nn

from lightvid.accel.per_layer import same_output


def available() -> bool:
    """Whether this PyTorch has TorchScript's oneDNN Graph fuser and oneDNN itself."""
    return (hasattr(torch.jit, "enable_onednn_fusion") and hasattr(torch.jit, "onednn_fusion_enabled")
            and torch.backends.mkldnn.is_available())


class _FuserOn:
    """``torch.jit.enable_onednn_fusion(True)`` inside the block, the previous setting after."""

    def __enter__(self):
        self.before = torch.jit.onednn_fusion_enabled()
        torch.jit.enable_onednn_fusion(True)

    def __exit__(self, *exc):
        torch.jit.enable_onednn_fusion(self.before)


class OneDNNGraphModel(nn.Module):
    """A traced, frozen model run with the oneDNN Graph fuser on (contiguous fp32 input)."""

    def __init__(self, scripted: torch.jit.ScriptModule, source: nn.Module):
        super().__init__()
        self.scripted = scripted
        self.default_cfg = getattr(source, "default_cfg", {})
        self.num_classes = getattr(source, "num_classes", None)

    def forward(self, x: torch.Tensor):
        with _FuserOn():
            return self.scripted(x.contiguous())


def build(model: nn.Module, example_input: torch.Tensor, warmup: int = 3) -> OneDNNGraphModel | None:
    """``model`` (eval, BN folded, fp32, on the CPU) as a :class:`OneDNNGraphModel`, or None where
    it does not trace, the fuser is missing, or its output differs from ``model``'s on
    ``example_input`` (relative error over 1e-4). ``model`` is not modified."""
    if (not available() or example_input.device.type != "cpu" or example_input.dtype != torch.float32
            or any(p.dtype != torch.float32 for p in model.parameters())):
        return None
    x = example_input.contiguous()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # TorchScript's deprecation and tracer warnings
            traced = torch.jit.trace(copy.deepcopy(model).eval(), x, check_trace=False, strict=False)
            graph = OneDNNGraphModel(torch.jit.freeze(traced), model)
            for _ in range(warmup):  # the executor profiles, then compiles the partitions
                graph(x)
        with torch.inference_mode():
            same = same_output(model(x), graph(x))
    except Exception:  # noqa: BLE001 (a model the tracer or the fuser cannot take keeps its own path)
        return None
    return graph if same else None
