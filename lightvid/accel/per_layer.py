"""Helpers of the per-layer choices (hybrid Winograd, 2D lowering): record what each layer
sees on an example input, and swap a layer for its replacement."""
from __future__ import annotations

import torch
import torch.nn as nn


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


def set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Replace ``model``'s submodule ``name`` (dotted) by ``new``."""
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, new)
