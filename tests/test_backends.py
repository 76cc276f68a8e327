"""optimize(backend=...): every backend matches eager, "auto" keeps an agreeing candidate, int8 agrees."""
import json

import pytest
import torch
from benchmark_scripts import load_benchmark

import lightvid
from lightvid.accel import backends as B
from lightvid.errors import UserError
from lightvid.precision import has_native_bf16

INSTALLED = [b for b in ("onnxruntime", "openvino") if B.available(b)]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = lightvid.create_model("r2plus1d_18", num_classes=5, width_mult=0.25).eval()
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        ref = model(x)
    return model, x, ref


@pytest.mark.parametrize("backend", ["torch", *INSTALLED])
def test_backend_matches_eager(tiny, backend):
    model, x, ref = tiny
    run = B.optimize(model, precision="fp32", backend=backend, example_input=x)
    out = run(x)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    assert torch.allclose(out, ref, atol=1e-4, rtol=1e-4), (out - ref).abs().max()
    assert run.report["backend"] == backend
    # another batch size than the example's (OpenVINO compiles a second shape)
    x3 = torch.randn(3, *x.shape[1:])
    with torch.no_grad():
        assert torch.allclose(run(x3), model(x3), atol=1e-4, rtol=1e-4)


def test_lightvid_optimize_is_the_backend_switch(tiny):
    model, x, ref = tiny
    run = lightvid.optimize(model, precision="fp32", backend="torch")
    assert run.report["backend"] == "torch" and run.report["folded_bn"] > 0
    assert torch.allclose(run(x), ref, atol=1e-4, rtol=1e-4)


def test_auto_keeps_an_agreeing_candidate(tiny):
    model, x, ref = tiny
    run = B.optimize(model, precision="fp32", backend="auto", example_input=x)
    auto = run.report["auto"]
    assert auto["chosen"] in auto["times_ms"] and auto["top1_agreement"][auto["chosen"]] == 1.0
    assert set(auto["times_ms"]) >= {"eager", "torch"}
    assert auto["times_ms"][auto["chosen"]] == min(auto["times_ms"].values())
    assert torch.equal(run(x).argmax(-1), ref.argmax(-1))


def test_auto_rejects_a_fast_candidate_that_disagrees(tiny, monkeypatch):
    model, x, ref = tiny

    class Wrong(torch.nn.Module):  # instant, but its top-1 is never eager's
        def __init__(self):
            super().__init__()
            self.report = {}

        def forward(self, x):
            return -ref[: len(x)].clone()

    real_build = B._build

    def build(m, backend, *args):
        return Wrong() if backend == "onnxruntime" else real_build(m, backend, *args)

    monkeypatch.setattr(B, "_build", build)
    monkeypatch.setattr(B, "candidates_for", lambda precision: ["torch", "onnxruntime"])
    run = B.optimize(model, precision="fp32", backend="auto", example_input=x)
    auto = run.report["auto"]
    assert auto["top1_agreement"]["onnxruntime"] == 0.0
    assert "onnxruntime" not in auto["times_ms"] and auto["chosen"] in ("eager", "torch")


def test_choose_never_returns_a_path_slower_than_eager():
    # the selection rule of backend="auto" and precision="auto", on given times (no timing here)
    agree = {"eager": 1.0, "torch": 1.0, "onnxruntime": 1.0, "openvino": 0.5}
    assert B.choose({"eager": 1.0, "torch": 1.5, "onnxruntime": 1.2}, agree) == "eager"  # all slower
    assert B.choose({"eager": 1.0, "torch": 1.0}, agree) == "eager"  # a tie keeps eager
    assert B.choose({"eager": 1.0, "torch": 0.8, "onnxruntime": 0.6}, agree) == "onnxruntime"
    assert B.choose({"eager": 1.0, "torch": 0.8, "openvino": 0.1}, agree) == "torch"  # openvino disagrees
    assert B.choose({"eager": 1.0, "torch": 0.5}, {"eager": 1.0}) == "eager"  # agreement unknown: not kept
    with pytest.raises(ValueError, match="eager"):
        B.choose({"torch": 0.5}, {"torch": 1.0})


