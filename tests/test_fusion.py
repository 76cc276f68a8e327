"""Convolution + residual add + ReLU as one oneDNN call: exact, found by torch.fx, used by optimize()."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from benchmark_scripts import load_benchmark

import lightvid
from lightvid.accel.fusion import FusedConv, fuse_conv_pointwise


class Block(nn.Module):
    """relu(bn(conv2(relu(bn(conv1(x))))) + shortcut(x)), the residual block every ResNet has."""

    def __init__(self, c=8, dims=3, shortcut=False, twice=False):
        super().__init__()
        conv = nn.Conv3d if dims == 3 else nn.Conv2d
        self.conv1, self.conv2 = conv(c, c, 3, padding=1), conv(c, c, 3, padding=1)
        self.bn1, self.bn2 = nn.Identity(), nn.Identity()  # as optimize leaves folded batch norms
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = conv(c, c, 1) if shortcut else None
        self.twice = twice

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        if self.twice:  # conv2's output read twice: not fusable
            return self.relu(y + x) + y
        return self.relu(y + (x if self.shortcut is None else self.shortcut(x)))


@pytest.mark.parametrize("add, act", [(True, "relu"), (True, None), (False, "relu"), (False, "swish")])
@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("bias, stride, groups", [(True, 1, 1), (False, 2, 1), (True, 1, 4)])
def test_a_fused_convolution_computes_the_chain(add, act, dims, bias, stride, groups):
    conv = (nn.Conv3d if dims == 3 else nn.Conv2d)(8, 8, 3, stride=stride, padding=1, groups=groups, bias=bias).eval()
    fused = FusedConv(conv, add=add, activation=act)
    x = torch.randn(2, 8, *([5] * dims)) * 3
    with torch.no_grad():
        y = conv(x)
        other = torch.randn_like(y)
        ref = y + other if add else y
        ref = {"relu": torch.relu, "swish": F.silu, None: lambda v: v}[act](ref)
        out = fused(x, other if add else None)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
    fmt = torch.channels_last_3d if dims == 3 else torch.channels_last
    assert out.is_contiguous(memory_format=fmt)


def test_unbatched_input_and_other_dtypes_take_the_plain_path():
    conv = nn.Conv3d(4, 4, 3, padding=1).eval()
    fused = FusedConv(conv, add=True, activation="relu")
    x = torch.randn(4, 3, 5, 5)  # (C, T, H, W)
    other = torch.randn(4, 3, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(fused(x, other), torch.relu(conv(x) + other))
        conv64 = nn.Conv3d(4, 4, 3, padding=1).double().eval()
        x64 = torch.randn(1, 4, 3, 5, 5, dtype=torch.float64)
        torch.testing.assert_close(FusedConv(conv64, add=False, activation="relu")(x64), torch.relu(conv64(x64)))


def test_fuse_finds_the_chains_and_keeps_the_output():
    torch.manual_seed(0)
    model = nn.Sequential(Block(), Block(shortcut=True)).eval()
    x = torch.randn(2, 8, 4, 6, 6)  # batch 2: PyTorch runs these on oneDNN
    with torch.no_grad():
        ref = model(x)
    fused, n = fuse_conv_pointwise(model, x)
    # per block: conv1 -> ReLU, conv2 -> add -> ReLU; the shortcut conv feeds the add, not fused
    assert n == 4 and isinstance(fused, torch.fx.GraphModule)
    kinds = sorted((m.add, m.activation) for m in fused.modules() if isinstance(m, FusedConv))
    assert kinds == [(False, "relu")] * 2 + [(True, "relu")] * 2
    with torch.no_grad():
        torch.testing.assert_close(fused(x), ref, atol=1e-5, rtol=1e-4)
    assert sum(p.numel() for p in fused.parameters()) == sum(p.numel() for p in model.parameters())


def test_an_output_read_twice_is_not_fused_into_its_add():
    model = Block(twice=True).eval()
    x = torch.randn(2, 8, 4, 6, 6)
    with torch.no_grad():
        ref = model(x)
    fused, n = fuse_conv_pointwise(model, x)
    assert n == 1  # conv1 -> ReLU only
    with torch.no_grad():
        torch.testing.assert_close(fused(x), ref, atol=1e-5, rtol=1e-4)


def test_a_convolution_on_pytorchs_reference_kernel_is_left_alone():
    """At batch 1 PyTorch runs these small convolutions on its reference kernel (faster there
    than oneDNN's per-call cost), so fusing them into a oneDNN call is not done."""
    model = Block(c=4).eval()
    x = torch.randn(1, 4, 2, 3, 3)
    assert fuse_conv_pointwise(model, x) == (model, 0)


def test_a_model_that_does_not_trace_or_a_wrong_result_keeps_the_model(monkeypatch):
    class Branchy(Block):
        def forward(self, x):
            return super().forward(x) if x.sum() > 0 else x  # data-dependent: fx cannot trace it

    x = torch.randn(2, 8, 4, 6, 6).abs()
    model = Branchy().eval()
    assert fuse_conv_pointwise(model, x) == (model, 0)
    monkeypatch.setattr(FusedConv, "forward", lambda self, x, other=None: torch.zeros_like(x))  # broken on purpose
    model = Block().eval()
    assert fuse_conv_pointwise(model, x) == (model, 0)


def test_optimize_fuses_with_an_example_input_and_compiles():
    torch.manual_seed(0)
    model = lightvid.create_model("ir_csn_50", num_classes=5, width_mult=0.25).eval()
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        ref = model(x)
    opt = lightvid.optimize(model, precision="fp32", onednn_graph=False, example_input=x, winograd=False)
    n = sum(isinstance(m, FusedConv) for m in opt.model.modules())
    assert opt.report["fused_convs"] == n > 0
    torch.testing.assert_close(opt(x), ref, atol=1e-4, rtol=1e-4)
    off = lightvid.optimize(model, precision="fp32", onednn_graph=False, example_input=x, fuse=False)
    assert off.report["fused_convs"] == 0
    assert lightvid.optimize(model, precision="fp32").report["fused_convs"] == 0  # nothing to check it on
    compiled = torch.compile(opt.model, backend="eager")  # inductor sees the plain chain
    with torch.inference_mode():
        torch.testing.assert_close(compiled(opt.prepare(x)), ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", lightvid.list_models())
def test_every_model_keeps_its_output_fused(name):
    """The zoo sweep: fusion on every registered model (at batch 2, where PyTorch uses oneDNN)."""
    torch.manual_seed(0)
    model = lightvid.create_model(name, num_classes=3, width_mult=0.25).eval()
    cfg = model.default_cfg
    x = torch.randn(2, *(cfg.get("test_input_size") or cfg["input_size"]))
    with torch.no_grad():
        ref = model(x)
    opt = lightvid.optimize(model, precision="fp32", onednn_graph=False, example_input=x, winograd=False, lower=False)
    assert opt.report["fused_convs"] == sum(isinstance(m, FusedConv) for m in opt.model.modules())
    torch.testing.assert_close(opt(x), ref, atol=1e-4 * max(1.0, ref.abs().max().item()), rtol=1e-4)


def test_a_model_returning_several_tensors_is_checked_on_each():
    class TwoHeads(Block):
        def forward(self, x):
            y = super().forward(x)
            return {"logits": y.mean((2, 3, 4)), "map": y}

    model = TwoHeads().eval()
    x = torch.randn(2, 8, 4, 6, 6)
    with torch.no_grad():
        ref = model(x)
    fused, n = fuse_conv_pointwise(model, x)
    assert n == 2
    with torch.no_grad():
        out = fused(x)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)


def test_bench_fusion_runs_and_reports_the_ab(capsys):
    bench = load_benchmark("bench_fusion")
    assert bench.main(["--models", "ir_csn_50", "--batches", "2", "--input", "3x4x32x32", "--width", "0.25",
                       "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    for line in ("one chain", "three operators", "ir_csn_50 batch 2:", "convolutions fused", "fuse=True"):
        assert line in out


def test_a_broadcast_add_takes_the_plain_path():
    conv = nn.Conv3d(4, 6, 3, padding=1).eval()
    fused = FusedConv(conv, add=True, activation="relu")
    x = torch.randn(2, 4, 3, 5, 5)
    bias = torch.randn(1, 6, 1, 1, 1)  # same number of dimensions, broadcast over the rest
    with torch.no_grad():
        torch.testing.assert_close(fused(x, bias), torch.relu(conv(x) + bias))


def test_a_shortcut_added_in_place_computes_the_same_and_leaves_the_input_alone():
    class IntoShortcut(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv3d(8, 8, 3, padding=1)

        def forward(self, x):
            shortcut = x * 2
            shortcut += self.conv(x)
            return torch.relu(shortcut)

    model = IntoShortcut().eval()
    x = torch.randn(2, 8, 4, 6, 6)
    before = x.clone()
    with torch.no_grad():
        ref = model(x)
    fused, n = fuse_conv_pointwise(model, x)
    assert n == 1
    with torch.no_grad():
        torch.testing.assert_close(fused(x), ref, atol=1e-5, rtol=1e-4)
    assert torch.equal(x, before)


def test_a_swish_after_a_convolution_is_fused_and_a_bad_activation_refused():
    model = nn.Sequential(nn.Conv3d(8, 8, 3, padding=1, groups=8), nn.Identity(), nn.SiLU()).eval()
    x = torch.randn(2, 8, 4, 6, 6) * 3
    with torch.no_grad():
        ref = model(x)
    fused, n = fuse_conv_pointwise(model, x)
    assert n == 1 and [m.activation for m in fused.modules() if isinstance(m, FusedConv)] == ["swish"]
    with torch.no_grad():
        torch.testing.assert_close(fused(x), ref, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="activation"):
        FusedConv(nn.Conv3d(2, 2, 1), add=False, activation="gelu")
    with pytest.raises(ValueError, match="after an add"):  # oneDNN takes only a ReLU after its add
        FusedConv(nn.Conv3d(2, 2, 1), add=True, activation="swish")


def test_an_add_followed_by_a_swish_fuses_only_the_add():
    class AddSwish(Block):
        def forward(self, x):
            return F.silu(self.conv1(x) + x)

    model = AddSwish().eval()
    x = torch.randn(2, 8, 4, 6, 6)
    with torch.no_grad():
        ref = model(x)
    fused, n = fuse_conv_pointwise(model, x)
    assert n == 1 and [(m.add, m.activation) for m in fused.modules() if isinstance(m, FusedConv)] == [(True, None)]
    with torch.no_grad():
        torch.testing.assert_close(fused(x), ref, atol=1e-5, rtol=1e-4)
