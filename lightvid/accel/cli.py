"""``lightvid bench``, ``lightvid export`` and ``lightvid predict``."""
from __future__ import annotations

import argparse
import json
import sys

from lightvid.args import add_model_args, model_kwargs, parse_input_size
from lightvid.errors import UserError


def bench_command(argv: list[str], prog: str = "lightvid bench") -> int:
    from lightvid.accel.backends import BACKENDS
    from lightvid.accel.bench import bench, format_bench

    p = argparse.ArgumentParser(prog=prog, description="Latency, clips/s, peak memory and GFLOP/s (vs the "
                                "machine's measured matmul peak) of a model name, checkpoint or .onnx file.")
    p.add_argument("target", help="registered model name, training checkpoint, or FILE.onnx")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--input", type=parse_input_size, default=None, help="CxTxHxW or CxHxW (default: the model's)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "int8"),
                   help="bf16 on a CPU without AVX512-BF16/AMX warns and runs fp32; int8: static post-training "
                        "quantisation calibrated on --calib (backend default auto)")
    p.add_argument("--optimize", action="store_true", help="run lightvid.optimize first (BN fold, channels-last)")
    p.add_argument("--backend", default=None, choices=BACKENDS,
                   help="run lightvid.optimize(backend=...) on the benchmark input ('auto': fastest agreeing)")
    p.add_argument("--calib", default=None, metavar="CONFIG_OR_DATA",
                   help="int8 calibration clips: a training config .yaml or a dataset folder")
    p.add_argument("--calib-clips", type=int, default=32, help="clips to calibrate int8 on")
    p.add_argument("--compare", action="store_true", help="side by side: eager, lightvid paths, ONNX Runtime, "
                   "OpenVINO (fp32; int8 too with --calib), interleaved medians, max |diff| and top-1 vs eager")
    p.add_argument("--no-compile", action="store_true", help="with --compare: leave out the torch.compile path "
                   "(inductor with freezing; its first call compiles for 0.5-2 min)")
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
    print(json.dumps(r.to_dict()) if args.json else format_bench(r))
    return 0


