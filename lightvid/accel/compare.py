"""Side by side on one input: eager, lightvid's paths, ONNX Runtime and OpenVINO, fp32 and int8.

:func:`compare` builds every path of :func:`paths_for` (a path whose package is missing or
that cannot take the model becomes a row saying why), checks each against eager fp32 (max
|logit difference|, top-1 agreement on the input's samples) and times them all interleaved
in one process (:func:`lightvid.accel.timing.time_calls`: round-robin, medians), so a change
in the machine's load hits every path alike. Used by ``benchmarks/bench_backends.py`` and
``lightvid bench MODEL --compare``. :func:`cpu_info` names the CPU and the instruction-set
extensions that decide which kernels run (AVX2, AVX-512, AVX512-BF16, AMX, VNNI).

On a CUDA device (model and input there) the paths are lightvid's own: fp32 with and without
channels-last memory, bf16, fp16 and a compiled half-precision path; ONNX Runtime and OpenVINO
are CPU backends here and are left out. :func:`gpu_header` names the GPU and the CUDA, cuDNN
and TF32 settings the timings ran under.
"""
from __future__ import annotations

import functools
import os
import platform
import statistics
from dataclasses import dataclass

import torch
import torch.nn as nn

from lightvid.accel import backends as B
from lightvid.accel.timing import time_calls
from lightvid.precision import cpu_features, has_native_bf16


@functools.lru_cache(maxsize=None)
def cpu_info() -> dict:
    """``{"model": CPU model name, "cores": logical CPUs, "features": {AVX2: bool, ...}}``."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    f = cpu_features()
    feats = {"AVX2": f.avx2, "AVX-512": f.avx512, "AVX512-BF16": f.avx512_bf16, "AMX": f.amx_bf16, "VNNI": f.vnni}
    return {"model": name, "cores": os.cpu_count(), "features": feats,
            "torch_capability": torch.backends.cpu.get_cpu_capability()}


def loadavg() -> str:
    """The 1-minute load average (how busy the machine was while timing), or "?" where unknown."""
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[0]
    except OSError:
        return "?"


def cpu_header() -> str:
    info = cpu_info()
    feats = " ".join(f"{k}{'+' if v else '-'}" for k, v in info["features"].items()) or "flags unknown"
    return (f"CPU: {info['model']} ({info['cores']} logical CPUs; {feats}; torch kernels "
            f"{info['torch_capability']}), torch {torch.__version__}, {torch.get_num_threads()} threads")


def gpu_header(device: torch.device | str = "cuda") -> str:
    """The GPU, its memory and compute capability, and the CUDA / cuDNN / TF32 settings."""
    p = torch.cuda.get_device_properties(device)
    return (f"GPU: {p.name} ({p.total_memory / 2 ** 30:.0f} GiB, compute capability {p.major}.{p.minor}, "
            f"{p.multi_processor_count} SMs), torch {torch.__version__}, CUDA {torch.version.cuda}, "
            f"cuDNN {torch.backends.cudnn.version()}, cudnn.benchmark={torch.backends.cudnn.benchmark}, "
            f"TF32 convolutions={torch.backends.cudnn.allow_tf32}, "
            f"TF32 matmuls={torch.backends.cuda.matmul.allow_tf32}")


@dataclass
class Row:
    path: str
    ms: float | None = None  # median latency
    round_ms: list[float] | None = None  # latency in each interleaved round, in order
    speedup: float | None = None  # eager fp32 / this
    max_abs_diff: float | None = None  # to eager fp32, on the timed input
    top1: float | None = None  # top-1 agreement with eager fp32 on the timed input's samples
    build_s: float | None = None
    note: str = ""
    faults: float | None = None  # median minor page faults per timed call (the whole process's)


def paths_for(model: nn.Module, int8: bool, compile: bool = True,
              device: torch.device | str = "cpu") -> list[tuple[str, str, str, dict]]:
    """``(label, backend, precision, extra optimize kwargs)`` of every path worth timing on ``device``."""
    from lightvid.accel.winograd import supports

    if torch.device(device).type == "cuda":
        return gpu_paths(compile, bf16=has_native_bf16(torch.device(device)))

    out = [("lightvid torch fp32", "torch", "fp32", {"winograd": False})]
    if compile:  # inductor with freezing: prepacked oneDNN weights, conv + add + activation fused
        out.append(("lightvid torch fp32 + compile", "torch", "fp32", {"winograd": False, "compile": True}))
    if any(supports(m) for m in model.modules()):
        out.append(("lightvid torch fp32 + Winograd", "torch", "fp32", {"winograd": True}))
    if has_native_bf16():
        out.append(("lightvid torch bf16", "torch", "bf16", {}))
    out += [("onnxruntime fp32", "onnxruntime", "fp32", {}), ("openvino fp32", "openvino", "fp32", {})]
    if has_native_bf16():
        out.append(("openvino bf16", "openvino", "bf16", {}))
    if int8:
        out += [("onnxruntime int8 (QDQ)", "onnxruntime", "int8", {}), ("openvino int8 (NNCF)", "openvino", "int8", {})]
    return out


def gpu_paths(compile: bool = True, bf16: bool = True) -> list[tuple[str, str, str, dict]]:
    """The GPU table's paths: fp32 contiguous and channels-last, bf16, fp16, half precision compiled."""
    half = "bf16" if bf16 else "fp16"
    plain = {"winograd": False}  # the Winograd kernels are written for the CPU's cores
    out = [("lightvid torch fp32, contiguous", "torch", "fp32", {**plain, "channels_last": False}),
           ("lightvid torch fp32", "torch", "fp32", plain)]
    out += [(f"lightvid torch {p}", "torch", p, plain) for p in (["bf16"] if bf16 else []) + ["fp16"]]
    if compile:  # inductor with freezing; the convolutions stay cuDNN's, the element-wise ops fuse
        out.append((f"lightvid torch {half} + compile", "torch", half, {**plain, "compile": True}))
    return out


