"""One switch for every CPU inference path: PyTorch, ONNX Runtime, OpenVINO; fp32, bf16, int8.

``optimize(model, precision, backend, example_input, calibration)`` returns a module-like
object (an ``nn.Module`` whose ``forward`` takes and returns torch tensors, fp32 logits) with
a ``report`` dict saying what was built and, for ``backend="auto"``, what was timed:

* ``"torch"``: :func:`lightvid.accel.optimize.optimize` (BN folding, channels-last, bf16
  where native, and in fp32 with an ``example_input`` the hybrid per-layer Winograd choice,
  which keeps Winograd only on the layers where it measured faster);
* ``"onnxruntime"``: the model exported once to ONNX (:func:`lightvid.accel.export.export_onnx`)
  and run by an ONNX Runtime CPU session, ``intra_op_num_threads = torch.get_num_threads()``;
* ``"openvino"``: the same ONNX file read by OpenVINO's CPU plugin, latency hint, the same
  thread count, compiled once per input shape (optional extra: ``pip install lightvid[openvino]``);
* ``"auto"``: times eager (the model as given), and each path above whose package is
  installed, interleaved on ``example_input`` (:func:`lightvid.accel.timing.median_times`),
  and keeps the fastest whose top-1 agrees with eager on every sample of it. Eager is always
  a candidate, so "auto" is never slower than eager on ``example_input``.

``precision="int8"``: static post-training quantisation calibrated on ``calibration`` (an
iterable of input batches, or of ``(input, label, ...)`` tuples): ONNX Runtime's static QDQ
quantiser (:func:`onnxruntime.quantization.quantize_static`, per-channel int8 weights, uint8
activations, MinMax ranges) or NNCF's post-training quantisation of the OpenVINO model.
PyTorch's own PT2E flow (torchao's ``X86InductorQuantizer``) annotates only 2D convolutions
and linear layers, so a 3D ConvNet would keep every Conv3d in fp32: it is not offered (the
measurement is in docs/inference.md). ``backend="torch"`` with int8 is therefore an error.
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import os
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from lightvid.accel.export import export_onnx
from lightvid.accel.optimize import optimize as torch_optimize
from lightvid.accel.timing import median_times
from lightvid.errors import UserError
from lightvid.precision import QUANTIZED_INFERENCE_PRECISIONS, has_native_bf16, resolve_precision

BACKENDS = ("auto", "torch", "onnxruntime", "openvino")
INSTALL = {"onnxruntime": "pip install onnxruntime", "openvino": "pip install 'lightvid[openvino]'",
           "nncf": "pip install 'lightvid[openvino]'"}


def available(package: str) -> bool:
    """True when ``package`` ("onnxruntime", "openvino", "nncf") can be imported."""
    return importlib.util.find_spec(package) is not None


def _require(package: str, what: str) -> None:
    if not available(package):
        raise UserError(f"{what} needs the {package} package, which is not installed: {INSTALL[package]}")


def _as_input(item) -> torch.Tensor:
    """A calibration item: an input batch, or the first element of ``(input, label, ...)``."""
    x = item[0] if isinstance(item, (tuple, list)) else item
    if not isinstance(x, torch.Tensor):
        raise UserError(f"calibration items must be tensors or (tensor, ...) tuples, got {type(x).__name__}")
    return x.detach().float().cpu().contiguous()


def _top1_agree(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.argmax(-1) == b.argmax(-1)).float().mean().item()


# ----------------------------------------------------------------------------- runners


class BackendModel(nn.Module):
    """A model run by ONNX Runtime or OpenVINO: torch tensor in, fp32 torch tensor out."""

    def __init__(self, run, backend: str, precision: str, report: dict, source: nn.Module):
        super().__init__()
        self._run = run
        self.backend = backend
        self.precision = precision
        self.report = report
        self.default_cfg = getattr(source, "default_cfg", {})
        self.num_classes = getattr(source, "num_classes", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = np.ascontiguousarray(x.detach().cpu().float().numpy())
        return torch.from_numpy(np.asarray(self._run(a), dtype=np.float32))

    def extra_repr(self) -> str:
        return f"backend={self.backend}, precision={self.precision}"


class EagerModel(nn.Module):
    """The model as given (eval mode, no grad), returning fp32: the baseline candidate of "auto"."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.backend, self.precision = "eager", "fp32"
        self.report = {"backend": "eager", "precision": "fp32"}
        self.default_cfg = getattr(model, "default_cfg", {})
        self.num_classes = getattr(model, "num_classes", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.model(x).float()


def ort_session(path_or_bytes, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE":  # idle threads sleep, like torch's
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path_or_bytes, opts, providers=["CPUExecutionProvider"])


def _ort_model(onnx_path: Path, precision: str, source: nn.Module, report: dict) -> BackendModel:
    threads = torch.get_num_threads()
    sess = ort_session(Path(onnx_path).read_bytes(), threads)
    name = sess.get_inputs()[0].name

    def run(a):
        return sess.run(None, {name: a})[0]

    report = {**report, "backend": "onnxruntime", "precision": precision, "threads": threads}
    return BackendModel(run, "onnxruntime", precision, report, source)


class _OpenVINORunner:
    """Compiles the OpenVINO model once per input shape (static shapes run faster than dynamic).

    A compiled model serves every thread, but an infer request runs one call at a time
    (OpenVINO raises "Infer Request is busy" on a second), so each calling thread gets its own.
    """

    def __init__(self, ov_model, config: dict):
        import openvino as ov

        self.core = ov.Core()
        self.model = ov_model
        self.config = config
        self.compiled: dict[tuple, object] = {}  # input shape -> CompiledModel
        self._lock = threading.Lock()  # one compilation of a new shape, not one per thread
        self._local = threading.local()  # this thread's {shape: (CompiledModel, InferRequest)}

    def _compiled_for(self, shape: tuple):
        with self._lock:
            cm = self.compiled.get(shape)
            if cm is None:
                m = self.model.clone()
                m.reshape({m.inputs[0].any_name: list(shape)})
                if len(self.compiled) >= 4:  # a handful of shapes; drop the oldest
                    self.compiled.pop(next(iter(self.compiled)))
                cm = self.compiled[shape] = self.core.compile_model(m, "CPU", self.config)
            return cm

    def __call__(self, a: np.ndarray) -> np.ndarray:
        cm = self._compiled_for(a.shape)
        requests = self._local.__dict__.setdefault("requests", {})
        entry = requests.get(a.shape)
        if entry is None or entry[0] is not cm:  # new shape, or its model was dropped and recompiled
            if len(requests) >= 4:
                requests.pop(next(iter(requests)))
            entry = requests[a.shape] = (cm, cm.create_infer_request())
        return entry[1].infer({0: a})[0]


def _ov_model(ov_model, precision: str, source: nn.Module, report: dict) -> BackendModel:
    threads = torch.get_num_threads()
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads,
              # fp32 means fp32: without the hint OpenVINO runs bf16 on AMX / AVX512-BF16 CPUs
              "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"}
    report = {**report, "backend": "openvino", "precision": precision, "threads": threads}
    return BackendModel(_OpenVINORunner(ov_model, config), "openvino", precision, report, source)


