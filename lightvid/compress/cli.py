"""``lightvid convert`` and ``lightvid distill``.

    lightvid convert RUN/checkpoints/best.ckpt --to c3d_mc4 --out mc4.ckpt [--data PATH|KEY=VALUE ...]
    lightvid distill --teacher RUN/checkpoints/best.ckpt --student c3d_mc4 --config configs/distill_synth.yaml \
        [--out DIR] [--temperature 4] [--alpha 0.5] [--convert] [key=value ...]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from lightvid.args import data_overrides, parse_kw
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

    from lightvid.checkpoint import checkpoint_meta, save_model_checkpoint
    from lightvid.compress.agreement import first_clips, top1_agreement
    from lightvid.compress.convert import convert, format_report
    from lightvid.fileio import check_output_file
    from lightvid.run_spec import load_model

    if args.calib < 1:
        raise UserError(f"--calib must be >= 1, got {args.calib}")
    check_output_file(args.out, inputs=[args.checkpoint])  # never replace the checkpoint being converted
    model, meta = load_model(args.checkpoint)
    dataset = None if args.no_data else _val_dataset(meta, args.data)
    calib = first_clips(dataset, args.calib) if dataset is not None else None
    converted, report = convert(model, args.to, calib=calib, time_pool=args.time_pool, **parse_kw(args.kw))
    agreement = top1_agreement(model, converted, dataset, args.batch_size) if dataset is not None else {}

    kwargs = {k: v for k, v in converted.convert_kwargs.items() if k != "num_classes"}
    config = json.loads(json.dumps(meta.get("config") or {}))
    config.setdefault("model", {}).update(name=args.to, kwargs=kwargs, weights=None)
    new_meta = checkpoint_meta(
        args.to, converted, kwargs, meta["num_classes"], meta["classes"], input_transform=None, config=config,
        epoch=0, global_step=0, metrics={k: v for k, v in agreement.items() if isinstance(v, float)},
        converted_from={"checkpoint": str(args.checkpoint), "model": meta["model"], "time_pool": args.time_pool,
                        "report": [r.to_dict() for r in report]})
    save_model_checkpoint(converted, new_meta, args.out)
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


def _val_dataset(meta: dict, data_items: list[str]):
    """The checkpoint's validation data (``--data`` overrides; the synthetic motion set when it has none)."""
    from lightvid.run_spec import run_data_config, run_dataset

    size = (meta.get("default_cfg") or {}).get("input_size") or [3, 16, 112, 112]
    default = dict(DEFAULT_SYNTH, clip_len=int(size[1]), size=int(size[-1]), short_side=int(size[-1]), num_workers=0)
    cfg = run_data_config(meta, data_overrides(data_items), default=default, source="convert data config")
    return run_dataset(meta, cfg, hint="; pass --data for the model's dataset")


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
