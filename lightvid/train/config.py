"""Training configs: typed dataclasses read from YAML, with dotted ``key=value`` overrides.

A config file has the sections of :class:`TrainConfig`::

    name: quickstart
    seed: 0
    model:    {name: c3d, kwargs: {width_mult: 0.125}}
    data:     {format: synth, root: .cache/synth-motion, clip_len: 8, size: 32}   # DataConfig
    optim:    {name: adamw, lr: 0.003, weight_decay: 0.05}
    schedule: {name: cosine, warmup_epochs: 1}
    trainer:  {max_epochs: 6, batch_size: 16, precision: auto}

Every key is checked against the dataclasses: an unknown key or a value of the wrong
type or outside its choices is a one-line :class:`UserError` naming the key (and the
closest valid names) before anything is built. Overrides such as
``optim.lr=0.1 model.kwargs.width_mult=0.5`` are parsed as YAML scalars.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from lightvid.data.build import DataConfig
from lightvid.errors import UserError
from lightvid.precision import TRAINING_PRECISIONS

INIT_SCHEMES = ("default", "kaiming")  # any other model.init is a weights file
PRECISIONS = TRAINING_PRECISIONS  # the one list, in lightvid.precision


@dataclass
class ModelConfig:
    name: str = "c3d"
    kwargs: dict = field(default_factory=dict)  # passed to the builder (width_mult, drop_rate, ...)
    num_classes: int | None = None  # None: the number of classes in the training set
    weights: str | None = None  # a local state_dict to start from (create_model(weights=...))
    input_transform: str | None = None  # e.g. "trg"
    # "default"; "kaiming": re-initialise (module.reinit_kaiming); or a PATH to start from: a lightvid
    # checkpoint, safetensors, or a torchvision / VMZ / PyTorchVideo state dict (models.pretrained_keys);
    # a classifier of another class count is replaced
    init: str = "default"
    freeze_backbone_epochs: int = 0  # with init=PATH: train only the classifier for the first N epochs


@dataclass
class OptimConfig:
    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    label_smoothing: float = 0.0


@dataclass
class ScheduleConfig:
    """Per-step learning-rate schedule: linear warm-up, then cosine, step or constant."""

    name: Literal["cosine", "step", "constant"] = "cosine"
    warmup_epochs: float = 0.0
    warmup_start_factor: float = 0.1  # lr at step 0 = lr * this
    min_lr_factor: float = 0.0  # cosine ends at lr * this
    milestones: list[int] = field(default_factory=list)  # step: epochs where lr *= gamma
    gamma: float = 0.1


@dataclass
class AugmentConfig:
    """Augmentation and regularisation (``lightvid.train.augment``); every key off by default."""

    mixup_alpha: float = 0.0  # > 0: mixup with lam ~ Beta(alpha, alpha)
    cutmix_alpha: float = 0.0  # > 0: cutmix, one box through every frame of a clip
    mix_prob: float = 1.0  # chance that a batch is mixed at all
    mix_switch_prob: float = 0.5  # both alphas > 0: chance of cutmix rather than mixup per batch
    randaugment_ops: int = 0  # > 0: RandAugment with this many ops per clip, the same on every frame
    randaugment_magnitude: float = 9.0  # 0-10
    randaugment_magnitude_std: float = 0.0
    repeats: int = 1  # repeated augmentation: each sampled clip this many times per epoch, in one batch
    ema_decay: float | None = None  # e.g. 0.99: validate and save an EMA of the weights


@dataclass
class TrainerConfig:
    max_epochs: int = 10
    min_steps: int = 0  # a small set trains more epochs than max_epochs until it has made this many optimiser steps
    batch_size: int = 16
    eval_batch_size: int | None = None  # default: 2 x batch_size
    precision: str = "auto"  # auto: bf16-mixed on a bf16-capable CPU or GPU, else 16-mixed (GPU) / 32
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    devices: int | str = "auto"
    num_nodes: int = 1
    strategy: Literal["auto", "ddp", "ddp_spawn", "ddp_find_unused_parameters_true", "fsdp"] = "auto"
    deterministic: bool = False
    grad_clip: float | None = None
    accumulate_grad_batches: int = 1
    limit_train_batches: float = 1.0
    limit_val_batches: float = 1.0
    check_val_every_n_epoch: int = 1
    log_every_n_steps: int = 10
    num_threads: int | None = None  # torch.set_num_threads (CPU); None leaves torch's default
    progress_bar: bool = True
    final_eval: bool = True  # evaluate the best checkpoint after training (report.json, confusion matrix)


@dataclass
class TrainConfig:
    name: str = "run"
    seed: int = 0
    # classify: the data/ pipeline; detect | localize | segment: lightvid.train.regions (its `regions` section)
    task: Literal["classify", "detect", "localize", "segment"] = "classify"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    regions: dict = field(default_factory=dict)  # lightvid.train.regions.RegionsConfig keys

    def to_dict(self) -> dict:
        return to_plain(self)

    def validate(self) -> "TrainConfig":
        validate_config(self)
        return self


# ---------------------------------------------------------------------------------------
# dict <-> dataclass


def to_plain(obj: Any) -> Any:
    """Dataclasses, tuples and paths -> dicts, lists and strings (YAML- and weights_only-safe)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _closest(key: str, names) -> str:
    close = difflib.get_close_matches(key, list(names), n=3, cutoff=0.5)
    return ", ".join(close) if close else ", ".join(sorted(names))


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp, key: str, source: str) -> Any:
    """``value`` checked (and gently converted) against the annotation ``tp``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, source)
            except UserError as e:
                errors.append(e)
        raise UserError(f"{source}: {key}={value!r} is not a {' or '.join(_type_name(a) for a in args)}")
    if origin is Literal:
        if value not in args:
            raise UserError(f"{source}: {key}={value!r} is not one of {', '.join(map(str, args))}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise UserError(f"{source}: {key} must be a mapping of {tp.__name__} keys, got {value!r}")
        return from_dict(tp, value, source, prefix=f"{key}.")
    if origin in (list, tuple) or tp in (list, tuple):
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise UserError(f"{source}: {key} must be a list, got {value!r}")
        item = args[0] if args else Any
        return [_coerce(v, item, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise UserError(f"{source}: {key} must be a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise UserError(f"{source}: {key}={value!r} is not true/false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise UserError(f"{source}: {key}={value!r} is not an integer")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # YAML reads 1e-3 as a string
            except ValueError:
                pass
        raise UserError(f"{source}: {key}={value!r} is not a number")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise UserError(f"{source}: {key}={value!r} is not a string")
    if tp is Path:
        return Path(value)
    return value


def from_dict(cls, data: dict, source: str = "<config>", prefix: str = ""):
    """Build dataclass ``cls`` from ``data``; unknown keys name the closest valid ones."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise UserError(f"{source}: unknown key '{prefix}{key}'; closest: {_closest(str(key), names)}")
        kwargs[key] = _coerce(value, hints[key], f"{prefix}{key}", source)
    return cls(**kwargs)


