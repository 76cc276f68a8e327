"""lightvid.ops against brute-force per-sample references written from torchvision's documented
semantics (plain Python loops over boxes, bins and samples), and torch.autograd.gradcheck."""
import math

import pytest
import torch

import lightvid.ops.roi as roi_module
from lightvid.ops import batched_nms, box_iou, nms, roi_align, roi_align_3d, roi_pool


def _bilinear(img, y, x):
    h, w = img.shape[-2:]
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return torch.zeros(img.shape[0], dtype=img.dtype)
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= h - 1:
        y_high = y_low = h - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= w - 1:
        x_high = x_low = w - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1 - ly, 1 - lx
    return (hy * hx * img[:, y_low, x_low] + hy * lx * img[:, y_low, x_high]
            + ly * hx * img[:, y_high, x_low] + ly * lx * img[:, y_high, x_high])


def ref_roi_align(inp, rois, ph, pw, scale, sampling_ratio, aligned):
    out = torch.zeros(len(rois), inp.shape[1], ph, pw, dtype=inp.dtype)
    off = 0.5 if aligned else 0.0
    for k, (b, x1, y1, x2, y2) in enumerate(rois.tolist()):
        img = inp[int(b)]
        sx, sy, ex, ey = x1 * scale - off, y1 * scale - off, x2 * scale - off, y2 * scale - off
        rw, rh = ex - sx, ey - sy
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bh, bw = rh / ph, rw / pw
        gh = sampling_ratio if sampling_ratio > 0 else math.ceil(rh / ph)
        gw = sampling_ratio if sampling_ratio > 0 else math.ceil(rw / pw)
        count = max(gh * gw, 1)
        for i in range(ph):
            for j in range(pw):
                acc = torch.zeros(inp.shape[1], dtype=inp.dtype)
                for iy in range(gh):
                    y = sy + i * bh + (iy + 0.5) * bh / gh
                    for ix in range(gw):
                        x = sx + j * bw + (ix + 0.5) * bw / gw
                        acc = acc + _bilinear(img, y, x)
                out[k, :, i, j] = acc / count
    return out


def _c_round(v):
    return math.floor(v + 0.5) if v >= 0 else -math.floor(-v + 0.5)


def ref_roi_pool(inp, rois, ph, pw, scale):
    h, w = inp.shape[-2:]
    out = torch.zeros(len(rois), inp.shape[1], ph, pw, dtype=inp.dtype)
    for k, (b, x1, y1, x2, y2) in enumerate(rois.tolist()):
        sx, sy, ex, ey = (_c_round(v * scale) for v in (x1, y1, x2, y2))
        rw, rh = max(ex - sx + 1, 1), max(ey - sy + 1, 1)
        for i in range(ph):
            for j in range(pw):
                hs = min(max(math.floor(i * rh / ph) + sy, 0), h)
                he = min(max(math.ceil((i + 1) * rh / ph) + sy, 0), h)
                ws = min(max(math.floor(j * rw / pw) + sx, 0), w)
                we = min(max(math.ceil((j + 1) * rw / pw) + sx, 0), w)
                if he > hs and we > ws:
                    out[k, :, i, j] = inp[int(b), :, hs:he, ws:we].amax(dim=(1, 2))
    return out


def _random_rois(gen, n, k, h, w, scale, dtype, outside=True):
    b = torch.randint(0, n, (k,), generator=gen).to(dtype)
    lo = -3.0 if outside else 0.0
    x1 = torch.rand(k, generator=gen, dtype=dtype) * (w / scale + 2 * abs(lo)) + lo
    y1 = torch.rand(k, generator=gen, dtype=dtype) * (h / scale + 2 * abs(lo)) + lo
    bw = torch.rand(k, generator=gen, dtype=dtype) * w / scale * 0.8
    bh = torch.rand(k, generator=gen, dtype=dtype) * h / scale * 0.8
    return torch.stack([b, x1, y1, x1 + bw, y1 + bh], dim=1)


