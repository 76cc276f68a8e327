"""What every lightvid model shares: the classifier interface and channel scaling.

Every model is a :class:`Classifier`:

* ``forward_features(x)`` -> the unpooled feature map, ``(B, C, T, H, W)`` for video,
  ``(B, C, H, W)`` for images;
* ``forward_head(x, pre_logits=False)`` -> pooling, dropout and the classifier;
* ``forward(x) = forward_head(forward_features(x))``;
* ``reset_classifier(num_classes)``; ``num_classes=0`` makes ``forward`` return
  pooled features of size ``num_features``;
* ``default_cfg``: ``input_size`` (C x T x H x W or C x H x W), ``mean``, ``std``,
  ``paper`` and optionally ``test_input_size`` (a small input the test sweep uses).

The parameters of the modules named in ``head_names`` are "head"; all others are
"features" (``lightvid summary`` splits the count that way).
"""
from __future__ import annotations

import torch
import torch.nn as nn

KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def scale_channels(channels: int, width_mult: float = 1.0, divisor: int = 1) -> int:
    """``channels * width_mult`` rounded to a multiple of ``divisor`` (at least ``divisor``)."""
    if width_mult <= 0:
        raise ValueError(f"width_mult must be > 0, got {width_mult}")
    if width_mult == 1.0:
        return channels
    scaled = max(divisor, int(channels * width_mult + divisor / 2) // divisor * divisor)
    return scaled


def make_head(num_features: int, num_classes: int) -> nn.Module:
    """The classifier layer: ``Linear(num_features, num_classes)``, or ``Identity`` when ``num_classes`` is 0
    (the model then returns its pooled features)."""
    return nn.Linear(num_features, num_classes) if num_classes > 0 else nn.Identity()


def make_cfg(input_size, paper: str, mean=KINETICS_MEAN, std=KINETICS_STD, **extra) -> dict:
    return dict(input_size=tuple(input_size), mean=tuple(mean), std=tuple(std), paper=paper, **extra)


class Classifier(nn.Module):
    """Base class: a feature extractor followed by global pooling, dropout and ``fc``.

    Subclasses build their body, set ``num_features`` and call :meth:`init_head`.
    Models whose head is more than one linear layer override ``forward_head`` and
    ``reset_classifier`` and list their head modules in ``head_names``.
    """

    head_names: tuple[str, ...] = ("fc",)
    default_cfg: dict = {}

    def init_head(self, num_features: int, num_classes: int, drop_rate: float = 0.0, video: bool = True):
        self.num_features = num_features
        self.num_classes = num_classes
        self.global_pool = nn.AdaptiveAvgPool3d(1) if video else nn.AdaptiveAvgPool2d(1)
        self.head_drop = nn.Dropout(drop_rate)
        self.fc = make_head(num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x).flatten(1)  # (B, C)
        x = self.head_drop(x)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc = make_head(self.num_features, num_classes)

    def head_parameters(self):
        for name in self.head_names:
            module = getattr(self, name, None)
            if module is not None:
                yield from module.parameters()


class FrontedClassifier(Classifier):
    """A fixed module in front of an inner :class:`Classifier` whose interface it forwards.

    Subclasses name the two attributes (``front_attr``, ``inner_attr``), which are also the
    state_dict prefixes; ``forward_features`` runs the front module, everything else (head,
    ``num_classes``, ``num_features``, ``reset_classifier``) is the inner model's.
    """

    front_attr: str = "front"
    inner_attr: str = "inner"

    @property
    def inner(self) -> Classifier:
        return getattr(self, self.inner_attr)

    @property
    def num_classes(self) -> int:
        return self.inner.num_classes

    @property
    def num_features(self) -> int:
        return self.inner.num_features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner.forward_features(getattr(self, self.front_attr)(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.inner.forward_head(x, pre_logits=pre_logits)

    def get_classifier(self) -> nn.Module:
        return self.inner.get_classifier()

    def reset_classifier(self, num_classes: int) -> None:
        self.inner.reset_classifier(num_classes)

    def head_parameters(self):
        yield from self.inner.head_parameters()


def init_weights(model: nn.Module) -> None:
    """Kaiming-normal convolutions, unit batch norms, small normal linears (torchvision's video ResNet)."""
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm)):
            if m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

