"""Which precision runs well here: the CPU's features and one ``resolve_precision`` for every command.

Two vocabularies name the same three number formats: inference (``lightvid.optimize``,
``bench``, ``predict``) says ``fp32``/``bf16``/``fp16``; training (``trainer.precision``,
Lightning's names) says ``32``/``bf16-mixed``/``16-mixed`` (and ``-true`` variants). Both go
through :func:`resolve_precision`, so ``auto`` cannot mean different things in different commands:

* ``auto``: bf16 where it runs natively (a CUDA GPU that supports it; a CPU with AVX512-BF16
  or AMX), fp16 on other CUDA GPUs in training, fp32 otherwise;
* an explicit bf16 (or fp16) that the device cannot run natively prints one warning line
  naming the missing CPU feature and runs fp32 instead: PyTorch's reference kernels for bf16
  on an AVX2 CPU are many times slower than fp32 (a C3D forward that takes under a second in
  fp32 ran for more than ten minutes). ``allow_slow=True`` keeps the requested precision.

:func:`cpu_features` reads ``torch.backends.cpu.get_cpu_capability()``, the ``torch.cpu._is_*``
probes and ``/proc/cpuinfo`` flags (either one suffices: the probes are private, the flags are Linux-only).
"""
from __future__ import annotations

import functools
import sys
from dataclasses import dataclass

import torch

from lightvid.errors import UserError

INFERENCE_PRECISIONS = ("fp32", "bf16", "fp16", "auto")
# plus static post-training int8 (lightvid.accel.backends: ONNX Runtime QDQ, NNCF for OpenVINO)
QUANTIZED_INFERENCE_PRECISIONS = (*INFERENCE_PRECISIONS, "int8")
TRAINING_PRECISIONS = ("auto", "32", "32-true", "64", "64-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true")
_FORMAT = {"fp32": "fp32", "bf16": "bf16", "fp16": "fp16", "32": "fp32", "32-true": "fp32", "64": "fp64",
           "64-true": "fp64", "bf16-mixed": "bf16", "bf16-true": "bf16", "16-mixed": "fp16", "16-true": "fp16"}
_FP32 = {"inference": "fp32", "training": "32"}


@functools.cache
def cpu_flags() -> frozenset:
    """Flags of the first CPU in /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def _probe(name: str) -> bool:
    fn = getattr(getattr(torch, "cpu", None), name, None)
    try:
        return bool(fn()) if fn is not None else False
    except (RuntimeError, OSError):
        return False


@dataclass(frozen=True)
class CpuFeatures:
    """What the CPU runs natively; ``capability`` is PyTorch's dispatch level (``AVX2``, ``AVX512``, ``DEFAULT``)."""

    capability: str
    avx2: bool
    avx512: bool
    avx512_bf16: bool
    amx_bf16: bool
    amx_fp16: bool
    avx512_fp16: bool
    vnni: bool  # AVX512-VNNI or AVX-VNNI: int8 dot products

    @property
    def bf16(self) -> bool:
        return self.avx512_bf16 or self.amx_bf16

    @property
    def fp16(self) -> bool:
        return self.amx_fp16 or self.avx512_fp16

    def names(self) -> list[str]:
        """The features present, as Intel/AMD name them."""
        pairs = (("AVX2", self.avx2), ("AVX-512", self.avx512), ("AVX512-BF16", self.avx512_bf16),
                 ("AMX-BF16", self.amx_bf16), ("AMX-FP16", self.amx_fp16), ("AVX512-FP16", self.avx512_fp16),
                 ("VNNI", self.vnni))
        return [n for n, ok in pairs if ok]

    def describe(self) -> str:
        return ", ".join(self.names()) or f"no AVX2 (PyTorch level {self.capability})"


