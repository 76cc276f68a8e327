"""ROI pooling (Fast R-CNN, Girshick ICCV 2015) and ROI align (Mask R-CNN, He et al. ICCV 2017).

Signatures and numerics follow ``torchvision.ops.roi_pool`` / ``roi_align``: ``input`` is
``(N, C, H, W)``; ``boxes`` is a ``Tensor[K, 5]`` of ``(batch_index, x1, y1, x2, y2)`` or a list of
``Tensor[L, 4]`` (one per image); box coordinates are in input-image pixels and ``spatial_scale``
maps them onto the feature map. The output is ``(K, C, PH, PW)``.

Both are vectorised over boxes (no per-box Python loop) and differentiable by autograd:

* ROI align samples ``sampling_ratio`` x ``sampling_ratio`` points per bin (adaptive
  ``ceil(roi_size / output_size)`` when ``sampling_ratio <= 0``), bilinearly, and averages them.
  Bilinear sampling on a regular grid is separable, so each box becomes a ``(PH, H)`` row-weight
  and a ``(PW, W)`` column-weight matrix (built by scatter-adding the two bilinear taps of every
  sample, invalid samples weighted 0), and the pooled map is ``A @ X @ B^T``: two batched matmuls
  per image instead of a four-corner gather per sample. With one sample per bin
  (``sampling_ratio=1``: the bin centre) on a map much larger than the output, the matmuls mostly
  multiply zeros, and ``F.grid_sample`` at the bin centres (one call per image, cost growing with
  boxes x bins rather than boxes x map size) is used instead, up to 8x8 bins: 1.2-10x faster
  forward and 1.1-6x forward + backward on 4x4-64x64 maps, the Siamese tracker's ~200 candidates
  on a 32x32 map included (a 1-thread sweep on the Zen 3 development machine); with more bins or
  with 2 samples per side its backward or its forward was slower, so those keep the matmuls.
  Both give the same numbers.
* ROI pool takes the max over each bin's integer window (``round`` of the scaled box, bin edges
  ``floor``/``ceil``); the max is separable too: a gather + max along W, then along H.

``roi_align_3d`` applies ROI align to every frame of a ``(N, C, T, H, W)`` feature map (one box
per clip, as in AVA-style action detection where boxes come from a key frame) and pools over time.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# Upper bound on the elements of one ROI-pool intermediate; boxes are processed in chunks under it.
_POOL_CHUNK_ELEMENTS = 1 << 25


def _pair(size) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    ph, pw = (int(s) for s in size)
    return ph, pw


def convert_boxes_to_rois(boxes, input: torch.Tensor) -> torch.Tensor:
    """``Tensor[K, 5]`` as is, or a list of ``Tensor[L, 4]`` -> ``Tensor[K, 5]`` (batch index first)."""
    if isinstance(boxes, torch.Tensor):
        if boxes.dim() != 2 or boxes.shape[1] != 5:
            raise ValueError("boxes must be Tensor[K, 5] (batch_index, x1, y1, x2, y2), "
                             f"got shape {tuple(boxes.shape)}")
        return boxes.to(input.dtype)
    if not isinstance(boxes, (list, tuple)):
        raise ValueError(f"boxes must be a Tensor[K, 5] or a list of Tensor[L, 4], got {type(boxes).__name__}")
    parts = []
    for i, b in enumerate(boxes):
        if b.dim() != 2 or b.shape[1] != 4:
            raise ValueError(f"boxes[{i}] must be Tensor[L, 4], got shape {tuple(b.shape)}")
        parts.append(torch.cat([torch.full_like(b[:, :1], i, dtype=input.dtype), b.to(input.dtype)], dim=1))
    if not parts:
        return input.new_zeros((0, 5))
    return torch.cat(parts, dim=0)


def _check_rois(rois: torch.Tensor, input: torch.Tensor) -> torch.Tensor:
    batch = rois[:, 0].long()
    if rois.shape[0] and (batch.min() < 0 or batch.max() >= input.shape[0]):
        raise ValueError(f"box batch indices must lie in [0, {input.shape[0]}), got {batch.min()}..{batch.max()}")
    return batch


def _rois_and_output_size(op: str, input: torch.Tensor, boxes, output_size):
    """The checks ``roi_align`` and ``roi_pool`` open with: ``(rois (K, 5), batch indices (K,), PH, PW)``."""
    if input.dim() != 4:
        raise ValueError(f"{op} expects input (N, C, H, W), got shape {tuple(input.shape)}")
    rois = convert_boxes_to_rois(boxes, input)
    return rois, _check_rois(rois, input), *_pair(output_size)


def _per_image(batch: torch.Tensor, fn) -> torch.Tensor:
    """Run ``fn(image_index, box_indices)`` per image that has boxes; results back in box order."""
    order = torch.argsort(batch, stable=True)
    images, counts = torch.unique_consecutive(batch[order], return_counts=True)
    outs, start = [], 0
    for image, count in zip(images.tolist(), counts.tolist()):
        outs.append(fn(image, order[start:start + count]))
        start += count
    out = torch.cat(outs, dim=0)
    return out[torch.argsort(order)]


def _bilinear_weights(start, bin_size, grid, pooled: int, size: int) -> torch.Tensor:
    """Averaging weights of one axis: ``(K, pooled, size)``; row ``p`` holds the bilinear taps of the
    ``grid`` samples of bin ``p`` divided by ``grid`` (torchvision's sampling and border rules)."""
    k = start.shape[0]
    g = max(int(grid.max().item()) if k else 1, 1)
    steps = torch.arange(g, device=start.device, dtype=start.dtype)
    bins = torch.arange(pooled, device=start.device, dtype=start.dtype)
    grid_f = grid.clamp(min=1).to(start.dtype)[:, None, None]
    coord = (start[:, None, None] + bins[None, :, None] * bin_size[:, None, None]
             + (steps[None, None, :] + 0.5) * bin_size[:, None, None] / grid_f)  # (K, P, G)
    valid = (steps[None, None, :] < grid[:, None, None]) & (coord >= -1.0) & (coord <= size)
    coord = coord.clamp(min=0)
    low = coord.floor().long()
    at_end = low >= size - 1
    low = torch.where(at_end, torch.full_like(low, size - 1), low)
    high = torch.where(at_end, low, low + 1)
    frac = torch.where(at_end, torch.zeros_like(coord), coord - low.to(coord.dtype))
    scale = valid.to(coord.dtype) / grid_f
    weights = coord.new_zeros((k, pooled, size))
    weights = weights.scatter_add(2, low, (1 - frac) * scale).scatter_add(2, high, frac * scale)
    return weights


def _bin_centres_are_cheaper(sampling_ratio: int, ph: int, pw: int, h: int, w: int) -> bool:
    """Whether ``_align_by_grid_sample`` beats the separable matmuls: one sample per bin, at most 8x8 bins
    and at most twice as many bins as map cells. A 1-thread sweep on the Zen 3 development machine (4x4 to
    64x64 maps, 4x4 to 14x14 bins, 128 boxes, 64 channels) found grid_sample faster forward and forward +
    backward there; with 14x14 bins its backward was ~1.6x the matmuls', and with 2x2 samples per bin it
    was slower on detector-sized maps (bench_roi's)."""
    return sampling_ratio == 1 and ph * pw <= min(64, 2 * h * w)


def _align_by_grid_sample(input, batch, x1, y1, roi_w, roi_h, ph: int, pw: int, sampling_ratio: int):
    """ROI align by ``F.grid_sample`` at the ``(PH*S, PW*S)`` sampling points of every box (one call per
    image, its boxes stacked along the grid's height), then an ``S x S`` average: ``(K, C, PH, PW)``.

    ``padding_mode="border"`` is torchvision's rule for samples within one pixel outside the map (they
    take the edge value); samples farther out are weighted 0.
    """
    _, c, h, w = input.shape
    sh, sw = ph * sampling_ratio, pw * sampling_ratio
    steps_y = torch.arange(sh, device=input.device, dtype=input.dtype) + 0.5
    steps_x = torch.arange(sw, device=input.device, dtype=input.dtype) + 0.5
    ys = y1[:, None] + steps_y[None] * (roi_h / sh)[:, None]  # (K, SH) feature-map pixels
    xs = x1[:, None] + steps_x[None] * (roi_w / sw)[:, None]  # (K, SW)
    gy = (ys + 0.5) / h * 2 - 1  # grid_sample's align_corners=False normalisation
    gx = (xs + 0.5) / w * 2 - 1
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)  # (K, SH, SW, 2)
    inside = ((ys >= -1) & (ys <= h))[:, :, None] & ((xs >= -1) & (xs <= w))[:, None, :]  # (K, SH, SW)

    def sample(image: int, boxes_grid: torch.Tensor) -> torch.Tensor:
        g = boxes_grid.reshape(1, -1, sw, 2)  # (1, k*SH, SW, 2)
        out = F.grid_sample(input[image:image + 1], g, mode="bilinear", padding_mode="border", align_corners=False)
        return out.reshape(c, boxes_grid.shape[0], sh, sw).transpose(0, 1)  # (k, C, SH, SW)

    if input.shape[0] == 1:  # one image (the tracker's frame): no grouping of boxes by image
        out = sample(0, grid)
    else:
        out = _per_image(batch, lambda image, idx: sample(image, grid[idx]))
    out = out * inside[:, None].to(input.dtype)  # (K, C, SH, SW)
    return F.avg_pool2d(out, sampling_ratio) if sampling_ratio > 1 else out