# ---------------------------------------------------------------------------------------
# overrides and files


def parse_override(item: str) -> tuple[list[str], Any]:
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise UserError(f"override {item!r}: expected dotted.key=value")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    return key.strip().split("."), value


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Set ``a.b.c=value`` in the nested dict ``raw`` (in place); returns ``raw``."""
    for item in overrides or []:
        path, value = parse_override(item)
        node = raw
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise UserError(f"override {item!r}: {part!r} is not a section")
            node = child
        node[path[-1]] = value
    return raw


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config (``None``: the defaults), apply dotted overrides, validate."""
    raw, source = read_raw_config(path, overrides)
    cfg = from_dict(TrainConfig, raw, source)
    validate_config(cfg, source)
    return cfg


def read_raw_config(path: str | Path | None, overrides: list[str] | None = None) -> tuple[dict, str]:
    """The YAML mapping at ``path`` (``{}`` for ``None``) with dotted overrides applied, and
    a description of its source for error messages; YAML errors name the file and line."""
    raw: dict = {}
    source = "<defaults>"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise UserError(f"{path}: no such config file")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark is not None else ""
            raise UserError(f"{path}:{where} not valid YAML ({getattr(e, 'problem', e)})") from None
        if not isinstance(raw, dict):
            raise UserError(f"{path}: a config must be a mapping of sections, got {type(raw).__name__}")
    apply_overrides(raw, overrides or [])
    if overrides:
        source += " + overrides"
    return raw, source


def save_config(cfg: TrainConfig, path: str | Path) -> Path:
    from lightvid.fileio import write_text_atomic

    return write_text_atomic(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


# ---------------------------------------------------------------------------------------
# semantic checks (before any training starts)


def validate_config(cfg: TrainConfig, source: str = "<config>") -> None:
    from lightvid.models.registry import closest_names, is_model

    if not is_model(cfg.model.name):
        hint = ", ".join(closest_names(cfg.model.name)) or "see `lightvid list`"
        raise UserError(f"{source}: model.name={cfg.model.name!r} is not a registered model; closest: {hint}")
    check_model_kwargs(cfg.model, source)
    if cfg.model.init not in INIT_SCHEMES and not Path(cfg.model.init).is_file():
        raise UserError(f"{source}: model.init={cfg.model.init!r} is neither {' nor '.join(INIT_SCHEMES)} "
                        "nor an existing weights file")
    if cfg.model.freeze_backbone_epochs < 0:
        raise UserError(f"{source}: model.freeze_backbone_epochs must be >= 0, got {cfg.model.freeze_backbone_epochs}")
    if cfg.model.weights is not None and not Path(cfg.model.weights).is_file():
        raise UserError(f"{source}: model.weights={cfg.model.weights!r}: no such file")
    t = cfg.trainer
    if t.precision not in PRECISIONS:
        raise UserError(f"{source}: trainer.precision={t.precision!r} is not one of {', '.join(PRECISIONS)}")
    for key in ("max_epochs", "batch_size", "num_nodes", "accumulate_grad_batches", "check_val_every_n_epoch"):
        if getattr(t, key) < 1:
            raise UserError(f"{source}: trainer.{key} must be >= 1, got {getattr(t, key)}")
    if not isinstance(t.min_steps, int) or t.min_steps < 0:
        raise UserError(f"{source}: trainer.min_steps must be an integer >= 0, got {t.min_steps!r}")
    if isinstance(t.devices, str) and t.devices != "auto" and not t.devices.replace(",", "").isdigit():
        raise UserError(f"{source}: trainer.devices={t.devices!r} must be an integer, 'auto' or a list like '0,1'")
    if cfg.optim.lr <= 0:
        raise UserError(f"{source}: optim.lr must be > 0, got {cfg.optim.lr}")
    if len(cfg.optim.betas) != 2:
        raise UserError(f"{source}: optim.betas must have two values, got {cfg.optim.betas}")
    if cfg.schedule.warmup_epochs < 0:
        raise UserError(f"{source}: schedule.warmup_epochs must be >= 0")
    if not 0 <= cfg.optim.label_smoothing < 1:
        raise UserError(f"{source}: optim.label_smoothing must be in [0, 1), got {cfg.optim.label_smoothing}")
    if t.grad_clip is not None and t.grad_clip <= 0:
        raise UserError(f"{source}: trainer.grad_clip must be > 0 or null, got {t.grad_clip}")
    check_augment(cfg.augment, source)
    try:
        cfg.data.validate()
    except UserError as e:
        raise UserError(f"{source}: data: {e}") from None


def check_augment(a: AugmentConfig, source: str = "<config>") -> None:
    for key in ("mixup_alpha", "cutmix_alpha", "randaugment_magnitude_std"):
        if getattr(a, key) < 0:
            raise UserError(f"{source}: augment.{key} must be >= 0, got {getattr(a, key)}")
    for key in ("mix_prob", "mix_switch_prob"):
        if not 0 <= getattr(a, key) <= 1:
            raise UserError(f"{source}: augment.{key} must be in [0, 1], got {getattr(a, key)}")
    if a.randaugment_ops < 0:
        raise UserError(f"{source}: augment.randaugment_ops must be >= 0, got {a.randaugment_ops}")
    if not 0 <= a.randaugment_magnitude <= 10:
        raise UserError(f"{source}: augment.randaugment_magnitude must be in [0, 10], got {a.randaugment_magnitude}")
    if a.repeats < 1:
        raise UserError(f"{source}: augment.repeats must be >= 1, got {a.repeats}")
    if a.ema_decay is not None and not 0 < a.ema_decay < 1:
        raise UserError(f"{source}: augment.ema_decay must be in (0, 1) or null, got {a.ema_decay}")


def check_model_kwargs(mcfg: ModelConfig, source: str = "<config>") -> None:
    """Every ``model.kwargs`` key must be a parameter of the model's builder or of the class it builds
    (read from their signatures, :func:`lightvid.models.registry.accepted_kwargs`; nothing is built).
    Values are checked where the model is built (``train`` builds it on the meta device first)."""
    from lightvid.models.registry import accepted_kwargs

    valid = accepted_kwargs(mcfg.name)
    if valid is None:
        return
    for key in mcfg.kwargs:
        if key not in valid:
            raise UserError(f"{source}: unknown key model.kwargs.{key} for {mcfg.name}; "
                            f"closest: {_closest(str(key), sorted(valid))}")


def meta_model(mcfg: ModelConfig, source: str = "<config>"):
    """``mcfg``'s model built on the meta device (no memory, no initialisation): its ``default_cfg``
    (mean, std) before any data is read, and a bad keyword value as a one-line ``UserError``."""
    import torch

    from lightvid.models.registry import create_model

    kwargs = dict(mcfg.kwargs)
    if mcfg.num_classes is not None:
        kwargs["num_classes"] = mcfg.num_classes
    try:
        with torch.device("meta"):
            return create_model(mcfg.name, input_transform=mcfg.input_transform, **kwargs)
    except (TypeError, ValueError, KeyError) as e:
        msg = e.args[0] if e.args else e
        raise UserError(f"{source}: model.kwargs for {mcfg.name}: {msg}") from None
