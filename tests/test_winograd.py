"""Winograd convolution: exactness against the direct convolution, caching, hybrid choice."""
import pytest
import torch
import torch.nn as nn

import lightvid
from lightvid.accel import winograd as W
from lightvid.analysis.summary import summarize
from lightvid.errors import UserError


def _rel_err(out, ref):
    return ((out.double() - ref).abs().max() / ref.abs().max()).item()


@pytest.mark.parametrize("d,tile,shape,padding,tol", [
    (2, 2, (2, 5, 9, 11), 1, 1e-5),
    (2, 2, (1, 3, 8, 8), (2, 0), 1e-5),
    (2, 4, (2, 5, 13, 10), 1, 1e-4),
    (3, 2, (2, 4, 5, 7, 9), 1, 1e-5),
    (3, 2, (1, 3, 6, 6, 6), 0, 1e-5),
    (3, 2, (3, 6, 4, 10, 10), (1, 2, 0), 1e-5),
    (3, (4, 2, 2), (2, 5, 7, 9, 6), 1, 1e-4),  # mixed tiles, partial tiles in every dimension
    (3, (2, 4, 4), (1, 4, 4, 10, 13), (1, 0, 2), 1e-4),
    (3, 4, (1, 3, 6, 9, 9), 1, 1e-4),
    (2, (4, 2), (1, 3, 9, 7), 1, 1e-4),
])
def test_matches_direct_fp64(d, tile, shape, padding, tol):
    torch.manual_seed(0)
    conv = (nn.Conv2d if d == 2 else nn.Conv3d)(shape[1], 7, 3, padding=padding)
    x = torch.randn(shape)
    with torch.no_grad():
        ref = conv.double()(x.double())
        conv.float()
        out = W.from_conv(conv, tile)(x)
    assert out.shape == ref.shape
    assert _rel_err(out, ref) <= tol


def test_filter_transform_cached_and_invalidated():
    conv = W.from_conv(nn.Conv2d(4, 6, 3, padding=1))
    u1 = conv.transformed_weight()
    assert conv.transformed_weight() is u1  # computed once
    x = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        conv.weight.mul_(2)  # in-place change bumps the version counter
        out = conv(x)
        ref = nn.functional.conv2d(x, conv.weight, conv.bias, padding=1)
    assert conv.transformed_weight() is not u1
    assert torch.allclose(out, ref, atol=1e-5, rtol=1e-4)


def test_grad_and_autocast_fall_back_to_direct():
    conv = W.from_conv(nn.Conv3d(2, 3, 3, padding=1))
    x = torch.randn(1, 2, 4, 6, 6, requires_grad=True)
    conv(x).sum().backward()  # autograd goes through the direct path
    assert x.grad is not None and conv.weight.grad is not None


def test_unsupported_layers_rejected():
    assert not W.supports(nn.Conv2d(3, 3, 3, stride=2))
    assert not W.supports(nn.Conv3d(4, 4, 3, groups=2))
    assert not W.supports(nn.Conv3d(3, 3, (1, 3, 5)))  # 5 taps
    assert not W.supports(nn.Conv3d(3, 3, 1))  # no 3-tap dimension
    assert not W.supports(nn.Conv3d(3, 3, (1, 3, 3), stride=(1, 2, 2)))
    with pytest.raises(UserError):
        W.from_conv(nn.Conv2d(3, 3, 5))
    with pytest.raises(UserError):
        W.winograd_matrices(3)
    with pytest.raises(UserError, match="3-tuple"):
        W.from_conv(nn.Conv3d(3, 3, 3), (2, 4))
    assert W.tile_name((4, 2, 2)) == "F(4x2x2,3x3x3)"


def test_accelerate_c3d_keeps_outputs_and_macs(capsys):
    torch.manual_seed(0)
    model = lightvid.create_model("c3d", num_classes=5, width_mult=0.25).eval()
    x = torch.randn(2, 3, 16, 32, 32)
    with torch.no_grad():
        ref = model(x)
    macs = summarize(model, (3, 16, 32, 32)).macs
    forced = lightvid.accelerate(model, x, algo="winograd")
    n_wino = sum(isinstance(m, W.WinogradConv3d) for m in forced.modules())
    assert n_wino == 8
    with torch.no_grad():
        assert torch.allclose(forced(x), ref, atol=1e-4, rtol=1e-4)
    assert summarize(forced, (3, 16, 32, 32)).macs == macs  # still counted as convolutions


def test_accelerate_auto_prints_choice_per_layer(capsys):
    model = lightvid.create_model("c3d", num_classes=5, width_mult=0.125).eval()
    x = torch.randn(1, 3, 16, 32, 32)
    with torch.no_grad():
        ref = model(x)
    out_model = lightvid.accelerate(model, x, algo="auto", repeats=1)
    printed = capsys.readouterr().out
    assert len(out_model.winograd_choices) == 8
    for name, choice, direct_ms, wino_ms in out_model.winograd_choices:
        assert name in printed
        assert choice in ["direct"] + [f"winograd {W.tile_name(t)}" for t in W.candidate_tiles(3)]
        assert (choice == "direct") == (direct_ms <= wino_ms)
    with torch.no_grad():
        assert torch.allclose(out_model(x), ref, atol=1e-4, rtol=1e-4)
    with pytest.raises(UserError):
        lightvid.accelerate(model, x, algo="fft")


