"""Decoding: exact frames after seeking, variable frame rate, audio, odd sizes, bad files."""
from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from lightvid.data import video
from lightvid.data.video import VideoDecodeError, output_size, probe, read_all_frames, read_clip


def make_video(path, n=40, w=48, h=32, keyint=5, pix_fmt="yuv420p", durations=None, audio=False, faststart=False):
    """A test video of ``n`` distinct frames (moving noise); ``durations`` (ms per frame) makes it VFR."""
    rng = np.random.default_rng(0)
    tex = rng.integers(0, 256, (h, w * 4, 3), dtype=np.uint8)
    opts = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", format="mp4", options=opts) as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        s.options = {"g": str(keyint), "keyint_min": str(keyint), "bf": "2", "qp": "10", "preset": "ultrafast"}
        s.codec_context.time_base = Fraction(1, 1000)
        a = c.add_stream("aac", rate=16000) if audio else None
        pts = 0
        for t in range(n):
            frame = np.ascontiguousarray(tex[:, 2 * t: 2 * t + w])
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts, vf.time_base = pts, Fraction(1, 1000)
            pts += durations[t % len(durations)] if durations else 40
            for p in s.encode(vf):
                c.mux(p)
            if a is not None:
                af = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
                af.sample_rate, af.pts = 16000, t * 1024
                for p in a.encode(af):
                    c.mux(p)
        for p in s.encode():
            c.mux(p)
        if a is not None:
            for p in a.encode():
                c.mux(p)
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    return {
        "cfr": make_video(d / "cfr.mp4"),
        "vfr": make_video(d / "vfr.mp4", durations=[20, 60, 33, 100, 40]),
        "audio": make_video(d / "audio.mp4", audio=True, n=30),
        "odd": make_video(d / "odd.mp4", w=33, h=47, pix_fmt="yuv444p", n=12),
    }


@pytest.mark.parametrize("name", ["cfr", "vfr", "audio", "odd"])
def test_read_clip_is_exact(videos, name):
    path = videos[name]
    full = read_all_frames(path)
    n = probe(path).frames
    assert n == len(full)
    assert len({f.numpy().tobytes() for f in full}) == n  # frames are distinct, so indices are checkable
    rng = np.random.default_rng(1)
    cases = [[0], [n - 1], list(range(n)), [n - 1, 0, n // 2, n // 2]]
    cases += [sorted(rng.choice(n, size=min(6, n), replace=False).tolist()) for _ in range(5)]
    cases += [list(range(s, min(s + 8, n))) for s in (3, n // 2 + 1)]
    for fresh in (True, False):  # a first read (index built on the spot) and a cached-index read
        for idx in cases:
            if fresh:
                video._INDEX_CACHE.clear()
            assert torch.equal(read_clip(path, idx), full[idx]), (fresh, idx)


def test_probe_and_shapes(videos):
    info = probe(videos["cfr"])
    assert (info.frames, info.width, info.height) == (40, 48, 32) and abs(info.fps - 25) < 0.01
    assert probe(videos["odd"])[2:] == (33, 47)
    assert probe(videos["vfr"]).frames == 40
    clip = read_clip(videos["odd"], [0, 1, 2])
    assert clip.shape == (3, 47, 33, 3) and clip.dtype == torch.uint8
    last = read_clip(videos["cfr"], lambda info: [info.frames - 1])  # indices from the opened file's info
    assert torch.equal(last, read_all_frames(videos["cfr"])[-1:])
    small = read_clip(videos["cfr"], [4, 5], short_side=16)
    assert small.shape == (2, 16, 24, 3)
    assert output_size(33, 47, 16) == (16, 23)


def test_bad_files(tmp_path, videos):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "text.mp4"
    text.write_text("not a video\n")
    with pytest.raises(VideoDecodeError, match="missing.mp4: no such file"):
        read_clip(tmp_path / "missing.mp4", [0])
    with pytest.raises(VideoDecodeError, match="empty.mp4: empty file"):
        probe(empty)
    with pytest.raises(VideoDecodeError, match="text.mp4: not a readable video"):
        read_clip(text, [0])
    with pytest.raises(VideoDecodeError, match=r"frame index 40 outside \[0, 40\)"):
        read_clip(videos["cfr"], [39, 40])


def test_truncated_file(tmp_path):
    """moov first (faststart) then a cut in the frame data: a clear error naming the file, not garbage."""
    whole = make_video(tmp_path / "whole.mp4", n=40, faststart=True)
    data = whole.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(VideoDecodeError, match="cut.mp4"):
        read_clip(cut, [0, 39])
    assert read_clip(cut, [0, 1]).shape[0] == 2  # the intact start still reads


def test_kinetics_raw_quirks(shared_data):
    """Audio + portrait 406x720, 140x96 at 10 fps, 320x240 at ~23 fps: exact frames after seeking."""
    paths = sorted((shared_data / "kinetics5-raw").rglob("*.mp4"))
    assert len(paths) == 3
    sizes = set()
    for path in paths:
        info = probe(path)
        sizes.add((info.width, info.height))
        full = read_all_frames(path, short_side=64)
        assert len(full) == info.frames
        for idx in ([0, 1, 2], list(range(info.frames // 2, info.frames // 2 + 16, 2)), [info.frames - 1]):
            assert torch.equal(read_clip(path, idx, short_side=64), full[idx])
    assert (406, 720) in sizes and (140, 96) in sizes
