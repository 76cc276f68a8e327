"""``lightvid predict``: top-k classes of video files with a trained checkpoint.

The model comes from ``lightvid.run_spec.load_model``; clips are decoded, sampled
and transformed exactly as in the run's evaluation (its ``data`` config: clip length,
stride, fps, short side, crop size; ``lightvid.data``'s ``ClipSampler``, ``read_clip`` and
``ClipTransform``), ``K`` evenly spaced clips (centre crop) per video, whose softmax
probabilities are averaged. A file that cannot be decoded gets a one-line error and the
other files are still predicted.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from lightvid.data.sampling import ClipSampler
from lightvid.data.transforms import ClipTransform
from lightvid.data.video import VideoDecodeError, probe, read_clip
from lightvid.errors import UserError
from lightvid.precision import QUANTIZED_INFERENCE_PRECISIONS
from lightvid.run_spec import load_model, model_norm, run_data_config


@dataclass
class Prediction:
    path: str
    topk: list[tuple[str, float]] = field(default_factory=list)  # (class name, probability)
    error: str | None = None
    clips: int = 0


class Predictor:
    """Holds the model and the run's evaluation pipeline; ``predict(path)`` -> :class:`Prediction`."""

    def __init__(self, ckpt: str, clips: int | None = None, topk: int = 5, optimized: bool = False,
                 backend: str | None = None, precision: str = "auto", calib: str | None = None):
        self.model, self.meta = load_model(ckpt)
        self.cfg = cfg = run_data_config(self.meta, source=f"{ckpt}: config")
        self.clips = clips or cfg.eval_clips
        if self.clips < 1 or topk < 1:
            raise UserError("--clips and --topk must be >= 1")
        mean, std = model_norm(self.meta, self.model)
        mean, std = mean or (0.5,) * 3, std or (0.5,) * 3
        self.sampler = ClipSampler(cfg.clip_len, cfg.stride, cfg.fps, cfg.sampling, cfg.loop)
        self.transform = ClipTransform(size=cfg.size, short_side=cfg.short_side, train=False, mean=mean, std=std,
                                       flip=False, crops=1)
        self.classes = list(self.meta.get("classes") or [])
        self.topk = min(topk, len(self.classes) or topk)
        self.run = self.model
        if precision not in QUANTIZED_INFERENCE_PRECISIONS:
            raise UserError(f"--precision must be one of {', '.join(QUANTIZED_INFERENCE_PRECISIONS)}, "
                            f"got {precision!r}")
        if backend is not None or precision == "int8":
            self.run = self._backend(backend or "auto", precision, calib, mean, std)
        elif optimized or precision != "auto":
            from lightvid.accel.optimize import optimize

            # an explicit bf16 the CPU cannot run natively warns once and runs fp32
            self.run = optimize(self.model, precision=precision)

    def _backend(self, backend: str, precision: str, calib: str | None, mean, std):
        """``lightvid.optimize(backend=...)`` timed / exported on a batch of K clips of the run's shape."""
        from lightvid.accel.backends import optimize
        from lightvid.accel.calib import batches_from_data, calibration_batches

        cfg = self.cfg
        size = (3, cfg.clip_len, cfg.size, cfg.size)  # (C, T, H, W) of one clip
        batches = None
        if precision == "int8":
            batches = (calibration_batches(calib, size, mean=mean, std=std) if calib else
                       batches_from_data(cfg, size, mean=mean, std=std, where="the checkpoint's config.data"))
        example = torch.randn(self.clips, *size, generator=torch.Generator().manual_seed(0))
        return optimize(self.model, precision=precision, backend=backend, example_input=example,
                        calibration=batches)

    def clips_of(self, path: str) -> torch.Tensor:
        """``(K, C, T, H, W)`` normalised clips of ``path``; VideoDecodeError when it cannot be read."""
        info = probe(path)
        views = []
        for idx in self.sampler.eval_clips(info.frames, info.fps, self.clips):
            views.append(self.transform(read_clip(path, idx, self.transform.short_side))[0])
        return torch.stack(views)

    def predict(self, path: str) -> Prediction:
        if not Path(path).is_file():
            return Prediction(str(path), error=f"{path}: no such file")
        try:
            x = self.clips_of(path)
        except (VideoDecodeError, UserError, OSError, ValueError) as e:
            return Prediction(str(path), error=str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
        with torch.inference_mode():
            probs = self.run(x).float().softmax(-1).mean(0)  # average over the K clips
        p, i = probs.topk(min(self.topk, probs.numel()))
        names = [self.classes[j] if j < len(self.classes) else str(j) for j in i.tolist()]
        return Prediction(str(path), list(zip(names, [round(v, 6) for v in p.tolist()])), clips=len(x))
