"""Samplers, transforms, DataConfig, build_dataset, collate_skip_bad and `lightvid data check`."""
import shutil

import pytest
import torch

from lightvid.data.build import DataConfig, build_dataset, collate_skip_bad
from lightvid.data.sampling import ClipSampler, clip_indices
from lightvid.data.transforms import ClipTransform, normalize, resize_short, three_crop
from lightvid.errors import UserError

MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.1)


def test_clip_indices_loop_and_repeat():
    assert clip_indices(0, 5, 2, 6, "loop") == [0, 2, 4, 0, 2]
    assert clip_indices(0, 5, 2, 6, "repeat_last") == [0, 2, 4, 5, 5]
    assert clip_indices(3, 3, 1.5, 100) == [3, 4, 6]


def test_samplers():
    s = ClipSampler(clip_len=4, stride=2)
    g = torch.Generator().manual_seed(0)
    starts = set()
    for _ in range(50):
        idx = s.train_clip(20, 25.0, g)
        assert len(idx) == 4 and all(b - a == 2 for a, b in zip(idx, idx[1:])) and idx[-1] < 20
        starts.add(idx[0])
    assert starts == set(range(14))  # every start 0..20-7 is drawn
    clips = s.eval_clips(20, 25.0, k=3)
    assert [c[0] for c in clips] == [0, 6, 13] and s.eval_clips(20, 25.0)[0][0] == 6
    assert s.eval_clips(3, 25.0, k=2) == [[0, 2, 1, 0]] * 2  # short video loops
    assert ClipSampler(4, 2, fps=15).step(30.0) == 4.0  # 2 frames at 15 fps = 4 at 30 fps
    assert ClipSampler(4, 2, fps=15).eval_clips(100, 30.0)[0] == [44, 48, 52, 56]
    tsn = ClipSampler(clip_len=4, sampling="tsn")
    assert tsn.eval_clips(40, 25.0)[0] == [5, 15, 25, 35]
    for _ in range(20):
        idx = tsn.train_clip(40, 25.0, g)
        assert [i // 10 for i in idx] == [0, 1, 2, 3]


def test_transforms():
    x = torch.arange(2 * 40 * 60 * 3, dtype=torch.int64).remainder(256).to(torch.uint8).view(2, 40, 60, 3)
    assert resize_short(x, 20).shape == (2, 20, 30, 3)
    assert resize_short(x.transpose(1, 2), 20).shape == (2, 30, 20, 3)
    crops = three_crop(x, 40)
    assert [c.shape for c in crops] == [(2, 40, 40, 3)] * 3
    assert torch.equal(crops[0], x[:, :, :40]) and torch.equal(crops[2], x[:, :, 20:])
    y = normalize(torch.full((1, 2, 2, 3), 255, dtype=torch.uint8), MEAN, STD)
    assert y.shape == (3, 1, 2, 2) and torch.allclose(y[:, 0, 0, 0], torch.tensor([2.0, 3.0, 7.0]))
    t = ClipTransform(size=32, short_side=36, train=False, mean=MEAN, std=STD, crops=3,
                      input_transform=lambda c: c[:, 1:] - c[:, :-1])
    out = t(x)
    assert len(out) == 3 and out[0].shape == (3, 1, 32, 32)  # the hook ran after normalisation
    flips = {ClipTransform(32, None, True, MEAN, STD)(x, torch.Generator().manual_seed(s))[0][0, 0, 0, 0].item()
             for s in range(10)}
    assert len(flips) > 1


@pytest.mark.parametrize("key,value,msg", [("format", "mp3", "data.format"), ("clip_len", 0, "data.clip_len"),
                                           ("crops", 2, "data.crops"), ("short_side", 64, "data.short_side"),
                                           ("loop", "bounce", "data.loop"), ("fps", -1, "data.fps"),
                                           ("sampling", "dense", "data.sampling")])
def test_config_validation(key, value, msg):
    with pytest.raises(UserError, match=msg):
        DataConfig(**{key: value}).validate()


def test_config_from_dict():
    cfg = DataConfig.from_dict({"root": "x", "clip_len": 8, "size": 32, "short_side": 40})
    assert cfg.clip_len == 8
    with pytest.raises(UserError, match="data.clip_lenn: unknown data key; did you mean clip_len"):
        DataConfig.from_dict({"clip_lenn": 8})


def _cfg(root, **kw):
    return DataConfig(root=str(root), size=28, short_side=32, clip_len=4, stride=2, num_workers=0, **kw)


def test_build_train_and_eval(tiny_synth):
    train = build_dataset(_cfg(tiny_synth), "train", True, MEAN, STD)
    assert train.classes == ["right", "left", "down", "up"] and train.num_videos == len(train) == 16
    clip, label, vid = train[5]
    assert clip.shape == (3, 4, 28, 28) and clip.dtype == torch.float32 and (label, vid) == (1, 5)
    assert train.transform.flip is False  # flipping would turn "right" into "left"
    ev = build_dataset(_cfg(tiny_synth, eval_clips=2, crops=3), "val", False, MEAN, STD)
    assert ev.num_videos == 8 and len(ev) == 48
    items = [ev[i] for i in range(6)]
    assert {it[2] for it in items} == {0} and {it[1] for it in items} == {0}
    assert not torch.equal(items[0][0], items[1][0])  # different crops
    assert torch.equal(items[0][0], ev[0][0])  # deterministic in evaluation
    assert ev[6][2] == 1


def test_bad_file_is_skipped_and_counted(tiny_synth, tmp_path):
    root = tmp_path / "set"
    shutil.copytree(tiny_synth, root)
    victim = next((root / "train" / "left").glob("*.mp4"))
    victim.write_bytes(b"\x00" * 100)
    ds = build_dataset(_cfg(root), "train", True, MEAN, STD)
    bad_i = [i for i, (p, _) in enumerate(ds.samples) if p == victim][0]
    with pytest.warns(UserWarning, match=f"{victim.name}: not a readable video"):
        assert ds[bad_i] is None
    loader = torch.utils.data.DataLoader(ds, batch_size=16, collate_fn=collate_skip_bad)
    with pytest.warns(UserWarning):
        clips, labels, vids, bad = next(iter(loader))
    assert clips.shape == (15, 3, 4, 28, 28) and bad == 1 and bad_i not in vids.tolist()
    assert collate_skip_bad([None, None])[3] == 2


def test_workers_loader(tiny_synth):
    ds = build_dataset(_cfg(tiny_synth, eval_clips=2), "val", False, MEAN, STD)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, collate_fn=collate_skip_bad)
    vids = torch.cat([b[2] for b in loader])
    assert vids.tolist() == [v for v in range(8) for _ in range(2)]


