"""Convolution + residual add + ReLU (or SiLU) as one oneDNN call (post-ops), found by ``torch.fx``.

A residual block ends in ``relu(conv(x) + shortcut)``: run as three operators, that is the
convolution writing its output, the add reading it and the shortcut and writing a third tensor,
and the ReLU reading and writing it again, three passes over a tensor that at batch 8 is
100 MB in IR-CSN-50's first stage. oneDNN applies the add and the ReLU to each output tile while
it is still in cache (its *post-ops*), which PyTorch exposes as
``torch.ops.mkldnn._convolution_pointwise`` (the operator inductor's own CPU fusion emits).
:func:`fuse_conv_pointwise` traces the model with ``torch.fx``, finds each convolution whose only
use is an add (then, optionally, a ReLU) or a ReLU or SiLU (X3D's swish after a depthwise
convolution), and replaces the chain with one
:class:`FusedConv` call. Only convolutions that run on oneDNN anyway are fused (PyTorch sends some
small batch-1 shapes to a reference kernel that is faster there, see
:mod:`lightvid.accel.lowering`), so the convolution kernel is the same and only the passes over
memory go. The result is checked against the model on the example input before it is kept.
"""
from __future__ import annotations

import operator

import torch
import torch.nn as nn
import torch.nn.functional as F

from lightvid.accel.lowering import PLAIN_CONVS, plain_convs, runs_on_onednn
from lightvid.accel.per_layer import channels_last_format, record_inputs, same_output

_ADDS = (operator.add, operator.iadd, torch.add)
# activation -> (modules, functions, tensor methods) that compute it, and how the unfused path runs it
_ACTIVATIONS = {
    "relu": ((nn.ReLU,), (F.relu, torch.relu, torch.relu_), ("relu", "relu_"), torch.relu),
    "swish": ((nn.SiLU,), (F.silu,), (), F.silu),  # oneDNN's "swish" post-op is x * sigmoid(x)
}
# what a fused model keeps of the model it replaces (read by optimize's report and `summary`)
_KEPT_ATTRIBUTES = ("default_cfg", "num_classes", "lowering_choices", "onednn_choices", "winograd_choices")


class FusedConv(nn.Module):
    """``act(conv(x) + other)``, ``conv(x) + other`` or ``act(conv(x))`` in one oneDNN call, where
    ``activation`` (``act``) is "relu", "swish" (SiLU) or None."""

    def __init__(self, conv: nn.Module, add: bool, activation: str | None):
        super().__init__()
        if activation not in (None, *_ACTIVATIONS):
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)} or None, got {activation!r}")
        if add and activation not in (None, "relu"):  # oneDNN's binary post-op takes only a ReLU after it
            raise ValueError(f"activation after an add must be 'relu' or None, got {activation!r}")
        self.conv, self.add, self.activation = conv, add, activation
        self.memory_format = channels_last_format(conv.weight.dim())

    def extra_repr(self) -> str:
        return f"add={self.add}, activation={self.activation}"

    def _out_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        c = self.conv
        spatial = [(n + 2 * p - d * (k - 1) - 1) // s + 1 for n, p, d, k, s in
                   zip(x.shape[2:], c.padding, c.dilation, c.kernel_size, c.stride)]
        return (x.shape[0], c.out_channels, *spatial)

    def _fallback(self, x: torch.Tensor, other: torch.Tensor | None) -> torch.Tensor:
        y = self.conv(x)
        if self.add:
            y = y + other
        return _ACTIVATIONS[self.activation][3](y) if self.activation else y

    def forward(self, x: torch.Tensor, other: torch.Tensor | None = None) -> torch.Tensor:
        c = self.conv
        if (torch.compiler.is_compiling() or x.device.type != "cpu" or x.dim() != c.weight.dim()
                or x.dtype not in (torch.float32, torch.bfloat16) or x.dtype != c.weight.dtype
                or (self.add and (other.dtype != x.dtype or other.shape != self._out_shape(x)))):
            return self._fallback(x, other)  # inductor, a GPU, unbatched input, another dtype, a broadcast
        x = x.contiguous(memory_format=self.memory_format)
        args = (c.weight, c.bias, list(c.padding), list(c.stride), list(c.dilation), c.groups)
        if not self.add:
            return torch.ops.mkldnn._convolution_pointwise(x, *args, self.activation or "none", [], "")
        other = other.contiguous(memory_format=self.memory_format)
        return torch.ops.mkldnn._convolution_pointwise.binary(x, other, *args, "add", 1.0,
                                                              self.activation, [], "")