def _force_path(monkeypatch, path):
    """Make roi_align take one implementation: the separable matmuls, or grid_sample at the sampling
    points (which serves fixed sampling ratios only)."""
    grid_sample = path == "grid_sample"
    monkeypatch.setattr(roi_module, "_bin_centres_are_cheaper", lambda ratio, *_: grid_sample and ratio > 0)


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("path, sampling_ratio", [("matmul", -1), ("matmul", 1), ("matmul", 2),
                                                  ("grid_sample", 1), ("grid_sample", 2)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_roi_align_matches_reference(aligned, path, sampling_ratio, dtype, monkeypatch):
    _force_path(monkeypatch, path)
    gen = torch.Generator().manual_seed(0)
    inp = torch.randn(2, 3, 11, 13, generator=gen, dtype=dtype)
    rois = _random_rois(gen, 2, 12, 11, 13, 0.5, dtype)
    rois[0] = torch.tensor([1, 4.0, 4.0, 4.0, 4.0], dtype=dtype)  # a degenerate box
    out = roi_align(inp, rois, (3, 4), spatial_scale=0.5, sampling_ratio=sampling_ratio, aligned=aligned)
    ref = ref_roi_align(inp, rois, 3, 4, 0.5, sampling_ratio, aligned)
    assert out.shape == (12, 3, 3, 4) and out.dtype == dtype
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("path", ["matmul", "grid_sample"])
def test_roi_align_on_one_image_equals_its_rows_of_a_batch(path, monkeypatch):
    _force_path(monkeypatch, path)
    gen = torch.Generator().manual_seed(6)
    inp = torch.randn(2, 3, 11, 13, generator=gen, dtype=torch.float64)
    rois = _random_rois(gen, 2, 12, 11, 13, 0.5, torch.float64)
    mine = rois[:, 0] == 1
    alone = torch.cat([torch.zeros_like(rois[mine, :1]), rois[mine, 1:]], dim=1)
    torch.testing.assert_close(roi_align(inp[1:], alone, 3, 0.5, 1, True), roi_align(inp, rois, 3, 0.5, 1, True)[mine])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_roi_pool_matches_reference(dtype):
    gen = torch.Generator().manual_seed(1)
    inp = torch.randn(3, 4, 10, 12, generator=gen, dtype=dtype)
    rois = _random_rois(gen, 3, 20, 10, 12, 0.25, dtype)
    out = roi_pool(inp, rois, (2, 3), spatial_scale=0.25)
    ref = ref_roi_pool(inp, rois, 2, 3, 0.25)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    assert (out == 0).any()  # some boxes lie partly outside: empty bins give 0


def test_box_list_equals_tensor_form():
    gen = torch.Generator().manual_seed(2)
    inp = torch.randn(2, 2, 8, 8, generator=gen)
    a, b = torch.tensor([[1.0, 1, 6, 5]]), torch.tensor([[0.0, 2, 7, 7], [2, 2, 4, 3]])
    rois = torch.tensor([[0, 1.0, 1, 6, 5], [1, 0, 2, 7, 7], [1, 2, 2, 4, 3]])
    torch.testing.assert_close(roi_align(inp, [a, b], 2), roi_align(inp, rois, 2))
    torch.testing.assert_close(roi_pool(inp, [a, b], 2), roi_pool(inp, rois, 2))
    with pytest.raises(ValueError, match="Tensor\\[K, 5\\]"):
        roi_align(inp, torch.zeros(3, 4), 2)


@pytest.mark.parametrize("path", ["matmul", "grid_sample"])
def test_roi_ops_gradcheck(path, monkeypatch):
    _force_path(monkeypatch, path)
    gen = torch.Generator().manual_seed(3)
    inp = torch.randn(2, 2, 6, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 0.5, 1.0, 9.0, 8.0], [1, 2.3, 0.2, 5.1, 4.4], [1, -1.0, -1.0, 13.0, 11.0]],
                        dtype=torch.float64)
    for aligned in (False, True):
        if path == "matmul":
            assert torch.autograd.gradcheck(lambda x: roi_align(x, rois, (2, 3), 0.5, -1, aligned), (inp,))
        for ratio in (1, 2):
            assert torch.autograd.gradcheck(lambda x: roi_align(x, rois, 3, 0.5, ratio, aligned), (inp,))
    if path == "grid_sample":
        return  # roi_pool and roi_align_3d (adaptive sampling) take no grid_sample path
    assert torch.autograd.gradcheck(lambda x: roi_pool(x, rois, (2, 3), 0.5), (inp,))
    clip = torch.randn(2, 2, 3, 5, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    for pool in ("avg", "max", None):
        assert torch.autograd.gradcheck(lambda x: roi_align_3d(x, rois, 2, 0.5, temporal_pool=pool), (clip,))


def test_roi_align_3d_is_per_frame_roi_align():
    gen = torch.Generator().manual_seed(4)
    clip = torch.randn(2, 3, 4, 9, 9, generator=gen)
    rois = _random_rois(gen, 2, 5, 9, 9, 1.0, torch.float32, outside=False)
    kept = roi_align_3d(clip, rois, 2, temporal_pool=None)
    assert kept.shape == (5, 3, 4, 2, 2)
    for t in range(4):
        torch.testing.assert_close(kept[:, :, t], roi_align(clip[:, :, t], rois, 2, aligned=True))
    torch.testing.assert_close(roi_align_3d(clip, rois, 2), kept.mean(2))
    torch.testing.assert_close(roi_align_3d(clip, rois, 2, temporal_pool="max"), kept.amax(2))


def _ref_nms(boxes, scores, thr):
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
    keep = []
    for i in order:
        if all(box_iou(boxes[i:i + 1], boxes[j:j + 1]).item() <= thr for j in keep):
            keep.append(i)
    return keep


def test_box_iou_and_nms():
    a = torch.tensor([[0.0, 0, 2, 2], [1, 1, 3, 3]])
    iou = box_iou(a, a)
    torch.testing.assert_close(iou, torch.tensor([[1.0, 1 / 7], [1 / 7, 1.0]]))
    gen = torch.Generator().manual_seed(5)
    xy = torch.rand(60, 2, generator=gen) * 20
    boxes = torch.cat([xy, xy + 3 + torch.rand(60, 2, generator=gen) * 6], dim=1)
    scores = torch.rand(60, generator=gen)
    for thr in (0.1, 0.3, 0.7):
        assert nms(boxes, scores, thr).tolist() == _ref_nms(boxes, scores, thr)
    labels = torch.randint(0, 3, (60,), generator=gen)
    kept = batched_nms(boxes, scores, labels, 0.3).tolist()
    expected = sorted((i for c in range(3) for i in [int(torch.nonzero(labels == c)[j])
                       for j in _ref_nms(boxes[labels == c], scores[labels == c], 0.3)]),
                      key=lambda i: -float(scores[i]))
    assert kept == expected
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).numel() == 0
