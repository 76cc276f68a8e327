"""The synthetic motion set: determinism, caching, time-reverse symmetry, CLI."""
import numpy as np
import pytest
import torch

from lightvid.data.synth import CLASSES, ensure_synth, generate, read_stamp, render_clip, trajectory
from lightvid.data.video import read_all_frames
from lightvid.errors import UserError

SMALL = dict(classes=3, train=3, val=3, frames=6, size=32)
REVERSE = {"right": "left", "down": "up", "rotate_cw": "rotate_ccw", "zoom_in": "zoom_out"}


def _decoded(root):
    return {p.relative_to(root).as_posix(): read_all_frames(p) for p in sorted(root.rglob("*.mp4"))}


def test_layout_and_lists(tiny_synth):
    classes = (tiny_synth / "classes.txt").read_text().split()
    assert classes == ["right", "left", "down", "up"]
    for split, n in (("train", 16), ("val", 8)):
        lines = (tiny_synth / f"{split}.txt").read_text().splitlines()
        assert len(lines) == n
        for line in lines:
            rel, label = line.split()
            assert (tiny_synth / rel).is_file() and rel.split("/")[1] == classes[int(label)]
    clip = read_all_frames(next((tiny_synth / "train" / "right").glob("*.mp4")))
    assert clip.shape == (8, 32, 32, 3) and clip.dtype == torch.uint8
    assert read_stamp(tiny_synth)["frames"] == 8


def test_deterministic_across_workers_and_seeds(tmp_path):
    a = _decoded(generate(tmp_path / "a", workers=1, progress=False, **SMALL))
    b = _decoded(generate(tmp_path / "b", workers=2, progress=False, **SMALL))
    c = _decoded(generate(tmp_path / "c", workers=1, progress=False, seed=1, **SMALL))
    assert a.keys() == b.keys() == c.keys() and len(a) == 6
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not any(torch.equal(a[k], c[k]) for k in a)


def test_ensure_synth_caches_and_regenerates(tmp_path, capsys):
    root = ensure_synth(tmp_path / "s", workers=1, progress=False, **SMALL)
    clip = next(root.rglob("*.mp4"))
    mtime = clip.stat().st_mtime_ns
    assert ensure_synth(root, workers=1, progress=False, **SMALL) == root
    assert clip.stat().st_mtime_ns == mtime  # cached, not rewritten
    ensure_synth(root, workers=1, progress=False, **{**SMALL, "seed": 3})
    assert read_stamp(root)["seed"] == 3
    assert "regenerating the synthetic set (seed 0 -> 3)" in capsys.readouterr().err
    (root / "synth.json").unlink()  # as after an interrupted generation: regenerated, not refused
    ensure_synth(root, workers=1, progress=False, **SMALL)
    assert read_stamp(root)["seed"] == 0
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not a lightvid synthetic set"):
        ensure_synth(other, workers=1, progress=False, **SMALL)
    assert (other / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("bad", [dict(classes=11), dict(size=33), dict(frames=1), dict(train=1), dict(colour=3)])
def test_bad_parameters(tmp_path, bad):
    with pytest.raises(UserError, match="synth"):
        generate(tmp_path / "x", workers=1, progress=False, **{**SMALL, **bad})


@pytest.mark.parametrize("cls", sorted(REVERSE))
def test_class_and_time_reverse_share_frame_distribution(cls):
    """A trajectory reversed in time is exactly the reverse class's trajectory from the same draw."""
    for seed in range(5):
        fwd = trajectory(cls, np.random.default_rng(seed), 16, 64, 10)
        rev = trajectory(REVERSE[cls], np.random.default_rng(seed), 16, 64, 10)
        for f, r in zip(fwd, rev):
            np.testing.assert_allclose(f[::-1], r, atol=1e-9)


def test_motion_is_visible_and_appearance_varies():
    rng = np.random.default_rng(0)
    still = render_clip("still", rng, 16, 64).astype(np.float32)
    moving = render_clip("right", rng, 16, 64).astype(np.float32)
    d_still = np.abs(np.diff(still, axis=0)).mean()
    d_moving = np.abs(np.diff(moving, axis=0)).mean()
    assert d_moving > 1.5 * d_still  # still clips differ only by noise
    firsts = [render_clip(c, np.random.default_rng(i), 4, 32)[0] for i, c in enumerate(CLASSES)]
    assert len({f.tobytes() for f in firsts}) == len(CLASSES)


def test_cli_synth(tmp_path, capsys):
    from lightvid.cli import main

    out = tmp_path / "cli"
    args = ["data", "synth", str(out), "--classes", "2", "--train", "2", "--val", "2", "--frames", "4",
            "--size", "32", "--workers", "1"]
    assert main(args) == 0
    assert "written" in capsys.readouterr().out
    assert main(args) == 0
    assert "already there" in capsys.readouterr().out
    assert len(list(out.rglob("*.mp4"))) == 4
    assert main(["data", "synth", str(out), "--size", "31"]) == 2
    assert "--size" in capsys.readouterr().err


def test_training_config_without_synth_params_keeps_an_existing_set(tiny_synth):
    """`data.format: synth` with no `synth:` section uses a finished set as it is; the defaults
    (800 + 200 clips, 10 classes) must not regenerate a set made with other parameters."""
    from lightvid.data.build import DataConfig, video_samples

    stamp = read_stamp(tiny_synth)
    clip = next(tiny_synth.rglob("*.mp4"))
    mtime = clip.stat().st_mtime_ns
    samples, classes = video_samples(DataConfig(root=str(tiny_synth), format="synth"), "train")
    assert read_stamp(tiny_synth) == stamp and clip.stat().st_mtime_ns == mtime
    assert len(samples) == 16 and len(classes) == 4
