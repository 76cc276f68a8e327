"""model.init=PATH through a training run (head replaced, frozen backbone), and --lr-find."""
import json

import pytest
import torch

from lightvid.errors import UserError
from lightvid.models.registry import create_model
from lightvid.train.config import load_config
from tests.test_train_run import REPO, run_cli, tiny_overrides


def test_init_from_a_state_dict_with_another_class_count_and_a_frozen_backbone(tiny_synth, tmp_path, capsys):
    from lightvid.train.run import train

    src = create_model("r3d_10", num_classes=7, width_mult=0.0625)
    torch.save(src.state_dict(), tmp_path / "pretrained.pth")
    over = tiny_overrides(tiny_synth, epochs=1) + [f"model.init={tmp_path / 'pretrained.pth'}",
                                                    "model.freeze_backbone_epochs=1", "trainer.final_eval=false"]
    train(load_config(REPO / "configs" / "quickstart.yaml", over), tmp_path / "run")
    assert "classifier replaced (7 classes in the file" in capsys.readouterr().out
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    for k, v in src.state_dict().items():
        if k.startswith("fc."):
            assert state[f"model.{k}"].shape[0] == 4  # the tiny set's 4 classes
        else:
            assert torch.equal(state[f"model.{k}"], v), k  # frozen: weights and BN statistics kept
    assert not torch.equal(state["model.fc.weight"], torch.zeros_like(state["model.fc.weight"]))


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
