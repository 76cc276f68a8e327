"""The video tools on lightvid.optimize's backends: features, explain's surrogate, stream and timeline."""
import json

import numpy as np
import pytest
import torch
from test_timeline import long_video, make_checkpoint

from lightvid.accel.runtime import Embedder, load_inference_model
from lightvid.accel.stream import run_stream
from lightvid.accel.timeline import predict_timeline
from lightvid.analysis.features import extract_features, list_videos, load_features
from lightvid.cli import main

pytest.importorskip("onnxruntime")


def test_features_on_onnxruntime_match_eager(tiny_synth, tmp_path):
    ckpt = make_checkpoint(tmp_path)
    videos = list_videos(str(tiny_synth / "val"))[:3]
    eager = load_inference_model(str(ckpt))
    ort = load_inference_model(str(ckpt), backend="onnxruntime", precision="fp32", outputs="features")
    assert ort.backend == {"backend": "onnxruntime", "precision": "fp32"}
    assert eager.backend["backend"] == "torch eager" and ort.run is ort.model  # only the embedding was optimised
    for im, out in ((eager, "e"), (ort, "o")):
        extract_features(im, videos, tmp_path / out, clips=2, batch=4, progress=False)
    want, _ = load_features(tmp_path / "e", "clips")
    got, _ = load_features(tmp_path / "o", "clips")
    assert got.shape == want.shape == (6, eager.model.num_features)
    np.testing.assert_allclose(got, want, atol=1e-4)
    # the torch backend (BN folded into the convolutions) gives the same embedding too
    x = torch.randn(2, 3, 8, 32, 32)
    folded = load_inference_model(str(ckpt), backend="torch", precision="fp32", outputs="features")
    assert folded.backend["backend"] == "torch"
    with torch.no_grad():
        np.testing.assert_allclose(folded.embed(x).numpy(), Embedder(eager.model)(x).numpy(), atol=1e-4)


def test_features_cli_backend(tiny_synth, tmp_path, capsys):
    ckpt = make_checkpoint(tmp_path)
    assert main(["features", str(ckpt), str(tiny_synth / "val"), "--out", str(tmp_path / "f"), "--quiet",
                 "--backend", "onnxruntime", "--precision", "fp32"]) == 0
    assert "8 videos" in capsys.readouterr().err
    assert main(["features", str(ckpt), str(tiny_synth / "val"), "--out", str(tmp_path / "g"), "--quiet",
                 "--precision", "int8", "--calib", str(tmp_path / "nowhere")]) == 2
    assert "--calib" in capsys.readouterr().err


def test_explain_surrogate_on_onnxruntime_gradcam_on_torch(tiny_synth, tmp_path, capsys):
    ckpt = make_checkpoint(tmp_path)
    video = sorted((tiny_synth / "val").rglob("*.mp4"))[0]
    base = ["explain", str(ckpt), str(video), "--samples", "40", "--grid", "2x2x2"]
    assert main(base + ["--out", str(tmp_path / "e")]) == 0
    assert main(base + ["--out", str(tmp_path / "o"), "--backend", "onnxruntime", "--precision", "fp32"]) == 0
    eager = json.loads((tmp_path / "e" / f"{video.stem}.explain.json").read_text())
    ort = json.loads((tmp_path / "o" / f"{video.stem}.explain.json").read_text())
    assert ort["surrogate"]["backend"] == {"backend": "onnxruntime", "precision": "fp32"}
    assert ort["gradcam_backend"] == {"backend": "torch", "precision": "fp32"}
    assert ort["class"] == eager["class"] and ort["prob"] == pytest.approx(eager["prob"], abs=1e-4)
    assert ort["surrogate"]["r2_heldout"] == pytest.approx(eager["surrogate"]["r2_heldout"], abs=1e-3)
    capsys.readouterr()
    assert main(base + ["--out", str(tmp_path / "n"), "--no-surrogate", "--backend", "onnxruntime"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--no-surrogate" in err[0]


def test_timeline_and_stream_on_onnxruntime(tiny_synth, tmp_path):
    ckpt = make_checkpoint(tmp_path)
    video = long_video(tiny_synth, tmp_path / "long.mp4", clips=2)
    span = (0.4, "s"), (0.1, "s")  # window, stride
    eager = predict_timeline(load_inference_model(str(ckpt)), str(video), *span, batch=3, progress=False)
    im = load_inference_model(str(ckpt), backend="onnxruntime", precision="fp32")
    assert im.backend == {"backend": "onnxruntime", "precision": "fp32"}
    ort = predict_timeline(im, str(video), *span, batch=3, progress=False)
    assert len(ort.starts) == len(eager.starts) > 2
    np.testing.assert_allclose(ort.probs, eager.probs, atol=1e-4)
    results = []
    stats = run_stream(im, str(video), hop=4, on_result=results.append)
    assert stats.predictions == len(results) > 0 and stats.dropped == 0
