"""Run trackers over annotated sequences and score them the OTB way (one-pass evaluation).

Every track of every sequence is a target: the tracker starts on the track's first fully
visible box and runs to the end of the video; frames where the track has no box (hidden) are
left out of the score. Targets that have a look-alike in the video (``distractor_of`` in the
annotation's ``tracks``) are also scored on their own.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

import numpy as np

from lightvid.fileio import write_text_atomic
from lightvid.track.metrics import TrackerScore, score_sequence
from lightvid.track.sequences import Sequence
from lightvid.track.tracker import run_tracker


@dataclass
class Target:
    sequence: Sequence
    track_id: int
    start: int
    has_lookalike: bool

    @property
    def name(self) -> str:
        return f"{self.sequence.name}/{self.track_id}"


def targets_of(sequences: list[Sequence], min_frames: int = 10) -> list[Target]:
    out = []
    for seq in sequences:
        twins = set()
        for tid, of in seq.lookalikes.items():
            twins |= {tid, of}
        for tid in sorted(seq.tracks):
            usable = seq.usable(tid, 0.99)
            if not usable.any():
                continue
            start = int(np.flatnonzero(usable)[0])
            if seq.num_frames - start >= min_frames:
                out.append(Target(seq, tid, start, tid in twins))
    return out


def evaluate_trackers(factories: dict[str, Callable[[], object]], sequences: list[Sequence], min_frames: int = 10,
                      progress: bool = True) -> dict:
    """``{name: make_tracker}`` over every target -> per tracker: all-target and look-alike scores, fps."""
    from tqdm import tqdm

    targets = targets_of(sequences, min_frames)
    if not targets:
        raise ValueError(f"no track with a fully visible box and >= {min_frames} frames after it")
    scores = {n: TrackerScore(n) for n in factories}
    twin_scores = {n: TrackerScore(n) for n in factories}
    seconds = {n: 0.0 for n in factories}
    frames = {n: 0 for n in factories}
    boxes: dict[str, dict[str, list]] = {n: {} for n in factories}
    for tg in tqdm(targets, desc="evaluating", disable=not progress, unit="target"):
        seq_frames = tg.sequence.frames[tg.start:]
        gt = tg.sequence.tracks[tg.track_id][tg.start:]
        for name, make in factories.items():  # interleaved: machine load hits every tracker alike
            result = run_tracker(make(), seq_frames, gt[0])
            seconds[name] += result.seconds
            frames[name] += len(result.boxes) - 1
            s = score_sequence(result.boxes, [None if not np.isfinite(b).all() else b for b in gt], tg.name)
            scores[name].sequences.append(s)
            if tg.has_lookalike:
                twin_scores[name].sequences.append(s)
            boxes[name][tg.name] = result.boxes
    out = {}
    for name in factories:
        d = scores[name].to_dict()
        d["with_lookalike"] = ({k: v for k, v in twin_scores[name].to_dict().items() if k != "per_sequence"}
                               if twin_scores[name].sequences else None)
        d["fps"] = round(frames[name] / seconds[name], 1) if seconds[name] > 0 else None
        out[name] = d
    return {"targets": len(targets), "results": out, "scores": scores, "boxes": boxes}


def write_results(result: dict, path) -> None:
    write_text_atomic(path, json.dumps({k: v for k, v in result.items() if k not in ("scores",)}, indent=1))
