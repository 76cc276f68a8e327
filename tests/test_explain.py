"""lightvid explain: Grad-CAM against a hand computation, the surrogate on a known answer, object masks, CLI."""
import json

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from test_timeline import make_checkpoint

import lightvid
from lightvid.analysis.explain import (
    DEFAULT_MIN_SCALE,
    deepvid_surrogate,
    grad_cam,
    mass_on_mask,
    pick_layer,
    randomized_copy,
    rank_correlation,
    spatial_layers,
)
from lightvid.cli import main
from lightvid.data.synth import object_masks, render_clip


def test_object_masks_follow_the_object_and_leave_the_clip_unchanged():
    a = render_clip("right", np.random.default_rng([3, 1, 5]), 8, 32)
    masks = []
    b = render_clip("right", np.random.default_rng([3, 1, 5]), 8, 32, masks)
    assert np.array_equal(a, b) and len(masks) == 8
    m = object_masks(3, "val", 5, "right", 8, 32)
    assert np.array_equal(m, np.stack(masks)) and m.min() >= 0 and m.max() <= 1
    xs = [(mk * np.arange(32)[None]).sum() / mk.sum() for mk in m]  # centroid x per frame
    assert all(x1 > x0 for x0, x1 in zip(xs, xs[1:]))
    down = object_masks(3, "val", 6, "down", 8, 32)
    ys = [(mk * np.arange(32)[:, None]).sum() / mk.sum() for mk in down]
    assert all(y1 > y0 for y0, y1 in zip(ys, ys[1:]))


def test_grad_cam_equals_the_hand_computation():
    torch.manual_seed(0)
    model = lightvid.create_model("r3d_10", width_mult=0.125, num_classes=4).eval()
    x = torch.randn(1, 3, 8, 32, 32)
    name = pick_layer(model, x, min_scale=0.0)
    assert name == "layer4"  # the last module whose output still has space (global_pool is 1x1x1)
    acts = {}
    h = dict(model.named_modules())[name].register_forward_hook(lambda m, i, o: acts.setdefault("a", o))
    out = model(x)
    h.remove()
    a = acts["a"]
    (g,) = torch.autograd.grad(out[0, 2], a)
    cam = F.relu((g.mean((2, 3, 4), keepdim=True) * a).sum(1, keepdim=True))  # (1, 1, t, h, w)
    cam = F.interpolate(cam, size=(8, 32, 32), mode="trilinear", align_corners=False)[0, 0].clamp_min(0)
    want = (cam / cam.max()).detach().numpy() if cam.max() > 0 else cam.detach().numpy()
    got = grad_cam(model, x, 2, name, method="gradcam")
    assert got.shape == (8, 32, 32)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_hirescam_equals_the_hand_computation_and_gradcam_before_a_global_pool():
    torch.manual_seed(0)
    model = lightvid.create_model("r3d_10", width_mult=0.125, num_classes=4).eval()
    x = torch.randn(1, 3, 8, 32, 32)
    mods = dict(model.named_modules())
    acts = {}
    hooks = [mods[n].register_forward_hook(lambda m, i, o, n=n: acts.setdefault(n, o)) for n in ("layer2", "layer4")]
    out = model(x)
    for h in hooks:
        h.remove()
    (g,) = torch.autograd.grad(out[0, 1], acts["layer2"])
    cam = F.relu((g * acts["layer2"]).sum(1, keepdim=True))  # (1, 1, t, h, w): each position its own gradient
    cam = F.interpolate(cam, size=(8, 32, 32), mode="trilinear", align_corners=False)[0, 0].clamp_min(0)
    want = (cam / cam.max()).detach().numpy()
    hires = grad_cam(model, x, 1, "layer2", method="hirescam")
    np.testing.assert_allclose(hires, want, atol=1e-5)
    assert np.abs(hires - grad_cam(model, x, 1, "layer2", method="gradcam")).max() > 0.05  # mid-network: differ
    # layer4 feeds a global average pool and a linear layer: the gradient is the same at every position,
    # so HiResCAM and Grad-CAM coincide there (Draelos and Carin's equivalence)
    np.testing.assert_allclose(grad_cam(model, x, 1, "layer4", method="hirescam"),
                               grad_cam(model, x, 1, "layer4", method="gradcam"),
                               atol=1e-5)
    with pytest.raises(lightvid.errors.UserError, match="--cam"):
        grad_cam(model, x, 1, "layer4", method="scorecam")