def roi_align(input: torch.Tensor, boxes, output_size, spatial_scale: float = 1.0, sampling_ratio: int = -1,
              aligned: bool = False) -> torch.Tensor:
    """ROI align with torchvision's semantics: ``(N, C, H, W)`` x ``K`` boxes -> ``(K, C, PH, PW)``.

    ``aligned=True`` shifts box coordinates by -0.5 pixel (pixel centres at half-integers, the
    Detectron2 convention); ``aligned=False`` keeps the legacy behaviour, including the minimum
    ROI size of 1 feature-map cell.
    """
    rois, batch, ph, pw = _rois_and_output_size("roi_align", input, boxes, output_size)
    _, c, h, w = input.shape
    if rois.shape[0] == 0:
        return input.new_zeros((0, c, ph, pw))
    offset = 0.5 if aligned else 0.0
    x1, y1 = rois[:, 1] * spatial_scale - offset, rois[:, 2] * spatial_scale - offset
    x2, y2 = rois[:, 3] * spatial_scale - offset, rois[:, 4] * spatial_scale - offset
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    if _bin_centres_are_cheaper(sampling_ratio, ph, pw, h, w):
        return _align_by_grid_sample(input, batch, x1, y1, roi_w, roi_h, ph, pw, sampling_ratio)
    bin_h, bin_w = roi_h / ph, roi_w / pw
    if sampling_ratio > 0:
        grid_h = grid_w = torch.full_like(batch, sampling_ratio)
    else:
        grid_h = torch.ceil(roi_h / ph).long().clamp(min=0)
        grid_w = torch.ceil(roi_w / pw).long().clamp(min=0)
    rows = _bilinear_weights(y1, bin_h, grid_h, ph, h)  # (K, PH, H)
    cols = _bilinear_weights(x1, bin_w, grid_w, pw, w)  # (K, PW, W)

    def pool_image(image: int, idx: torch.Tensor) -> torch.Tensor:
        row_pooled = torch.einsum("kph,chw->kcpw", rows[idx], input[image])  # (k, C, PH, W)
        return torch.einsum("kcpw,kqw->kcpq", row_pooled, cols[idx])  # (k, C, PH, PW)

    return _per_image(batch, pool_image)


