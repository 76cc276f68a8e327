"""``train(cfg, out_dir)``: one training run on Lightning, then its report.

The run folder::

    OUT/config.yaml              the resolved config (``lightvid train --config OUT/config.yaml`` repeats it)
    OUT/checkpoints/last.ckpt    end of the latest epoch (``--resume`` continues from it)
    OUT/checkpoints/best.ckpt    the epoch with the best video-level validation top-1
    OUT/metrics.csv              Lightning's CSVLogger: every logged value
    OUT/learning_curves.png      train/val loss and accuracy per epoch
    OUT/confusion_matrix.png/.csv, OUT/per_class.csv   video level, best checkpoint
    OUT/summary.txt              parameters and MACs per layer (lightvid summary)
    OUT/report.json              final metrics and timing

Checkpoints, resume, progress bars, precision and DDP are Lightning's; lightvid adds the
atomic, code-free checkpoint I/O, per-epoch seeding and the video-level metrics.
"""
from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import lightning as L
import torch

from lightvid.errors import UserError
from lightvid.train.augment import TemporalRandAugment, WeightEMA
from lightvid.train.config import TrainConfig, save_config
from lightvid.train.finetune import FreezeBackbone

DATA_READY = ".data_ready"


def resolve_precision(precision: str, accelerator: str = "auto") -> str:
    """``auto``: bf16-mixed on a bf16-capable GPU or CPU (AVX512-BF16/AMX), 16-mixed on older GPUs, else 32."""
    if precision != "auto":
        return precision
    if torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda"):
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    if cpu_supports_bf16():
        return "bf16-mixed"
    return "32"


def cpu_supports_bf16() -> bool:
    cpu = getattr(torch, "cpu", None)
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        fn = getattr(cpu, probe, None)
        if fn is not None and fn():
            return True
    return False


def _global_rank() -> int:
    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


def default_out_dir(cfg: TrainConfig) -> Path:
    return Path("runs") / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _check_data_root(cfg: TrainConfig) -> None:
    root = getattr(cfg.data, "root", None)
    fmt = getattr(cfg.data, "format", "auto")
    if fmt in ("synth", "digits") or root in (None, "", "digits"):  # generated / built in
        return
    if not Path(root).exists():
        raise UserError(f"data.root={str(root)!r}: no such file or folder")


def _sample_shape(dataset) -> tuple[int, ...] | None:
    for i in range(min(len(dataset), 8)):
        item = dataset[i]
        if item is not None:
            return tuple(item[0].shape)
    return None


def _wait_for(path: Path, timeout_s: float = 3600.0) -> None:
    t0 = time.time()
    while not path.exists():
        if time.time() - t0 > timeout_s:
            raise UserError(f"{path}: rank 0 did not prepare the data within {timeout_s:.0f} s")
        time.sleep(1.0)


