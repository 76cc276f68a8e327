"""The LightningModule for classification: loss, clip- and video-level accuracy, optimiser, schedule.

Batches are ``(x, labels, video_indices, num_bad)`` (``lightvid.data.build.collate_skip_bad``);
``x`` is a video ``(B, C, T, H, W)`` or an image ``(B, C, H, W)`` batch; the module never
assumes which. Validation averages the softmax of every clip (x crop) of a video, the
video-level protocol of Karpathy et al. (CVPR 2014) and Tran et al. (C3D, ICCV 2015).

Subclasses change the objective by overriding :meth:`ClassificationModule.compute_loss`
(knowledge distillation does). Everything saved in ``hparams`` and in the checkpoint's
``lightvid`` entry is plain Python, so checkpoints load with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import math

import lightning as L
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy
from torchmetrics.functional.classification import multiclass_accuracy

from lightvid.checkpoint import checkpoint_meta
from lightvid.models.pretrained_keys import load_pretrained
from lightvid.models.registry import create_model
from lightvid.train.augment import Mixer
from lightvid.train.config import DataConfig, OptimConfig, ScheduleConfig, from_dict, to_plain
from lightvid.train.evaluate import VideoScores


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the message names the step."""


class TooManyBadFilesError(RuntimeError):
    """More of an epoch failed to decode than ``data.max_bad_fraction`` allows."""


