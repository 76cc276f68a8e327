"""Helpers of the per-layer choices (hybrid Winograd, 2D lowering, oneDNN, fusion): record what
each layer sees on an example input, compare a replacement's output, and swap a layer for it."""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils._pytree import tree_flatten


def record_inputs(model: nn.Module, layers: list[tuple[str, nn.Module]], example_input: torch.Tensor) -> dict:
    """``{name: input}`` of each of ``layers`` (``(name, module)`` pairs of ``model``) in one
    forward of ``example_input``; a layer the input does not reach is absent."""
    inputs: dict[str, torch.Tensor] = {}
    hooks = [mod.register_forward_pre_hook(lambda mod, args, name=n: inputs.setdefault(name, args[0].detach()))
             for n, mod in layers]
    try:
        with torch.no_grad():
            model(example_input)
    finally:
        for h in hooks:
            h.remove()
    return inputs


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """``max |out - ref| / max |ref|``: how far a replacement's output is from the layer's (or
    model's) own, relative to its scale."""
    return ((out.float() - ref.float()).abs().max() / ref.float().abs().max().clamp_min(1e-30)).item()


def same_output(ref, out) -> bool:
    """Same structure, and every tensor within 1e-4 of the reference's largest magnitude
    (:func:`relative_error`): whether a rewritten model computes what the model did."""
    ref_leaves, ref_spec = tree_flatten(ref)
    out_leaves, out_spec = tree_flatten(out)
    if ref_spec != out_spec:
        return False
    for r, o in zip(ref_leaves, out_leaves):
        if isinstance(r, torch.Tensor):
            if not isinstance(o, torch.Tensor) or o.shape != r.shape:
                return False
            if r.numel() and relative_error(o, r) > 1e-4:
                return False
        elif r != o:
            return False
    return True


def channels_last_format(ndim: int) -> torch.memory_format:
    """The channels-last memory format of a ``ndim``-dimensional batch: 5 -> channels-last-3d."""
    return torch.channels_last_3d if ndim == 5 else torch.channels_last


def set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Replace ``model``'s submodule ``name`` (dotted) by ``new``."""
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, new)