def _compare(args, kwargs: dict) -> int:
    import torch

    from lightvid.accel.calib import calibration_batches
    from lightvid.accel.compare import compare, cpu_header, cpu_info, format_rows, gpu_header
    from lightvid.accel.export import load_target

    if str(args.target).endswith(".onnx"):
        raise UserError("--compare runs a model name or checkpoint (an .onnx file runs on ONNX Runtime alone)")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {args.device}: no CUDA device is available")
    model, meta = load_target(args.target, **kwargs)
    size = tuple(args.input or model.default_cfg["input_size"])
    x = torch.randn(args.batch, *size, generator=torch.Generator().manual_seed(0)).to(device)
    calib = None
    if args.calib and device.type == "cpu":  # int8 is CPU-only
        cfg = getattr(model, "default_cfg", {})
        calib = calibration_batches(args.calib, size, clips=args.calib_clips, batch=8,
                                    mean=cfg.get("mean", (0.5,) * 3), std=cfg.get("std", (0.5,) * 3))
    rows = compare(model, x, calib, rounds=args.repeats, warmup=max(1, args.warmup), progress=not args.json,
                   compile=not args.no_compile)
    if args.json:
        print(json.dumps({"cpu": cpu_info(), "gpu": gpu_header(device) if device.type == "cuda" else None,
                          "threads": torch.get_num_threads(), "model": meta.get("model"),
                          "input": [args.batch, *size], "rows": [r.__dict__ for r in rows]}))
    else:
        print(gpu_header(device) if device.type == "cuda" else cpu_header())
        print(format_rows(rows, f"{meta.get('model', args.target)}  input {'x'.join(map(str, [args.batch, *size]))}"
                          f"  {args.repeats} interleaved rounds, medians"))
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
    from lightvid.accel.backends import BACKENDS
    from lightvid.accel.predict import Predictor
    from lightvid.precision import QUANTIZED_INFERENCE_PRECISIONS

    p = argparse.ArgumentParser(prog=prog, description="Top-k classes of video files with a trained checkpoint "
                                "(K clips averaged).")
    p.add_argument("ckpt", help="training checkpoint (runs/NAME/checkpoints/best.ckpt)")
    p.add_argument("videos", nargs="+", help="video files")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--clips", type=int, default=None, help="clips per video (default: the run's eval_clips)")
    p.add_argument("--optimize", action="store_true", help="lightvid.optimize the model (bf16 where native)")
    p.add_argument("--backend", default=None, choices=BACKENDS,
                   help="run the model with this lightvid.optimize backend ('auto': fastest agreeing on a clip batch)")
    p.add_argument("--precision", default="auto", choices=QUANTIZED_INFERENCE_PRECISIONS,
                   help="with --backend/--optimize (implied by fp32/bf16/fp16); a bf16 the CPU lacks warns and runs "
                        "fp32; int8 calibrates on --calib (default: the run's training clips)")
    p.add_argument("--calib", default=None, metavar="CONFIG_OR_DATA",
                   help="int8 calibration clips: a training config .yaml or a dataset folder")
    p.add_argument("--json", action="store_true", help="print one JSON object per video")
    add_timeline_args(p)
    args = p.parse_args(argv)
    if args.topk < 1 or (args.clips is not None and args.clips < 1):
        raise UserError("--topk and --clips must be >= 1")
    if args.window is not None or args.stride is not None:
        return timeline_command(args)
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


def add_timeline_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("timeline of a long video (--window or --stride)")
    g.add_argument("--window", default=None, help="window length: seconds (2, 2.5s) or frames (32f); "
                   "default: one clip of the run's sampling")
    g.add_argument("--stride", default=None, help="step between window starts, seconds or frames (default: --window)")
    g.add_argument("--smooth", type=int, default=1, help="centred moving average over this many windows")
    g.add_argument("--batch", type=int, default=8, help="windows per model call")
    g.add_argument("--out", default=None, help="folder for <video>.timeline.json, .csv and .png")
    g.add_argument("--force", action="store_true", help="replace existing files in --out")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def timeline_command(args: argparse.Namespace) -> int:
    from lightvid.accel.runtime import load_inference_model
    from lightvid.accel.timeline import parse_span, predict_timeline, write_outputs
    from lightvid.data.video import VideoDecodeError

    window = parse_span(args.window, "--window") if args.window is not None else None
    stride = parse_span(args.stride, "--stride") if args.stride is not None else None
    precision = args.precision if (args.optimize or args.backend or args.precision != "auto") else None
    im = load_inference_model(args.ckpt, precision=precision, backend=args.backend, calib=args.calib)
    failed = 0
    for path in args.videos:
        try:
            tl = predict_timeline(im, path, window, stride, batch=args.batch, smooth=args.smooth,
                                  progress=not args.quiet)
        except (VideoDecodeError, OSError) as e:
            failed += 1
            print(f"error: {e}", file=sys.stderr)
            continue
        if args.out:
            paths = write_outputs(tl, args.out, k=args.topk, force=args.force)
            print(f"wrote {', '.join(map(str, paths))}", file=sys.stderr)
        if args.json:
            print(json.dumps(tl.to_dict(args.topk)))
        elif not args.out:
            print(f"{tl.path}  ({len(tl.starts)} windows of {tl.window:.2f} s every {tl.stride:.2f} s)")
            for s, e, top in zip(tl.starts, tl.ends, tl.topk(args.topk)):
                print(f"  {s:9.2f}-{e:9.2f} s  " + "  ".join(f"{c} {pr:.3f}" for c, pr in top))
        print(f"{tl.path}: {len(tl.starts)} windows in {tl.seconds:.2f} s ({tl.clips_per_s:.1f} clips/s end to end, "
              f"model {len(tl.starts) / max(tl.model_seconds, 1e-9):.1f} clips/s), peak RSS {tl.peak_rss_mb:.0f} MB",
              file=sys.stderr)
    if failed:
        print(f"{failed} of {len(args.videos)} files failed", file=sys.stderr)
    return 1 if failed else 0


def stream_command(argv: list[str], prog: str = "lightvid stream") -> int:
    from lightvid.accel.backends import add_backend_args
    from lightvid.accel.runtime import load_inference_model
    from lightvid.accel.stream import format_result, jsonl_line, run_stream
    from lightvid.args import parse_kw

    p = argparse.ArgumentParser(prog=prog, description="Rolling-window top-k on a live source (camera, URL, or a "
                                "file paced with --realtime); frames that arrive while the model is busy are "
                                "dropped and counted, so latency stays bounded.")
    p.add_argument("ckpt", help="training checkpoint or registered model name")
    p.add_argument("source", help="anything FFmpeg opens: a file, /dev/video0 (with --format v4l2), an rtsp:// "
                   "or http:// URL")
    p.add_argument("--realtime", action="store_true", help="deliver a file's frames at its frame rate, like a camera")
    p.add_argument("--format", default=None, help="FFmpeg input format (v4l2, avfoundation, dshow, ...)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="FFmpeg input option, e.g. rtsp_transport=tcp, video_size=640x480 (repeatable)")
    p.add_argument("--hop", type=int, default=None, help="new frames between predictions (default: half a clip)")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--jsonl", default=None, help="write one JSON line per prediction to this file instead of printing")
    p.add_argument("--force", action="store_true", help="replace an existing --jsonl file")
    p.add_argument("--max-seconds", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--max-predictions", type=int, default=None, help="stop after this many predictions")
    add_backend_args(p)
    args = p.parse_args(argv)
    if args.topk < 1:
        raise UserError("--topk must be >= 1")
    options = {k: str(v) for k, v in parse_kw(args.option).items()}
    im = load_inference_model(args.ckpt, precision=args.precision, backend=args.backend, calib=args.calib)
    sink = None
    if args.jsonl:
        from pathlib import Path

        if Path(args.jsonl).exists() and not args.force:
            raise UserError(f"{args.jsonl}: exists; choose another --jsonl or pass --force to replace it")
        sink = open(args.jsonl, "w")

    def emit(r):
        if sink is not None:
            sink.write(jsonl_line(r) + "\n")
            sink.flush()
        else:
            print(format_result(r), flush=True)

    try:
        stats = run_stream(im, args.source, realtime=args.realtime, hop=args.hop, topk=args.topk,
                           max_seconds=args.max_seconds, max_predictions=args.max_predictions, fmt=args.format,
                           options=options, on_result=emit)
    finally:
        if sink is not None:
            sink.close()
    d = stats.to_dict()
    lat = d["latency_ms"]
    print(f"{args.source}: {d['predictions']} predictions in {d['seconds']:.1f} s; {d['frames_read']} frames read "
          f"({d['input_fps']} fps), {d['frames_predicted']} predicted ({d['predicted_fps']} fps), "
          f"{d['dropped']} dropped; latency p50 {lat['p50']} ms, p95 {lat['p95']} ms, max {lat['max']} ms",
          file=sys.stderr)
    return 0
