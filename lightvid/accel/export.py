"""Export a model to ONNX (checked against ONNX Runtime), a ``torch.export`` program or safetensors.

* ONNX: ``torch.onnx.export(dynamo=True)`` (the ``torch.export``-based exporter, opset 18,
  dynamic batch); :func:`verify_onnx` runs the file with ONNX Runtime and returns the max abs
  difference to PyTorch on the same input (the export fails when it exceeds ``atol``, 1e-4 by
  default). Adaptive average pools whose output size divides their input at the example's size
  (C3D's ``AdaptiveAvgPool3d((1, 4, 4))``) are exported as fixed average pools, which the
  exporter supports.
* pt2: ``torch.export.export`` (dynamic batch) saved with ``torch.export.save``; load it back
  with ``torch.export.load(path).module()``.
* safetensors: the state_dict (``create_model(name, weights=FILE)`` loads it back).

Models and checkpoints come in through :func:`load_target`: a registered model name
(random weights unless ``--weights``) or a training checkpoint (``load_model`` contract).
Files are written to a temporary name and renamed into place.
"""
from __future__ import annotations

import copy
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from lightvid.accel.per_layer import record_inputs, set_module
from lightvid.errors import UserError

FORMATS = ("onnx", "pt2", "safetensors")
SUFFIX_FORMATS = {".onnx": "onnx", ".pt2": "pt2", ".safetensors": "safetensors"}
ONNX_OPSET = 18
CKPT_SUFFIXES = (".ckpt", ".pt", ".pth")


def load_target(target: str, **model_kwargs) -> tuple[nn.Module, dict]:
    """``(model in eval mode, meta)`` from a registered name or a training checkpoint path."""
    from lightvid.models.registry import create_model, is_model

    if is_model(target):
        model = create_model(target, **model_kwargs).eval()
        return model, {"model": target, "model_kwargs": model_kwargs,
                       "classes": [str(i) for i in range(getattr(model, "num_classes", 0) or 0)]}
    if Path(target).suffix in CKPT_SUFFIXES or Path(target).is_file():
        from lightvid.run_spec import load_model

        if model_kwargs:
            raise UserError(f"{target}: model flags (--num-classes, --width-mult, --kw) apply to model names, "
                            "not to checkpoints")
        return load_model(target)
    from lightvid.models.registry import unknown_model_error

    raise unknown_model_error(target)


