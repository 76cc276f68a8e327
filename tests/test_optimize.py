"""optimize(): BN folding is exact, precisions resolve, outputs agree with fp32."""
import pytest
import torch
import torch.nn as nn

import lightvid
from lightvid.accel import optimize as O
from lightvid.errors import UserError
from lightvid.precision import has_native_bf16, resolve_precision


def _randomize_bn(model):
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def test_fold_batchnorms_exact_r2plus1d():
    torch.manual_seed(0)
    model = lightvid.create_model("r2plus1d_18", num_classes=5, width_mult=0.25).eval()
    _randomize_bn(model)
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        ref = model(x)
    n_bn = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    opt = lightvid.optimize(model, precision="fp32")
    assert opt.report["folded_bn"] == n_bn > 0
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in opt.model.modules())
    out = opt(x)
    assert out.dtype == torch.float32
    assert torch.allclose(out, ref, atol=1e-4, rtol=1e-4)
    # the original model is untouched
    assert sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()) == n_bn


def test_sequential_fallback_folds():
    class Untraceable(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU())

        def forward(self, x):
            if x.sum() > 1e9:  # data-dependent control flow: fx cannot trace this
                return x
            return self.body(x)

    model = Untraceable().eval()
    _randomize_bn(model)
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        ref = model(x)
    assert O.fold_batchnorms(model) == 1
    with torch.no_grad():
        assert torch.allclose(model(x), ref, atol=1e-5)


def test_bf16_agrees_with_fp32():
    torch.manual_seed(0)
    model = lightvid.create_model("c3d", num_classes=4, width_mult=0.125).eval()
    x = torch.randn(4, 3, 16, 32, 32)
    with torch.no_grad():
        ref = model(x)
    opt = lightvid.optimize(model, precision="bf16", allow_slow=True)  # bf16 even where it is not native
    assert opt.report["precision"] == "bf16"
    assert next(opt.model.parameters()).dtype == torch.bfloat16
    out = opt(x)
    assert out.dtype == torch.float32
    assert ((out - ref).abs().max() / ref.abs().max()).item() < 0.05


def test_winograd_option_and_precision_resolution():
    model = lightvid.create_model("c3d", num_classes=4, width_mult=0.125).eval()
    x = torch.randn(1, 3, 16, 32, 32)
    with torch.no_grad():
        ref = model(x)
    opt = lightvid.optimize(model, precision="fp32", winograd=True, example_input=x)
    assert torch.allclose(opt(x), ref, atol=1e-4, rtol=1e-4)
    assert resolve_precision("auto") == ("bf16" if has_native_bf16() else "fp32")
    with pytest.raises(UserError):
        resolve_precision("fp8")
    with pytest.raises(UserError):
        lightvid.optimize(model, precision="bf16", winograd=True, example_input=x)
    with pytest.raises(UserError):
        lightvid.optimize(model, winograd=True, precision="fp32")  # no example input
