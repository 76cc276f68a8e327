"""Video decoding with PyAV: exact frames, one open per sample, seek then decode forward.

``read_clip(path, frame_indices)`` opens the file once, seeks to the keyframe before the
first needed frame and decodes forward only as far as the last needed one. Frame ``i`` is
the ``i``-th frame in presentation order: the index is built from the packets' timestamps
(demuxing, no decoding; cached per process), so indices are exact under variable frame
rates and B-frames, never keyframe-approximate. Audio and other streams are ignored.
Frames are converted to RGB only when needed, optionally resized in the same step
(libswscale), which is much cheaper than resizing a full-size tensor afterwards.

``read_all_frames`` is the naive baseline (decode everything, then index) that
``benchmarks/bench_data.py`` compares against.
"""
from __future__ import annotations

import io
import os
from collections import OrderedDict
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch

from lightvid.errors import UserError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg")
_INDEX_CACHE: OrderedDict = OrderedDict()  # (path, mtime, size) -> _Index
_INDEX_CACHE_SIZE = 4096


class VideoDecodeError(UserError):
    """A video that cannot be read; the message names the file and the reason."""


class VideoBytes:
    """An encoded video held in memory (a member of a tar shard); ``name`` appears in error messages.

    ``read_clip`` and ``probe`` accept it wherever they accept a path; its index is not cached.
    """

    __slots__ = ("data", "name")

    def __init__(self, name: str, data: bytes):
        self.name, self.data = name, data

    def __str__(self) -> str:
        return self.name

    __repr__ = __str__


def as_source(path) -> Path | VideoBytes:
    return path if isinstance(path, VideoBytes) else Path(path)


class VideoInfo(NamedTuple):
    frames: int
    fps: float
    width: int
    height: int


class _Index(NamedTuple):
    pts: np.ndarray  # (frames,) presentation timestamps in stream time base, sorted
    key_pts: np.ndarray  # presentation timestamps of keyframes, sorted
    key_seek: np.ndarray  # the seek target of each keyframe: min(pts, dts)
    info: VideoInfo


def _open(path: Path | VideoBytes):
    import av

    in_memory = isinstance(path, VideoBytes)
    if not in_memory and not path.is_file():
        raise VideoDecodeError(f"{path}: no such file")
    if not (path.data if in_memory else path.stat().st_size):
        raise VideoDecodeError(f"{path}: empty file")
    try:
        container = av.open(io.BytesIO(path.data) if in_memory else str(path))
    except av.FFmpegError as e:
        raise VideoDecodeError(f"{path}: not a readable video ({_reason(e)})") from None
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(f"{path}: no video stream")
    return container


def _reason(e: Exception) -> str:
    text = getattr(e, "strerror", None) or str(e)
    return text.splitlines()[0] if text else type(e).__name__


def _build_index(path: Path, container) -> _Index:
    import av

    stream = container.streams.video[0]
    pts, keys = [], []
    try:
        for packet in container.demux(stream):
            if packet.size == 0:  # the flush packet at the end
                continue
            ts = packet.pts if packet.pts is not None else packet.dts
            ts = ts if ts is not None else len(pts)
            pts.append(ts)
            if packet.is_keyframe:
                keys.append((ts, min(ts, packet.dts) if packet.dts is not None else ts))
    except av.FFmpegError as e:
        if not pts:
            raise VideoDecodeError(f"{path}: cannot read packets ({_reason(e)})") from None
    if not pts:
        raise VideoDecodeError(f"{path}: no video frames")
    pts = np.unique(np.asarray(pts, dtype=np.int64))  # presentation order; duplicates collapse
    ctx = stream.codec_context
    fps = float(stream.average_rate) if stream.average_rate else 0.0
    if not fps and len(pts) > 1 and stream.time_base:
        fps = float((len(pts) - 1) / ((pts[-1] - pts[0]) * stream.time_base))
    info = VideoInfo(len(pts), fps, int(ctx.width), int(ctx.height))
    if info.width <= 0 or info.height <= 0:
        raise VideoDecodeError(f"{path}: video stream has no frame size")
    keys = sorted(keys) or [(int(pts[0]), int(pts[0]))]
    return _Index(pts, np.array([k[0] for k in keys]), np.array([k[1] for k in keys]), info)


def _cache_key(path: Path) -> tuple:
    try:
        st = path.stat()
    except OSError:
        raise VideoDecodeError(f"{path}: no such file") from None
    return str(path), st.st_mtime_ns, st.st_size


def _cached(path) -> _Index | None:
    if isinstance(path, VideoBytes):
        return None
    key = _cache_key(path)
    hit = _INDEX_CACHE.get(key)
    if hit is not None:
        _INDEX_CACHE.move_to_end(key)
    return hit


def _index(path: Path, container) -> _Index:
    """Build (demuxing the whole stream: the container is left at its end) and cache the index."""
    idx = _build_index(path, container)
    if isinstance(path, VideoBytes):
        return idx
    _INDEX_CACHE[_cache_key(path)] = idx
    if len(_INDEX_CACHE) > _INDEX_CACHE_SIZE:
        _INDEX_CACHE.popitem(last=False)
    return idx


def probe(path: str | os.PathLike) -> VideoInfo:
    """``(frames, fps, width, height)`` of a video, exact frame count from its packets."""
    path = as_source(path)
    hit = _cached(path)
    if hit is not None:
        return hit.info
    container = _open(path)
    try:
        return _index(path, container).info
    finally:
        container.close()


