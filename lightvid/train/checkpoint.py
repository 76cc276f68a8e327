"""Training checkpoints: atomic writes through Lightning, safe loads, and ``load_model``.

A run's ``checkpoints/best.ckpt`` and ``last.ckpt`` are Lightning checkpoints (so
``--resume`` restores optimiser, schedule and loop state) written by
:class:`AtomicCheckpointIO` through :func:`lightvid.checkpoint.save_atomic` (temp file +
rename: a kill never leaves half a file) and read through
:func:`lightvid.checkpoint.load_file` (``torch.load(weights_only=True)``: a file that would
run code is refused). Every value in them is a tensor or plain Python, and the ``lightvid``
entry holds what rebuilds the model::

    ckpt = torch.load("runs/x/checkpoints/best.ckpt", weights_only=True)
    ckpt["lightvid"] -> {"model": "c3d", "model_kwargs": {...}, "num_classes": 10,
                         "classes": [...], "config": {...}, "epoch": 5, "metrics": {...}}
    ckpt["state_dict"] -> {"model.conv1.weight": ..., ...}

    model, meta = load_model("runs/x/checkpoints/best.ckpt")   # eval mode
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch.nn as nn
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from lightvid.checkpoint import CheckpointError, load_file, save_atomic


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O with atomic saving and code-free loading."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        save_atomic(checkpoint, path)
        mask = os.umask(0)  # mkstemp made it 0600: give it the permissions of an ordinary file
        os.umask(mask)
        os.chmod(path, 0o666 & ~mask)

    def load_checkpoint(self, path, map_location: Any | None = None, weights_only: bool | None = None) -> dict:
        return load_file(path)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The checkpoint dict, with its ``lightvid`` metadata checked; errors name the file."""
    obj = load_file(path)
    if not isinstance(obj, dict) or "lightvid" not in obj or "state_dict" not in obj:
        raise CheckpointError(f"{path}: not a lightvid training checkpoint (no 'lightvid' metadata); "
                              "for a bare state_dict use create_model(name, weights=PATH)")
    meta = obj["lightvid"]
    missing = [k for k in ("model", "model_kwargs", "num_classes") if k not in meta]
    if missing:
        raise CheckpointError(f"{path}: checkpoint metadata lacks {', '.join(missing)}")
    return obj


def load_model(path: str | os.PathLike, strict: bool = True) -> tuple[nn.Module, dict]:
    """Rebuild the model a run trained: ``(model in eval mode, meta)``.

    ``meta`` has ``model`` (registry name), ``model_kwargs``, ``num_classes``, ``classes``,
    ``input_transform``, ``default_cfg``, ``config`` (the resolved run config incl. ``data``),
    ``epoch``, ``global_step``, ``metrics`` and ``path``.
    """
    from lightvid.models.registry import create_model

    obj = read_checkpoint(path)
    meta = dict(obj["lightvid"])
    try:
        model = create_model(meta["model"], num_classes=meta["num_classes"],
                             input_transform=meta.get("input_transform"), **meta["model_kwargs"])
    except (TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{path}: cannot rebuild {meta['model']!r} ({e})") from None
    prefix = "model."
    state = {k[len(prefix):]: v for k, v in obj["state_dict"].items() if k.startswith(prefix)}
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    bad = [k for k in set(own) & set(state) if own[k].shape != state[k].shape]
    if bad or (strict and (missing or unexpected)):
        raise CheckpointError(f"{path}: weights do not match {meta['model']}: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}, differing shapes {sorted(bad)[:5]}")
    model.load_state_dict(state, strict=strict)
    model.eval()
    meta.setdefault("classes", [str(i) for i in range(meta["num_classes"])])
    meta.setdefault("config", {})
    meta["path"] = str(Path(path))
    return model, meta
