"""Factorised 3D convolutions as 2D ones: exact on every eligible shape, chosen per layer, used by optimize()."""
import pytest
import torch
import torch.nn as nn
from benchmark_scripts import load_benchmark

import lightvid
from lightvid.accel.lowering import Conv3dAsConv2d, lower_convs, lowering_mode, onednn_convs
from lightvid.accel.winograd import DirectConv3d, direct_from_conv

CASES = [  # (in, out, kernel, stride, padding, dilation, groups)
    (3, 8, (1, 3, 3), (1, 2, 2), (0, 1, 1), 1, 1),  # a stem
    (6, 6, (1, 3, 3), (1, 1, 1), (0, 1, 1), (1, 2, 2), 6),  # depthwise, dilated
    (8, 4, (3, 1, 1), (1, 1, 1), (1, 0, 0), 1, 1),  # the temporal half of (2+1)D
    (6, 6, (5, 1, 1), (1, 1, 1), (2, 0, 0), 1, 6),  # X3D's depthwise temporal stem
    (4, 8, (3, 1, 1), (2, 1, 1), (1, 0, 0), (2, 1, 1), 2),  # strided, dilated, grouped in time
    (8, 5, (1, 1, 1), (1, 1, 1), (0, 0, 0), 1, 1),  # pointwise
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[2])) + f"-s{c[3][0]}{c[3][1]}-g{c[6]}")
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("bias", [True, False])
def test_lowered_equals_the_3d_convolution(case, layout, bias):
    ci, co, k, s, p, d, g = case
    torch.manual_seed(0)
    conv = nn.Conv3d(ci, co, k, s, p, d, groups=g, bias=bias).eval()
    x = torch.randn(2, ci, 7, 9, 11)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last_3d)
    lowered = Conv3dAsConv2d(conv)
    with torch.no_grad():
        ref, out = conv(x), lowered(x)
    assert out.shape == ref.shape
    assert out.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # unbatched (C, T, H, W), as nn.Conv3d takes it
        torch.testing.assert_close(lowered(x[0]), conv(x[0]), atol=1e-5, rtol=1e-5)


def test_lowering_mode_says_which_convolutions_are_eligible():
    assert lowering_mode(nn.Conv3d(4, 4, (1, 3, 3), padding=(0, 1, 1))) == "frames"
    assert lowering_mode(nn.Conv3d(4, 4, 1)) == "frames"
    assert lowering_mode(DirectConv3d(4, 4, (3, 1, 1), padding=(1, 0, 0))) == "time"
    assert lowering_mode(nn.Conv3d(4, 4, 3, padding=1)) is None  # 3x3x3 spans both
    assert lowering_mode(nn.Conv3d(4, 4, (1, 3, 3), stride=(2, 1, 1))) is None  # strided across frames
    assert lowering_mode(nn.Conv3d(4, 4, (1, 3, 3), padding=(1, 1, 1))) is None  # padded across frames
    assert lowering_mode(nn.Conv3d(4, 4, (3, 1, 1), padding=(1, 0, 0), padding_mode="reflect")) is None
    assert lowering_mode(nn.Conv2d(4, 4, 3)) is None
    with pytest.raises(ValueError, match="not a 1xkxk or kx1x1"):
        Conv3dAsConv2d(nn.Conv3d(4, 4, 3))


def test_lower_convs_keeps_the_model_output_and_reports_every_eligible_layer():
    torch.manual_seed(0)
    model = lightvid.create_model("r2plus1d_18", num_classes=5, width_mult=0.25).eval()
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        ref = model(x)
    eligible = {n for n, m in model.named_modules() if lowering_mode(m) is not None}
    choices = lower_convs(model, x, repeats=1)
    assert {c[0] for c in choices} == eligible
    for name, choice, ms3d, ms2d in choices:
        module = model.get_submodule(name)
        assert isinstance(module, Conv3dAsConv2d) == (choice != "direct")
        assert choice == "direct" or (choice == module.mode and ms2d < ms3d)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref, atol=1e-4, rtol=1e-4)


