"""Where one inference call spends its time, kernel by kernel: lightvid's oneDNN Graph path
beside OpenVINO, in one process.

The side-by-side tables (:mod:`lightvid.accel.compare`) say *which* runtime is faster; this
says *why*. Both runtimes run oneDNN kernels (OpenVINO a fork of it), so a gap is either in
the kernels (a slower implementation picked for a layer) or around them (launching ~100 small
partitions, PyTorch operators the fuser left out). :func:`breakdown` times the two interleaved
(:func:`lightvid.accel.timing.time_calls`) and then profiles a few more calls of each:

* lightvid: every oneDNN primitive's execution time from oneDNN's own verbose log
  (``torch.backends.mkldnn.verbose``, captured from file descriptor 1), the time of the Graph
  partitions that wrap them, and the PyTorch operators run outside oneDNN (``torch.profiler``);
* OpenVINO: its per-node counters (``PERF_COUNT``) on a second compiled copy of the model, so the
  timed copy runs as a user's would.

Kernels are grouped the same way on both sides (:data:`CATEGORIES`; a convolution by its
weight shape: 1x1x1, depthwise, other), and what the kernels do not account for is the profiled
calls' own wall time minus their sum (the interleaved rounds' medians give the ratio).
``benchmarks/bench_breakdown.py`` prints the table; docs/inference.md records it per CPU.
"""
from __future__ import annotations

import contextlib
import copy
import ctypes
import os
import re
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field

import torch
import torch.nn as nn

CONV_1X1 = "1x1x1 convolutions"
CONV_DW = "depthwise convolutions"
CONV_OTHER = "other convolutions"
ELEMENTWISE = "element-wise"
POOLING = "pooling / reductions"
MATMUL = "matmul / fully connected"
REORDER = "reorders"
OTHER = "other kernels"
CATEGORIES = (CONV_1X1, CONV_DW, CONV_OTHER, ELEMENTWISE, POOLING, MATMUL, REORDER, OTHER)


def conv_category(groups: int, in_per_group: int, kernel: tuple[int, ...]) -> str:
    """A convolution's category from its weight shape: every kernel dimension 1 -> 1x1x1;
    grouped with one input channel per group -> depthwise; anything else -> other."""
    if kernel and all(k == 1 for k in kernel):
        return CONV_1X1
    if groups > 1 and in_per_group == 1:
        return CONV_DW
    return CONV_OTHER


_ONEDNN_KINDS = {"eltwise": ELEMENTWISE, "binary": ELEMENTWISE, "prelu": ELEMENTWISE, "softmax": ELEMENTWISE,
                 "layer_normalization": ELEMENTWISE, "batch_normalization": ELEMENTWISE,
                 "pooling": POOLING, "reduction": POOLING, "matmul": MATMUL, "inner_product": MATMUL,
                 "reorder": REORDER, "concat": REORDER, "sum": ELEMENTWISE}


def _onednn_conv_category(problem: str) -> str:
    """From a oneDNN convolution problem descriptor such as
    ``g24mb1_ic24oc24_id16od16kd5sd1dd0pd2_ih56oh56kh1sh1dh0ph0_iw56ow56kw1sw1dw0pw0``."""
    g = re.match(r"g(\d+)", problem)
    ic = re.search(r"ic(\d+)", problem)
    groups = int(g.group(1)) if g else 1
    in_per_group = int(ic.group(1)) // groups if ic else 0
    kernel = tuple(int(k) for k in re.findall(r"k[dhw](\d+)", problem))
    return conv_category(groups, in_per_group, kernel)


@dataclass
class OneDNNLog:
    """What one or more calls ran in oneDNN: primitive milliseconds per category, and the Graph
    partitions (which contain primitives: their time overlaps the kernels')."""

    kernels_ms: dict = field(default_factory=lambda: defaultdict(float))
    kernels_n: dict = field(default_factory=lambda: defaultdict(int))
    partitions_ms: float = 0.0
    partitions_n: int = 0
    wall_ms: float = 0.0  # of the logged calls themselves (verbose logging on), mean per call