# ----------------------------------------------------------------------------- int8


class _OrtCalibration:
    """ONNX Runtime's CalibrationDataReader protocol over a list of input arrays."""

    def __init__(self, name: str, batches: list[np.ndarray]):
        self.name, self.batches, self.i = name, batches, 0

    def get_next(self):
        if self.i >= len(self.batches):
            return None
        self.i += 1
        return {self.name: self.batches[self.i - 1]}

    def rewind(self):
        self.i = 0


def ort_quantize(onnx_path: Path, out_path: Path, batches: list[np.ndarray]) -> Path:
    """Static QDQ int8 ONNX file: per-channel int8 weights, uint8 activations, MinMax ranges."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = out_path.with_name(out_path.stem + ".pre.onnx")
    quant_pre_process(str(onnx_path), str(pre), skip_symbolic_shape=True)
    name = ort_session(str(pre), 1).get_inputs()[0].name
    # no VNNI (AVX2 only): u8 x s8 products can saturate in vpmaddubsw; reduce_range keeps 7-bit weights
    quantize_static(str(pre), str(out_path), _OrtCalibration(name, batches), quant_format=QuantFormat.QDQ,
                    per_channel=True, reduce_range=not _has_vnni(), activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
    # ONNX Runtime's calibrator holds every activation of every calibration batch until the end
    # (its CalibMaxIntermediateOutputs option drops data in onnxruntime 1.32): keep calibration sets small
    return out_path


def nncf_quantize(ov_model, batches: list[np.ndarray]):
    """NNCF post-training quantisation (performance preset) of an OpenVINO model."""
    import nncf

    return nncf.quantize(ov_model, nncf.Dataset(batches), subset_size=len(batches),
                         preset=nncf.QuantizationPreset.PERFORMANCE)


def _has_vnni() -> bool:
    from lightvid.precision import cpu_flags

    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & cpu_flags())


# ----------------------------------------------------------------------------- build


def _build(model: nn.Module, backend: str, precision: str, example: torch.Tensor | None,
           calib: list[np.ndarray] | None, tmp: Path, winograd: bool | None, verbose: bool,
           keep_memory: bool) -> nn.Module:
    """One candidate; ``tmp`` holds the exported ONNX file (written once, shared by candidates)."""
    t0 = time.perf_counter()
    if backend == "torch":
        if precision == "int8":
            raise UserError("backend='torch' has no int8 path for 3D ConvNets (PyTorch's x86 PT2E quantizer "
                            "leaves Conv3d in fp32); use backend='onnxruntime', 'openvino' or 'auto'")
        wino = (precision == "fp32" and example is not None) if winograd is None else winograd
        out = torch_optimize(model, precision=precision, winograd=wino, example_input=example, verbose=verbose,
                             keep_memory=keep_memory)
        out.backend, out.precision = "torch", precision
        out.report["backend"] = "torch"
        out.report["build_s"] = time.perf_counter() - t0
        return out
    onnx_path = tmp / "model.onnx"
    if not onnx_path.exists():
        if example is None:
            raise UserError(f"backend={backend!r} needs an example_input to export the model to ONNX with")
        try:
            export_onnx(model, onnx_path, example[:1])
        except Exception as e:  # noqa: BLE001 (the exporter's own error types; one line for the user)
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise UserError(f"backend={backend!r}: the model does not export to ONNX at input "
                            f"{'x'.join(map(str, example.shape[1:]))} ({first})") from None
    report = {"backend": backend, "precision": precision}
    if precision == "fp16":
        raise UserError(f"backend={backend!r} runs fp32, bf16 (OpenVINO) or int8; fp16 is the torch backend's")
    if backend == "onnxruntime":
        _require("onnxruntime", "backend='onnxruntime'")
        if precision == "bf16":
            raise UserError("ONNX Runtime's CPU provider has no bf16 convolutions; use backend='openvino' or "
                            "'torch' for bf16")
        path = onnx_path
        if precision == "int8":
            path = ort_quantize(onnx_path, tmp / "model.int8.onnx", calib)
        out = _ort_model(path, precision, model, report)
    else:
        _require("openvino", "backend='openvino'")
        import openvino as ov

        ov_model = ov.Core().read_model(str(onnx_path))
        if precision == "int8":
            _require("nncf", "precision='int8' with backend='openvino'")
            ov_model = nncf_quantize(ov_model, calib)
        out = _ov_model(ov_model, precision, model, report)
    out.report["build_s"] = time.perf_counter() - t0
    return out


def optimize(model: nn.Module, precision: str = "auto", backend: str = "torch",
             example_input: torch.Tensor | None = None, calibration: Iterable | None = None,
             compile: bool | str = False, winograd: bool | None = None, channels_last: bool = True,
             lower: bool = True, fuse: bool = True, onednn_graph: bool = True, verbose: bool = False,
             allow_slow: bool = False, keep_memory: bool = True) -> nn.Module:
    """An inference-only runner of ``model`` on ``backend`` at ``precision`` (see the module docstring).

    ``precision``: "fp32", "bf16", "int8" or "auto" (bf16 where the CPU has native bf16, else fp32).
    ``backend="torch"`` with no int8 keeps :func:`lightvid.accel.optimize.optimize`'s options
    (``compile``, ``winograd``, ``channels_last``, ``lower``, ``fuse``); ``winograd=None`` means
    "hybrid Winograd when fp32 and an ``example_input`` is given"; ``lower`` (with an
    ``example_input``) is the layout step (channels-last convolution inputs, oneDNN where PyTorch
    would not use it, factorised 3D convolutions as 2D; each kept only if the whole model times
    faster), ``fuse`` runs convolution + residual add + ReLU as one oneDNN call and
    ``onednn_graph`` times the traced model's oneDNN Graph partitions against the result, and
    ``keep_memory`` (on a CPU) tells glibc to keep freed activation memory in the process
    (:mod:`lightvid.accel.memory`; process-wide, so that forwards do not page-fault). The
    original model is not modified.
    """
    if backend not in BACKENDS:
        raise UserError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if precision not in QUANTIZED_INFERENCE_PRECISIONS:
        raise UserError(f"precision must be one of {', '.join(QUANTIZED_INFERENCE_PRECISIONS)}, got {precision!r}")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    # on a GPU, "auto" chooses between eager and the torch path (the other backends run on the CPU)
    gpu_auto = backend == "auto" and device.type != "cpu" and precision != "int8"
    if backend != "torch" and device.type != "cpu" and not gpu_auto:
        raise UserError(f"backend={backend!r} runs on CPU; the model is on {device}")
    # a bf16 the CPU cannot run natively warns once and runs fp32 (unless allow_slow)
    prec = "int8" if precision == "int8" else resolve_precision(precision, device, allow_slow=allow_slow)
    if (backend == "torch" and prec != "int8" and calibration is None) or gpu_auto:
        if gpu_auto and example_input is None:
            raise UserError("backend='auto' needs an example_input to time the candidates on")

        def torch_path(requested: str, resolved: str) -> nn.Module:
            t0 = time.perf_counter()
            # Winograd is the CPU's; not for a bf16/fp16 request that runs fp32 on a CPU without it
            default_wino = (device.type == "cpu" and resolved == "fp32" and requested in ("fp32", "auto")
                            and example_input is not None)
            # the requested precision goes through, so the report keeps what was asked for
            run = torch_optimize(model, precision=requested, compile=compile,
                                 winograd=default_wino if winograd is None else winograd,
                                 example_input=example_input, channels_last=channels_last, lower=lower, fuse=fuse,
                                 onednn_graph=onednn_graph, verbose=verbose, allow_slow=allow_slow,
                                 keep_memory=keep_memory)
            run.backend, run.precision = "torch", resolved
            run.report.update(backend="torch", build_s=time.perf_counter() - t0)
            return run

        out = torch_path(precision, prec)
        if gpu_auto or (precision == "auto" and example_input is not None):
            cands = {"torch": out}
            if prec != "fp32":  # "auto" chose a half precision; fp32 stays a candidate: bf16 timed slower
                # than fp32 at batch 1 (X3D-S on an AMX Xeon, three of four models on an H200)
                cands["torch fp32"] = torch_path("fp32", "fp32")
            return _keep_if_faster(model, cands, example_input.detach(), verbose)
        return out
    calib = None
    if prec == "int8":
        if calibration is None:
            raise UserError("precision='int8' needs calibration= (an iterable of input batches, e.g. real clips)")
        calib = [np.ascontiguousarray(_as_input(b).numpy()) for b in calibration]
        if not calib:
            raise UserError("precision='int8': the calibration iterable yielded no batches")
        if example_input is None:
            example_input = torch.from_numpy(calib[0])
    if backend == "auto" and example_input is None:
        raise UserError("backend='auto' needs an example_input to time the candidates on")
    model = copy.deepcopy(model).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    example = example_input.detach().float().cpu() if example_input is not None else None
    # the ONNX files live only while building: ONNX Runtime and OpenVINO hold the model in memory
    with tempfile.TemporaryDirectory(prefix="lightvid-backend-") as tmp:
        if backend != "auto":
            return _build(model, backend, prec, example, calib, Path(tmp), winograd, verbose, keep_memory)
        return _auto(model, prec, example, calib, Path(tmp), winograd, verbose, keep_memory)


def candidates_for(precision: str) -> list[str]:
    """The backends "auto" tries at ``precision`` (those whose packages are installed)."""
    names = ["torch"] if precision != "int8" else []
    if available("onnxruntime") and precision in ("fp32", "int8"):
        names.append("onnxruntime")
    if available("openvino") and (precision != "int8" or available("nncf")):
        names.append("openvino")
    return names


def _keep_if_faster(model: nn.Module, cands: dict[str, nn.Module], example: torch.Tensor, verbose: bool) -> nn.Module:
    """``precision="auto"`` with an ``example_input``: the fastest optimised copy (``cands``, by
    name), unless eager timed faster on it."""
    return _pick({"eager": EagerModel(model.eval()), **cands}, example, {}, "precision='auto'", verbose)


def choose(times: dict[str, float], agree: dict[str, float]) -> str:
    """The candidate "auto" keeps: the fastest whose top-1 agrees with eager on every sample.

    ``times`` (seconds, measured interleaved) must include ``"eager"``, the model as given, which
    agrees with itself by definition: a candidate is kept only when it timed faster than eager,
    so "auto" never returns a path slower than eager on the input it was timed on. Ties go to
    eager (no reason to swap the model for an equally fast copy).
    """
    if "eager" not in times:
        raise ValueError("choose() needs eager's time: it is the baseline every candidate must beat")
    best = "eager"
    for name, t in times.items():
        if agree.get(name, 0.0) >= 1.0 and t < times[best]:
            best = name
    return best


def _auto(model: nn.Module, precision: str, example: torch.Tensor, calib, tmp: Path, winograd, verbose,
          keep_memory: bool) -> nn.Module:
    cands: dict[str, nn.Module] = {"eager": EagerModel(model)}
    skipped = {}
    for name in candidates_for(precision):
        try:
            cands[name] = _build(model, name, precision, example, calib, tmp, winograd, verbose, keep_memory)
        except Exception as e:  # noqa: BLE001 (a backend that cannot take this model is skipped, not fatal)
            skipped[name] = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
    return _pick(cands, example, skipped, "backend='auto'", verbose)


def _pick(cands: dict[str, nn.Module], example: torch.Tensor, skipped: dict, what: str, verbose: bool) -> nn.Module:
    """Time the candidates (``"eager"`` among them) that agree with eager on ``example`` and keep
    :func:`choose`'s pick, its ``report["auto"]`` saying why."""
    with torch.inference_mode():
        ref = cands["eager"](example)
    agree = {}
    for name, m in cands.items():
        with torch.inference_mode():
            out = m(example)
        agree[name] = _top1_agree(out, ref)
        if name != "eager":
            m.report["max_abs_diff"] = (out - ref).abs().max().item()
    ok = {k: m for k, m in cands.items() if agree[k] == 1.0}
    times = median_times(ok, example, repeats=3, warmup=1)
    best = choose(times, agree)
    chosen = cands[best]
    chosen.report["auto"] = {"times_ms": {k: round(1e3 * v, 3) for k, v in times.items()},
                             "top1_agreement": agree, "skipped": skipped, "chosen": best,
                             "native_bf16": has_native_bf16()}
    if verbose:
        print(f"optimize({what}): " + ", ".join(f"{k} {1e3 * v:.1f} ms" for k, v in times.items())
              + f" -> {best}" + "".join(f"; {k} rejected (top-1 agreement {a:.0%})"
                                        for k, a in agree.items() if a < 1.0), flush=True)
    return chosen


def add_backend_args(parser: argparse.ArgumentParser, what: str = "the model") -> None:
    """``--backend``, ``--precision`` and ``--calib`` of the video tools (lightvid.optimize's switches:
    its backends, and its precisions less fp16, which only the torch backend runs)."""
    parser.add_argument("--backend", default=None, choices=BACKENDS,
                        help=f"run {what} with this lightvid.optimize backend ('auto': the fastest that agrees "
                             "with eager on an example batch; default: plain PyTorch, or torch with --precision)")
    parser.add_argument("--precision", default=None, choices=[p for p in QUANTIZED_INFERENCE_PRECISIONS if p != "fp16"],
                        help="lightvid.optimize precision (bf16 the CPU lacks warns and runs fp32; int8 calibrates "
                             "on --calib, default the checkpoint's training clips)")
    parser.add_argument("--calib", default=None, metavar="CONFIG_OR_DATA",
                        help="int8 calibration clips: a training config .yaml or a dataset folder")