def test_optimize_lowers_with_an_example_input_and_not_without():
    torch.manual_seed(0)
    model = lightvid.create_model("x3d_xs", num_classes=5, width_mult=0.5).eval()
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        ref = model(x)
    plain = lightvid.optimize(model, precision="fp32")
    assert plain.report["lowered_layers"] == 0
    assert not hasattr(plain.model, "lowering_choices")
    timed = lightvid.optimize(model, precision="fp32", onednn_graph=False, example_input=x)
    choices = timed.model.lowering_choices
    assert choices and timed.report["lowered_layers"] == sum(c[1] != "direct" for c in choices)
    torch.testing.assert_close(timed(x), ref, atol=1e-4, rtol=1e-4)
    off = lightvid.optimize(model, precision="fp32", onednn_graph=False, example_input=x, lower=False)
    assert off.report["lowered_layers"] == 0


def _fake_times(monkeypatch, **whole_ms):
    """Every timing of the layout step forced: per layer the 2D form and oneDNN win; whole models
    take ``whole_ms`` (by variant name; absent ones 9 s)."""
    from lightvid.accel import lowering

    def fake(fns, x, repeats=3):
        if set(fns) == {"3d", "2d"}:
            return {"3d": 2.0, "2d": 1.0}
        if set(fns) == {"default", "onednn"}:
            return {"default": 2.0, "onednn": 1.0}
        return {k: whole_ms.get(k, 9e3) / 1e3 for k in fns}

    monkeypatch.setattr(lowering, "median_times", fake)


CL = "channels-last inputs, oneDNN"


@pytest.mark.parametrize("times, kept", [
    ({"3d": 1.0, CL: 2.0, "lowered": 3.0}, "3d"),
    ({"3d": 2.0, CL: 3.0, "lowered": 1.0}, "lowered"),
    ({"3d": 2.0, CL: 1.0, CL + ", lowered": 3.0}, CL),
    ({"3d": 3.0, CL: 2.0, CL + ", lowered": 1.0}, CL + ", lowered"),
])
def test_optimize_keeps_each_layout_change_only_if_the_whole_model_is_faster(monkeypatch, times, kept):
    _fake_times(monkeypatch, **times)
    model = lightvid.create_model("r2plus1d_18", num_classes=5, width_mult=0.25).eval()
    x = torch.randn(1, 3, 4, 32, 32)
    n_eligible = sum(lowering_mode(m) is not None for m in model.modules())
    with torch.no_grad():
        ref = model(x)
    opt = lightvid.optimize(model, precision="fp32", onednn_graph=False, example_input=x, winograd=False)
    assert set(opt.report["layout_ms"]) == set(times)
    n_lowered = sum(isinstance(m, Conv3dAsConv2d) for m in opt.model.modules())
    n_onednn = sum(getattr(m, "onednn", False) for m in opt.model.modules())
    n_cl = sum(isinstance(m, DirectConv3d) for m in opt.model.modules())
    assert n_lowered == opt.report["lowered_layers"] == (n_eligible if "lowered" in kept else 0)
    assert {c[1] for c in opt.model.lowering_choices} == ({"frames", "time"} if "lowered" in kept else {"direct"})
    assert opt.report["channels_last_inputs"] == (n_cl > 0) == ("channels-last" in kept)
    assert opt.report["onednn_layers"] == n_onednn and (n_onednn > 0) == ("oneDNN" in kept)
    torch.testing.assert_close(opt(x), ref, atol=1e-4, rtol=1e-4)


