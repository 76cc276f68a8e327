"""Winograd on the (2+1)D-separable convolutions: 1x3x3 (spatial) and 3x1x1 (temporal) Conv3d."""
import pytest
import torch
import torch.nn as nn

import lightvid
from lightvid.accel import winograd as W
from lightvid.errors import UserError


def _rel_err(out, ref):
    return ((out.double() - ref.double()).abs().max() / ref.double().abs().max()).item()


# (kernel, tile, input shape (B, C, T, H, W), padding, bias); odd sizes leave partial tiles
CASES = [
    ((1, 3, 3), (1, 2, 2), (2, 5, 3, 9, 11), (0, 1, 1), True),
    ((1, 3, 3), (1, 4, 4), (2, 5, 3, 9, 11), (0, 1, 1), False),
    ((1, 3, 3), (1, 4, 4), (1, 4, 2, 13, 6), 0, True),  # no padding
    ((1, 3, 3), (1, 2, 2), (1, 3, 4, 7, 10), (1, 2, 0), False),  # padding on the kernel-1 dimension too
    ((3, 1, 1), (2, 1, 1), (2, 6, 7, 5, 4), (1, 0, 0), True),
    ((3, 1, 1), (4, 1, 1), (2, 6, 9, 5, 3), (1, 0, 0), False),
    ((3, 1, 1), (4, 1, 1), (1, 4, 6, 3, 3), 0, True),
    ((3, 1, 1), (2, 1, 1), (1, 3, 5, 4, 6), (2, 1, 0), True),
    ((3, 3, 1), (2, 4, 1), (1, 3, 7, 6, 5), (1, 1, 0), True),  # any 3/1 mix
]


@pytest.mark.parametrize("kernel,tile,shape,padding,bias", CASES)
@pytest.mark.parametrize("dtype,tol2,tol4", [(torch.float64, 1e-12, 1e-12), (torch.float32, 1e-5, 1e-4)])
def test_separable_tiles_match_direct(kernel, tile, shape, padding, bias, dtype, tol2, tol4):
    torch.manual_seed(0)
    conv = nn.Conv3d(shape[1], 7, kernel, padding=padding, bias=bias)
    x = torch.randn(shape)
    with torch.no_grad():
        ref = conv.double()(x.double())
        conv.to(dtype)
        wino = W.from_conv(conv, tile)
        # the fast path runs fp32 only; float64 checks the transforms themselves through winograd_conv
        out = wino(x) if dtype == torch.float32 else W.winograd_conv(
            x.double(), wino.transformed_weight(), conv.bias, conv.padding, wino.tile)
    assert out.shape == ref.shape
    assert _rel_err(out, ref) <= (tol4 if 4 in tile else tol2)


def test_separable_tile_helpers():
    assert W.supports(nn.Conv3d(4, 4, (1, 3, 3), padding=(0, 1, 1)))
    assert W.supports(nn.Conv3d(4, 4, (3, 1, 1), padding=(1, 0, 0), bias=False))
    assert W.candidate_tiles((1, 3, 3)) == [(1, 2, 2), (1, 4, 4)]
    assert W.candidate_tiles((3, 1, 1)) == [(2, 1, 1), (4, 1, 1)]
    assert W.candidate_tiles(3) == [(2, 2, 2), (4, 2, 2), (2, 4, 4), (4, 4, 4)]
    assert W.tile_sizes(4, (1, 3, 3)) == (1, 4, 4) and W.tile_sizes(2, (3, 1, 1)) == (2, 1, 1)
    assert W.tile_name((1, 4, 4)) == "F(1x4x4,1x3x3)" and W.tile_name((4, 1, 1)) == "F(4x1x1,3x1x1)"
    assert W.tile_name((2, 2)) == "F(2x2,3x3)"
    with pytest.raises(UserError, match="1x3x3"):
        W.tile_sizes((2, 2, 2), (1, 3, 3))  # a 3-tap tile on the kernel-1 dimension
    with pytest.raises(UserError):
        W.tile_sizes((1, 4, 1), (1, 3, 3))
    with pytest.raises(UserError):
        W.winograd_matrices(2, r=1)
    assert W.from_conv(nn.Conv3d(2, 2, (1, 3, 3)), 4).tile == (1, 4, 4)
    assert "F(4x1x1,3x1x1)" in repr(W.from_conv(nn.Conv3d(2, 2, (3, 1, 1)), 4))


def test_separable_filter_transform_shape():
    conv = W.from_conv(nn.Conv3d(5, 6, (1, 3, 3)), (1, 4, 4))
    assert conv.transformed_weight().shape == (36, 5, 6)  # P = 1*6*6 positions
    conv = W.from_conv(nn.Conv3d(5, 6, (3, 1, 1)), (2, 1, 1))
    assert conv.transformed_weight().shape == (4, 5, 6)


