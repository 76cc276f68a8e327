"""trainer.min_steps: a small set trains more epochs than trainer.max_epochs (configs/quickstart.yaml)."""
import pytest

from lightvid.errors import UserError
from lightvid.train.config import TrainerConfig, load_config
from lightvid.train.run import epochs_for_min_steps
from tests.test_train_run import REPO, tiny_overrides


@pytest.mark.parametrize("clips, world, accumulate, want", [
    (800, 1, 1, 10),   # the demo: 50 steps per epoch, 10 epochs already make 500 steps
    (1600, 1, 1, 10),  # larger sets keep max_epochs
    (600, 1, 1, 14),   # 37 steps per epoch (the last partial batch is dropped)
    (160, 1, 1, 50),   # 10 steps per epoch
    (160, 2, 1, 100),  # two ranks share the clips: 5 steps per epoch each
    (160, 1, 2, 100),  # two batches per optimiser step
    (10, 1, 1, 500),   # fewer clips than a batch: one step per epoch
])
def test_epochs_for_min_steps(clips, world, accumulate, want):
    t = TrainerConfig(max_epochs=10, min_steps=500, batch_size=16, accumulate_grad_batches=accumulate)
    assert epochs_for_min_steps(t, clips, world) == want
    assert epochs_for_min_steps(TrainerConfig(max_epochs=10, min_steps=0), clips, world) == 10


def test_min_steps_extends_a_training_run(tiny_synth, tmp_path, capsys):
    from lightvid.train.run import train

    over = tiny_overrides(tiny_synth, epochs=1) + ["trainer.min_steps=8", "trainer.final_eval=false"]
    report = train(load_config(REPO / "configs" / "quickstart.yaml", over), tmp_path / "run")
    assert "training 2 epochs instead of trainer.max_epochs=1" in capsys.readouterr().out  # 16 clips, batch 4
    assert report["epochs"] == 2


def test_bad_min_steps_names_the_key():
    with pytest.raises(UserError, match="trainer.min_steps"):
        load_config(REPO / "configs" / "quickstart.yaml", ["trainer.min_steps=-1"])
