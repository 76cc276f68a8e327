"""``lightvid train`` and ``lightvid eval``.

    lightvid train --config configs/quickstart.yaml [--out DIR] [key=value ...]
    lightvid train --out DIR --resume                 # continue from DIR/checkpoints/last.ckpt
    lightvid train --config C --lr-find [--out DIR]   # learning-rate range test, no training
    lightvid train --config C --devices 2 --strategy ddp [--num-nodes M]
    lightvid eval --checkpoint RUN/checkpoints/best.ckpt [--data root=PATH] [--clips K --crops {1,3}]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from lightvid.args import data_overrides
from lightvid.errors import UserError


def _train_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Train a classifier from a YAML config.",
                                epilog="Overrides are dotted key=value pairs, e.g. optim.lr=0.1 "
                                       "model.kwargs.width_mult=0.5 data.root=/data/ucf101")
    p.add_argument("--config", help="YAML config (default: DIR/config.yaml with --resume, else built-in defaults)")
    p.add_argument("--out", help="run folder (default runs/<name>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic algorithms (a killed and resumed run ends with the same metrics)")
    p.add_argument("--devices", help="devices per node (int or 'auto'); trainer.devices")
    p.add_argument("--num-nodes", type=int, help="nodes; trainer.num_nodes")
    p.add_argument("--strategy", help="auto or ddp; trainer.strategy")
    p.add_argument("--precision", help="auto, 32, bf16-mixed, 16-mixed; trainer.precision")
    p.add_argument("--epochs", type=int, help="trainer.max_epochs")
    p.add_argument("--lr-find", action="store_true",
                   help="run Lightning's learning-rate range test (100 steps) instead of training; writes "
                        "OUT/lr_find.png and lr_find.json and prints the suggested optim.lr")
    p.add_argument("--lr-find-steps", type=int, default=100, help="steps of the range test (default 100)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides")
    return p


def train_command(argv: list[str], prog: str = "lightvid train") -> int:
    from lightvid.train.config import load_config

    args = _train_parser(prog).parse_intermixed_args(argv)
    config = args.config
    if config is None and args.resume:
        if not args.out:
            raise UserError("--resume needs --out RUN_DIR (the run to continue)")
        config = Path(args.out) / "config.yaml"
        if not config.is_file():
            raise UserError(f"{config}: no such file; pass --config")
    overrides = list(args.overrides)
    for flag, key in (("devices", "trainer.devices"), ("num_nodes", "trainer.num_nodes"),
                      ("strategy", "trainer.strategy"), ("precision", "trainer.precision"),
                      ("epochs", "trainer.max_epochs")):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={value}")
    if args.deterministic:
        overrides.append("trainer.deterministic=true")
    cfg = load_config(config, overrides)
    if args.lr_find:
        from lightvid.train.lr_find import lr_find

        out = Path(args.out) if args.out else Path("runs") / f"{cfg.name}-lr-find"
        res = lr_find(cfg, out, num_training=args.lr_find_steps)
        lr = res["suggested_lr"]
        print(f"suggested optim.lr={lr:.3g} (config: {cfg.optim.lr:g}); plot {res['plot']}" if lr is not None
              else f"no clear suggestion (the loss did not fall); plot {res['plot']}")
        return 0
    from lightvid.train.run import train

    train(cfg, args.out, resume=args.resume)
    return 0


EVAL_FILES = ("eval.json", "confusion_matrix.png", "confusion_matrix.csv")  # what eval writes in its --out


def eval_command(argv: list[str], prog: str = "lightvid eval") -> int:
    p = argparse.ArgumentParser(prog=prog, description="Clip- and video-level accuracy of a checkpoint.")
    p.add_argument("--checkpoint", required=True, help="a run's checkpoints/best.ckpt or last.ckpt")
    p.add_argument("--data", action="append", default=[], metavar="PATH|KEY=VALUE",
                   help="data root, or a data.* override (repeatable); default: the run's data config")
    p.add_argument("--split", help="split to evaluate (default: the config's validation split)")
    p.add_argument("--clips", type=int, help="clips per video K (data.eval_clips)")
    p.add_argument("--crops", type=int, choices=(1, 3), help="spatial crops per clip (data.crops)")
    p.add_argument("--batch-size", type=int, help="default: the run's eval batch size")
    p.add_argument("--precision", help="default: the run's (auto: bf16-mixed where supported)")
    p.add_argument("--workers", type=int, help="data.num_workers")
    p.add_argument("--out", help="folder for eval.json, confusion_matrix.png/.csv (default: next to the checkpoint)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)

    import torch

    from lightvid.fileio import check_result_folder
    from lightvid.precision import resolve_precision
    from lightvid.run_spec import load_model, run_data_config, run_dataset
    from lightvid.train.evaluate import evaluate
    from lightvid.train.report import format_per_class, format_table, write_confusion, write_json

    model, meta = load_model(args.checkpoint)
    run_cfg = meta.get("config") or {}
    overrides = data_overrides(args.data)
    if args.clips is not None:
        overrides.append(f"data.eval_clips={args.clips}")
    if args.crops is not None:
        overrides.append(f"data.crops={args.crops}")
    if args.workers is not None:
        overrides.append(f"data.num_workers={args.workers}")
    data_cfg = run_data_config(meta, overrides, source=f"{args.checkpoint} data config")
    trainer_cfg = run_cfg.get("trainer") or {}
    precision = resolve_precision(args.precision or trainer_cfg.get("precision", "auto"), "auto",
                                  training=True)
    batch = args.batch_size or trainer_cfg.get("eval_batch_size") or 2 * int(trainer_cfg.get("batch_size", 16))
    split = args.split or getattr(data_cfg, "val_split", "val")
    dataset = run_dataset(meta, data_cfg, split)
    out = Path(args.out) if args.out else Path(args.checkpoint).parent.parent / f"eval-{split}"
    check_result_folder(out, EVAL_FILES, "eval.json", "checkpoint", "evaluation result")  # before the long part
    device = "cuda" if torch.cuda.is_available() else "cpu"
    res = evaluate(model, dataset, meta["classes"], batch_size=batch, num_workers=int(data_cfg.num_workers or 0),
                   precision=precision, device=device)
    out.mkdir(parents=True, exist_ok=True)
    result = {"checkpoint": str(args.checkpoint), "model": meta["model"], "split": split, "precision": precision,
              "eval_clips": getattr(data_cfg, "eval_clips", None), "crops": getattr(data_cfg, "crops", None),
              **res.to_dict()}
    write_json(result, out / "eval.json")
    write_confusion(res.confusion, res.classes, out / "confusion_matrix.png", out / "confusion_matrix.csv",
                    title=f"{meta['model']}: video-level confusion ({split})")
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "confusion"}))
        return 0
    print(format_per_class(res.classes, res.per_class))
    rows = [("checkpoint", str(args.checkpoint)), ("model", meta["model"]), ("split", split),
            ("videos / clips", f"{res.num_videos} / {res.num_clips} ({res.num_bad} unreadable)"),
            ("clip top-1 / top-5", f"{res.clip_top1:.4f} / {res.clip_top5:.4f}"),
            ("video top-1 / top-5", f"{res.video_top1:.4f} / {res.video_top5:.4f}"),
            ("confusion matrix", str(out / "confusion_matrix.png")), ("results", str(out / "eval.json"))]
    print(format_table(rows, title="evaluation"))
    return 0
