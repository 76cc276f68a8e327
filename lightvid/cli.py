"""The ``lightvid`` command: each subcommand maps to one plain function.

A function takes the remaining arguments and ``prog`` and builds its own parser, so a
subcommand imports only what it needs (``lightvid list`` does not import Lightning).
"""
from __future__ import annotations

import argparse
import ast
import importlib
import os
import sys

# name -> ("module:function", one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "list": ("lightvid.analysis.summary:list_command", "list registered models with parameters and default input"),
    "summary": ("lightvid.analysis.summary:summary_command", "per-layer parameters, MACs and output shapes of a model"),
    "data": ("lightvid.data.cli:data_command", "datasets: `data synth` (synthetic motion set), `data check` (scan for bad files)"),
    "train": ("lightvid.train.cli:train_command", "train a classifier from a YAML config (dotted key=value overrides)"),
    "eval": ("lightvid.train.cli:eval_command", "clip- and video-level accuracy of a checkpoint"),
    "distill": ("lightvid.compress.cli:distill_command", "knowledge distillation from a teacher checkpoint into a student"),
    "convert": ("lightvid.compress.cli:convert_command", "transfer weights between 3D, (2+1)D, time-folded 2D and 2D models"),
    "bench": ("lightvid.accel.cli:bench_command", "latency, clips/s, memory and GFLOP/s of a model, checkpoint or ONNX file"),
    "export": ("lightvid.accel.cli:export_command", "export to ONNX, TorchScript or safetensors"),
    "predict": ("lightvid.accel.cli:predict_command", "top-k classes of video files with a trained checkpoint"),
    "stream": ("lightvid.accel.cli:stream_command", "live top-k on a camera, URL or paced file, bounded latency"),
    "features": ("lightvid.analysis.cli:features_command", "embeddings per clip and per video, resumable"),
    "explain": ("lightvid.analysis.cli:explain_command", "Grad-CAM and a DeepVID-style surrogate of a video"),
    "baseline": ("lightvid.baselines.cli:baseline_command", "classic baselines: tiny images + kNN, bag of SIFT words + kNN/SVM"),
}


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
    parser.add_argument("--num-classes", type=int, default=num_classes_default, help="classifier size (default: the model's)")
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


def _usage() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = ["usage: lightvid COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`lightvid COMMAND --help` describes each command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] == "--version":
        from lightvid import __version__

        print(f"lightvid {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(name, COMMANDS, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        print(f"error: unknown command {name!r}{hint} (see `lightvid --help`)", file=sys.stderr)
        return 2
    module_name, func_name = COMMANDS[name][0].split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    from lightvid.checkpoint import CheckpointError
    from lightvid.errors import UserError

    debug = bool(os.environ.get("LIGHTVID_DEBUG"))
    try:
        return int(func(rest, prog=f"lightvid {name}") or 0)
    except (UserError, CheckpointError, FileNotFoundError, argparse.ArgumentTypeError) as e:
        print(f"error: {e}", file=sys.stderr)
    except KeyError as e:  # unknown model names etc.
        print(f"error: {e.args[0] if e.args else e}", file=sys.stderr)
    except (ValueError, TypeError) as e:  # bad model arguments (--kw alpha=0, an unknown keyword)
        if debug:
            raise
        print(f"error: {e} (set LIGHTVID_DEBUG=1 for a traceback)", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