def parse_onednn_verbose(text: str) -> OneDNNLog:
    """Execution lines of oneDNN's verbose log (v3: ``onednn_verbose,[v1,]primitive,exec,cpu,
    KIND,IMPL,PROP,MEMORY,ATTRS,AUX,PROBLEM,MS`` and ``...,graph,exec,cpu,ID,KIND,...,MS``);
    creation and information lines are skipped."""
    log = OneDNNLog()
    for line in text.splitlines():
        if not line.startswith("onednn_verbose,"):
            continue
        f = line.strip().split(",")
        try:
            i = f.index("exec")
            ms = float(f[-1])
        except ValueError:
            continue
        component = f[i - 1]
        if component == "graph":
            log.partitions_ms += ms
            log.partitions_n += 1
            continue
        if component != "primitive" or len(f) < i + 5:
            continue
        kind = f[i + 2]
        if kind in ("convolution", "deconvolution"):
            cat = _onednn_conv_category(f[-2])
        else:
            cat = _ONEDNN_KINDS.get(kind, OTHER)
        log.kernels_ms[cat] += ms
        log.kernels_n[cat] += 1
    return log


@contextlib.contextmanager
def _captured_stdout_fd(sink: list):
    """Everything written to file descriptor 1 inside the block (C ``printf`` included) is
    appended to ``sink`` as one string instead of reaching the terminal."""
    sys.stdout.flush()
    try:
        flush_c = ctypes.CDLL(None).fflush  # C stdio's buffer, where oneDNN prints
    except (OSError, AttributeError, TypeError):  # no C library to reach this way (Windows)
        flush_c = None
    with tempfile.TemporaryFile() as tmp:
        saved = os.dup(1)
        os.dup2(tmp.fileno(), 1)
        try:
            yield
        finally:
            if flush_c is not None:
                flush_c(None)
            os.dup2(saved, 1)
            os.close(saved)
            tmp.seek(0)
            sink.append(tmp.read().decode(errors="replace"))


def onednn_log(fn, x: torch.Tensor, calls: int = 3) -> OneDNNLog:
    """oneDNN's verbose log of ``calls`` calls of ``fn(x)``, per call (totals divided by ``calls``)."""
    out: list[str] = []
    verbose = torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON)
    wall = 0.0
    with torch.inference_mode(), _captured_stdout_fd(out), verbose:
        for _ in range(calls):
            t0 = time.perf_counter()
            fn(x)
            wall += time.perf_counter() - t0
    log = parse_onednn_verbose(out[0])
    log.wall_ms = 1e3 * wall / calls
    for k in log.kernels_ms:
        log.kernels_ms[k] /= calls
        log.kernels_n[k] //= calls
    log.partitions_ms /= calls
    log.partitions_n //= calls
    return log


def aten_outside_ms(fn, x: torch.Tensor, calls: int = 3) -> tuple[float, dict[str, float]]:
    """Milliseconds per call of the PyTorch operators ``fn`` runs outside oneDNN Graph partitions
    (``aten::*`` self time), in total and by operator."""
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(calls):
            fn(x)
    ops = {e.key: e.self_cpu_time_total / 1e3 / calls for e in prof.key_averages() if e.key.startswith("aten::")}
    return sum(ops.values()), dict(sorted(ops.items(), key=lambda kv: -kv[1]))


