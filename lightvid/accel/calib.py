"""Calibration batches for int8 post-training quantisation, from a training config or a data folder.

``calibration_batches(spec, input_size, clips, batch)``: ``spec`` is a training config YAML
(its ``data`` section, training split) or a dataset folder (``data.format: auto``). Clips
are decoded with the evaluation transform (centre crop) at the model's input size, so the
activation ranges seen in calibration are those of inference. ``clips`` evenly spaced items
of the split are used; files that fail to decode are skipped and counted.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch

from lightvid.errors import UserError


def calibration_batches(spec: str, input_size, clips: int = 32, batch: int = 8,
                        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)) -> list[torch.Tensor]:
    """``ceil(clips / batch)`` input batches ``(B, C, T, H, W)`` (or ``(B, C, H, W)``) from ``spec``."""
    from lightvid.data.build import DataConfig

    if clips < 1 or batch < 1:
        raise UserError("--calib-clips and the calibration batch must be >= 1")
    path = Path(spec)
    size = tuple(input_size)
    shape_keys = {"size": size[-1]}
    if len(size) == 4:
        shape_keys["clip_len"] = size[1]
    if path.is_file() and path.suffix in (".yaml", ".yml"):
        from lightvid.train.config import load_config

        data = load_config(path).data
        cfg = DataConfig(**{**{k: getattr(data, k) for k in data.__dataclass_fields__}, **shape_keys,
                            "num_workers": 0})
        where = f"{path}: data"
    elif path.is_dir():
        cfg = DataConfig(root=str(path), format="auto", short_side=None, num_workers=0, **shape_keys)
        where = str(path)
    else:
        raise UserError(f"--calib {spec}: neither a config .yaml nor a dataset folder")
    return batches_from_data(cfg, size, clips, batch, mean, std, where)


def batches_from_data(cfg, input_size, clips: int = 32, batch: int = 8, mean=(0.5, 0.5, 0.5),
                      std=(0.5, 0.5, 0.5), where: str = "data") -> list[torch.Tensor]:
    """Like :func:`calibration_batches` from a ``DataConfig`` (e.g. a checkpoint's own ``data``)."""
    from lightvid.data.build import build_dataset

    size = tuple(input_size)
    if cfg.short_side is not None and cfg.short_side < cfg.size:
        cfg.short_side = cfg.size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undecodable files: counted below
        ds = build_dataset(cfg, cfg.train_split, train=False, mean=mean, std=std)
    if len(ds) == 0:
        raise UserError(f"{where}: the {cfg.train_split!r} split has no items to calibrate on")
    n = min(clips, len(ds))
    idx = [round(i * (len(ds) - 1) / max(n - 1, 1)) for i in range(n)]
    items, skipped = [], 0
    for i in idx:
        item = ds[i]
        if item is None:
            skipped += 1
            continue
        x = item[0]
        items.append(x[0] if x.dim() == len(size) + 1 else x)  # a (crops, ...) stack: its first crop
    if skipped:
        warnings.warn(f"{where}: {skipped} of {n} calibration items could not be decoded and were skipped",
                      stacklevel=2)
    if not items:
        raise UserError(f"{where}: none of {n} calibration items could be decoded")
    if tuple(items[0].shape) != size:
        raise UserError(f"{where}: calibration clips are {tuple(items[0].shape)}, the model takes {size}")
    return [torch.stack(items[i:i + batch]) for i in range(0, len(items), batch)]
