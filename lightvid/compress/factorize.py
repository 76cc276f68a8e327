"""3D convolution <-> (2+1)D pair (spatial 1xkxk then temporal kx1x1, no non-linearity between).

Tran et al., "A Closer Look at Spatiotemporal Convolutions for Action Recognition", CVPR 2018
(R(2+1)D); the C3D compression document's separable C3D. With no non-linearity between them the pair is the
3D convolution whose weight is ``W[o, i, k, h, w] = sum_m Wt[o, m, k] * Ws[m, i, h, w]``:
reshaped to a ``(C_out*k) x (C_in*kh*kw)`` matrix it is ``A @ B`` with rank at most ``C_mid``.
The least-squares (Frobenius) best pair is the truncated SVD (Eckart-Young); the spatial
bias is set to zero and the temporal bias to the 3D bias, which makes the bias exact at
every frame, temporal borders included (zero padding of a bias-free spatial output is the
spatial convolution of a zero frame). The transfer is exact when ``C_mid >= rank``, e.g.
C3D's conv1 (27 columns, 64 middle channels).
"""
from __future__ import annotations

import math

import torch


@torch.no_grad()
def factorize_conv3d(weight: torch.Tensor, bias: torch.Tensor | None, mid_channels: int,
                     generator: torch.Generator | None = None):
    """SVD split of a ``(C_out, C_in, k, kh, kw)`` weight.

    Returns ``(w_spatial (C_mid, C_in, 1, kh, kw), b_spatial, w_temporal (C_out, C_mid, k, 1, 1),
    b_temporal, kept_energy)``; ``kept_energy`` is the fraction of ``||W||^2`` the pair keeps.
    Middle channels beyond the matrix rank get small random spatial filters and zero temporal
    weights, so the product is unchanged and they still train.
    """
    C_out, C_in, k, kh, kw = weight.shape
    M = weight.permute(0, 2, 1, 3, 4).reshape(C_out * k, C_in * kh * kw).double()  # rows (o, k), cols (i, h, w)
    U, S, Vh = torch.linalg.svd(M, full_matrices=False)
    r = min(mid_channels, S.numel())
    root = S[:r].sqrt()
    A = U[:, :r] * root  # (C_out*k, r)
    B = root[:, None] * Vh[:r]  # (r, C_in*kh*kw)
    w_t = torch.zeros(C_out, k, mid_channels, dtype=torch.float64)
    w_t[:, :, :r] = A.reshape(C_out, k, r)
    w_s = torch.empty(mid_channels, C_in * kh * kw, dtype=torch.float64)
    w_s[:r] = B
    if r < mid_channels:
        std = math.sqrt(2.0 / (C_in * kh * kw)) * 0.1
        w_s[r:] = torch.randn(mid_channels - r, C_in * kh * kw, generator=generator, dtype=torch.float64) * std
    kept = float((S[:r] ** 2).sum() / (S ** 2).sum().clamp_min(1e-30))
    w_spatial = w_s.reshape(mid_channels, C_in, 1, kh, kw).to(weight.dtype)
    w_temporal = w_t.permute(0, 2, 1).reshape(C_out, mid_channels, k, 1, 1).to(weight.dtype)
    b_spatial = torch.zeros(mid_channels, dtype=weight.dtype)
    b_temporal = bias.clone() if bias is not None else torch.zeros(C_out, dtype=weight.dtype)
    return w_spatial, b_spatial, w_temporal, b_temporal, kept


@torch.no_grad()
def compose_2plus1d(w_spatial: torch.Tensor, b_spatial: torch.Tensor | None, w_temporal: torch.Tensor,
                    b_temporal: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The single ``(C_out, C_in, k, kh, kw)`` 3D convolution a (2+1)D pair computes.

    Exact at every frame when the spatial bias is zero; otherwise the spatial bias is carried
    through all ``k`` temporal taps, which is exact away from the temporal borders only.
    """
    ws = w_spatial[:, :, 0]  # (C_mid, C_in, kh, kw)
    wt = w_temporal[:, :, :, 0, 0]  # (C_out, C_mid, k)
    weight = torch.einsum("omk,mihw->oikhw", wt, ws)
    bias = b_temporal.clone() if b_temporal is not None else torch.zeros(wt.shape[0], dtype=ws.dtype)
    if b_spatial is not None:
        bias = bias + torch.einsum("omk,m->o", wt, b_spatial)
    return weight.contiguous(), bias
