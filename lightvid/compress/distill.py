"""Knowledge distillation (Hinton, Vinyals, Dean, "Distilling the Knowledge in a Neural Network",
2015) with an optional FitNets hint (Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015).

The student minimises::

    alpha * CE(student, labels) + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T))
      + hint_weight * MSE(regressor(student[hint_student]), teacher[hint_teacher])

(the ``T^2`` keeps the soft term's gradient scale independent of ``T``). The teacher is frozen:
it is kept out of the module's registered children, so it is in neither the optimiser, nor
the state_dict, nor the checkpoint, and it always runs in eval mode under ``no_grad``. Its
logits can be cached per training clip (keyed by video index, checked by a fingerprint of the
clip's values, so an augmented view is recomputed rather than served stale).
:class:`DistillationModule` subclasses
:class:`~lightvid.train.module.ClassificationModule` and overrides only ``compute_loss``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from lightvid.compress.fold import fold_time
from lightvid.errors import UserError
from lightvid.train.module import ClassificationModule

DISTILL_FILES = ("distill.yaml", "convert_report.json", "converted_init.pt")  # besides the run's own files


@dataclass
class DistillConfig:
    """The ``distill:`` section of a distillation config (``distill.KEY=VALUE`` overrides)."""

    teacher: str | None = None  # teacher checkpoint (a `lightvid train` run's best.ckpt); --teacher sets it
    temperature: float = 4.0
    alpha: float = 0.5  # weight of the cross-entropy on labels; 1 - alpha weighs the soft term
    cache_teacher: bool = True  # cache teacher logits per training clip (ignored with a hint)
    hint_student: str | None = None  # FitNets: a named module of the student ...
    hint_teacher: str | None = None  # ... regressed (1x1 convolution) onto this module of the teacher
    hint_weight: float = 1.0
    convert: bool = False  # initialise the student with lightvid.compress.convert(teacher, to=student)
    time_pool: str = "mean"  # convert's construction for folded layers that absorb a temporal pool

    def validate(self, source: str = "<config>") -> "DistillConfig":
        if self.temperature <= 0:
            raise UserError(f"{source}: distill.temperature must be > 0, got {self.temperature}")
        if not 0.0 <= self.alpha <= 1.0:
            raise UserError(f"{source}: distill.alpha must be in [0, 1], got {self.alpha}")
        if (self.hint_student is None) != (self.hint_teacher is None):
            raise UserError(f"{source}: distill.hint_student and distill.hint_teacher go together")
        if self.hint_weight < 0:
            raise UserError(f"{source}: distill.hint_weight must be >= 0, got {self.hint_weight}")
        from lightvid.compress.fold import TIME_POOL_MODES

        if self.time_pool not in TIME_POOL_MODES:
            raise UserError(f"{source}: distill.time_pool must be one of {', '.join(TIME_POOL_MODES)}")
        return self


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                      temperature: float = 4.0, alpha: float = 0.5, label_smoothing: float = 0.0):
    """``(loss, ce, kl)``: ``alpha * CE + (1 - alpha) * T^2 * KL(p_teacher^T || p_student^T)``.

    KL is summed over classes and averaged over the batch.
    """
    T = float(temperature)
    ce = F.cross_entropy(student_logits, labels, label_smoothing=label_smoothing)
    log_ps = F.log_softmax(student_logits.float() / T, dim=1)
    log_pt = F.log_softmax(teacher_logits.float() / T, dim=1)
    kl = F.kl_div(log_ps, log_pt, reduction="batchmean", log_target=True)
    return alpha * ce + (1.0 - alpha) * T * T * kl, ce, kl


class TeacherCache:
    """Teacher logits per clip: ``video_index -> (fingerprint, logits)``, on the CPU."""

    def __init__(self, samples: int = 64):
        self.samples = samples
        self.store: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.hits = self.misses = 0

    def fingerprint(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.detach().flatten(1)  # (B, N)
        idx = torch.linspace(0, flat.shape[1] - 1, self.samples, device=x.device).long()
        return torch.cat([flat[:, idx].float(), flat.float().sum(1, keepdim=True)], 1).cpu()  # (B, samples+1)

    def lookup(self, x: torch.Tensor, video_index: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """``(logits or None, fingerprints)``; logits only when every clip of the batch is cached."""
        fp = self.fingerprint(x)
        rows = []
        for i, v in enumerate(video_index.tolist()):
            hit = self.store.get(int(v))
            if hit is None or not torch.equal(hit[0], fp[i]):
                self.misses += x.shape[0]
                return None, fp
            rows.append(hit[1])
        self.hits += x.shape[0]
        return torch.stack(rows).to(x.device), fp

    def put(self, fp: torch.Tensor, video_index: torch.Tensor, logits: torch.Tensor) -> None:
        cpu = logits.detach().float().cpu()
        for i, v in enumerate(video_index.tolist()):
            self.store[int(v)] = (fp[i], cpu[i])


class HintRegressor(nn.Module):
    """FitNets regressor: a 1x1 (x1) convolution from the student's channels to the teacher's.

    A 5D teacher feature meeting a 4D (time-folded) student feature is folded first,
    ``(B, C, T, H, W) -> (B, T*C, H, W)``; spatial (and temporal) sizes are matched by
    adaptive average pooling of the teacher's feature to the student's.
    """

    def __init__(self, student_shape: torch.Size, teacher_shape: torch.Size):
        super().__init__()
        s_dims, t_dims = len(student_shape), len(teacher_shape)
        if s_dims not in (4, 5) or t_dims not in (4, 5) or (s_dims == 5 and t_dims == 4):
            raise UserError(f"distill hint: cannot regress a {s_dims}-D student feature onto a {t_dims}-D teacher one")
        self.fold_teacher = s_dims == 4 and t_dims == 5
        t_channels = teacher_shape[1] * (teacher_shape[2] if self.fold_teacher else 1)
        conv = nn.Conv2d if s_dims == 4 else nn.Conv3d
        self.proj = conv(student_shape[1], t_channels, 1)

    def target(self, teacher_feat: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        t = fold_time(teacher_feat) if self.fold_teacher else teacher_feat
        if t.shape[2:] != like.shape[2:]:
            pool = F.adaptive_avg_pool2d if t.dim() == 4 else F.adaptive_avg_pool3d
            t = pool(t, like.shape[2:])
        return t

    def forward(self, student_feat: torch.Tensor, teacher_feat: torch.Tensor) -> torch.Tensor:
        pred = self.proj(student_feat)
        return F.mse_loss(pred.float(), self.target(teacher_feat, pred).float())


def _module(model: nn.Module, name: str, which: str) -> nn.Module:
    mods = dict(model.named_modules())
    if name not in mods:
        import difflib

        close = difflib.get_close_matches(name, [n for n in mods if n], n=4, cutoff=0.3)
        raise UserError(f"distill.hint_{which}={name!r} is not a module of the {which}; closest: {', '.join(close)}")
    return mods[name]


def _renormaliser(teacher_cfg: dict, student_cfg: dict):
    """``x -> x`` re-normalised from the student's mean/std to the teacher's (None when equal)."""
    ms, ss = student_cfg.get("mean"), student_cfg.get("std")
    mt, st = teacher_cfg.get("mean"), teacher_cfg.get("std")
    if not (ms and ss and mt and st) or (list(ms) == list(mt) and list(ss) == list(st)):
        return None
    ms, ss, mt, st = (torch.tensor(v, dtype=torch.float32) for v in (ms, ss, mt, st))

    def fn(x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        a = (ss / st).view(shape).to(x)
        b = ((ms - mt) / st).view(shape).to(x)
        return x * a + b
    return fn


class DistillationModule(ClassificationModule):
    """``ClassificationModule`` whose loss distils a frozen teacher (see the module docstring).

    Args:
        teacher: the teacher network (from :func:`lightvid.run_spec.load_model`).
        distill: :class:`DistillConfig` as a dict.
        teacher_cfg: the teacher's ``default_cfg`` (mean/std; its input is re-normalised
            when they differ from the student's).
        hint_input: one input ``(1, C, T, H, W)`` used once to size the hint regressor.
        everything else: :class:`ClassificationModule`'s arguments.
    """

    def __init__(self, *args, teacher: nn.Module, distill: dict, teacher_cfg: dict | None = None,
                 hint_input: torch.Tensor | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        for key in ("teacher", "hint_input"):  # save_hyperparameters() collected them: never checkpoint the teacher
            self._hparams.pop(key, None)
            self._hparams_initial.pop(key, None)
        # not a registered child: out of parameters(), state_dict(), the optimiser and train()/eval() switching
        self.__dict__["teacher"] = teacher.eval().requires_grad_(False)
        self.dcfg = DistillConfig(**distill).validate()
        self.renorm = _renormaliser(teacher_cfg or {}, getattr(self.model, "default_cfg", {}) or {})
        self.hint = None
        self._feats: dict[str, torch.Tensor] = {}
        if self.dcfg.hint_student:
            s_mod = _module(self.model, self.dcfg.hint_student, "student")
            t_mod = _module(teacher, self.dcfg.hint_teacher, "teacher")
            s_mod.register_forward_hook(lambda m, i, o: self._feats.__setitem__("student", o))
            t_mod.register_forward_hook(lambda m, i, o: self._feats.__setitem__("teacher", o))
            if hint_input is None:
                hint_input = torch.zeros(1, *self.model.default_cfg["input_size"])
            with torch.no_grad():
                was = self.model.training
                self.model.eval()
                self.model(hint_input)
                self.model.train(was)
                teacher(self._teacher_input(hint_input))
            self.hint = HintRegressor(self._feats["student"].shape, self._feats["teacher"].shape)
            self._feats.clear()
        self.cache = TeacherCache() if self.dcfg.cache_teacher and self.hint is None else None

    def _teacher_input(self, x: torch.Tensor) -> torch.Tensor:
        return self.renorm(x) if self.renorm is not None else x

    @torch.no_grad()
    def teacher_logits(self, x: torch.Tensor, video_index: torch.Tensor | None = None) -> torch.Tensor:
        teacher = self.__dict__["teacher"]
        if next(teacher.parameters()).device != x.device:
            teacher.to(x.device)
        teacher.eval()
        fp = None
        if self.cache is not None and video_index is not None:
            cached, fp = self.cache.lookup(x, video_index)
            if cached is not None:
                return cached
        logits = teacher(self._teacher_input(x)).float()
        if fp is not None:
            self.cache.put(fp, video_index, logits)
        return logits

    def compute_loss(self, logits: torch.Tensor, labels: torch.Tensor, batch) -> torch.Tensor:
        x, vid = batch[0], batch[2]
        t_logits = self.teacher_logits(x, vid if self.training else None)
        loss, ce, kl = distillation_loss(logits, t_logits, labels, self.dcfg.temperature, self.dcfg.alpha,
                                         self.label_smoothing)
        bs = x.shape[0]
        self._log("distill/ce", ce.detach(), bs)
        self._log("distill/kl", kl.detach(), bs)
        if self.hint is not None:
            h = self.hint(self._feats.pop("student"), self._feats.pop("teacher"))
            self._log("distill/hint", h.detach(), bs)
            loss = loss + self.dcfg.hint_weight * h
        if self.cache is not None:
            total = max(1, self.cache.hits + self.cache.misses)
            self._log("distill/cache_hit_rate", self.cache.hits / total, bs)
        return loss

    def _log(self, key: str, value, batch_size: int) -> None:
        if self._trainer is not None:  # compute_loss also works outside a Trainer (tests, notebooks)
            self.log(key, value, on_step=False, on_epoch=True, batch_size=batch_size)

    def configure_optimizers(self):
        out = super().configure_optimizers()
        if self.hint is None:
            return out
        opt, old = out["optimizer"], out["lr_scheduler"]["scheduler"]
        wd = self.optim_cfg.weight_decay
        opt.add_param_group({"params": list(self.hint.parameters()), "weight_decay": wd})
        # LambdaLR sizes itself to the groups it sees: rebuild it so the hint group is scheduled too
        for g in opt.param_groups:
            g["lr"] = g.get("initial_lr", g["lr"])
        sched = torch.optim.lr_scheduler.LambdaLR(opt, old.lr_lambdas[0])
        out["lr_scheduler"]["scheduler"] = sched
        return out


# -- config and run -------------------------------------------------------------------------------
def load_distill_config(path, overrides: list[str] | None = None):
    """A train config YAML with an optional ``distill:`` section -> ``(TrainConfig, DistillConfig)``.

    Dotted overrides address either part (``optim.lr=0.1``, ``distill.temperature=2``).
    """
    from pathlib import Path

    from lightvid.train.config import TrainConfig, from_dict, read_raw_config, validate_config

    raw, source = read_raw_config(path, overrides)
    d_raw = raw.pop("distill", None) or {}
    if not isinstance(d_raw, dict):
        raise UserError(f"{source}: distill must be a mapping of DistillConfig keys, got {d_raw!r}")
    cfg = from_dict(TrainConfig, raw, source)
    validate_config(cfg, source)
    dcfg = from_dict(DistillConfig, d_raw, source, prefix="distill.").validate(source)
    if not dcfg.teacher:
        raise UserError(f"{source}: no teacher; pass --teacher CKPT (distill.teacher)")
    if not Path(dcfg.teacher).is_file():
        raise UserError(f"{source}: distill.teacher={dcfg.teacher!r}: no such file")
    return cfg, dcfg


def distill(cfg, dcfg: DistillConfig, out_dir=None, resume: bool = False) -> dict:
    """Distil ``dcfg.teacher`` into the student ``cfg.model`` with :func:`lightvid.train.run.train`.

    The run folder is that of ``lightvid train`` plus ``distill.yaml`` (the full config,
    ``--resume`` reads it) and, with ``dcfg.convert``, ``converted_init.pt`` and
    ``convert_report.json``. ``report.json`` and the final table add the teacher's accuracy.
    Returns the report.
    """
    import dataclasses
    from pathlib import Path

    import yaml

    from lightvid.checkpoint import save_atomic
    from lightvid.fileio import write_text_atomic
    from lightvid.precision import resolve_precision
    from lightvid.run_spec import load_model, run_dataset
    from lightvid.train.evaluate import evaluate
    from lightvid.train.report import format_table, write_json
    from lightvid.train.run import RUN_FILES, default_out_dir, train

    teacher, tmeta = load_model(dcfg.teacher)
    out = Path(out_dir) if out_dir is not None else default_out_dir(cfg)
    # the student's validation split, normalised for the teacher (its accuracy and calibration clips)
    val_t = run_dataset(tmeta, cfg.data, whose="teacher's", hint=f" ({dcfg.teacher})")
    if cfg.model.num_classes not in (None, tmeta["num_classes"]):
        raise UserError(f"model.num_classes={cfg.model.num_classes} but the teacher has {tmeta['num_classes']} classes")
    first = next((item for item in (val_t[i] for i in range(min(len(val_t), 8))) if item is not None), None)
    if first is None:
        raise UserError(f"data: no clip of the {cfg.data.val_split!r} split could be decoded")
    taken = [n for n in (*DISTILL_FILES, *RUN_FILES, "checkpoints") if not resume and (out / n).exists()]
    if taken:  # before anything is written (train() checks the run's own files again under its lock)
        raise UserError(f"{out / taken[0]}: exists, and a new distillation run would overwrite it; choose another "
                        "--out (nothing was changed)")
    out.mkdir(parents=True, exist_ok=True)
    if dcfg.convert and not resume:
        from lightvid.compress.agreement import first_clips
        from lightvid.compress.convert import convert, format_report

        calib = first_clips(val_t, 16)
        kwargs = dict(cfg.model.kwargs, num_classes=tmeta["num_classes"])
        student, report = convert(teacher, cfg.model.name, calib=calib, time_pool=dcfg.time_pool, **kwargs)
        print(format_report(report, f"student initialised by convert: {tmeta['model']} -> {cfg.model.name}"))
        write_json({"teacher": dcfg.teacher, "layers": [r.to_dict() for r in report]}, out / "convert_report.json")
        init = save_atomic(student.state_dict(), out / "converted_init.pt")
        cfg.model.kwargs = {k: v for k, v in student.convert_kwargs.items() if k != "num_classes"}
        cfg.model.weights = str(init)
    full = dict(cfg.to_dict(), distill=dataclasses.asdict(dcfg))
    write_text_atomic(out / "distill.yaml", yaml.safe_dump(full, sort_keys=False))
    module_kwargs = dict(teacher=teacher, distill=dataclasses.asdict(dcfg), teacher_cfg=tmeta.get("default_cfg"),
                         hint_input=torch.zeros(1, *first[0].shape))
    report = train(cfg, out, resume=resume, module_cls=DistillationModule, module_kwargs=module_kwargs)
    if not report:  # not global rank 0
        return report
    precision = resolve_precision(cfg.trainer.precision, cfg.trainer.accelerator, training=True)
    device = "cuda" if torch.cuda.is_available() and cfg.trainer.accelerator in ("auto", "gpu", "cuda") else "cpu"
    res = evaluate(teacher, val_t, tmeta["classes"],
                   batch_size=cfg.trainer.eval_batch_size or 2 * cfg.trainer.batch_size,
                   num_workers=int(cfg.data.num_workers or 0), precision=precision, device=device)
    report.update(teacher=dcfg.teacher, teacher_model=tmeta["model"], teacher_top1_clip=res.clip_top1,
                  teacher_top1_video=res.video_top1, teacher_top5_video=res.video_top5,
                  distill=dataclasses.asdict(dcfg))
    write_json(report, out / "report.json")
    rows = [("", f"{'student':>10} {'teacher':>10}"),
            ("model", f"{cfg.model.name:>10} {tmeta['model']:>10}"),
            ("val top-1 clip", f"{_fmt(report.get('val_top1_clip')):>10} {res.clip_top1:>10.4f}"),
            ("val top-1 video", f"{_fmt(report.get('val_top1_video')):>10} {res.video_top1:>10.4f}"),
            ("val top-5 video", f"{_fmt(report.get('val_top5_video')):>10} {res.video_top5:>10.4f}"),
            ("distillation", f"T={dcfg.temperature:g} alpha={dcfg.alpha:g}"
                             + (f" hint {dcfg.hint_student}->{dcfg.hint_teacher}" if dcfg.hint_student else "")
                             + (" convert-init" if dcfg.convert else "")),
            ("report", str(out / "report.json"))]
    print()
    print(format_table(rows, title=f"distillation {out}"))
    return report


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4f}"