def side_ratio(model, x, name):
    shape = dict(spatial_layers(model, x))[name]
    return min(shape[-2] / x.shape[-2], shape[-1] / x.shape[-1])


@pytest.mark.parametrize("model_name, shape, kwargs, scale, want", [
    ("plain3d_4", (1, 3, 8, 32, 32), {}, 0.25, "features.10"),  # 4x8x8: the deepest map with >= 1/4 of the side
    ("plain3d_4", (1, 3, 8, 64, 64), {"img_size": 64}, 0.25, "features.10"),  # the rule is relative: same layer
    ("plain3d_4", (1, 3, 8, 32, 32), {}, 0.5, "features.6"),
    ("plain3d_4", (1, 3, 8, 32, 32), {}, 0.0, "features"),  # Grad-CAM's original choice: the last spatial map
    ("r3d_10", (1, 3, 8, 32, 32), {"width_mult": 0.125}, 0.25, "layer2"),
    ("r2plus1d_18", (1, 3, 8, 64, 64), {"width_mult": 0.25}, 0.25, "layer2"),
    ("resnet18", (1, 3, 64, 64), {"width_mult": 0.25}, 0.25, "layer1"),  # 2D: the stem pools to 1/4
    ("resnet18", (1, 3, 64, 64), {"width_mult": 0.25}, 0.125, "layer2"),
])
def test_default_layer_is_the_deepest_keeping_a_share_of_the_input_side(model_name, shape, kwargs, scale, want):
    torch.manual_seed(0)
    model = lightvid.create_model(model_name, num_classes=3, **kwargs).eval()
    x = torch.randn(shape)
    assert pick_layer(model, x, min_scale=scale) == want
    assert side_ratio(model, x, want) >= scale
    names = [n for n, _ in spatial_layers(model, x)]
    deeper = names[len(names) - 1 - names[::-1].index(want) + 1:]  # every module that runs after it
    assert all(side_ratio(model, x, n) < scale or dict(spatial_layers(model, x))[n][2:] == (1,) * (len(shape) - 2)
               or names.count(n) > 1 for n in deeper if n != want)
    default = pick_layer(model, x)
    assert default == pick_layer(model, x, min_scale=DEFAULT_MIN_SCALE) and side_ratio(model, x, default) >= min(
        DEFAULT_MIN_SCALE, max(side_ratio(model, x, n) for n in names))


class SharedReLU(nn.Module):
    """One ReLU module called after both convolutions (its output is not one tensor); strides as given."""

    def __init__(self, stride1=1, stride2=1):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, stride=stride1, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, stride=stride2, padding=1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.act(self.conv2(self.act(self.conv1(x)))).mean((2, 3)))


def test_default_layer_skips_modules_called_twice_and_falls_back_to_the_finest_map():
    x = torch.randn(1, 3, 32, 32)
    assert pick_layer(SharedReLU(), x, min_scale=0.5) == "conv2"  # act runs last but twice
    coarse = SharedReLU(stride1=8, stride2=2)  # maps 4x4 then 2x2: none keeps half the side, the finest wins
    assert pick_layer(coarse, x, min_scale=0.5) == "conv1" and pick_layer(coarse, x, min_scale=0.0) == "conv2"
    assert grad_cam(coarse, x, 0, "conv1").shape == (1, 32, 32)


def test_grad_cam_2d_model_frames_and_sanity_helpers():
    torch.manual_seed(0)
    model = lightvid.create_model("resnet18_cifar", width_mult=0.25, num_classes=3).eval()
    x = torch.randn(1, 3, 4, 32, 32)
    name = pick_layer(model, x[:, :, 0])
    cam = grad_cam(model, x, 1, name, frames_2d=True)
    assert cam.shape == (4, 32, 32) and cam.max() <= 1 and cam.min() >= 0
    rand = randomized_copy(model)
    assert all(not torch.equal(p, q) for (n, p), (_, q) in zip(model.named_parameters(), rand.named_parameters())
               if p.dim() > 1)
    assert rank_correlation(cam, cam) == pytest.approx(1.0)
    mask = np.zeros_like(cam)
    mask[:, :16] = 1
    assert mass_on_mask(np.ones_like(cam), mask) == pytest.approx(0.5)


