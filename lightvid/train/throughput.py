"""Training throughput as a Lightning callback (clips per second, validation excluded)."""
from __future__ import annotations

import time

import lightning as L


class Throughput(L.Callback):
    """Training clips per second (data loading included, validation excluded)."""

    def __init__(self):
        self.clips = 0
        self.elapsed = 0.0
        self._t0 = self._t_last = None

    def on_train_epoch_start(self, trainer, pl_module):
        self._t0 = self._t_last = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.clips += int(batch[0].shape[0])
        self._t_last = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        if self._t0 is not None:
            self.elapsed += self._t_last - self._t0
        self._t0 = None

    @property
    def clips_per_s(self) -> float:
        return self.clips / self.elapsed if self.elapsed > 0 else 0.0
