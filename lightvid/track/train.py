"""Training the Siamese matching network on pairs from tracks, with Lightning.

Mini-batches are organised by image, as in Fast R-CNN: ``B`` pairs put ``2B`` windows through the
backbone once and ROI-pool the query box and ``K`` candidates per pair from those maps; the loss
is the marginal contrastive loss between each candidate's embedding and its query's.

The checkpoint (``OUT/sint.ckpt``, written atomically, loadable with ``weights_only=True``)::

    {"lightvid": {"model": "sint", "model_kwargs": {...}, "num_classes": 0, "task": "track",
                  "tracker": {TrackerConfig}, "pairs": {PairConfig}, "train": {...}},
     "state_dict": {"model.<key>": tensor, ...}}
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from lightvid.checkpoint import save_atomic
from lightvid.models.registry import create_model
from lightvid.models.sint import marginal_contrastive_loss
from lightvid.track.pairs import PairConfig, PairDataset, collate_pairs
from lightvid.track.sequences import Sequence
from lightvid.track.tracker import TrackerConfig


@dataclass
class TrainConfig:
    steps: int = 600
    batch_size: int = 16  # pairs per step
    lr: float = 2e-3
    weight_decay: float = 1e-4
    margin: float = 1.0  # sigma of the marginal contrastive loss (D^2 lies in [0, 4])
    seed: int = 0
    workers: int = 0
    threads: int = 2
    model_kwargs: dict = field(default_factory=dict)

    def validate(self) -> "TrainConfig":
        for key in ("steps", "batch_size", "threads"):
            if getattr(self, key) < 1:
                raise ValueError(f"train.{key} must be >= 1, got {getattr(self, key)}")
        if self.lr <= 0 or not 0 < self.margin <= 4:
            raise ValueError(f"train: need lr > 0 and 0 < margin <= 4, got {self.lr}, {self.margin}")
        return self


class SiameseModule(L.LightningModule):
    def __init__(self, model_kwargs: dict, lr: float, weight_decay: float, margin: float, steps: int):
        super().__init__()
        self.model = create_model("sint", num_classes=0, **model_kwargs)
        self.lr, self.weight_decay, self.margin, self.steps = lr, weight_decay, margin, steps

    def training_step(self, batch, batch_idx):
        images, qrois, crois, owner, labels = batch
        feats = self.model.forward_features(images)  # (2B, C, h, w): every window once
        query = self.model.embed_rois(feats, qrois)  # (B, D)
        cand = self.model.embed_rois(feats, crois)  # (B*K, D)
        keep = labels >= 0
        loss = marginal_contrastive_loss(query[owner[keep]], cand[keep], labels[keep], self.margin)
        with torch.no_grad():  # does the best-matching candidate of each pair have a positive label?
            score = (query[owner] * cand).sum(1).masked_fill(~keep, -9.0)  # (B*K,)
            per_pair = score.view(len(query), -1)
            top = labels.view(len(query), -1).gather(1, per_pair.argmax(1, keepdim=True))
            acc = (top == 1).float().mean()
        if not torch.isfinite(loss):
            raise RuntimeError(f"non-finite loss at step {self.global_step}")
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/top1_positive", acc, prog_bar=True)
        return loss

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=self.steps, pct_start=0.1)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def train_sint(sequences: list[Sequence], out: str | Path, train: TrainConfig | None = None,
               pairs: PairConfig | None = None, tracker: TrackerConfig | None = None,
               progress: bool = True) -> Path:
    """Train on pairs from ``sequences``; writes ``OUT/sint.ckpt`` and ``OUT/train.json``; returns the checkpoint."""
    train = (train or TrainConfig()).validate()
    pairs = (pairs or PairConfig()).validate()
    tracker = tracker or TrackerConfig(context=pairs.context, input_size=pairs.input_size)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "sint.ckpt"
    if ckpt_path.exists():
        from lightvid.errors import UserError

        raise UserError(f"{ckpt_path} exists; choose another --out (nothing is overwritten)")
    torch.manual_seed(train.seed)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(train.threads)
    data = PairDataset(sequences, pairs, samples=train.steps * train.batch_size, seed=train.seed)
    loader = DataLoader(data, batch_size=train.batch_size, shuffle=False, num_workers=train.workers,
                        collate_fn=collate_pairs, drop_last=True)
    module = SiameseModule(train.model_kwargs, train.lr, train.weight_decay, train.margin, train.steps)
    logger = L.pytorch.loggers.CSVLogger(str(out), name="logs", version="")
    trainer = L.Trainer(max_steps=train.steps, max_epochs=1, accelerator="cpu", devices=1, logger=logger,
                        enable_checkpointing=False, enable_model_summary=False, log_every_n_steps=10,
                        enable_progress_bar=progress)
    t0 = time.perf_counter()
    try:
        trainer.fit(module, loader)
    finally:
        torch.set_num_threads(old_threads)
    seconds = time.perf_counter() - t0
    meta = {"model": "sint", "model_kwargs": dict(train.model_kwargs), "num_classes": 0, "task": "track",
            "default_cfg": {k: list(v) if isinstance(v, tuple) else v for k, v in module.model.default_cfg.items()},
            "tracker": _plain(dataclasses.asdict(tracker)), "pairs": _plain(dataclasses.asdict(pairs)),
            "train": _plain(dataclasses.asdict(train)), "train_seconds": round(seconds, 1),
            "sequences": len(sequences), "global_step": int(trainer.global_step),
            "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()}}
    state = {f"model.{k}": v.detach().clone() for k, v in module.model.state_dict().items()}
    save_atomic({"lightvid": meta, "state_dict": state}, ckpt_path)
    tmp = out / ".train.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    tmp.replace(out / "train.json")
    return ckpt_path


def _plain(obj):
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj
