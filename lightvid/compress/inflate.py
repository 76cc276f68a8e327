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
from lightvid.models.inflation import excluded, inflate_state_dict, inflate_tensor  # noqa: F401 (public here too)


def _abbrev(items: list[str], n: int = 6) -> str:
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


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
    new, unmatched = inflate_state_dict(src, dst, exclude=exclude)
    missing = [u.key for u in unmatched if u.src_shape is None]
    targets = set(dst)
    unused = [k for k in src if k not in targets and not excluded(k, exclude)]
    if strict and (missing or unused):
        parts = []
        if missing:
            parts.append(f"3D keys with no 2D source: {_abbrev(missing)}")
        if unused:
            parts.append(f"2D keys with no 3D target: {_abbrev(unused)}")
        raise UserError("inflate: the models' state_dict names differ; " + "; ".join(parts)
                        + " (strict=False skips them, exclude=(prefix,) leaves 3D tensors as they are)")
    for u in unmatched:
        if u.src_shape is not None:
            hint = " (class counts differ? pass exclude=('fc',))" if len(u.src_shape) <= 2 else ""
            raise UserError(f"inflate: {u.key}: 2D shape {u.src_shape} cannot become 3D shape {u.dst_shape}{hint}")
    model3d.load_state_dict(new, strict=False)
    return model3d