def test_ties_keep_the_model_as_it_was(monkeypatch):
    _fake_times(monkeypatch, **{"3d": 1.0, CL: 1.0, "channels-last inputs": 1.0})
    model = nn.Sequential(nn.Conv3d(3, 4, 3, padding=1), nn.ReLU()).eval()  # nothing to lower
    opt = lightvid.optimize(model, precision="fp32", onednn_graph=False, example_input=torch.randn(1, 3, 4, 8, 8),
                            winograd=False, fuse=False)
    assert len(opt.report["layout_ms"]) == 2 and "3d" in opt.report["layout_ms"]
    assert type(opt.model[0]) is nn.Conv3d and not opt.report["channels_last_inputs"]
    assert opt.report["onednn_layers"] == 0


@pytest.mark.parametrize("case", CASES + [(4, 6, 3, (1, 2, 2), 1, 1, 1), (8, 8, 3, 1, (2, 1, 1), (2, 1, 1), 8)],
                         ids=lambda c: "x".join(map(str, c[2] if isinstance(c[2], tuple) else (c[2],))) + f"-g{c[6]}")
@pytest.mark.parametrize("bias", [True, False])
def test_a_convolution_forced_to_onednn_computes_the_same(case, bias):
    cin, cout, k, stride, padding, dilation, groups = case
    conv = nn.Conv3d(cin, cout, k, stride=stride, padding=padding, dilation=dilation, groups=groups, bias=bias).eval()
    fast = direct_from_conv(conv, torch.channels_last_3d)
    fast.onednn = True
    x = torch.randn(1, cin, 5, 9, 9)
    with torch.no_grad():
        ref, out = conv(x), fast(x)
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
        assert out.is_contiguous(memory_format=torch.channels_last_3d)
        torch.testing.assert_close(fast(x[0]), ref[0], atol=1e-5, rtol=1e-4)  # unbatched input: PyTorch's own path


def test_onednn_convs_times_only_what_pytorch_would_not_run_on_onednn(monkeypatch):
    from lightvid.accel import lowering

    timed = []

    def fake(fns, x, repeats=3):
        timed.append(tuple(x.shape))
        return {"default": 2.0, "onednn": 1.0}

    monkeypatch.setattr(lowering, "median_times", fake)
    small = nn.Conv3d(8, 8, 1)  # batch 1, 8x2x4x4: PyTorch's reference kernel
    big = nn.Conv3d(8, 8, 3, padding=1, groups=8)  # depthwise: PyTorch already picks oneDNN
    model = nn.Sequential(small, nn.ReLU(), big).eval()
    x = torch.randn(1, 8, 2, 4, 4)
    with torch.no_grad():
        ref = model(x)
    choices = onednn_convs(model, x)
    assert [c[:2] for c in choices] == [("0", "onednn")] and len(timed) == 1
    assert model[0].onednn and type(model[2]) is nn.Conv3d
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref, atol=1e-5, rtol=1e-4)


def test_a_onednn_result_that_disagrees_is_never_used(monkeypatch):
    from lightvid.accel import winograd

    monkeypatch.setattr(winograd.torch, "mkldnn_convolution", lambda *a: torch.zeros(1), raising=False)
    model = nn.Sequential(nn.Conv3d(8, 8, 1)).eval()
    choices = onednn_convs(model, torch.randn(1, 8, 2, 4, 4))
    assert [c[1] for c in choices] == ["default"] and type(model[0]) is nn.Conv3d
    assert all(t != t for t in choices[0][2:])  # NaN: not timed


def test_a_model_without_conv3d_skips_the_layout_step():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()).eval()
    opt = lightvid.optimize(model, precision="fp32", onednn_graph=False, example_input=torch.randn(1, 3, 8, 8),
                            winograd=False)
    assert "layout_ms" not in opt.report and not hasattr(opt.model, "lowering_choices")
    assert opt.report["lowered_layers"] == 0 and not opt.report["channels_last_inputs"]


def test_bench_lowering_runs_and_reports_the_ab(capsys):
    bench = load_benchmark("bench_lowering")
    assert bench.main(["--models", "x3d_xs", "--input", "3x2x32x32", "--rounds", "1", "--force-cl"]) == 0
    out = capsys.readouterr().out
    for line in ("x3d_xs batch 1:", "optimize (lower=False)", "optimize (chosen)", "lower=False + channels-last inputs",
                 "stem_t", "whole-model ms of the variants"):
        assert line in out