def openvino_node_category(node_type: str, weight_shape: list[int] | None) -> str:
    """An OpenVINO CPU node's category from its type and (convolutions) its weight shape:
    ``Convolution`` [O, I, k...], ``GroupConvolution`` [G, O/G, I/G, k...]."""
    if node_type in ("Convolution", "GroupConvolution", "Deconvolution") and weight_shape:
        if node_type == "GroupConvolution":
            return conv_category(weight_shape[0], weight_shape[2], tuple(weight_shape[3:]))
        return conv_category(1, weight_shape[1], tuple(weight_shape[2:]))
    if node_type in ("Subgraph", "Eltwise", "Multiply", "Add", "Sigmoid", "Swish", "Relu", "Softmax", "MVN"):
        return ELEMENTWISE
    if node_type in ("MaxPool", "AvgPool", "Pooling", "Reduce", "ReduceMean", "AdaptivePooling"):
        return POOLING
    if node_type in ("FullyConnected", "MatMul"):
        return MATMUL
    if node_type in ("Reorder", "Transpose", "Concatenation"):
        return REORDER
    return OTHER


def openvino_log(runner, x: torch.Tensor, calls: int = 3) -> tuple[dict, dict, float]:
    """OpenVINO's per-node time (``PERF_COUNT``) per call, by category, and the wall time of
    those calls (counters on): ``(ms, nodes, wall_ms)``, means per call.

    ``runner`` is the ``_OpenVINORunner`` of a :class:`lightvid.accel.backends.BackendModel`; a
    second copy is compiled with the counters on, so the runner's own copy is left as timed.
    """
    import openvino as ov

    model = runner.model.clone()
    model.reshape({model.inputs[0].any_name: list(x.shape)})
    compiled = ov.Core().compile_model(model, "CPU", {**runner.config, "PERF_COUNT": True})
    request = compiled.create_infer_request()
    shapes = {}
    for op in compiled.get_runtime_model().get_ops():
        if op.get_input_size() > 1 and op.input(1).get_partial_shape().is_static:
            shapes[op.get_friendly_name()] = [int(d) for d in op.input(1).get_shape()]
    a = x.detach().cpu().float().numpy()
    request.infer({0: a})  # the first call of a new compiled model is not representative
    ms: dict[str, float] = defaultdict(float)
    nodes: dict[str, int] = defaultdict(int)
    wall = 0.0
    for _ in range(calls):
        t0 = time.perf_counter()
        request.infer({0: a})
        wall += time.perf_counter() - t0
        for p in request.get_profiling_info():
            if p.status != p.Status.EXECUTED:
                continue
            cat = openvino_node_category(p.node_type, shapes.get(p.node_name))
            ms[cat] += p.real_time.total_seconds() * 1e3 / calls
            nodes[cat] += 1
    return dict(ms), {k: v // calls for k, v in nodes.items()}, 1e3 * wall / calls


def breakdown(model: nn.Module, x: torch.Tensor, rounds: int = 7, calls: int = 3, progress: bool = False) -> dict:
    """Wall time and kernel time by category of lightvid's oneDNN Graph path and of OpenVINO
    (fp32) on ``x``: ``{"lightvid": {...}, "openvino": {...}}``, each with ``wall_ms`` (median of
    ``rounds`` interleaved rounds, ``round_ms`` each round's), ``kernels_ms`` / ``kernels_n`` by
    category and ``profiled_wall_ms`` (means over ``calls`` profiled calls: verbose log or
    counters on) and ``unaccounted_ms`` (the profiled calls' wall minus their kernels); lightvid's
    also with the Graph partitions' time and count and the ``aten::`` operators run outside them
    (``torch.profiler``, a further ``calls`` calls). Raises :class:`lightvid.errors.UserError`
    where either path cannot be built."""
    from lightvid.accel import backends
    from lightvid.accel import onednn_graph as graph
    from lightvid.accel.memory import keep_freed_memory
    from lightvid.accel.optimize import fold_batchnorms
    from lightvid.accel.timing import time_calls
    from lightvid.errors import UserError

    if not graph.available():
        raise UserError("this PyTorch has no oneDNN Graph fuser (torch.jit.enable_onednn_fusion): "
                        "nothing to break down")
    backends._require("openvino", "the breakdown's OpenVINO side")
    keep_freed_memory()  # as optimize runs it: no page faults in the kernels' times
    model = model.eval()
    plain = copy.deepcopy(model)
    fold_batchnorms(plain)
    lv = graph.build(plain, x)
    if lv is None:
        raise UserError(f"{type(model).__name__} does not build as a oneDNN Graph model at input "
                        f"{'x'.join(map(str, x.shape))}")
    ov = backends.optimize(model, precision="fp32", backend="openvino", example_input=x)
    with torch.inference_mode():
        times = time_calls({"lightvid": lv, "openvino": ov}, x, repeats=rounds, warmup=1, turn_warmup=1,
                           progress=progress, desc="interleaved rounds")
    log = onednn_log(lv, x, calls)
    aten_ms, aten_ops = aten_outside_ms(lv, x, calls)
    ov_ms, ov_n, ov_wall = openvino_log(ov._run, x, calls)

    def side(path: str, key: str, kernels_ms: dict, kernels_n: dict, profiled_wall: float) -> dict:
        return {"path": path, "wall_ms": 1e3 * statistics.median(times[key]),
                "round_ms": [1e3 * t for t in times[key]], "kernels_ms": dict(kernels_ms),
                "kernels_n": dict(kernels_n), "profiled_wall_ms": profiled_wall,
                "unaccounted_ms": profiled_wall - sum(kernels_ms.values())}

    return {"lightvid": {**side("oneDNN Graph (TorchScript)", "lightvid", log.kernels_ms, log.kernels_n,
                                log.wall_ms),
                         "partitions_ms": log.partitions_ms, "partitions_n": log.partitions_n,
                         "aten_ms": aten_ms, "aten_ops_ms": aten_ops},
            "openvino": side("OpenVINO fp32", "openvino", ov_ms, ov_n, ov_wall)}


def format_breakdown(result: dict) -> str:
    """A markdown table of :func:`breakdown`'s result: ms per call (kernels run in brackets)."""
    lv, ov = result["lightvid"], result["openvino"]

    def cell(side: dict, cat: str) -> str:
        ms, n = side["kernels_ms"].get(cat), side["kernels_n"].get(cat)
        return "-" if ms is None else f"{ms:.2f} ({n:g})"

    rows = ["| | lightvid oneDNN Graph | OpenVINO |", "| --- | ---: | ---: |",
            f"| wall, median of {len(lv['round_ms'])} interleaved rounds | **{lv['wall_ms']:.2f}** | "
            f"**{ov['wall_ms']:.2f}** |",
            f"| wall of the profiled calls (verbose log / counters on) | {lv['profiled_wall_ms']:.2f} | "
            f"{ov['profiled_wall_ms']:.2f} |"]
    for cat in CATEGORIES:
        if cat in lv["kernels_ms"] or cat in ov["kernels_ms"]:
            rows.append(f"| {cat} | {cell(lv, cat)} | {cell(ov, cat)} |")
    lv_k, ov_k = sum(lv["kernels_ms"].values()), sum(ov["kernels_ms"].values())
    rows.append(f"| all kernels | {lv_k:.2f} ({sum(lv['kernels_n'].values()):g}) | "
                f"{ov_k:.2f} ({sum(ov['kernels_n'].values()):g}) |")
    rows.append(f"| profiled wall minus all kernels | {lv['unaccounted_ms']:.2f} | {ov['unaccounted_ms']:.2f} |")
    rows.append(f"| of which in Graph partitions, around their kernels | {lv['partitions_ms'] - lv_k:.2f} "
                f"({lv['partitions_n']} partitions) | - |")
    top = ", ".join(f"{k.removeprefix('aten::')} {v:.2f}" for k, v in list(lv["aten_ops_ms"].items())[:3])
    rows.append(f"| PyTorch operators outside the partitions (profiler) | {lv['aten_ms']:.2f} ({top}) | - |")
    return "\n".join(rows)
