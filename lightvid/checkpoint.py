"""Safe, atomic checkpoint I/O.

* Loading never runs code: ``.pt``/``.pth``/``.ckpt`` files go through
  ``torch.load(weights_only=True)``; ``.safetensors`` through safetensors. A pickle that
  would import or call anything is refused with a one-line :class:`CheckpointError`.
* A truncated or corrupt file is a :class:`CheckpointError` naming the file.
* Saving writes to a temporary file in the same folder and renames it into place, so a
  crash never leaves a half-written checkpoint.
* Training checkpoints (a run's ``checkpoints/best.ckpt``) hold a ``lightvid`` entry that
  rebuilds the model, written by :func:`checkpoint_meta` and read back by
  :func:`lightvid.run_spec.load_model`::

      ckpt["lightvid"] -> {"model": "c3d", "model_kwargs": {...}, "num_classes": 10,
                           "classes": [...], "config": {...}, "epoch": 5, "metrics": {...}}
      ckpt["state_dict"] -> {"model.conv1.weight": ..., ...}

      model, meta = load_model("runs/x/checkpoints/best.ckpt")   # eval mode

This module imports nothing of lightvid and no Lightning: models load weights through it and
inference (``lightvid predict``, ``export``, ``bench``) reads checkpoints through it.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

STATE_DICT_KEYS = ("state_dict", "model_state", "model")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read safely; the message names the file."""


def save_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` (or safetensors for a ``.safetensors`` path of tensors) via temp file + rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in obj.items()}, tmp)
        else:
            torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_file(path: str | os.PathLike) -> Any:
    """Load a checkpoint without executing code; errors name the file in one line."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file as st_load

        try:
            return st_load(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{path}: not a readable safetensors file ({_first_line(e)})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        msg = _first_line(e)
        if "weights_only" in str(e) or "Unsupported global" in str(e) or "GLOBAL" in str(e):
            raise CheckpointError(
                f"{path}: refused, the file would run code when unpickled ({msg}); "
                "only tensors, numbers, strings and containers are loaded"
            ) from None
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({msg})") from None


def extract_state_dict(obj: Any, path: str | os.PathLike = "<checkpoint>") -> dict[str, torch.Tensor]:
    """The state_dict inside ``obj``: itself, or under ``state_dict``/``model_state``/``model``."""
    if isinstance(obj, dict):
        for key in STATE_DICT_KEYS:
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
    raise CheckpointError(f"{path}: holds no state_dict (expected tensors, or one under {STATE_DICT_KEYS})")


def load_state_dict_into(model: nn.Module, path: str | os.PathLike, strict: bool = True) -> nn.Module:
    """Load a local state_dict file into ``model``; a mismatch lists keys and shapes."""
    state = extract_state_dict(load_file(path), path)
    # Lightning checkpoints prefix the model's keys with "model."
    if all(k.startswith("model.") for k in state) and not any(k.startswith("model.") for k in model.state_dict()):
        state = {k[len("model."):]: v for k, v in state.items()}
    # A model that knows older key layouts of its own checkpoints renames them first.
    remap = getattr(model, "remap_state_dict", None)
    if callable(remap):
        state = remap(state)
    mismatch = state_dict_mismatch(model.state_dict(), state, strict)
    if mismatch:
        raise CheckpointError(f"{path}: does not match the model: {mismatch}")
    model.load_state_dict(state, strict=strict)
    return model


def state_dict_mismatch(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor], strict: bool = True) -> str:
    """How ``state`` fails to fit a model whose state_dict is ``own`` ("" when it fits).

    Differing shapes always count; missing and unexpected keys only when ``strict``. A missing
    batch-norm ``num_batches_tracked`` never counts (batch norm fills it; older files lack it).
    """
    missing = sorted(k for k in set(own) - set(state) if not k.endswith("num_batches_tracked"))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in sorted(set(own) & set(state)) if state[k].shape != own[k].shape]
    if not shapes and not (strict and (missing or unexpected)):
        return ""
    parts = []
    if missing:
        parts.append(f"missing keys {_abbrev(missing)}")
    if unexpected:
        parts.append(f"unexpected keys {_abbrev(unexpected)}")
    if shapes:
        parts.append(f"differing shapes {_abbrev(shapes)}")
    return "; ".join(parts)


def _abbrev(items: list[str], n: int = 8) -> str:
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return "[" + ", ".join(items[:n]) + "]" + more


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:300]


# -- training checkpoints: the ``lightvid`` entry that rebuilds the model --------------------------
META_KEYS = ("model", "model_kwargs", "num_classes")  # what load_model needs


def plain(obj: Any) -> Any:
    """Tuples -> lists, recursively (checkpoint metadata must be weights_only-safe and YAML-able)."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


def checkpoint_meta(model_name: str, model: nn.Module, model_kwargs: dict, num_classes: int, classes: list[str],
                    input_transform: str | None = None, config: dict | None = None, **extra: Any) -> dict:
    """The ``lightvid`` entry of a training checkpoint: what :func:`lightvid.run_spec.load_model` rebuilds
    the model from.

    ``model`` gives its ``default_cfg`` (mean, std, input size); ``extra`` adds keys such as
    ``epoch``, ``global_step``, ``metrics`` or ``converted_from``.
    """
    cfg = getattr(model, "default_cfg", {}) or {}
    return plain({
        "model": model_name,
        "model_kwargs": dict(model_kwargs),
        "num_classes": int(num_classes),
        "classes": list(classes),
        "input_transform": input_transform,
        "default_cfg": {k: v for k, v in cfg.items() if isinstance(v, (str, int, float, list, tuple))},
        "config": config or {},
        **extra,
    })


def save_model_checkpoint(model: nn.Module, meta: dict, path: str | os.PathLike) -> Path:
    """Write ``model``'s weights and ``meta`` (from :func:`checkpoint_meta`) as a training checkpoint
    that ``lightvid eval``/``predict``/``export`` and ``load_model`` read (atomically)."""
    state = {f"model.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    return save_atomic({"lightvid": meta, "state_dict": state}, path)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The checkpoint dict, with its ``lightvid`` metadata checked; errors name the file."""
    obj = load_file(path)
    if not isinstance(obj, dict) or "lightvid" not in obj or "state_dict" not in obj:
        raise CheckpointError(f"{path}: not a lightvid training checkpoint (no 'lightvid' metadata); "
                              "for a bare state_dict use create_model(name, weights=PATH)")
    meta = obj["lightvid"]
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise CheckpointError(f"{path}: checkpoint metadata lacks {', '.join(missing)}")
    return obj
