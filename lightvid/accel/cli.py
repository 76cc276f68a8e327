"""``lightvid bench``, ``lightvid export`` and ``lightvid predict``."""
from __future__ import annotations

import argparse
import json
import sys

from lightvid.args import add_model_args, model_kwargs, parse_input_size
from lightvid.errors import UserError


def bench_command(argv: list[str], prog: str = "lightvid bench") -> int:
    from lightvid.accel.bench import bench, format_bench

    p = argparse.ArgumentParser(prog=prog, description="Latency, clips/s, peak memory and GFLOP/s (vs the "
                                "machine's measured matmul peak) of a model name, checkpoint or .onnx file.")
    p.add_argument("target", help="registered model name, training checkpoint, or FILE.onnx")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--input", type=parse_input_size, default=None, help="CxTxHxW or CxHxW (default: the model's)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                   help="bf16 on a CPU without AVX512-BF16/AMX warns and runs fp32")
    p.add_argument("--optimize", action="store_true", help="run lightvid.optimize first (BN fold, channels-last)")
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
    r = bench(args.target, batch=args.batch, input_size=args.input, precision=args.precision,
              optimized=args.optimize, warmup=args.warmup, repeats=args.repeats, device=args.device,
              progress=not args.json, model_kwargs=model_kwargs(args), winograd=args.winograd)
    print(json.dumps(r.to_dict()) if args.json else format_bench(r))
    return 0


def export_command(argv: list[str], prog: str = "lightvid export") -> int:
    from lightvid.accel.export import FORMATS, SUFFIX_FORMATS, export, load_target
    from lightvid.fileio import check_output_file

    p = argparse.ArgumentParser(prog=prog, description="Export a model name or training checkpoint to ONNX "
                                "(verified with ONNX Runtime), a torch.export program (.pt2) or safetensors.")
    p.add_argument("target", help="registered model name or training checkpoint")
    p.add_argument("out", help="output file (.onnx, .pt2, .safetensors)")
    p.add_argument("--format", default=None, choices=FORMATS, help="default: from the output's suffix, else onnx")
    p.add_argument("--input", type=parse_input_size, default=None, help="CxTxHxW or CxHxW (default: the model's)")
    p.add_argument("--atol", type=float, default=1e-4, help="ONNX Runtime vs PyTorch tolerance")
    add_model_args(p)
    args = p.parse_args(argv)
    fmt = args.format or SUFFIX_FORMATS.get("." + args.out.rpartition(".")[2], "onnx")
    check_output_file(args.out, inputs=[args.target])  # never replace the checkpoint being exported
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
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                   help="with --optimize (implied by fp32/bf16/fp16): auto is bf16 where the device runs it natively; "
                        "an explicit bf16 the CPU lacks warns and runs fp32")
    p.add_argument("--json", action="store_true", help="print one JSON object per video")
    args = p.parse_args(argv)
    if args.topk < 1 or (args.clips is not None and args.clips < 1):
        raise UserError("--topk and --clips must be >= 1")
    pred = Predictor(args.ckpt, clips=args.clips, topk=args.topk, optimized=args.optimize, precision=args.precision)
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
