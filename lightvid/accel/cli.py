"""``lightvid bench``, ``lightvid export`` and ``lightvid predict``."""
from __future__ import annotations

import argparse
import json
import sys

from lightvid.errors import UserError


def bench_command(argv: list[str], prog: str = "lightvid bench") -> int:
    from lightvid.accel.bench import bench, format_result
    from lightvid.cli import add_model_args, model_kwargs, parse_input_size

    p = argparse.ArgumentParser(prog=prog, description="Latency, clips/s, peak memory and GFLOP/s (vs the "
                                "machine's measured matmul peak) of a model name, checkpoint or .onnx file.")
    p.add_argument("target", help="registered model name, training checkpoint, or FILE.onnx")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--input", type=parse_input_size, default=None, help="CxTxHxW or CxHxW (default: the model's)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "int8"),
                   help="int8: static post-training quantisation calibrated on --calib (backend default auto)")
    p.add_argument("--optimize", action="store_true", help="run lightvid.optimize first (BN fold, channels-last)")
    p.add_argument("--backend", default=None, choices=("auto", "torch", "onnxruntime", "openvino"),
                   help="run lightvid.optimize(backend=...) on the benchmark input ('auto': fastest agreeing)")
    p.add_argument("--calib", default=None, metavar="CONFIG_OR_DATA",
                   help="int8 calibration clips: a training config .yaml or a dataset folder")
    p.add_argument("--calib-clips", type=int, default=32, help="clips to calibrate int8 on")
    p.add_argument("--compare", action="store_true", help="side by side: eager, lightvid paths, ONNX Runtime, "
                   "OpenVINO (fp32; int8 too with --calib), interleaved medians, max |diff| and top-1 vs eager")
    p.add_argument("--winograd", action="store_true", help="with --optimize: hybrid Winograd, each eligible "
                   "layer timed direct vs Winograd on the benchmark input (fp32; implies --optimize)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--threads", type=int, default=None, help="torch/ONNX Runtime threads (default: torch's)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_model_args(p)
    args = p.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.compare:
        return _compare(args, model_kwargs(args))
    r = bench(args.target, batch=args.batch, input_size=args.input, precision=args.precision,
              optimized=args.optimize, warmup=args.warmup, repeats=args.repeats, device=args.device,
              progress=not args.json, model_kwargs=model_kwargs(args), winograd=args.winograd,
              backend=args.backend, calib=args.calib, calib_clips=args.calib_clips)
    print(json.dumps(r.to_dict()) if args.json else format_result(r))
    return 0


def _compare(args, kwargs: dict) -> int:
    import torch

    from lightvid.accel.calib import calibration_batches
    from lightvid.accel.compare import compare, cpu_header, cpu_info, format_rows
    from lightvid.accel.export import load_target

    if args.device != "cpu" or str(args.target).endswith(".onnx"):
        raise UserError("--compare runs a model name or checkpoint on the CPU")
    model, meta = load_target(args.target, **kwargs)
    size = tuple(args.input or model.default_cfg["input_size"])
    x = torch.randn(args.batch, *size, generator=torch.Generator().manual_seed(0))
    calib = None
    if args.calib:
        cfg = getattr(model, "default_cfg", {})
        calib = calibration_batches(args.calib, size, clips=args.calib_clips, batch=8,
                                    mean=cfg.get("mean", (0.5,) * 3), std=cfg.get("std", (0.5,) * 3))
    rows = compare(model, x, calib, rounds=args.repeats, warmup=max(1, args.warmup), progress=not args.json)
    if args.json:
        print(json.dumps({"cpu": cpu_info(), "threads": torch.get_num_threads(), "model": meta.get("model"),
                          "input": [args.batch, *size], "rows": [r.__dict__ for r in rows]}))
    else:
        print(cpu_header())
        print(format_rows(rows, f"{meta.get('model', args.target)}  input {'x'.join(map(str, [args.batch, *size]))}"
                          f"  {args.repeats} interleaved rounds, medians"))
    return 0


def export_command(argv: list[str], prog: str = "lightvid export") -> int:
    from lightvid.accel.export import FORMATS, export, load_target
    from lightvid.cli import add_model_args, model_kwargs, parse_input_size

    p = argparse.ArgumentParser(prog=prog, description="Export a model name or training checkpoint to ONNX "
                                "(verified with ONNX Runtime), TorchScript or safetensors.")
    p.add_argument("target", help="registered model name or training checkpoint")
    p.add_argument("out", help="output file (.onnx, .pt, .safetensors)")
    p.add_argument("--format", default=None, choices=FORMATS, help="default: from the output's suffix, else onnx")
    p.add_argument("--input", type=parse_input_size, default=None, help="CxTxHxW or CxHxW (default: the model's)")
    p.add_argument("--atol", type=float, default=1e-4, help="ONNX Runtime vs PyTorch tolerance")
    add_model_args(p)
    args = p.parse_args(argv)
    fmt = args.format or {".pt": "torchscript", ".ts": "torchscript", ".safetensors": "safetensors"}.get(
        "." + args.out.rpartition(".")[2], "onnx")
    model, _ = load_target(args.target, **model_kwargs(args))
    info = export(model, args.out, fmt, args.input, atol=args.atol)
    extra = f" (ONNX Runtime matches PyTorch: max abs err {info['max_abs_err']:.2e})" if "max_abs_err" in info else ""
    print(f"wrote {info['path']} [{fmt}]{extra}")
    return 0


def predict_command(argv: list[str], prog: str = "lightvid predict") -> int:
    from lightvid.accel.predict import Predictor

    p = argparse.ArgumentParser(prog=prog, description="Top-k classes of video files with a trained checkpoint "
                                "(K clips averaged).")
    p.add_argument("ckpt", help="training checkpoint (runs/NAME/checkpoints/best.ckpt)")
    p.add_argument("videos", nargs="+", help="video files")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--clips", type=int, default=None, help="clips per video (default: the run's eval_clips)")
    p.add_argument("--optimize", action="store_true", help="lightvid.optimize the model (bf16 where native)")
    p.add_argument("--backend", default=None, choices=("auto", "torch", "onnxruntime", "openvino"),
                   help="run the model with this lightvid.optimize backend ('auto': fastest agreeing on a clip batch)")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "int8"),
                   help="with --backend/--optimize; int8 calibrates on --calib (default: the run's training clips)")
    p.add_argument("--calib", default=None, metavar="CONFIG_OR_DATA",
                   help="int8 calibration clips: a training config .yaml or a dataset folder")
    p.add_argument("--json", action="store_true", help="print one JSON object per video")
    args = p.parse_args(argv)
    if args.topk < 1 or (args.clips is not None and args.clips < 1):
        raise UserError("--topk and --clips must be >= 1")
    pred = Predictor(args.ckpt, clips=args.clips, topk=args.topk, optimized=args.optimize, backend=args.backend,
                     precision=args.precision, calib=args.calib)
    failed = 0
    for path in args.videos:
        r = pred.predict(path)
        if r.error:
            failed += 1
            print(f"error: {r.error}", file=sys.stderr)
            if args.json:
                print(json.dumps({"path": r.path, "error": r.error}))
            continue
        if args.json:
            print(json.dumps({"path": r.path, "clips": r.clips,
                              "topk": [{"class": c, "prob": pr} for c, pr in r.topk]}))
        else:
            print(f"{r.path}  ({r.clips} clips)")
            for c, pr in r.topk:
                print(f"  {pr:7.4f}  {c}")
    if failed:
        print(f"{failed} of {len(args.videos)} files failed", file=sys.stderr)
    return 1 if failed else 0
