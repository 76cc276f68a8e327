"""lightvid predict --window: per-window clips are exactly the frames on screen at the sampled times."""
import json
import math

import numpy as np
import pytest
import torch

import lightvid
from lightvid.accel.runtime import load_inference_model
from lightvid.accel.timeline import moving_average, parse_span, predict_timeline, window_grid
from lightvid.checkpoint import save_atomic
from lightvid.cli import main
from lightvid.errors import UserError

CLASSES = ["right", "left", "down", "up"]


def make_checkpoint(tmp_path, name="r3d_10", kwargs=None, clip_len=8, size=32, stride=1, short_side=None,
                    classes=CLASSES):
    kwargs = kwargs or {"width_mult": 0.125}
    torch.manual_seed(0)
    model = lightvid.create_model(name, num_classes=len(classes), **kwargs)
    data = {"root": str(tmp_path), "format": "folders", "clip_len": clip_len, "stride": stride, "size": size,
            "short_side": short_side}
    obj = {"lightvid": {"model": name, "model_kwargs": kwargs, "num_classes": len(classes), "classes": classes,
                        "config": {"data": data}},
           "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}
    return save_atomic(obj, tmp_path / f"{name}.ckpt")


def long_video(tiny_synth, path, clips=4):
    """Consecutive synthetic clips written as one video (25 fps)."""
    from lightvid.data.synth import write_mp4
    from lightvid.data.video import read_all_frames

    files = sorted((tiny_synth / "val").rglob("*.mp4"))[:clips]
    write_mp4(path, np.concatenate([read_all_frames(f).numpy() for f in files]))
    return path


def test_parse_span_and_grid():
    assert parse_span("2") == (2.0, "s") and parse_span("2.5s") == (2.5, "s") and parse_span("32f") == (32.0, "f")
    for bad in ("x", "0", "-1s"):
        with pytest.raises(UserError, match="--window"):
            parse_span(bad)
    assert window_grid(10.0, 2.0, 1.0) == (9, 2.0)
    assert window_grid(10.0, 2.0, 3.0) == (3, 2.0)
    assert window_grid(1.5, 2.0, 1.0) == (1, 1.5)  # shorter than one window: one window over all of it


def test_moving_average_matches_naive():
    x = np.random.default_rng(0).random((7, 3))
    for k in (1, 2, 3, 5, 9):
        got = moving_average(x, k)
        want = np.stack([x[max(0, i - k // 2): i + (k - 1) // 2 + 1].mean(0) for i in range(len(x))])
        np.testing.assert_allclose(got, want, atol=1e-12)


def test_windows_are_the_frames_on_screen(tiny_synth, tmp_path):
    from lightvid.data.video import probe, read_clip

    video = long_video(tiny_synth, tmp_path / "long.mp4")  # 32 frames, 1.28 s
    im = load_inference_model(str(make_checkpoint(tmp_path)))
    tl = predict_timeline(im, str(video), window=(0.4, "s"), stride=(6, "f"), batch=3, progress=False)
    info = probe(video)
    n, _ = window_grid(info.frames / info.fps, 0.4, 6 / info.fps)
    assert len(tl.starts) == n == 4 and tl.probs.shape == (n, 4)
    np.testing.assert_allclose(tl.starts, np.arange(n) * 6 / 25, atol=1e-9)
    np.testing.assert_allclose(tl.ends - tl.starts, 0.4, atol=1e-9)
    np.testing.assert_allclose(tl.probs.sum(1), 1, atol=1e-5)
    for k in range(n):
        times = tl.starts[k] + 0.4 * (np.arange(8) + 0.5) / 8
        idx = [min(int(math.floor(t * info.fps + 1e-9)), info.frames - 1) for t in times]
        x = im.prepare(read_clip(video, idx))[None]
        with torch.no_grad():
            want = im.model(x).softmax(-1)[0].numpy()
        np.testing.assert_allclose(tl.probs[k], want, atol=1e-5)


def test_short_video_one_window_and_default_window(tiny_synth, tmp_path):
    clip = sorted((tiny_synth / "val").rglob("*.mp4"))[0]  # 8 frames at 25 fps
    im = load_inference_model(str(make_checkpoint(tmp_path, stride=2)))
    tl = predict_timeline(im, str(clip), progress=False)  # default window: 8 frames 2 apart = 15 frames
    assert len(tl.starts) == 1 and tl.ends[0] == pytest.approx(8 / 25)
    video = long_video(tiny_synth, tmp_path / "long.mp4")
    tl = predict_timeline(im, str(video), progress=False)
    assert tl.window == pytest.approx(15 / 25) and tl.stride == tl.window and len(tl.starts) == 2


def test_cli_writes_json_csv_png_and_refuses_to_overwrite(tiny_synth, tmp_path, capsys):
    video = long_video(tiny_synth, tmp_path / "long.mp4")
    ckpt = make_checkpoint(tmp_path)
    out = tmp_path / "out"
    args = ["predict", str(ckpt), str(video), "--window", "8f", "--stride", "4f", "--smooth", "3", "--topk", "2",
            "--out", str(out), "--quiet"]
    assert main(args) == 0
    doc = json.loads((out / "long.timeline.json").read_text())
    assert doc["windows"] == 7 and doc["smooth"] == 3 and len(doc["timeline"][0]["topk"]) == 2
    assert doc["clips_per_s"] > 0 and doc["peak_rss_mb"] > 0
    rows = (out / "long.timeline.csv").read_text().splitlines()
    assert rows[0] == "start,end,class1,prob1,class2,prob2" and len(rows) == 8
    assert (out / "long.timeline.png").read_bytes()[:4] == b"\x89PNG"
    before = (out / "long.timeline.csv").read_text()
    assert main(args) == 2  # exists: refused, nothing replaced
    assert "exists" in capsys.readouterr().err and (out / "long.timeline.csv").read_text() == before
    assert main(args + ["--force", "--smooth", "1"]) == 0


def test_cli_bad_file_one_line_error(tmp_path, capsys):
    ckpt = make_checkpoint(tmp_path)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00not a video" * 10)
    assert main(["predict", str(ckpt), str(bad), str(tmp_path / "missing.mp4"), "--window", "1", "--quiet"]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 2 and "bad.mp4" in err[0] and "missing.mp4" in err[1]


@pytest.mark.slow
def test_timeline_real_kinetics_clip(shared_data, tmp_path, capsys):
    from lightvid.data.video import probe

    video = sorted((shared_data / "kinetics5" / "predict").glob("*.mp4"))[0]
    ckpt = make_checkpoint(tmp_path, "r2plus1d_18", {"width_mult": 0.25}, size=64, short_side=64,
                           classes=["archery", "bowling", "flying_kite", "high_jump", "marching"])
    assert main(["predict", str(ckpt), str(video), "--window", "1", "--stride", "0.5", "--json", "--quiet",
                 "--precision", "fp32"]) == 0
    doc = json.loads(capsys.readouterr().out)
    info = probe(video)
    assert doc["windows"] == window_grid(info.frames / info.fps, 1.0, 0.5)[0] > 10
    assert doc["timeline"][-1]["end"] <= info.frames / info.fps + 1e-6
