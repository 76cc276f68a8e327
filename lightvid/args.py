"""Argument helpers shared by the subcommands' parsers (model flags, input sizes, ``--data``).

A library module: the ``cli.py`` of each package imports it; it imports nothing of lightvid.
"""
from __future__ import annotations

import argparse
import ast


def parse_kw(items: list[str] | None) -> dict:
    """``["a=1", "b=paper"]`` -> ``{"a": 1, "b": "paper"}``; values are Python literals when they parse."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"--kw expects key=value, got {item!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def parse_input_size(text: str) -> tuple[int, ...]:
    """``"3x16x112x112"`` -> ``(3, 16, 112, 112)``."""
    try:
        dims = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--input expects CxTxHxW or CxHxW, got {text!r}") from None
    if len(dims) not in (3, 4) or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"--input expects CxTxHxW or CxHxW, got {text!r}")
    return dims


def add_model_args(parser: argparse.ArgumentParser, num_classes_default=None) -> None:
    """The model-building flags every model-taking command shares."""
    parser.add_argument("--num-classes", type=int, default=num_classes_default,
                        help="classifier size (default: the model's)")
    parser.add_argument("--width-mult", type=float, default=None, help="channel multiplier")
    parser.add_argument("--kw", action="append", metavar="KEY=VALUE", default=[],
                        help="extra model keyword argument (repeatable; Python literal or string)")


def model_kwargs(args: argparse.Namespace) -> dict:
    kwargs = parse_kw(args.kw)
    if getattr(args, "width_mult", None) is not None:
        kwargs["width_mult"] = args.width_mult
    if getattr(args, "num_classes", None) is not None:
        kwargs["num_classes"] = args.num_classes
    return kwargs


def data_overrides(items: list[str]) -> list[str]:
    """``--data PATH`` sets data.root; ``--data key=value`` sets data.key."""
    out = []
    for item in items:
        if "=" in item:
            key = item if item.startswith("data.") else f"data.{item}"
            out.append(key)
        else:
            out.append(f"data.root={item}")
    return out
