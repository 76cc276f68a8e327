"""Inflation: initialise a 3D network from its 2D twin (Carreira and Zisserman, CVPR 2017, Sec. 2.4).

Every 2D convolution kernel ``(O, I, kh, kw)`` is repeated ``kt`` times along a new time axis
and divided by ``kt``, giving ``(O, I, kt, kh, kw)``: on a "boring" video (one image repeated
in time) each 3D convolution then computes the 2D one. Everything else (biases, batch-norm
weights and running statistics, linear layers) is copied unchanged. Tensors are matched by
their state_dict names, so the 3D model must use the 2D model's names (``i3d`` mirrors
``googlenet_bn``; ``i3d(batch_norm=False, lrn=True, b3_kernel=5, pool4_kernel=3)`` mirrors
``googlenet``).

The boring-video identity is exact when time is padded by replicating edge frames
(``i3d(temporal_pad="replicate")``) and the 2D and 3D models are in eval mode; with zero
temporal padding the first and last frames of each layer see zeros and the outputs differ.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from lightvid.errors import UserError


def _abbrev(items: list[str], n: int = 6) -> str:
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def inflate_tensor(w2d: torch.Tensor, kt: int) -> torch.Tensor:
    """``(O, I, kh, kw)`` -> ``(O, I, kt, kh, kw)``: repeated along time, divided by ``kt``."""
    return w2d.unsqueeze(2).repeat(1, 1, kt, 1, 1) / kt


@torch.no_grad()
def inflate(model2d: nn.Module, model3d: nn.Module, strict: bool = True, exclude: tuple[str, ...] = ()) -> nn.Module:
    """Copy ``model2d``'s weights into ``model3d`` (inflating conv kernels); returns ``model3d``.

    Args:
        strict: every 3D tensor must have a 2D source and every 2D tensor a 3D target
            (names under ``exclude`` aside); ``False`` skips unmatched names on both sides.
        exclude: name prefixes left untouched in ``model3d`` (e.g. ``("fc",)`` when the class
            counts differ).

    Raises:
        UserError: naming the unmatched keys, or a tensor whose shapes cannot correspond.
    """
    src, dst = model2d.state_dict(), model3d.state_dict()

    def skipped(k: str) -> bool:
        return any(k == p or k.startswith(p.rstrip(".") + ".") for p in exclude)

    missing = [k for k in dst if k not in src and not skipped(k)]
    unused = [k for k in src if k not in dst and not skipped(k)]
    if strict and (missing or unused):
        parts = []
        if missing:
            parts.append(f"3D keys with no 2D source: {_abbrev(missing)}")
        if unused:
            parts.append(f"2D keys with no 3D target: {_abbrev(unused)}")
        raise UserError("inflate: the models' state_dict names differ; " + "; ".join(parts)
                        + " (strict=False skips them, exclude=(prefix,) leaves 3D tensors as they are)")
    new = {}
    for k, target in dst.items():
        if skipped(k) or k not in src:
            continue
        w = src[k]
        if w.shape == target.shape:
            new[k] = w.clone()
        elif w.dim() == 4 and target.dim() == 5 and w.shape[:2] == target.shape[:2] and w.shape[2:] == target.shape[3:]:
            new[k] = inflate_tensor(w, target.shape[2])
        else:
            hint = " (class counts differ? pass exclude=('fc',))" if w.dim() <= 2 else ""
            raise UserError(f"inflate: {k}: 2D shape {tuple(w.shape)} cannot become 3D shape {tuple(target.shape)}{hint}")
    model3d.load_state_dict(new, strict=False)
    return model3d
