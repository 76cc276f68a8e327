"""oneDNN Graph candidate: exact, the fuser switched on only around its calls, kept by optimize() only when faster."""
import pytest
import torch
import torch.nn as nn

import lightvid
from lightvid.accel import onednn_graph as G
from lightvid.accel import optimize as O

pytestmark = pytest.mark.skipif(not G.available(), reason="this PyTorch has no oneDNN Graph fuser")


def _folded(name, **kw):
    torch.manual_seed(0)
    model = lightvid.create_model(name, num_classes=5, width_mult=0.25, **kw).eval()
    O.fold_batchnorms(model)
    return model


@pytest.mark.parametrize("name,size", [("c3d", (16, 64)), ("r2plus1d_18", (4, 32)), ("x3d_s", (4, 32)),
                                       ("ir_csn_50", (4, 32)), ("ip_csn_50", (4, 32))])
def test_build_matches_the_model_and_leaves_the_fuser_as_it_was(name, size):
    model = _folded(name)
    x = torch.randn(2, 3, size[0], size[1], size[1])
    before = torch.jit.onednn_fusion_enabled()
    graph = G.build(model, x[:1])
    assert graph is not None and torch.jit.onednn_fusion_enabled() == before
    with torch.inference_mode():
        ref = model(x)
        for batch in (x[:1], x):  # the example's shape and a new one (compiled on its first call)
            torch.testing.assert_close(graph(batch), ref[:len(batch)], rtol=1e-4, atol=1e-5)
        # channels-last input is made contiguous, as the graph was traced on
        torch.testing.assert_close(graph(x.contiguous(memory_format=torch.channels_last_3d)), ref, rtol=1e-4,
                                   atol=1e-5)
    assert torch.jit.onednn_fusion_enabled() == before


def test_fuser_is_on_only_inside_the_call():
    seen = []

    class Probe(nn.Module):
        def forward(self, x):
            seen.append(torch.jit.onednn_fusion_enabled())
            return x

    graph = G.OneDNNGraphModel(Probe(), nn.Identity())
    torch.jit.enable_onednn_fusion(False)
    graph(torch.zeros(1))
    assert seen == [True] and not torch.jit.onednn_fusion_enabled()
    torch.jit.enable_onednn_fusion(True)
    try:
        graph(torch.zeros(1))
        assert torch.jit.onednn_fusion_enabled()  # a caller's own setting is restored, not cleared
    finally:
        torch.jit.enable_onednn_fusion(False)


def test_build_gives_none_where_it_cannot_be_used(monkeypatch):
    model = _folded("r2plus1d_18")
    x = torch.randn(1, 3, 4, 32, 32)
    assert G.build(model.to(torch.bfloat16), x.to(torch.bfloat16)) is None  # fp32 only
    model = model.float()
    monkeypatch.setattr(G, "same_output", lambda ref, out: False)  # a graph that computes something else
    assert G.build(model, x) is None
    monkeypatch.undo()

    def untraceable(*a, **k):
        raise RuntimeError("Tracer cannot infer type of output")

    monkeypatch.setattr(torch.jit, "trace", untraceable)
    assert G.build(model, x) is None


@pytest.mark.parametrize("graph_faster", [True, False])
def test_optimize_keeps_the_graph_only_when_the_whole_model_times_faster(monkeypatch, graph_faster):
    model = lightvid.create_model("ir_csn_50", num_classes=5, width_mult=0.25).eval()
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        ref = model(x)
    times = {"steps": 2.0, "oneDNN Graph": 1.0} if graph_faster else {"steps": 1.0, "oneDNN Graph": 1.0}

    def fake_times(fns, x, repeats=3, warmup=1):
        for f in fns.values():
            f(x)  # both candidates really run
        return {k: times[k] for k in fns}

    monkeypatch.setattr(O, "median_times", fake_times)
    opt = O.optimize(model, precision="fp32", example_input=x[:1], lower=False)
    assert opt.report["onednn_graph"] is graph_faster  # a tie keeps the steps
    assert opt.report["onednn_graph_ms"] == {k: 1e3 * v for k, v in times.items()}
    assert isinstance(opt.model, G.OneDNNGraphModel) is graph_faster and opt.channels_last is not graph_faster
    if graph_faster:  # what the other steps built is no longer what runs
        assert opt.report["fused_convs"] == 0 and not opt.report["channels_last"]
    else:
        assert opt.report["fused_convs"] > 0
    torch.testing.assert_close(opt(x), ref, rtol=1e-4, atol=1e-4)


def test_optimize_builds_no_graph_when_not_asked_or_not_fp32_cpu(monkeypatch):
    built = []
    monkeypatch.setattr(G, "build", lambda m, x: built.append(1))
    model = lightvid.create_model("c3d", num_classes=5, width_mult=0.25).eval()
    x = torch.randn(1, 3, 4, 32, 32)
    O.optimize(model, precision="fp32", example_input=x, onednn_graph=False, lower=False, fuse=False)
    O.optimize(model, precision="fp32", lower=False, fuse=False)  # nothing to time on
    O.optimize(model, precision="bf16", example_input=x, lower=False, fuse=False, allow_slow=True)
    assert built == []
    report = O.optimize(model, precision="fp32", example_input=x, lower=False, fuse=False).report
    assert built == [1] and not report["onednn_graph"] and "onednn_graph_ms" not in report  # build said no


