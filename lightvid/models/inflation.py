"""Inflating 2D weights into 3D networks (Carreira and Zisserman, "Quo Vadis, Action Recognition?",
CVPR 2017, Sec. 2.4): the one loop that both :func:`lightvid.compress.inflate.inflate` (same names)
and :func:`lightvid.models.resnet3d.inflate_from_resnet2d` (mapped names) run.

A 2D kernel ``(O, I, kh, kw)`` meeting a 3D one ``(O, I, kt, kh, kw)`` is repeated ``kt`` times
along time and divided by ``kt``; every other tensor is copied when the shapes agree.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


def inflate_tensor(w2d: torch.Tensor, kt: int) -> torch.Tensor:
    """``(O, I, kh, kw)`` -> ``(O, I, kt, kh, kw)``: repeated along time, divided by ``kt``."""
    return w2d.unsqueeze(2).repeat(1, 1, kt, 1, 1) / kt


@dataclass
class Unmatched:
    """A 3D tensor without a usable 2D source (``src_shape`` None: no tensor under ``src_key``)."""

    key: str
    src_key: str
    dst_shape: tuple
    src_shape: tuple | None = None  # the 2D tensor's shape
    got_shape: tuple | None = None  # its shape after inflation (== src_shape when not inflated)


def excluded(key: str, exclude: tuple[str, ...]) -> bool:
    """``key`` lies under one of the name prefixes ``exclude``."""
    return any(key == p or key.startswith(p.rstrip(".") + ".") for p in exclude)


@torch.no_grad()
def inflate_state_dict(src: dict[str, torch.Tensor], dst: dict[str, torch.Tensor],
                       key_map: Callable[[str], str] = lambda k: k, exclude: tuple[str, ...] = (),
                       ) -> tuple[dict[str, torch.Tensor], list[Unmatched]]:
    """``(new, unmatched)``: for every tensor of ``dst`` outside ``exclude``, the ``src`` tensor named
    ``key_map(key)``, inflated where a 4D kernel meets a 5D one; ``unmatched`` in ``dst`` order."""
    new, unmatched = {}, []
    for k, target in dst.items():
        if excluded(k, exclude):
            continue
        sk = key_map(k)
        w = src.get(sk)
        if w is None:
            unmatched.append(Unmatched(k, sk, tuple(target.shape)))
            continue
        got = inflate_tensor(w, target.shape[2]) if w.dim() == 4 and target.dim() == 5 else w
        if got.shape != target.shape:
            unmatched.append(Unmatched(k, sk, tuple(target.shape), tuple(w.shape), tuple(got.shape)))
            continue
        new[k] = got.clone() if got is w else got
    return new, unmatched