def train(cfg: TrainConfig, out_dir: str | os.PathLike | None = None, resume: bool = False,
          module_cls=None, module_kwargs: dict | None = None, callbacks: list | None = None) -> dict:
    """Train ``cfg`` into ``out_dir``; returns the report (also written to ``report.json``).

    ``module_cls`` (default :class:`~lightvid.train.module.ClassificationModule`) and
    ``module_kwargs`` let a subclass (e.g. distillation) reuse the whole run; extra Lightning
    ``callbacks`` are appended. Only global rank 0 evaluates and writes the report; other
    ranks return ``{}``.
    """
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    from lightvid.models.registry import create_model
    from lightvid.train.checkpoint import AtomicCheckpointIO
    from lightvid.train.datamodule import EpochSeed, VideoDataModule
    from lightvid.train.module import ClassificationModule, NonFiniteLossError, TooManyBadFilesError

    t_start = time.perf_counter()
    module_cls = module_cls or ClassificationModule
    cfg.validate()
    _check_data_root(cfg)
    out = Path(out_dir) if out_dir is not None else default_out_dir(cfg)
    ckpt_dir = out / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    rank = _global_rank()
    if resume and not last.is_file():
        raise UserError(f"{last}: no checkpoint to resume from")
    if not resume and last.exists() and rank == 0:
        raise UserError(f"{out}: already holds a run; pass --resume to continue it, or choose another --out")
    t = cfg.trainer
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    precision = resolve_precision(t.precision, t.accelerator)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / DATA_READY).unlink(missing_ok=True)
        save_config(cfg, out / "config.yaml")
        if resume and (out / "metrics.csv").is_file():  # CSVLogger would delete it: keep it as a part
            n = len(list(out.glob("metrics.part*.csv")))
            (out / "metrics.csv").rename(out / f"metrics.part{n}.csv")
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    with torch.device("meta"):
        ref = create_model(cfg.model.name, **cfg.model.kwargs)
    mean, std = ref.default_cfg.get("mean"), ref.default_cfg.get("std")
    aug = cfg.augment
    policy = None
    if aug.randaugment_ops > 0:
        policy = TemporalRandAugment(aug.randaugment_ops, aug.randaugment_magnitude, aug.randaugment_magnitude_std)
    dm = VideoDataModule(cfg.data, batch_size=t.batch_size, eval_batch_size=t.eval_batch_size, mean=mean,
                         std=std, seed=cfg.seed,
                         deterministic=t.deterministic, policy=policy, repeats=aug.repeats)
    if rank == 0:  # rank 0 prepares (e.g. generates the synthetic set); the others wait for it
        dm.setup("fit")
        (out / DATA_READY).write_text("ok\n")
    else:
        _wait_for(out / DATA_READY)
        dm.setup("fit")
    classes = dm.classes
    num_classes = cfg.model.num_classes or len(classes)
    if len(classes) != num_classes:
        raise UserError(f"model.num_classes={num_classes} but the training set has {len(classes)} classes")
    if len(dm.train_dataset) == 0:
        raise UserError(f"data: the {dm.train_split!r} split is empty")
    if len(dm.val_dataset) == 0:
        raise UserError(f"data: the {dm.val_split!r} split is empty")

    module = module_cls(
        model_name=cfg.model.name, num_classes=num_classes, model_kwargs=dict(cfg.model.kwargs), classes=classes,
        optim=cfg.to_dict()["optim"], schedule=cfg.to_dict()["schedule"], config=cfg.to_dict(),
        input_transform=cfg.model.input_transform, weights=cfg.model.weights,
        num_val_videos=int(getattr(dm.val_dataset, "num_videos", 0) or 0), init=cfg.model.init,
        augment=cfg.to_dict()["augment"], **(module_kwargs or {}))

    ckpt_cb = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val/acc_video", mode="max", save_top_k=1,
                              auto_insert_metric_name=False, enable_version_counter=False)
    # Lightning's save_last only writes when a top-k checkpoint is written, so a run whose
    # accuracy stops improving would resume from a stale epoch: a second callback keeps the
    # latest epoch (after its validation) as last.ckpt.
    last_cb = ModelCheckpoint(dirpath=ckpt_dir, filename="last", monitor=None, save_top_k=1, every_n_epochs=1,
                              save_on_train_epoch_end=True, auto_insert_metric_name=False,
                              enable_version_counter=False)
    speed = Throughput()
    cbs = [ckpt_cb, last_cb, EpochSeed(cfg.seed), speed, LearningRateMonitor("epoch"), *(callbacks or [])]
    if aug.ema_decay is not None:
        cbs.append(WeightEMA(aug.ema_decay))
    if cfg.model.freeze_backbone_epochs > 0:
        cbs.append(FreezeBackbone(cfg.model.freeze_backbone_epochs))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        warnings.filterwarnings("ignore", message=".*Experiment logs directory.*")  # our config.yaml is there
        trainer = L.Trainer(
            max_epochs=t.max_epochs, accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes,
            strategy=t.strategy, precision=precision, deterministic=t.deterministic,
            gradient_clip_val=t.grad_clip, accumulate_grad_batches=t.accumulate_grad_batches,
            limit_train_batches=None if t.limit_train_batches == 1.0 else t.limit_train_batches,
            limit_val_batches=None if t.limit_val_batches == 1.0 else t.limit_val_batches,
            check_val_every_n_epoch=t.check_val_every_n_epoch, log_every_n_steps=t.log_every_n_steps,
            logger=CSVLogger(out, name="", version="", flush_logs_every_n_steps=t.log_every_n_steps), callbacks=cbs, plugins=[AtomicCheckpointIO()],
            default_root_dir=out, num_sanity_val_steps=0, enable_progress_bar=t.progress_bar,
            enable_model_summary=False, use_distributed_sampler=False,
        )
        try:
            trainer.fit(module, datamodule=dm, ckpt_path=str(last) if resume else None)
        except NonFiniteLossError as e:
            kept = f"{last}" if last.exists() else "none written yet"
            raise UserError(f"{e.args[0]} (checkpoint kept: {kept})") from None
        except TooManyBadFilesError as e:
            raise UserError(e.args[0]) from None
    if trainer.interrupted:
        raise UserError(f"training interrupted; resume with `lightvid train --out {out} --resume`")
    if not trainer.is_global_zero:
        return {}
    best = Path(ckpt_cb.best_model_path) if ckpt_cb.best_model_path else last
    report = {
        "model": cfg.model.name, "name": cfg.name, "run_dir": str(out), "precision": precision,
        "world_size": trainer.world_size, "epochs": int(trainer.current_epoch),
        "best_checkpoint": str(best), "last_checkpoint": str(last),
        "train_clips": len(dm.train_dataset), "val_videos": int(getattr(dm.val_dataset, "num_videos", 0) or 0),
        "val_clips": len(dm.val_dataset), "train_clips_per_s": round(speed.clips_per_s * trainer.world_size, 2),
        "train_time_s": round(speed.elapsed, 2),
    }
    final_report(report, cfg, out, dm, best, precision, do_eval=t.final_eval)
    report["wall_s"] = round(time.perf_counter() - t_start, 2)
    from lightvid.train.report import write_json

    write_json(report, out / "report.json")
    print(f"wall time {report['wall_s']:.1f} s (training {report['train_time_s']:.1f} s)")
    return report


