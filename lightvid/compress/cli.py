"""``lightvid convert`` and ``lightvid distill``.

    lightvid convert RUN/checkpoints/best.ckpt --to c3d_mc4 --out mc4.ckpt [--data PATH|KEY=VALUE ...]
    lightvid distill --teacher RUN/checkpoints/best.ckpt --student c3d_mc4 --config configs/distill_synth.yaml \
        [--out DIR] [--temperature 4] [--alpha 0.5] [--convert] [key=value ...]
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from lightvid.errors import UserError

DEFAULT_SYNTH = {"format": "synth", "root": ".cache/synth-motion"}


# -- convert ------------------------------------------------------------------------------------
def convert_command(argv: list[str], prog: str = "lightvid convert") -> int:
    p = argparse.ArgumentParser(prog=prog, description="Transfer a trained checkpoint's weights into another "
                                "architecture (3D -> time-folded 2D, 3D <-> (2+1)D, 2D -> 3D inflation).")
    p.add_argument("checkpoint", help="a training checkpoint (RUN/checkpoints/best.ckpt)")
    p.add_argument("--to", required=True, help="target model name, e.g. c3d_mc4, c3d_2plus1d")
    p.add_argument("--out", required=True, help="converted checkpoint (training format: eval/predict load it)")
    p.add_argument("--data", action="append", default=[], metavar="PATH|KEY=VALUE",
                   help="validation data root or data.* override (default: the checkpoint's data config, "
                        "else the synthetic motion set)")
    p.add_argument("--no-data", action="store_true", help="skip the validation agreement; calibrate on random clips")
    p.add_argument("--calib", type=int, default=16,
                   help="validation clips for the per-layer errors and the fit of --time-pool fit (16)")
    p.add_argument("--time-pool", default="mean", choices=("mean", "fit", "even"),
                   help="folded layers that absorb a temporal pool: the frame pair's mean (default), its fitted "
                        "affine (lower per-layer error, worse end to end), or the first frame of each pair")
    p.add_argument("--kw", action="append", default=[], metavar="KEY=VALUE", help="target model keyword argument")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)

    from lightvid.checkpoint import save_atomic
    from lightvid.cli import parse_kw
    from lightvid.compress.convert import convert
    from lightvid.fileio import check_output_file
    from lightvid.train.checkpoint import load_model

    if args.calib < 1:
        raise UserError(f"--calib must be >= 1, got {args.calib}")
    check_output_file(args.out, inputs=[args.checkpoint])  # never replace the checkpoint being converted
    model, meta = load_model(args.checkpoint)
    dataset = None if args.no_data else _val_dataset(meta, args.data)
    calib = _first_clips(dataset, args.calib) if dataset is not None else None
    converted, report = convert(model, args.to, calib=calib, time_pool=args.time_pool, **parse_kw(args.kw))
    agreement = _agreement(model, converted, dataset, args.batch_size) if dataset is not None else {}

    kwargs = {k: v for k, v in converted.convert_kwargs.items() if k != "num_classes"}
    config = json.loads(json.dumps(meta.get("config") or {}))
    config.setdefault("model", {}).update(name=args.to, kwargs=kwargs, weights=None)
    dcfg = getattr(converted, "default_cfg", {}) or {}
    new_meta = {
        "model": args.to, "model_kwargs": kwargs, "num_classes": int(meta["num_classes"]),
        "classes": list(meta["classes"]), "input_transform": None, "config": config,
        "default_cfg": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dcfg.items()
                        if isinstance(v, (str, int, float, list, tuple))},
        "epoch": 0, "global_step": 0, "metrics": {k: v for k, v in agreement.items() if isinstance(v, float)},
        "converted_from": {"checkpoint": str(args.checkpoint), "model": meta["model"], "time_pool": args.time_pool,
                           "report": [r.to_dict() for r in report]},
    }
    state = {f"model.{k}": v.detach().clone() for k, v in converted.state_dict().items()}
    save_atomic({"lightvid": new_meta, "state_dict": state}, args.out)
    if args.json:
        print(json.dumps({"source": meta["model"], "target": args.to, "out": args.out,
                          "layers": [r.to_dict() for r in report], **agreement}))
        return 0
    print(format_report(report, f"{meta['model']} -> {args.to}"))
    if agreement:
        print(f"validation ({agreement['clips']} clips): top-1 agreement {agreement['agreement']:.4f}; "
              f"accuracy source {agreement['source_top1']:.4f}, converted {agreement['converted_top1']:.4f}")
    print(f"wrote {args.out}")
    return 0


def format_report(report, title: str = "") -> str:
    lines = [title] if title else []
    lines.append(f"{'layer':<10} {'method':<18} {'transfer':<8} {'rel_err (random)':>17} {'rel_err (clips)':>16}  note")
    for r in report:
        act = "-" if r.rel_err_act is None else f"{r.rel_err_act:.2e}"
        err = "nan" if math.isnan(r.rel_err) else f"{r.rel_err:.2e}"
        lines.append(f"{r.layer:<10} {r.method:<18} {'exact' if r.exact else 'approx':<8} {err:>17} {act:>16}  {r.note}")
    return "\n".join(lines)


def _val_dataset(meta: dict, data_items: list[str]):
    from lightvid.data.build import DataConfig, build_dataset
    from lightvid.train.cli import _data_overrides
    from lightvid.train.config import apply_overrides, from_dict

    run_data = (meta.get("config") or {}).get("data")
    if run_data:
        raw = {"data": dict(run_data)}
    else:
        size = (meta.get("default_cfg") or {}).get("input_size") or [3, 16, 112, 112]
        raw = {"data": dict(DEFAULT_SYNTH, clip_len=int(size[1]), size=int(size[-1]),
                            short_side=int(size[-1]), num_workers=0)}
    apply_overrides(raw, _data_overrides(data_items))
    cfg = from_dict(DataConfig, raw["data"], "convert data config", prefix="data.")
    try:
        cfg.validate()
    except UserError as e:
        raise UserError(f"data: {e}") from None
    dcfg = meta.get("default_cfg") or {}
    ds = build_dataset(cfg, cfg.val_split, False, dcfg.get("mean"), dcfg.get("std"))
    if list(ds.classes) != list(meta["classes"]):
        raise UserError(f"the data's classes {list(ds.classes)[:5]}... differ from the checkpoint's "
                        f"{list(meta['classes'])[:5]}...; pass --data for the model's dataset")
    return ds


def _first_clips(dataset, n: int):
    import torch

    clips = []
    step = max(1, len(dataset) // n)
    for i in range(0, len(dataset), step):
        item = dataset[i]
        if item is not None:
            clips.append(item[0])
        if len(clips) == n:
            break
    if not clips:
        raise UserError("no validation clip could be decoded for calibration")
    return torch.stack(clips)


def _agreement(src, dst, dataset, batch_size: int) -> dict:
    """Top-1 agreement (clip level) and both models' clip accuracy on ``dataset``."""
    import torch
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from lightvid.data.build import collate_skip_bad

    src.eval()
    dst.eval()
    same = right_src = right_dst = n = 0
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate_skip_bad)
    with torch.no_grad():
        for x, y, _, _ in tqdm(loader, desc="agreement", unit="batch", leave=False):
            if x.shape[0] == 0:
                continue
            a, b = src(x).argmax(1), dst(x).argmax(1)
            same += int((a == b).sum())
            right_src += int((a == y).sum())
            right_dst += int((b == y).sum())
            n += x.shape[0]
    if n == 0:
        raise UserError("no validation clip could be decoded")
    return {"clips": n, "agreement": same / n, "source_top1": right_src / n, "converted_top1": right_dst / n}


