"""The model registry: ``@register_model`` builders, ``create_model`` and ``list_models``.

A builder is a plain function whose name is the model's name::

    @register_model
    def c3d(**kwargs):
        return C3D(**kwargs)

Every family module is imported by ``lightvid.models`` itself, so the registry is
complete as soon as ``lightvid`` is imported; nothing depends on import order.
"""
from __future__ import annotations

import difflib
import fnmatch
from typing import Callable

import torch.nn as nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register ``fn`` under its own name; a second model of the same name raises."""
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(f"model {name!r} is already registered (by {_MODELS[name].__module__})")
    _MODELS[name] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names of the registered models that match a shell-style ``pattern``."""
    return sorted(n for n in _MODELS if fnmatch.fnmatchcase(n, pattern))


def is_model(name: str) -> bool:
    return name in _MODELS


def closest_names(name: str, n: int = 5) -> list[str]:
    close = difflib.get_close_matches(name, _MODELS, n=n, cutoff=0.4)
    return close or [m for m in sorted(_MODELS) if m.startswith(name[:3])][:n]


def unknown_model_error(name: str) -> KeyError:
    hint = ", ".join(closest_names(name)) or "see `lightvid list`"
    return KeyError(f"unknown model {name!r}; closest: {hint}")


def get_builder(name: str) -> Callable[..., nn.Module]:
    try:
        return _MODELS[name]
    except KeyError:
        raise unknown_model_error(name) from None


def create_model(
    name: str,
    num_classes: int | None = None,
    in_chans: int = 3,
    weights: str | None = None,
    strict: bool = True,
    input_transform: str | None = None,
    **kwargs,
) -> nn.Module:
    """Build a registered model.

    ``num_classes=None`` keeps the builder's default; ``0`` gives a model that returns
    pooled features. ``weights`` is a local ``.pth``/``.pt``/``.safetensors`` file whose
    state_dict is loaded strictly (see :func:`lightvid.checkpoint.load_state_dict_into`).
    ``input_transform="trg"`` puts the temporal residual gradient in front of a video model.
    """
    builder = get_builder(name)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if input_transform is not None:
        from lightvid.models.input_transforms import with_input_transform

        model = with_input_transform(builder, input_transform, in_chans=in_chans, **kwargs)
    else:
        model = builder(in_chans=in_chans, **kwargs)
    model.default_cfg = dict(getattr(model, "default_cfg", {}), architecture=name)
    if weights is not None:
        from lightvid.checkpoint import load_state_dict_into

        load_state_dict_into(model, weights, strict=strict)
    return model
