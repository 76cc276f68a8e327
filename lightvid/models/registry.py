"""The model registry: ``@register_model`` builders, ``create_model`` and ``list_models``.

A builder is a plain function whose name is the model's name::

    @register_model
    def c3d(**kwargs):
        return C3D(**kwargs)

Every family module is imported by ``lightvid.models`` itself, so the registry is
complete as soon as ``lightvid`` is imported; nothing depends on import order.
"""
from __future__ import annotations

import ast
import difflib
import fnmatch
import inspect
import textwrap
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


def accepted_kwargs(name: str) -> set[str] | None:
    """The keyword arguments model ``name`` accepts, read from signatures without building it.

    A builder ``def c3d_mc4(**kwargs): return C3D(fold_from=4, **kwargs)`` is followed to
    ``C3D.__init__`` (less the arguments the builder fixes, here ``fold_from``); helper functions
    are followed the same way. ``None`` when a ``**kwargs`` goes somewhere that cannot be read
    (e.g. ``super().__init__(**kwargs)``): then any keyword may be valid.
    """
    return _accepted(get_builder(name), 0)


def _params(fn) -> tuple[list[inspect.Parameter], str | None]:
    sig = inspect.signature(fn.__init__ if isinstance(fn, type) else fn)
    params = [p for p in sig.parameters.values() if p.name != "self"]
    var_kw = next((p.name for p in params if p.kind is inspect.Parameter.VAR_KEYWORD), None)
    return params, var_kw


def _accepted(fn, depth: int) -> set[str] | None:
    params, var_kw = _params(fn)
    named = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if var_kw is None:
        return named
    code = fn.__init__ if isinstance(fn, type) else fn
    if depth > 4 or not inspect.isfunction(code):
        return None
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(code)))
    except (OSError, TypeError, SyntaxError):
        return None
    def forwards(k: ast.keyword) -> bool:  # f(**kwargs) or f(**{"num_frames": 4, **kwargs})
        v = k.value
        if isinstance(v, ast.Dict):
            return any(key is None and isinstance(val, ast.Name) and val.id == var_kw
                       for key, val in zip(v.keys, v.values))
        return isinstance(v, ast.Name) and v.id == var_kw

    out, followed = set(named), False
    for call in ast.walk(tree):
        if not isinstance(call, ast.Call) or not any(k.arg is None and forwards(k) for k in call.keywords):
            continue
        followed = True
        target = code.__globals__.get(call.func.id) if isinstance(call.func, ast.Name) else None
        if target is None or not callable(target):
            return None
        inner = _accepted(target, depth + 1)
        if inner is None:
            return None
        fixed = {k.arg for k in call.keywords if k.arg is not None}
        positional = [p.name for p in _params(target)[0]][: len(call.args)]
        out |= inner - fixed - set(positional)
    return out if followed else None
