"""Training configs: YAML + dotted overrides, and one-line errors before training starts."""
from pathlib import Path

import pytest
import torch

from lightvid.errors import UserError
from lightvid.train.config import TrainConfig, load_config, save_config
from lightvid.train.module import LRLambda

REPO = Path(__file__).resolve().parents[1]


def test_quickstart_loads_and_overrides():
    cfg = load_config(REPO / "configs" / "quickstart.yaml",
                      ["optim.lr=0.1", "model.kwargs.width_mult=0.25", "trainer.max_epochs=3", "data.root=/tmp/x"])
    assert isinstance(cfg, TrainConfig)
    assert cfg.optim.lr == 0.1 and cfg.trainer.max_epochs == 3
    assert cfg.model.kwargs["width_mult"] == 0.25 and cfg.data.root == "/tmp/x"
    assert cfg.data.format == "synth"


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    if path.name.startswith("distill"):
        pytest.skip("distillation configs carry a `distill:` section read by lightvid distill")
    load_config(path, ["data.root=.cache/none", "data.format=synth"])


def test_roundtrip(tmp_path):
    cfg = load_config(REPO / "configs" / "quickstart.yaml", ["optim.name=sgd", "optim.lr=1e-3"])
    save_config(cfg, tmp_path / "c.yaml")
    again = load_config(tmp_path / "c.yaml")
    assert again.to_dict() == cfg.to_dict()
    assert again.optim.lr == pytest.approx(1e-3)


@pytest.mark.parametrize("override, words", [
    (["optim.lrr=0.1"], ["optim.lrr", "lr"]),
    (["trainer.max_epoch=2"], ["trainer.max_epoch", "max_epochs"]),
    (["data.clip_length=8"], ["clip_len"]),
    (["modle.name=c3d"], ["modle", "model"]),
    (["model.name=r3d_l8"], ["model.name", "r3d_18"]),
    (["model.kwargs.widht_mult=0.5"], ["widht_mult", "width_mult"]),
    (["optim.name=adam"], ["optim.name", "sgd", "adamw"]),
    (["trainer.precision=bf8"], ["trainer.precision", "bf16-mixed"]),
    (["trainer.batch_size=many"], ["trainer.batch_size", "integer"]),
    (["trainer.batch_size=0"], ["trainer.batch_size", ">= 1"]),
    (["data.crops=2"], ["data.crops"]),
    (["optim.lr"], ["optim.lr", "key=value"]),
])
def test_bad_config_is_one_line_naming_the_key(override, words):
    with pytest.raises(UserError) as e:
        load_config(REPO / "configs" / "quickstart.yaml", override)
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(UserError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  name: [c3d\n")
    with pytest.raises(UserError, match="bad.yaml.*line"):
        load_config(bad)


def test_missing_data_path_fails_before_training(tmp_path):
    from lightvid.train.run import train

    cfg = load_config(REPO / "configs" / "quickstart.yaml", [f"data.root={tmp_path / 'absent'}", "data.format=folders"])
    with pytest.raises(UserError, match="data.root.*absent"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_lr_schedule_shapes():
    cos = LRLambda(total_steps=100, steps_per_epoch=10, name="cosine", warmup_epochs=1, warmup_start_factor=0.1)
    assert cos(0) == pytest.approx(0.1)
    assert cos(10) == pytest.approx(1.0)
    assert cos(55) == pytest.approx(0.5, abs=1e-6)
    assert cos(100) == pytest.approx(0.0, abs=1e-9)
    step = LRLambda(total_steps=100, steps_per_epoch=10, name="step", milestones=[3, 6], gamma=0.1)
    assert [step(s) for s in (0, 29, 30, 60)] == pytest.approx([1, 1, 0.1, 0.01])
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cos)
    state = sched.state_dict()  # a callable object, not a closure: plain numbers
    assert isinstance(state["lr_lambdas"][0], dict)


def test_model_kwargs_are_checked_by_signature_without_building(monkeypatch):
    import torch.nn as nn

    from lightvid.models.registry import accepted_kwargs
    from lightvid.train.config import ModelConfig, check_model_kwargs, meta_model

    def no_build(*a, **k):
        raise AssertionError("check_model_kwargs built the model")

    monkeypatch.setattr(nn.Module, "__init__", no_build)
    check_model_kwargs(ModelConfig("c3d_mc4", {"width_mult": 0.5, "drop_rate": 0.1}))
    with pytest.raises(UserError, match="unknown key model.kwargs.fold_from for c3d_mc4"):  # the builder fixes it
        check_model_kwargs(ModelConfig("c3d_mc4", {"fold_from": 3}))
    monkeypatch.undo()
    assert {"se_ratio", "num_frames", "width_mult"} <= accepted_kwargs("x3d_xs")  # through **{..., **kwargs}
    assert "depth" not in accepted_kwargs("r3d_18")  # VideoResNet(18, **kwargs) fills it
    with pytest.raises(UserError, match="model.kwargs for c3d: width_mult must be > 0"):
        meta_model(ModelConfig("c3d", {"width_mult": 0.0}))
