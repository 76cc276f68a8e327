"""3D convolution -> 2D convolution over time folded into channels (the C3D compression document's MC variants).

A 3D convolution with temporal kernel ``k``, stride 1 and padding ``p`` over ``T`` frames,
``y[t] = sum_k W[:, :, k] * x[t + k - p]``, is a 2D convolution from ``T*C_in`` to
``T*C_out`` channels (channel ``t*C + c``, as :class:`lightvid.models.c3d.FoldTime`) whose
weight is banded block-Toeplitz: block ``(t, s)`` is ``W[:, :, s - t + p]`` where that tap
exists and zero elsewhere. That transfer is exact.

A folded layer that also absorbs the following 2x temporal max-pool (``conv4b``/``conv5b`` in
``c3d_mc4``) emits ``T/2`` frames; ``max(a, b)`` of a frame pair is not linear, so it is
approximated by a linear map of the pair (``P``, a ``T_out x T`` frame-combination matrix):

* ``"even"``: keep the first frame of each pair (``P[j, 2j] = 1``);
* ``"mean"`` (default): average the pair (``(a + b) / 2``). It under-estimates the max, but
  with zero extra bias: a ReLU network without biases is positively homogeneous, so an
  error that is mostly a downward scale changes the logits' scale more than their argmax;
* ``"fit"``: ``alpha * (a + b) / 2 + beta`` per output channel, the least-squares affine fit
  of ``max(a, b) = (a + b)/2 + |a - b|/2`` on calibration activations. For inputs symmetric
  around zero the best linear predictor of ``|a - b|/2`` is the constant ``E|a - b|/2``,
  which is why the fit is "mean plus a bias"; ``alpha`` absorbs the correlation that
  non-negative (post-ReLU) inputs add. It has the lowest per-layer error on the source's
  activations, but each layer is fitted to the *source's* input and the added biases
  compound: end to end it agreed less with the teacher than ``"mean"`` (see
  docs/compression.md).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

TIME_POOL_MODES = ("fit", "mean", "even")


def frame_matrix(T: int, T_out: int, mode: str = "mean") -> torch.Tensor:
    """``(T_out, T)`` combination of 3D output frames that each folded output frame emits."""
    P = torch.zeros(T_out, T)
    if T_out == T:
        return torch.eye(T)
    if T_out * 2 != T:
        raise ValueError(f"a folded layer maps {T} frames to {T} or {T // 2}, not {T_out}")
    for j in range(T_out):
        if mode == "even":
            P[j, 2 * j] = 1.0
        elif mode in ("mean", "fit"):
            P[j, 2 * j] = P[j, 2 * j + 1] = 0.5
        else:
            raise ValueError(f"time_pool must be one of {TIME_POOL_MODES}, got {mode!r}")
    return P


def toeplitz_weight(weight: torch.Tensor, bias: torch.Tensor | None, T: int, P: torch.Tensor,
                    padding: int = 1) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Fold a ``(C_out, C_in, k, kh, kw)`` 3D weight into ``(T_out*C_out, T*C_in, kh, kw)``.

    Output frame ``j`` is ``sum_t P[j, t] * y[t]`` where ``y`` is the 3D convolution's output.
    """
    C_out, C_in, k, kh, kw = weight.shape
    taps = torch.zeros(T, T, k, dtype=weight.dtype)  # taps[t, s, i] = 1 if input frame s feeds output t via tap i
    for t in range(T):
        for s in range(T):
            i = s - t + padding
            if 0 <= i < k:
                taps[t, s, i] = 1.0
    P = P.to(weight.dtype)
    w = torch.einsum("jt,tsi,ocihw->joschw", P, taps, weight)  # (T_out, C_out, T, C_in, kh, kw)
    w2d = w.reshape(P.shape[0] * C_out, T * C_in, kh, kw)
    b2d = None
    if bias is not None:
        b2d = (P.sum(1)[:, None] * bias[None, :]).reshape(-1)  # (T_out*C_out,)
    return w2d.contiguous(), b2d


@torch.no_grad()
def fit_pair_max(conv3d_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel ``alpha, beta`` minimising ``|| alpha*(a+b)/2 + beta - max(a, b) ||^2``.

    ``conv3d_out`` is ``(B, C, T, H, W)`` (T even); pairs are frames ``(2j, 2j+1)``.
    """
    a, b = conv3d_out[:, :, 0::2], conv3d_out[:, :, 1::2]
    m = ((a + b) / 2).transpose(0, 1).reshape(a.shape[1], -1).double()  # (C, N)
    y = torch.maximum(a, b).transpose(0, 1).reshape(a.shape[1], -1).double()
    m_mean, y_mean = m.mean(1), y.mean(1)
    var = ((m - m_mean[:, None]) ** 2).mean(1)
    cov = ((m - m_mean[:, None]) * (y - y_mean[:, None])).mean(1)
    alpha = torch.where(var > 1e-12, cov / var.clamp_min(1e-12), torch.ones_like(var))
    beta = y_mean - alpha * m_mean
    return alpha.float(), beta.float()


def fold_time(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, T, H, W) -> (B, T*C, H, W)`` with channel ``t*C + c``."""
    B, C, T, H, W = x.shape
    return x.transpose(1, 2).reshape(B, T * C, H, W)  # (B, T*C, H, W)


def fold_conv(weight: torch.Tensor, bias: torch.Tensor | None, T: int, T_out: int, mode: str = "mean",
              calib: torch.Tensor | None = None, padding: int = 1):
    """The folded 2D weight and bias of a 3D convolution at ``T`` frames emitting ``T_out`` frames.

    ``calib`` (``(B, C_in, T, H, W)``, the layer's input) is used by ``mode="fit"`` when
    ``T_out < T``; without it the fit falls back to ``"mean"``.
    """
    if mode not in TIME_POOL_MODES:
        raise ValueError(f"time_pool must be one of {TIME_POOL_MODES}, got {mode!r}")
    P = frame_matrix(T, T_out, mode)
    w2d, b2d = toeplitz_weight(weight, bias, T, P, padding)
    if T_out < T and mode == "fit" and calib is not None:
        y = F.conv3d(calib, weight, bias, padding=padding)  # (B, C_out, T, H, W)
        alpha, beta = fit_pair_max(y)
        C_out = weight.shape[0]
        w2d = w2d * alpha.repeat(T_out)[:, None, None, None]
        base = b2d if b2d is not None else torch.zeros(T_out * C_out)
        b2d = base * alpha.repeat(T_out) + beta.repeat(T_out)
    return w2d, b2d
