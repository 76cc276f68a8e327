"""Start a lightvid model from the weights users already have (``model.init=PATH``).

A file holds a state dict in one of these layouts; :func:`convert_state_dict` renames it into
the model's own names, then :func:`load_pretrained` loads it, replacing the classifier when the
class count differs (one line says so):

* lightvid: a run's ``.ckpt`` (Lightning, keys under ``model.``), ``lightvid convert`` output, a
  ``.safetensors`` file, a bare state dict;
* torchvision / VMZ (facebookresearch/VMZ's PyTorch port): ``r3d_18``, ``mc3_18``,
  ``r2plus1d_18`` share torchvision's module tree (``stem.*``, ``layer1.0.conv1.0.*``), so their
  keys load as they are (``module.`` prefixes of DataParallel files are stripped);
* PyTorchVideo (``blocks.N.res_blocks.M.branch2.conv_a``, ``blocks.5.proj``): X3D XS/S/M into
  ``x3d_*`` (its shortcut projections have no batch norm: lightvid's is set to the identity),
  CSN into ``ir_csn_*`` (PyTorchVideo's CSN is ir-CSN: depthwise 3x3x3 in the bottleneck),
  Slow-R50 into ``slow_r50`` and R(2+1)D-50 into ``r2plus1d_50_pytorchvideo``. Checkpoints saved
  by PySlowFast put the state under ``model_state``;
* MMAction2 recognisers (``backbone.*`` made of ConvModules ``.conv``/``.bn``, ``cls_head.fc_cls``,
  under ``state_dict``): C3D into ``c3d``, ir-CSN / ip-CSN into ``ir_csn_*`` / ``ip_csn_*``,
  R(2+1)D-34 into ``r2plus1d_34_mmaction``.

Each converter is a table of regular expressions (data, not code per key) plus a reshape for
convolutions stored as linears; tests prove each by logit parity with the peer's own model
code on random weights (tests/test_pretrained_keys.py, tests/test_pretrained_keys_mmaction.py).
PyTorchVideo's CSN and X3D keep the batch-norm epsilon at 1e-5, so build ``ir_csn_101`` with
``bn_eps=1e-5`` for its weights (lightvid's CSN default, 1e-3, is the Caffe2 one, and MMAction2's).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import torch
import torch.nn as nn

from lightvid.checkpoint import CheckpointError, extract_state_dict, load_file

# (pattern, replacement) applied in order, the first match wins; None drops the key
PYTORCHVIDEO_X3D = [
    (r"^blocks\.0\.conv\.conv_t\.", "stem_xy."),  # PyTorchVideo's "conv_t" is the 1x3x3 one
    (r"^blocks\.0\.conv\.conv_xy\.", "stem_t."),  # and "conv_xy" the 5x1x1 depthwise one
    (r"^blocks\.0\.norm\.", "stem_bn."),
    (r"^blocks\.5\.pool\.pre_conv\.", "conv5."),
    (r"^blocks\.5\.pool\.pre_norm\.", "conv5_bn."),
    (r"^blocks\.5\.pool\.post_conv\.", "lin5."),
    (r"^blocks\.5\.proj\.", "fc."),
    (r"^blocks\.(\d)\.res_blocks\.(\d+)\.branch1_conv\.", lambda m: f"res{int(m[1]) + 1}.{m[2]}.proj.0."),
    (r"^blocks\.(\d)\.res_blocks\.(\d+)\.branch1_norm\.", lambda m: f"res{int(m[1]) + 1}.{m[2]}.proj.1."),
    (r"^blocks\.(\d)\.res_blocks\.(\d+)\.branch2\.norm_b\.0\.", lambda m: f"res{int(m[1]) + 1}.{m[2]}.bn_b."),
    (r"^blocks\.(\d)\.res_blocks\.(\d+)\.branch2\.norm_b\.1\.block\.0\.",
     lambda m: f"res{int(m[1]) + 1}.{m[2]}.se.fc1."),
    (r"^blocks\.(\d)\.res_blocks\.(\d+)\.branch2\.norm_b\.1\.block\.2\.",
     lambda m: f"res{int(m[1]) + 1}.{m[2]}.se.fc2."),
    (r"^blocks\.(\d)\.res_blocks\.(\d+)\.branch2\.(conv|norm)_([abc])\.",
     lambda m: f"res{int(m[1]) + 1}.{m[2]}.{'conv' if m[3] == 'conv' else 'bn'}_{m[4]}."),
]

PYTORCHVIDEO_RESNET = [  # CSN, Slow-R50 and R(2+1)D-50: the bottleneck ResNets of one builder
    (r"^blocks\.0\.conv\.", "stem.0."),
    (r"^blocks\.0\.norm\.", "stem.1."),
    (r"^blocks\.5\.proj\.", "fc."),
    (r"^blocks\.(\d)\.res_blocks\.(\d+)\.branch1_conv\.", lambda m: f"layer{m[1]}.{m[2]}.downsample.0."),
    (r"^blocks\.(\d)\.res_blocks\.(\d+)\.branch1_norm\.", lambda m: f"layer{m[1]}.{m[2]}.downsample.1."),
    # R(2+1)D-50's conv_b is a (2+1)D pair (temporal first): lightvid's "2plus1d_tfirst" Sequential
    (r"^blocks\.(\d)\.res_blocks\.(\d+)\.branch2\.conv_b\.(conv_t|norm|conv_xy)\.",
     lambda m: f"layer{m[1]}.{m[2]}.conv2.0.{ {'conv_t': 0, 'norm': 1, 'conv_xy': 3}[m[3]]}."),
    (r"^blocks\.(\d)\.res_blocks\.(\d+)\.branch2\.(conv|norm)_([abc])\.",
     lambda m: f"layer{m[1]}.{m[2]}.conv{'abc'.index(m[4]) + 1}.{0 if m[3] == 'conv' else 1}."),
]

# MMAction2 recognisers: ``backbone.*`` (ConvModules: ``.conv`` + ``.bn``) and ``cls_head.fc_cls``
_MM_HEAD = [(r"^cls_head\.fc_cls\.", "fc.")]
_MM_PAIR = {"conv_s": 0, "bn_s": 1, "conv_t": 3}  # MMAction2's Conv2plus1d -> lightvid's (2+1)D Sequential
MMACTION_C3D = [
    (r"^backbone\.conv([12])a\.conv\.", lambda m: f"conv{m[1]}."),  # one convolution in stages 1-2
    (r"^backbone\.conv(\d[ab])\.conv\.", lambda m: f"conv{m[1]}."),
    (r"^backbone\.(fc[67])\.", lambda m: f"{m[1]}."),
    (r"^cls_head\.fc_cls\.", "fc8."),
]
MMACTION_RESNET3D = [  # ResNet3dCSN in 'ir' mode (and ResNet3d with plain Conv3d)
    (r"^backbone\.conv1\.conv\.", "stem.0."),
    (r"^backbone\.conv1\.bn\.", "stem.1."),
    (r"^backbone\.(layer\d\.\d+)\.conv2\.0\.conv\.", lambda m: f"{m[1]}.conv2.0."),  # ir: [depthwise]
    (r"^backbone\.(layer\d\.\d+)\.conv2\.0\.bn\.", lambda m: f"{m[1]}.conv2.1."),
    (r"^backbone\.(layer\d\.\d+)\.(conv\d|downsample)\.conv\.", lambda m: f"{m[1]}.{m[2]}.0."),
    (r"^backbone\.(layer\d\.\d+)\.(conv\d|downsample)\.bn\.", lambda m: f"{m[1]}.{m[2]}.1."),
] + _MM_HEAD
MMACTION_IP_CSN = [  # 'ip' mode: conv2 = [1x1x1 ConvModule, depthwise ConvModule]
    (r"^backbone\.(layer\d\.\d+)\.conv2\.0\.(conv|bn)\.",
     lambda m: f"{m[1]}.conv2.0.{0 if m[2] == 'conv' else 1}."),
    (r"^backbone\.(layer\d\.\d+)\.conv2\.1\.conv\.", lambda m: f"{m[1]}.conv2.0.2."),
    (r"^backbone\.(layer\d\.\d+)\.conv2\.1\.bn\.", lambda m: f"{m[1]}.conv2.1."),
] + MMACTION_RESNET3D[:2] + MMACTION_RESNET3D[4:]
MMACTION_R2PLUS1D = [  # ResNet2Plus1d: every ConvModule's conv is a Conv2plus1d (conv_s, bn_s, conv_t)
    (r"^backbone\.conv1\.conv\.(conv_s|bn_s|conv_t)\.", lambda m: f"stem.{_MM_PAIR[m[1]]}."),
    (r"^backbone\.conv1\.bn\.", "stem.4."),
    (r"^backbone\.(layer\d\.\d+)\.(conv\d|downsample)\.conv\.(conv_s|bn_s|conv_t)\.",
     lambda m: f"{m[1]}.{m[2]}.0.{_MM_PAIR[m[3]]}."),
    (r"^backbone\.(layer\d\.\d+)\.(conv\d|downsample)\.bn\.", lambda m: f"{m[1]}.{m[2]}.1."),
] + _MM_HEAD

# layout name -> (rules, lightvid model families it applies to)
LAYOUTS = {
    "pytorchvideo_x3d": (PYTORCHVIDEO_X3D, ("x3d_",)),
    "pytorchvideo_resnet": (PYTORCHVIDEO_RESNET, ("ir_csn_", "slow_r50", "r2plus1d_50_pytorchvideo")),
    "mmaction_c3d": (MMACTION_C3D, ("c3d",)),
    "mmaction_resnet3d": (MMACTION_RESNET3D, ("ir_csn_",)),
    "mmaction_ip_csn": (MMACTION_IP_CSN, ("ip_csn_",)),
    "mmaction_r2plus1d": (MMACTION_R2PLUS1D, ("r2plus1d_34_mmaction",)),
}


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, without running code, with wrapper prefixes stripped."""
    path = Path(path)
    state = extract_state_dict(load_file(path), path)
    for prefix in ("module.", "model."):  # DataParallel / Lightning wrappers
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def detect_layout(state: dict, model: nn.Module) -> str:
    """``lightvid`` (the model's own names, torchvision's for the torchvision-shaped models) or a peer layout."""
    own = set(model.state_dict())
    if len(own & set(state)) >= 0.5 * len(own):
        return "lightvid"
    if any(".pool.post_conv." in k for k in state) or any(k.startswith("blocks.0.conv.conv_t.") for k in state):
        return "pytorchvideo_x3d"
    if any(k.startswith("blocks.") and ".res_blocks." in k for k in state):
        return "pytorchvideo_resnet"
    if "backbone.conv1a.conv.weight" in state:
        return "mmaction_c3d"
    if any(k.startswith("backbone.conv1.conv.conv_s.") for k in state):
        return "mmaction_r2plus1d"
    if any(re.match(r"backbone\.layer\d\.\d+\.conv2\.1\.conv\.", k) for k in state):
        return "mmaction_ip_csn"
    if any(k.startswith("backbone.layer") for k in state):
        return "mmaction_resnet3d"
    return "unknown"


def apply_rules(state: dict[str, torch.Tensor], rules) -> dict[str, torch.Tensor]:
    out = {}
    compiled = [(re.compile(p), r) for p, r in rules]
    for key, value in state.items():
        for pattern, repl in compiled:
            m = pattern.match(key)
            if m:
                if repl is None:
                    break
                head = repl(m) if callable(repl) else repl
                out[head + key[m.end():]] = value
                break
        else:
            out[key] = value  # left as it is: reported as unexpected if the model lacks it
    return out


def convert_state_dict(state: dict[str, torch.Tensor], model: nn.Module, layout: str | None = None,
                       where: str = "<state dict>") -> tuple[dict[str, torch.Tensor], str]:
    """``state`` renamed into ``model``'s names; returns it and the layout found."""
    layout = layout or detect_layout(state, model)
    if layout == "lightvid":
        out = dict(state)
    elif layout in LAYOUTS:
        out = apply_rules(state, LAYOUTS[layout][0])
    else:
        raise CheckpointError(f"{where}: unknown weight layout (first keys {list(state)[:3]}); lightvid reads its "
                              "own, torchvision/VMZ, PyTorchVideo (X3D, CSN, Slow, R(2+1)D) and MMAction2 (C3D, CSN, "
                              "R(2+1)D) layouts")
    if layout == "pytorchvideo_x3d":
        out = _identity_norms(out, model, re.compile(r"^res\d\.\d+\.proj\.1$"))
    own = model.state_dict()
    for k, v in list(out.items()):  # a 1x1x1 convolution stored where the model has a linear (X3D lin5)
        if k in own and v.ndim == own[k].ndim + 3 and v.shape[2:] == (1, 1, 1):
            out[k] = v.flatten(1)
    remap = getattr(model, "remap_state_dict", None)
    if callable(remap):
        out = remap(out)
    return out, layout


