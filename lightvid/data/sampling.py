"""Which frames a clip takes: random clip, K uniformly spaced clips, TSN segments.

* ``"clip"``: ``clip_len`` frames ``stride`` apart. Training takes one at a random start
  (C3D, Tran et al. ICCV 2015); testing takes ``K`` clips with evenly spaced starts
  (the "K clips x crops" protocol of Feichtenhofer et al., SlowFast, ICCV 2019).
* ``"tsn"``: the video is cut into ``clip_len`` equal segments and one frame is taken from
  each, at a random offset in training and the segment centre in testing (Wang et al.,
  Temporal Segment Networks, ECCV 2016).

With a target ``fps`` the stride is in frames at that rate: a 30 fps video sampled at
``fps=15, stride=2`` steps 4 source frames. A video shorter than the clip loops
(``loop="loop"``) or repeats its last frame (``"repeat_last"``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

SAMPLINGS = ("clip", "tsn")
LOOPS = ("loop", "repeat_last")


def clip_indices(start: float, clip_len: int, step: float, num_frames: int, loop: str = "loop") -> list[int]:
    """Frames ``start + j * step`` for ``j < clip_len``, folded into ``[0, num_frames)`` by ``loop``."""
    out = []
    for j in range(clip_len):
        i = int(round(start + j * step))
        if i >= num_frames:
            i = i % num_frames if loop == "loop" else num_frames - 1
        out.append(max(i, 0))
    return out


@dataclass
class ClipSampler:
    clip_len: int = 16
    stride: int = 1
    fps: float | None = None
    sampling: str = "clip"
    loop: str = "loop"

    def step(self, video_fps: float) -> float:
        """Source frames between two sampled frames."""
        if self.fps and video_fps > 0:
            return self.stride * video_fps / self.fps
        return float(self.stride)

    def span(self, video_fps: float) -> int:
        """Source frames one clip covers."""
        return int(round((self.clip_len - 1) * self.step(video_fps))) + 1

    def train_clip(self, num_frames: int, video_fps: float, generator: torch.Generator | None = None) -> list[int]:
        """One training clip: random start (``clip``) or random offsets in each segment (``tsn``)."""
        if self.sampling == "tsn":
            seg = num_frames / self.clip_len
            offs = torch.rand(self.clip_len, generator=generator).tolist()
            return [min(int(k * seg + o * seg), num_frames - 1) for k, o in enumerate(offs)]
        slack = num_frames - self.span(video_fps)
        start = int(torch.randint(0, slack + 1, (1,), generator=generator)) if slack > 0 else 0
        return clip_indices(start, self.clip_len, self.step(video_fps), num_frames, self.loop)

    def eval_clips(self, num_frames: int, video_fps: float, k: int = 1) -> list[list[int]]:
        """``k`` clips with evenly spaced starts (centred when ``k == 1``); TSN: segment centres."""
        if self.sampling == "tsn":
            seg = num_frames / self.clip_len
            base = [min(int((j + 0.5) * seg), num_frames - 1) for j in range(self.clip_len)]
            if k == 1:
                return [base]
            # k > 1: shift the in-segment offset evenly
            return [[min(int((j + (c + 0.5) / k) * seg), num_frames - 1) for j in range(self.clip_len)]
                    for c in range(k)]
        slack = max(num_frames - self.span(video_fps), 0)
        starts = [slack / 2] if k == 1 else [slack * c / (k - 1) for c in range(k)]
        return [clip_indices(s, self.clip_len, self.step(video_fps), num_frames, self.loop) for s in starts]