def compare(model: nn.Module, x: torch.Tensor, calibration: list[torch.Tensor] | None = None,
            rounds: int = 5, warmup: int = 1, progress: bool = False, compile: bool = True,
            turn_warmup: int = 1) -> list[Row]:
    """One :class:`Row` per path (eager first); int8 rows only with ``calibration``.

    ``turn_warmup``: untimed calls of each path before its timed call in every round (one by
    default: no path is timed while the previous runtime's threads still spin; see
    :func:`lightvid.accel.timing.time_calls`).

    ``compile=False`` leaves out the ``torch.compile`` path (its first call compiles for 0.5-2 min).
    On CUDA, ``model`` is moved to ``x``'s device and the paths are :func:`gpu_paths`.
    """
    model = model.eval().to(x.device)
    with torch.inference_mode():
        ref = model(x).float()
    fns = {"eager fp32": B.EagerModel(model)}
    rows = {"eager fp32": Row("eager fp32", max_abs_diff=0.0, top1=1.0)}
    int8 = calibration is not None and x.device.type == "cpu"
    for label, backend, prec, kw in paths_for(model, int8, compile, x.device):
        row = rows[label] = Row(label)
        try:
            run = B.optimize(model, precision=prec, backend=backend, example_input=x,
                             calibration=calibration if prec == "int8" else None, **kw)
            with torch.inference_mode():
                out = run(x).float()
        except Exception as e:  # noqa: BLE001 (a path that cannot take the model is a row saying why)
            row.note = "not built: " + (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
            continue
        row.max_abs_diff = (out - ref).abs().max().item()
        row.top1 = (out.argmax(-1) == ref.argmax(-1)).float().mean().item()
        row.build_s = run.report.get("build_s")
        if progress:
            print(f"  built {label} ({row.build_s or 0:.0f} s)", flush=True)
        notes = []
        if run.report.get("compile_s") is not None:
            notes.append(f"compiled in {run.report['compile_s']:.0f} s")
        if run.report.get("winograd_layers"):
            notes.append(f"{run.report['winograd_layers']} Winograd layers")
        elif kw.get("winograd"):
            notes.append("hybrid choice kept every layer direct")
        if run.report.get("lowered_layers"):
            notes.append(f"{run.report['lowered_layers']} 3D convs as 2D")
        if run.report.get("channels_last_inputs"):
            notes.append("channels-last conv inputs")
        if run.report.get("fused_convs"):
            notes.append(f"{run.report['fused_convs']} convs fused with add/ReLU")
        if run.report.get("onednn_layers"):
            notes.append(f"{run.report['onednn_layers']} convs forced to oneDNN")
        if run.report.get("onednn_graph"):
            notes.append("oneDNN Graph partitions (TorchScript)")
        row.note = "; ".join(notes)
        fns[label] = run
    faults: dict[str, list[int]] = {}
    times = time_calls(fns, x, repeats=rounds, warmup=warmup, progress=progress, desc="compare",
                       turn_warmup=turn_warmup, faults=faults)
    base = statistics.median(times["eager fp32"])
    for label, t in times.items():
        rows[label].round_ms = [1e3 * v for v in t]
        rows[label].ms = 1e3 * statistics.median(t)
        rows[label].speedup = base / statistics.median(t)
        if faults.get(label):
            rows[label].faults = statistics.median(faults[label])
    return list(rows.values())


def best_of(rows: list[Row], precision: str = "fp32", prefix: str = "") -> Row | None:
    """The fastest timed row of ``precision`` whose top-1 agrees with eager (``prefix``: label start)."""
    ok = [r for r in rows if r.ms is not None and precision in r.path and r.path.startswith(prefix)
          and (r.top1 or 0) >= 1.0]
    return min(ok, key=lambda r: r.ms) if ok else None


def ratio_range(fast: Row, other: Row) -> tuple[float, float] | None:
    """Lowest and highest of ``other``'s time over ``fast``'s, round by round (each round times
    every path once, back to back, so the two in a pair saw the same machine); None without
    per-round times. The median ratio says which is faster; this range says whether the runs
    could tell (on a shared host single calls vary by 20% and more)."""
    if not fast.round_ms or not other.round_ms or len(fast.round_ms) != len(other.round_ms):
        return None
    ratios = [o / f for f, o in zip(fast.round_ms, other.round_ms)]
    return min(ratios), max(ratios)


def choose_row(rows: list[Row], precision: str = "fp32") -> Row | None:
    """The row ``optimize(precision=..., backend="auto")``'s rule would keep: :func:`backends.choose`;
    None when eager or every path of that precision went untimed (e.g. a run without int8)."""
    timed = {"eager" if r.path == "eager fp32" else r.path: r for r in rows
             if r.ms is not None and (r.path == "eager fp32" or precision in r.path)}
    if "eager" not in timed or (precision != "fp32" and len(timed) == 1):  # fp32: eager is itself a path
        return None
    best = B.choose({k: r.ms for k, r in timed.items()}, {k: r.top1 or 0.0 for k, r in timed.items()})
    return timed[best]


def format_rows(rows: list[Row], title: str) -> str:
    lines = [title, f"{'path':34s} {'median ms':>10s} {'vs eager':>9s} {'max|diff|':>10s} {'top-1':>6s} "
                    f"{'faults':>7s}  note"]
    for r in rows:
        if r.ms is None:
            lines.append(f"{r.path:34s} {'-':>10s} {'-':>9s} {'-':>10s} {'-':>6s} {'-':>7s}  {r.note}")
            continue
        flt = "-" if r.faults is None else f"{r.faults:.0f}"
        lines.append(f"{r.path:34s} {r.ms:10.1f} {r.speedup:8.2f}x {r.max_abs_diff:10.2e} {100 * r.top1:5.0f}% "
                     f"{flt:>7s}  {r.note}")
    eager = rows[0] if rows and rows[0].path == "eager fp32" else None
    for prec in ("fp32", "int8"):
        auto = choose_row(rows, prec)
        if auto is not None and eager is not None and eager.ms:
            lines.append(f"backend='auto' rule at {prec} (the fastest path agreeing with eager on top-1, eager "
                         f"itself a candidate): {auto.path}, {eager.ms / auto.ms:.2f}x eager fp32")
    return "\n".join(lines)
