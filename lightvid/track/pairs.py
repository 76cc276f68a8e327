"""Training pairs for the Siamese matching network, drawn from videos with per-frame track boxes.

One sample is a (query, search) pair of the same track: the query window is centred on the
track's box in frame ``i``; the search window on its box in another frame ``j``, shifted and
rescaled at random (as the tracker's window sits on an imperfect last box). Candidate boxes in
the search window, labelled by their IoU with the true box in ``j``:

* positives (IoU >= ``pos_iou``): small jitters of the true box;
* negatives (IoU <= ``neg_iou``): the tracker's own ring candidates, the boxes of the *other*
  objects in frame ``j`` (distractors, also jittered) and random boxes of the object's size;
* in between: ignored (label -1).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from lightvid.track.crops import crop, to_tensor, window_around
from lightvid.track.metrics import iou_xywh
from lightvid.track.sequences import Sequence
from lightvid.track.tracker import TrackerConfig, ring_candidates


@dataclass
class PairConfig:
    context: float = 4.0
    input_size: int = 128
    candidates: int = 48  # boxes per pair
    positives: int = 12  # of which jittered true boxes
    distractors: int = 8  # at most this many other-object boxes
    pos_iou: float = 0.75
    neg_iou: float = 0.5
    shift: float = 0.6  # search-window centre jitter, in units of sqrt(w * h) (uniform in +-shift)
    rescale: float = 0.15  # search-window scale jitter (log-uniform in +-rescale)
    min_visible: float = 0.5  # frames where the object shows less than this fraction are not used

    def validate(self) -> "PairConfig":
        if not 0 <= self.neg_iou < self.pos_iou <= 1:
            raise ValueError(f"pairs: need 0 <= neg_iou < pos_iou <= 1, got {self.neg_iou}, {self.pos_iou}")
        if not 0 < self.positives < self.candidates:
            raise ValueError(f"pairs: need 0 < positives < candidates, got {self.positives}, {self.candidates}")
        return self


def _xywh(xyxy: np.ndarray) -> np.ndarray:
    return np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], 1)


def _jitter(rng: np.random.Generator, box, n: int, shift: float, scale: float) -> np.ndarray:
    """``n`` frame boxes ``[x, y, w, h]`` around ``box``: centre + N(0, shift * size), size * exp(N(0, scale))."""
    x, y, w, h = box
    unit = np.sqrt(w * h)
    c = np.array([x + w / 2, y + h / 2]) + rng.normal(0, shift * unit, (n, 2))
    s = np.exp(rng.normal(0, scale, (n, 2)))
    wh = np.array([w, h]) * s
    return np.concatenate([c - wh / 2, wh], 1)


class PairDataset(Dataset):
    """``len`` = ``samples`` random pairs (drawn from ``seed`` and the index: the same set every epoch)."""

    def __init__(self, sequences: list[Sequence], config: PairConfig | None = None, samples: int = 4096,
                 seed: int = 0):
        self.config = (config or PairConfig()).validate()
        self.sequences, self.samples, self.seed = sequences, samples, seed
        # every (sequence, track) with at least two usable frames
        self.tracks = [(si, tid, np.flatnonzero(seq.usable(tid, self.config.min_visible)))
                       for si, seq in enumerate(sequences) for tid in seq.tracks]
        self.tracks = [t for t in self.tracks if len(t[2]) >= 2]
        if not self.tracks:
            raise ValueError("no track has two frames with a visible box: nothing to train on")

    def __len__(self) -> int:
        return self.samples

    def __getitem__(self, index: int):
        c = self.config
        rng = np.random.default_rng([self.seed, index])
        si, tid, frames = self.tracks[rng.integers(len(self.tracks))]
        seq = self.sequences[si]
        i, j = rng.choice(frames, 2, replace=False)
        qbox, tbox = seq.tracks[tid][i], seq.tracks[tid][j]
        qwin = window_around(qbox, c.context, c.input_size)
        # the search window: centred on a shifted, rescaled copy of the true box
        unit = np.sqrt(tbox[2] * tbox[3])
        centre = tbox[:2] + tbox[2:] / 2 + rng.uniform(-c.shift, c.shift, 2) * unit
        wh = tbox[2:] * np.exp(rng.uniform(-c.rescale, c.rescale))
        last = np.concatenate([centre - wh / 2, wh])
        swin = window_around(last, c.context, c.input_size)
        # candidates (frame coordinates)
        pos = _jitter(rng, tbox, c.positives, 0.04, 0.04)
        others = [seq.tracks[t][j] for t in seq.tracks if t != tid and np.isfinite(seq.tracks[t][j]).all()]
        rng.shuffle(others)
        distract = (np.concatenate([_jitter(rng, b, 1, 0.05, 0.05) for b in others[:c.distractors]])
                    if others else np.zeros((0, 4)))
        lx1, ly1, lx2, ly2 = swin.to_window(last)[0]
        t = TrackerConfig()
        rings = swin.to_frame(ring_candidates((lx1 + lx2) / 2, (ly1 + ly2) / 2, lx2 - lx1, ly2 - ly1,
                                              t.radii, t.angles, t.scales))
        n_rest = c.candidates - len(pos) - len(distract)
        n_ring = n_rest // 2
        ring = rings[rng.choice(len(rings), n_ring, replace=False)]
        side = c.context * unit
        rand_c = last[:2] + last[2:] / 2 + rng.uniform(-side / 2, side / 2, (n_rest - n_ring, 2))
        rand_wh = tbox[2:] * np.exp(rng.uniform(-0.3, 0.3, (n_rest - n_ring, 1)))
        rand = np.concatenate([rand_c - rand_wh / 2, rand_wh], 1)
        cands = np.concatenate([pos, distract, ring, rand])
        iou = iou_xywh(cands, np.repeat(tbox[None], len(cands), 0))
        labels = np.where(iou >= c.pos_iou, 1, np.where(iou <= c.neg_iou, 0, -1))
        q = crop(seq.frame(i), qwin, c.input_size)
        s = crop(seq.frame(j), swin, c.input_size)
        return (to_tensor(np.stack([q, s])),  # (2, 3, S, S)
                torch.from_numpy(qwin.to_window(qbox)[0].astype(np.float32)),  # (4,) x1 y1 x2 y2
                torch.from_numpy(swin.to_window(cands).astype(np.float32)),  # (K, 4)
                torch.from_numpy(labels.astype(np.int64)))  # (K,)


def collate_pairs(batch):
    """-> images ``(2B, 3, S, S)`` (queries then searches), query rois ``(B, 5)``, candidate rois ``(B*K, 5)``,
    the query row of each candidate ``(B*K,)`` and labels ``(B*K,)``."""
    images = torch.cat([b[0][:1] for b in batch] + [b[0][1:] for b in batch])  # (2B, 3, S, S)
    B = len(batch)
    qrois = torch.cat([torch.arange(B, dtype=torch.float32)[:, None], torch.stack([b[1] for b in batch])], 1)
    crois, owner, labels = [], [], []
    for k, (_, _, cand, lab) in enumerate(batch):
        crois.append(torch.cat([torch.full((len(cand), 1), float(B + k)), cand], 1))
        owner.append(torch.full((len(cand),), k, dtype=torch.long))
        labels.append(lab)
    return images, qrois, torch.cat(crois), torch.cat(owner), torch.cat(labels)
