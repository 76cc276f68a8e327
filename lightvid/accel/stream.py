"""``lightvid stream``: rolling-window predictions on a live source, latency kept bounded.

A reader thread decodes the source (anything PyAV opens: a camera with ``fmt="v4l2"``, an
RTSP/HTTP URL, a file; ``realtime=True`` paces a file at its own frame rate, as a camera
would deliver it) into a bounded deque of RGB frames. The inference loop waits until
``hop`` new frames have arrived, takes the *newest* window (the run's clip: ``clip_len``
frames ``step`` apart, i.e. the last ``span`` frames) and predicts. When inference is
slower than the source, the frames that arrived meanwhile and fall before the newest
window are never predicted: they are dropped and counted (frames no window contained), so the latency (prediction time
minus the arrival time of the window's newest frame) stays about one inference long
instead of growing with the stream (the failure of MMAction2's webcam demo).

A file read without ``realtime`` is not live: the reader then waits for the model
(back-pressure), every ``hop`` frames get a prediction and none is dropped.
"""
from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import numpy as np

from lightvid.accel.runtime import InferenceModel
from lightvid.data.frames import iter_frames, open_source, stream_fps, to_rgb
from lightvid.data.sampling import clip_indices
from lightvid.errors import UserError


class _Frame(NamedTuple):
    seq: int  # 0, 1, 2, ... in arrival order
    time: float  # presentation time, seconds
    arrival: float  # time.perf_counter() when the frame was available
    rgb: np.ndarray


class FrameReader(threading.Thread):
    """Decodes ``source`` into a deque of at most ``maxlen`` frames (the oldest fall out when it is full)."""

    def __init__(self, source: str, short_side: int | None, maxlen: int, realtime: bool, block_until: Callable | None,
                 fmt: str | None = None, options: dict | None = None):
        super().__init__(daemon=True, name="lightvid-frame-reader")
        self.container, self.stream = open_source(source, fmt, options)
        self.source, self.short_side, self.realtime = source, short_side, realtime
        self.fps = stream_fps(self.stream)
        self.buffer: deque[_Frame] = deque(maxlen=maxlen)
        self.cond = threading.Condition()
        self.block_until = block_until  # seq -> True while the reader must wait (back-pressure)
        self.read = 0
        self.finished = False
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()
        with self.cond:
            self.cond.notify_all()

    def run(self) -> None:
        start = time.perf_counter()
        try:
            for sf in iter_frames(self.container, self.stream, str(self.source)):
                if self._stop_event.is_set():
                    break
                if self.realtime:  # deliver the frame when a camera would have
                    wait = start + sf.time - time.perf_counter()
                    if wait > 0 and self._stop_event.wait(wait):
                        break
                rgb = to_rgb(sf.frame, self.short_side)
                with self.cond:
                    while (self.block_until is not None and self.block_until(self.read)
                           and not self._stop_event.is_set()):
                        self.cond.wait(0.1)
                    self.buffer.append(_Frame(self.read, sf.time, time.perf_counter(), rgb))
                    self.read += 1
                    self.cond.notify_all()
        except BaseException as e:  # reported by the consumer, in its thread
            self.error = e
        finally:
            self.container.close()
            with self.cond:
                self.finished = True
                self.cond.notify_all()


@dataclass
class StreamResult:
    """One prediction: the window's newest frame time, its latency and the top-k."""

    time: float
    latency: float
    dropped: int  # frames so far that no predicted window contained
    frames: tuple[int, int]  # first and last frame sequence numbers of the window
    topk: list[tuple[str, float]]

    def to_dict(self) -> dict:
        return {"time": round(self.time, 4), "latency_ms": round(self.latency * 1000, 2), "dropped": self.dropped,
                "frames": list(self.frames), "topk": [{"class": c, "prob": round(p, 6)} for c, p in self.topk]}


@dataclass
class StreamStats:
    frames_read: int = 0
    frames_predicted: int = 0  # frames inside at least one predicted window
    dropped: int = 0
    predictions: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    inference: list[float] = field(default_factory=list)  # seconds in transform + model per prediction

    def to_dict(self) -> dict:
        lat = np.asarray(self.latencies) * 1000 if self.latencies else np.zeros(1)
        return {"frames_read": self.frames_read, "frames_predicted": self.frames_predicted, "dropped": self.dropped,
                "predictions": self.predictions, "seconds": round(self.seconds, 3),
                "input_fps": round(self.frames_read / self.seconds, 2) if self.seconds else 0.0,
                "predicted_fps": round(self.frames_predicted / self.seconds, 2) if self.seconds else 0.0,
                "predictions_per_s": round(self.predictions / self.seconds, 2) if self.seconds else 0.0,
                "inference_ms_p50": round(float(np.median(self.inference)) * 1000, 1) if self.inference else 0.0,
                "latency_ms": {"p50": round(float(np.percentile(lat, 50)), 1),
                               "p95": round(float(np.percentile(lat, 95)), 1), "max": round(float(lat.max()), 1)}}