class _Tracer(torch.fx.Tracer):
    """Convolutions and lightvid's own inference modules stay whole (leaves)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, PLAIN_CONVS) or type(m).__module__.startswith("lightvid.accel") or super().is_leaf_module(
            m, qualname)


def _activation(node: torch.fx.Node, modules: dict) -> str | None:
    """The activation ``node`` computes on its one input, if it is one oneDNN can fuse."""
    for name, (module_types, functions, methods, _) in _ACTIVATIONS.items():
        if ((node.op == "call_module" and type(modules.get(node.target)) in module_types)
                or (node.op == "call_function" and node.target in functions and len(node.args) == 1)
                or (node.op == "call_method" and node.target in methods)):
            return name
    return None


def _drop_identities(graph: torch.fx.Graph, modules: dict) -> None:
    """Splice out ``nn.Identity`` calls (the batch norms ``optimize`` folded away)."""
    for node in list(graph.nodes):
        if node.op == "call_module" and type(modules.get(node.target)) is nn.Identity:
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)


def fuse_conv_pointwise(model: nn.Module, example_input: torch.Tensor) -> tuple[nn.Module, int]:
    """``(model, n)``: a ``torch.fx.GraphModule`` with ``n`` conv -> add -> ReLU chains (or
    conv -> add, conv -> ReLU) replaced by :class:`FusedConv`, or ``model`` itself and 0 when it
    does not trace, nothing is fusable, or the fused model does not reproduce its output on
    ``example_input`` (relative error over 1e-4)."""
    if example_input.device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return model, 0
    try:
        graph = _Tracer().trace(model)
    except Exception:  # data-dependent control flow, an untraceable op: keep the model as it is
        return model, 0
    modules = dict(model.named_modules())
    convs = plain_convs(model)
    inputs = record_inputs(model, convs, example_input)
    on_onednn = {name for name, conv in convs
                 if name in inputs and inputs[name].dim() == conv.weight.dim() and runs_on_onednn(conv, inputs[name])}
    _drop_identities(graph, modules)
    fused = {}
    for node in list(graph.nodes):
        if node.op != "call_module" or node.target not in on_onednn or len(node.users) != 1 or len(node.args) != 1:
            continue
        last, other, act = node, None, None
        user = next(iter(node.users))
        if (user.op == "call_function" and user.target in _ADDS and len(user.args) == 2 and not user.kwargs
                and all(isinstance(a, torch.fx.Node) for a in user.args) and user.args[0] is not user.args[1]
                and (user.target is not operator.iadd or user.args[0] is node)):  # `shortcut += conv(x)` mutates
            other = user.args[1] if user.args[0] is node else user.args[0]
            last = user
            if len(user.users) == 1 and _activation(next(iter(user.users)), modules) == "relu":
                last, act = next(iter(user.users)), "relu"
        elif _activation(user, modules):
            last, act = user, _activation(user, modules)
        else:
            continue
        name = f"fused_{len(fused)}"
        fused[name] = FusedConv(modules[node.target], add=other is not None, activation=act)
        with graph.inserting_before(last):
            new = graph.call_module(name, (node.args[0],) if other is None else (node.args[0], other))
        last.replace_all_uses_with(new)
        for n in [last] + ([user] if last is not user else []) + [node]:  # users before what they read
            graph.erase_node(n)
    if not fused:
        return model, 0
    graph.lint()
    # the graph's owner: every module and attribute it reads, by qualified name, and the fused calls
    root = {n.target: fused.get(n.target) or operator.attrgetter(n.target)(model) for n in graph.nodes
            if n.op in ("call_module", "get_attr")}
    gm = torch.fx.GraphModule(root, graph, class_name=type(model).__name__ + "Fused")
    try:
        with torch.inference_mode():
            same = same_output(model(example_input), gm(example_input))
    except Exception:  # a fused call oneDNN refuses: keep the model as it is
        same = False
    if not same:
        return model, 0
    for key in _KEPT_ATTRIBUTES:
        if hasattr(model, key):
            setattr(gm, key, getattr(model, key))
    gm.train(model.training)
    return gm, len(fused)
