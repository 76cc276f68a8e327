"""The Siamese instance-search tracker (Tao, Gavves, Smeulders, CVPR 2016): no model update.

1. the query ``x_0`` is the first frame's box, embedded once;
2. in each new frame, a search window around the last box goes through the backbone once;
3. candidate boxes sampled around the last location (rings of centres at several scales) are
   ROI-pooled from that one feature map and embedded in one batch;
4. the candidate most similar to the query (``m = f(x_0) . f(x)``) is the new box; a second,
   finer ring of candidates around it (same feature map, no second backbone pass) refines it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from lightvid.track.crops import crop, to_tensor, window_around
from lightvid.track.ncc import clip_box


@dataclass
class TrackerConfig:
    context: float = 4.0  # search window side / sqrt(w * h) of the last box
    input_size: int = 128  # the window's side in network pixels
    radii: tuple[float, ...] = (0.1, 0.2, 0.35, 0.5, 0.7, 0.95)  # ring radii / sqrt(w * h)
    angles: int = 10  # centres per ring
    scales: tuple[float, ...] = (0.92, 1.0, 1.08)  # candidate sizes relative to the last box
    fine_step: float = 0.04  # refinement grid step / sqrt(w * h) (3 x 3 offsets); 0: no refinement
    fine_scales: tuple[float, ...] = (0.96, 1.0, 1.04)
    motion_penalty: float = 0.1  # score -= penalty * (centre distance / sqrt(w * h))^2
    scale_damping: float = 0.5  # 1: take the best candidate's size; < 1: move only part of the way
    box_regression: bool = False  # refine the chosen box by ridge regression fitted on the first frame
    regression_samples: int = 256  # jittered first-frame boxes the regression is fitted on
    regression_ridge: float = 1.0  # ridge penalty (features are standardised)
    threads: int = 1  # torch threads while tracking (0: leave as is); one avoids stalls on a busy CPU

    def validate(self) -> "TrackerConfig":
        checks = {"context": self.context > 1, "input_size": self.input_size >= 16, "angles": self.angles >= 1,
                  "scales": bool(self.scales) and min(self.scales) > 0, "radii": all(r > 0 for r in self.radii),
                  "fine_step": self.fine_step >= 0, "scale_damping": 0 < self.scale_damping <= 1,
                  "motion_penalty": self.motion_penalty >= 0, "threads": self.threads >= 0}
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"tracker config: bad value for {', '.join(bad)} ({[getattr(self, k) for k in bad]})")
        return self


def ring_candidates(cx: float, cy: float, w: float, h: float, radii, angles: int, scales) -> np.ndarray:
    """``[x1, y1, x2, y2]`` boxes: centres on rings around ``(cx, cy)`` (and the centre), each at every scale."""
    unit = np.sqrt(w * h)
    centres = [(0.0, 0.0)]
    for i, r in enumerate(radii):
        phase = np.pi / angles * (i % 2)  # alternate rings are rotated by half a step
        t = phase + 2 * np.pi * np.arange(angles) / angles
        centres += list(zip(r * unit * np.cos(t), r * unit * np.sin(t)))
    c = np.asarray(centres)  # (M, 2)
    s = np.asarray(scales, dtype=np.float64)  # (S,)
    dx, dy = np.repeat(c[:, 0], len(s)) + cx, np.repeat(c[:, 1], len(s)) + cy
    ws, hs = np.tile(s, len(c)) * w, np.tile(s, len(c)) * h
    return np.stack([dx - ws / 2, dy - hs / 2, dx + ws / 2, dy + hs / 2], 1)


def grid_candidates(box_xyxy: np.ndarray, step: float, scales) -> np.ndarray:
    """3 x 3 centre offsets of ``step * sqrt(w * h)`` around a box, each at every scale."""
    x1, y1, x2, y2 = box_xyxy
    w, h = x2 - x1, y2 - y1
    d = step * np.sqrt(w * h) * np.array([-1.0, 0.0, 1.0])
    ox, oy = np.meshgrid(d, d)
    s = np.asarray(scales, dtype=np.float64)
    cx = np.repeat((x1 + x2) / 2 + ox.ravel(), len(s))
    cy = np.repeat((y1 + y2) / 2 + oy.ravel(), len(s))
    ws, hs = np.tile(s, 9) * w, np.tile(s, 9) * h
    return np.stack([cx - ws / 2, cy - hs / 2, cx + ws / 2, cy + hs / 2], 1)


def _rois(boxes_xyxy: np.ndarray) -> torch.Tensor:
    b = torch.from_numpy(np.asarray(boxes_xyxy, dtype=np.float32))
    return torch.cat([torch.zeros(len(b), 1), b], 1)  # (R, 5): image 0


class SiameseTracker:
    """``init(frame, box)`` then ``update(frame) -> box``; frames RGB ``(H, W, 3)`` uint8, boxes ``[x, y, w, h]``."""

    name = "sint"

    def __init__(self, model, config: TrackerConfig | None = None):
        self.model = model.eval()
        self.config = (config or TrackerConfig()).validate()

    @torch.inference_mode()
    def init(self, frame: np.ndarray, box) -> None:
        c = self.config
        H, W = frame.shape[:2]
        self.box = clip_box(box, W, H)
        win = window_around(self.box, c.context, c.input_size)
        feats = self.model.forward_features(to_tensor(crop(frame, win, c.input_size)))
        self.query = self.model.embed_rois(feats, _rois(win.to_window(self.box)))[0]  # (D,)
        self.regressor = self._fit_regression(feats, win.to_window(self.box)[0]) if c.box_regression else None

    def _fit_regression(self, feats, box_xyxy: np.ndarray):
        """Ridge regression from a box's ROI cells to the offsets of the true box (Tao et al. fit theirs on
        the first frame too, the only sure example): ``(dx / w, dy / h, log(W / w), log(H / h))``."""
        c = self.config
        rng = np.random.default_rng(0)
        x1, y1, x2, y2 = box_xyxy
        w, h = x2 - x1, y2 - y1
        n = c.regression_samples
        cx = (x1 + x2) / 2 + rng.normal(0, 0.1, n) * w
        cy = (y1 + y2) / 2 + rng.normal(0, 0.1, n) * h
        sw, sh = w * np.exp(rng.normal(0, 0.1, n)), h * np.exp(rng.normal(0, 0.1, n))
        boxes = np.stack([cx - sw / 2, cy - sh / 2, cx + sw / 2, cy + sh / 2], 1)
        targets = np.stack([((x1 + x2) / 2 - cx) / sw, ((y1 + y2) / 2 - cy) / sh, np.log(w / sw), np.log(h / sh)], 1)
        x = self.model.pool_rois(feats, _rois(boxes)).flatten(1).double()  # (n, C*P*P)
        mean, std = x.mean(0), x.std(0) + 1e-3
        z = (x - mean) / std
        eye = torch.eye(z.shape[1], dtype=z.dtype)
        weight = torch.linalg.solve(z.T @ z + c.regression_ridge * n * eye, z.T @ torch.from_numpy(targets))
        return mean, std, weight, torch.from_numpy(targets.mean(0))

    def _regress(self, feats, box_xyxy: np.ndarray) -> np.ndarray:
        mean, std, weight, bias = self.regressor
        z = (self.model.pool_rois(feats, _rois(box_xyxy[None])).flatten(1).double() - mean) / std
        dx, dy, dw, dh = (z @ weight + bias)[0].numpy()
        x1, y1, x2, y2 = box_xyxy
        w, h = x2 - x1, y2 - y1
        cx, cy = (x1 + x2) / 2 + dx * w, (y1 + y2) / 2 + dy * h
        w, h = w * np.exp(np.clip(dw, -0.2, 0.2)), h * np.exp(np.clip(dh, -0.2, 0.2))
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])

    @torch.inference_mode()
    def update(self, frame: np.ndarray) -> np.ndarray:
        c = self.config
        H, W = frame.shape[:2]
        win = window_around(self.box, c.context, c.input_size)
        feats = self.model.forward_features(to_tensor(crop(frame, win, c.input_size)))  # one pass per frame
        x1, y1, x2, y2 = win.to_window(self.box)[0]
        cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
        cands = ring_candidates(cx, cy, w, h, c.radii, c.angles, c.scales)
        best = self._best(feats, cands, cx, cy, w, h)
        if c.fine_step > 0:
            fine = grid_candidates(best, c.fine_step, c.fine_scales)
            best = self._best(feats, np.concatenate([best[None], fine]), cx, cy, w, h)
        if self.regressor is not None:
            best = self._regress(feats, best)
        new = win.to_frame(best)[0]
        if c.scale_damping < 1:  # keep the centre, move the size part of the way
            centre = new[:2] + new[2:] / 2
            size = self.box[2:] + c.scale_damping * (new[2:] - self.box[2:])
            new = np.concatenate([centre - size / 2, size])
        self.box = clip_box(new, W, H)
        return self.box.copy()

    def _best(self, feats, cands: np.ndarray, cx, cy, w, h) -> np.ndarray:
        emb = self.model.embed_rois(feats, _rois(cands))  # (R, D), all candidates in one batch
        score = (emb @ self.query).numpy().astype(np.float64)  # m = f(x_0) . f(x)
        if self.config.motion_penalty > 0:
            d2 = (((cands[:, 0] + cands[:, 2]) / 2 - cx) ** 2 + ((cands[:, 1] + cands[:, 3]) / 2 - cy) ** 2) / (w * h)
            score = score - self.config.motion_penalty * d2
        return cands[int(np.argmax(score))]


@dataclass
class TrackOutput:
    boxes: list[list[float]] = field(default_factory=list)
    seconds: float = 0.0  # time spent in update() (frames after the first)

    @property
    def fps(self) -> float:
        return (len(self.boxes) - 1) / self.seconds if self.seconds > 0 else float("nan")


def run_tracker(tracker, frames, box, progress: bool = False, desc: str = "tracking", total: int | None = None
                ) -> TrackOutput:
    """Track through an iterable of frames from ``box`` in the first; one ``[x, y, w, h]`` per frame."""
    import time

    from tqdm import tqdm

    threads = getattr(getattr(tracker, "config", None), "threads", 0)
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    out = TrackOutput()
    try:
        for i, frame in enumerate(tqdm(frames, desc=desc, total=total, disable=not progress, unit="frame")):
            if i == 0:
                tracker.init(frame, box)
                out.boxes.append([float(v) for v in box])
                continue
            t0 = time.perf_counter()
            b = tracker.update(frame)
            out.seconds += time.perf_counter() - t0
            out.boxes.append([round(float(v), 2) for v in b])
    finally:
        torch.set_num_threads(old_threads)
    return out


def load_tracker(path, **overrides) -> SiameseTracker:
    """A :class:`SiameseTracker` from a ``lightvid track train`` checkpoint (no Lightning needed);
    ``overrides`` replace fields of the tracker config stored in it."""
    from lightvid.checkpoint import CheckpointError, load_file
    from lightvid.models.registry import create_model

    obj = load_file(path)
    meta = obj.get("lightvid") if isinstance(obj, dict) else None
    if not isinstance(meta, dict) or meta.get("task") != "track" or "state_dict" not in obj:
        raise CheckpointError(f"{path}: not a tracker checkpoint (written by `lightvid track train`)")
    try:
        model = create_model(meta["model"], num_classes=0, **meta.get("model_kwargs", {}))
        state = {k[len("model."):]: v for k, v in obj["state_dict"].items() if k.startswith("model.")}
        model.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: cannot rebuild the tracker's model ({str(e).splitlines()[0]})") from None
    fields = {f for f in TrackerConfig.__dataclass_fields__}
    stored = {k: tuple(v) if isinstance(v, list) else v for k, v in meta.get("tracker", {}).items() if k in fields}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown tracker setting(s): {', '.join(unknown)}")
    return SiameseTracker(model, TrackerConfig(**{**stored, **overrides}))
