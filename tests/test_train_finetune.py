"""model.init=PATH through a training run (head replaced, frozen backbone), and --lr-find."""
import json

import pytest
import torch

from lightvid.errors import UserError
from lightvid.models.registry import create_model
from lightvid.train.config import load_config
from tests.test_train_run import REPO, run_cli, tiny_overrides


def test_init_from_a_state_dict_with_another_class_count_and_a_frozen_backbone(tiny_synth, tmp_path, capsys):
    import lightning as L
    from safetensors.torch import save_file

    from lightvid.train.run import train

    class AfterFirstEpoch(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            if trainer.current_epoch == 0:
                self.state = {k: v.detach().clone() for k, v in pl_module.model.state_dict().items()}

    src = create_model("r3d_10", num_classes=7, width_mult=0.0625)
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, tmp_path / "pretrained.safetensors")
    over = tiny_overrides(tiny_synth, epochs=2) + [f"model.init={tmp_path / 'pretrained.safetensors'}",
                                                    "model.freeze_backbone_epochs=1", "trainer.final_eval=false"]
    first = AfterFirstEpoch()
    train(load_config(REPO / "configs" / "quickstart.yaml", over), tmp_path / "run", callbacks=[first])
    assert "classifier replaced (7 classes in the file" in capsys.readouterr().out
    for k, v in src.state_dict().items():
        if k.startswith("fc."):
            assert first.state[k].shape[0] == 4  # the tiny set's 4 classes
        else:
            assert torch.equal(first.state[k], v), k  # frozen epoch: weights and BN statistics kept
    assert not torch.equal(first.state["fc.weight"], torch.zeros_like(first.state["fc.weight"]))
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    changed = [k for k, v in src.state_dict().items()
               if not k.startswith("fc.") and v.is_floating_point() and not torch.equal(state[f"model.{k}"], v)]
    assert "stem.0.weight" in changed and "stem.1.running_mean" in changed  # epoch 2 trains the backbone


def test_bad_init_is_one_line_naming_the_key(tmp_path):
    with pytest.raises(UserError) as e:
        load_config(REPO / "configs" / "quickstart.yaml", [f"model.init={tmp_path / 'none.pth'}"])
    assert "model.init" in str(e.value) and "\n" not in str(e.value)


def test_lr_find_writes_a_suggestion(tiny_synth, tmp_path):
    r = run_cli(["train", "--config", "configs/quickstart.yaml", "--lr-find", "--lr-find-steps", "20",
                 "--out", str(tmp_path / "lr"),
                 *tiny_overrides(tiny_synth, epochs=1)], timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((tmp_path / "lr" / "lr_find.json").read_text())
    assert (tmp_path / "lr" / "lr_find.png").is_file() and len(res["lrs"]) == len(res["losses"]) > 5
    assert res["lrs"] == sorted(res["lrs"])  # the range test sweeps upwards
    assert "suggested optim.lr=" in r.stdout or "no clear suggestion" in r.stdout
    assert not (tmp_path / "lr" / "checkpoints").exists()  # nothing trained
