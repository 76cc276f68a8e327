"""The ``lightvid`` command: each subcommand maps to one plain function.

A function takes the remaining arguments and ``prog`` and builds its own parser, so a
subcommand imports only what it needs (``lightvid list`` does not import Lightning).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

# name -> ("module:function", one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "list": ("lightvid.analysis.summary:list_command", "list registered models with parameters and default input"),
    "summary": ("lightvid.analysis.summary:summary_command", "per-layer parameters, MACs and output shapes of a model"),
    "data": ("lightvid.data.cli:data_command",
             "datasets: `data synth`, `data check`, `data extract-frames`, `data reencode`, `data shard`"),
    "train": ("lightvid.train.cli:train_command", "train a classifier from a YAML config (dotted key=value overrides)"),
    "eval": ("lightvid.train.cli:eval_command", "clip- and video-level accuracy of a checkpoint"),
    "distill": ("lightvid.compress.cli:distill_command",
                "knowledge distillation from a teacher checkpoint into a student"),
    "convert": ("lightvid.compress.cli:convert_command",
                "transfer weights between 3D, (2+1)D, time-folded 2D and 2D models"),
    "bench": ("lightvid.accel.cli:bench_command",
              "latency, clips/s, memory and GFLOP/s of a model, checkpoint or ONNX file"),
    "export": ("lightvid.accel.cli:export_command", "export to ONNX, a torch.export program (.pt2) or safetensors"),
    "predict": ("lightvid.accel.cli:predict_command", "top-k classes of video files with a trained checkpoint"),
    "stream": ("lightvid.accel.cli:stream_command",
               "rolling-window top-k on a camera, URL or paced file, bounded latency"),
    "features": ("lightvid.analysis.cli:features_command",
                 "pooled embeddings per clip and per video, resumable shards"),
    "explain": ("lightvid.analysis.cli:explain_command",
                "Grad-CAM (Captum) and a DeepVID-style local surrogate of one video"),
    "baseline": ("lightvid.baselines.cli:baseline_command",
                 "classic baselines: tiny images + kNN, bag of SIFT words + kNN/SVM"),
    "track": ("lightvid.track.cli:track_command",
              "follow an object through a video (Siamese instance search); track synth/train"),
}

# `lightvid COMMAND --task TASK` runs another function for these tasks (e.g. OTB-style tracking evaluation).
TASK_COMMANDS: dict[tuple[str, str], str] = {
    ("eval", "track"): "lightvid.track.cli:eval_track_command",
}


def _task_of(argv: list[str]) -> str | None:
    for i, a in enumerate(argv):
        if a == "--task" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--task="):
            return a.split("=", 1)[1]
    return None


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
    target = TASK_COMMANDS.get((name, _task_of(rest) or ""), COMMANDS[name][0])
    module_name, func_name = target.split(":")
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