def _identity_norms(state: dict, model: nn.Module, names: re.Pattern) -> dict:
    """Batch norms of ``model`` (matching ``names``) that the file lacks, set to the identity.

    PyTorchVideo's X3D projects a stage's first shortcut with a bare 1x1x1 convolution; lightvid's
    adds a batch norm, which ``running_var = 1 - eps`` (and unit weight, zero bias and mean) turns
    into exactly ``y = x``.
    """
    out = dict(state)
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and names.match(name) and f"{name}.weight" not in out:
            c = m.num_features
            out.update({f"{name}.weight": torch.ones(c), f"{name}.bias": torch.zeros(c),
                        f"{name}.running_mean": torch.zeros(c), f"{name}.running_var": torch.full((c,), 1 - m.eps)})
    return out


def head_keys(model: nn.Module) -> set[str]:
    """State-dict names of the classifier (``model.get_classifier()``)."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    if head is None:
        return set()
    for name, module in model.named_modules():
        if module is head:
            return {f"{name}.{k}" for k in head.state_dict()}
    return set()


def load_pretrained(model: nn.Module, path: str | os.PathLike, log=print) -> dict:
    """Load ``path`` into ``model`` (any layout above); a classifier of another class count is
    left freshly initialised, said in one line. Returns ``{"layout", "loaded", "head_replaced"}``.

    Everything but the classifier must match: a missing or unexpected key or another shape is a
    one-line :class:`~lightvid.checkpoint.CheckpointError` naming the file.
    """
    path = Path(path)
    state, layout = convert_state_dict(read_state_dict(path), model, where=str(path))
    own = model.state_dict()
    head = head_keys(model)
    replaced = any(k in state and state[k].ndim and state[k].shape[0] != own[k].shape[0] for k in head)
    if replaced:
        file_classes = next(state[k].shape[0] for k in sorted(head) if k in state)
        state = {k: v for k, v in state.items() if k not in head}
        log(f"{path}: classifier replaced ({file_classes} classes in the file, {getattr(model, 'num_classes', '?')} "
            "here); every other weight loaded")
    missing = sorted(k for k in set(own) - set(state) if not k.endswith("num_batches_tracked")
                     and not (replaced and k in head))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in sorted(set(own) & set(state)) if state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = [f"{name} {items[:4]}" + (f" (+{len(items) - 4} more)" if len(items) > 4 else "")
                 for name, items in (("missing keys", missing), ("unexpected keys", unexpected),
                                     ("differing shapes", shapes)) if items]
        raise CheckpointError(f"{path}: {layout} weights do not fit {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict(state, strict=False)
    return {"layout": layout, "loaded": len(state), "head_replaced": replaced}