@pytest.mark.parametrize("kernel,padding", [((1, 3, 3), (0, 1, 1)), ((3, 1, 1), (1, 0, 0)), ((3, 3, 3), (1, 1, 1))])
def test_chunked_and_threaded_paths_agree(two_threads, monkeypatch, kernel, padding):
    torch.manual_seed(1)
    conv = nn.Conv3d(8, 16, kernel, padding=padding)
    x = torch.randn(3, 8, 6, 10, 9)
    with torch.no_grad():
        ref = conv(x)
        for chunk, threaded in ((1, True), (1, False), (1 << 30, True)):
            monkeypatch.setattr(W, "CHUNK_BYTES", chunk)
            monkeypatch.setattr(W, "THREADED", threaded)
            for tile in W.candidate_tiles(kernel):
                assert _rel_err(W.from_conv(conv, tile)(x), ref) < 1e-4


def _small_r2plus1d():
    torch.manual_seed(0)
    model = lightvid.create_model("r2plus1d_18", num_classes=5, width_mult=0.125).eval()
    with torch.no_grad():  # non-trivial BN statistics, so folded biases are not all zero
        for m in model.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return model


def test_accelerate_r2plus1d_auto_choices(capsys):
    model = _small_r2plus1d()
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        ref = model(x)
    eligible = [n for n, m in model.named_modules() if W.supports(m)]
    kernels = {tuple(m.kernel_size) for m in model.modules() if W.supports(m)}
    assert kernels == {(1, 3, 3), (3, 1, 1)}  # R(2+1)D-18 has no 3x3x3 layer
    lightvid.accelerate(model, x, algo="auto", repeats=1)
    printed = capsys.readouterr().out
    choices = model.winograd_choices
    assert [c[0] for c in choices] == eligible and len(choices) >= 20
    allowed = {"direct"} | {f"winograd {W.tile_name(t)}" for k in kernels for t in W.candidate_tiles(k)}
    for name, choice, direct_ms, wino_ms in choices:
        assert name in printed and choice in allowed
        assert (choice == "direct") == (direct_ms <= wino_ms)  # never keeps the slower path
        module = model.get_submodule(name)
        assert isinstance(module, W.DirectConv3d if choice == "direct" else W.WinogradConv3d)
    with torch.no_grad():
        assert torch.allclose(model(x), ref, atol=1e-4, rtol=1e-4)


def test_accelerate_r2plus1d_forced_tiles():
    model = _small_r2plus1d()
    x = torch.randn(1, 3, 8, 24, 24)
    with torch.no_grad():
        ref = model(x)
    n_eligible = sum(W.supports(m) for m in model.modules())
    lightvid.accelerate(model, x, algo="winograd", tile=(1, 4, 4))  # spatial layers only
    spatial = [m for m in model.modules() if isinstance(m, W.WinogradConv3d)]
    assert spatial and all(m.tile == (1, 4, 4) for m in spatial)
    lightvid.accelerate(model, x, algo="winograd", tile=4)  # the rest: every 3x1x1 layer gets F(4x1x1)
    wino = [m for m in model.modules() if isinstance(m, W.WinogradConv3d)]
    assert len(wino) == n_eligible and {m.tile for m in wino} == {(1, 4, 4), (4, 1, 1)}
    with torch.no_grad():
        assert torch.allclose(model(x), ref, atol=1e-4, rtol=1e-4)
    with pytest.raises(UserError, match="fits none"):
        lightvid.accelerate(_small_r2plus1d(), x, algo="winograd", tile=(2, 2, 2))


def test_optimize_r2plus1d_with_winograd():
    """BN folded into the separable convs (so they carry a bias), then the hybrid choice on them."""
    model = _small_r2plus1d()
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        ref = model(x)
    opt = lightvid.optimize(model, precision="fp32", winograd=True, onednn_graph=False, example_input=x, lower=False)
    n_choices = sum(1 for m in opt.model.modules() if isinstance(m, (W.WinogradConv3d, W.DirectConv3d)))
    assert n_choices == sum(W.supports(m) for m in model.modules())
    assert opt.report["winograd_layers"] == sum(isinstance(m, W.WinogradConv3d) for m in opt.model.modules())
    assert torch.allclose(opt(x), ref, atol=1e-4, rtol=1e-4)


def test_bench_backends_offers_winograd_for_r2plus1d():
    from lightvid.accel.compare import paths_for

    model = lightvid.create_model("r2plus1d_18", num_classes=5, width_mult=0.125)
    assert "lightvid torch fp32 + Winograd" in [p[0] for p in paths_for(model, int8=False, compile=False)]


@pytest.mark.parametrize("kernel,tile,padding", [((1, 3), (1, 4), (0, 1)), ((3, 1), (2, 1), (1, 0))])
def test_separable_conv2d(kernel, tile, padding):
    torch.manual_seed(2)
    conv = nn.Conv2d(5, 6, kernel, padding=padding)
    x = torch.randn(2, 5, 9, 7)
    assert W.supports(conv)
    with torch.no_grad():
        ref = conv.double()(x.double())
        out = W.from_conv(conv.float(), tile)(x)
    assert isinstance(W.from_conv(conv, tile), W.WinogradConv2d) and out.shape == ref.shape
    assert _rel_err(out, ref) <= 1e-4
