"""A training run as its checkpoint describes it: the model, and the data it was trained on.

* :func:`load_model`: ``(model in eval mode, meta)`` from a training checkpoint (the
  ``lightvid`` entry written by :func:`lightvid.checkpoint.checkpoint_meta`);
* :func:`run_data_config`: the run's ``data:`` config, with dotted overrides;
* :func:`run_dataset`: an evaluation-mode dataset normalised for the checkpoint's model, its
  classes checked against the checkpoint's.

Lightning-free: ``lightvid predict``/``export``/``bench`` and ``lightvid eval``/``convert``/
``distill`` all rebuild a run through it.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch.nn as nn

from lightvid.checkpoint import CheckpointError, read_checkpoint, state_dict_mismatch
from lightvid.data.build import DataConfig, build_dataset
from lightvid.errors import UserError
from lightvid.models.registry import create_model
from lightvid.train.config import apply_overrides, from_dict


def load_model(path: str | os.PathLike, strict: bool = True) -> tuple[nn.Module, dict]:
    """Rebuild the model a run trained: ``(model in eval mode, meta)``.

    ``meta`` has ``model`` (registry name), ``model_kwargs``, ``num_classes``, ``classes``,
    ``input_transform``, ``default_cfg``, ``config`` (the resolved run config incl. ``data``),
    ``epoch``, ``global_step``, ``metrics`` and ``path``.
    """
    obj = read_checkpoint(path)
    meta = dict(obj["lightvid"])
    try:
        model = create_model(meta["model"], num_classes=meta["num_classes"],
                             input_transform=meta.get("input_transform"), **meta["model_kwargs"])
    except (TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{path}: cannot rebuild {meta['model']!r} ({e})") from None
    prefix = "model."
    state = {k[len(prefix):]: v for k, v in obj["state_dict"].items() if k.startswith(prefix)}
    mismatch = state_dict_mismatch(model.state_dict(), state, strict)
    if mismatch:
        raise CheckpointError(f"{path}: weights do not match {meta['model']}: {mismatch}")
    model.load_state_dict(state, strict=strict)
    model.eval()
    meta.setdefault("classes", [str(i) for i in range(meta["num_classes"])])
    meta.setdefault("config", {})
    meta["path"] = str(Path(path))
    return model, meta


def run_data_config(meta: dict, overrides: list[str] | None = None, default: dict | None = None,
                    source: str = "checkpoint data config") -> DataConfig:
    """The run's ``data:`` config (``default`` when the checkpoint has none), dotted ``data.*``
    ``overrides`` applied, validated; errors name the key."""
    run_data = (meta.get("config") or {}).get("data")
    raw = {"data": dict(run_data or default or {})}
    apply_overrides(raw, list(overrides or []))
    cfg = from_dict(DataConfig, raw["data"], source, prefix="data.")
    try:
        cfg.validate()
    except UserError as e:
        raise UserError(f"data: {e}") from None
    return cfg


def model_norm(meta: dict, model: nn.Module | None = None) -> tuple:
    """``(mean, std)`` the model expects: its ``default_cfg``, else the checkpoint's (None if neither)."""
    cfg = (getattr(model, "default_cfg", None) if model is not None else None) or meta.get("default_cfg") or {}
    return cfg.get("mean"), cfg.get("std")


def run_dataset(meta: dict, data_cfg: DataConfig, split: str | None = None, whose: str = "checkpoint's",
                hint: str = ""):
    """The evaluation-mode dataset of ``split`` (default: the validation split), normalised for the
    checkpoint's model; its classes must be the checkpoint's (a ``UserError`` ending in ``hint`` if not)."""
    mean, std = model_norm(meta)
    ds = build_dataset(data_cfg, split or data_cfg.val_split, False, mean, std,
                       input_transform=None)  # the model built by load_model already holds it
    if list(ds.classes) != list(meta["classes"]):
        raise UserError(f"the data's classes {list(ds.classes)[:5]}... differ from the {whose} "
                        f"{list(meta['classes'])[:5]}...{hint}")
    return ds
