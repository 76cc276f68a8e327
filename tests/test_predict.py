"""lightvid predict: top-k from a load_model checkpoint; bad files get one-line errors, others still run."""
import json

import numpy as np
import pytest
import torch

import lightvid
from lightvid.accel.predict import Predictor
from lightvid.checkpoint import save_atomic
from lightvid.cli import main

CLASSES = ["left", "right", "up"]


def _checkpoint(tmp_path, name="c3d", kwargs=None, clip_len=16, size=32):
    kwargs = kwargs or {"width_mult": 0.125}
    torch.manual_seed(0)
    model = lightvid.create_model(name, num_classes=len(CLASSES), **kwargs)
    data = {"root": str(tmp_path), "format": "folders", "clip_len": clip_len, "stride": 1, "size": size,
            "short_side": size, "eval_clips": 2}
    obj = {"lightvid": {"model": name, "model_kwargs": kwargs, "num_classes": len(CLASSES), "classes": CLASSES,
                        "config": {"data": data}},
           "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}
    path = save_atomic(obj, tmp_path / "best.ckpt")
    return path, model.eval()


def _video(path, frames=20, size=40):
    from lightvid.data.synth import write_mp4

    rng = np.random.default_rng(0)
    write_mp4(path, rng.integers(0, 255, (frames, size, size, 3), dtype=np.uint8))
    return path


def test_predict_averages_clips_like_the_model(tmp_path):
    ckpt, model = _checkpoint(tmp_path)
    video = _video(tmp_path / "a.mp4")
    pred = Predictor(str(ckpt), clips=3, topk=2)
    x = pred.clips_of(str(video))
    assert x.shape == (3, 3, 16, 32, 32)
    r = pred.predict(str(video))
    assert r.error is None and r.clips == 3 and len(r.topk) == 2
    with torch.no_grad():
        probs = model(x).softmax(-1).mean(0)
    top = probs.argmax().item()
    assert r.topk[0][0] == CLASSES[top]
    assert abs(r.topk[0][1] - probs[top].item()) < 1e-4
    assert r.topk[0][1] >= r.topk[1][1]


def test_predict_cli_bad_file_does_not_stop_others(tmp_path, capsys):
    ckpt, _ = _checkpoint(tmp_path)
    good = _video(tmp_path / "good.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00not a video" * 10)
    rc = main(["predict", str(ckpt), str(bad), str(good), str(tmp_path / "missing.mp4"), "--topk", "3",
               "--clips", "2", "--json"])
    out, err = capsys.readouterr()
    assert rc == 1
    rows = [json.loads(line) for line in out.strip().splitlines()]
    assert [("error" in r) for r in rows] == [True, False, True]
    assert len(rows[1]["topk"]) == 3 and abs(sum(t["prob"] for t in rows[1]["topk"]) - 1) < 1e-4
    err_lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(err_lines) == 2 and "bad.mp4" in err_lines[0] and "missing.mp4" in err_lines[1]
    assert main(["predict", str(ckpt), str(good)]) == 0
    assert "good.mp4" in capsys.readouterr().out


def test_predict_rejects_non_checkpoint(tmp_path):
    path = save_atomic({"weight": torch.zeros(1)}, tmp_path / "plain.pt")
    assert main(["predict", str(path), "x.mp4"]) == 2


@pytest.mark.slow
def test_predict_real_kinetics_clips(shared_data, tmp_path, capsys):
    videos = sorted((shared_data / "kinetics5" / "predict").glob("*.mp4"))[:2]
    ckpt, _ = _checkpoint(tmp_path, "r2plus1d_18", {"width_mult": 0.25}, clip_len=8, size=64)
    assert main(["predict", str(ckpt), *map(str, videos), "--clips", "2", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert len(rows) == 2 and all(len(r["topk"]) == 3 for r in rows)
