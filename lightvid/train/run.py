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

import math
import os
import time
import warnings
from pathlib import Path

import lightning as L
import torch

from lightvid.errors import UserError
from lightvid.fileio import write_text_atomic
from lightvid.precision import resolve_precision
from lightvid.train.augment import TemporalRandAugment, WeightEMA
from lightvid.train.config import TrainConfig, meta_model, save_config
from lightvid.train.finetune import FreezeBackbone
from lightvid.train.run_folder import RUN_FILES, default_out_dir, open_run_folder  # noqa: F401 (RUN_FILES: API)
from lightvid.train.throughput import Throughput

DATA_READY = ".lightvid-data-ready"  # rank 0 writes it when the data is prepared; removed at the end


def _global_rank() -> int:
    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


def _check_data_root(cfg: TrainConfig) -> None:
    root = getattr(cfg.data, "root", None)
    fmt = getattr(cfg.data, "format", "auto")
    if fmt == "synth" and root:  # generated: refused before anything is written when root is someone's folder
        from lightvid.data.synth import check_synth_root

        try:
            check_synth_root(root)
        except UserError as e:
            raise UserError(f"data.root={str(root)!r} with data.format=synth: {e}") from None
        return
    if fmt in ("synth", "digits") or root in (None, "", "digits"):  # generated / built in
        return
    if not Path(root).exists():
        raise UserError(f"data.root={str(root)!r}: no such file or folder")


def _sample_shape(dataset) -> tuple[int, ...] | None:
    if isinstance(dataset, torch.utils.data.IterableDataset):  # streamed shards: the first readable item
        item = next((x for x in dataset if x is not None), None)
        return tuple(item[0].shape) if item is not None else None
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
    t_start = time.perf_counter()
    cfg.validate()
    if cfg.task != "classify":  # detect / localize / segment
        from lightvid.train.regions import train_regions

        return train_regions(cfg, out_dir, resume=resume)
    _check_data_root(cfg)  # a user's folder given as the synthetic set's root is refused before anything is written
    # The model built on the meta device (no memory, no initialisation; about 0.1-0.2 s for a ResNet-152 or an
    # R(2+1)D-50 once imported): bad model values fail here, before anything is written, and its default_cfg gives
    # the mean/std the data is normalised with. The constructor is the one place that decides both (mean/std
    # follow the kwargs, e.g. ResNet(mean=..., std=...) and the CIFAR builders; input_transform rewrites the cfg's
    # input size), so a registry table of normalisations would copy that logic and could disagree with the model
    # that is then trained.
    ref = meta_model(cfg.model, "config")
    out = Path(out_dir) if out_dir is not None else default_out_dir(cfg)
    rank = _global_rank()
    lock = open_run_folder(out, resume) if rank == 0 else None
    try:
        return _train(cfg, ref, out, resume, rank, module_cls, module_kwargs, callbacks, t_start)
    finally:
        if lock is not None:
            (out / DATA_READY).unlink(missing_ok=True)
            lock.release()


def _steps_per_epoch(t, clips: int, world_size: int) -> int:
    """Optimiser steps in one epoch of ``clips`` training clips (the sampler drops a last partial batch)."""
    per_rank = math.ceil(clips / world_size)
    batches = per_rank // t.batch_size if per_rank > t.batch_size else 1
    if t.limit_train_batches < 1.0:
        batches = max(1, int(batches * t.limit_train_batches))
    return max(1, batches // t.accumulate_grad_batches)


def epochs_for_min_steps(t, clips: int, world_size: int = 1) -> int:
    """``trainer.max_epochs``, raised so that a small set still makes ``trainer.min_steps`` optimiser steps."""
    if not t.min_steps:
        return t.max_epochs
    return max(t.max_epochs, math.ceil(t.min_steps / _steps_per_epoch(t, clips, world_size)))


def _train(cfg: TrainConfig, ref, out: Path, resume: bool, rank: int, module_cls, module_kwargs, callbacks,
           t_start: float) -> dict:
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    from lightvid.train.checkpoint import AtomicCheckpointIO
    from lightvid.train.datamodule import EpochSeed, VideoDataModule
    from lightvid.train.module import ClassificationModule, NonFiniteLossError, TooManyBadFilesError

    module_cls = module_cls or ClassificationModule
    ckpt_dir = out / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    if resume and not last.is_file():
        raise UserError(f"{last}: no checkpoint to resume from")
    t = cfg.trainer
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    # warns and runs 32 for a bf16 the CPU lacks
    precision = resolve_precision(t.precision, t.accelerator, training=True)
    if rank == 0:
        (out / DATA_READY).unlink(missing_ok=True)  # a barrier an earlier, killed session of this run left
        save_config(cfg, out / "config.yaml")
        if resume and (out / "metrics.csv").is_file():  # CSVLogger would delete it: keep it as a part
            n = 1 + max((int(p.stem[len("metrics.part"):]) for p in out.glob("metrics.part*.csv")
                         if p.stem[len("metrics.part"):].isdigit()), default=-1)
            os.link(out / "metrics.csv", out / f"metrics.part{n}.csv")  # fails rather than replace a file
            (out / "metrics.csv").unlink()
    L.seed_everything(cfg.seed, workers=True, verbose=False)

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
        write_text_atomic(out / DATA_READY, "ok\n")
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
            logger=CSVLogger(out, name="", version="", flush_logs_every_n_steps=t.log_every_n_steps), callbacks=cbs,
            plugins=[AtomicCheckpointIO()],
            default_root_dir=out, num_sanity_val_steps=0, enable_progress_bar=t.progress_bar,
            enable_model_summary=False, use_distributed_sampler=False,
        )
        epochs = epochs_for_min_steps(t, len(dm.train_dataset), trainer.world_size)
        if epochs != t.max_epochs:
            trainer.fit_loop.max_epochs = epochs  # the cosine schedule reads the Trainer's epochs and steps
            if rank == 0:
                print(f"trainer.min_steps={t.min_steps}: {len(dm.train_dataset)} training clips make "
                      f"{_steps_per_epoch(t, len(dm.train_dataset), trainer.world_size)} steps per epoch; "
                      f"training {epochs} epochs instead of trainer.max_epochs={t.max_epochs}")
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


