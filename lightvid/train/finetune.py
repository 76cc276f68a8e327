"""Fine-tuning schedule: train only the classifier for the first epochs, then everything.

With ``model.init=PATH`` the backbone starts from the file and the classifier may be new
(``lightvid.models.pretrained_keys.load_pretrained`` replaces it when the class count differs).
``model.freeze_backbone_epochs=N`` keeps the backbone's parameters fixed for the first ``N``
epochs, so the random classifier does not send large gradients into the pretrained features
("linear probing, then fine-tuning": Kumar et al., "Fine-Tuning can Distort Pretrained Features
and Underperform Out-of-Distribution", ICLR 2022). The frozen backbone's batch norms are kept in
eval mode too, so their running statistics stay those of the file.
"""
from __future__ import annotations

import lightning as L
import torch.nn as nn


def backbone_parameters(model: nn.Module):
    """Every parameter outside the classifier (``model.get_classifier()``)."""
    head = {id(p) for p in model.get_classifier().parameters()}
    return [p for p in model.parameters() if id(p) not in head]


class FreezeBackbone(L.Callback):
    """``requires_grad=False`` on the backbone (and its norms in eval mode) while ``epoch < epochs``."""

    def __init__(self, epochs: int):
        self.epochs = int(epochs)

    def _set(self, pl_module, frozen: bool, norms: bool = True) -> None:
        model = pl_module.model
        for p in backbone_parameters(model):
            p.requires_grad_(not frozen)
            if frozen:
                p.grad = None  # AdamW / SGD skip parameters without a gradient
        if norms:  # Lightning restores each module's own mode after validation: set it back explicitly
            head = set(model.get_classifier().modules())
            for m in model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and m not in head:
                    m.train(not frozen)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._set(pl_module, trainer.current_epoch < self.epochs)

    def on_train_end(self, trainer, pl_module) -> None:
        self._set(pl_module, False, norms=False)
