"""Augmentation and regularisation for training: mixup, cutmix, a time-consistent RandAugment,
repeated augmentation and an exponential moving average (EMA) of the weights.

Every clip-level operation applies the *same* draw to every frame of a clip, so a video stays a
video: one cutmix box cut through all frames, one RandAugment op and magnitude per clip. A
per-frame draw would add flicker that motion classes could be confused with.

* mixup: Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018;
* cutmix: Yun et al., "CutMix: Regularization Strategy to Train Strong Classifiers with
  Localizable Features", ICCV 2019 (for video: the box is cut through time, as in
  PyTorchVideo's and MMAction2's video cutmix);
* RandAugment: Cubuk et al., "RandAugment: Practical automated data augmentation with a reduced
  search space", CVPR-W 2020 (``N`` random ops at magnitude ``M`` of 10);
* repeated augmentation: Hoffer et al., "Augment your batch", CVPR 2020, and Touvron et al.
  (DeiT), ICML 2021: each sampled clip appears ``k`` times in a batch, differently augmented;
* EMA of the weights: Polyak averaging, ``ema = decay * ema + (1 - decay) * w`` after each
  optimiser step (``torch.optim.swa_utils.AveragedModel``); validation and the saved checkpoints
  use the averaged weights.

Label smoothing (``optim.label_smoothing``) and gradient clipping (``trainer.grad_clip``) are
PyTorch's ``cross_entropy`` and Lightning's ``gradient_clip_val``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import lightning as L
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

# ---------------------------------------------------------------------------------------
# mixup / cutmix on a batch


def one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    return F.one_hot(labels.long(), num_classes).float()


def cutmix_box(h: int, w: int, lam: float, generator: torch.Generator | None = None) -> tuple[int, int, int, int]:
    """A box ``(top, bottom, left, right)`` covering about ``1 - lam`` of an ``h x w`` frame (clipped)."""
    cut = math.sqrt(1.0 - lam)
    bh, bw = int(h * cut), int(w * cut)
    cy = int(torch.randint(0, h, (1,), generator=generator))
    cx = int(torch.randint(0, w, (1,), generator=generator))
    return max(cy - bh // 2, 0), min(cy + bh // 2, h), max(cx - bw // 2, 0), min(cx + bw // 2, w)


@dataclass
class Mixer:
    """Mix a batch ``x`` (``(B, C, T, H, W)`` or ``(B, C, H, W)``) with a permutation of itself.

    Returns the mixed batch and soft targets ``(B, K)``. With both alphas > 0, cutmix is chosen
    with probability ``switch_prob`` per batch. ``prob`` is the chance to mix a batch at all.
    """

    num_classes: int
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    prob: float = 1.0
    switch_prob: float = 0.5

    @property
    def active(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def __call__(self, x: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None):
        target = one_hot(labels, self.num_classes).to(x.device)
        if not self.active or x.shape[0] < 2 or float(torch.rand((), generator=generator)) >= self.prob:
            return x, target
        use_cutmix = self.cutmix_alpha > 0 and (
            self.mixup_alpha <= 0 or float(torch.rand((), generator=generator)) < self.switch_prob)
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        lam = float(torch.distributions.Beta(alpha, alpha).sample())
        perm = torch.randperm(x.shape[0], generator=generator).to(x.device)
        if use_cutmix:
            h, w = x.shape[-2:]
            top, bottom, left, right = cutmix_box(h, w, lam, generator)
            x = x.clone()
            x[..., top:bottom, left:right] = x[perm][..., top:bottom, left:right]  # every frame: same box
            lam = 1.0 - (bottom - top) * (right - left) / (h * w)  # the area actually kept
        else:
            x = lam * x + (1.0 - lam) * x[perm]
        return x, lam * target + (1.0 - lam) * target[perm]


# ---------------------------------------------------------------------------------------
# RandAugment, one draw per clip


def _blend(a: torch.Tensor, b: torch.Tensor, factor: float) -> torch.Tensor:
    return (b + factor * (a - b)).clamp_(0, 255)


def _gray(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2])[..., None]  # (T, H, W, 1)


def _affine(x: torch.Tensor, matrix: list[list[float]]) -> torch.Tensor:
    """Warp every frame of ``(T, H, W, 3)`` float with the same 2x3 matrix (normalised coordinates)."""
    t = x.shape[0]
    theta = torch.tensor(matrix, dtype=torch.float32).expand(t, 2, 3)
    frames = x.permute(0, 3, 1, 2)  # (T, 3, H, W)
    grid = F.affine_grid(theta, list(frames.shape), align_corners=False)
    out = F.grid_sample(frames, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return out.permute(0, 2, 3, 1)


def _op(name: str, x: torch.Tensor, level: float, sign: float) -> torch.Tensor:
    """Op ``name`` at ``level`` in [0, 1] on a float ``(T, H, W, 3)`` clip in 0-255."""
    if name == "identity":
        return x
    if name == "brightness":
        return _blend(x, torch.zeros_like(x), 1 + sign * 0.9 * level)
    if name == "contrast":
        return _blend(x, _gray(x).mean().expand_as(x), 1 + sign * 0.9 * level)
    if name == "color":
        return _blend(x, _gray(x).expand_as(x), 1 + sign * 0.9 * level)
    if name == "solarize":
        thresh = 255 * (1 - level)
        return torch.where(x >= thresh, 255 - x, x)
    if name == "posterize":
        bits = round(8 - 4 * level)
        shift = 8 - bits
        return ((x.to(torch.uint8) >> shift) << shift).float()
    if name == "autocontrast":
        lo = x.amin(dim=(0, 1, 2), keepdim=True)  # one range for the whole clip
        hi = x.amax(dim=(0, 1, 2), keepdim=True)
        return ((x - lo) * 255 / (hi - lo).clamp_min(1)).clamp_(0, 255)
    if name == "rotate":
        a = math.radians(sign * 30 * level)
        return _affine(x, [[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]])
    if name == "shear_x":
        return _affine(x, [[1.0, sign * 0.3 * level, 0.0], [0.0, 1.0, 0.0]])
    if name == "shear_y":
        return _affine(x, [[1.0, 0.0, 0.0], [sign * 0.3 * level, 1.0, 0.0]])
    if name == "translate_x":
        return _affine(x, [[1.0, 0.0, sign * 0.45 * level * 2], [0.0, 1.0, 0.0]])
    if name == "translate_y":
        return _affine(x, [[1.0, 0.0, 0.0], [0.0, 1.0, sign * 0.45 * level * 2]])
    raise ValueError(f"unknown RandAugment op {name!r}")


RAND_OPS = ("identity", "brightness", "contrast", "color", "solarize", "posterize", "autocontrast", "rotate",
            "shear_x", "shear_y", "translate_x", "translate_y")


@dataclass
class TemporalRandAugment:
    """``num_ops`` ops from ``ops`` at ``magnitude`` (0-10), the same for every frame of a clip.

    Takes and returns uint8 ``(T, H, W, 3)``. ``magnitude_std > 0`` draws the magnitude per clip
    from ``N(magnitude, magnitude_std)`` (timm's variant), still one value for the whole clip.
    """

    num_ops: int = 2
    magnitude: float = 9.0
    magnitude_std: float = 0.0
    ops: tuple[str, ...] = RAND_OPS

    def draw(self, generator: torch.Generator | None = None) -> list[tuple[str, float, float]]:
        """The clip's ``[(op, level in [0, 1], sign)]``: one draw, reused for every frame."""
        plan = []
        for _ in range(self.num_ops):
            name = self.ops[int(torch.randint(0, len(self.ops), (1,), generator=generator))]
            m = self.magnitude
            if self.magnitude_std > 0:
                m = m + self.magnitude_std * float(torch.randn((), generator=generator))
            sign = 1.0 if float(torch.rand((), generator=generator)) < 0.5 else -1.0
            plan.append((name, min(max(m, 0.0), 10.0) / 10.0, sign))
        return plan

    def apply(self, x: torch.Tensor, plan: list[tuple[str, float, float]]) -> torch.Tensor:
        y = x.float()
        for name, level, sign in plan:
            y = _op(name, y, level, sign)
        return y.round_().clamp_(0, 255).to(torch.uint8)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.apply(x, self.draw(generator))


# ---------------------------------------------------------------------------------------
# EMA of the weights


class WeightEMA(L.Callback):
    """Keep ``ema = decay * ema + (1 - decay) * w`` after every optimiser step; validate with it.

    The averaged model is :class:`torch.optim.swa_utils.AveragedModel` with
    ``get_ema_multi_avg_fn(decay)`` (buffers such as batch-norm statistics averaged too). During
    validation the module holds the averaged weights; saved checkpoints carry them as the model's
    ``state_dict`` (so ``best.ckpt`` is the model that was scored) and keep the raw weights under
    ``ema_raw_state_dict``, from which ``--resume`` continues training.
    """

    def __init__(self, decay: float = 0.999):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.ema: AveragedModel | None = None
        self._raw: dict | None = None

    def _ensure(self, pl_module) -> AveragedModel:
        if self.ema is None:
            self.ema = AveragedModel(pl_module.model, multi_avg_fn=get_ema_multi_avg_fn(self.decay), use_buffers=True)
        return self.ema

    def on_fit_start(self, trainer, pl_module) -> None:
        self._ensure(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if (batch_idx + 1) % trainer.accumulate_grad_batches == 0 or trainer.is_last_batch:
            self._ensure(pl_module).update_parameters(pl_module.model)

    def ema_state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged model's weights under the wrapped model's names."""
        return {k[len("module."):]: v for k, v in self.ema.state_dict().items() if k.startswith("module.")}

    def _swap_in(self, pl_module) -> None:
        if self.ema is None or self._raw is not None or int(self.ema.n_averaged) == 0:
            return
        self._raw = {k: v.detach().clone() for k, v in pl_module.model.state_dict().items()}
        pl_module.model.load_state_dict(self.ema_state_dict())

    def _swap_out(self, pl_module) -> None:
        if self._raw is not None:
            pl_module.model.load_state_dict(self._raw)
            self._raw = None

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._swap_in(pl_module)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._swap_out(pl_module)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        if self.ema is None or int(self.ema.n_averaged) == 0:
            return
        state = checkpoint["state_dict"]
        raw = {}
        for k, v in self.ema_state_dict().items():
            key = f"model.{k}"
            if key in state:
                raw[key] = state[key]
                state[key] = v.detach().clone()
        checkpoint["ema_raw_state_dict"] = raw

    def state_dict(self) -> dict:
        if self.ema is None:
            return {}
        return {"n_averaged": int(self.ema.n_averaged)}

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        # The module was restored with the averaged weights: they become the EMA, and the raw
        # weights go back into the module for training to continue.
        raw = checkpoint.get("ema_raw_state_dict")
        if not raw:
            return
        ema = self._ensure(pl_module)
        averaged = {k[len("model."):]: v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
        ema.module.load_state_dict(averaged)
        n = (checkpoint.get("callbacks", {}) or {}).get(self.state_key, {}).get("n_averaged", 1)
        ema.n_averaged.fill_(max(int(n), 1))
        pl_module.model.load_state_dict({k[len("model."):]: v for k, v in raw.items()}, strict=False)


# ---------------------------------------------------------------------------------------
# repeated augmentation


def repeated_order(order: list[int], repeats: int) -> list[int]:
    """``order`` with each of its first ``ceil(n / repeats)`` items repeated ``repeats`` times in a
    row, cut back to ``n``: an epoch keeps its length and a batch holds copies of a clip."""
    if repeats <= 1:
        return order
    n = len(order)
    keep = order[: -(-n // repeats)]
    return [i for i in keep for _ in range(repeats)][:n]
