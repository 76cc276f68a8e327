"""Fully separable blocks (the light-weight 3D networks review): the weight formula, the factorisation,
and the FSB models."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import lightvid
from lightvid.models.fsb import FullySeparableConv3d, fsb_weight_count, fully_separate


def weights(module):
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Conv3d))


@pytest.mark.parametrize("C,N,k,alpha", [(64, 128, (3, 3, 3), 1.0), (256, 256, (3, 3, 3), 0.5),
                                         (12, 40, (5, 3, 3), 0.25), (7, 9, (3, 5, 1), 2.0)])
def test_weight_count_matches_seed_formula(C, N, k, alpha):
    K, R, S = k
    fsb = FullySeparableConv3d(C, N, k, alpha=alpha, bias=False)
    aN = alpha * N
    assert aN == int(aN)  # the seed's formula, literally, where alpha*N is whole
    assert weights(fsb) == aN * C * K + aN * R * S + aN * N == fsb_weight_count(C, N, k, alpha)
    assert fsb.temporal.kernel_size == (K, 1, 1) and fsb.temporal.out_channels == aN
    assert fsb.spatial.kernel_size == (1, R, S) and fsb.spatial.groups == aN
    assert fsb.pointwise.kernel_size == (1, 1, 1) and fsb.pointwise.out_channels == N


def test_fsb_is_a_structured_3d_convolution():
    """An FSB equals one dense conv whose kernel is W[n,c,k,r,s] = sum_m P[n,m] D[m,r,s] T[m,c,k]."""
    torch.manual_seed(0)
    fsb = FullySeparableConv3d(5, 6, 3, stride=(2, 2, 1), alpha=0.5)
    T = fsb.temporal.weight[:, :, :, 0, 0]  # (M, C, K)
    D = fsb.spatial.weight[:, 0, 0]  # (M, R, S)
    P = fsb.pointwise.weight[:, :, 0, 0, 0]  # (N, M)
    W = torch.einsum("nm,mrs,mck->nckrs", P, D, T)
    x = torch.randn(2, 5, 7, 9, 8)
    y = fsb(x)
    ref = F.conv3d(x, W, fsb.pointwise.bias, stride=(2, 2, 1), padding=1)
    assert y.shape == ref.shape == nn.Conv3d(5, 6, 3, stride=(2, 2, 1), padding=1)(x).shape
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-4)


def test_bad_alpha():
    with pytest.raises(ValueError, match="alpha"):
        FullySeparableConv3d(4, 4, alpha=0)


def dense_3d(model):
    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, nn.Conv3d) and m.groups == 1 and min(m.kernel_size) > 1]


@pytest.mark.parametrize("name,base,replaced,kept", [("fsb_c3d", "c3d", 7, ["conv1"]),
                                                     ("fsb_r3d_18", "r3d_18", 16, ["stem.0"]),
                                                     ("fsb_r3d_50", "r3d_50", 16, ["stem.0"])])
def test_fsb_models_replace_every_3d_conv_but_the_first(name, base, replaced, kept):
    with torch.device("meta"):
        ref = lightvid.create_model(base)
        model = lightvid.create_model(name)
    convs = dense_3d(ref)
    assert len(convs) == replaced + len(kept)
    assert [n for n, _ in dense_3d(model)] == kept
    fsbs = {n: m for n, m in model.named_modules() if isinstance(m, FullySeparableConv3d)}
    assert len(fsbs) == replaced
    # parameters: the base model minus each replaced conv's weights plus the seed's formula
    saved = sum(c.weight.numel() - fsb_weight_count(c.in_channels, c.out_channels, c.kernel_size)
                for n, c in convs if n not in kept)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(ref) - count(model) == saved
    assert model.default_cfg["fsb_alpha"] == 1.0 and "Light-Weight" in model.default_cfg["paper"]


def test_fsb_c3d_golden_figures():
    from lightvid.analysis.summary import build_and_summarize

    with torch.device("meta"):  # shapes only: MACs and parameters without computing
        c3d = build_and_summarize("c3d", (3, 16, 112, 112))
        fsb = build_and_summarize("fsb_c3d", (3, 16, 112, 112))
        half = build_and_summarize("fsb_c3d", (3, 16, 112, 112), alpha=0.5)
    assert c3d.params_features == 27_655_936
    assert fsb.params_features == 4_300_160  # 6.4x fewer feature weights
    assert half.params_features == 2_154_048
    assert fsb.macs == 7_455_995_904 and c3d.macs == 38_548_959_232
    assert fsb.params_head == c3d.params_head


def test_fsb_c3d_trains_a_step():
    torch.manual_seed(0)
    model = lightvid.create_model("fsb_c3d", num_classes=3, width_mult=0.125, alpha=0.5)
    x = torch.randn(2, 3, 16, 32, 32)
    loss = F.cross_entropy(model(x), torch.tensor([0, 2]))
    loss.backward()
    assert model.conv3a.spatial.weight.grad.abs().sum() > 0


def test_fully_separate_needs_a_3d_conv():
    with pytest.raises(ValueError, match="no 3D convolution"):
        lightvid.create_model("fsb_r3d_18", conv_types="2d", width_mult=0.125)
    assert fully_separate(nn.Sequential(nn.Conv3d(3, 4, (1, 3, 3))), 1.0) == 0


def test_fsb_init_preserves_the_signal():
    """Each block starts variance-preserving (temporal, depthwise: 1/sqrt(fan_in); pointwise:
    Kaiming's sqrt(2/fan_in)), so a deep stack without batch norm (fsb_c3d) keeps the
    activation scale of the dense C3D instead of shrinking it ~27x per block."""
    torch.manual_seed(0)
    fsb = FullySeparableConv3d(64, 128, 3)
    for conv, gain in ((fsb.temporal, 1.0), (fsb.spatial, 1.0), (fsb.pointwise, 2.0)):
        fan_in = conv.weight[0].numel()
        expected = (gain / fan_in) ** 0.5
        assert abs(conv.weight.std().item() / expected - 1) < 0.1, conv
    x = torch.randn(2, 3, 16, 32, 32)
    with torch.no_grad():
        dense = lightvid.create_model("c3d", num_classes=4, width_mult=0.125).forward_features(x).std()
        sep = lightvid.create_model("fsb_c3d", num_classes=4, width_mult=0.125).forward_features(x).std()
    assert 0.5 < (sep / dense).item() < 2.0
