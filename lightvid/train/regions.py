"""Training and evaluation of the region tasks on Lightning: ``task: detect | localize | segment``.

The config is the usual :class:`~lightvid.train.config.TrainConfig` (``model`` names the backbone,
any registered 2D or 3D network; ``optim``, ``schedule``, ``trainer`` as for classification) with
``task`` and a ``regions`` section (:class:`RegionsConfig`) instead of ``data``::

    task: detect
    model: {name: resnet18, kwargs: {width_mult: 0.5}}
    regions:
      root: .cache/objects                 # a lightvid objects set; generated from `synth` if absent
      synth: {train: 300, val: 60}         # generate_objects parameters
      clip_len: 1                          # 1: frames (2D backbone); > 1: clips (3D backbone, key frame in the middle)
      head: {feature_stride: 8, anchor_sizes: [16, 24, 32]}   # FasterRCNN / ActionLocalizer / FCN kwargs

Metrics (validation split, every epoch; the best epoch is kept): ``detect``: COCO mAP and mAP@0.5
over object categories; ``localize``: frame-mAP@0.5 (and COCO mAP) over actions on key frames;
``segment``: mean IoU over background + categories (torchmetrics ``JaccardIndex``, macro).
The run folder holds ``config.yaml``, ``checkpoints/{best,last}.ckpt``, ``metrics.csv``,
``report.json`` and ``pictures/`` (predictions drawn on validation frames, PNG, and one MP4 clip).
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from lightvid.data.objects_dataset import ObjectsDataset, collate_regions
from lightvid.data.synth_objects import ACTIONS, CATEGORIES, generate_objects, read_objects_stamp
from lightvid.errors import UserError
from lightvid.models.regions import build_region_model
from lightvid.train.config import TrainConfig, from_dict, save_config
from lightvid.train.module import LRLambda, NonFiniteLossError
from lightvid.train.region_metrics import CocoBoxMAP

REGION_TASKS = ("detect", "localize", "segment")
MONITOR = {"detect": "val/map_50", "localize": "val/map_50", "segment": "val/miou"}


@dataclass
class RegionsConfig:
    root: str = ".cache/objects"
    synth: dict = field(default_factory=dict)  # lightvid.data.synth_objects parameters (when root has no set)
    clip_len: int = 1
    train_step: int = 1  # key frames: every train_step-th clip start in training
    eval_step: int = 1  # ... and in validation
    hflip: bool = True
    min_visibility: float = 0.25  # objects less visible than this are ignored (COCO iscrowd)
    head: dict = field(default_factory=dict)  # keyword arguments of the task's model
    num_workers: int = 0
    pictures: int = 6  # validation frames drawn into pictures/


def regions_config(cfg: TrainConfig) -> RegionsConfig:
    rc = from_dict(RegionsConfig, dict(cfg.regions or {}), "<config>", prefix="regions.")
    for key in ("clip_len", "train_step", "eval_step"):
        if getattr(rc, key) < 1:
            raise UserError(f"regions.{key} must be >= 1, got {getattr(rc, key)}")
    if not 0 <= rc.min_visibility <= 1:
        raise UserError(f"regions.min_visibility must be in [0, 1], got {rc.min_visibility}")
    return rc


def ensure_objects_set(rc: RegionsConfig, seed: int) -> Path:
    root = Path(rc.root)
    stamp = read_objects_stamp(root)
    if stamp is None:
        params = {"seed": seed, **rc.synth}
        print(f"writing the objects set {root} ({params})")
        generate_objects(root, workers=2, **params)
    elif rc.synth and any(stamp["params"].get(k) != v for k, v in rc.synth.items()):
        raise UserError(f"regions.root={str(root)!r} holds a set made with other parameters than regions.synth "
                        f"({root / 'objects.json'}); choose another root")
    return root


class RegionsDataModule(L.LightningDataModule):
    def __init__(self, rc: RegionsConfig, batch_size: int, eval_batch_size: int | None, mean, std, seed: int):
        super().__init__()
        self.rc, self.batch_size, self.seed = rc, batch_size, seed
        self.eval_batch_size = eval_batch_size or 2 * batch_size
        self.mean, self.std = mean, std

    def setup(self, stage: str | None = None) -> None:
        if getattr(self, "train_dataset", None) is not None:
            return
        rc = self.rc
        self.train_dataset = ObjectsDataset(rc.root, "train", rc.clip_len, rc.train_step, rc.hflip, rc.min_visibility,
                                            self.mean, self.std, seed=self.seed)
        self.val_dataset = ObjectsDataset(rc.root, "val", rc.clip_len, rc.eval_step, False, rc.min_visibility,
                                          self.mean, self.std)

    def train_dataloader(self) -> DataLoader:
        g = torch.Generator().manual_seed(self.seed + (self.trainer.current_epoch if self.trainer else 0))
        return DataLoader(self.train_dataset, self.batch_size, shuffle=True, generator=g, drop_last=True,
                          collate_fn=collate_regions, num_workers=self.rc.num_workers)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_dataset, self.eval_batch_size, shuffle=False, collate_fn=collate_regions,
                          num_workers=self.rc.num_workers)


def head_kwargs(task: str, rc: RegionsConfig) -> dict:
    """The model's keyword arguments: ``regions.head``, plus the clip length for the action localiser."""
    head = dict(rc.head)
    if task == "localize":
        head.setdefault("clip_len", rc.clip_len)
    return head


