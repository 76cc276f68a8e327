"""The model side of the video tools (timeline, stream, features, explain): load once, run many clips.

``load_inference_model(target)`` takes a training checkpoint (its run's evaluation
pipeline: clip length, frame step, crop, normalisation, class names) or a registered model
name (its ``default_cfg``: input size, mean, std; random or ``--weights`` weights) and
returns an :class:`InferenceModel`. ``backend`` / ``precision`` route the model through
:func:`lightvid.optimize` (``lightvid.accel.backends``: PyTorch with BN folding and
channels-last, ONNX Runtime, OpenVINO, or "auto", the fastest that agrees with eager on an
example batch of the model's own clip shape); :func:`build_runner` is the one place this
happens. ``outputs="features"`` optimises the embedding (``forward_head(forward_features(x),
pre_logits=True)``, :class:`Embedder`) instead of the logits, for ``lightvid features``.
The plain fp32 model stays in ``InferenceModel.model`` for what needs gradients (Grad-CAM).
A 2D image model given video clips runs frame by frame and averages the softmax over time.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from lightvid.data.build import DataConfig
from lightvid.data.sampling import ClipSampler
from lightvid.data.transforms import ClipTransform
from lightvid.errors import UserError
from lightvid.run_spec import load_model, run_data_config


class Embedder(nn.Module):
    """``model``'s pooled embedding as a module: ``forward_head(forward_features(x), pre_logits=True)``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.default_cfg = getattr(model, "default_cfg", {})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)  # (B, num_features)


def build_runner(module: nn.Module, input_size: tuple[int, ...], backend: str | None, precision: str | None,
                 calibration=None) -> nn.Module:
    """``module`` through :func:`lightvid.optimize` (``backend`` default torch, ``precision`` default auto).

    ONNX Runtime, OpenVINO and "auto" export / time on an example batch of 2 inputs of
    ``input_size`` (``(C, T, H, W)`` or ``(C, H, W)``; the exported batch axis is dynamic);
    int8 calibrates on ``calibration``.
    """
    from lightvid.accel.backends import optimize

    backend = backend or "torch"
    precision = precision or "auto"
    example = None
    if backend != "torch" or precision == "int8":
        example = torch.randn(2, *input_size, generator=torch.Generator().manual_seed(0))
    return optimize(module, precision=precision, backend=backend, example_input=example, calibration=calibration,
                    winograd=False)


