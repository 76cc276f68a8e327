"""End-to-end training on the tiny synthetic set: run folder, eval reproduces, NaN stop,
SIGKILL + --resume reproduces an uninterrupted run, 2-process DDP (gloo) completes."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lightvid.errors import UserError
from lightvid.run_spec import load_model
from lightvid.train.config import load_config
from lightvid.train.module import ClassificationModule

REPO = Path(__file__).resolve().parents[1]


def tiny_overrides(root: Path, epochs: int = 2) -> list[str]:
    return [f"data.root={root}", "data.format=list", "data.synth={}", "data.clip_len=8", "data.stride=1",
            "data.num_workers=0", "data.pad=2", "model.name=r3d_10", "model.kwargs={width_mult: 0.0625}",
            f"trainer.max_epochs={epochs}", "trainer.batch_size=4", "trainer.precision=32",
            "trainer.progress_bar=false", "trainer.log_every_n_steps=1", "trainer.num_threads=1", "trainer.min_steps=0",
            "optim.lr=0.003", "schedule.warmup_epochs=0.5"]


def run_cli(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "lightvid.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _weights(path) -> dict:
    return torch.load(path, weights_only=True)["state_dict"]


def test_train_writes_the_run_folder_and_eval_reproduces(tiny_synth, tmp_path):
    from lightvid.train.run import train

    cfg = load_config(REPO / "configs" / "quickstart.yaml", tiny_overrides(tiny_synth))
    out = tmp_path / "run"
    train(cfg, out)
    for name in ("config.yaml", "metrics.csv", "learning_curves.png", "confusion_matrix.png", "confusion_matrix.csv",
                 "summary.txt", "report.json", "checkpoints/best.ckpt", "checkpoints/last.ckpt"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "report.json").read_text())
    for key in ("model", "val_top1_clip", "val_top1_video", "val_top5_video", "epochs", "wall_s",
                "train_clips_per_s", "best_checkpoint"):
        assert key in saved, key
    assert saved["epochs"] == 2 and saved["model"] == "r3d_10" and saved["train_clips_per_s"] > 0
    assert 0.0 <= saved["val_top1_video"] <= 1.0 and saved["val_top5_video"] == 1.0  # 4 classes: top-5 is everything
    assert "params" in (out / "summary.txt").read_text()
    csv_rows = (out / "confusion_matrix.csv").read_text().splitlines()
    assert len(csv_rows) == 5 and sum(int(v) for r in csv_rows[1:] for v in r.split(",")[1:]) == 8
    # the checkpoint is a plain dict that rebuilds the model
    raw = torch.load(out / "checkpoints" / "best.ckpt", weights_only=True)
    assert raw["lightvid"]["config"]["data"]["root"] == str(tiny_synth)
    model, meta = load_model(out / "checkpoints" / "best.ckpt")
    assert meta["model"] == "r3d_10" and meta["num_classes"] == 4 and len(meta["classes"]) == 4
    # lightvid eval on the best checkpoint reproduces what training reported
    r = run_cli(["eval", "--checkpoint", str(out / "checkpoints" / "best.ckpt"), "--json", "--out",
                 str(tmp_path / "ev")])
    assert r.returncode == 0, r.stderr[-2000:]
    ev = json.loads(r.stdout.strip().splitlines()[-1])
    assert ev["video_top1"] == pytest.approx(saved["val_top1_video"], abs=1e-6)
    assert ev["clip_top1"] == pytest.approx(saved["val_top1_clip"], abs=1e-6)
    assert (tmp_path / "ev" / "confusion_matrix.png").is_file()
    # a second run into the same folder without --resume is refused
    with pytest.raises(UserError, match="already holds a run"):
        train(cfg, out)


class NaNAfterFirstEpoch(ClassificationModule):
    def compute_loss(self, logits, labels, batch):
        loss = super().compute_loss(logits, labels, batch)
        return loss * float("nan") if self.current_epoch >= 1 else loss


def test_nan_loss_stops_naming_the_step_and_keeps_the_checkpoint(tiny_synth, tmp_path):
    from lightvid.train.run import train

    cfg = load_config(REPO / "configs" / "quickstart.yaml", tiny_overrides(tiny_synth, epochs=3))
    out = tmp_path / "nan"
    with pytest.raises(UserError) as e:
        train(cfg, out, module_cls=NaNAfterFirstEpoch)
    msg = str(e.value)
    assert "nan at step 4" in msg and "epoch 1" in msg and "last.ckpt" in msg, msg
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())


def _logged_steps(run_dir: Path) -> int:
    """The highest training step the run's metrics.csv holds so far (-1 before the first)."""
    try:
        rows = (run_dir / "metrics.csv").read_text().splitlines()
    except FileNotFoundError:
        return -1
    header = rows[0].split(",") if rows else []
    if "train/loss_step" not in header:
        return -1
    i, j = header.index("step"), header.index("train/loss_step")
    steps = [int(r.split(",")[i]) for r in rows[1:] if len(r.split(",")) > j and r.split(",")[j]]
    return max(steps, default=-1)


def test_kill_and_resume_matches_an_uninterrupted_run(tiny_synth, tmp_path):
    # batch 2: 8 steps an epoch, so the kill lands inside epoch 1 (steps 8-15)
    cfg_args = ["--config", "configs/quickstart.yaml", "--deterministic", *tiny_overrides(tiny_synth, epochs=3),
                "trainer.batch_size=2"]
    full = tmp_path / "full"
    r = run_cli(["train", *cfg_args, "--out", str(full)])
    assert r.returncode == 0, r.stderr[-3000:]

    killed = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "lightvid.cli", "train", *cfg_args, "--out", str(killed)], cwd=REPO,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = killed / "checkpoints" / "last.ckpt"
    t0 = time.time()
    while _logged_steps(killed) < 10 and proc.poll() is None and time.time() - t0 < 240:
        time.sleep(0.005)  # wait until epoch 1 is under way (its third step is logged)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert last.exists(), "the run ended before its first checkpoint"
    assert not (killed / "report.json").exists(), "the run finished before it could be killed"
    killed_at = torch.load(last, weights_only=True)["epoch"]
    assert killed_at < 2

    r = run_cli(["train", "--out", str(killed), "--resume"])
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = _weights(full / "checkpoints" / "last.ckpt"), _weights(last)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    ra, rb = (json.loads((d / "report.json").read_text()) for d in (full, killed))
    for key in ("val_top1_clip", "val_top1_video", "val_top5_video", "epochs", "val_loss"):
        assert ra[key] == rb[key], key
    assert (killed / "learning_curves.png").is_file() and list(killed.glob("metrics.part*.csv"))


def test_ddp_two_cpu_processes(tiny_synth, tmp_path):
    out = tmp_path / "ddp"
    r = run_cli(["train", "--config", "configs/quickstart.yaml", *tiny_overrides(tiny_synth, epochs=1),
                 "trainer.accelerator=cpu", "--devices", "2", "--strategy", "ddp", "--out", str(out)])
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["world_size"] == 2 and report["epochs"] == 1
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 0 and ckpt["global_step"] == 2  # 16 clips / (2 ranks x batch 4)
    model, meta = load_model(out / "checkpoints" / "best.ckpt")
    assert meta["num_classes"] == 4
    for v in ckpt["state_dict"].values():
        assert torch.isfinite(v.float()).all()
