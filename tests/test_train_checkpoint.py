"""Checkpoint safety and the load_model contract, without training (a module saved by hand)."""
import os
import pickle

import pytest
import torch

from lightvid.checkpoint import CheckpointError, read_checkpoint, save_atomic
from lightvid.run_spec import load_model
from lightvid.train.checkpoint import AtomicCheckpointIO
from lightvid.train.module import ClassificationModule


def _module(num_classes=3):
    return ClassificationModule("c3d", num_classes=num_classes, classes=["a", "b", "c"],
                                model_kwargs={"width_mult": 0.0625, "fc_width": 64},
                                config={"data": {"root": "x", "format": "synth"}})


def _ckpt(module) -> dict:
    ckpt = {"state_dict": module.state_dict(), "epoch": 2, "global_step": 10,
            "hyper_parameters": dict(module.hparams)}
    module.on_save_checkpoint(ckpt)
    return ckpt


def test_load_model_rebuilds_the_model(tmp_path):
    m = _module()
    path = tmp_path / "best.ckpt"
    AtomicCheckpointIO().save_checkpoint(_ckpt(m), path)
    raw = torch.load(path, weights_only=True)  # plain dict, no code
    assert raw["lightvid"]["model"] == "c3d" and raw["lightvid"]["classes"] == ["a", "b", "c"]
    model, meta = load_model(path)
    assert not model.training
    assert meta["num_classes"] == 3 and meta["config"]["data"]["root"] == "x" and meta["epoch"] == 2
    x = torch.randn(2, 3, 16, 32, 32)
    m.eval()
    torch.testing.assert_close(model(x), m.model(x))
    assert not list(tmp_path.glob(".*.tmp"))  # atomic save leaves no temp file


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_malicious_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.ckpt"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": {}, "lightvid": {"model": "c3d"}, "x": _Evil()}, f)
    with pytest.raises(CheckpointError) as e:
        load_model(path)
    msg = str(e.value)
    assert "evil.ckpt" in msg and "refused" in msg and "\n" not in msg


def test_truncated_checkpoint_names_the_file(tmp_path):
    m = _module()
    path = tmp_path / "last.ckpt"
    save_atomic(_ckpt(m), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="last.ckpt.*(truncated|corrupt)"):
        load_model(path)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_model(tmp_path / "absent.ckpt")


def test_non_lightvid_checkpoint_is_explained(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"fc.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(CheckpointError, match="not a lightvid training checkpoint"):
        read_checkpoint(path)


def test_compute_loss_hook_is_overridable():
    class Smoothed(ClassificationModule):
        def compute_loss(self, logits, labels, batch):
            return super().compute_loss(logits, labels, batch) * 0 + 7.0

    m = Smoothed("c3d", num_classes=3, model_kwargs={"width_mult": 0.0625, "fc_width": 64})
    x, y = torch.randn(2, 3, 16, 32, 32), torch.tensor([0, 1])
    assert float(m.compute_loss(m(x).detach(), y, (x, y, torch.tensor([0, 1]), 0))) == 7.0
