"""``lightvid train --lr-find``: Lightning's learning-rate range test on the run's own data and model.

Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017: the learning rate grows
exponentially from ``min_lr`` to ``max_lr`` over ``num_training`` steps while the loss is
recorded; the suggestion is the steepest descent of the smoothed loss
(``lightning.pytorch.tuner.Tuner.lr_find``). The result goes to ``OUT/lr_find.png`` and
``OUT/lr_find.json``; nothing is trained and the config is not changed (pass the suggestion as
``optim.lr=...``).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import lightning as L
import torch

from lightvid.train.config import TrainConfig


def lr_find(cfg: TrainConfig, out_dir: str | os.PathLike, min_lr: float = 1e-6, max_lr: float = 1.0,
            num_training: int = 100) -> dict:
    """Run the range test for ``cfg``; returns ``{"suggested_lr", "lrs", "losses", "plot"}``."""
    from lightning.pytorch.tuner import Tuner

    from lightvid.models.registry import create_model
    from lightvid.train.augment import TemporalRandAugment
    from lightvid.train.datamodule import VideoDataModule
    from lightvid.train.module import ClassificationModule
    from lightvid.train.report import write_json

    cfg.validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t, aug = cfg.trainer, cfg.augment
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    with torch.device("meta"):
        ref = create_model(cfg.model.name, **cfg.model.kwargs)
    policy = None
    if aug.randaugment_ops > 0:
        policy = TemporalRandAugment(aug.randaugment_ops, aug.randaugment_magnitude, aug.randaugment_magnitude_std)
    dm = VideoDataModule(cfg.data, batch_size=t.batch_size, eval_batch_size=t.eval_batch_size,
                         mean=ref.default_cfg.get("mean"), std=ref.default_cfg.get("std"), seed=cfg.seed,
                         policy=policy, repeats=aug.repeats)
    dm.setup("fit")
    plain = cfg.to_dict()
    module = ClassificationModule(
        model_name=cfg.model.name, num_classes=cfg.model.num_classes or len(dm.classes),
        model_kwargs=dict(cfg.model.kwargs), classes=dm.classes, optim=plain["optim"],
        schedule={**plain["schedule"], "name": "constant", "warmup_epochs": 0.0}, config=plain,
        input_transform=cfg.model.input_transform, weights=cfg.model.weights, init=cfg.model.init,
        augment=plain["augment"])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        trainer = L.Trainer(accelerator=t.accelerator, devices=1, precision=t.precision if t.precision != "auto"
                            else "32", logger=False, enable_checkpointing=False, enable_progress_bar=t.progress_bar,
                            enable_model_summary=False, default_root_dir=out, gradient_clip_val=t.grad_clip,
                            use_distributed_sampler=False)
        finder = Tuner(trainer).lr_find(module, datamodule=dm, min_lr=min_lr, max_lr=max_lr,
                                        num_training=num_training, update_attr=False, early_stop_threshold=4.0)
    suggestion = finder.suggestion()
    fig = finder.plot(suggest=True)
    fig.savefig(out / "lr_find.png", dpi=80)
    result = {"suggested_lr": suggestion, "config_lr": cfg.optim.lr, "lrs": [float(v) for v in finder.results["lr"]],
              "losses": [float(v) for v in finder.results["loss"]], "plot": str(out / "lr_find.png")}
    write_json(result, out / "lr_find.json")
    return result