def test_precision_auto_keeps_eager_when_the_optimised_copy_is_slower(tiny, monkeypatch):
    model, x, ref = tiny
    real = B.median_times
    monkeypatch.setattr(B, "median_times", lambda fns, *a, **k: {k2: (2.0 if k2 == "torch" else 1.0) for k2 in fns})
    run = B.optimize(model, precision="auto", backend="torch", example_input=x, winograd=False)
    assert run.report["auto"]["chosen"] == "eager" and run.report["backend"] == "eager"
    assert torch.allclose(run(x), ref)
    monkeypatch.setattr(B, "median_times", lambda fns, *a, **k: {k2: (0.5 if k2 == "torch" else 1.0) for k2 in fns})
    run = B.optimize(model, precision="auto", backend="torch", example_input=x, winograd=False)
    assert run.report["auto"]["chosen"] == "torch" and run.report["backend"] == "torch"
    monkeypatch.setattr(B, "median_times", real)
    assert "auto" not in B.optimize(model, precision="auto", backend="torch").report  # nothing to time on


def test_compare_rows_auto_rule_uses_choose():
    from lightvid.accel.compare import Row, choose_row

    rows = [Row("eager fp32", ms=100.0, top1=1.0), Row("lightvid torch fp32", ms=120.0, top1=1.0),
            Row("openvino fp32", ms=50.0, top1=0.0), Row("onnxruntime int8 (QDQ)", ms=40.0, top1=1.0)]
    assert choose_row(rows, "fp32").path == "eager fp32"
    assert choose_row(rows, "int8").path == "onnxruntime int8 (QDQ)"
    no_int8 = rows[:3]  # a run without int8 paths: nothing for the int8 rule to pick, not eager
    assert choose_row(no_int8, "int8") is None and choose_row(no_int8, "fp32").path == "eager fp32"


@pytest.mark.slow  # inductor compiles the model (C++ with gcc), ~20-60 s
def test_torch_compile_with_freezing_matches_eager(tiny):
    model, x, ref = tiny
    run = B.optimize(model, precision="fp32", backend="torch", compile=True, example_input=x, winograd=False)
    assert run.report["compiled"] and run.report["compile_s"] > 0
    assert torch.allclose(run(x), ref, atol=1e-4, rtol=1e-4)
    assert all(p.requires_grad is False for p in run.model.parameters())


def test_missing_package_is_one_line_and_auto_skips_it(tiny, monkeypatch):
    model, x, _ = tiny
    real = B.available
    monkeypatch.setattr(B, "available", lambda name: False if name == "openvino" else real(name))
    with pytest.raises(UserError) as e:
        B.optimize(model, precision="fp32", backend="openvino", example_input=x)
    msg = str(e.value)
    assert "\n" not in msg and "openvino" in msg and "pip install" in msg
    assert "openvino" not in B.candidates_for("fp32")


def test_bad_arguments(tiny):
    model, x, _ = tiny
    with pytest.raises(UserError, match="backend must be one of"):
        B.optimize(model, backend="tensorrt")
    with pytest.raises(UserError, match="needs an example_input"):
        B.optimize(model, precision="fp32", backend="auto")
    with pytest.raises(UserError, match="needs calibration"):
        B.optimize(model, precision="int8", backend="onnxruntime", example_input=x)
    with pytest.raises(UserError, match="torch"):
        B.optimize(model, precision="int8", backend="torch", calibration=[x])


INT8 = [pytest.param(b, marks=pytest.mark.slow) if b == "openvino" else b  # NNCF: ~50 s on 2 busy cores
        for b in INSTALLED if b != "openvino" or B.available("nncf")]


@pytest.mark.parametrize("backend", INT8)
def test_int8_agrees_on_top1(backend):
    torch.manual_seed(0)
    model = lightvid.create_model("r2plus1d_18", num_classes=5, width_mult=0.25).eval()
    g = torch.Generator().manual_seed(1)
    calib = [torch.randn(4, 3, 8, 32, 32, generator=g) for _ in range(3)]
    x = torch.randn(16, 3, 8, 32, 32, generator=g)
    run = B.optimize(model, precision="int8", backend=backend, calibration=calib, example_input=x[:2])
    assert run.report["precision"] == "int8"
    with torch.no_grad():
        ref = model(x)
    out = run(x)
    agree = (out.argmax(-1) == ref.argmax(-1)).float().mean().item()
    assert agree >= 0.75, agree
    assert (out - ref).abs().max() < 0.5 * ref.abs().max()  # quantised, not a different function
    assert not torch.allclose(out, ref, atol=1e-6)  # and really quantised


