"""lightvid stream: rolling windows, back-pressure for files, counted drops when the model is slower than real time."""
import json
import time

import numpy as np
import pytest
import torch.nn as nn
from test_timeline import long_video, make_checkpoint

from lightvid.accel.runtime import load_inference_model
from lightvid.accel.stream import run_stream
from lightvid.cli import main


class Sleepy(nn.Module):
    """The model, made slower than real time."""

    def __init__(self, model, seconds):
        super().__init__()
        self.model, self.seconds = model, seconds

    def forward(self, x):
        time.sleep(self.seconds)
        return self.model(x)


def test_file_without_realtime_predicts_every_hop_and_drops_nothing(tiny_synth, tmp_path):
    video = long_video(tiny_synth, tmp_path / "long.mp4")  # 32 frames
    im = load_inference_model(str(make_checkpoint(tmp_path, stride=2)))  # span 15 frames
    results = []
    stats = run_stream(im, str(video), hop=4, on_result=results.append)
    assert stats.frames_read == 32 and stats.dropped == 0
    assert [r.frames for r in results] == [(s, s + 14) for s in range(0, 32 - 14, 4)]
    assert stats.frames_predicted == results[-1].frames[1] + 1
    for r in results:
        assert len(r.topk) == 4 and abs(sum(p for _, p in r.topk) - 1) < 1e-4 and r.latency > 0


def test_slow_model_on_realtime_source_drops_frames_and_takes_the_newest(tiny_synth, tmp_path):
    video = long_video(tiny_synth, tmp_path / "long.mp4", clips=8)  # 64 frames, 2.56 s at 25 fps
    im = load_inference_model(str(make_checkpoint(tmp_path)))  # span 8 frames
    im.run = Sleepy(im.model, 0.6)  # 0.6 s per prediction: the source brings ~15 frames meanwhile, > one clip
    results = []
    stats = run_stream(im, str(video), realtime=True, hop=1, on_result=results.append)
    assert stats.frames_read == 64
    assert stats.dropped > 0 and stats.predictions < 64 - 7
    newest = [r.frames[1] for r in results]
    assert all(b - a > 1 for a, b in zip(newest, newest[1:]))  # skipped ahead rather than queueing
    gaps = [max(0, r.frames[0] - prev - 1) for prev, r in zip([-1] + newest, results)]
    assert stats.dropped == sum(gaps) == results[-1].dropped and sum(gaps[1:]) > 0


def test_stream_cli_jsonl_and_errors(tiny_synth, tmp_path, capsys):
    video = long_video(tiny_synth, tmp_path / "long.mp4")
    ckpt = make_checkpoint(tmp_path)
    out = tmp_path / "preds.jsonl"
    assert main(["stream", str(ckpt), str(video), "--jsonl", str(out), "--topk", "2", "--hop", "8"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 4 and all(len(r["topk"]) == 2 and r["latency_ms"] > 0 for r in rows)
    assert "4 predictions" in capsys.readouterr().err
    assert main(["stream", str(ckpt), str(video), "--jsonl", str(out)]) == 2  # exists: refused
    assert main(["stream", str(ckpt), str(tmp_path / "missing.mp4")]) == 2
    assert main(["stream", str(ckpt), "http://127.0.0.1:9/none.mp4"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 3 and "exists" in err[0] and "missing.mp4" in err[1] and "127.0.0.1" in err[2]


@pytest.mark.slow
def test_stream_real_kinetics_clip(shared_data, tmp_path):
    video = sorted((shared_data / "kinetics5" / "predict").glob("*.mp4"))[1]
    ckpt = make_checkpoint(tmp_path, "r2plus1d_18", {"width_mult": 0.25}, size=64, short_side=64,
                           classes=["archery", "bowling", "flying_kite", "high_jump", "marching"])
    im = load_inference_model(str(ckpt), precision="fp32")
    results = []
    stats = run_stream(im, str(video), hop=16, max_predictions=3, on_result=results.append)
    assert stats.predictions == 3 and stats.dropped == 0
    assert [r.frames[0] for r in results] == [0, 16, 32]
    assert np.isclose(sum(p for _, p in results[0].topk), 1, atol=1e-4)