def _train_targets(task: str, targets: list[dict]) -> list[dict]:
    out = []
    for t in targets:
        keep = ~t["iscrowd"]
        out.append({"boxes": t["boxes"][keep], "labels": t["labels"][keep], "actions": t["actions"][keep]})
    return out


class RegionsModule(L.LightningModule):
    """One module for the three tasks; the model comes from :func:`build_region_model`."""

    def __init__(self, task: str, backbone: str, backbone_kwargs: dict, head: dict, optim: dict, schedule: dict,
                 config: dict | None = None):
        super().__init__()
        self.save_hyperparameters()
        self.task = task
        self.class_names = list(ACTIONS if task == "localize" else CATEGORIES)
        n = len(self.class_names) + (1 if task == "segment" else 0)  # segmentation adds background
        self.model = build_region_model(task, backbone, n, backbone_kwargs, **head)
        self.optim_cfg, self.schedule_cfg = optim, schedule
        if task == "segment":
            from torchmetrics.classification import MulticlassJaccardIndex

            self.val_miou = MulticlassJaccardIndex(n, average="macro")
            self.val_iou_per_class = MulticlassJaccardIndex(n, average="none")
        else:
            self.val_map = CocoBoxMAP(len(self.class_names), "actions" if task == "localize" else "labels")

    def forward(self, x):
        return self.model(x)

    def training_step(self, batch, batch_idx):
        x, targets = batch
        if self.task == "segment":
            logits = self.model(x)
            losses = {"loss_ce": F.cross_entropy(logits, torch.stack([t["semantic"] for t in targets]))}
        else:
            losses = self.model(x, _train_targets(self.task, targets))
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"training loss is {loss.item()} at step {self.global_step} "
                                     f"({', '.join(f'{k}={v.item():.4g}' for k, v in losses.items())})")
        for k, v in losses.items():
            self.log(f"train/{k}", v, on_step=False, on_epoch=True, batch_size=len(x))
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(x))
        return loss

    def on_validation_epoch_start(self) -> None:
        if self.task != "segment":
            self.val_map.reset()

    def validation_step(self, batch, batch_idx):
        x, targets = batch
        if self.task == "segment":
            pred = self.model(x).argmax(1)
            sem = torch.stack([t["semantic"] for t in targets])
            self.val_miou.update(pred, sem)
            self.val_iou_per_class.update(pred, sem)
        else:
            self.val_map.update(self.model(x), targets)

    def on_validation_epoch_end(self) -> None:
        if self.task == "segment":
            self.log("val/miou", self.val_miou.compute(), prog_bar=True)
            for name, v in zip(["background", *self.class_names], self.val_iou_per_class.compute()):
                self.log(f"val/iou_{name}", v)
            self.val_miou.reset()
            self.val_iou_per_class.reset()
            return
        r = self.val_map.compute()
        self.log("val/map_50", r["map_50"], prog_bar=True)
        self.log("val/map", r["map"])
        for name, v in zip(self.class_names, r["ap50_per_class"]):
            self.log(f"val/ap50_{name}", 0.0 if math.isnan(v) else v)

    def configure_optimizers(self):
        o = self.optim_cfg
        decay = [p for p in self.model.parameters() if p.requires_grad and p.ndim > 1]
        no_decay = [p for p in self.model.parameters() if p.requires_grad and p.ndim <= 1]
        groups = [{"params": decay, "weight_decay": o["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}]
        if o["name"] == "adamw":
            opt = torch.optim.AdamW(groups, lr=o["lr"], betas=tuple(o["betas"]))
        else:
            opt = torch.optim.SGD(groups, lr=o["lr"], momentum=o["momentum"], nesterov=o["nesterov"])
        total = max(1, int(self.trainer.estimated_stepping_batches))
        epochs = max(1, int(self.trainer.max_epochs or 1))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, LRLambda(total, max(1, total // epochs), **self.schedule_cfg))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def train_regions(cfg: TrainConfig, out_dir=None, resume: bool = False) -> dict:
    """Train ``cfg`` (``task`` detect / localize / segment) into ``out_dir``; -> the report.

    The run folder is opened as a classification run's is (:func:`lightvid.train.run_folder.open_run_folder`):
    a folder holding another run's files is refused, the user's other files are left alone, and a
    second process on the same folder is refused by its lock.
    """
    from lightvid.train.run_folder import default_out_dir, open_run_folder

    if cfg.task not in REGION_TASKS:
        raise UserError(f"task={cfg.task!r} is not one of {', '.join(REGION_TASKS)}")
    cfg.validate()
    regions_config(cfg)  # bad regions keys fail before anything is written
    out = Path(out_dir) if out_dir is not None else default_out_dir(cfg)
    lock = open_run_folder(out, resume)
    try:
        return _train_regions(cfg, out, resume)
    finally:
        lock.release()


def _train_regions(cfg: TrainConfig, out: Path, resume: bool) -> dict:
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    from lightvid.models.registry import create_model
    from lightvid.precision import resolve_precision
    from lightvid.train.checkpoint import AtomicCheckpointIO
    from lightvid.train.report import write_json
    from lightvid.train.throughput import Throughput

    t_start, cpu_start = time.perf_counter(), time.process_time()
    rc = regions_config(cfg)
    last = out / "checkpoints" / "last.ckpt"
    t = cfg.trainer
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    save_config(cfg, out / "config.yaml")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    ensure_objects_set(rc, cfg.seed)
    with torch.device("meta"):
        ref = create_model(cfg.model.name, **cfg.model.kwargs)
    mean, std = ref.default_cfg.get("mean"), ref.default_cfg.get("std")
    dm = RegionsDataModule(rc, t.batch_size, t.eval_batch_size, mean, std, cfg.seed)
    dm.setup("fit")
    module = RegionsModule(cfg.task, cfg.model.name, dict(cfg.model.kwargs), head_kwargs(cfg.task, rc),
                           cfg.to_dict()["optim"], cfg.to_dict()["schedule"], cfg.to_dict())
    monitor = MONITOR[cfg.task]
    best_cb = ModelCheckpoint(dirpath=out / "checkpoints", filename="best", monitor=monitor, mode="max", save_top_k=1,
                              auto_insert_metric_name=False, enable_version_counter=False)
    last_cb = ModelCheckpoint(dirpath=out / "checkpoints", filename="last", monitor=None, save_top_k=1,
                              every_n_epochs=1, save_on_train_epoch_end=True, enable_version_counter=False)
    speed = Throughput()
    precision = resolve_precision(t.precision, t.accelerator, training=True)
    trainer = L.Trainer(max_epochs=t.max_epochs, accelerator=t.accelerator, devices=1, precision=precision,
                        gradient_clip_val=t.grad_clip, limit_train_batches=None if t.limit_train_batches == 1.0
                        else t.limit_train_batches, limit_val_batches=None if t.limit_val_batches == 1.0
                        else t.limit_val_batches, check_val_every_n_epoch=t.check_val_every_n_epoch,
                        log_every_n_steps=t.log_every_n_steps, logger=CSVLogger(out, name="", version=""),
                        callbacks=[best_cb, last_cb, speed], plugins=[AtomicCheckpointIO()], default_root_dir=out,
                        num_sanity_val_steps=0, enable_progress_bar=t.progress_bar, enable_model_summary=False)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*LeafSpec.*")
            warnings.filterwarnings("ignore", message=".*Experiment logs directory.*")  # our config.yaml is there
            warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
            trainer.fit(module, datamodule=dm, ckpt_path=str(last) if resume else None)
    except NonFiniteLossError as e:
        raise UserError(f"{e.args[0]} (checkpoint kept: {last if last.exists() else 'none written yet'})") from None
    if trainer.interrupted:
        raise UserError(f"training interrupted; resume with `lightvid train --out {out} --resume`")
    train_s, train_cpu_s = time.perf_counter() - t_start, time.process_time() - cpu_start
    best = Path(best_cb.best_model_path) if best_cb.best_model_path else last
    times = {"epochs": int(trainer.current_epoch), "train_time_s": round(speed.elapsed, 1),
             "train_wall_s": round(train_s, 1),
             "train_cpu_s": round(train_cpu_s, 1)}  # this process's CPU time (all threads), data set up included
    report = finish_run(cfg, out, best, dm=dm, extra=times)
    report["wall_s"] = round(time.perf_counter() - t_start, 1)
    write_json(report, out / "report.json")
    print(f"wall time {report['wall_s']:.1f} s (training {report['train_time_s']:.1f} s, "
          f"CPU {report['train_cpu_s']:.1f} s); report {out / 'report.json'}")
    return report


def finish_run(cfg: TrainConfig, out: Path, checkpoint: Path, dm: RegionsDataModule | None = None,
               extra: dict | None = None) -> dict:
    """Evaluate ``checkpoint`` on the validation split, draw the pictures, write ``report.json``."""
    from lightvid.analysis.regions_draw import write_pictures
    from lightvid.models.registry import create_model
    from lightvid.train.report import write_json

    rc = regions_config(cfg)
    if dm is None:
        with torch.device("meta"):
            ref = create_model(cfg.model.name, **cfg.model.kwargs)
        dm = RegionsDataModule(rc, cfg.trainer.batch_size, cfg.trainer.eval_batch_size, ref.default_cfg.get("mean"),
                               ref.default_cfg.get("std"), cfg.seed)
        dm.setup("fit")
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    module = RegionsModule(cfg.task, cfg.model.name, dict(cfg.model.kwargs), head_kwargs(cfg.task, rc),
                           cfg.to_dict()["optim"], cfg.to_dict()["schedule"], cfg.to_dict())
    module.load_state_dict(ckpt["state_dict"])
    module.eval()
    final = evaluate_regions(module, dm.val_dataloader())
    report = {"task": cfg.task, "backbone": cfg.model.name, "backbone_kwargs": dict(cfg.model.kwargs),
              "head": dict(rc.head), "run_dir": str(out), "best_checkpoint": str(checkpoint),
              "best_epoch": int(ckpt.get("epoch", -1)), "best": final, "train_samples": len(dm.train_dataset),
              "val_samples": len(dm.val_dataset), "torch_threads": torch.get_num_threads(), **(extra or {})}
    report["pictures"] = write_pictures(module, dm.val_dataset, out / "pictures", rc.pictures)
    write_json(report, out / "report.json")
    print(f"{cfg.task}: " + ", ".join(f"{k}={v:.4f}" for k, v in final.items() if isinstance(v, float)))
    return report


@torch.no_grad()
def evaluate_regions(module: RegionsModule, loader) -> dict:
    """The task's metrics of ``module`` over ``loader`` (no Lightning loop)."""
    module.eval()
    module.on_validation_epoch_start()
    if module.task == "segment":
        module.val_miou.reset()
        module.val_iou_per_class.reset()
    for batch in loader:
        module.validation_step(batch, 0)
    if module.task == "segment":
        per_class = module.val_iou_per_class.compute().tolist()
        return {"miou": float(module.val_miou.compute()),
                "iou_per_class": dict(zip(["background", *module.class_names], [round(v, 4) for v in per_class]))}
    r = module.val_map.compute()
    out = {"map_50": r["map_50"], "map": r["map"],
           "ap50_per_class": dict(zip(module.class_names, [round(v, 4) for v in r["ap50_per_class"]]))}
    if module.task == "localize":  # the action head alone: ground-truth boxes in, no proposals
        gt_map = CocoBoxMAP(len(module.class_names), "actions")
        for x, targets in loader:
            scores = module.model.action_scores(x, [t["boxes"] for t in targets])
            preds = []
            for s, t in zip(scores, targets):
                n, a = s.shape
                preds.append({"boxes": t["boxes"][:, None].expand(-1, a, -1).reshape(-1, 4), "scores": s.reshape(-1),
                              "labels": torch.arange(1, a + 1).expand(n, -1).reshape(-1)})
            gt_map.update(preds, targets)
        g = gt_map.compute()
        out.update({"map_50_gt_boxes": g["map_50"], "ap50_per_class_gt_boxes":
                    dict(zip(module.class_names, [round(v, 4) for v in g["ap50_per_class"]]))})
    return out
