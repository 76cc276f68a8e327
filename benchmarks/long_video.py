"""Long test videos for the video tools: synthetic clips encoded once, then looped by remuxing (no re-encoding).

    python benchmarks/long_video.py OUT.mp4 --minutes 60 --size 64 [--synth .cache/synth-motion10]

One segment (``--segment`` seconds of consecutive synthetic validation clips, resized to
``--size``, 25 fps, x264 ultrafast: no B-frames, an IDR frame first) is encoded, then its
packets are written ``minutes * 60 / segment`` times with shifted timestamps: an hour of
64x64 video takes seconds to make and stays small on disk.

The benchmarks of the video tools share :data:`DEMO_SYNTH` (the demo set of
``configs/quickstart.yaml``), :func:`demo_synth_set` and :func:`cached_long_video`.
"""
from __future__ import annotations

import argparse
import os
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEMO_SYNTH = REPO / ".cache" / "synth-motion10"  # configs/quickstart.yaml's data.root
LONG_VIDEO_CACHE = REPO / ".cache" / "long-videos"


def demo_synth_set(path: str | Path = DEMO_SYNTH) -> Path:
    """``path`` if it holds a finished synthetic set, else exit with how to make one."""
    from lightvid.data.synth import read_stamp

    path = Path(path)
    if read_stamp(path) is None:
        sys.exit(f"{path}: no finished synthetic set (synth.json); make it by training the demo "
                 "(lightvid train --config configs/quickstart.yaml) or with lightvid synth")
    return path


def cached_long_video(minutes: float, size: int, synth: str | Path = DEMO_SYNTH, cache: str | Path = LONG_VIDEO_CACHE,
                      segment_s: int = 60) -> Path:
    """``cache/loop-<minutes>min-<size>px.mp4``, made by :func:`make_long_video` the first time."""
    Path(cache).mkdir(parents=True, exist_ok=True)
    video = Path(cache) / f"loop-{minutes:g}min-{size}px.mp4"
    if not video.is_file():
        make_long_video(video, minutes, size, demo_synth_set(synth), segment_s=segment_s)
    return video


def encode_segment(path: Path, frames: np.ndarray, fps: int = 25) -> None:
    import av

    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=Fraction(fps))
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.options = {"preset": "ultrafast", "qp": "26", "g": "250"}
        for t, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts, vf.time_base = t, Fraction(1, fps)
            for p in s.encode(vf):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def loop_remux(segment: Path, out: Path, copies: int) -> None:
    import av

    with av.open(str(segment)) as src, av.open(str(out), "w", format="mp4") as dst:
        ins = src.streams.video[0]
        outs = dst.add_stream_from_template(ins)
        packets = [p for p in src.demux(ins) if p.size]
        step = max(p.pts for p in packets) + packets[1].pts - packets[0].pts  # segment length in time base
        for k in range(copies):
            for p in packets:
                p.pts += step if k else 0
                p.dts += step if k else 0
                p.stream = outs
                dst.mux(p)


def make_long_video(out: str | Path, minutes: float, size: int, synth: str, segment_s: int = 60) -> Path:
    import cv2

    from lightvid.data.video import read_all_frames

    out = Path(out)
    segment_s = max(1, min(segment_s, int(round(minutes * 60))))  # a short video is one shorter segment
    files = sorted((Path(synth) / "val").rglob("*.mp4"))
    frames, need = [], segment_s * 25
    for f in files:
        frames.extend(read_all_frames(f).numpy())
        if len(frames) >= need:
            break
    seg = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_LINEAR) for f in frames[:need]])
    tmp = out.with_suffix(".segment.mp4")
    part = out.with_name(f".{out.name}.part.mp4")  # a killed run leaves no half video under the cached name
    encode_segment(tmp, seg)
    loop_remux(tmp, part, max(1, int(round(minutes * 60 / segment_s))))
    tmp.unlink()
    os.replace(part, out)
    return out


def make_segments_video(out: str | Path, classes: list[str], seconds: float, synth: str | Path = DEMO_SYNTH) -> Path:
    """Consecutive validation clips of each class in turn, at least ``seconds`` per class (whole clips), 25 fps.

    A labelled long video for the timeline picture: segment ``k`` shows only whole clips of
    ``classes[k]`` (so every segment and clip boundary is a multiple of the clip length),
    at the set's own size. Returns the path; the segments' start times are printed.
    """
    from lightvid.data.synth import write_mp4
    from lightvid.data.video import read_all_frames

    synth = demo_synth_set(synth)
    frames = []
    for cls in classes:
        files = sorted((synth / "val" / cls).glob("*.mp4"))
        if not files:
            sys.exit(f"{synth}/val/{cls}: no clips of that class")
        seg, need = [], int(round(seconds * 25))
        for f in files:
            seg.extend(read_all_frames(f).numpy())
            if len(seg) >= need:
                break
        print(f"{cls}: {len(frames) / 25:.2f}-{(len(frames) + len(seg)) / 25:.2f} s")
        frames.extend(seg)  # whole clips: no clip is cut at a segment boundary
    out = Path(out)
    part = out.with_name(f".{out.name}.part.mp4")
    write_mp4(part, np.stack(frames))
    os.replace(part, out)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--segment", type=int, default=60, help="seconds encoded once, then looped")
    ap.add_argument("--synth", default=str(DEMO_SYNTH))
    ap.add_argument("--classes", nargs="+", default=None, help="instead: segments of these classes' clips, in turn "
                    "(--segment seconds each, the set's own size)")
    a = ap.parse_args()
    if a.classes:
        p = make_segments_video(a.out, a.classes, a.segment, a.synth)
    else:
        p = make_long_video(a.out, a.minutes, a.size, a.synth, a.segment)
    from lightvid.data.video import probe

    info = probe(p)
    print(f"{p}: {info.frames} frames, {info.frames / info.fps / 60:.1f} min, {info.width}x{info.height}, "
          f"{p.stat().st_size / 2**20:.1f} MB")