def _tmp_for(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(tmp)


def _batch_dim() -> tuple[dict, ...]:
    return ({0: torch.export.Dim("batch")},)


class AdaptiveAvgPoolAsMatmul(nn.Module):
    """``AdaptiveAvgPool{2,3}d`` at one fixed input size, as one averaging matrix per spatial
    dimension (``(out, in)``, PyTorch's bins ``[floor(i*n/m), ceil((i+1)*n/m))``), applied by matmul.

    Exact at that size, and exportable where the pool itself is not: ONNX has no adaptive pool
    whose output size does not divide the input (e.g. C3D's ``(1, 4, 4)`` head pool on 48-px or
    64-px clips, which upsamples a 1x1 or 2x2 map)."""

    def __init__(self, in_size: tuple[int, ...], out_size: tuple[int, ...]):
        super().__init__()
        for d, (n, m) in enumerate(zip(in_size, out_size)):
            mat = torch.zeros(m, n)
            for i in range(m):
                lo, hi = (i * n) // m, -((-(i + 1) * n) // m)
                mat[i, lo:hi] = 1.0 / (hi - lo)
            self.register_buffer(f"avg{d}", mat, persistent=False)
        self.dims = len(in_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, *in_size) -> (B, C, *out_size)
        for d in range(self.dims):
            axis = x.dim() - self.dims + d
            x = (x.transpose(axis, -1) @ getattr(self, f"avg{d}").T).transpose(axis, -1)
        return x


def fixed_pools(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """A copy of ``model`` whose adaptive average pools are fixed at ``example``'s size: an
    ``AvgPool`` where the output size divides the input, else :class:`AdaptiveAvgPoolAsMatmul`.
    Same outputs at that input size."""
    pools = (nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
    inputs = record_inputs(model, [(n, m) for n, m in model.named_modules() if isinstance(m, pools)], example)
    sizes = {n: tuple(x.shape[2:]) for n, x in inputs.items()}
    model = copy.deepcopy(model)
    for name, size in sizes.items():
        pool = model.get_submodule(name)
        out = pool.output_size if isinstance(pool.output_size, tuple) else (pool.output_size,) * len(size)
        out = tuple(s if o is None else o for s, o in zip(size, out))
        if all(s % o == 0 for s, o in zip(size, out)):
            k = tuple(s // o for s, o in zip(size, out))
            fixed = (nn.AvgPool3d if len(size) == 3 else nn.AvgPool2d)(k, k)
        else:
            fixed = AdaptiveAvgPoolAsMatmul(size, out)
        set_module(model, name, fixed)
    return model


def export_onnx(model: nn.Module, path: str | os.PathLike, example: torch.Tensor, opset: int = ONNX_OPSET) -> Path:
    path = Path(path)
    tmp = _tmp_for(path)
    quiet = logging.getLogger("torch.onnx._internal.exporter._registration")  # "torchvision is not installed"
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # torch.export's own pytree internals
            torch.onnx.export(fixed_pools(model, example), (example,), str(tmp), dynamo=True, opset_version=opset,
                              input_names=["input"], output_names=["output"], dynamic_shapes=_batch_dim(),
                              verbose=False, external_data=False)  # one self-contained file (< 2 GB)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        quiet.setLevel(level)
    return path


def onnx_session(path: str | os.PathLike, threads: int | None = None):
    """An ONNX Runtime CPU session (``threads`` intra-op threads, default torch's)."""
    import onnxruntime as ort

    if not Path(path).is_file():
        raise UserError(f"{path}: no such ONNX file")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
        raise UserError(f"{path}: not a loadable ONNX model ({str(e).strip().splitlines()[0][:200]})") from None


def verify_onnx(model: nn.Module, path: str | os.PathLike, example: torch.Tensor) -> float:
    """Max abs difference between ONNX Runtime's and PyTorch's outputs on ``example``."""
    sess = onnx_session(path)
    name = sess.get_inputs()[0].name
    got = sess.run(None, {name: example.numpy().astype(np.float32)})[0]
    with torch.no_grad():
        want = model(example).float().numpy()
    if got.shape != want.shape:
        raise UserError(f"{path}: ONNX output shape {got.shape} differs from PyTorch's {want.shape}")
    return float(np.abs(got - want).max())


def export_program(model: nn.Module, path: str | os.PathLike, example: torch.Tensor) -> Path:
    """``torch.export`` program with a dynamic batch, saved by ``torch.export.save`` (a ``.pt2`` archive)."""
    path = Path(path)
    tmp = _tmp_for(path)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # torch.export's own pytree internals
            program = torch.export.export(model, (example,), dynamic_shapes=_batch_dim())
        torch.export.save(program, str(tmp))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def export_safetensors(model: nn.Module, path: str | os.PathLike) -> Path:
    from lightvid.checkpoint import save_atomic

    return save_atomic({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)


def export(model: nn.Module, path: str | os.PathLike, fmt: str = "onnx", input_size=None,
           atol: float = 1e-4, seed: int = 0) -> dict:
    """Write ``model`` to ``path`` in ``fmt``; returns ``{"path", "format", "max_abs_err"?}``.

    ``input_size`` (without batch) defaults to ``model.default_cfg["input_size"]``; the
    example is a seeded random batch of 2. ONNX exports are verified with ONNX Runtime.
    """
    if fmt not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    model = model.eval()
    if fmt == "safetensors":
        return {"path": str(export_safetensors(model, path)), "format": fmt}
    size = tuple(input_size or getattr(model, "default_cfg", {}).get("input_size", ()))
    if not size:
        raise UserError("the model has no default_cfg['input_size']; pass --input CxTxHxW")
    example = torch.randn(2, *size, generator=torch.Generator().manual_seed(seed))
    if fmt == "pt2":
        return {"path": str(export_program(model, path, example)), "format": fmt}
    export_onnx(model, path, example)
    err = verify_onnx(model, path, example)
    if err > atol:
        raise UserError(f"{path}: ONNX Runtime's output differs from PyTorch's by {err:.2e} > {atol:g}")
    return {"path": str(path), "format": fmt, "max_abs_err": err}
