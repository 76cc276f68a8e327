"""Eager fp32 vs ``lightvid.optimize`` variants: clip latency and top-1 agreement.

For each model: eager fp32 (as built), ``optimize(precision="fp32")`` (BN folded,
channels-last), ``optimize(precision="bf16")``, with ``--winograd`` fp32 + the hybrid Winograd
choice (timed on the benchmark input, for CPUs without native bf16) and, with ``--compile``,
bf16 + torch.compile (compile time reported). Latencies are medians of interleaved runs at ``--batch``; top-1
agreement with eager fp32 is measured on the validation split of the synthetic motion set
(``lightvid.data``; generated once under ``--synth-root``), or on random clips with ``--random``.
``--ckpt`` benchmarks a trained checkpoint (``lightvid.run_spec.load_model``) instead.

    python benchmarks/bench_optimize.py --compile          # c3d and r2plus1d_18
    python benchmarks/bench_optimize.py --quick            # c3d only, fewer runs, no compile
"""
from __future__ import annotations

import argparse
import json
import time

import torch
from tqdm import tqdm

import lightvid
from lightvid.accel.timing import median_times


def validation_clips(args, model) -> tuple[torch.Tensor, torch.Tensor | None]:
    cfg_in = model.default_cfg["input_size"]
    if args.random:
        return torch.randn(args.clips, *cfg_in, generator=torch.Generator().manual_seed(0)), None
    from torch.utils.data import DataLoader

    from lightvid.data.build import DataConfig, build_dataset, collate_skip_bad

    # --quick: a small set of its own (a different stamp would regenerate a shared default set).
    # Without parameters, build_dataset uses a set already under --synth-root as it is (e.g. the
    # 4-class 112x112 set a checkpoint was trained on) and generates the default set otherwise.
    root, params = (".cache/synth-quick", dict(train=10, val=32)) if args.quick else (args.synth_root, {})
    cfg = DataConfig(root=str(root), format="synth", clip_len=cfg_in[1], size=cfg_in[2], short_side=cfg_in[2],
                     num_workers=0, synth=params)
    ds = build_dataset(cfg, cfg.val_split, train=False, mean=model.default_cfg["mean"], std=model.default_cfg["std"])
    clips, labels = [], []
    for batch in DataLoader(ds, batch_size=16, collate_fn=collate_skip_bad):
        clips.append(batch[0])
        labels.append(batch[1])
        if sum(len(c) for c in clips) >= args.clips:
            break
    return torch.cat(clips)[: args.clips], torch.cat(labels)[: args.clips]


def logits_of(model, clips, batch: int = 8) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([model(clips[i: i + batch]).float()
                          for i in tqdm(range(0, len(clips), batch), desc="logits", leave=False)])


def agreement(ref_logits, logits) -> tuple[float, int]:
    """Top-1 agreement with the reference, and how many disagreements are near-ties of the
    reference (top-2 margin below 1% of that clip's logit range)."""
    differ = ref_logits.argmax(1) != logits.argmax(1)
    top2 = ref_logits.topk(2, dim=1).values
    near = (top2[:, 0] - top2[:, 1]) < 0.01 * (ref_logits.amax(1) - ref_logits.amin(1))
    return 1 - differ.float().mean().item(), int((differ & near).sum())


def bench_model(name: str, args) -> dict:
    if args.ckpt:
        from lightvid.run_spec import load_model

        model, meta = load_model(args.ckpt)
        name = f"{meta['model']} ({args.ckpt})"
    else:
        torch.manual_seed(0)
        model = lightvid.create_model(name, num_classes=args.num_classes).eval()
    x = torch.randn(args.batch, *model.default_cfg["input_size"])
    variants = {"eager fp32": model,
                "fp32 fold+channels-last": lightvid.optimize(model, precision="fp32"),
                "bf16 fold+channels-last": lightvid.optimize(model, precision="bf16")}
    if args.winograd:
        variants["fp32 fold+CL+Winograd"] = lightvid.optimize(model, precision="fp32", winograd=True,
                                                              example_input=x, verbose=True)
    compile_s = None
    if args.compile:
        t0 = time.perf_counter()
        variants["bf16 + compile"] = lightvid.optimize(model, precision="bf16", compile=True, example_input=x)
        compile_s = time.perf_counter() - t0
    tm = median_times(variants, x, args.repeats)
    clips, labels = validation_clips(args, model)
    ref = logits_of(model, clips)
    rows = []
    for k, f in variants.items():
        out = ref if f is model else logits_of(f, clips)
        agree, near_ties = agreement(ref, out)
        rows.append(dict(variant=k, latency_ms=1e3 * tm[k], clips_per_s=args.batch / tm[k],
                         speedup=tm["eager fp32"] / tm[k], top1_agreement=agree,
                         disagree=round((1 - agree) * len(clips)), near_ties=near_ties,
                         top1=None if labels is None else (out.argmax(1) == labels).float().mean().item()))
    return dict(model=name, batch=args.batch, clips=len(clips), data="random" if args.random else "synth val",
                compile_s=compile_s, rows=rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="c3d,r2plus1d_18")
    p.add_argument("--ckpt", default=None, help="a training checkpoint instead of --models")
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--compile", action="store_true", help="add bf16 + torch.compile (slow first call)")
    p.add_argument("--winograd", action="store_true", help="add fp32 + hybrid Winograd (per-layer choice)")
    p.add_argument("--clips", type=int, default=64, help="validation clips for top-1 agreement")
    p.add_argument("--synth-root", default="data/synth")
    p.add_argument("--random", action="store_true", help="agreement on random clips instead of the synthetic set")
    p.add_argument("--quick", action="store_true", help="c3d only, 3 repeats, 32 clips of a small synthetic set")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.models, args.repeats, args.clips = args.models.split(",")[0], 3, 32
    torch.set_num_threads(args.threads)
    results = []
    for name in ([args.ckpt] if args.ckpt else args.models.split(",")):
        r = bench_model(name, args)
        results.append(r)
        extra = f", compile {r['compile_s']:.0f} s" if r["compile_s"] else ""
        print(f"\n{r['model']}  batch {r['batch']}  agreement on {r['clips']} {r['data']} clips{extra}")
        print(f"{'variant':<26} {'latency ms':>11} {'clips/s':>8} {'speedup':>8} {'top-1 agree':>12} "
              f"{'differ (near-tie)':>18} {'top-1 acc':>10}")
        for row in r["rows"]:
            acc = "" if row["top1"] is None else f"{100 * row['top1']:.1f}%"
            print(f"{row['variant']:<26} {row['latency_ms']:>11.1f} {row['clips_per_s']:>8.2f} "
                  f"{row['speedup']:>7.2f}x {100 * row['top1_agreement']:>11.1f}% "
                  f"{row['disagree']:>9} ({row['near_ties']}) {acc:>14}")
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