def test_accelerate_max_error_rules_out_inaccurate_tiles(capsys):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(4, 8, 3, padding=1), nn.ReLU(), nn.Conv3d(8, 8, 3, padding=1))
    x = torch.randn(2, 4, 8, 12, 12)
    # a bound below fp32 rounding: no Winograd tile qualifies, every layer stays direct
    lightvid.accelerate(model, x, algo="auto", repeats=1, max_error=1e-12)
    assert [c[1] for c in model.winograd_choices] == ["direct", "direct"]
    assert "err" in capsys.readouterr().out
    assert all(isinstance(m, W.DirectConv3d) for m in (model[0], model[2]))


def test_accelerate_forced_tile():
    model = nn.Sequential(nn.Conv3d(4, 8, 3, padding=1))
    x = torch.randn(1, 4, 8, 8, 8)
    with torch.no_grad():
        ref = model(x)
    lightvid.accelerate(model, x, algo="winograd", tile=(4, 2, 2))
    assert model[0].tile == (4, 2, 2) and model.winograd_choices[0][1] == "winograd F(4x2x2,3x3x3)"
    with torch.no_grad():
        assert _rel_err(model(x), ref.double()) < 1e-4


def test_threaded_inference_mode_then_no_grad(two_threads, monkeypatch):
    """Worker threads carry the caller's inference mode; cached workspaces made under
    inference_mode must not break a later no_grad call (and back)."""
    monkeypatch.setattr(W, "CHUNK_BYTES", 1)  # one chunk per (sample, row of tiles)
    conv = nn.Conv3d(4, 8, 3, padding=1)
    wino = W.from_conv(conv)
    x = torch.randn(4, 4, 6, 10, 10)
    with torch.no_grad():
        ref = conv(x)
    for mode in (torch.inference_mode, torch.no_grad, torch.inference_mode):
        with mode():
            assert torch.allclose(wino(x), ref, atol=1e-5, rtol=1e-4)


def test_accelerate_2d_model(capsys):
    """The hybrid choice on an image network: 2D tiles F(2x2) and F(4x4) are the candidates."""
    torch.manual_seed(0)
    model = lightvid.create_model("resnet18_cifar", num_classes=10, width_mult=0.25).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
    lightvid.accelerate(model, x, algo="auto", repeats=1)
    labels = {c[1] for c in model.winograd_choices}
    replaced = sum(isinstance(m, (W.WinogradConv2d, W.DirectConv2d)) for m in model.modules())
    assert replaced == len(model.winograd_choices) > 10  # every 3x3 stride-1 conv got a choice
    assert labels <= {"direct", "winograd F(2x2,3x3)", "winograd F(4x4,3x3)"}
    with torch.no_grad():
        assert torch.allclose(model(x), ref, atol=1e-4, rtol=1e-4)


def test_release_scratch_drops_grown_buffers(monkeypatch):
    monkeypatch.setattr(W, "THREADED", False)  # chunks on this thread, so its buffers can be inspected
    conv = W.from_conv(nn.Conv3d(4, 8, 3, padding=1))
    with torch.no_grad():
        conv(torch.randn(2, 4, 8, 16, 16))
        big = sum(b.numel() for b in W._SCRATCH.bufs.values())
        conv(torch.randn(1, 4, 4, 6, 6))
        assert sum(b.numel() for b in W._SCRATCH.bufs.values()) == big  # kept: they only grow
        W.release_scratch()
        conv(torch.randn(1, 4, 4, 6, 6))
    assert 0 < sum(b.numel() for b in W._SCRATCH.bufs.values()) < big


def test_concurrent_calls_from_threads_keep_their_inputs():
    """Two threads calling one Winograd module at once (a server's worker pool, a batch split
    over threads) each get their own input's result: the padded workspace is per thread."""
    from concurrent.futures import ThreadPoolExecutor

    torch.manual_seed(0)
    conv = nn.Conv3d(8, 8, (1, 3, 3), padding=(0, 1, 1))
    wino = W.from_conv(conv, (1, 4, 4))
    xs = [torch.randn(2, 8, 4, 24, 24) for _ in range(2)]
    with torch.no_grad():
        refs = [conv(x) for x in xs]

    def run(i):
        torch.set_num_threads(1)  # chunks on the calling thread, as in a single-threaded worker
        with torch.inference_mode():
            return max((wino(xs[i]) - refs[i]).abs().max().item() for _ in range(30))

    with ThreadPoolExecutor(2) as pool:
        errors = list(pool.map(run, [0, 1] * 4))
    assert max(errors) < 1e-4


def test_workspaces_of_ended_threads_are_let_go():
    """A thread per call (as some servers run) must not leave a padded-input buffer per thread
    behind in the module: the next thread's first call drops those of threads that have ended."""
    import threading

    wino = W.from_conv(nn.Conv3d(4, 4, (1, 3, 3), padding=(0, 1, 1)), (1, 2, 2))
    x = torch.randn(1, 4, 2, 8, 8)

    def call():
        with torch.no_grad():
            wino(x)

    for _ in range(3):
        t = threading.Thread(target=call)
        t.start()
        t.join()
    call()
    assert list(wino._ws) == [threading.get_ident()]
