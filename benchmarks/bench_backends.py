"""Side-by-side CPU inference: eager, lightvid's paths, ONNX Runtime and OpenVINO, fp32 and int8.

For each model and batch size, in one process, every path of ``lightvid.accel.compare`` is
built and timed in interleaved rounds (medians), with its max |logit difference| and top-1
agreement to eager fp32 on the timed batch. Random weights (``--num-classes`` outputs); int8
paths are calibrated on ``--calib`` (a training config or a dataset folder, e.g. the real
Kinetics clips), or on random clips when it is not given (said in the output). The header
names the CPU and its AVX2 / AVX-512 / AVX512-BF16 / AMX / VNNI flags.

    python benchmarks/bench_backends.py --calib ../shared/data/kinetics5        # the docs' tables
    python benchmarks/bench_backends.py --models x3d_s --batches 1 --no-int8
    python benchmarks/bench_backends.py --quick                                 # fp32 only, < 1 min
    python benchmarks/bench_backends.py --agreement runs/agree_c3d/checkpoints/best.ckpt
    python benchmarks/bench_backends.py --device cuda --rounds 20 --json gpu.json  # the GPU table

``--device cuda``: the GPU table (fp32 contiguous and channels-last, bf16, fp16, compiled half
precision; ONNX Runtime and OpenVINO are CPU backends and int8 is CPU-only, so they are left out),
headed by the GPU's name and CUDA / cuDNN / TF32 settings. ``--time-budget S`` starts no new
(model, batch) run after S seconds; ``--json`` is rewritten after every run, so a run stopped
early keeps what it measured.

Building lightvid's `torch` path tells glibc to keep freed memory in the process
(:mod:`lightvid.accel.memory`), so every timed call of every path runs with it; each table's
title says so, and the ``faults`` column gives each path's minor page faults per timed call.
``LIGHTVID_KEEP_FREED_MEMORY=0`` runs without it.

``--agreement CKPT``: top-1 agreement of each int8 path with fp32 eager on every validation
clip of a trained checkpoint's own data (calibrated on ``--calib-clips`` of its training clips).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

# How PyTorch's OpenMP threads wait between parallel regions, fixed before torch loads.
# "default" leaves the environment as it is: libgomp spins a while, then sleeps, as a user's own
# process does, and ONNX Runtime spins as it does by default; OpenVINO's own (TBB) pool spins
# either way. "passive" (OMP_WAIT_POLICY=PASSIVE, and ONNX Runtime's spinning off) is for a
# machine shared with other jobs, where a spinning 2-thread op waits for a descheduled thread
# (measured under load: a quarter-width r2plus1d_18 forward 4.5 s spinning vs 0.3 s passive),
# but it costs PyTorch a thread wake-up at every parallel region: 23-35 us per oneDNN Graph
# partition on the 2-core EPYC (docs/inference.md), which OpenVINO does not pay.
OMP_WAIT_CHOICES = ("default", "passive")


def omp_wait_from_argv(argv: list[str]) -> str:
    """The ``--omp-wait`` value in ``argv`` (``default`` when absent), read before torch loads.

    argparse, as ``main`` reads it (so an abbreviation such as ``--omp-w`` is read the same way);
    a missing or bad value is left for ``main``'s parser to name.
    """
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--omp-wait", nargs="?", const="default", default="default")
    return pre.parse_known_args(argv)[0].omp_wait


if omp_wait_from_argv(sys.argv[1:]) == "passive":
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

import torch  # noqa: E402

import lightvid  # noqa: E402
from lightvid.accel import memory  # noqa: E402
from lightvid.accel.compare import best_of, compare, cpu_header, cpu_info, format_rows, gpu_header, loadavg, ratio_range  # noqa: E402
from lightvid.errors import UserError  # noqa: E402

MODELS = "c3d,r2plus1d_18,x3d_s,ir_csn_50"


def calibration(args, size) -> tuple[list[torch.Tensor], str]:
    if args.calib:
        from lightvid.accel.calib import calibration_batches

        batches = calibration_batches(args.calib, size, clips=args.calib_clips, batch=2)
        return batches, f"{sum(len(b) for b in batches)} clips of {args.calib}"
    g = torch.Generator().manual_seed(1)
    n = max(1, args.calib_clips // 2)
    return [torch.randn(2 if n > 1 else args.calib_clips, *size, generator=g) for _ in range(n)], "random clips"


def agreement(ckpt: str, calib_clips: int, limit: int | None) -> int:
    from torch.utils.data import DataLoader

    from lightvid.accel.backends import optimize
    from lightvid.accel.calib import batches_from_data
    from lightvid.data.build import DataConfig, build_dataset, collate_skip_bad
    from lightvid.train.checkpoint import load_model

    model, meta = load_model(ckpt)
    cfg = DataConfig.from_dict(dict(meta["config"]["data"]), where=f"{ckpt}: config.data")
    dcfg = getattr(model, "default_cfg", {})
    mean, std = dcfg.get("mean", (0.5,) * 3), dcfg.get("std", (0.5,) * 3)
    val = build_dataset(cfg, cfg.val_split, train=False, mean=mean, std=std)
    clips, labels = [], []
    for x, y, _, _ in DataLoader(val, batch_size=8, collate_fn=collate_skip_bad):
        clips.append(x)
        labels.append(y)
    x, y = torch.cat(clips)[:limit], torch.cat(labels)[:limit]
    size = tuple(x.shape[1:])
    calib = batches_from_data(cfg, size, clips=calib_clips, batch=2, mean=mean, std=std, where=f"{ckpt} train")
    print(f"{ckpt}: {meta.get('model')} {meta.get('model_kwargs')}, {len(x)} validation clips {size}, "
          f"int8 calibrated on {sum(len(b) for b in calib)} training clips", flush=True)

    def logits(run):
        with torch.inference_mode():
            return torch.cat([run(x[i:i + 8]).float() for i in range(0, len(x), 8)])

    ref = logits(model.eval())
    print(f"eager fp32 accuracy {100 * (ref.argmax(-1) == y).float().mean():.1f}%")
    for backend in ("onnxruntime", "openvino"):
        run = optimize(model, precision="int8", backend=backend, calibration=calib, example_input=x[:1])
        out = logits(run)
        agree = (out.argmax(-1) == ref.argmax(-1)).float().mean().item()
        print(f"{backend} int8: top-1 agreement with fp32 {100 * agree:.1f}% ({len(x)} clips), accuracy "
              f"{100 * (out.argmax(-1) == y).float().mean():.1f}%, max |logit diff| {(out - ref).abs().max():.3g}",
              flush=True)
    return 0


COLUMNS = [("eager fp32", "eager fp32"), ("lightvid torch fp32", "lightvid `torch` fp32"),
           ("lightvid torch fp32 + compile", "+ `compile` (freezing)"),
           ("lightvid torch fp32 + Winograd", "+ hybrid Winograd"),
           ("onnxruntime fp32", "ONNX Runtime fp32"), ("openvino fp32", "OpenVINO fp32"),
           ("lightvid torch bf16", "lightvid `torch` bf16"), ("openvino bf16", "OpenVINO bf16"),
           ("onnxruntime int8 (QDQ)", "ONNX Runtime int8"), ("openvino int8 (NNCF)", "OpenVINO int8")]


def present(columns: list[tuple[str, str]], runs: list[dict]) -> list[tuple[str, str]]:
    """The columns some run has a row for (bf16 rows exist only on CPUs with native bf16)."""
    return [c for c in columns if any(r["path"] == c[0] for run in runs for r in run["rows"])]


def table_cells(by: dict, cols: list[tuple[str, str]], digits: int) -> tuple[list[str], list[str]]:
    """One speed cell ("N ms" for eager, else "Nx (ms)") and one "max|diff| / top-1" cell per
    column, from the rows ``by`` path; "n/a" for a path the run lacks, "failed" for one untimed."""
    cells, dcells = [], []
    for key, _ in cols:
        r = by.get(key)
        if r is None or r.ms is None:
            cells.append("n/a" if r is None else "failed")
            dcells.append(cells[-1])
            continue
        cells.append(f"{r.ms:.{digits}f} ms" if key == "eager fp32" else f"{r.speedup:.2f}x ({r.ms:.{digits}f})")
        dcells.append(f"{r.max_abs_diff:.1e} / {100 * r.top1:.0f}%")
    return cells, dcells


GPU_COLUMNS = [("eager fp32", "eager fp32"), ("lightvid torch fp32, contiguous", "lightvid fp32, contiguous"),
               ("lightvid torch fp32", "lightvid fp32 (channels-last)"), ("lightvid torch bf16", "bf16"),
               ("lightvid torch fp16", "fp16"), ("lightvid torch bf16 + compile", "bf16 + `compile`"),
               ("lightvid torch fp16 + compile", "fp16 + `compile`")]


def gpu_markdown(runs: list[dict]) -> str:
    """The GPU table: ms and x eager fp32 per path, the fastest path, max |logit diff| / top-1."""
    from lightvid.accel.compare import Row

    cols = present(GPU_COLUMNS, runs)
    head = "| model | batch | " + " | ".join(c for _, c in cols)
    speed = [head + " | fastest |", "| --- | ---: |" + " ---: |" * len(cols) + " --- |"]
    diff = [head + " |", "| --- | ---: |" + " ---: |" * len(cols)]
    for run in runs:
        by = {r["path"]: Row(**r) for r in run["rows"]}
        cells, dcells = table_cells(by, cols, digits=2)
        timed = [r for r in by.values() if r.ms is not None]
        fast = min(timed, key=lambda r: r.ms).path if timed else "-"
        tag = f"| {run['model']} | {run['batch']} | "
        speed.append(tag + " | ".join(cells) + f" | {fast} |")
        diff.append(tag + " | ".join(dcells) + " |")
    return "\n".join(speed) + "\n\nmax |logit difference| to eager fp32 / top-1 agreement on the timed batch:\n\n" + \
        "\n".join(diff)


def markdown(files: list[str]) -> str:
    """The docs' tables from ``--json`` files: speed (ms and x eager), who won, max |logit diff|."""
    runs, gpu_runs = [], []
    for path in files:
        with open(path) as f:
            data = json.load(f)
        (gpu_runs if data.get("gpu") else runs).extend(data["runs"])
    if gpu_runs:
        return gpu_markdown(gpu_runs) + ("\n\n" + markdown_cpu(runs) if runs else "")
    return markdown_cpu(runs)


def markdown_cpu(runs: list[dict]) -> str:
    from lightvid.accel.compare import Row, best_of, choose_row

    cols = present(COLUMNS, runs)
    head = "| model | batch | " + " | ".join(c for _, c in cols)
    speed = [head + " | fastest fp32 | lightvid best fp32 vs OpenVINO / ONNX Runtime | `auto` fp32 / int8 | load |",
             "| --- | ---: |" + " ---: |" * len(cols) + " --- | --- | --- | --- |"]
    diff = [head + " |", "| --- | ---: |" + " ---: |" * len(cols)]
    for run in runs:
        rows = [Row(**r) for r in run["rows"]]
        cells, dcells = table_cells({r.path: r for r in rows}, cols, digits=0)
        fast = best_of(rows, "fp32")
        lv = best_of(rows, "fp32", "lightvid")
        vs = " / ".join(f"{o.ms / lv.ms:.2f}x" if (o := best_of(rows, "fp32", b)) and lv else "-"
                        for b in ("openvino", "onnxruntime"))
        auto = " / ".join(r.path if (r := choose_row(rows, prec)) else "n/a" for prec in ("fp32", "int8"))
        tag = f"| {run['model']} | {run['batch']} | "
        speed.append(tag + " | ".join(cells) + f" | {fast.path if fast else '-'} | {vs} ({lv.path if lv else '-'}) "
                     f"| {auto} | {run.get('loadavg', '?')} |")
        diff.append(tag + " | ".join(dcells) + " |")
    return "\n".join(speed) + "\n\nmax |logit difference| to eager / top-1 agreement on the timed batch:\n\n" + \
        "\n".join(diff)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=MODELS)
    p.add_argument("--batches", default="1,8")
    p.add_argument("--input", default="3x16x112x112", help="CxTxHxW for every model")
    p.add_argument("--num-classes", type=int, default=400)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--no-int8", action="store_true")
    p.add_argument("--no-compile", action="store_true", help="leave out the torch.compile (inductor, freezing) path")
    p.add_argument("--calib", default=None, help="config .yaml or dataset folder for int8 calibration")
    p.add_argument("--calib-clips", type=int, default=8)
    p.add_argument("--quick", action="store_true", help="a quarter-width r2plus1d_18 on a small input, batch 1, fp32")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    p.add_argument("--agreement", default=None, metavar="CKPT", help="int8 top-1 agreement on a checkpoint's val clips")
    p.add_argument("--limit", type=int, default=None, help="with --agreement: at most this many validation clips")
    p.add_argument("--device", default="cpu", help="cpu, or cuda[:N] for the GPU table")
    p.add_argument("--time-budget", type=float, default=None, metavar="S",
                   help="start no new (model, batch) run after S seconds (the JSON keeps the finished ones)")
    p.add_argument("--turn-warmup", type=int, default=1, metavar="N",
                   help="untimed calls of each path before its timed call in every round (default 1), so that "
                        "no path is timed while the previous runtime's threads still spin; 0 halves the run time")
    p.add_argument("--omp-wait", choices=OMP_WAIT_CHOICES, default="default",
                   help="how PyTorch's OpenMP threads wait: as the environment says (default), or "
                        "OMP_WAIT_POLICY=PASSIVE for a machine shared with other jobs (read before torch loads)")
    p.add_argument("--markdown", nargs="+", default=None, metavar="JSON",
                   help="print the docs' markdown tables from earlier --json files (times nothing)")
    args = p.parse_args(argv)
    if args.markdown:
        print(markdown(args.markdown))
        return 0
    if args.agreement:
        return agreement(args.agreement, args.calib_clips, args.limit)
    kwargs = {}
    if args.quick:
        args.models, args.batches, args.input, args.rounds = "r2plus1d_18", "1", "3x8x56x56", 3
        args.no_int8, kwargs = True, {"width_mult": 0.25}  # int8 calibration takes ~1 min alone (tests cover it)
    size = tuple(int(v) for v in args.input.split("x"))
    try:
        device = torch.device(args.device)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise UserError(f"--device {args.device}: cpu or cuda[:N]")
    if args.turn_warmup < 0:
        raise UserError(f"--turn-warmup {args.turn_warmup}: a number of calls, 0 or more")
    if args.omp_wait == "passive" and os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE":
        raise UserError("--omp-wait passive: torch was loaded before OMP_WAIT_POLICY could be set; "
                        "run the script itself, or set OMP_WAIT_POLICY=PASSIVE in the environment")
    print(cpu_header() + f", OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset (spin, then sleep)')}",
          flush=True)
    gpu = None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {args.device}: no CUDA device is available")
        torch.backends.cudnn.benchmark = True  # what a GPU user sets: cuDNN times its algorithms per shape
        gpu = gpu_header(device)
        print(gpu + "\nONNX Runtime and OpenVINO run on the CPU and int8 is CPU-only: not in the GPU table",
              flush=True)
        args.no_int8 = True
    calib, calib_what = (None, "") if args.no_int8 else calibration(args, size)
    if calib is not None:
        print(f"int8 calibration: {calib_what}", flush=True)
    results = {"cpu": cpu_info(), "gpu": gpu, "torch": torch.__version__, "threads": torch.get_num_threads(),
               "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"), "turn_warmup": args.turn_warmup,
               "calibration": calib_what, "runs": []}
    start = time.perf_counter()
    for name in args.models.split(","):
        torch.manual_seed(0)
        model = lightvid.create_model(name, num_classes=args.num_classes, **kwargs).eval().to(device)
        for batch in (int(b) for b in args.batches.split(",")):
            if args.time_budget is not None and time.perf_counter() - start > args.time_budget:
                print(f"time budget of {args.time_budget:.0f} s reached: {name} batch {batch} not run", flush=True)
                continue
            x = torch.randn(batch, *size, generator=torch.Generator().manual_seed(0)).to(device)
            t0 = time.perf_counter()
            load0 = loadavg()
            rows = compare(model, x, calib, rounds=args.rounds, progress=True, compile=not args.no_compile,
                           turn_warmup=args.turn_warmup)
            load = f"{load0} -> {loadavg()}"
            kept = memory.in_force()  # optimize() made the setting while building: every timed call ran with it
            title = (f"\n{name}  input {batch}x{args.input}  {args.rounds} interleaved rounds, medians "
                     f"({time.perf_counter() - t0:.0f} s; load average {load}; glibc keeps freed memory: "
                     f"{'yes' if kept else 'no'}; faults: minor page faults per timed call)")
            print(format_rows(rows, title), flush=True)
            lv = best_of(rows, "fp32", "lightvid")
            for o in (best_of(rows, "fp32", b) for b in ("onnxruntime", "openvino")):
                if lv is not None and o is not None:
                    span = ratio_range(lv, o)
                    rounds = f" (per round {span[0]:.2f}x-{span[1]:.2f}x)" if span else ""
                    print(f"  lightvid's best fp32 ({lv.path}) vs {o.path}: {o.ms / lv.ms:.2f}x{rounds}")
            results["runs"].append({"model": name, "batch": batch, "input": list(size), "loadavg": load,
                                    "kept_freed_memory": kept, "rows": [r.__dict__ for r in rows]})
            if args.json:  # after every run: a run stopped early keeps what it measured
                write_json(results, args.json)
    return 0


def write_json(results: dict, path: str) -> None:
    """Write ``results`` to ``path`` whole or not at all (a temporary file, then a rename)."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)) or ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(results, f, indent=1)
        os.replace(tmp, path)
    except BaseException:  # no half-written temporary file left beside the user's files
        os.unlink(tmp)
        raise


if __name__ == "__main__":
    raise SystemExit(main())