class ClassificationModule(L.LightningModule):
    """Wraps a registered model; cross-entropy (with optional label smoothing) by default.

    Args:
        model_name, model_kwargs, input_transform, weights: passed to ``create_model``.
        num_classes, classes: classifier size and class names (stored in the checkpoint).
        optim: ``OptimConfig`` as a dict (``to_plain``), read back into an ``OptimConfig``
            (``self.optim_cfg``); missing keys take the dataclass defaults.
        schedule: ``ScheduleConfig`` as a dict, likewise (``self.schedule_cfg``).
        config: the resolved run config (``TrainConfig.to_dict()``), stored for ``load_model``.
        num_val_videos: size of the video-level accumulator (0: grow as needed).
        augment: ``AugmentConfig`` as a dict; its mixup / cutmix keys mix training batches here
            (soft targets reach :meth:`compute_loss`), the others act in the data and callbacks.
    """

    def __init__(self, model_name: str, num_classes: int, model_kwargs: dict | None = None,
                 classes: list[str] | None = None, optim: dict | None = None, schedule: dict | None = None,
                 config: dict | None = None, input_transform: str | None = None, weights: str | None = None,
                 num_val_videos: int = 0, init: str = "default", augment: dict | None = None):
        super().__init__()
        self.save_hyperparameters()
        self.model_name = model_name
        self.model_kwargs = dict(model_kwargs or {})
        self.num_classes = num_classes
        self.classes = list(classes) if classes is not None else [str(i) for i in range(num_classes)]
        # typed here, plain in hparams and the checkpoint (weights_only); a missing key takes the dataclass default
        self.optim_cfg = from_dict(OptimConfig, optim or {}, "optim", prefix="optim.")
        self.schedule_cfg = from_dict(ScheduleConfig, schedule or {}, "schedule", prefix="schedule.")
        self.run_config = config or {}
        self.input_transform = input_transform
        self.model = create_model(model_name, num_classes=num_classes, input_transform=input_transform,
                                  weights=weights, **self.model_kwargs)
        if init == "kaiming" and weights is None:
            reinit_kaiming(self.model)
        elif init not in ("default", "kaiming"):  # a weights file: any layout load_pretrained reads
            load_pretrained(self.model, init)
        self.label_smoothing = self.optim_cfg.label_smoothing
        a = augment or {}
        self.mixer = Mixer(num_classes, mixup_alpha=float(a.get("mixup_alpha", 0.0)),
                           cutmix_alpha=float(a.get("cutmix_alpha", 0.0)), prob=float(a.get("mix_prob", 1.0)),
                           switch_prob=float(a.get("mix_switch_prob", 0.5)))
        k5 = min(5, num_classes)
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc5 = MulticlassAccuracy(num_classes, top_k=k5, average="micro")
        self.num_val_videos = num_val_videos
        self._videos: VideoScores | None = None  # the video-level accumulator of a validation epoch
        data_cfg = from_dict(DataConfig, (config or {}).get("data") or {}, "config", prefix="data.")
        self.max_bad_fraction = data_cfg.max_bad_fraction
        self._epoch_items = self._epoch_bad = 0

    # -- model -----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def compute_loss(self, logits: torch.Tensor, labels: torch.Tensor, batch) -> torch.Tensor:
        """The training objective; override to change it (``batch`` is the whole batch).

        ``labels`` are class indices ``(B,)``, or soft targets ``(B, K)`` when mixup / cutmix is on."""
        return F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)

    # -- training --------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        x, y, _, num_bad = batch
        self._epoch_items += x.shape[0] + int(num_bad)
        self._epoch_bad += int(num_bad)
        if num_bad:
            self.log("data/bad_train", float(num_bad), on_step=False, on_epoch=True, reduce_fx="sum", sync_dist=True)
        if x.shape[0] == 0:
            return None  # every item of this batch failed to decode (reported above)
        target = y
        if self.mixer.active:
            x, target = self.mixer(x, y)  # (B, K) soft targets
        logits = self(x)
        loss = self.compute_loss(logits, target, batch)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"training loss became {loss.item()} at step {self.global_step} (epoch {self.current_epoch}, "
                f"batch {batch_idx}); stopped, the last good checkpoint is kept")
        self.train_acc(logits.detach().float(), y)
        bs = x.shape[0]
        self.log("train/loss", loss.detach(), on_step=True, on_epoch=True, prog_bar=True, batch_size=bs, sync_dist=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True, batch_size=bs)
        return loss

    def on_train_epoch_start(self) -> None:
        self._epoch_items = self._epoch_bad = 0

    def on_train_epoch_end(self) -> None:
        if self._epoch_items and self._epoch_bad / self._epoch_items > self.max_bad_fraction:
            raise TooManyBadFilesError(
                f"{self._epoch_bad} of {self._epoch_items} training clips of epoch {self.current_epoch} failed to "
                f"decode (more than data.max_bad_fraction={self.max_bad_fraction}); see the warnings above, "
                "or run `lightvid data check`")

    # -- validation: clip level per step, video level per epoch ---------------------------------
    def on_validation_epoch_start(self) -> None:
        n = self.num_val_videos
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        ds = getattr(dm, "val_dataset", None)
        if ds is not None and getattr(ds, "num_videos", None):
            n = int(ds.num_videos)
        self._videos = VideoScores(n, self.num_classes, self.device)

    def validation_step(self, batch, batch_idx):
        x, y, vid, num_bad = batch
        if num_bad:
            self.log("data/bad_val", float(num_bad), on_step=False, on_epoch=True, reduce_fx="sum", sync_dist=True)
        if x.shape[0] == 0:
            return None
        logits = self(x).float()
        loss = F.cross_entropy(logits, y)
        bs = x.shape[0]
        self.val_acc(logits, y)
        self.val_acc5(logits, y)
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, batch_size=bs, sync_dist=True)
        self.log("val/acc_clip", self.val_acc, on_epoch=True, prog_bar=True, batch_size=bs)
        self.log("val/acc5_clip", self.val_acc5, on_epoch=True, batch_size=bs)
        if self._videos is None:
            self._videos = VideoScores(0, self.num_classes, self.device)
        self._videos.add(logits, y, vid)

    def on_validation_epoch_end(self) -> None:
        videos = self._videos
        if videos is None:
            return
        if self.trainer.world_size > 1:  # every rank saw some clips of some videos: sum them up
            n = torch.tensor([videos.probs.shape[0]], device=self.device)
            videos.grow(int(self.trainer.strategy.reduce(n, reduce_op="max")))
            videos.probs = self.trainer.strategy.reduce(videos.probs, reduce_op="sum")
            videos.count = self.trainer.strategy.reduce(videos.count, reduce_op="sum")
            videos.label = self.trainer.strategy.reduce(videos.label, reduce_op="max")
        p, t = videos.mean()
        if len(t):
            k5 = min(5, self.num_classes)
            top1 = multiclass_accuracy(p, t, self.num_classes, average="micro")
            top5 = multiclass_accuracy(p, t, self.num_classes, top_k=k5, average="micro")
            # already reduced over ranks: every rank logs the same value
            self.log("val/acc_video", top1, prog_bar=True, sync_dist=True)
            self.log("val/acc5_video", top5, sync_dist=True)
            self.log("val/videos", float(len(t)), sync_dist=True)
        self._videos = None

    # -- optimisation ---------------------------------------------------------------------
    def configure_optimizers(self):
        o = self.optim_cfg
        name, lr, wd = o.name, o.lr, o.weight_decay
        # no weight decay on biases and norm parameters
        decay = [p for p in self.model.parameters() if p.requires_grad and p.ndim > 1]
        no_decay = [p for p in self.model.parameters() if p.requires_grad and p.ndim <= 1]
        groups = [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]
        if name == "adamw":
            opt = torch.optim.AdamW(groups, lr=lr, betas=tuple(o.betas))
        elif name == "sgd":
            opt = torch.optim.SGD(groups, lr=lr, momentum=o.momentum, nesterov=o.nesterov)
        else:
            raise ValueError(f"optim.name must be sgd or adamw, got {name!r}")
        total = max(1, int(self.trainer.estimated_stepping_batches))
        epochs = max(1, int(self.trainer.max_epochs or 1))
        lam = LRLambda(total_steps=total, steps_per_epoch=max(1, total // epochs),
                       **to_plain(self.schedule_cfg))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lam)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # -- checkpoint metadata (the load_model contract) --------------------------------------
    def checkpoint_meta(self) -> dict:
        return checkpoint_meta(self.model_name, self.model, self.model_kwargs, self.num_classes, self.classes,
                               self.input_transform, self.run_config)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        meta = self.checkpoint_meta()
        meta["epoch"] = int(checkpoint.get("epoch", self.current_epoch))
        meta["global_step"] = int(checkpoint.get("global_step", self.global_step))
        metrics = {}
        if self._trainer is not None:
            for k, v in self.trainer.callback_metrics.items():
                if isinstance(v, torch.Tensor) and v.numel() == 1:
                    metrics[k] = float(v)
        meta["metrics"] = metrics
        checkpoint["lightvid"] = meta