def _round_half_away(x: torch.Tensor) -> torch.Tensor:
    """C's ``round`` (half away from zero); ``torch.round`` rounds half to even."""
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def _pool_windows(start, roi_size, pooled: int, size: int):
    """Integer bin windows of one axis: indices ``(K, P, L)`` (clamped), their validity and bin emptiness."""
    bins = torch.arange(pooled, device=start.device, dtype=roi_size.dtype)
    bin_size = roi_size[:, None] / pooled
    lo = (torch.floor(bins[None] * bin_size) + start[:, None]).clamp(0, size).long()  # (K, P)
    hi = (torch.ceil((bins[None] + 1) * bin_size) + start[:, None]).clamp(0, size).long()
    length = max(int((hi - lo).max().item()), 1)
    idx = lo[..., None] + torch.arange(length, device=start.device)  # (K, P, L)
    valid = idx < hi[..., None]
    return idx.clamp(max=size - 1), valid, hi <= lo


def roi_pool(input: torch.Tensor, boxes, output_size, spatial_scale: float = 1.0) -> torch.Tensor:
    """Fast R-CNN ROI max pooling with torchvision's semantics: ``(N, C, H, W)`` -> ``(K, C, PH, PW)``.

    The scaled box is rounded to whole cells (both ends inclusive); bin ``p`` spans cells
    ``floor(p * size / P)`` to ``ceil((p + 1) * size / P)``; an empty bin gives 0.
    """
    rois, batch, ph, pw = _rois_and_output_size("roi_pool", input, boxes, output_size)
    _, c, h, w = input.shape
    if rois.shape[0] == 0:
        return input.new_zeros((0, c, ph, pw))
    x1, y1, x2, y2 = (_round_half_away(rois[:, i] * spatial_scale) for i in range(1, 5))
    roi_w = (x2 - x1 + 1).clamp(min=1)
    roi_h = (y2 - y1 + 1).clamp(min=1)
    row_idx, row_valid, row_empty = _pool_windows(y1, roi_h, ph, h)  # (K, PH, Lh)
    col_idx, col_valid, col_empty = _pool_windows(x1, roi_w, pw, w)  # (K, PW, Lw)
    empty = row_empty[:, :, None] | col_empty[:, None, :]  # (K, PH, PW)
    neg_inf = torch.tensor(float("-inf"), dtype=input.dtype, device=input.device)
    per_box = c * h * pw * col_idx.shape[2] + c * ph * row_idx.shape[2] * pw
    chunk = max(1, _POOL_CHUNK_ELEMENTS // max(per_box, 1))

    def pool_image(image: int, idx: torch.Tensor) -> torch.Tensor:
        outs = []
        for part in idx.split(chunk):
            k = part.numel()
            ci, cv = col_idx[part], col_valid[part]  # (k, PW, Lw)
            cols = input[image].index_select(2, ci.flatten()).view(c, h, k, pw, -1)  # (C, H, k, PW, Lw)
            cols = torch.where(cv[None, None], cols, neg_inf).max(dim=-1).values  # (C, H, k, PW)
            cols = cols.permute(2, 1, 0, 3)  # (k, H, C, PW)
            ri, rv = row_idx[part], row_valid[part]  # (k, PH, Lh)
            gather_idx = ri.reshape(k, -1, 1, 1).expand(-1, -1, c, pw)  # (k, PH*Lh, C, PW)
            rows = torch.gather(cols, 1, gather_idx).view(k, ph, -1, c, pw)  # (k, PH, Lh, C, PW)
            rows = torch.where(rv[:, :, :, None, None], rows, neg_inf).max(dim=2).values  # (k, PH, C, PW)
            out = rows.permute(0, 2, 1, 3)  # (k, C, PH, PW)
            outs.append(torch.where(empty[part][:, None], torch.zeros_like(out), out))
        return torch.cat(outs, dim=0)

    return _per_image(batch, pool_image)


def roi_align_3d(input: torch.Tensor, boxes, output_size, spatial_scale: float = 1.0, sampling_ratio: int = -1,
                 aligned: bool = True, temporal_pool: str | None = "avg") -> torch.Tensor:
    """ROI align on every frame of a ``(N, C, T, H, W)`` feature map with one box per clip.

    ``temporal_pool``: ``"avg"`` or ``"max"`` -> ``(K, C, PH, PW)``; ``None`` keeps time ->
    ``(K, C, T, PH, PW)``.
    """
    if input.dim() != 5:
        raise ValueError(f"roi_align_3d expects input (N, C, T, H, W), got shape {tuple(input.shape)}")
    if temporal_pool not in ("avg", "max", None):
        raise ValueError(f"temporal_pool must be 'avg', 'max' or None, got {temporal_pool!r}")
    n, c, t, h, w = input.shape
    frames = input.reshape(n, c * t, h, w)  # (N, C*T, H, W)
    out = roi_align(frames, boxes, output_size, spatial_scale, sampling_ratio, aligned)
    out = out.view(out.shape[0], c, t, *out.shape[2:])  # (K, C, T, PH, PW)
    if temporal_pool == "avg":
        return out.mean(dim=2)
    if temporal_pool == "max":
        return out.amax(dim=2)
    return out

