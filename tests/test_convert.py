"""Weight transfer: time folding (exact and pooled), (2+1)D factorisation, composition, the CLI."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import lightvid
from lightvid.compress.convert import convert
from lightvid.compress.factorize import compose_2plus1d, factorize_conv3d
from lightvid.compress.fold import fit_pair_max, fold_conv, fold_time
from lightvid.errors import UserError


def rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def c3d_small():
    torch.manual_seed(0)
    return lightvid.create_model("c3d", num_classes=5, width_mult=0.125, img_size=32, fc_width=256).eval()


@pytest.fixture(scope="module")
def mc4(c3d_small):
    return convert(c3d_small, "c3d_mc4", calib=torch.randn(2, 3, 16, 32, 32), time_pool="fit")


def test_mc4_exact_layers_match_conv3d(c3d_small, mc4):
    model, report = mc4
    by = {r.layer: r for r in report}
    for name in ("conv4a", "conv5a"):
        assert by[name].exact and by[name].method == "toeplitz"
        assert by[name].rel_err < 1e-5
        src, dst = getattr(c3d_small, name), getattr(model, name)
        x = torch.randn(2, src.in_channels, 4 if name == "conv4a" else 2, 5, 6)  # (B, C, T, H, W)
        with torch.no_grad():
            assert rel(dst(fold_time(x)), fold_time(src(x))) < 1e-5
    for name in ("conv1", "conv2", "conv3a", "conv3b", "fc6", "fc7", "fc8"):
        assert by[name].exact and by[name].rel_err < 1e-6
    # the copied stages give identical activations up to pool3
    x = torch.randn(1, 3, 16, 32, 32)
    with torch.no_grad():
        a, b = x, x
        for name in ("conv1", "pool1", "conv2", "pool2", "conv3a", "conv3b", "pool3"):
            a = F.relu(getattr(c3d_small, name)(a)) if name.startswith("conv") else getattr(c3d_small, name)(a)
            b = F.relu(getattr(model, name)(b)) if name.startswith("conv") else getattr(model, name)(b)
    assert torch.equal(a, b)


def test_mc4_pooled_layers_are_approximate_and_measured(mc4):
    _, report = mc4
    by = {r.layer: r for r in report}
    for name in ("conv4b", "conv5b"):
        assert not by[name].exact and by[name].method == "fold_pool:fit"
        assert 0 < by[name].rel_err < 2 and 0 < by[name].rel_err_act < 2
    assert by["logits"].method == "end-to-end" and not by["logits"].exact


def test_pooled_fold_is_the_linear_map_of_the_frame_pairs():
    torch.manual_seed(1)
    w, b = torch.randn(6, 4, 3, 3, 3), torch.randn(6)
    x = torch.randn(2, 4, 4, 5, 5)  # (B, C_in, T, H, W)
    y = F.conv3d(x, w, b, padding=1)  # (B, 6, 4, 5, 5)
    for mode, expect in (("mean", (y[:, :, 0::2] + y[:, :, 1::2]) / 2), ("even", y[:, :, 0::2])):
        w2, b2 = fold_conv(w, b, T=4, T_out=2, mode=mode)
        assert rel(F.conv2d(fold_time(x), w2, b2, padding=1), fold_time(expect)) < 1e-5


def test_fit_pair_max_recovers_mean_plus_half_gap():
    a = torch.randn(3, 2, 4, 5, 5)
    b = a + torch.where(torch.rand_like(a) < 0.5, 1.0, -1.0) * torch.tensor([0.5, 2.0]).view(1, 2, 1, 1, 1)
    y = torch.stack([a, b], 3).flatten(2, 3)  # (B, C, 2T, H, W): frames (a0, b0, a1, b1, ...)
    alpha, beta = fit_pair_max(y)
    assert torch.allclose(alpha, torch.ones(2), atol=1e-4)
    assert torch.allclose(beta, torch.tensor([0.25, 1.0]), atol=1e-4)  # max = mean + |a - b| / 2


def test_factorize_exact_when_rank_allows_and_eckart_young_otherwise():
    torch.manual_seed(2)
    w, b = torch.randn(64, 3, 3, 3, 3), torch.randn(64)  # 192 x 27 matrix: rank 27 <= 64 middle channels
    ws, bs, wt, bt, kept = factorize_conv3d(w, b, 64)
    x = torch.randn(2, 3, 5, 7, 7)
    pair = F.conv3d(F.conv3d(x, ws, bs, padding=(0, 1, 1)), wt, bt, padding=(1, 0, 0))
    assert kept > 1 - 1e-9 and rel(pair, F.conv3d(x, w, b, padding=1)) < 1e-5
    w = torch.randn(8, 8, 3, 3, 3)  # 24 x 72, keep 8 of 24 singular values
    ws, bs, wt, bt, kept = factorize_conv3d(w, None, 8)
    wc, _ = compose_2plus1d(ws, bs, wt, bt)
    s = torch.linalg.svdvals(w.permute(0, 2, 1, 3, 4).reshape(24, 72))
    assert abs(rel(wc, w) ** 2 - (1 - kept)) < 1e-5
    assert abs(kept - float((s[:8] ** 2).sum() / (s ** 2).sum())) < 1e-5


def test_c3d_to_2plus1d_and_back(c3d_small):
    model, report = convert(c3d_small, "c3d_2plus1d", calib=torch.randn(1, 3, 16, 32, 32))
    assert {r.method for r in report if r.layer.startswith("conv")} == {"svd"}
    assert all(0 <= r.rel_err < 1.5 for r in report)
    back, report = convert(model, "c3d")  # spatial biases are zero after SVD: composition exact
    assert report[-1].layer == "logits" and report[-1].exact and report[-1].rel_err < 1e-5
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv3d) and m.kernel_size[0] == 1:
                m.bias.normal_()
    _, report = convert(model, "c3d")  # a spatial bias is exact only away from the temporal borders
    assert not report[0].exact and report[0].rel_err > 1e-4


def test_fc_fold_averages_remaining_frames():
    torch.manual_seed(3)
    src = lightvid.create_model("c3d", num_classes=4, width_mult=0.125, num_frames=32, img_size=32, fc_width=64)
    dst, report = convert(src, "c3d_mc5", calib=torch.randn(1, 3, 32, 32, 32))
    fc6 = next(r for r in report if r.layer == "fc6")
    assert fc6.method == "fc_fold" and fc6.rel_err < 1e-5 and dst.fc6.in_features == 2 * src.fc6.in_features


def test_bad_conversions_are_one_line_errors(c3d_small, mc4):
    with pytest.raises(UserError, match="no transfer"):
        convert(c3d_small, "r3d_18")
    with pytest.raises(UserError, match="already time-folded"):
        convert(mc4[0], "c3d")
    with pytest.raises(UserError, match="time_pool"):
        convert(c3d_small, "c3d_mc4", time_pool="max")


def test_convert_command_writes_a_loadable_checkpoint(tmp_path, c3d_small, capsys):
    from lightvid.checkpoint import save_atomic
    from lightvid.compress.cli import convert_command
    from lightvid.run_spec import load_model

    meta = {"model": "c3d", "model_kwargs": {"width_mult": 0.125, "img_size": 32, "fc_width": 256},
            "num_classes": 5, "classes": list("abcde"), "config": {}}
    src = tmp_path / "src.ckpt"
    save_atomic({"lightvid": meta, "state_dict": {f"model.{k}": v for k, v in c3d_small.state_dict().items()}}, src)
    out = tmp_path / "mc5.ckpt"
    assert convert_command([str(src), "--to", "c3d_mc5", "--out", str(out), "--no-data"]) == 0
    text = capsys.readouterr().out
    assert "conv5a" in text and "exact" in text and "approx" in text
    model, meta2 = load_model(out)
    assert meta2["model"] == "c3d_mc5" and meta2["converted_from"]["model"] == "c3d"
    direct, _ = convert(c3d_small, "c3d_mc5")  # same default calibration (seeded random clips)
    x = torch.randn(1, 3, 16, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), direct(x), atol=1e-6)


def test_inflation_report():
    pytest.importorskip("lightvid.compress.inflate")
    src = lightvid.create_model("googlenet_bn", num_classes=4, width_mult=0.25)
    dst, report = convert(src, "i3d", width_mult=0.25, temporal_pad="replicate")
    inflated = [r for r in report if r.method == "inflate"]
    assert len(inflated) > 50 and all(r.exact and r.rel_err < 1e-5 for r in inflated)
    assert report[-1].layer == "logits" and report[-1].rel_err < 1e-4
