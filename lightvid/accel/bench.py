"""``lightvid bench``: latency, clips/s, peak memory and achieved GFLOP/s of a model.

The target is a registered model name, a training checkpoint, or an ``.onnx`` file (run
with ONNX Runtime). After ``warmup`` calls, ``repeats`` timed calls (CUDA synchronised)
give the median latency; throughput is ``batch / latency``. Achieved GFLOP/s is
``2 x MACs x batch / latency`` with MACs counted by ``lightvid.analysis.summary`` (for ONNX,
from the graph's Conv/Gemm/MatMul nodes after shape inference), shown beside the
machine's measured matmul peak (a large fp32 or bf16 matmul timed on the same device; fp32 for int8).
Peak memory: CPU, the growth of the process's max resident set (``getrusage``) over the
benchmark (0 when an earlier high-water mark already covers it); CUDA,
``torch.cuda.max_memory_allocated``.
"""
from __future__ import annotations

import functools
import math
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from lightvid.accel.timing import sync, time_calls
from lightvid.errors import UserError
from lightvid.precision import resolve_precision


@dataclass
class BenchResult:
    model: str
    batch: int
    precision: str
    input: list[int]
    device: str
    threads: int
    optimized: bool
    latency_ms: float
    latency_min_ms: float
    clips_per_s: float
    macs_per_clip: int
    gflops_per_s: float
    peak_gflops_per_s: float
    fraction_of_peak: float
    peak_mem_mb: float
    max_rss_mb: float
    winograd_layers: int = 0
    backend: str = "eager"

    def to_dict(self) -> dict:
        return asdict(self)


def _max_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 / 1024 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux


@functools.lru_cache(maxsize=None)
def matmul_peak_gflops(precision: str = "fp32", device: str = "cpu", n: int = 2048, seconds: float = 0.5) -> float:
    """GFLOP/s of an ``n x n`` matmul (fp32 or bf16), best of repeated timed calls."""
    dev = torch.device(device)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a = torch.randn(n, n, device=dev).to(dtype)
    b = torch.randn(n, n, device=dev).to(dtype)
    a @ b
    best, start = math.inf, time.perf_counter()
    while time.perf_counter() - start < seconds:
        sync(a)
        t0 = time.perf_counter()
        a @ b
        sync(a)
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


def onnx_macs(path: str | Path) -> int:
    """MACs per sample of an ONNX graph's Conv, Gemm and MatMul nodes (shape-inferred, batch 1)."""
    import onnx

    model = onnx.load(str(path))
    for inp in model.graph.input:  # batch 1 for inference of the shapes
        dims = inp.type.tensor_type.shape.dim
        if dims and not dims[0].dim_value:
            dims[0].dim_value = 1
    model = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        shapes[vi.name] = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    total = 0
    for node in model.graph.node:
        out = shapes.get(node.output[0])
        if not out or 0 in out:
            continue
        if node.op_type == "Conv":
            w = shapes.get(node.input[1])
            if w:
                total += math.prod(out) * math.prod(w[1:])  # out elems x C_in/groups x kernel
        elif node.op_type in ("Gemm", "MatMul"):
            a = shapes.get(node.input[0])
            if a:
                total += math.prod(out) * a[-1]
    return total


def _time(fn, x, warmup: int, repeats: int, progress: bool) -> list[float]:
    return time_calls({"run": fn}, x, repeats, warmup, progress=progress, desc="bench")["run"]


def bench(target: str, batch: int = 1, input_size=None, precision: str = "fp32", optimized: bool = False,
          warmup: int = 3, repeats: int = 10, device: str = "cpu", progress: bool = True,
          model_kwargs: dict | None = None, winograd: bool = False, backend: str | None = None,
          calib: str | None = None, calib_clips: int = 32) -> BenchResult:
    """Benchmark a model name, training checkpoint or ``.onnx`` file (see the module docstring).

    ``winograd=True`` (fp32) optimizes the model with the hybrid Winograd choice timed on the
    benchmark's own input (it implies ``optimized``). ``backend`` ("torch", "onnxruntime",
    "openvino", "auto") runs :func:`lightvid.accel.backends.optimize` on the benchmark input;
    ``precision="int8"`` (default backend "auto") calibrates on ``calib_clips`` clips of ``calib``
    (a training config or a dataset folder, :mod:`lightvid.accel.calib`).
    """
    if batch < 1 or repeats < 1 or warmup < 0:
        raise UserError("--batch and --repeats must be >= 1 and --warmup >= 0")
    if precision not in ("fp32", "bf16", "int8"):
        raise UserError(f"--precision must be fp32, bf16 or int8, got {precision!r}")
    if precision == "int8":
        backend = backend or "auto"
        if calib is None:
            raise UserError("--precision int8 needs --calib CONFIG_OR_DATA (clips to calibrate on)")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available")
    rss0 = _max_rss_mb()
    if winograd and precision != "fp32":
        raise UserError("--winograd needs --precision fp32 (bf16 runs natively on AMX/AVX512-BF16)")
    optimized = optimized or winograd
    if str(target).endswith(".onnx"):
        if backend is not None:
            raise UserError(f"{target}: ONNX files run with ONNX Runtime; --backend applies to models and checkpoints")
        return _bench_onnx(target, batch, input_size, precision, optimized, warmup, repeats, dev, progress, rss0)
    from lightvid.accel.export import load_target
    from lightvid.analysis.summary import summarize

    model, meta = load_target(target, **(model_kwargs or {}))
    size = tuple(input_size or model.default_cfg["input_size"])
    try:
        macs = summarize(model, size).macs
    except (RuntimeError, ValueError) as e:
        raise UserError(f"{target} cannot take input {'x'.join(map(str, size))}: {str(e).splitlines()[0]}") from None
    model = model.to(dev).eval()
    x = torch.randn(batch, *size, device=dev)
    # bf16 the device cannot run natively: one warning line, then fp32 (the reference path is many times slower)
    if precision != "int8":
        precision = resolve_precision(precision, dev, training=False)
    wino_layers = 0
    if backend is not None:
        from lightvid.accel.backends import optimize as backend_optimize

        batches = None
        if precision == "int8":
            from lightvid.accel.calib import calibration_batches

            batches = calibration_batches(calib, size, clips=calib_clips, batch=8,
                                          mean=model.default_cfg.get("mean", (0.5,) * 3),
                                          std=model.default_cfg.get("std", (0.5,) * 3))
        run = backend_optimize(model, precision=precision, backend=backend, example_input=x, calibration=batches,
                               winograd=winograd or None, verbose=progress)
        backend = run.report.get("auto", {}).get("chosen", backend)
        wino_layers = run.report.get("winograd_layers", 0)
        optimized = True
    elif optimized:
        from lightvid.accel.optimize import optimize

        run = optimize(model, precision=precision, winograd=winograd, example_input=x if winograd else None,
                       verbose=winograd and progress)
        wino_layers = run.report["winograd_layers"]
    elif precision == "bf16":
        m16 = model.to(torch.bfloat16)

        def run(x):
            return m16(x.to(torch.bfloat16)).float()
    else:
        run = model
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
    with torch.inference_mode():
        times = _time(run, x, warmup, repeats, progress)
    if dev.type == "cuda":
        peak_mem = (torch.cuda.max_memory_allocated(dev) - base) / 2 ** 20
    else:
        peak_mem = max(0.0, _max_rss_mb() - rss0)
    r = _result(meta.get("model", target), batch, precision, size, dev, optimized, times, macs, peak_mem)
    r.winograd_layers = wino_layers
    r.backend = backend or ("torch" if optimized else "eager")
    return r