def final_report(report: dict, cfg: TrainConfig, out: Path, dm, best: Path, precision: str,
                 do_eval: bool = True) -> dict:
    """Evaluate the best checkpoint, write plots, tables and summary; fills ``report`` in place."""
    from lightvid.run_spec import load_model

    model, meta = load_model(best)
    report["best_epoch"] = meta.get("epoch")
    write_summary(report, model, cfg, out, dm.val_dataset)
    write_learning_curves(report, cfg, out)
    if do_eval:
        write_evaluation(report, model, meta, cfg, out, dm, precision)
    else:
        m = meta.get("metrics", {})
        report.update(val_top1_clip=m.get("val/acc_clip"), val_top5_clip=m.get("val/acc5_clip"),
                      val_top1_video=m.get("val/acc_video"), val_top5_video=m.get("val/acc5_video"))
    print_run_table(report, cfg, out, precision)
    return report


def write_summary(report: dict, model, cfg: TrainConfig, out: Path, dataset) -> None:
    """``summary.txt`` (parameters and MACs per layer at a real clip's shape); params/MACs into ``report``."""
    from lightvid.analysis.summary import format_summary, summarize

    shape = _sample_shape(dataset)
    if shape is None:
        return
    try:
        s = summarize(model, shape, cfg.model.name)
        write_text_atomic(out / "summary.txt", format_summary(s) + "\n")
        report.update(params=s.params, macs=s.macs, input=list(shape))
    except (RuntimeError, ValueError) as e:
        write_text_atomic(out / "summary.txt", f"summary failed at input {shape}: {e}\n")


def write_learning_curves(report: dict, cfg: TrainConfig, out: Path) -> None:
    """``learning_curves.png`` from every ``metrics*.csv``; the last epoch's losses into ``report``."""
    from lightvid.train.report import epoch_metrics, plot_learning_curves

    epochs = epoch_metrics(metrics_files(out))
    if not epochs:
        return
    plot_learning_curves(epochs, out / "learning_curves.png", title=f"{cfg.name}: {cfg.model.name}")
    report["learning_curves"] = str(out / "learning_curves.png")
    lastep = epochs[-1]
    for key, name in (("train/loss_epoch", "train_loss"), ("train/acc", "train_top1"), ("val/loss", "val_loss")):
        if key in lastep:
            report[name] = round(lastep[key], 5)


def write_evaluation(report: dict, model, meta: dict, cfg: TrainConfig, out: Path, dm, precision: str) -> None:
    """Evaluate on the validation split: accuracies into ``report``, confusion matrix and per-class CSV."""
    from lightvid.train.evaluate import evaluate
    from lightvid.train.report import format_per_class, write_confusion

    res = evaluate(model, dm.val_dataset, meta["classes"], batch_size=dm.eval_batch_size,
                   num_workers=dm._workers(), precision=precision, device=_eval_device(cfg))
    report.update(val_top1_clip=res.clip_top1, val_top5_clip=res.clip_top5, val_top1_video=res.video_top1,
                  val_top5_video=res.video_top5, val_bad_files=res.num_bad,
                  per_class=dict(zip(res.classes, res.per_class)))
    write_confusion(res.confusion, res.classes, out / "confusion_matrix.png", out / "confusion_matrix.csv",
                    title=f"{cfg.model.name}: video-level confusion (val)")
    report["confusion_matrix"] = str(out / "confusion_matrix.png")
    write_text_atomic(out / "per_class.csv", "class,video_top1\n" + "".join(
        f"{c},{a:.4f}\n" for c, a in zip(res.classes, res.per_class)))
    print()
    print(format_per_class(res.classes, res.per_class))


def print_run_table(report: dict, cfg: TrainConfig, out: Path, precision: str) -> None:
    """The closing table of a run."""
    from lightvid.train.report import format_table

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


def metrics_files(out: Path) -> list[Path]:
    """``metrics.csv`` and the parts earlier runs of a resumed run left, oldest first."""
    parts = sorted(out.glob("metrics.part*.csv"), key=lambda p: int(p.stem.split("part")[-1]))
    return [*parts, out / "metrics.csv"]


def _eval_device(cfg: TrainConfig) -> str:
    if cfg.trainer.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "cuda"
    return "cpu"