class OneCell(nn.Module):
    """Class 0's logit reads only the first time/row/column half of the clip: cell (0, 0, 0) of a 2x2x2 grid."""

    def forward(self, x):
        evidence = x[:, :, :4, :16, :16].mean((1, 2, 3, 4)) * 6
        return torch.stack([evidence, torch.zeros_like(evidence)], 1)


def test_surrogate_finds_the_cell_the_model_reads():
    x = torch.ones(1, 3, 8, 32, 32)
    x[:, :, :4, :16, :16] = 2.0  # above the clip mean: hiding it lowers class 0
    s = deepvid_surrogate(OneCell(), x, 0, grid=(2, 2, 2), samples=120, keep=0.5)
    assert np.unravel_index(np.abs(s.weights).argmax(), s.weights.shape) == (0, 0, 0)
    assert s.weights[0, 0, 0] > 0 and np.abs(s.weights).ravel()[1:].max() < 0.05 * s.weights[0, 0, 0]
    assert s.r2_heldout > 0.95
    heat = s.heatmap((8, 32, 32))
    assert heat.shape == (8, 32, 32) and heat[0, 0, 0] == s.weights[0, 0, 0] and heat[7, 31, 31] == s.weights[1, 1, 1]


def test_explain_cli_writes_overlay_strip_and_json(tiny_synth, tmp_path, capsys):
    ckpt = make_checkpoint(tmp_path)
    video = sorted((tiny_synth / "val").rglob("*.mp4"))[0]
    out = tmp_path / "ex"
    args = ["explain", str(ckpt), str(video), "--out", str(out), "--samples", "40", "--grid", "2x2x2"]
    assert main(args) == 0
    stem = video.stem
    assert (out / f"{stem}.gradcam.gif").read_bytes()[:3] == b"GIF"
    assert (out / f"{stem}.explain.png").read_bytes()[:4] == b"\x89PNG"
    doc = json.loads((out / f"{stem}.explain.json").read_text())
    # the default: HiResCAM at the deepest layer keeping half the input's side (r3d_10 at 32 px: layer1, 16x16)
    assert doc["layer"] == "layer1" and doc["cam"] == "hirescam"
    assert doc["surrogate"]["samples"] == 40 and len(doc["frames"]) == 8
    assert main(args) == 2 and "exists" in capsys.readouterr().err
    assert main(args + ["--force", "--overlay", "mp4", "--no-surrogate", "--class", "up", "--layer", "layer2",
                        "--cam", "gradcam"]) == 0
    doc = json.loads((out / f"{stem}.explain.json").read_text())
    assert doc["layer"] == "layer2" and doc["cam"] == "gradcam" and "surrogate" not in doc
    from lightvid.data.video import probe

    assert probe(out / f"{stem}.gradcam.mp4").frames == 8
    assert main(["explain", str(ckpt), str(tmp_path / "missing.mp4"), "--out", str(out)]) == 2
    assert main(args + ["--force", "--class", "sideways"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert "missing.mp4" in err[0] and "sideways" in err[1]


@pytest.mark.slow
def test_explain_real_kinetics_clip(shared_data, tmp_path, capsys):
    video = sorted((shared_data / "kinetics5" / "predict").glob("*.mp4"))[2]
    ckpt = make_checkpoint(tmp_path, "r2plus1d_18", {"width_mult": 0.25}, size=64, short_side=64,
                           classes=["archery", "bowling", "flying_kite", "high_jump", "marching"])
    assert main(["explain", str(ckpt), str(video), "--out", str(tmp_path / "k"), "--samples", "24"]) == 0
    doc = json.loads((tmp_path / "k" / f"{video.stem}.explain.json").read_text())
    assert doc["class"] in {"archery", "bowling", "flying_kite", "high_jump", "marching"}


def test_explain_image_with_a_2d_model(tmp_path, capsys):
    import cv2

    img = np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "photo.png"), img)
    assert main(["explain", "resnet18_cifar", str(tmp_path / "photo.png"), "--out", str(tmp_path / "ex"),
                 "--width-mult", "0.25", "--num-classes", "3", "--samples", "20", "--grid", "1x2x2"]) == 0
    doc = json.loads((tmp_path / "ex" / "photo.explain.json").read_text())
    assert doc["frames"] == [0] and doc["surrogate"]["grid"] == [1, 2, 2] and doc["class_index"] in (0, 1, 2)