def _bench_onnx(path, batch, input_size, precision, optimized, warmup, repeats, dev, progress, rss0) -> BenchResult:
    from lightvid.accel.export import onnx_session

    if precision != "fp32" or optimized or dev.type != "cpu":
        raise UserError(f"{path}: ONNX files are benchmarked in fp32 on CPU with ONNX Runtime "
                        "(drop --precision bf16 / --optimize / --device)")
    sess = onnx_session(path)
    inp = sess.get_inputs()[0]
    fixed = [d if isinstance(d, int) else None for d in inp.shape[1:]]
    if input_size is None:
        if None in fixed:
            raise UserError(f"{path}: the input has dynamic dimensions {inp.shape}; pass --input")
        input_size = tuple(fixed)
    size = tuple(input_size)
    if len(size) != len(fixed) or any(f is not None and f != s for f, s in zip(fixed, size)):
        raise UserError(f"{path}: --input {'x'.join(map(str, size))} does not fit the model's input {inp.shape}")
    x = torch.randn(batch, *size).numpy()
    times = _time(lambda a: sess.run(None, {inp.name: a}), x, warmup, repeats, progress)
    macs = onnx_macs(path)
    return _result(Path(path).name, batch, precision, size, dev, False, times, macs, max(0.0, _max_rss_mb() - rss0))


def _result(name, batch, precision, size, dev, optimized, times, macs, peak_mem) -> BenchResult:
    lat = statistics.median(times)
    gflops = 2 * macs * batch / lat / 1e9
    peak = matmul_peak_gflops("fp32" if precision == "int8" else precision, str(dev))
    return BenchResult(model=str(name), batch=batch, precision=precision, input=list(size), device=str(dev),
                       threads=torch.get_num_threads(), optimized=optimized, latency_ms=1e3 * lat,
                       latency_min_ms=1e3 * min(times), clips_per_s=batch / lat, macs_per_clip=int(macs),
                       gflops_per_s=gflops, peak_gflops_per_s=peak, fraction_of_peak=gflops / peak,
                       peak_mem_mb=peak_mem, max_rss_mb=_max_rss_mb())


def format_bench(r: BenchResult) -> str:
    """A :class:`BenchResult` as the lines ``lightvid bench`` prints."""
    peak_prec = "fp32" if r.precision == "int8" else r.precision
    return "\n".join([
        f"{r.model}  input {batch_shape(r)}  {r.precision}{' optimized' if r.optimized else ''}"
        f"{f' [{r.backend}]' if r.backend not in ('eager', 'torch') else ''}"
        f"{f' ({r.winograd_layers} Winograd layers)' if r.winograd_layers else ''}  "
        f"{r.device} ({r.threads} threads)",
        f"latency      {r.latency_ms:10.2f} ms (median; min {r.latency_min_ms:.2f} ms)",
        f"throughput   {r.clips_per_s:10.2f} clips/s",
        f"compute      {r.gflops_per_s:10.1f} GFLOP/s of a measured {peak_prec} matmul peak "
        f"{r.peak_gflops_per_s:.1f} GFLOP/s ({100 * r.fraction_of_peak:.1f}%)"
        + (" (effective: counted as direct convolutions, Winograd does fewer multiplications)"
           if r.winograd_layers else ""),
        f"peak memory  {r.peak_mem_mb:10.1f} MB "
        f"({'max allocated' if r.device.startswith('cuda') else 'growth of max RSS'};"
        f" process max RSS {r.max_rss_mb:.0f} MB)",
    ])


def batch_shape(r: BenchResult) -> str:
    return "x".join(map(str, [r.batch, *r.input]))