class Throughput(L.Callback):
    """Training clips per second (data loading included, validation excluded)."""

    def __init__(self):
        self.clips = 0
        self.elapsed = 0.0
        self._t0 = self._t_last = None

    def on_train_epoch_start(self, trainer, pl_module):
        self._t0 = self._t_last = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.clips += int(batch[0].shape[0])
        self._t_last = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        if self._t0 is not None:
            self.elapsed += self._t_last - self._t0
        self._t0 = None

    @property
    def clips_per_s(self) -> float:
        return self.clips / self.elapsed if self.elapsed > 0 else 0.0


def final_report(report: dict, cfg: TrainConfig, out: Path, dm, best: Path, precision: str,
                 do_eval: bool = True) -> dict:
    """Evaluate the best checkpoint, write plots, tables and summary; fills ``report`` in place."""
    from lightvid.analysis.summary import format_summary, summarize
    from lightvid.train.checkpoint import load_model
    from lightvid.train.evaluate import evaluate
    from lightvid.train.report import (epoch_metrics, format_per_class, format_table, plot_learning_curves,
                                       write_confusion)

    model, meta = load_model(best)
    report["best_epoch"] = meta.get("epoch")
    shape = _sample_shape(dm.val_dataset)
    if shape is not None:
        try:
            s = summarize(model, shape, cfg.model.name)
            (out / "summary.txt").write_text(format_summary(s) + "\n")
            report.update(params=s.params, macs=s.macs, input=list(shape))
        except (RuntimeError, ValueError) as e:
            (out / "summary.txt").write_text(f"summary failed at input {shape}: {e}\n")
    epochs = epoch_metrics(metrics_files(out))
    if epochs:
        plot_learning_curves(epochs, out / "learning_curves.png", title=f"{cfg.name}: {cfg.model.name}")
        report["learning_curves"] = str(out / "learning_curves.png")
        lastep = epochs[-1]
        for key, name in (("train/loss_epoch", "train_loss"), ("train/acc", "train_top1"), ("val/loss", "val_loss")):
            if key in lastep:
                report[name] = round(lastep[key], 5)
    if do_eval:
        res = evaluate(model, dm.val_dataset, meta["classes"], batch_size=dm.eval_batch_size,
                       num_workers=dm._workers(), precision=precision, device=_eval_device(cfg))
        report.update(val_top1_clip=res.clip_top1, val_top5_clip=res.clip_top5, val_top1_video=res.video_top1,
                      val_top5_video=res.video_top5, val_bad_files=res.num_bad,
                      per_class=dict(zip(res.classes, res.per_class)))
        write_confusion(res.confusion, res.classes, out / "confusion_matrix.png", out / "confusion_matrix.csv",
                        title=f"{cfg.model.name}: video-level confusion (val)")
        report["confusion_matrix"] = str(out / "confusion_matrix.png")
        (out / "per_class.csv").write_text("class,video_top1\n" + "".join(
            f"{c},{a:.4f}\n" for c, a in zip(res.classes, res.per_class)))
        print()
        print(format_per_class(res.classes, res.per_class))
    else:
        m = meta.get("metrics", {})
        report.update(val_top1_clip=m.get("val/acc_clip"), val_top5_clip=m.get("val/acc5_clip"),
                      val_top1_video=m.get("val/acc_video"), val_top5_video=m.get("val/acc5_video"))
    rows = [("model", f"{cfg.model.name} {cfg.model.kwargs or ''}".strip()),
            ("epochs", f"{report['epochs']} (best {report.get('best_epoch')})"),
            ("precision", precision)]
    if "params" in report:
        rows.append(("params / MACs", f"{report['params']:,} / {report['macs'] / 1e6:.1f} M per clip"))
    for key in ("train_loss", "train_top1", "val_loss"):
        if key in report:
            rows.append((key, f"{report[key]:.4f}"))
    for key in ("val_top1_clip", "val_top5_clip", "val_top1_video", "val_top5_video"):
        if report.get(key) is not None:
            rows.append((key, f"{report[key]:.4f}"))
    rows += [("train clips/s", f"{report['train_clips_per_s']:.1f}"),
             ("best checkpoint", report["best_checkpoint"])]
    for key in ("learning_curves", "confusion_matrix"):
        if key in report:
            rows.append((key.replace("_", " "), report[key]))
    rows.append(("report", str(out / "report.json")))
    print()
    print(format_table(rows, title=f"run {out}"))
    return report


def metrics_files(out: Path) -> list[Path]:
    """``metrics.csv`` and the parts earlier (resumed) sessions left, oldest first."""
    parts = sorted(out.glob("metrics.part*.csv"), key=lambda p: int(p.stem.split("part")[-1]))
    return [*parts, out / "metrics.csv"]


def _eval_device(cfg: TrainConfig) -> str:
    if cfg.trainer.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "cuda"
    return "cpu"