def test_without_the_fuser_optimize_keeps_its_steps(monkeypatch):
    """A PyTorch without TorchScript's oneDNN Graph fuser: no candidate, the other steps as before."""
    monkeypatch.setattr(G, "available", lambda: False)
    model = lightvid.create_model("x3d_s", num_classes=5, width_mult=0.25).eval()
    x = torch.randn(1, 3, 4, 32, 32)
    assert G.build(model, x) is None
    opt = O.optimize(model, precision="fp32", example_input=x, lower=False)
    assert not opt.report["onednn_graph"] and "onednn_graph_ms" not in opt.report
    assert opt.report["fused_convs"] > 0


class _StemPool(nn.Module):
    """conv -> in-place ReLU -> 3D max pool (not fused) -> conv -> SiLU: a partition boundary."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv3d(3, 8, (1, 3, 3), padding=(0, 1, 1))
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.conv2 = nn.Conv3d(8, 8, 1)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x):
        return self.act(self.conv2(self.pool(self.relu(self.conv1(x))))).mean((2, 3, 4))


def _guard_strides(graph, x):
    """The strides the compiled graph expects of each partition's inputs (its guards)."""
    import re

    with torch.inference_mode():
        graph(x)
    text = str(torch.jit.last_executed_optimized_graph())
    guards = re.findall(r"oneDNNFusionGuard\[types=\[Float\([^)]*strides=\[([\d, ]+)\]", text)
    return [tuple(int(v) for v in s.split(", ")) for s in guards]