@dataclass
class InferenceModel:
    model: nn.Module  # eval mode, plain PyTorch (gradients work: Grad-CAM uses it)
    run: nn.Module  # what inference calls: ``model`` or its lightvid.optimize copy
    cfg: DataConfig  # clip_len, stride, fps, size, short_side of the clips the model expects
    classes: list[str]
    transform: ClipTransform
    meta: dict = field(default_factory=dict)
    name: str = ""
    embedder: nn.Module | None = None  # the optimised Embedder (outputs="features"); None: embed() runs ``model``

    @property
    def is_2d(self) -> bool:
        size = (getattr(self.model, "default_cfg", None) or {}).get("input_size") or ()
        return len(size) == 3

    @property
    def sampler(self) -> ClipSampler:
        return ClipSampler(self.cfg.clip_len, self.cfg.stride, self.cfg.fps, "clip", self.cfg.loop)

    def clip_seconds(self, video_fps: float) -> float:
        """Seconds one clip of the run's sampling covers at ``video_fps``."""
        return self.sampler.span(video_fps) / video_fps

    def class_name(self, i: int) -> str:
        return self.classes[i] if i < len(self.classes) else str(i)

    def prepare(self, frames) -> torch.Tensor:
        """uint8 ``(T, H, W, 3)`` frames -> the normalised ``(C, T, H, W)`` clip (centre crop)."""
        x = frames if isinstance(frames, torch.Tensor) else torch.from_numpy(frames)
        return self.transform(x)[0]

    def logits(self, x: torch.Tensor, model: nn.Module | None = None) -> torch.Tensor:
        """``(B, C, T, H, W)`` clips -> ``(B, classes)`` logits; a 2D model averages frame logits."""
        m = self.run if model is None else model
        if self.is_2d and x.dim() == 5:
            b, c, t, h, w = x.shape
            frames = x.transpose(1, 2).reshape(b * t, c, h, w)  # (B*T, C, H, W)
            return m(frames).float().reshape(b, t, -1).mean(1)
        return m(x).float()

    @torch.inference_mode()
    def probs(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x).softmax(-1)

    @torch.inference_mode()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(B, num_features)``: ``forward_head(forward_features(x), pre_logits=True)``."""
        m = self.embedder if self.embedder is not None else Embedder(self.model)
        if self.is_2d and x.dim() == 5:
            b, c, t, h, w = x.shape
            f = m(x.transpose(1, 2).reshape(b * t, c, h, w))  # (B*T, D)
            return f.float().reshape(b, t, -1).mean(1)  # (B, D): frame features averaged over time
        return m(x).float()

    @property
    def backend(self) -> dict:
        """What runs inference: ``{"backend", "precision"}`` of the optimised runner (plain eager: torch fp32)."""
        r = self.embedder if self.embedder is not None else self.run
        rep = getattr(r, "report", None) or {}
        return {"backend": rep.get("backend", getattr(r, "backend", "torch eager")),
                "precision": rep.get("precision", getattr(r, "precision", "fp32"))}


def _from_checkpoint(path: str) -> tuple[nn.Module, DataConfig, list[str], dict]:
    model, meta = load_model(path)  # Lightning-free, weights_only loading, one-line errors naming the file
    cfg = run_data_config(meta, source=f"{path}: config")
    return model, cfg, list(meta.get("classes") or []), meta


def _from_name(name: str, weights: str | None, model_kwargs: dict) -> tuple[nn.Module, DataConfig, list[str], dict]:
    from lightvid.models.registry import create_model

    kwargs = dict(model_kwargs)
    if weights:
        kwargs["weights"] = weights
    model = create_model(name, **kwargs).eval()
    size = tuple(model.default_cfg["input_size"])
    clip_len = size[1] if len(size) == 4 else 1
    side = size[-1]
    cfg = DataConfig(root=".", clip_len=clip_len, size=side, short_side=side).validate()
    return model, cfg, [], {"model": name}


def load_inference_model(target: str, precision: str | None = None, weights: str | None = None,
                         model_kwargs: dict | None = None, backend: str | None = None, calib: str | None = None,
                         outputs: str = "logits") -> InferenceModel:
    """A checkpoint path or a registered model name, run by ``backend`` at ``precision`` (see the module docstring).

    Neither given: the plain eager model. ``precision="int8"`` calibrates on ``calib`` (a
    training config or dataset folder), else on the checkpoint's own training clips.
    ``outputs``: "logits" optimises the classifier (``run``), "features" the embedding
    (``embedder``), for ``lightvid features``.
    """
    if outputs not in ("logits", "features"):
        raise ValueError(f"outputs must be 'logits' or 'features', got {outputs!r}")
    if Path(target).suffix in (".ckpt", ".pt", ".pth", ".safetensors") or Path(target).is_file():
        if model_kwargs:
            raise UserError(f"{target}: model options (--kw, --width-mult) apply to a model name, not a checkpoint")
        model, cfg, classes, meta = _from_checkpoint(target)
    else:
        model, cfg, classes, meta = _from_name(target, weights, model_kwargs or {})
    model.eval()
    mean = model.default_cfg.get("mean", (0.5,) * 3)
    std = model.default_cfg.get("std", (0.5,) * 3)
    transform = ClipTransform(size=cfg.size, short_side=cfg.short_side, train=False, mean=mean, std=std,
                              flip=False, crops=1)
    im = InferenceModel(model, model, cfg, classes, transform, meta, name=meta.get("model", target))
    if backend is None and precision is None:
        return im
    size = tuple(model.default_cfg["input_size"])
    size = (size[0], cfg.size, cfg.size) if len(size) == 3 else (size[0], cfg.clip_len, cfg.size, cfg.size)
    calibration = None
    if precision == "int8":
        from lightvid.accel.calib import batches_from_data, calibration_batches

        if calib:
            calibration = calibration_batches(calib, size, mean=mean, std=std)
        elif (meta.get("config") or {}).get("data"):
            calibration = batches_from_data(cfg, size, mean=mean, std=std, where=f"{target}: config.data")
        else:
            raise UserError(f"{target}: --precision int8 needs --calib (a training config or dataset folder)")
    if outputs == "features":
        im.embedder = build_runner(Embedder(model), size, backend, precision, calibration)
    else:
        im.run = build_runner(model, size, backend, precision, calibration)
    return im
