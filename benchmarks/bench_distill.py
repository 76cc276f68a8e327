"""Distillation and weight-transfer experiment (docs/compression.md) on the synthetic motion set.

A small-width C3D teacher is trained; then each student is trained (a) from scratch,
(b) with knowledge distillation from the teacher and (c) initialised by converting the
teacher's weights (``lightvid.compress.convert``) plus distillation, where a conversion
exists (c3d_mc4, c3d_2plus1d). Table: video top-1 (best checkpoint), parameters, GMACs per
clip, CPU inference clips/s (batch 8, interleaved rounds, median), and epochs to reach 90%
of the final (last-epoch) validation accuracy.

    python benchmarks/bench_distill.py            # the full run (~15-30 min on 2 CPU cores)
    python benchmarks/bench_distill.py --quick    # a smoke run (tiny set, 1-2 epochs)

Every run lives in ``OUT/<run>/`` (a ``lightvid train``/``distill`` folder); a run whose
``report.json`` exists is reused, so an interrupted benchmark continues where it stopped.
Results: ``OUT/results.json`` and a markdown table on stdout.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

CONVERTIBLE = {"c3d_mc3", "c3d_mc4", "c3d_mc5", "c3d_2plus1d", "c3d"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/bench_distill")
    p.add_argument("--quick", action="store_true", help="tiny set, 1 epoch: checks the pipeline, not the method")
    p.add_argument("--students", default="c3d_mc4,c3d_2plus1d,fsb_c3d,ir_csn_26")
    p.add_argument("--width", type=float, default=0.125, help="teacher width_mult (and the C3D-family students')")
    p.add_argument("--csn-width", type=float, default=0.125, help="ir_csn / other ResNet students' width_mult")
    p.add_argument("--size", type=int, default=32, help="frame side (synthetic set rendered at this size)")
    p.add_argument("--train", type=int, default=200, help="training clips")
    p.add_argument("--limit-train", type=float, default=1.0, help="fraction of the training clips per epoch")
    p.add_argument("--val", type=int, default=80, help="validation clips")
    p.add_argument("--classes", type=int, default=4,
                   help="the first N synthetic classes (4: the translation directions)")
    p.add_argument("--epochs", type=int, default=5, help="student epochs")
    p.add_argument("--teacher-epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0, help="students' seed (data order, dropout, initialisation)")
    p.add_argument("--rounds", type=int, default=5, help="timing rounds for CPU clips/s")
    p.add_argument("--modes", default="scratch,distill,convert+distill", help="which trainings to run per student")
    p.add_argument("--aggregate", nargs="+", metavar="OUT", help="tabulate finished runs of several --out folders "
                   "(one per seed) and exit")
    p.add_argument("--no-summary", action="store_true",
                   help="train the listed runs only (parallel workers); skip the table")
    args = p.parse_args(argv)
    if args.quick:
        args.train, args.val, args.classes = 30, 10, 4
        args.epochs, args.teacher_epochs, args.rounds = 1, 2, 2
        if args.out == "runs/bench_distill":
            args.out = "runs/bench_distill_quick"
    return args


def student_kwargs(name: str, args) -> dict:
    if name.startswith(("c3d", "fsb_c3d")):
        return {"width_mult": args.width, "img_size": args.size, "fc_width": 512, "drop_rate": 0.2}
    return {"width_mult": args.csn_width}


def base_config(args, name: str, model: str, kwargs: dict, epochs: int):
    from lightvid.train.config import TrainConfig, from_dict, validate_config

    raw = {
        "name": name, "seed": args.seed if name != "teacher" else 0,
        "model": {"name": model, "kwargs": kwargs},
        "data": {"format": "synth", "root": str(Path(args.out) / "synth"), "clip_len": 16, "size": args.size,
                 "short_side": args.size, "num_workers": 0,
                 "synth": {"classes": args.classes, "train": args.train, "val": args.val, "size": args.size}},
        "optim": {"name": "adamw", "lr": args.lr, "weight_decay": 0.05},
        "schedule": {"name": "cosine", "warmup_epochs": 1},
        "trainer": {"max_epochs": epochs, "batch_size": args.batch_size, "precision": "32", "progress_bar": False,
                    "log_every_n_steps": 5, "num_threads": args.threads,
                    "limit_train_batches": args.limit_train},
    }
    cfg = from_dict(TrainConfig, raw, "bench_distill")
    validate_config(cfg, "bench_distill")
    return cfg


def initial_weights(args, model: str, kwargs: dict) -> str:
    """The seeded initial state_dict of ``model``, shared by every run that does not convert.

    Each model initialises itself: C3D's convolutions are Kaiming (fan-out) and its hidden
    linears Kaiming fan-in (under PyTorch's defaults the 11-layer network without batch norm
    lost its signal and stayed at chance), and each fully separable block makes its three
    stages act as one Kaiming-initialised convolution. Saving the weights lets the scratch and
    distilled runs of a student start from the same point.
    """
    import lightvid
    from lightvid.checkpoint import save_atomic

    seed = 0 if model == "c3d" else args.seed
    path = Path(args.out) / (f"init_{model}.pt" if seed == 0 else f"init_{model}_seed{seed}.pt")
    if not path.is_file():
        torch.manual_seed(seed)
        save_atomic(lightvid.create_model(model, num_classes=args.classes, **kwargs).state_dict(), path)
    return str(path)


def curve(run: Path) -> list[float]:
    from lightvid.train.report import epoch_metrics

    rows = epoch_metrics(run / "metrics.csv")
    return [r["val/acc_video"] for r in rows if "val/acc_video" in r]


def epochs_to_90(accs: list[float], chance: float = 0.0) -> int | None:
    """First epoch (1-based) reaching 90% of the last epoch's accuracy; None when that is < 1.5x chance."""
    if not accs or accs[-1] < 1.5 * chance:
        return None
    target = 0.9 * accs[-1]
    return next(i + 1 for i, a in enumerate(accs) if a >= target)