def test_a_2d_form_that_disagrees_is_never_used(monkeypatch):
    from lightvid.accel import lowering

    monkeypatch.setattr(lowering.Conv3dAsConv2d, "forward", lambda self, x: torch.zeros(1))  # broken on purpose
    model = nn.Sequential(nn.Conv3d(3, 4, (1, 3, 3), padding=(0, 1, 1))).eval()
    choices = lower_convs(model, torch.randn(1, 3, 2, 8, 8))
    assert [c[1] for c in choices] == ["direct"] and type(model[0]) is nn.Conv3d
    assert all(t != t for t in choices[0][2:])  # NaN: not timed


@pytest.mark.parametrize("name", lightvid.list_models())
def test_every_video_model_keeps_its_output_with_every_layout_change(name, monkeypatch):
    """The zoo sweep: every Conv3d on channels-last input, oneDNN wherever PyTorch would not use
    it, every eligible layer as 2D (timings forced), and the optimised model still computes the
    model's logits."""
    from lightvid.accel import lowering

    def fake(fns, x, repeats=3):
        if set(fns) == {"3d", "2d"}:
            return {"3d": 2.0, "2d": 1.0}
        if set(fns) == {"default", "onednn"}:
            return {"default": 2.0, "onednn": 1.0}
        return {k: 1.0 / (1 + k.count(",") + ("channels-last" in k)) for k in fns}  # every change faster

    monkeypatch.setattr(lowering, "median_times", fake)
    torch.manual_seed(0)
    model = lightvid.create_model(name, num_classes=3, width_mult=0.25).eval()
    cfg = model.default_cfg
    if len(cfg["input_size"]) != 4:
        pytest.skip("an image model: no 3D convolution to lower")
    x = torch.randn(1, *(cfg.get("test_input_size") or cfg["input_size"]))
    with torch.no_grad():
        ref = model(x)
    opt = lightvid.optimize(model, precision="fp32", onednn_graph=False, example_input=x, winograd=False)
    eligible = sum(c[1] != "direct" for c in opt.model.lowering_choices)
    assert opt.report["lowered_layers"] == eligible
    assert sum(isinstance(m, Conv3dAsConv2d) for m in opt.model.modules()) == eligible
    assert opt.report["onednn_layers"] == sum(getattr(m, "onednn", False) for m in opt.model.modules())
    torch.testing.assert_close(opt(x), ref, atol=1e-4 * max(1.0, ref.abs().max().item()), rtol=1e-4)


def test_a_convolution_forced_to_onednn_still_compiles():
    """torch.compile cannot trace torch.mkldnn_convolution on fake tensors: it compiles the
    plain convolution instead (inductor chooses its kernels itself)."""
    conv = direct_from_conv(nn.Conv3d(4, 6, (3, 1, 1), padding=(1, 0, 0)).eval(), torch.channels_last_3d)
    conv.onednn = True
    x = torch.randn(1, 4, 4, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(conv, backend="eager")(x), conv(x))


def test_a_copy_that_would_run_the_same_is_not_timed(monkeypatch):
    """Channels-last input everywhere and nothing for oneDNN (a depthwise kernel, which PyTorch
    already runs there): no whole-model timing, the model as it was."""
    _fake_times(monkeypatch)
    model = nn.Sequential(nn.Conv3d(8, 8, 3, padding=1, groups=8), nn.ReLU()).eval()
    opt = lightvid.optimize(model, precision="fp32", onednn_graph=False, example_input=torch.randn(1, 8, 4, 8, 8),
                            winograd=False, fuse=False)
    assert opt.report["layout_ms"] == {} and type(opt.model[0]) is nn.Conv3d
    assert not opt.report["channels_last_inputs"] and opt.report["onednn_layers"] == 0
