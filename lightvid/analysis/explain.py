"""``lightvid explain``: what a video (or image) classifier looks at.

* **Class activation maps** over ``(t, h, w)``, upsampled (trilinear) to the clip's frames:
  Grad-CAM (Selvaraju et al., ICCV 2017, Captum's ``LayerGradCam``: the class score's
  gradient, averaged over a layer's time and space, weights that layer's channels) or, the
  default, HiResCAM (Draelos and Carin, "Use HiResCAM instead of Grad-CAM for faithful
  explanations of convolutional neural networks", 2020: gradient times activation at each
  position, summed over channels, Captum's ``LayerGradientXActivation``); the ReLU of either.
  The default layer is the deepest one whose map keeps half the input's height and width
  (:func:`pick_layer`). Both defaults were chosen by measuring the mass on the moving object
  (docs/video_tools.md). A 2D image model given a clip is explained frame by frame.
* **Local surrogate after DeepVID** (Wang, Gou, Zhang, Yang, Shen, "DeepVID: Deep Visual
  Interpretation and Diagnosis for Image Classifiers via Knowledge Distillation", IEEE
  TVCG 2019): sample perturbations in the neighbourhood of the clip (here: hiding random
  space-time cells of a ``T x H x W`` grid, each kept with probability ``keep``, hidden
  cells set to the clip's mean colour), record the model's (teacher's) temperature-softened
  probability of the class, and distil it into an interpretable student: a ridge
  regression on the cells' on/off vector (scikit-learn). The student's weights are the
  explanation (a heat map over space-time cells); its fidelity is R^2 on held-out
  perturbations.
* Sanity checks that can fail (docs/video_tools.md): on the synthetic motion set the share
  of Grad-CAM mass on the moving object (:func:`mass_on_mask` against
  :func:`lightvid.data.synth.object_masks`), and the rank correlation with the map of the
  same architecture with randomised weights (Adebayo et al., NeurIPS 2018).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from lightvid.errors import UserError

CAM_METHODS = ("gradcam", "hirescam")
DEFAULT_CAM = "hirescam"  # measured: more of the mass on the moving object (docs/video_tools.md)
DEFAULT_MIN_SCALE = 0.5  # the default layer keeps >= this share of the input's side (pick_layer; measured)


def spatial_layers(model: nn.Module, x: torch.Tensor) -> list[tuple[str, tuple]]:
    """``(name, output shape)`` of every module with a 4D/5D tensor output, in execution order."""
    seen: list[tuple[str, tuple]] = []
    hooks = []
    for name, mod in model.named_modules():
        if name:
            hooks.append(mod.register_forward_hook(
                lambda m, i, o, name=name: seen.append((name, tuple(o.shape)))
                if isinstance(o, torch.Tensor) and o.dim() in (4, 5) else None))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


def pick_layer(model: nn.Module, x: torch.Tensor, name: str | None = None,
               min_scale: float = DEFAULT_MIN_SCALE) -> str:
    """The module Grad-CAM reads: ``name``, else the default rule (docs/video_tools.md, measured there).

    The default is the deepest module (in execution order) whose map keeps at least ``min_scale``
    of the input's height and of its width, i.e. a spatial stride of at most ``1 / min_scale``
    (``min_scale=0``: the last module with more than one position, Grad-CAM's original choice).
    Modules called more than once per forward (a shared ReLU) are skipped: their map is not one
    tensor. When no module keeps that much, the deepest one with the finest map is taken.
    """
    layers = spatial_layers(model, x)
    names = [n for n, _ in layers]
    if name is not None:
        if name not in dict(model.named_modules()):
            import difflib

            close = difflib.get_close_matches(name, names, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UserError(f"--layer {name!r}: no such module{hint}")
        return name
    calls = {n: names.count(n) for n in names}
    # a global pool's 1x1(x1) map says nothing
    spread = [(n, shape[-2:]) for n, shape in layers if int(np.prod(shape[2:])) > 1 and calls[n] == 1]
    if not spread:
        raise UserError("no module with a (B, C, [T,] H, W) output: Grad-CAM needs a convolutional layer")
    h, w = x.shape[-2:]
    fine = [n for n, (mh, mw) in spread if mh >= min_scale * h and mw >= min_scale * w]
    if fine:
        return fine[-1]
    finest = max(mh * mw for _, (mh, mw) in spread)
    return [n for n, (mh, mw) in spread if mh * mw == finest][-1]


def grad_cam(model: nn.Module, x: torch.Tensor, target: int, layer: str, frames_2d: bool = False,
             method: str = DEFAULT_CAM) -> np.ndarray:
    """Grad-CAM of class ``target`` for one clip ``x`` ``(1, C, T, H, W)`` (or an image ``(1, C, H, W)``).

    ``method``: ``"gradcam"`` (Selvaraju et al.: channels weighted by their gradient averaged
    over the layer's positions, Captum's ``LayerGradCam``) or ``"hirescam"`` (Draelos and Carin,
    2020: the element-wise product of gradient and activation summed over channels, Captum's
    ``LayerGradientXActivation``; each position keeps its own gradient, so the map is exactly the
    first-order contribution of that position's activations to the class score).
    Returns ``(T, H, W)`` (``(1, H, W)`` for an image) in ``[0, 1]``: the ReLU'd map upsampled
    (trilinear/bilinear) to the input and divided by its max (all zeros when the class has no
    positive evidence). ``frames_2d``: a 2D model explained on each frame of the clip.
    """
    try:
        from captum.attr import LayerGradCam, LayerGradientXActivation
    except ImportError:
        raise UserError("Grad-CAM needs Captum: pip install 'lightvid[explain]' (or pip install captum)") from None
    if method not in CAM_METHODS:
        raise UserError(f"--cam {method!r}: not one of {', '.join(CAM_METHODS)}")
    module = dict(model.named_modules())[layer]
    if frames_2d:
        b, c, t, h, w = x.shape
        inp = x.transpose(1, 2).reshape(b * t, c, h, w)  # (T, C, H, W): frames as a batch
    else:
        inp = x
    inp = inp.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        if method == "gradcam":
            cam = LayerGradCam(model, module).attribute(inp, target=int(target), relu_attributions=True)
        else:
            gxa = LayerGradientXActivation(model, module).attribute(inp, target=int(target))  # (N, C, [t,] h, w)
            cam = F.relu(gxa.sum(1, keepdim=True))  # (N, 1, [t,] h, w)
    cam = cam.detach().float()
    size = inp.shape[2:]
    if cam.dim() == 5:  # (1, 1, t, h, w)
        cam = F.interpolate(cam, size=tuple(size), mode="trilinear", align_corners=False)[0, 0]  # (T, H, W)
    else:  # (N, 1, h, w): an image, or the frames of a 2D model
        cam = F.interpolate(cam, size=tuple(size[-2:]), mode="bilinear", align_corners=False)[:, 0]  # (N, H, W)
    cam = cam.clamp_min(0)
    peak = float(cam.max())
    return (cam / peak if peak > 0 else cam).numpy()


def randomized_copy(model: nn.Module, seed: int = 0) -> nn.Module:
    """The same architecture with every parameter re-drawn (Adebayo et al.'s full model randomisation)."""
    m = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in m.modules():
            for name, p in mod.named_parameters(recurse=False):
                if p.dim() > 1:
                    fan_in = p[0].numel()
                    p.copy_(torch.randn(p.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                elif "weight" in name:
                    p.fill_(1.0)
                else:
                    p.zero_()
            for buf in ("running_mean", "running_var"):
                if getattr(mod, buf, None) is not None:
                    getattr(mod, buf).fill_(0.0 if buf == "running_mean" else 1.0)
    return m.eval()


def mass_on_mask(cam: np.ndarray, mask: np.ndarray) -> float:
    """Share of the map's mass inside ``mask`` (same shape, values in [0, 1])."""
    total = float(cam.sum())
    return float((cam * mask).sum() / total) if total > 0 else 0.0


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two maps (flattened)."""
    from scipy.stats import spearmanr

    r = spearmanr(a.ravel(), b.ravel()).statistic
    return float(r) if np.isfinite(r) else 0.0


# ----------------------------------------------------------------------------- DeepVID-style surrogate


@dataclass
class Surrogate:
    weights: np.ndarray  # (gt, gh, gw) ridge weights of the cells
    intercept: float
    r2_train: float
    r2_heldout: float  # fidelity on perturbations the student never saw
    samples: int
    grid: tuple[int, int, int]
    keep: float
    temperature: float = 4.0

    def heatmap(self, shape: tuple[int, int, int]) -> np.ndarray:
        """The weights as a ``(T, H, W)`` map (each cell constant)."""
        t, h, w = shape
        gt, gh, gw = self.grid
        it = np.minimum(np.arange(t) * gt // t, gt - 1)
        ih = np.minimum(np.arange(h) * gh // h, gh - 1)
        iw = np.minimum(np.arange(w) * gw // w, gw - 1)
        return self.weights[np.ix_(it, ih, iw)]


def cell_masks(z: torch.Tensor, grid: tuple[int, int, int], shape: tuple[int, int, int]) -> torch.Tensor:
    """On/off cells ``(N, gt*gh*gw)`` -> pixel masks ``(N, 1, T, H, W)`` (nearest-neighbour upsampling)."""
    n = z.shape[0]
    cells = z.reshape(n, 1, *grid).float()  # (N, 1, gt, gh, gw)
    return F.interpolate(cells, size=shape, mode="nearest")


def deepvid_surrogate(predict, x: torch.Tensor, target: int, grid: tuple[int, int, int] = (4, 4, 4),
                      samples: int = 256, keep: float = 0.7, temperature: float = 4.0, alpha: float = 1.0,
                      batch: int = 16, heldout: float = 0.2, seed: int = 0) -> Surrogate:
    """Distil ``predict`` (clips -> logits) around clip ``x`` ``(1, C, T, H, W)`` into a linear student.

    Perturbation ``i`` keeps each cell with probability ``keep`` and fills the others with
    the clip's per-channel mean; the teacher's output is ``softmax(logits / temperature)``
    of ``target`` (a raised temperature, as in distillation, softens a saturated softmax so
    that a linear student can follow it). The student (``sklearn.linear_model.Ridge(alpha)``) is fitted on
    ``1 - heldout`` of the samples; ``r2_heldout`` is its R^2 on the rest.
    """
    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score

    if x.dim() != 5:
        raise UserError("the surrogate explains clips (1, C, T, H, W)")
    _, c, t, h, w = x.shape
    grid = (min(grid[0], t), min(grid[1], h), min(grid[2], w))
    if samples < 10 or not 0 < keep < 1 or not 0 < heldout < 1:
        raise UserError("--samples must be >= 10, --keep and the held-out share in (0, 1)")
    g = torch.Generator().manual_seed(seed)
    m = grid[0] * grid[1] * grid[2]
    z = (torch.rand(samples, m, generator=g) < keep).float()  # (N, cells)
    z[0] = 1.0  # the clip itself
    fill = x.mean(dim=(2, 3, 4), keepdim=True)  # (1, C, 1, 1, 1)
    ys = []
    with torch.inference_mode():
        for s in range(0, samples, batch):
            mask = cell_masks(z[s: s + batch], grid, (t, h, w))  # (n, 1, T, H, W)
            xb = x * mask + fill * (1 - mask)  # (n, C, T, H, W)
            ys.append((predict(xb).float() / temperature).softmax(-1)[:, target])
    y = torch.cat(ys).numpy()
    zn = z.numpy()
    n_fit = int(round(samples * (1 - heldout)))
    student = Ridge(alpha=alpha).fit(zn[:n_fit], y[:n_fit])
    r2_train = float(r2_score(y[:n_fit], student.predict(zn[:n_fit])))
    r2_held = float(r2_score(y[n_fit:], student.predict(zn[n_fit:]))) if np.var(y[n_fit:]) > 0 else 0.0
    return Surrogate(student.coef_.reshape(grid), float(student.intercept_), r2_train, r2_held, samples, grid, keep,
                     temperature)


# ----------------------------------------------------------------------------- pictures


def display_frames(x: torch.Tensor, mean, std) -> np.ndarray:
    """A normalised clip ``(C, T, H, W)`` back to uint8 ``(T, H, W, 3)``."""
    m = torch.as_tensor(mean).view(-1, 1, 1, 1)
    s = torch.as_tensor(std).view(-1, 1, 1, 1)
    rgb = (x * s + m).clamp(0, 1).mul(255).round().byte()  # (C, T, H, W)
    if rgb.shape[0] == 1:
        rgb = rgb.expand(3, *rgb.shape[1:])
    return rgb.permute(1, 2, 3, 0).contiguous().numpy()


def overlay(frames: np.ndarray, heat: np.ndarray, alpha: float = 0.5, signed: bool = False) -> np.ndarray:
    """Frames ``(T, H, W, 3)`` with a colour map of ``heat`` ``(T, H, W)`` blended in (JET; signed: blue-red)."""
    import cv2

    if signed:  # zero in the middle of the colour map (green), positive red, negative blue
        lim = float(np.abs(heat).max()) or 1.0
        v = np.clip(heat / lim * 0.5 + 0.5, 0, 1)
    else:
        v = np.clip(heat, 0, 1)
    out = np.empty_like(frames)
    for i, (f, hm) in enumerate(zip(frames, v)):
        colour = cv2.applyColorMap((hm * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]  # BGR -> RGB
        out[i] = (f * (1 - alpha) + colour * alpha).astype(np.uint8)
    return out


def strip_png(rows: list[tuple[str, np.ndarray]], every: int = 1, scale: int = 1) -> bytes:
    """PNG bytes: one labelled row per ``(label, frames (T, H, W, 3))``, frames side by side."""
    import cv2

    rendered = []
    for label, frames in rows:
        picked = frames[::every]
        row = np.concatenate(list(picked), axis=1)  # (H, T*W, 3)
        if scale > 1:
            row = cv2.resize(row, (row.shape[1] * scale, row.shape[0] * scale), interpolation=cv2.INTER_NEAREST)
        bar = np.full((16, row.shape[1], 3), 255, np.uint8)
        cv2.putText(bar, label, (2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        rendered.append(np.concatenate([bar, row]))
    width = max(r.shape[1] for r in rendered)
    img = np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255)
                          for r in rendered])
    ok, buf = cv2.imencode(".png", img[..., ::-1])
    if not ok:
        raise UserError("could not encode the PNG strip")
    return buf.tobytes()


def animation_bytes(frames: np.ndarray, suffix: str, fps: float = 8.0, scale: int = 1) -> bytes:
    """``frames`` (T, H, W, 3) as a looping GIF or an H.264 MP4 (bytes)."""
    import tempfile
    from pathlib import Path

    import cv2

    if scale > 1:
        frames = np.stack([cv2.resize(f, (f.shape[1] * scale, f.shape[0] * scale),
                                      interpolation=cv2.INTER_NEAREST) for f in frames])
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"a{suffix}"
        if suffix == ".gif":
            from PIL import Image

            imgs = [Image.fromarray(f) for f in frames]
            imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=int(1000 / fps), loop=0)
        elif suffix == ".mp4":
            from fractions import Fraction

            from lightvid.data.synth import write_mp4

            h, w = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2  # H.264 yuv420p: even sides
            write_mp4(path, np.ascontiguousarray(frames[:, :h, :w]), fps=int(Fraction(fps).limit_denominator(1)) or 8)
        else:
            raise UserError(f"overlay must be .gif or .mp4, got {suffix!r}")
        return path.read_bytes()


# ----------------------------------------------------------------------------- one video


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass
class Explanation:
    path: str
    target: int
    target_name: str
    prob: float
    layer: str
    frames: np.ndarray  # (T, H, W, 3) uint8, what the model saw
    cam: np.ndarray  # (T, H, W) in [0, 1]
    surrogate: Surrogate | None
    frame_indices: list[int]
    backend: dict | None = None  # what ran the surrogate's forward passes (InferenceModel.backend)
    cam_method: str = DEFAULT_CAM  # "gradcam" or "hirescam" (grad_cam)

    def to_dict(self) -> dict:
        d = {"path": self.path, "class": self.target_name, "class_index": self.target, "prob": round(self.prob, 6),
             "layer": self.layer, "cam": self.cam_method, "frames": self.frame_indices,
             "gradcam_backend": {"backend": "torch", "precision": "fp32"}}
        if self.surrogate is not None:
            s = self.surrogate
            d["surrogate"] = {"grid": list(s.grid), "samples": s.samples, "keep": s.keep, "temperature": s.temperature,
                              "r2_train": round(s.r2_train, 4), "r2_heldout": round(s.r2_heldout, 4),
                              **({"backend": self.backend} if self.backend else {})}
        return d


def load_input(im, path: str, start: float | None = None) -> tuple[torch.Tensor, list[int]]:
    """The clip the model sees ``(1, C, T, H, W)`` (centre clip, or the one starting at ``start`` s) and its frames."""
    from pathlib import Path

    from lightvid.data.video import probe, read_clip

    if Path(path).suffix.lower() in IMAGE_EXTENSIONS:
        import cv2

        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise UserError(f"{path}: not a readable image")
        frames = torch.from_numpy(np.ascontiguousarray(img[None, ..., ::-1]))  # (1, H, W, 3) RGB
        return im.prepare(frames)[None], [0]
    info = probe(path)
    fps = info.fps or 25.0
    sampler = im.sampler
    if start is None:
        idx = sampler.eval_clips(info.frames, fps, 1)[0]
    else:
        from lightvid.data.sampling import clip_indices

        idx = clip_indices(int(round(start * fps)), im.cfg.clip_len, sampler.step(fps), info.frames, im.cfg.loop)
    return im.prepare(read_clip(path, idx, im.cfg.short_side))[None], idx


def explain(im, path: str, target: int | str | None = None, layer: str | None = None, start: float | None = None,
            surrogate: bool = True, grid: tuple[int, int, int] = (4, 4, 4), samples: int = 256, keep: float = 0.7,
            seed: int = 0, temperature: float = 4.0, cam: str = DEFAULT_CAM) -> Explanation:
    """Grad-CAM and (optionally) the DeepVID-style surrogate for one video or image.

    Grad-CAM needs gradients, so it always runs ``im.model`` (plain PyTorch, fp32); the
    class probability and the surrogate's forward passes run ``im.run``, whatever backend
    and precision ``im`` was loaded with (:func:`lightvid.accel.runtime.load_inference_model`).
    """
    x, idx = load_input(im, path, start)  # (1, C, T, H, W)
    image_model = im.is_2d
    with torch.inference_mode():
        probs = im.logits(x if not (image_model and x.shape[2] == 1) else x[:, :, 0]).softmax(-1)[0]
    if target is None:
        t = int(probs.argmax())
    elif isinstance(target, str) and not target.lstrip("-").isdigit():
        if target not in im.classes:
            raise UserError(f"--class {target!r}: not one of {', '.join(im.classes)}")
        t = im.classes.index(target)
    else:
        t = int(target)
    if not 0 <= t < probs.numel():
        raise UserError(f"--class {target}: outside [0, {probs.numel()})")
    if image_model and x.shape[2] == 1:  # an image for an image model
        xi = x[:, :, 0]  # (1, C, H, W)
        name = pick_layer(im.model, xi, layer)
        heat = grad_cam(im.model, xi, t, name, method=cam)  # (1, H, W)
        predict = lambda xb: im.run(xb[:, :, 0])  # noqa: E731  (N, C, 1, H, W) -> logits
    else:
        probe_in = x[:, :, 0] if image_model else x
        name = pick_layer(im.model, probe_in, layer)
        heat = grad_cam(im.model, x, t, name, frames_2d=image_model, method=cam)  # (T, H, W)
        predict = im.logits
    sur = deepvid_surrogate(predict, x, t, grid, samples, keep, temperature, seed=seed) if surrogate else None
    frames = display_frames(x[0], im.transform.mean, im.transform.std)
    return Explanation(str(path), t, im.class_name(t), float(probs[t]), name, frames, heat, sur, list(map(int, idx)),
                       im.backend if surrogate else None, cam)


def pictures(e: Explanation, scale: int = 1) -> tuple[np.ndarray, bytes]:
    """``(Grad-CAM overlay frames, PNG strip bytes)``: rows clip, Grad-CAM and surrogate weights."""
    cam_frames = overlay(e.frames, e.cam)
    title = {"gradcam": "Grad-CAM", "hirescam": "HiResCAM"}[e.cam_method]
    rows = [("clip", e.frames), (f"{title}: {e.target_name} ({e.prob:.2f}), layer {e.layer}", cam_frames)]
    if e.surrogate is not None:
        heat = e.surrogate.heatmap(e.cam.shape)
        rows.append((f"DeepVID-style surrogate weights, fidelity R2 {e.surrogate.r2_heldout:.2f} (held out)",
                     overlay(e.frames, heat, signed=True)))
    every = max(1, len(e.frames) // 16)
    return cam_frames, strip_png(rows, every=every, scale=scale)