def run_once(run: Path, fn) -> dict:
    if (run / "report.json").is_file():
        print(f"reusing {run}", file=sys.stderr)
        return json.loads((run / "report.json").read_text())
    if run.exists():  # an interrupted run of this script: start it again from scratch
        import shutil

        from lightvid.compress.distill import DISTILL_FILES
        from lightvid.train.run import DATA_READY, RUN_FILES

        own = {*RUN_FILES, *DISTILL_FILES, DATA_READY, ".lightvid.lock", "checkpoints"}
        foreign = [p for p in run.iterdir() if p.name not in own and not p.name.startswith("metrics.part")]
        foreign += [p for p in (run / "checkpoints").glob("*") if p.suffix not in (".ckpt", ".tmp")]
        if foreign:  # delete only a folder that holds nothing but a run's own files
            raise SystemExit(f"{foreign[0]}: not a file of an interrupted benchmark run; move it away and rerun")
        shutil.rmtree(run)
    t0 = time.perf_counter()
    report = fn()
    report["bench_wall_s"] = round(time.perf_counter() - t0, 1)
    (run / "report.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    return report


def clips_per_s(models: dict, size: int, rounds: int, batch: int = 8) -> dict:
    """Median eval-mode clips/s per model, timing the models in interleaved rounds."""
    from lightvid.accel.timing import median_times

    x = torch.randn(batch, 3, 16, size, size)
    for m in models.values():
        m.eval()
    return {k: batch / t for k, t in median_times(models, x, rounds).items()}


def conversion_table(args, teacher_ckpt: str, students: list[str]) -> list[dict]:
    """Each conversion of the trained teacher, before any training: per-layer errors, val agreement."""
    from lightvid.compress.agreement import first_clips, top1_agreement
    from lightvid.compress.convert import convert
    from lightvid.data.build import build_dataset
    from lightvid.run_spec import load_model

    teacher, meta = load_model(teacher_ckpt)
    cfg = base_config(args, "convert", "c3d", student_kwargs("c3d", args), 1)
    dcfg = meta.get("default_cfg") or {}
    val = build_dataset(cfg.data, cfg.data.val_split, False, dcfg.get("mean"), dcfg.get("std"))
    calib = first_clips(val, 16)
    rows = []
    for s in students:
        if s not in CONVERTIBLE or s == "c3d":
            continue
        for pool in (("mean", "fit", "even") if s.startswith("c3d_mc") else ("mean",)):
            model, report = convert(teacher, s, calib=calib, time_pool=pool, **student_kwargs(s, args))
            agree = top1_agreement(teacher, model, val, 32)
            rows.append({"student": s, "time_pool": pool, **agree,
                         "layers": [r.to_dict() for r in report if not r.exact]})
    return rows


def aggregate(dirs: list[str]) -> str:
    """Markdown table over seeds: per student and training, video top-1 (best checkpoint) per seed,
    mean, epoch-1 accuracy and epochs to 90% of the final accuracy."""
    runs: dict[tuple[str, str], list] = {}
    for d in dirs:
        for run in sorted(Path(d).iterdir()):
            rep = run / "report.json"
            if not rep.is_file() or run.name == "teacher_c3d":
                continue
            for mode in ("convert_fit_distill", "convert_distill", "distill", "scratch"):
                if run.name.endswith("_" + mode):
                    student = run.name[: -len(mode) - 1]
                    break
            else:
                continue
            accs = curve(run)
            report = json.loads(rep.read_text())
            chance = 1.0 / max(1, len(report.get("per_class") or {}) or 1)
            runs.setdefault((student, mode), []).append((report.get("val_top1_video"), accs[0] if accs else None,
                                                         epochs_to_90(accs, chance)))
    lines = [f"| student | training | video top-1 per seed ({len(dirs)} folders) | mean | epoch-1 acc (mean) | "
             "epochs to 90% per seed |", "|---|---|---|---|---|---|"]
    for (student, mode), rs in runs.items():
        tops = [r[0] for r in rs if r[0] is not None]
        e1 = [r[1] for r in rs if r[1] is not None]
        lines.append(f"| {student} | {mode.replace('_', '+').replace('convert+fit', 'convert(fit)')} | "
                     f"{' / '.join(f'{t:.3f}' for t in tops)} | {statistics.mean(tops):.3f} | "
                     f"{statistics.mean(e1):.3f} | {' / '.join('-' if r[2] is None else str(r[2]) for r in rs)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.aggregate:
        print(aggregate(args.aggregate))
        return 0
    torch.set_num_threads(args.threads)
    import lightvid
    from lightvid.analysis.summary import summarize
    from lightvid.compress.distill import DistillConfig, distill
    from lightvid.train.run import train

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    students = [s for s in args.students.split(",") if s]
    for s in students:
        if not lightvid.models.is_model(s):
            raise SystemExit(f"unknown student {s!r}")
    t_all = time.perf_counter()
    tkw = student_kwargs("c3d", args)
    teacher_run = out / "teacher_c3d"
    wanted = [m for m in args.modes.split(",") if m]
    if wanted != ["scratch"] or not args.no_summary:  # a scratch-only worker does not need the teacher
        tcfg = base_config(args, "teacher", "c3d", tkw, args.teacher_epochs)
        tcfg.model.weights = initial_weights(args, "c3d", tkw)
        run_once(teacher_run, lambda: train(tcfg, teacher_run))
    teacher_ckpt = str(teacher_run / "checkpoints" / "best.ckpt")

    rows = []
    names = {"c3d": tkw}
    for s in students:
        kw = student_kwargs(s, args)
        names[s] = kw
        modes = ["scratch", "distill"] + (["convert+distill"] if s in CONVERTIBLE else [])
        modes = [m for m in modes if m in wanted]
        for mode in modes:
            run = out / f"{s}_{mode.replace('+', '_')}"
            cfg = base_config(args, f"{s}-{mode}", s, kw, args.epochs)
            if mode != "convert+distill":
                cfg.model.weights = initial_weights(args, s, kw)
            if mode == "scratch":
                fn = lambda cfg=cfg, run=run: train(cfg, run)  # noqa: E731
            else:
                dcfg = DistillConfig(teacher=teacher_ckpt, temperature=args.temperature, alpha=args.alpha,
                                     convert=mode == "convert+distill").validate()
                fn = lambda cfg=cfg, dcfg=dcfg, run=run: distill(cfg, dcfg, run)  # noqa: E731
            rep = run_once(run, fn)
            accs = curve(run)
            rows.append({"student": s, "mode": mode, "val_top1_video": rep.get("val_top1_video"),
                         "final_epoch_acc": accs[-1] if accs else None, "epoch1_acc": accs[0] if accs else None,
                         "epochs_to_90pct": epochs_to_90(accs, 1.0 / args.classes), "curve": accs,
                         "teacher_top1_video": rep.get("teacher_top1_video"),
                         "train_clips_per_s": rep.get("train_clips_per_s"), "wall_s": rep.get("bench_wall_s")})

    if args.no_summary:
        return 0
    models = {n: lightvid.create_model(n, num_classes=args.classes, **kw) for n, kw in names.items()}
    speed = clips_per_s(models, args.size, args.rounds)
    info = {}
    for n, m in models.items():
        s = summarize(m, (3, 16, args.size, args.size), n)
        info[n] = {"params": s.params, "gmacs": s.macs / 1e9, "cpu_clips_per_s": speed[n], "kwargs": names[n]}
    conversions = conversion_table(args, teacher_ckpt, students)
    teacher_rep = json.loads((teacher_run / "report.json").read_text())
    result = {"args": vars(args), "teacher": {"model": "c3d", "val_top1_video": teacher_rep.get("val_top1_video"),
                                              "curve": curve(teacher_run), **info["c3d"]},
              "students": rows, "conversions": conversions, "models": info,
              "wall_s": round(time.perf_counter() - t_all, 1),
              "threads": torch.get_num_threads()}
    (out / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    print(markdown(result))
    return 0


def markdown(result: dict) -> str:
    info = result["models"]
    t = result["teacher"]
    lines = [f"teacher c3d (width {result['args']['width']}): video top-1 {t['val_top1_video']:.3f}, "
             f"{t['params']:,} params, {t['gmacs']:.3f} GMACs, {t['cpu_clips_per_s']:.1f} CPU clips/s", "",
             "| student | training | video top-1 | epoch-1 acc | epochs to 90% | params | GMACs | CPU clips/s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["students"]:
        m = info[r["student"]]
        acc = "-" if r["val_top1_video"] is None else f"{r['val_top1_video']:.3f}"
        e1 = "-" if r["epoch1_acc"] is None else f"{r['epoch1_acc']:.3f}"
        e90 = "-" if r["epochs_to_90pct"] is None else r["epochs_to_90pct"]
        lines.append(f"| {r['student']} | {r['mode']} | {acc} | {e1} | {e90} | {m['params']:,} | "
                     f"{m['gmacs']:.3f} | {m['cpu_clips_per_s']:.1f} |")
    lines += ["", "| conversion of the trained teacher | time_pool | top-1 agreement | converted top-1 (clip) | "
              "teacher top-1 (clip) | approximate layers: rel_err on activations |", "|---|---|---|---|---|---|"]
    for c in result.get("conversions", []):
        errs = ", ".join(f"{r['layer']} {r['rel_err_act']:.3f}" for r in c["layers"]
                         if r.get("rel_err_act") is not None)
        lines.append(f"| c3d -> {c['student']} | {c['time_pool']} | {c['agreement']:.3f} | {c['converted_top1']:.3f} | "
                     f"{c['source_top1']:.3f} | {errs} |")
    lines.append("")
    lines.append(f"total wall time {result['wall_s']:.0f} s with {result['threads']} threads")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