def test_image_dataset():
    ds = build_dataset(DataConfig(root="digits", size=8, short_side=None, pad=1), "train", True, MEAN, STD)
    x, y, i = ds[3]
    assert x.shape == (3, 8, 8) and 0 <= y < 10 and i == 3 and ds.transform.flip is True
    ev = build_dataset(DataConfig(root="digits", size=8, short_side=None), "val", False, MEAN, STD)
    assert ev.num_videos == len(ev) == 359


def test_data_check_cli(tiny_synth, tmp_path, capsys):
    from lightvid.cli import main

    assert main(["data", "check", str(tiny_synth), "--workers", "1"]) == 0
    root = tmp_path / "set"
    shutil.copytree(tiny_synth, root)
    (root / "train" / "up" / "up_00003.mp4").write_text("text")
    (root / "val" / "down" / "down_00002.mp4").unlink()
    with open(root / "val.txt", "a") as fh:
        fh.write("val/down/extra.mp4\n")
    capsys.readouterr()
    assert main(["data", "check", str(root), "--workers", "1"]) == 1
    out = capsys.readouterr().out
    assert "up_00003.mp4: not a readable video" in out
    assert "val.txt:9: expected 'relative/path.mp4 label'" in out
    (root / "val.txt").write_text((tiny_synth / "val.txt").read_text())
    assert main(["data", "check", str(root), "--workers", "1"]) == 1
    assert "down_00002.mp4: no such file" in capsys.readouterr().out


def test_kinetics5(shared_data):
    cfg = DataConfig(root=str(shared_data / "kinetics5"), clip_len=8, stride=4, size=112, short_side=128,
                     eval_clips=2, crops=3, num_workers=0)
    ev = build_dataset(cfg, "val", False, MEAN, STD)
    assert ev.classes == ["archery", "bowling", "flying_kite", "high_jump", "marching"] and ev.num_videos == 44
    clip, label, vid = ev[6 * 43 + 5]
    assert clip.shape == (3, 8, 112, 112) and vid == 43


def test_memory_cache_matches_disk(tiny_synth):
    disk = build_dataset(_cfg(tiny_synth, eval_clips=2, cache=False), "val", False, MEAN, STD)
    mem = build_dataset(_cfg(tiny_synth, eval_clips=2), "val", False, MEAN, STD)  # synth: cached by default
    assert disk._cache is None and mem._cache is not None and len(mem._cache) == 8
    for i in range(len(disk)):
        assert torch.equal(disk[i][0], mem[i][0])
    assert build_dataset(_cfg(tiny_synth, cache_mb=0), "train", True, MEAN, STD)._cache is None  # too big: streams
