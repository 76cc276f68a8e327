"""Training checkpoints through Lightning: atomic writes and code-free loads.

A run's ``checkpoints/best.ckpt`` and ``last.ckpt`` are Lightning checkpoints (so
``--resume`` restores optimiser, schedule and loop state) written by
:class:`AtomicCheckpointIO` through :func:`lightvid.checkpoint.save_atomic` (temp file +
rename: a kill never leaves half a file) and read through
:func:`lightvid.checkpoint.load_file` (``torch.load(weights_only=True)``: a file that would
run code is refused). Every value in them is a tensor or plain Python; the ``lightvid`` entry
(:func:`lightvid.checkpoint.checkpoint_meta`) rebuilds the model without Lightning,
:func:`lightvid.run_spec.load_model`.
"""
from __future__ import annotations

import os
from typing import Any

from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from lightvid.checkpoint import load_file, save_atomic


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O with atomic saving and code-free loading."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        save_atomic(checkpoint, path)
        mask = os.umask(0)  # mkstemp made it 0600: give it the permissions of an ordinary file
        os.umask(mask)
        os.chmod(path, 0o666 & ~mask)

    def load_checkpoint(self, path, map_location: Any | None = None, weights_only: bool | None = None) -> dict:
        return load_file(path)


from lightvid.run_spec import load_model, read_checkpoint  # noqa: E402,F401  (moved there: Lightning-free)
