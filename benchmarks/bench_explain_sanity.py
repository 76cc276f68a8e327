"""Do Grad-CAM maps mean something? Mass on the moving object, per layer and region, and the randomisation test.

    python benchmarks/bench_explain_sanity.py --ckpt runs/quickstart/checkpoints/best.ckpt \
        [--synth .cache/synth-motion10] [--clips 60] [--layers all] [--cams gradcam hirescam] \
        [--surrogate 10] [--json out.json]

For the first ``--clips`` validation clips of the synthetic motion set (they cycle through
the classes) the generator's object alpha is recomputed for every frame
(:func:`lightvid.data.synth.object_masks`, the same random draws as the clip) and taken at
the frames the model sees. For each Grad-CAM layer (``all``: the output of every stage's
ReLU; ``default``: the layer ``explain`` picks) and each ``--cams`` method (``gradcam``: Captum's
``LayerGradCam``; ``hirescam``: gradient times activation summed over channels, see
:func:`lightvid.analysis.explain.grad_cam`) the share of the map's mass (of the true class,
ReLU'd, upsampled trilinearly to the clip) inside four regions is printed beside the
share of the clip's pixels the region covers (what a uniform map would put there); ``side`` is
the map's height over the input's (the quantity :func:`~lightvid.analysis.explain.pick_layer`'s rule reads):

* ``object``: the object's pixels (alpha > 0.5) in each frame;
* ``box``: the object's bounding box in each frame, grown by ``--margin`` pixels;
* ``slot``: the union of those boxes over the frames that share the frame's time position
  in the layer's map (the layer's frames are ``T / t`` input frames each);
* ``field``: the union of those boxes over every frame in the temporal receptive field of
  that map position (measured: the input frames with a nonzero gradient). A map position
  sees these frames, so the moving object's evidence there lies inside this region.

``ceiling`` is what resolution alone allows on the ``object`` region: the mass on the object
of a map that is exactly the object's coverage of each of the layer's positions (the alpha
mask average-pooled to the layer's grid), upsampled the same way. Also per layer: ``rand``,
the same mass (``field`` region) for the architecture with every weight re-drawn (Adebayo
et al., NeurIPS 2018), and ``rho``, Spearman's rank correlation of the trained and
randomised maps. ``--guided LAYER`` adds Captum's Guided Grad-CAM at that layer (Grad-CAM
times guided backpropagation, pixel resolution; the map is its absolute value summed over
colour channels). Two interventions test whether the model needs the object at
all: the clip with everything outside the object's track (the union of its boxes over the
clip, grown by the margin) set to the clip's mean colour, and the clip with the track itself
hidden; the accuracy of each is printed. ``--surrogate N`` fits the DeepVID-style surrogate
on N clips (held-out fidelity, share of its positive weight on the object).
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from long_video import DEMO_SYNTH, demo_synth_set  # noqa: E402

from lightvid.accel.runtime import load_inference_model  # noqa: E402
from lightvid.analysis.explain import (  # noqa: E402
    CAM_METHODS,
    deepvid_surrogate,
    grad_cam,
    load_input,
    mass_on_mask,
    pick_layer,
    randomized_copy,
    rank_correlation,
    spatial_layers,
)
from lightvid.data.synth import object_masks, read_stamp  # noqa: E402

REGIONS = ("object", "box", "slot", "field")


def stage_outputs(model: nn.Module, x: torch.Tensor) -> list[str]:
    """The ReLU modules whose output has time/space axes, in execution order (each stage's activation map)."""
    mods = dict(model.named_modules())
    names = [n for n, shape in spatial_layers(model, x) if isinstance(mods[n], nn.ReLU) and np.prod(shape[2:]) > 1]
    return list(dict.fromkeys(names))


def temporal_field(model: nn.Module, layer: str, x: torch.Tensor) -> list[list[int]]:
    """For each time position of ``layer``'s output: the input frames with a nonzero gradient (its receptive field)."""
    module = dict(model.named_modules())[layer]
    out = {}
    h = module.register_forward_hook(lambda m, i, o: out.__setitem__("y", o))
    inp = torch.randn_like(x).requires_grad_(True)
    try:
        with torch.enable_grad():
            model(inp)
            y = out["y"]  # (1, C, t, h, w)
            fields = []
            for j in range(y.shape[2]):
                (g,) = torch.autograd.grad(y[:, :, j].abs().sum(), inp, retain_graph=True)
                fields.append([i for i in range(x.shape[2]) if float(g[:, :, i].abs().sum()) > 0])
    finally:
        h.remove()
    return fields


def boxes(alpha: np.ndarray, margin: int) -> np.ndarray:
    """(T, H, W) alpha -> (T, H, W) bool: each frame's object bounding box grown by ``margin`` pixels."""
    out = np.zeros(alpha.shape, bool)
    for t, a in enumerate(alpha > 0.5):
        ys, xs = np.nonzero(a)
        if len(ys):
            y0, x0 = max(0, ys.min() - margin), max(0, xs.min() - margin)
            out[t, y0: ys.max() + margin + 1, x0: xs.max() + margin + 1] = True
    return out


def regions(alpha: np.ndarray, t_map: int, field: list[list[int]], margin: int) -> dict[str, np.ndarray]:
    """The four regions (see the module docstring) for a clip's ``(T, H, W)`` alpha and a map with ``t_map`` times."""
    t = alpha.shape[0]
    box = boxes(alpha, margin)
    slot_of = [min(i * t_map // t, t_map - 1) for i in range(t)]  # the map time position frame i falls in
    slot = np.stack([box[[j for j in range(t) if slot_of[j] == slot_of[i]]].any(0) for i in range(t)])
    fld = np.stack([box[field[slot_of[i]]].any(0) for i in range(t)])
    return {"object": alpha > 0.5, "box": box, "slot": slot, "field": fld}


def resolution_ceiling(mask: np.ndarray, grid: tuple[int, int, int]) -> float:
    """Object mass of the best map a layer with ``grid`` positions can give: the mask pooled to it, upsampled back."""
    m = torch.from_numpy(mask.astype(np.float32))[None, None]  # (1, 1, T, H, W)
    up = F.interpolate(F.adaptive_avg_pool3d(m, grid), size=mask.shape, mode="trilinear", align_corners=False)
    return mass_on_mask(up[0, 0].numpy(), mask)


def guided_grad_cam(model: nn.Module, x: torch.Tensor, target: int, layer: str) -> np.ndarray:
    """Captum's GuidedGradCam ``(T, H, W)``: |attribution| summed over colour channels (ReLUs made not in-place)."""
    from captum.attr import GuidedGradCam

    m = copy.deepcopy(model)
    for mod in m.modules():
        if isinstance(mod, nn.ReLU):
            mod.inplace = False  # guided backprop hooks every ReLU's backward
    attr = GuidedGradCam(m, dict(m.named_modules())[layer]).attribute(x.clone().requires_grad_(True), target=target)
    return attr.detach()[0].abs().sum(0).numpy()  # (T, H, W)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--synth", default=str(DEMO_SYNTH), help="the synthetic set the checkpoint was trained on")
    ap.add_argument("--clips", type=int, default=60)
    ap.add_argument("--layers", nargs="+", default=["all"], help="module names, 'default' or 'all' (stage outputs)")
    ap.add_argument("--margin", type=int, default=2, help="pixels added around the object's boxes")
    ap.add_argument("--cams", nargs="+", default=["gradcam"], choices=CAM_METHODS, help="map methods per layer")
    ap.add_argument("--guided", nargs="*", default=[], help="also Guided Grad-CAM at these layers")
    ap.add_argument("--surrogate", type=int, default=0, help="also fit the surrogate on this many clips")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    synth = demo_synth_set(args.synth)
    stamp = read_stamp(synth)
    im = load_inference_model(args.ckpt)
    model = im.model
    rand = randomized_copy(model)
    lines = [ln.split() for ln in (synth / "val.txt").read_text().splitlines()][: args.clips]
    x0, _ = load_input(im, str(synth / lines[0][0]))
    layers = []
    for name in args.layers:
        layers += stage_outputs(model, x0) if name == "all" else [pick_layer(model, x0, None if name == "default"
                                                                             else name)]
    shapes = dict(spatial_layers(model, x0))
    fields = {name: temporal_field(model, name, x0) for name in layers}
    layers = list(dict.fromkeys(layers))
    methods = [(cam, name) for cam in args.cams for name in layers] + [("guided", name) for name in args.guided]
    rows = {m: {"mass": {r: [] for r in REGIONS}, "area": {r: [] for r in REGIONS}, "rand": [], "rho": [],
                "cls": [], "ceiling": []} for m in methods}
    inter = {"correct": [], "track_only": [], "track_hidden": [], "track_area": []}
    sur = {"r2": [], "pos_on_object": [], "object_area": []}
    t0 = time.perf_counter()
    for n, (rel, label) in enumerate(lines):
        cls = rel.split("/")[1]
        index = int(Path(rel).stem.rsplit("_", 1)[1])
        x, idx = load_input(im, str(synth / rel))
        alpha = object_masks(stamp["seed"], "val", index, cls, stamp["frames"], stamp["size"])[idx]  # (T, H, W)
        if alpha.shape[1:] != x.shape[-2:]:
            sys.exit(f"masks {alpha.shape[1:]} vs clip {tuple(x.shape[-2:])}: run with size == crop and no short side")
        target = int(label)
        track = torch.from_numpy(boxes(alpha, args.margin).any(0)).float()  # (H, W): the object's whole path
        fill = x.mean(dim=(2, 3, 4), keepdim=True)  # (1, C, 1, 1, 1)
        with torch.no_grad():
            batch = torch.cat([x, x * track + fill * (1 - track), x * (1 - track) + fill * track])  # (3, C, T, H, W)
            pred = model(batch).argmax(-1).tolist()
        inter["correct"].append(pred[0] == target)
        inter["track_only"].append(pred[1] == target)
        inter["track_hidden"].append(pred[2] == target)
        inter["track_area"].append(float(track.mean()))
        for kind, name in methods:
            cam = guided_grad_cam(model, x, target, name) if kind == "guided" else grad_cam(model, x, target, name,
                                                                                            method=kind)
            regs = regions(alpha, shapes[name][2], fields[name], args.margin)
            r = rows[(kind, name)]
            for k, mask in regs.items():
                r["mass"][k].append(mass_on_mask(cam, mask))
                r["area"][k].append(float(mask.mean()))
            cam_r = guided_grad_cam(rand, x, target, name) if kind == "guided" else grad_cam(rand, x, target, name,
                                                                                              method=kind)
            r["rand"].append(mass_on_mask(cam_r, regs["field"]))
            r["rho"].append(rank_correlation(cam, cam_r))
            r["cls"].append(cls)
            r["ceiling"].append(resolution_ceiling(regs["object"], tuple(shapes[name][2:])))
        if n < args.surrogate:
            s = deepvid_surrogate(im.logits, x, target, (4, 4, 4), samples=256, keep=0.7, temperature=4.0, seed=n)
            pos = np.clip(s.heatmap(alpha.shape), 0, None)
            sur["r2"].append(s.r2_heldout)
            sur["pos_on_object"].append(mass_on_mask(pos, alpha > 0.5))
            sur["object_area"].append(float((alpha > 0.5).mean()))
    out = {"ckpt": args.ckpt, "synth": str(synth), "clips": len(lines), "margin": args.margin,
           "seconds": round(time.perf_counter() - t0, 1), "methods": [],
           "interventions": {k: round(float(np.mean(v)), 4) for k, v in inter.items()}}
    print(f"{len(lines)} validation clips of {synth}, checkpoint {args.ckpt}; boxes grown by {args.margin} px")
    print(f"accuracy: clip {np.mean(inter['correct']):.3f}; only the object's track visible "
          f"({np.mean(inter['track_area']):.3f} of the frame) {np.mean(inter['track_only']):.3f}; "
          f"track hidden {np.mean(inter['track_hidden']):.3f}")
    head = "  ".join(f"{r + ' mass/area':>17}" for r in REGIONS)
    print(f"{'method':<9} {'layer':<12} {'map':>8} {'side':>5}  {head}  {'ceiling':>7} {'rand(field)':>11} {'rho':>6}")
    for (kind, name), r in rows.items():
        shape = "x".join(map(str, shapes[name][2:]))
        side = min(shapes[name][-2] / x0.shape[-2], shapes[name][-1] / x0.shape[-1])  # the map's share of the side
        mass = {k: float(np.mean(v)) for k, v in r["mass"].items()}
        area = {k: float(np.mean(v)) for k, v in r["area"].items()}
        per_class = {}
        for c in dict.fromkeys(r["cls"]):
            sel = [i for i, cc in enumerate(r["cls"]) if cc == c]
            per_class[c] = {k: round(float(np.mean([r["mass"][k][i] for i in sel])), 4) for k in REGIONS}
        out["methods"].append({"method": kind, "layer": name, "map": shape, "side": round(side, 4),
                               "mass": {k: round(v, 4) for k, v in mass.items()},
                               "area": {k: round(v, 4) for k, v in area.items()},
                               "rand_field": round(float(np.mean(r["rand"])), 4),
                               "ceiling_object": round(float(np.mean(r["ceiling"])), 4),
                               "rho": round(float(np.mean(r["rho"])), 4), "rho_std": round(float(np.std(r["rho"])), 4),
                               "temporal_field": fields.get(name), "per_class": per_class})
        cells = "  ".join(f"{mass[k]:8.3f}/{area[k]:.3f}" for k in REGIONS)
        print(f"{kind:<9} {name:<12} {shape:>8} {side:5.3f}  {cells}  {np.mean(r['ceiling']):7.3f} "
              f"{np.mean(r['rand']):11.3f} {np.mean(r['rho']):6.3f}")
    if sur["r2"]:
        out["surrogate"] = {k: round(float(np.mean(v)), 4) for k, v in sur.items()} | {"clips": len(sur["r2"])}
        print(f"surrogate on {len(sur['r2'])} clips: held-out R2 {np.mean(sur['r2']):.3f}, positive weight on "
              f"object pixels {np.mean(sur['pos_on_object']):.3f} (object area {np.mean(sur['object_area']):.3f})")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