# -- distill ------------------------------------------------------------------------------------
def distill_command(argv: list[str], prog: str = "lightvid distill") -> int:
    p = argparse.ArgumentParser(prog=prog, description="Train a student with knowledge distillation from a "
                                "teacher checkpoint (Hinton et al. 2015; optional FitNets hint).",
                                epilog="Overrides are dotted key=value pairs of the train config or of its "
                                       "distill: section, e.g. distill.temperature=2 model.kwargs.width_mult=0.25")
    p.add_argument("--teacher", help="teacher checkpoint (a run's best.ckpt); distill.teacher")
    p.add_argument("--student", help="student model name; model.name")
    p.add_argument("--config", help="YAML train config with an optional distill: section")
    p.add_argument("--out", help="run folder (default runs/<name>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--temperature", type=float, help="distill.temperature (default 4)")
    p.add_argument("--alpha", type=float, help="distill.alpha: weight of the label cross-entropy (default 0.5)")
    p.add_argument("--convert", action="store_true", help="initialise the student by converting the teacher")
    p.add_argument("--no-cache", action="store_true", help="do not cache teacher logits")
    p.add_argument("--epochs", type=int, help="trainer.max_epochs")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides")
    args = p.parse_intermixed_args(argv)

    from lightvid.compress.distill import distill, load_distill_config

    config = args.config
    if config is None and args.resume and args.out:
        config = Path(args.out) / "distill.yaml"
    overrides = list(args.overrides)
    for flag, key in (("teacher", "distill.teacher"), ("student", "model.name"), ("temperature", "distill.temperature"),
                      ("alpha", "distill.alpha"), ("epochs", "trainer.max_epochs")):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={value}")
    if args.convert:
        overrides.append("distill.convert=true")
    if args.no_cache:
        overrides.append("distill.cache_teacher=false")
    cfg, dcfg = load_distill_config(config, overrides)
    distill(cfg, dcfg, args.out, resume=args.resume)
    return 0
