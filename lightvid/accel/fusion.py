"""Convolution + ReLU as one oneDNN call (a post-op), in eager mode.

After batch-norm folding, most ReLUs of a ConvNet read a convolution's output and nothing else
does. oneDNN can apply the ReLU while it writes that output (``torch.ops.mkldnn.
_convolution_pointwise``, the operator inductor emits for the same fusion), saving a pass over
memory per pair. :func:`relu_pairs` finds the pairs with ``torch.fx`` on the folded model (before
any other module is swapped in); :func:`lightvid.accel.lowering.fuse_relus` swaps them in place:
the convolution for a :class:`ConvReLU` (or, for a convolution already run as 2D, its own
``relu`` flag), the ReLU for ``nn.Identity``. Only ReLU: oneDNN's ``swish`` post-op did not
match ``nn.SiLU`` to 1e-2 when measured. ``optimize`` keeps the fused model only where it times
faster as a whole.
"""
from __future__ import annotations

import torch
import torch.nn as nn

_CONVS = (nn.Conv2d, nn.Conv3d)


def available() -> bool:
    """True when this PyTorch has oneDNN's fused convolution operator."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")


def conv_relu(x: torch.Tensor, conv: nn.Module) -> torch.Tensor:
    """``relu(conv(x))`` for a plain ``nn.Conv2d``/``nn.Conv3d`` ``conv``: one oneDNN call on CPU in
    fp32/bf16 without autograd, else the two ops."""
    if (x.device.type != "cpu" or x.dtype not in (torch.float32, torch.bfloat16) or conv.padding_mode != "zeros"
            or isinstance(conv.padding, str) or (torch.is_grad_enabled() and conv.weight.requires_grad)):
        return torch.relu(conv(x))
    return torch.ops.mkldnn._convolution_pointwise(x, conv.weight, conv.bias, list(conv.padding), list(conv.stride),
                                                   list(conv.dilation), conv.groups, "relu", [], "")


class ConvReLU(nn.Module):
    """``relu(conv(x))`` in one oneDNN call; ``conv`` keeps its parameters and input format."""

    def __init__(self, conv: nn.Module):
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fmt = getattr(self.conv, "memory_format", None)  # a DirectConv of the hybrid choices
        if fmt is not None and x.dim() == self.conv.weight.dim():
            x = x.contiguous(memory_format=fmt)
        return conv_relu(x, self.conv)


def relu_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """``(conv, relu)`` module names where an ``nn.ReLU`` is the only reader of a convolution's
    output (through ``nn.Identity`` modules, e.g. folded batch norms) and is called only there;
    [] if ``torch.fx`` cannot trace the model."""
    try:
        import torch.fx

        graph = torch.fx.symbolic_trace(model).graph
    except Exception:
        return []
    mods = dict(model.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    pairs = []
    for node in graph.nodes:
        # a ReLU module called more than once (C3D reuses one) cannot become an Identity
        if node.op != "call_module" or type(mods.get(node.target)) is not nn.ReLU or calls[node.target] != 1:
            continue
        src = node.args[0] if node.args else None
        while (isinstance(src, torch.fx.Node) and src.op == "call_module" and len(src.users) == 1
               and type(mods.get(src.target)) is nn.Identity):
            src = src.args[0]
        if (isinstance(src, torch.fx.Node) and src.op == "call_module" and len(src.users) == 1
                and isinstance(mods.get(src.target), _CONVS)):
            pairs.append((src.target, node.target))
    return pairs