def output_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    """``(w, h)`` after resizing the short side to ``short_side`` (keeping the aspect ratio)."""
    if not short_side:
        return width, height
    if width <= height:
        return short_side, max(1, round(height * short_side / width))
    return max(1, round(width * short_side / height)), short_side


def read_clip(path: str | os.PathLike, frame_indices: Sequence[int] | Callable[[VideoInfo], Sequence[int]],
              short_side: int | None = None, threads: int = 1) -> torch.Tensor:
    """Exact frames ``frame_indices`` (any order, repeats allowed) as uint8 ``(T, H, W, 3)`` RGB.

    ``frame_indices`` may be a function of the video's :class:`VideoInfo` (a sampler needs
    the frame count): the file is then still opened only once. ``short_side`` resizes while
    converting (bilinear, aspect kept). Raises
    :class:`VideoDecodeError` naming the file for a missing, empty, non-video or truncated
    file, or an index outside ``[0, frames)``. ``path`` may be a :class:`VideoBytes`.
    """
    path = as_source(path)
    container = _open(path)
    try:
        idx = _cached(path)
        fresh = idx is None
        if fresh:
            idx = _index(path, container)  # leaves the container at the end: always seek below
        n = idx.info.frames
        indices = [int(i) for i in (frame_indices(idx.info) if callable(frame_indices) else frame_indices)]
        if not indices:
            raise ValueError("read_clip needs at least one frame index")
        bad = [i for i in indices if not 0 <= i < n]
        if bad:
            raise VideoDecodeError(f"{path}: frame index {bad[0]} outside [0, {n})")
        want = {int(idx.pts[i]): None for i in sorted(set(indices))}
        first, last = min(want), max(want)
        # The keyframe at or before the first wanted frame; demuxers such as mp4 seek by decode
        # time, which B-frames put before presentation time, hence min(pts, dts).
        k = int(np.searchsorted(idx.key_pts, first, side="right")) - 1
        seek_to = int(idx.key_seek[k]) if k > 0 else None
        if fresh and seek_to is None:  # back to the start: reopening is cheaper than a seek
            container.close()
            container = _open(path)
        stream = container.streams.video[0]
        stream.codec_context.thread_count = threads
        w, h = output_size(idx.info.width, idx.info.height, short_side)
        if (w, h) == (idx.info.width, idx.info.height):
            w = None  # no resize: plain RGB conversion
        got = _decode_into(path, container, stream, want, last, seek_to, w, h)
        if got < len(want) and seek_to is not None:  # a demuxer that seeked past the frame: decode from the start
            got = _decode_into(path, container, stream, want, last, int(idx.key_seek[0]), w, h)
        if got < len(want):
            missing = [i for i in sorted(set(indices)) if want[int(idx.pts[i])] is None]
            raise VideoDecodeError(f"{path}: truncated or corrupt, frame {missing[0]} of {n} could not be decoded")
        frames = np.stack([want[int(idx.pts[i])] for i in indices])  # (T, H, W, 3)
    finally:
        container.close()
    return torch.from_numpy(frames)


def _decode_into(path, container, stream, want: dict, last: int, seek_to: int | None, w: int | None, h: int) -> int:
    """Decode from ``seek_to`` (``None``: where the container is) until every key of ``want`` is filled."""
    import av

    if seek_to is not None:
        container.seek(seek_to, backward=True, any_frame=False, stream=stream)
    got = sum(v is not None for v in want.values())
    ctx = stream.codec_context
    skipping = False
    try:
        for packet in container.demux(stream):
            # A frame nobody wants that no other frame refers to (a non-reference B-frame)
            # need not be decoded at all: the decoder drops it while parsing.
            pts = packet.pts if packet.pts is not None else packet.dts
            skip = packet.size > 0 and pts is not None and pts not in want
            if skip != skipping:
                ctx.skip_frame, skipping = ("NONREF" if skip else "DEFAULT"), skip
            for frame in ctx.decode(packet):
                ts = frame.pts if frame.pts is not None else frame.dts
                if ts in want and want[ts] is None:
                    if w:
                        want[ts] = frame.reformat(width=w, height=h, format="rgb24",
                                                  interpolation="BILINEAR").to_ndarray()
                    else:
                        want[ts] = frame.to_ndarray(format="rgb24")
                    got += 1
                if ts is not None and ts > last:
                    return got
            if got == len(want):
                return got
    except av.FFmpegError as e:
        raise VideoDecodeError(f"{path}: decoding failed ({_reason(e)})") from None
    finally:
        ctx.skip_frame = "DEFAULT"
    return got


def read_all_frames(path: str | os.PathLike, short_side: int | None = None) -> torch.Tensor:
    """Naive baseline: decode every frame to RGB ``(N, H, W, 3)`` (no seeking, no index)."""
    import av

    path = as_source(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        frames = []
        for frame in container.decode(stream):
            if short_side:
                w, h = output_size(frame.width, frame.height, short_side)
                frames.append(frame.reformat(width=w, height=h, format="rgb24", interpolation="BILINEAR").to_ndarray())
            else:
                frames.append(frame.to_ndarray(format="rgb24"))
    except av.FFmpegError as e:
        raise VideoDecodeError(f"{path}: decoding failed ({_reason(e)})") from None
    finally:
        container.close()
    if not frames:
        raise VideoDecodeError(f"{path}: no video frames")
    return torch.from_numpy(np.stack(frames))


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS
