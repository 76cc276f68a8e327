"""Do Grad-CAM maps mean something? Mass on the moving object, and the model-randomisation test.

    python benchmarks/bench_explain_sanity.py --ckpt runs/quickstart/checkpoints/best.ckpt \
        --synth .cache/synth-motion [--clips 40] [--layers default layer3 layer2] [--surrogate 8]

For ``--clips`` validation clips of the synthetic motion set (the generator's object alpha
per frame from :func:`lightvid.data.synth.object_masks`, taken at the frames the model sees)
and each Grad-CAM layer it prints, averaged over clips:

* ``mass``: the share of the trained model's Grad-CAM mass (true class) on the object;
* ``area``: the share of pixels the object covers (the mass a uniform map would put there);
* ``mass rand``: the same for the architecture with randomised weights (Adebayo et al. 2018);
* ``rho``: Spearman rank correlation between the trained and the randomised maps;
* ``+3px``: the same with the object's mask dilated by 3 pixels (motion evidence sits on its edges).

``--surrogate N`` also fits the DeepVID-style surrogate on N clips and reports its
held-out fidelity R^2 and the share of its positive weight on cells overlapping the object.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lightvid.accel.runtime import load_inference_model  # noqa: E402
from lightvid.analysis.explain import (  # noqa: E402
    deepvid_surrogate,
    grad_cam,
    load_input,
    mass_on_mask,
    pick_layer,
    randomized_copy,
    rank_correlation,
)
from lightvid.data.synth import object_masks, read_stamp  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--synth", required=True, help="the synthetic set the checkpoint was trained on")
    ap.add_argument("--clips", type=int, default=40)
    ap.add_argument("--layers", nargs="+", default=["default"])
    ap.add_argument("--surrogate", type=int, default=0, help="also fit the surrogate on this many clips")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    stamp = read_stamp(args.synth)
    if stamp is None:
        sys.exit(f"{args.synth}: no synth.json (not a finished synthetic set)")
    im = load_inference_model(args.ckpt)
    rand = randomized_copy(im.model)
    lines = [ln.split() for ln in (Path(args.synth) / "val.txt").read_text().splitlines()]
    step = max(1, len(lines) // args.clips)
    picked = lines[::step][: args.clips]
    rows = {layer: {"mass": [], "area": [], "mass_rand": [], "rho": [], "correct": [], "mass_near": [], "area_near": [],
                    "mass_near_rand": []} for layer in args.layers}
    sur = {"r2": [], "pos_on_object": [], "cells_on_object": []}
    t0 = time.perf_counter()
    for n, (rel, label) in enumerate(picked):
        path = Path(args.synth) / rel
        cls = rel.split("/")[1]
        index = int(Path(rel).stem.rsplit("_", 1)[1])
        x, idx = load_input(im, str(path))
        masks = object_masks(stamp["seed"], "val", index, cls, stamp["frames"], stamp["size"])[idx]  # (T, H, W)
        if masks.shape[1:] != x.shape[-2:]:
            sys.exit(f"masks {masks.shape[1:]} vs clip {tuple(x.shape[-2:])}: run with size == crop and no short side")
        near = np.stack([cv2.dilate((m > 0.5).astype(np.uint8), np.ones((7, 7), np.uint8)) for m in masks])  # +-3 px
        target = int(label)
        with torch.no_grad():
            correct = int(im.model(x).argmax()) == target
        for layer in args.layers:
            name = pick_layer(im.model, x, None if layer == "default" else layer)
            cam = grad_cam(im.model, x, target, name)
            cam_r = grad_cam(rand, x, target, name)
            r = rows[layer]
            r["mass"].append(mass_on_mask(cam, masks))
            r["area"].append(float(masks.mean()))
            r["mass_rand"].append(mass_on_mask(cam_r, masks))
            r["rho"].append(rank_correlation(cam, cam_r))
            r["mass_near"].append(mass_on_mask(cam, near))
            r["area_near"].append(float(near.mean()))
            r["mass_near_rand"].append(mass_on_mask(cam_r, near))
            r["correct"].append(correct)
            r["name"] = name
        if n < args.surrogate:
            s = deepvid_surrogate(im.logits, x, target, (4, 4, 4), samples=256, keep=0.7, temperature=4.0, seed=n)
            heat = s.heatmap(masks.shape)
            pos = np.clip(heat, 0, None)
            sur["r2"].append(s.r2_heldout)
            sur["pos_on_object"].append(mass_on_mask(pos, masks > 0.5))
            sur["cells_on_object"].append(float((masks > 0.5).mean()))
    out = {"clips": len(picked), "seconds": round(time.perf_counter() - t0, 1), "layers": {}}
    print(f"{len(picked)} validation clips of {args.synth}, checkpoint {args.ckpt}")
    print(f"{'layer':<12} {'module':<10} {'acc':>5} {'mass':>6} {'area':>6} {'mass rand':>9} {'rho':>6} "
          f"{'mass +3px':>9} {'area +3px':>9} {'rand +3px':>9}")
    for layer, r in rows.items():
        m = {k: float(np.mean(v)) for k, v in r.items() if k != "name"}
        out["layers"][layer] = {"module": r["name"], **{k: round(v, 4) for k, v in m.items()},
                                "rho_std": round(float(np.std(r["rho"])), 4)}
        print(f"{layer:<12} {r['name']:<10} {m['correct']:5.2f} {m['mass']:6.3f} {m['area']:6.3f} "
              f"{m['mass_rand']:9.3f} {m['rho']:6.3f} {m['mass_near']:9.3f} {m['area_near']:9.3f} "
              f"{m['mass_near_rand']:9.3f}")
    if sur["r2"]:
        out["surrogate"] = {k: round(float(np.mean(v)), 4) for k, v in sur.items()} | {"clips": len(sur["r2"])}
        print(f"surrogate on {len(sur['r2'])} clips: held-out R2 {np.mean(sur['r2']):.3f}, positive weight on "
              f"object pixels {np.mean(sur['pos_on_object']):.3f} (object area {np.mean(sur['cells_on_object']):.3f})")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