def test_calibration_batches_from_a_folder(tiny_synth):
    from lightvid.accel.calib import calibration_batches

    batches = calibration_batches(str(tiny_synth), (3, 8, 32, 32), clips=6, batch=4)
    assert [tuple(b.shape) for b in batches] == [(4, 3, 8, 32, 32), (2, 3, 8, 32, 32)]
    with pytest.raises(UserError, match="neither a config"):
        calibration_batches(str(tiny_synth / "nope.txt"), (3, 8, 32, 32))


@pytest.mark.slow  # ~1 min on two busy cores (an mp4, two predictors, an ONNX export)
def test_predict_with_a_backend_matches_eager(tmp_path):
    import numpy as np

    from lightvid.accel.predict import Predictor
    from lightvid.checkpoint import save_atomic
    from lightvid.data.synth import write_mp4

    CLASSES = ["left", "right", "up"]
    kwargs = {"width_mult": 0.125}
    torch.manual_seed(0)
    model = lightvid.create_model("r2plus1d_18", num_classes=3, **kwargs)
    data = {"root": str(tmp_path), "format": "folders", "clip_len": 8, "size": 32, "short_side": 32}
    meta = {"model": "r2plus1d_18", "model_kwargs": kwargs, "num_classes": 3, "classes": CLASSES,
            "config": {"data": data}}
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    ckpt = save_atomic({"lightvid": meta, "state_dict": state}, tmp_path / "best.ckpt")
    video = tmp_path / "a.mp4"
    write_mp4(video, np.random.default_rng(0).integers(0, 255, (20, 40, 40, 3), dtype=np.uint8))
    eager, onnx = Predictor(str(ckpt), clips=2, topk=3), Predictor(str(ckpt), clips=2, topk=3, backend="onnxruntime")
    assert onnx.run.report["backend"] == "onnxruntime"
    a, b = eager.predict(str(video)), onnx.predict(str(video))
    assert [c for c, _ in a.topk] == [c for c, _ in b.topk] and set(dict(a.topk)) <= set(CLASSES)
    assert max(abs(p - q) for (_, p), (_, q) in zip(a.topk, b.topk)) < 1e-4


