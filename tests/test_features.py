"""lightvid features: pre_logits embeddings per clip and video, sharded, resumable, with an index CSV."""
import csv

import numpy as np
import pytest
import torch
from test_timeline import make_checkpoint

from lightvid.accel.runtime import load_inference_model
from lightvid.analysis.features import extract_features, list_videos, load_features
from lightvid.cli import main
from lightvid.data.video import probe, read_clip


def test_features_match_the_model_and_index(tiny_synth, tmp_path):
    ckpt = make_checkpoint(tmp_path, stride=1)
    im = load_inference_model(str(ckpt))
    videos = list_videos(str(tiny_synth / "val"))
    assert len(videos) == 8 and {lab for _, lab in videos} == {"right", "left", "down", "up"}
    run = extract_features(im, videos, tmp_path / "f", clips=2, batch=3, shard_size=3, progress=False)
    assert (run.videos, run.clips, run.shards, run.failed) == (8, 16, 3, 0)
    clips, clip_rows = load_features(tmp_path / "f", "clips")
    vids, vid_rows = load_features(tmp_path / "f", "videos")
    assert clips.shape == (16, im.model.num_features) and vids.shape == (8, im.model.num_features)
    assert [r["path"] for r in vid_rows] == [p for p, _ in videos]
    # the first video's clips, recomputed directly
    path = videos[0][0]
    info = probe(path)
    idx = im.sampler.eval_clips(info.frames, info.fps, 2)
    x = torch.stack([im.prepare(read_clip(path, i)) for i in idx])
    with torch.no_grad():
        want = im.model.forward_head(im.model.forward_features(x), pre_logits=True).numpy()
    np.testing.assert_allclose(clips[:2], want, atol=1e-5)
    np.testing.assert_allclose(vids[0], want.mean(0), atol=1e-5)
    assert float(clip_rows[1]["start"]) == pytest.approx(min(idx[1]) / info.fps)
    with open(tmp_path / "f" / "index.csv", newline="") as f:
        index = list(csv.DictReader(f))
    assert len(index) == 24 and index[0]["shard"] == "shard-00000"


def test_features_resume_and_bad_files(tiny_synth, tmp_path, capsys):
    ckpt = make_checkpoint(tmp_path)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    listing = tmp_path / "list.txt"
    files = sorted((tiny_synth / "val").rglob("*.mp4"))
    listing.write_text("".join(f"{f} {f.parent.name}\n" for f in files[:5]) + f"{bad}\n")
    out = tmp_path / "f"
    args = ["features", str(ckpt), str(listing), "--out", str(out), "--shard-size", "2", "--quiet",
            "--format", "safetensors"]
    assert main(args) == 1  # one failed video
    err = capsys.readouterr().err
    assert "bad.mp4" in err and "5 videos" in err and "1 failed" in err
    first = sorted(out.glob("shard-*.safetensors"))
    assert len(first) == 3
    mtime = first[0].stat().st_mtime_ns
    (out / "shard-00002.csv").unlink()  # as if killed before the last shard was finished
    listing.write_text("".join(f"{f} {f.parent.name}\n" for f in files[:6]))
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "2 videos" in err and "4 already done" in err
    assert first[0].stat().st_mtime_ns == mtime  # finished shards are kept as they are
    vids, rows = load_features(out, "videos")
    assert sorted(r["path"] for r in rows) == sorted(map(str, files[:6])) and len(vids) == 6


@pytest.mark.slow
def test_features_real_kinetics(shared_data, tmp_path):
    videos = list_videos(str(shared_data / "kinetics5" / "val"))
    assert len(videos) == 44 and "archery" in {lab for _, lab in videos}
    im = load_inference_model("r2plus1d_18", model_kwargs={"width_mult": 0.25, "num_classes": 5})
    im.cfg.clip_len, im.cfg.size, im.cfg.short_side = 8, 64, 64
    im.transform.size, im.transform.short_side = 64, 64
    run = extract_features(im, videos[::11], tmp_path / "k", clips=2, progress=False)
    assert run.videos == 4 and run.failed == 0
    vids, _ = load_features(tmp_path / "k")
    assert vids.shape == (4, im.model.num_features) and np.isfinite(vids).all()
