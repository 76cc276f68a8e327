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
    opt = lightvid.optimize(model, precision="fp32", winograd=True, onednn_graph=False, example_input=x)
    assert torch.allclose(opt(x), ref, atol=1e-4, rtol=1e-4)
    assert resolve_precision("auto") == ("bf16" if has_native_bf16() else "fp32")
    with pytest.raises(UserError):
        resolve_precision("fp8")
    with pytest.raises(UserError):
        lightvid.optimize(model, precision="bf16", winograd=True, example_input=x)
    with pytest.raises(UserError):
        lightvid.optimize(model, winograd=True, precision="fp32")  # no example input


@pytest.mark.parametrize("contiguous_faster", [True, False])
def test_memory_format_choice_keeps_the_faster_whole_model(monkeypatch, contiguous_faster):
    """On CUDA optimize times channels-last against contiguous memory; the choice is forced here
    through the timer (no GPU needed) and the kept model computes the same either way."""
    torch.manual_seed(0)
    model = lightvid.create_model("ir_csn_50", num_classes=5, width_mult=0.25).eval()
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        ref = model(x)

    def fake_times(fns, x, repeats=3, warmup=1):
        for f in fns.values():
            f(x)  # each candidate really runs
        fast, slow = ("contiguous", "channels-last") if contiguous_faster else ("channels-last", "contiguous")
        return {fast: 0.001, slow: 0.002}

    monkeypatch.setattr(O, "median_times", fake_times)
    monkeypatch.setattr(O, "times_memory_format", lambda device: True)
    opt = O.optimize(model, precision="fp32", onednn_graph=False, example_input=x[:1], lower=False, fuse=False)
    assert opt.report["channels_last"] is (not contiguous_faster) and opt.channels_last is (not contiguous_faster)
    assert opt.report["memory_format_ms"] == ({"contiguous": 1.0, "channels-last": 2.0} if contiguous_faster
                                              else {"channels-last": 1.0, "contiguous": 2.0})
    w = next(m.weight for m in opt.model.modules() if isinstance(m, nn.Conv3d))
    assert w.is_contiguous() is contiguous_faster
    assert opt.prepare(x).is_contiguous() is contiguous_faster
    torch.testing.assert_close(opt(x), ref, rtol=1e-4, atol=1e-4)


def test_memory_format_is_timed_only_on_cuda_and_a_tie_keeps_channels_last(monkeypatch):
    assert O.times_memory_format(torch.device("cuda")) and not O.times_memory_format(torch.device("cpu"))
    model = nn.Sequential(nn.Conv3d(3, 4, 3)).eval()
    O.to_channels_last(model)
    monkeypatch.setattr(O, "median_times", lambda fns, x, **kw: {k: 0.001 for k in fns})
    kept, channels_last, _ = O.choose_memory_format(model, torch.randn(1, 3, 4, 8, 8))
    assert kept is model and channels_last
    report = O.optimize(model, precision="fp32", onednn_graph=False, example_input=torch.randn(1, 3, 4, 8, 8)).report
    assert "memory_format_ms" not in report  # not timed on the CPU