@pytest.mark.slow  # builds and times every backend
def test_bench_cli_compare_and_backend(capsys):
    import json

    from lightvid.cli import main

    args = ["bench", "r2plus1d_18", "--width-mult", "0.25", "--num-classes", "5", "--input", "3x8x32x32",
            "--repeats", "1", "--warmup", "0"]
    assert main([*args, "--compare", "--no-compile", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    paths = [r["path"] for r in out["rows"]]
    assert paths[0] == "eager fp32" and "lightvid torch fp32" in paths and "AVX2" in out["cpu"]["features"]
    assert all(r["max_abs_diff"] < 1e-4 for r in out["rows"] if r["ms"] is not None)
    assert main([*args, "--backend", "onnxruntime", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["backend"] == "onnxruntime"


def test_gpu_table_paths_are_lightvids_own():
    """On CUDA the table times fp32 (contiguous and channels-last), bf16 where native, fp16 and a
    compiled half-precision path; no CPU backend, no int8."""
    from lightvid.accel.compare import gpu_paths, paths_for

    model = lightvid.create_model("c3d", num_classes=5, width_mult=0.25)
    labels = [p[0] for p in gpu_paths(compile=True, bf16=True)]
    assert labels == ["lightvid torch fp32, contiguous", "lightvid torch fp32", "lightvid torch bf16",
                      "lightvid torch fp16", "lightvid torch bf16 + compile"]
    assert [p[0] for p in gpu_paths(compile=False, bf16=False)][-1] == "lightvid torch fp16"
    assert gpu_paths()[0][3] == {"winograd": False, "channels_last": False}
    assert all(kw["winograd"] is False for *_, kw in gpu_paths())
    cuda = paths_for(model, int8=True, compile=False, device="cuda")  # no GPU needed to list them
    assert all(backend == "torch" and prec != "int8" for _, backend, prec, _ in cuda)
    assert any(label.startswith("openvino") for label, *_ in paths_for(model, int8=True, device="cpu"))


def test_compare_row_says_why_a_path_failed_on_its_first_call(tiny, monkeypatch):
    from lightvid.accel import compare as C

    model, x, _ = tiny

    class Broken(torch.nn.Module):
        report = {}

        def forward(self, a):
            raise RuntimeError("no kernel for this input")

    monkeypatch.setattr(C, "paths_for", lambda *a, **k: [("lightvid torch fp32", "torch", "fp32", {})])
    monkeypatch.setattr(C.B, "optimize", lambda *a, **k: Broken())
    rows = C.compare(model, x, rounds=1, warmup=0, compile=False)
    assert [r.path for r in rows] == ["eager fp32", "lightvid torch fp32"]
    assert rows[0].ms is not None and rows[1].ms is None
    assert rows[1].note == "not built: no kernel for this input"


def _bench_backends():
    return load_benchmark("bench_backends")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_bench_backends_device_cuda_without_gpu_is_one_line():
    with pytest.raises(UserError, match="--device cuda: no CUDA device"):
        _bench_backends().main(["--device", "cuda", "--models", "c3d", "--batches", "1"])
    for bad in ("tpu", "mps"):
        with pytest.raises(UserError, match=f"--device {bad}: cpu or cuda"):
            _bench_backends().main(["--device", bad, "--models", "c3d", "--batches", "1"])


def test_bench_backends_time_budget_and_json_after_every_run(tmp_path, capsys, monkeypatch):
    from lightvid.accel.compare import Row

    out = tmp_path / "runs.json"
    args = ["--models", "r2plus1d_18", "--batches", "1,2", "--input", "3x4x16x16", "--num-classes", "3",
            "--rounds", "1", "--no-int8", "--no-compile", "--json", str(out)]
    mod = _bench_backends()
    seen = []

    def fake_compare(model, x, calib, **kw):  # the budget and the JSON are under test, not the timings
        seen.append(tuple(x.shape))
        if len(seen) == 2:  # the first run is on disk before the second starts
            assert [r["batch"] for r in json.loads(out.read_text())["runs"]] == [1]
        return [Row("eager fp32", ms=1.0, speedup=1.0, max_abs_diff=0.0, top1=1.0)]

    monkeypatch.setattr(mod, "compare", fake_compare)
    assert mod.main([*args, "--time-budget", "0"]) == 0
    assert "time budget of 0 s reached: r2plus1d_18 batch 1 not run" in capsys.readouterr().out
    assert not out.exists()  # nothing measured, nothing written
    assert mod.main([*args, "--time-budget", "3600"]) == 0
    runs = json.loads(out.read_text())["runs"]
    assert [r["batch"] for r in runs] == [1, 2] and not list(tmp_path.glob("*.tmp"))
    assert seen == [(1, 3, 4, 16, 16), (2, 3, 4, 16, 16)]


def test_gpu_markdown_table_from_json(tmp_path):
    from lightvid.accel.compare import Row

    rows = [Row("eager fp32", ms=4.0, speedup=1.0, max_abs_diff=0.0, top1=1.0),
            Row("lightvid torch fp32", ms=2.0, speedup=2.0, max_abs_diff=1e-6, top1=1.0),
            Row("lightvid torch bf16", ms=1.0, speedup=4.0, max_abs_diff=2e-2, top1=1.0),
            Row("lightvid torch bf16 + compile", note="not built: inductor failed")]
    path = tmp_path / "gpu.json"
    path.write_text(json.dumps({"gpu": "GPU: test", "runs": [{"model": "c3d", "batch": 8,
                                                               "rows": [r.__dict__ for r in rows]}]}))
    table = _bench_backends().markdown([str(path)])
    line = next(ln for ln in table.splitlines() if ln.startswith("| c3d | 8 |"))
    assert "4.00 ms" in line and "2.00x (2.00)" in line and "4.00x (1.00)" in line and "failed" in line
    assert line.endswith("| lightvid torch bf16 |")
    assert "fp32, contiguous" not in table  # a column no run has is left out


@pytest.mark.skipif(has_native_bf16(), reason="checks the fallback on a CPU without native bf16")
def test_bf16_request_on_a_cpu_without_it_runs_fp32_with_an_example_input(tiny, capsys):
    model, x, ref = tiny
    run = B.optimize(model, precision="bf16", example_input=x[:1], lower=False, fuse=False)
    assert "running fp32 instead" in capsys.readouterr().err and run.precision == "fp32"
    assert run.report["winograd_layers"] == 0
    assert torch.allclose(run(x), ref, atol=1e-4)


def test_cpu_backends_refuse_a_model_on_another_device_in_one_line(tiny):
    """ONNX Runtime and OpenVINO (and int8) run on the CPU; "auto" on another device chooses
    between eager and the torch path instead (a "meta" model stands in for a GPU one here)."""
    model = lightvid.create_model("c3d", num_classes=5, width_mult=0.25).to("meta")
    for backend, precision in (("onnxruntime", "fp32"), ("openvino", "fp32"), ("auto", "int8")):
        with pytest.raises(UserError, match=f"backend={backend!r} runs on CPU; the model is on meta"):
            B.optimize(model, precision=precision, backend=backend)
    with pytest.raises(UserError, match="backend='auto' needs an example_input"):
        B.optimize(model, precision="fp32", backend="auto")


@pytest.mark.parametrize("fastest", ["torch", "torch fp32", "eager"])
def test_precision_auto_choosing_bf16_keeps_fp32_as_a_candidate(tiny, monkeypatch, fastest):
    """Where "auto" resolves to a half precision (native bf16), the fp32 copy is timed too and the
    fastest of eager, the half-precision copy and the fp32 copy is kept."""
    model, x, ref = tiny
    monkeypatch.setattr(B, "resolve_precision", lambda p, device, **kw: "bf16" if p == "auto" else p)
    timed = []

    def fake_times(fns, *a, **k):
        timed.append(sorted(fns))
        return {name: (0.5 if name == fastest else 1.0) for name in fns}

    monkeypatch.setattr(B, "median_times", fake_times)
    run = B.optimize(model, precision="auto", example_input=x, winograd=False, lower=False, fuse=False)
    assert timed == [["eager", "torch", "torch fp32"]]
    assert run.report["auto"]["chosen"] == fastest
    assert run.precision == {"torch": "bf16", "torch fp32": "fp32", "eager": "fp32"}[fastest]
    torch.testing.assert_close(run(x), ref, rtol=1e-4, atol=1e-4)


def test_bench_backends_json_write_that_fails_leaves_the_folder_as_it_was(tmp_path):
    neighbour = tmp_path / "notes.txt"
    neighbour.write_bytes(b"the user's own file\n")
    with pytest.raises(TypeError):
        _bench_backends().write_json({"runs": [object()]}, str(tmp_path / "out.json"))  # not serialisable
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert neighbour.read_bytes() == b"the user's own file\n"


def test_bench_backends_omp_wait_flag_is_read_before_torch_and_checked():
    mod = _bench_backends()
    assert mod.omp_wait_from_argv(["--models", "c3d"]) == "default"
    assert mod.omp_wait_from_argv(["--omp-wait", "passive", "--rounds", "3"]) == "passive"
    assert mod.omp_wait_from_argv(["--rounds", "3", "--omp-wait=passive"]) == "passive"
    assert mod.omp_wait_from_argv(["--omp-w", "passive"]) == "passive"  # an abbreviation, as main's parser takes it
    assert mod.omp_wait_from_argv(["--omp-wait"]) == "default"  # argparse then names the missing value
    with pytest.raises(SystemExit):
        mod.main(["--omp-wait", "spin"])


def test_bench_backends_passive_after_torch_loaded_is_one_line(monkeypatch):
    mod = _bench_backends()
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)  # as if torch had loaded before the flag was read
    with pytest.raises(UserError, match="--omp-wait passive: torch was loaded before OMP_WAIT_POLICY"):
        mod.main(["--omp-wait", "passive", "--models", "c3d", "--batches", "1"])


def test_bench_backends_json_records_the_wait_policy(tmp_path, monkeypatch):
    from lightvid.accel.compare import Row

    out = tmp_path / "runs.json"
    mod = _bench_backends()
    monkeypatch.setattr(mod, "compare", lambda *a, **k: [Row("eager fp32", ms=1.0, speedup=1.0,
                                                                max_abs_diff=0.0, top1=1.0)])
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    args = ["--models", "r2plus1d_18", "--batches", "1", "--input", "3x4x16x16", "--num-classes", "3",
            "--rounds", "1", "--no-int8", "--no-compile", "--json", str(out), "--omp-wait", "passive"]
    assert mod.main(args) == 0
    assert json.loads(out.read_text())["omp_wait_policy"] == "PASSIVE"


def test_time_calls_turn_warmup_runs_untimed_calls_before_each_timed_one():
    from lightvid.accel.timing import time_calls

    calls = []

    def fn(name):
        return lambda x: calls.append(name)

    times = time_calls({"a": fn("a"), "b": fn("b")}, torch.zeros(1), repeats=3, warmup=1, turn_warmup=1)
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}
    # one warm-up round, then per round: a (untimed), a (timed), b (untimed), b (timed)
    assert calls == ["a", "b"] + ["a", "a", "b", "b"] * 3
    calls.clear()
    time_calls({"a": fn("a"), "b": fn("b")}, torch.zeros(1), repeats=2, warmup=0)
    assert calls == ["a", "b", "a", "b"]  # the default: no untimed calls between rounds


def test_bench_backends_negative_turn_warmup_is_one_line():
    with pytest.raises(UserError, match="--turn-warmup -1: a number of calls, 0 or more"):
        _bench_backends().main(["--turn-warmup", "-1", "--models", "c3d", "--batches", "1"])


@pytest.mark.parametrize("backend", ["torch", *INSTALLED])
def test_concurrent_calls_from_threads_match_eager(tiny, backend):
    """One optimised model called from several threads at once (a server's worker pool): each
    call returns its own input's result, also on an input shape first seen under concurrency."""
    from concurrent.futures import ThreadPoolExecutor

    model, x, _ = tiny
    run = B.optimize(model, precision="fp32", backend=backend, example_input=x)
    torch.manual_seed(1)
    xs = [torch.randn(n, *x.shape[1:]) for n in (2, 2, 1, 1)]  # batch 1: a shape not compiled yet
    with torch.no_grad():
        refs = [model(xi) for xi in xs]

    def call(i):
        return max((run(xs[i]) - refs[i]).abs().max().item() for _ in range(3))

    with ThreadPoolExecutor(4) as pool:
        errors = list(pool.map(call, [0, 1, 2, 3] * 2))
    assert max(errors) < 1e-4, errors


def test_compare_rows_keep_each_round_and_the_ratio_range_pairs_rounds(tiny, monkeypatch):
    """Every row keeps its per-round times (median = the row's ms); ``ratio_range`` divides them
    round by round, so a host slowing one round down slows both sides of that pair."""
    import statistics

    from lightvid.accel import compare as C

    model, x, _ = tiny

    class Same(torch.nn.Module):
        report = {}

        def forward(self, a):
            with torch.no_grad():
                return model(a)

    monkeypatch.setattr(C, "paths_for", lambda *a, **k: [("lightvid torch fp32", "torch", "fp32", {})])
    monkeypatch.setattr(C.B, "optimize", lambda *a, **k: Same())
    rows = C.compare(model, x, rounds=3, warmup=0, compile=False, turn_warmup=0)
    for r in rows:
        assert len(r.round_ms) == 3 and r.ms == pytest.approx(statistics.median(r.round_ms))

    fast = C.Row("lightvid torch fp32", ms=100.0, round_ms=[100.0, 200.0, 100.0])
    other = C.Row("openvino fp32", ms=110.0, round_ms=[110.0, 180.0, 120.0])
    assert C.ratio_range(fast, other) == pytest.approx((0.9, 1.2))
    assert C.ratio_range(fast, C.Row("openvino fp32", ms=1.0)) is None  # a row from an older JSON
