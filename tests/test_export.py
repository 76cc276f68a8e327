"""lightvid export: ONNX Runtime matches PyTorch within 1e-4; torch.export programs and safetensors round-trip."""
import json

import numpy as np
import pytest
import torch

import lightvid
from lightvid.accel.bench import bench, onnx_macs
from lightvid.accel.export import AdaptiveAvgPoolAsMatmul, export, onnx_session, verify_onnx
from lightvid.analysis.summary import summarize
from lightvid.cli import main
from lightvid.errors import UserError


@pytest.fixture(scope="module")
def c3d_onnx(tmp_path_factory):
    torch.manual_seed(0)
    model = lightvid.create_model("c3d", num_classes=5, width_mult=0.125).eval()
    path = tmp_path_factory.mktemp("onnx") / "c3d.onnx"
    info = export(model, path, "onnx", (3, 16, 96, 96))
    return model, path, info


def test_onnx_matches_pytorch(c3d_onnx):
    model, path, info = c3d_onnx
    assert info["max_abs_err"] <= 1e-4
    x = torch.randn(3, 3, 16, 96, 96)  # another batch size: the batch axis is dynamic
    assert verify_onnx(model, path, x) <= 1e-4


def test_onnx_macs_match_summary(c3d_onnx):
    model, path, _ = c3d_onnx
    assert onnx_macs(path) == summarize(model, (3, 16, 96, 96)).macs


def test_bench_runs_onnx_file(c3d_onnx):
    _, path, _ = c3d_onnx
    r = bench(str(path), batch=1, input_size=(3, 16, 96, 96), warmup=1, repeats=2, progress=False)
    assert r.latency_ms > 0 and r.gflops_per_s > 0 and 0 < r.fraction_of_peak
    with pytest.raises(UserError):
        bench(str(path), input_size=(3, 16, 96, 96), precision="bf16")
    with pytest.raises(UserError):
        bench(str(path), input_size=(3, 8, 32, 32))


def test_resnet_with_bn_onnx(tmp_path):
    model = lightvid.create_model("r2plus1d_18", num_classes=4, width_mult=0.25).eval()
    info = export(model, tmp_path / "r.onnx", "onnx", (3, 4, 32, 32))
    assert info["max_abs_err"] <= 1e-4


@pytest.mark.parametrize("in_size,out_size", [((1, 1, 1), (1, 4, 4)), ((2, 2, 2), (1, 4, 4)), ((3, 7, 5), (2, 3, 4)),
                                               ((5, 6), (4, 4))])
def test_adaptive_pool_as_matmul_equals_the_pool(in_size, out_size):
    x = torch.randn(2, 3, *in_size)
    pool = (torch.nn.AdaptiveAvgPool3d if len(in_size) == 3 else torch.nn.AdaptiveAvgPool2d)(out_size)
    torch.testing.assert_close(AdaptiveAvgPoolAsMatmul(in_size, out_size)(x), pool(x), rtol=0, atol=1e-6)


def test_c3d_on_small_clips_exports_to_onnx(tmp_path):
    # at 48 px C3D's (1, 4, 4) head pool upsamples a 1x1 map: no ONNX adaptive pool does that
    model = lightvid.create_model("c3d", num_classes=4, width_mult=0.125).eval()
    info = export(model, tmp_path / "c3d48.onnx", "onnx", (3, 16, 48, 48))
    assert info["max_abs_err"] <= 1e-4
    assert verify_onnx(model, tmp_path / "c3d48.onnx", torch.randn(3, 3, 16, 48, 48)) <= 1e-4


def test_program_and_safetensors(tmp_path):
    kw = dict(num_classes=3, width_mult=0.25)
    model = lightvid.create_model("r2plus1d_18", **kw).eval()
    export(model, tmp_path / "m.pt2", "pt2", (3, 4, 32, 32))
    program = torch.export.load(str(tmp_path / "m.pt2")).module()
    with torch.no_grad():
        for batch in (1, 3):  # exported at batch 2: the batch is dynamic
            x = torch.randn(batch, 3, 4, 32, 32)
            assert torch.allclose(program(x), model(x), atol=1e-5)
    export(model, tmp_path / "m.safetensors", "safetensors")
    back = lightvid.create_model("r2plus1d_18", weights=str(tmp_path / "m.safetensors"), **kw)
    with torch.no_grad():
        assert torch.equal(back.eval()(x), model(x))


def test_export_and_bench_cli(tmp_path, capsys):
    out = tmp_path / "x.onnx"
    assert main(["export", "r2plus1d_18", str(out), "--num-classes", "3", "--width-mult", "0.25",
                 "--input", "3x4x32x32"]) == 0
    assert "max abs err" in capsys.readouterr().out
    assert main(["bench", str(out), "--repeats", "2", "--warmup", "1", "--json"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("model", "batch", "precision", "latency_ms", "clips_per_s", "gflops_per_s", "peak_gflops_per_s"):
        assert key in r
    assert main(["bench", "r2plus1d_18", "--width-mult", "0.25", "--input", "3x4x32x32", "--batch", "2",
                 "--precision", "bf16", "--optimize", "--repeats", "2", "--json"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    from lightvid.precision import has_native_bf16

    native = has_native_bf16()  # without native bf16: one warning line, then fp32
    assert r["batch"] == 2 and r["precision"] == ("bf16" if native else "fp32")
    assert r["optimized"] and np.isfinite(r["gflops_per_s"])
    assert main(["bench", "c3d", "--width-mult", "0.125", "--input", "3x16x32x32", "--winograd",
                 "--repeats", "2", "--warmup", "1", "--json"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["optimized"] and r["precision"] == "fp32" and 0 <= r["winograd_layers"] <= 8
    assert main(["bench", "c3d", "--winograd", "--precision", "bf16"]) == 2
    assert "--winograd needs --precision fp32" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", "c3d", str(tmp_path / "y.onnx"), "--format", "tflite"])
    assert main(["bench", "no_such_model"]) == 2
    assert main(["bench", str(tmp_path / "missing.onnx")]) == 2
    assert "no such ONNX file" in capsys.readouterr().err


def test_bad_onnx_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(UserError):
        onnx_session(bad)
