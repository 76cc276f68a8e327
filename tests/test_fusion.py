"""Convolution + ReLU in one oneDNN call: exact, found only where the ReLU reads nothing else, kept by timing."""
import pytest
import torch
import torch.nn as nn

import lightvid
from lightvid.accel import fusion
from lightvid.accel.lowering import Conv3dAsConv2d, fuse_relus, lower_convs
from lightvid.accel.optimize import fold_batchnorms
from lightvid.accel.winograd import direct_from_conv

pytestmark = pytest.mark.skipif(not fusion.available(), reason="this PyTorch has no oneDNN fused convolution")


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("channels_last", [False, True])
def test_conv_relu_equals_relu_of_conv(dims, channels_last):
    torch.manual_seed(0)
    conv = (nn.Conv2d if dims == 2 else nn.Conv3d)(6, 8, 3, stride=2, padding=1, groups=2).eval()
    x = torch.randn(2, 6, *([9] * dims))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last if dims == 2 else torch.channels_last_3d)
    with torch.no_grad():
        torch.testing.assert_close(fusion.conv_relu(x, conv), torch.relu(conv(x)), atol=1e-5, rtol=1e-5)
        direct = direct_from_conv(conv, torch.contiguous_format)
        torch.testing.assert_close(fusion.ConvReLU(direct)(x), torch.relu(conv(x)), atol=1e-5, rtol=1e-5)
    out = fusion.conv_relu(x, conv)  # with autograd on: the two plain ops, differentiable
    out.sum().backward()
    assert conv.weight.grad is not None


class _SharedReLU(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Conv3d(3, 4, 1), nn.Conv3d(4, 4, 1), nn.Conv3d(4, 4, 1)
        self.relu, self.relu_c = nn.ReLU(), nn.ReLU()

    def forward(self, x):
        y = self.relu(self.b(self.relu(self.a(x))))  # one ReLU module called twice
        z = self.c(y)
        return self.relu_c(z) + z  # the conv output has a second reader


def test_relu_pairs_only_where_the_relu_is_the_sole_reader_and_called_once():
    assert fusion.relu_pairs(_SharedReLU()) == []
    model = lightvid.create_model("r2plus1d_18", num_classes=5, width_mult=0.25).eval()
    fold_batchnorms(model)
    pairs = fusion.relu_pairs(model)
    assert pairs and all(isinstance(model.get_submodule(r), nn.ReLU) for _, r in pairs)


def test_fuse_relus_keeps_the_output_also_on_lowered_convolutions():
    torch.manual_seed(0)
    model = lightvid.create_model("r2plus1d_18", num_classes=5, width_mult=0.25).eval()
    fold_batchnorms(model)
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        ref = model(x)
    pairs = fusion.relu_pairs(model)
    lower_convs(model, x, repeats=1)
    assert fuse_relus(model, pairs) == len(pairs)
    assert any(isinstance(m, Conv3dAsConv2d) and m.relu for m in model.modules())
    assert not any(isinstance(m, nn.ReLU) for _, r in pairs for m in [model.get_submodule(r)])
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref, atol=1e-4, rtol=1e-4)


def test_optimize_keeps_the_fused_model_when_it_times_faster(monkeypatch):
    from lightvid.accel import optimize

    monkeypatch.setattr(optimize, "median_times",
                        lambda fns, x, repeats=3: {k: (0.5 if k.endswith("fused ReLU") else 1.0) for k in fns})
    model = lightvid.create_model("x3d_xs", num_classes=5, width_mult=0.5).eval()
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        ref = model(x)
    opt = lightvid.optimize(model, precision="fp32", example_input=x)
    assert opt.report["fused_relus"] > 0 and "3d, fused ReLU" in opt.report["layout_ms"]
    assert sum(isinstance(m, fusion.ConvReLU) for m in opt.model.modules()) == opt.report["fused_relus"]
    torch.testing.assert_close(opt(x), ref, atol=1e-4, rtol=1e-4)