class LRLambda:
    """Multiplier of the base lr at a step: linear warm-up then cosine / step / constant.

    A callable object (not a closure) so ``LambdaLR.state_dict`` stores plain numbers.
    """

    def __init__(self, total_steps: int, steps_per_epoch: int, name: str = "cosine", warmup_epochs: float = 0.0,
                 warmup_start_factor: float = 0.1, min_lr_factor: float = 0.0, milestones=(), gamma: float = 0.1):
        self.total_steps = int(total_steps)
        self.steps_per_epoch = int(steps_per_epoch)
        self.name = name
        self.warmup_steps = int(round(warmup_epochs * steps_per_epoch))
        self.warmup_start_factor = float(warmup_start_factor)
        self.min_lr_factor = float(min_lr_factor)
        self.milestones = [int(m) for m in milestones]
        self.gamma = float(gamma)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            a = step / max(1, self.warmup_steps)
            return self.warmup_start_factor + (1 - self.warmup_start_factor) * a
        if self.name == "cosine":
            span = max(1, self.total_steps - self.warmup_steps)
            t = min(1.0, (step - self.warmup_steps) / span)
            return self.min_lr_factor + (1 - self.min_lr_factor) * 0.5 * (1 + math.cos(math.pi * t))
        if self.name == "step":
            epoch = step // self.steps_per_epoch
            return self.gamma ** sum(epoch >= m for m in self.milestones)
        return 1.0


def reinit_kaiming(model: nn.Module) -> nn.Module:
    """Kaiming-normal convolutions, unit norms (``init_weights``) and He fan-in hidden linears.

    For models that keep PyTorch's default initialisation (C3D): with it, a deep stack without
    batch norm loses its signal at small widths and training stays at chance. The classifier
    keeps ``N(0, 0.01)`` (He et al., ICCV 2015).
    """
    from lightvid.models.base import init_weights

    init_weights(model)
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    for m in model.modules():
        if isinstance(m, nn.Linear) and m is not head:
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return model