def test_traceable_copy_is_out_of_place_with_silu_spelled_out():
    model = _StemPool()
    copy_ = G.traceable_copy(model)
    assert model.relu.inplace and isinstance(model.act, nn.SiLU) and model.act.inplace  # the model is untouched
    assert not copy_.relu.inplace and isinstance(copy_.act, G._SiLU)
    x = torch.randn(2, 3, 2, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(copy_(x), model(x), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("channels_last", [True, False])
def test_profiling_channels_last_keeps_the_boundary_channels_last(channels_last):
    torch.manual_seed(0)
    model = _StemPool().eval()
    x = torch.randn(1, 3, 4, 16, 16)
    graph = G.build(model, x, channels_last=channels_last)
    assert graph is not None
    with torch.inference_mode():
        torch.testing.assert_close(graph(x), model(x), rtol=1e-4, atol=1e-5)
    # the partition after the max pool takes its input in the layout the profile recorded
    after_pool = [s for s in _guard_strides(graph, x) if len(s) == 5 and s[0] == 8 * 4 * 8 * 8]
    assert after_pool, "no partition after the max pool"
    cl_strides = torch.empty(1, 8, 4, 8, 8).contiguous(memory_format=torch.channels_last_3d).stride()
    assert (after_pool[0] == cl_strides) is channels_last


def test_channels_last_profiling_is_undone_after_the_build():
    model = _StemPool().eval()
    x = torch.randn(1, 3, 4, 16, 16)
    conv = nn.Conv3d(3, 4, (1, 3, 3)).eval()
    with torch.no_grad():
        before = conv(x)
        assert G.build(model, x) is not None
        after = conv(x)
    # a batch-1 convolution this small goes back to PyTorch's own kernel: contiguous output again
    assert before.is_contiguous() and after.is_contiguous()
    torch.testing.assert_close(after, before)


def test_a_model_channels_last_profiling_cannot_take_is_built_the_plain_way():
    class Transposed(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv3d(3, 4, 3, padding=1)
            self.up = nn.ConvTranspose3d(4, 4, 2, stride=2)

        def forward(self, x):
            return self.up(torch.relu(self.conv(x)))

    with pytest.raises(NotImplementedError, match="2D/3D fp32 forward"):
        G._convolution_channels_last(torch.randn(1, 4, 3, 3), torch.randn(4, 4, 2, 2), None, [2, 2], [0, 0],
                                     [1, 1], True, [0, 0], 1)
    model = Transposed().eval()
    x = torch.randn(1, 3, 4, 8, 8)
    graph = G.build(model, x)
    assert graph is not None
    with torch.inference_mode():
        torch.testing.assert_close(graph(x), model(x), rtol=1e-4, atol=1e-5)


def test_a_new_input_shape_is_profiled_channels_last_too():
    torch.manual_seed(0)
    model = _StemPool().eval()
    x = torch.randn(2, 3, 4, 16, 16)
    graph = G.build(model, x[:1])
    assert graph.channels_last_profile and graph.calls_per_shape[((1, 3, 4, 16, 16), torch.float32)] == 2
    with torch.inference_mode():
        for _ in range(3):
            torch.testing.assert_close(graph(x), model(x), rtol=1e-4, atol=1e-5)
    assert graph.calls_per_shape[((2, 3, 4, 16, 16), torch.float32)] == 2  # profiled and compiled, then plain calls
    cl_strides = torch.empty(2, 8, 4, 8, 8).contiguous(memory_format=torch.channels_last_3d).stride()
    assert cl_strides in [s for s in _guard_strides(graph, x) if len(s) == 5]


def test_channels_last_profiling_nests_and_serialises_threads(recwarn):
    import threading

    x = torch.randn(1, 3, 4, 8, 8)
    conv = nn.Conv3d(3, 4, (1, 3, 3)).eval()
    cl = torch.channels_last_3d
    with torch.no_grad():
        with G._channels_last_convolutions():
            with G._channels_last_convolutions():  # a profiling call inside another's: no second registration
                assert conv(x).is_contiguous(memory_format=cl)
            assert conv(x).is_contiguous(memory_format=cl)  # the outer block still holds it
        assert conv(x).is_contiguous()
    assert not [w for w in recwarn if "Overriding" in str(w.message)]

    torch.manual_seed(0)
    models = [_StemPool().eval() for _ in range(2)]
    inputs = [torch.randn(1, 3, 4, 16, 16), torch.randn(2, 3, 4, 12, 12)]
    graphs, errors = [None, None], []

    def build(i):
        try:
            graphs[i] = G.build(models[i], inputs[i])
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=build, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and all(g is not None for g in graphs)
    with torch.inference_mode():
        for g, m, x_ in zip(graphs, models, inputs):
            torch.testing.assert_close(g(x_), m(x_), rtol=1e-4, atol=1e-5)
    assert conv(x).is_contiguous() and G._profiling_depth == 0


def test_calls_overlapping_in_threads_leave_the_fuser_as_it_was():
    """The fuser setting is process-wide. Two overlapping calls in two threads, the first to
    enter leaving first: the fuser stays on for the second, and is off again after it (each call
    used to restore what it found: the first's exit turned it off under the second, and the
    second's turned it back on for good)."""
    import threading

    entered_first, entered_second, first_left = threading.Event(), threading.Event(), threading.Event()
    seen = []

    class Probe(nn.Module):
        def forward(self, x):
            if x.item() == 0:
                entered_first.set()
                entered_second.wait(10)
            else:
                entered_second.set()
                first_left.wait(10)
                seen.append(torch.jit.onednn_fusion_enabled())
            return x

    graph = G.OneDNNGraphModel(Probe(), nn.Identity())

    def first():
        graph(torch.zeros(1))
        first_left.set()

    torch.jit.enable_onednn_fusion(False)
    t1 = threading.Thread(target=first)
    t1.start()
    assert entered_first.wait(10)
    t2 = threading.Thread(target=graph, args=(torch.ones(1),))
    t2.start()
    t1.join(10)
    t2.join(10)
    assert seen == [True]  # still on for the second call after the first left
    assert not torch.jit.onednn_fusion_enabled()  # and the caller's setting after the last


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last_3d])
def test_rewritten_pools_give_the_same_values(layout):
    torch.manual_seed(0)
    x = torch.randn(3, 6, 4, 9, 9).contiguous(memory_format=layout)
    torch.testing.assert_close(G._GlobalAvgPool3d()(x), nn.AdaptiveAvgPool3d(1)(x), rtol=1e-6, atol=1e-7)
    for pool in (nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)), nn.MaxPool3d((1, 2, 2)),
                 nn.MaxPool3d((1, 3, 3), (1, 2, 2), ceil_mode=True)):
        assert G._pools_within_frames(pool)
        assert torch.equal(G._FrameMaxPool(pool)(x), pool(x))
    for pool in (nn.MaxPool3d(2), nn.MaxPool3d(3, 1, 1), nn.MaxPool3d((1, 2, 2), return_indices=True),
                 nn.MaxPool3d((3, 3, 3), (1, 2, 2), (1, 1, 1))):
        assert not G._pools_within_frames(pool)


def test_traceable_copy_rewrites_only_what_it_can():
    model = nn.Sequential(nn.Conv3d(3, 4, 1), nn.SiLU(inplace=True), nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
                          nn.MaxPool3d(2), nn.AdaptiveAvgPool3d((1, 2, 2)), nn.AdaptiveAvgPool3d(1))
    copy_ = G.traceable_copy(model)
    assert [type(m).__name__ for m in copy_] == ["Conv3d", "_SiLU", "_FrameMaxPool", "MaxPool3d",
                                                 "AdaptiveAvgPool3d", "_GlobalAvgPool3d"]
    assert model[1].inplace and isinstance(model[2], nn.MaxPool3d)  # the original is untouched


def test_the_fuser_runs_the_stem_max_pool_in_onednn():
    from lightvid.accel import breakdown as BD

    model = _folded("ir_csn_50")
    x = torch.randn(1, 3, 4, 32, 32)
    graph = G.build(model, x)
    assert graph is not None
    assert BD.onednn_log(graph, x, calls=1).kernels_n.get(BD.POOLING) == 1
    _, ops = BD.aten_outside_ms(graph, x, calls=1)
    assert not any("pool" in op for op in ops), ops
