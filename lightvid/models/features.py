"""Multi-scale feature maps from any registered backbone, for region and dense-prediction heads.

:class:`FeatureTaps` wraps a :class:`~lightvid.models.base.Classifier` and returns its feature maps
at the requested spatial strides (e.g. 8, 16, 32): a probe forward pass records, for every
submodule, the stride of its output; for each wanted stride the tap is the shallowest module whose
output has that stride, and among those the last one called (ResNet: ``layer2``/``layer3``; VGG:
the last ReLU before a pooling). Forward hooks capture the taps during ``forward_features``; when
the deepest wanted tap is not the backbone's last stage, the pass stops there (later stages are
not run). Video backbones give ``(B, C, T, H, W)`` taps; :func:`spatial_map` averages time away
for heads that work on one (key) frame.
"""
from __future__ import annotations

import torch
import torch.nn as nn


class _StopForward(Exception):
    pass


def spatial_map(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, T, H, W)`` -> ``(B, C, H, W)`` (mean over time); 4D maps pass through."""
    return x.mean(dim=2) if x.dim() == 5 else x


def linear_to_conv1x1(fc: nn.Linear, video: bool = False) -> nn.Module:
    """A classifier's ``nn.Linear`` as the equivalent 1x1 convolution (Long et al.'s "convolutionalization")."""
    conv = (nn.Conv3d if video else nn.Conv2d)(fc.in_features, fc.out_features, 1, bias=fc.bias is not None)
    with torch.no_grad():
        conv.weight.copy_(fc.weight.view(*conv.weight.shape))
        if fc.bias is not None:
            conv.bias.copy_(fc.bias)
    return conv


class FeatureTaps(nn.Module):
    """``forward(x)`` -> list of feature maps of ``backbone`` at ``strides`` (ascending order kept).

    ``probe_input``: a small input of the backbone's kind (default: its ``test_input_size`` with
    at least 64 pixels per side) used once to find the taps.
    """

    def __init__(self, backbone: nn.Module, strides=(8, 16, 32), probe_input: torch.Tensor | None = None):
        super().__init__()
        self.backbone = backbone
        self.strides = tuple(int(s) for s in strides)
        if probe_input is None:
            shape = list(backbone.default_cfg.get("test_input_size") or backbone.default_cfg["input_size"])
            side = max(64, max(self.strides) * 2)
            shape[-2:] = [side, side]
            if len(shape) == 4:
                shape[1] = max(shape[1], 8)
            probe_input = torch.zeros(1, *shape)
        self.video = probe_input.dim() == 5
        self.tap_names, self.channels = self._find_taps(probe_input)
        self._captured: dict[str, torch.Tensor] = {}
        self._handles = [dict(self.backbone.named_modules())[n].register_forward_hook(self._hook(n))
                         for n in set(self.tap_names)]

    def _find_taps(self, probe: torch.Tensor) -> tuple[list[str], list[int]]:
        side = probe.shape[-1]
        head = set(getattr(self.backbone, "head_names", ()))
        calls: list[tuple[int, int, str, int]] = []  # (call order, depth, name, channels) per stride
        strides_of: dict[str, int] = {}
        handles = []
        order = [0]

        def record(name):
            def hook(module, inputs, output):
                if isinstance(output, torch.Tensor) and output.dim() == probe.dim():
                    stride = round(side / output.shape[-1])
                    strides_of[name] = stride
                    calls.append((order[0], name.count(".") + 1, name, int(output.shape[1])))
                    order[0] += 1
            return hook

        for name, module in self.backbone.named_modules():
            if name and name.split(".")[0] not in head:
                handles.append(module.register_forward_hook(record(name)))
        was_training = self.backbone.training
        self.backbone.eval()
        try:
            with torch.no_grad():
                self.backbone.forward_features(probe)
        finally:
            for h in handles:
                h.remove()
            self.backbone.train(was_training)
        names, channels = [], []
        for stride in self.strides:
            cands = [(d, -o, n, c) for o, d, n, c in calls if strides_of.get(n) == stride and
                     round(side / stride) == round(side / strides_of[n])]
            if not cands:
                have = sorted(set(strides_of.values()))
                raise ValueError(f"{type(self.backbone).__name__} has no feature map at stride {stride}; "
                                 f"it has strides {have}")
            depth, _, name, ch = min(cands)
            names.append(name)
            channels.append(ch)
        return names, channels

    def _hook(self, name: str):
        def hook(module, inputs, output):
            self._captured[name] = output
            if self._stop_after is not None and name == self._stop_after and \
                    all(n in self._captured for n in self.tap_names):
                raise _StopForward
        return hook

    _stop_after: str | None = None

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        self._captured = {}
        self._stop_after = self.tap_names[-1]
        try:
            self.backbone.forward_features(x)
        except _StopForward:
            pass
        finally:
            self._stop_after = None
        out = [self._captured[n] for n in self.tap_names]
        self._captured = {}
        return out
