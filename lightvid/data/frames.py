"""Sequential frame streams with PyAV: files, camera devices and network URLs, frame by frame.

``open_source(source)`` opens anything FFmpeg opens (a file, ``/dev/video0`` with
``fmt="v4l2"``, an ``rtsp://`` or ``http://`` URL); an unreadable source is a one-line
:class:`~lightvid.data.video.VideoDecodeError` naming it. ``iter_frames`` decodes forward
only, one frame at a time, and yields :class:`StreamFrame` with the frame's presentation
time in seconds and the still-undecoded-to-RGB PyAV frame: ``to_rgb(frame, short_side)``
converts (and resizes in the same libswscale step) only the frames a caller keeps, so
long videos are streamed with memory bounded by what the caller holds, never the video.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np

from lightvid.data.video import VideoDecodeError, output_size


class StreamFrame(NamedTuple):
    time: float  # seconds since the stream's first frame
    frame: object  # av.VideoFrame


def is_live(source: str | os.PathLike) -> bool:
    """A source that is not a regular file: a device, a URL, a pipe."""
    return not Path(source).is_file()


def _reason(e: Exception) -> str:
    text = getattr(e, "strerror", None) or str(e)
    return text.splitlines()[0] if text else type(e).__name__


def open_source(source: str | os.PathLike, fmt: str | None = None, options: dict | None = None):
    """``(container, video stream)`` of ``source``; one-line :class:`VideoDecodeError` when it cannot be read."""
    import av

    text = str(source)
    local = "://" not in text and not text.startswith("/dev/") and fmt is None
    if local:
        path = Path(text)
        if not path.exists():
            raise VideoDecodeError(f"{text}: no such file")
        if path.is_file() and path.stat().st_size == 0:
            raise VideoDecodeError(f"{text}: empty file")
    try:
        container = av.open(text, format=fmt, options=options or {}, timeout=10.0)
    except (av.FFmpegError, OSError, ValueError) as e:
        raise VideoDecodeError(f"{text}: cannot open ({_reason(e)})") from None
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(f"{text}: no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return container, stream


def stream_fps(stream) -> float:
    """The stream's nominal frame rate (0.0 when unknown)."""
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 0.0


def iter_frames(container, stream, name: str = "video") -> Iterator[StreamFrame]:
    """Decoded frames in presentation order, times relative to the first frame (seconds)."""
    import av

    t0 = None
    count = 0
    fps = stream_fps(stream) or 25.0
    try:
        for frame in container.decode(stream):
            t = frame.time
            if t is None:  # no timestamps (raw streams): frame counting at the nominal rate
                t = count / fps
            if t0 is None:
                t0 = t
            count += 1
            yield StreamFrame(float(t - t0), frame)
    except av.FFmpegError as e:
        raise VideoDecodeError(f"{name}: decoding failed after {count} frames ({_reason(e)})") from None
    if count == 0:
        raise VideoDecodeError(f"{name}: no video frames")


def to_rgb(frame, short_side: int | None = None) -> np.ndarray:
    """uint8 ``(H, W, 3)`` RGB of a PyAV frame, the short side resized to ``short_side`` when set."""
    w, h = output_size(frame.width, frame.height, short_side)
    if (w, h) == (frame.width, frame.height):
        return frame.to_ndarray(format="rgb24")
    return frame.reformat(width=w, height=h, format="rgb24", interpolation="BILINEAR").to_ndarray()
