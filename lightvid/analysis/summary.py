"""``lightvid summary`` and ``lightvid list``: parameters, MACs and shapes per layer.

Convention (that of the torchvision and VMZ model zoos' "GFLOPs"): a convolution costs
``output elements x (C_in / groups) x kernel volume`` multiply-accumulates (MACs), a
linear layer ``in x out`` per output row, everything else zero; FLOPs = 2 x MACs.
Counts are per clip (batch 1). Forward hooks record every leaf module's output shape.
"""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn

from lightvid.args import add_model_args, model_kwargs, parse_input_size
from lightvid.errors import UserError
from lightvid.models.base import count_params
from lightvid.models.registry import create_model, get_builder, list_models

CONVENTION = ("MACs: conv = out elements x C_in/groups x kernel volume; linear = in x out; "
              "other layers 0. FLOPs = 2 x MACs. Batch 1.")


@dataclass
class LayerRow:
    name: str
    type: str
    out_shape: list[int]
    params: int
    macs: int


@dataclass
class Summary:
    model: str
    input: list[int]
    num_classes: int
    params: int
    params_features: int
    params_head: int
    macs: int
    flops: int
    size_mb: float
    layers: list[LayerRow] = field(default_factory=list)
    # output shape of every named module (not only leaves), for rows grouped by --depth
    module_shapes: dict[str, list[int]] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("module_shapes")
        return out


def layer_macs(module: nn.Module, out: torch.Tensor) -> int:
    """MACs of one call of ``module`` that produced ``out`` (batch 1), by the convention above."""
    if isinstance(module, nn.modules.conv._ConvNd) and not module.transposed:
        kernel = math.prod(module.kernel_size)
        return out[0].numel() * (module.in_channels // module.groups) * kernel
    if isinstance(module, nn.Linear):
        return out[0].numel() * module.in_features
    return 0


def _first_tensor(out):
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return None


def summarize(model: nn.Module, input_size, name: str | None = None) -> Summary:
    """Run one ``(1, *input_size)`` clip through ``model`` and tabulate every leaf layer."""
    rows: list[LayerRow] = []
    seen: set[int] = set()
    hooks = []

    def hook(mod_name):
        def fn(module, inputs, output):
            out = _first_tensor(output)
            own = 0
            if id(module) not in seen:  # parameters are counted once, however often a layer runs
                seen.add(id(module))
                own = sum(p.numel() for p in module.parameters(recurse=False))
            rows.append(LayerRow(mod_name, type(module).__name__,
                                 list(out.shape[1:]) if out is not None else [],
                                 own, layer_macs(module, out) if out is not None else 0))
        return fn

    shapes: dict[str, list[int]] = {}

    def shape_hook(mod_name):
        def fn(module, inputs, output):
            out = _first_tensor(output)
            if out is not None:
                shapes[mod_name] = list(out.shape[1:])
        return fn

    for mod_name, module in model.named_modules():
        has_children = any(True for _ in module.children())
        has_own = any(True for _ in module.parameters(recurse=False))
        if mod_name and (not has_children or has_own):
            hooks.append(module.register_forward_hook(hook(mod_name)))
        if mod_name and has_children:
            hooks.append(module.register_forward_hook(shape_hook(mod_name)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_size))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    params = count_params(model)
    head = sum(p.numel() for p in model.head_parameters()) if hasattr(model, "head_parameters") else 0
    macs = sum(r.macs for r in rows)
    return Summary(
        model=name or model.default_cfg.get("architecture", type(model).__name__),
        input=list(input_size), num_classes=int(getattr(model, "num_classes", 0)),
        params=params, params_features=params - head, params_head=head,
        macs=macs, flops=2 * macs, size_mb=params * 4 / 1e6, layers=rows, module_shapes=shapes,
    )


def group_rows(rows: list[LayerRow], depth: int, module_shapes: dict | None = None) -> list[LayerRow]:
    """Aggregate leaf rows by the first ``depth`` components of their names, in first-seen order.

    A group's output shape is its module's own output (e.g. an inception block's concatenation)
    when ``module_shapes`` has it, else that of its last layer.
    """
    groups: dict[str, LayerRow] = {}
    for r in rows:
        key = ".".join(r.name.split(".")[:depth])
        g = groups.get(key)
        if g is None:
            groups[key] = LayerRow(key, r.type if key == r.name else "group", r.out_shape, r.params, r.macs)
        else:
            g.params += r.params
            g.macs += r.macs
            g.out_shape = r.out_shape
    for key, g in groups.items():
        if module_shapes and key in module_shapes:
            g.out_shape = module_shapes[key]
    return list(groups.values())


def build_and_summarize(name: str, input_size=None, **kwargs) -> Summary:
    model = create_model(name, **kwargs)
    size = tuple(input_size or model.default_cfg["input_size"])
    try:
        return summarize(model, size, name)
    except (RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{name} cannot take input {'x'.join(map(str, size))}: {first}") from None


def format_summary(s: Summary, depth: int | None = None) -> str:
    rows = group_rows(s.layers, depth, s.module_shapes) if depth else s.layers
    header = f"{'layer':<34} {'type':<18} {'output':<22} {'params':>13} {'MACs':>16}"
    lines = [f"{s.model}  input {'x'.join(map(str, s.input))}  classes {s.num_classes}", header, "-" * len(header)]
    for r in rows:
        shape = "x".join(map(str, r.out_shape))
        lines.append(f"{r.name:<34.34} {r.type:<18.18} {shape:<22.22} {r.params:>13,} {r.macs:>16,}")
    lines += [
        "-" * len(header),
        f"params: {s.params:,} (features {s.params_features:,}, head {s.params_head:,})",
        f"MACs:   {s.macs:,} ({s.macs / 1e9:.3f} G)   FLOPs: {s.flops:,} ({s.flops / 1e9:.3f} G)",
        f"size:   {s.size_mb:.2f} MB fp32",
        CONVENTION,
    ]
    return "\n".join(lines)


def summary_command(argv: list[str], prog: str = "lightvid summary") -> int:

    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    p.add_argument("name", help="registered model name (see `lightvid list`)")
    p.add_argument("--input", type=parse_input_size, default=None, help="CxTxHxW or CxHxW (default: the model's)")
    p.add_argument("--depth", type=int, default=None, help="group rows by the first N levels of layer names")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_model_args(p)
    args = p.parse_args(argv)
    s = build_and_summarize(args.name, args.input, **model_kwargs(args))
    if args.json:
        print(json.dumps(s.to_dict()))
    else:
        print(format_summary(s, args.depth))
    return 0


def list_command(argv: list[str], prog: str = "lightvid list") -> int:
    p = argparse.ArgumentParser(prog=prog, description="List registered models.")
    p.add_argument("pattern", nargs="?", default="*", help="shell pattern, e.g. 'r2plus1d*'")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    names = list_models(args.pattern)
    if not names:
        raise UserError(f"no registered model matches {args.pattern!r}")
    rows = []
    for n in names:
        with torch.device("meta"):  # no memory, no init cost: just shapes
            m = create_model(n)
        rows.append({"model": n, "params": count_params(m), "input": list(m.default_cfg["input_size"]),
                     "paper": m.default_cfg.get("paper", ""), "doc": (get_builder(n).__doc__ or "").strip()})
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"{'model':<22} {'params':>14}  {'input':<16} paper")
    for r in rows:
        print(f"{r['model']:<22} {r['params']:>14,}  {'x'.join(map(str, r['input'])):<16} {r['paper'][:70]}")
    print(f"{len(rows)} models")
    return 0