def run_stream(im: InferenceModel, source: str, realtime: bool = False, hop: int | None = None, topk: int = 5,
               max_seconds: float | None = None, max_predictions: int | None = None, fmt: str | None = None,
               options: dict | None = None, on_result: Callable[[StreamResult], None] | None = None,
               live: bool | None = None) -> StreamStats:
    """Predict on ``source`` until it ends (or the limits); ``on_result`` gets each :class:`StreamResult`."""
    from lightvid.data.frames import is_live

    live = (realtime or is_live(source) or fmt is not None) if live is None else live
    state = {"next_end": -1}  # the seq that completes the next window (back-pressure for non-live sources)

    def block_until(seq: int) -> bool:
        return state["next_end"] >= 0 and seq > state["next_end"]

    # a provisional reader to learn the frame rate; the window span depends on it
    reader = FrameReader(source, im.cfg.short_side, 1, realtime, None if live else block_until, fmt, options)
    fps = reader.fps or 25.0
    step = im.sampler.step(fps)
    span = im.sampler.span(fps)
    offsets = clip_indices(0, im.cfg.clip_len, step, span)
    hop = max(1, span // 2) if hop is None else hop
    if hop < 1:
        raise UserError("--hop must be >= 1")
    reader.buffer = deque(maxlen=span + (0 if live else hop))
    state["next_end"] = span - 1
    stats = StreamStats()
    last_seq = span - 1 - hop  # newest frame of the last predicted window (the first is due at span - 1)
    covered_to = -1  # newest frame counted in frames_predicted
    k = min(topk, max(len(im.classes), 1)) if im.classes else topk
    t_start = time.perf_counter()
    reader.start()
    try:
        while True:
            with reader.cond:
                while not reader.finished and not (len(reader.buffer) >= span
                                                   and reader.buffer[-1].seq >= last_seq + hop):
                    reader.cond.wait(0.1)
                    if max_seconds and time.perf_counter() - t_start > max_seconds:
                        break
                buf = list(reader.buffer)
            if reader.error is not None:
                raise reader.error
            if max_seconds and time.perf_counter() - t_start > max_seconds:
                break
            if len(buf) < span or buf[-1].seq < last_seq + hop:
                if reader.finished:
                    break
                continue
            window = buf[-span:]
            first, newest = window[0].seq, window[-1].seq
            # frames no window will contain, beyond those a hop longer than the clip skips by design
            scheduled_first = last_seq + hop - span + 1
            stats.dropped += max(0, first - max(covered_to + 1, scheduled_first))
            stats.frames_predicted += newest - max(covered_to, first - 1)
            covered_to = newest
            t_in = time.perf_counter()
            x = im.prepare(np.stack([window[o].rgb for o in offsets]))[None]  # (1, C, T, H, W)
            p = im.probs(x)[0]
            done = time.perf_counter()
            stats.inference.append(done - t_in)
            last_seq = newest
            with reader.cond:
                state["next_end"] = newest + hop
                reader.cond.notify_all()
            vals, idx = p.topk(min(k, p.numel()))
            result = StreamResult(window[-1].time, done - window[-1].arrival, stats.dropped, (first, newest),
                                  [(im.class_name(j), float(v)) for v, j in zip(vals.tolist(), idx.tolist())])
            stats.predictions += 1
            stats.latencies.append(result.latency)
            if on_result is not None:
                on_result(result)
            if max_predictions and stats.predictions >= max_predictions:
                break
    except KeyboardInterrupt:  # Ctrl-C ends a live stream: the summary still comes
        pass
    finally:
        reader.stop()
        reader.join(timeout=5)
        stats.frames_read = reader.read
        stats.seconds = time.perf_counter() - t_start
    return stats


def format_result(r: StreamResult) -> str:
    top = "  ".join(f"{c} {p:.3f}" for c, p in r.topk)
    return f"t={r.time:8.2f}s  latency {r.latency * 1000:7.1f} ms  dropped {r.dropped:5d}  {top}"


def jsonl_line(r: StreamResult) -> str:
    return json.dumps(r.to_dict())