@functools.cache
def cpu_features() -> CpuFeatures:
    """This machine's :class:`CpuFeatures` (probed once)."""
    flags = cpu_flags()
    try:
        capability = str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        capability = "DEFAULT"
    return CpuFeatures(
        capability=capability,
        avx2=_probe("_is_avx2_supported") or "avx2" in flags,
        avx512=_probe("_is_avx512_supported") or "avx512f" in flags,
        avx512_bf16=_probe("_is_avx512_bf16_supported") or "avx512_bf16" in flags,
        amx_bf16=_probe("_is_amx_tile_supported") or "amx_bf16" in flags,
        amx_fp16=_probe("_is_amx_fp16_supported") or "amx_fp16" in flags,
        avx512_fp16="avx512_fp16" in flags,
        vnni=_probe("_is_vnni_supported") or bool({"avx512_vnni", "avx_vnni"} & flags),
    )


def _device(device) -> torch.device:
    """A torch device from a device or a Lightning accelerator name (``auto``, ``gpu``, ``cuda``, ``cpu``)."""
    if isinstance(device, torch.device):
        return device
    name = str(device)
    if name in ("auto", "gpu"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name in ("mps", "tpu", "hpu"):
        return torch.device("cpu")  # judged as a CPU: no claim about these accelerators
    return torch.device(name)


def has_native_bf16(device: str | torch.device = "cpu") -> bool:
    """True where bf16 runs natively: AMX-BF16 or AVX512-BF16 on CPU, bf16-capable CUDA GPUs."""
    dev = _device(device)
    if dev.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return cpu_features().bf16


def has_native_fp16(device: str | torch.device = "cpu") -> bool:
    """True where fp16 runs natively: CUDA GPUs, AMX-FP16 or AVX512-FP16 CPUs."""
    dev = _device(device)
    if dev.type == "cuda":
        return torch.cuda.is_available()
    return cpu_features().fp16


def _missing(fmt: str, dev: torch.device) -> str:
    if dev.type == "cuda":
        return f"this GPU ({torch.cuda.get_device_name(dev)}) has no native {fmt}"
    need = "AVX512-BF16 or AMX-BF16" if fmt == "bf16" else "AMX-FP16 or AVX512-FP16"
    return f"this CPU has no {need} (it has {cpu_features().describe()})"


_warned: set[str] = set()


def warn_once(message: str) -> None:
    """One ``warning:`` line on stderr per distinct message and process."""
    if message not in _warned:
        _warned.add(message)
        print(f"warning: {message}", file=sys.stderr, flush=True)


def resolve_precision(precision: str, device: str | torch.device = "cpu", training: bool | None = None,
                      allow_slow: bool = False) -> str:
    """The precision to run ``precision`` as on ``device``, in the same vocabulary.

    ``precision`` is an inference name (``fp32``/``bf16``/``fp16``) or a training name
    (``32``/``bf16-mixed``/``16-mixed``/``-true``/``64``); ``auto`` answers in the training
    vocabulary when ``training`` is true, else the inference one. ``device`` is a torch
    device or a Lightning accelerator name. See the module docstring for the rules.
    """
    names = TRAINING_PRECISIONS if training else INFERENCE_PRECISIONS
    if training is None:
        names = INFERENCE_PRECISIONS if precision in INFERENCE_PRECISIONS else TRAINING_PRECISIONS
    if precision not in names:
        raise UserError(f"precision must be one of {', '.join(names)}, got {precision!r}")
    vocab = "training" if names is TRAINING_PRECISIONS else "inference"
    dev = _device(device)
    if precision == "auto":
        if has_native_bf16(dev):
            return "bf16-mixed" if vocab == "training" else "bf16"
        if vocab == "training" and dev.type == "cuda":
            return "16-mixed"
        return _FP32[vocab]
    fmt = _FORMAT[precision]
    native = {"bf16": has_native_bf16, "fp16": has_native_fp16}.get(fmt)
    if native is None or allow_slow or native(dev):
        return precision
    fallback = _FP32[vocab]
    warn_once(f"precision {precision}: {_missing(fmt, dev)}, so {fmt} would run on PyTorch's slow reference "
              f"path; running {fallback} instead")
    return fallback
