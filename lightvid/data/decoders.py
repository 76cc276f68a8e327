"""Video decoders behind ``data.decoder``: ``pyav`` (the default), ``decord`` and ``torchcodec``.

Each decoder has ``read_clip(source, frame_indices, short_side=None)`` with the contract of
:func:`lightvid.data.video.read_clip` (exact frames ``frame_indices``, or a function of the
video's :class:`~lightvid.data.video.VideoInfo`, as uint8 ``(T, H, W, 3)`` RGB; ``source`` a path
or :class:`~lightvid.data.video.VideoBytes`) and ``probe(source)``. Frame ``i`` is the ``i``-th
frame in presentation order for all three; ``tests/test_data_scale.py`` compares decord and
torchcodec with PyAV frame by frame on the real clips.

* ``pyav``: :mod:`lightvid.data.video` (seek to the keyframe, decode forward, skip unwanted
  non-reference frames, resize in libswscale while converting).
* ``decord`` (``pip install decord``, the ``decord`` extra): ``VideoReader.get_batch``;
  with ``short_side`` the frames are resized afterwards with OpenCV (bilinear), so pixel
  values differ slightly from PyAV's libswscale resize (the frames chosen do not).
* ``torchcodec``: ``VideoDecoder(seek_mode="exact").get_frames_at``; its PyPI build loads
  only next to the torch it was built for and needs FFmpeg's shared libraries (libavcodec)
  on the system, so where it cannot load, choosing it is a one-line error.
"""
from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import numpy as np
import torch

from lightvid.data import video
from lightvid.data.video import (
    VideoBytes,
    VideoDecodeError,
    VideoInfo,
    as_source,
    output_size,
)
from lightvid.errors import UserError

DECODERS = ("pyav", "decord", "torchcodec")
Indices = Sequence[int] | Callable[[VideoInfo], Sequence[int]]


class PyAVDecoder:
    name = "pyav"

    def read_clip(self, source, frame_indices: Indices, short_side: int | None = None) -> torch.Tensor:
        return video.read_clip(source, frame_indices, short_side)

    def probe(self, source) -> VideoInfo:
        return video.probe(source)


def _pick(frame_indices: Indices, info: VideoInfo, source) -> list[int]:
    indices = [int(i) for i in (frame_indices(info) if callable(frame_indices) else frame_indices)]
    if not indices:
        raise ValueError("read_clip needs at least one frame index")
    bad = [i for i in indices if not 0 <= i < info.frames]
    if bad:
        raise VideoDecodeError(f"{source}: frame index {bad[0]} outside [0, {info.frames})")
    return indices


def resize_short(frames: np.ndarray, short_side: int | None) -> np.ndarray:
    """Resize uint8 ``(T, H, W, 3)`` so the short side is ``short_side`` (OpenCV bilinear)."""
    import cv2

    h, w = frames.shape[1:3]
    ow, oh = output_size(w, h, short_side)
    if (ow, oh) == (w, h):
        return frames
    return np.stack([cv2.resize(f, (ow, oh), interpolation=cv2.INTER_LINEAR) for f in frames])


def _why(e: Exception) -> str:
    """An exception's first line (at most 200 characters), or its type's name when it has no text."""
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


def _open_with(source, open_fn: Callable, library: str, errors):
    """``open_fn(bytes or path string)`` on ``source`` (a path or :class:`VideoBytes`); a missing file or
    one of ``errors`` becomes one :class:`VideoDecodeError` naming the source and ``library``."""
    source = as_source(source)
    if not isinstance(source, VideoBytes) and not source.is_file():
        raise VideoDecodeError(f"{source}: no such file")
    try:
        return open_fn(source.data if isinstance(source, VideoBytes) else str(source))
    except errors as e:
        raise VideoDecodeError(f"{source}: not a readable video ({library}: {_why(e)})") from None


class DecordDecoder:
    name = "decord"

    def __init__(self):
        # OpenCV first: decord's bundled zlib, loaded first, breaks OpenCV's PNG reading in the process
        # ("libpng error: bad parameters to zlib"), which raw frames and resizing use
        import cv2  # noqa: F401

        _load("decord", "pip install decord (the lightvid[decord] extra)")

    @staticmethod
    def _open(source):
        import decord

        def reader(src):
            return decord.VideoReader(io.BytesIO(src) if isinstance(src, bytes) else src, ctx=decord.cpu(0),
                                      num_threads=1)

        return _open_with(source, reader, "decord", (decord.DECORDError, RuntimeError))  # (garbage: RuntimeError)

    def read_clip(self, source, frame_indices: Indices, short_side: int | None = None) -> torch.Tensor:
        import decord

        vr = self._open(source)
        info = VideoInfo(len(vr), float(vr.get_avg_fps()), 0, 0)  # the size is known after decoding
        indices = _pick(frame_indices, info, source)
        try:
            frames = vr.get_batch(indices).asnumpy()  # (T, H, W, 3)
        except (decord.DECORDError, RuntimeError) as e:
            raise VideoDecodeError(f"{source}: decoding failed (decord: {_why(e)})") from None
        return torch.from_numpy(np.ascontiguousarray(resize_short(frames, short_side)))

    def probe(self, source) -> VideoInfo:
        vr = self._open(source)
        h, w = vr[0].shape[:2]
        return VideoInfo(len(vr), float(vr.get_avg_fps()), int(w), int(h))


class TorchCodecDecoder:
    name = "torchcodec"

    def __init__(self):
        _load("torchcodec.decoders", "its PyPI build loads only next to the torch it was built for and needs "
              "FFmpeg's shared libraries (libavcodec) on the system")

    @staticmethod
    def _open(source):
        from torchcodec.decoders import VideoDecoder

        def decoder(src):
            return VideoDecoder(src, dimension_order="NHWC", num_ffmpeg_threads=1, seek_mode="exact")

        return _open_with(source, decoder, "torchcodec", (RuntimeError, ValueError))

    def _info(self, dec) -> VideoInfo:
        m = dec.metadata
        return VideoInfo(int(m.num_frames), float(m.average_fps or 0.0), int(m.width), int(m.height))

    def read_clip(self, source, frame_indices: Indices, short_side: int | None = None) -> torch.Tensor:
        dec = self._open(source)
        indices = _pick(frame_indices, self._info(dec), source)
        try:
            frames = dec.get_frames_at(indices).data.numpy()  # (T, H, W, 3)
        except (RuntimeError, IndexError) as e:
            raise VideoDecodeError(f"{source}: decoding failed (torchcodec: {_why(e)})") from None
        return torch.from_numpy(np.ascontiguousarray(resize_short(frames, short_side)))

    def probe(self, source) -> VideoInfo:
        return self._info(self._open(source))


def _load(module: str, why: str) -> None:
    import importlib

    try:
        importlib.import_module(module)
    except Exception as e:  # noqa: BLE001 - ImportError, OSError (missing libraries), RuntimeError
        top = module.split(".")[0]
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise UserError(f"data.decoder: {top} cannot load here ({type(e).__name__}: {first}); {why}; "
                        "data.decoder=pyav needs nothing more") from None


def get_decoder(name: str):
    """The decoder called ``name`` (one of :data:`DECODERS`); a one-line error when it cannot load."""
    if name == "pyav":
        return PyAVDecoder()
    if name == "decord":
        return DecordDecoder()
    if name == "torchcodec":
        return TorchCodecDecoder()
    raise UserError(f"data.decoder: {name!r} is not one of {', '.join(DECODERS)}")
