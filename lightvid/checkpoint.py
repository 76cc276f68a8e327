"""Safe, atomic checkpoint I/O.

* Loading never runs code: ``.pt``/``.pth``/``.ckpt`` files go through
  ``torch.load(weights_only=True)``; ``.safetensors`` through safetensors. A pickle that
  would import or call anything is refused with a one-line :class:`CheckpointError`.
* A truncated or corrupt file is a :class:`CheckpointError` naming the file.
* Saving writes to a temporary file in the same folder and renames it into place, so a
  crash never leaves a half-written checkpoint.
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
    own = model.state_dict()
    # batch norm fills a missing num_batches_tracked itself (older files lack it)
    missing = sorted(k for k in set(own) - set(state) if not k.endswith("num_batches_tracked"))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in sorted(set(own) & set(state)) if state[k].shape != own[k].shape]
    if shapes or (strict and (missing or unexpected)):
        parts = []
        if missing:
            parts.append(f"missing keys {_abbrev(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_abbrev(unexpected)}")
        if shapes:
            parts.append(f"differing shapes {_abbrev(shapes)}")
        raise CheckpointError(f"{path}: does not match the model: " + "; ".join(parts))
    model.load_state_dict(state, strict=strict)
    return model


def _abbrev(items: list[str], n: int = 8) -> str:
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return "[" + ", ".join(items[:n]) + "]" + more


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:300]
