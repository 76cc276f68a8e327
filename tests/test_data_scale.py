"""Data at scale: raw-frame sets, short-GOP re-encoding, decoder choice, tar shards (generated and real clips)."""
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from lightvid.data import rawframes
from lightvid.data.build import DataConfig, build_dataset, collate_skip_bad
from lightvid.data.convert import extract_frames, reencode, reencode_size, write_shards
from lightvid.data.decoders import get_decoder
from lightvid.data.jobs import TEMP_MARK, parse_size
from lightvid.data.shards import ShardLoader, assign_shards
from lightvid.data.video import VideoBytes, VideoDecodeError, _build_index, _open, probe, read_clip
from lightvid.errors import UserError

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def tree_digest(root: Path) -> dict:
    return {str(p.relative_to(root)): (hashlib.sha1(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def keyframe_gaps(path) -> list[int]:
    """Frames between consecutive keyframes (presentation order)."""
    c = _open(Path(path))
    try:
        idx = _build_index(Path(path), c)
    finally:
        c.close()
    pos = np.searchsorted(idx.pts, idx.key_pts)
    return np.diff(np.append(pos, len(idx.pts))).tolist()


def synth_cfg(root, **kw):
    base = dict(root=str(root), size=32, short_side=None, clip_len=8, hflip=False, cache=False, num_workers=0)
    return DataConfig(**{**base, **kw})


# -- raw frames ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def synth_frames(tiny_synth, tmp_path_factory):
    dst = tmp_path_factory.mktemp("frames") / "synth-frames"
    before = tree_digest(tiny_synth)
    r = extract_frames(tiny_synth, dst, ext="png", workers=2, progress=False)
    assert r["written"] == 24 and not r["failed"] and sorted(r["lists"]) == ["train.txt", "val.txt"]
    assert tree_digest(tiny_synth) == before  # the source is only read
    return dst


def test_rawframes_list_and_layout(tiny_synth, synth_frames):
    line = (synth_frames / "train.txt").read_text().splitlines()[0].split()
    assert len(line) == 3 and line[0].startswith("train/") and int(line[1]) == 8  # frame_dir total_frames label
    assert (synth_frames / line[0] / "img_00001.png").is_file() and (synth_frames / line[0] / "img_00008.png").is_file()
    assert not (synth_frames / line[0] / "img_00009.png").exists()
    assert (synth_frames / "classes.txt").read_text() == (tiny_synth / "classes.txt").read_text()
    stamp = json.loads((synth_frames / rawframes.STAMP).read_text())
    assert stamp["fps"][line[0]] == pytest.approx(probe(tiny_synth / (line[0] + ".mp4")).fps)
    assert synth_cfg(synth_frames).resolved_format() == "rawframes"


@pytest.mark.parametrize("train", [True, False])
def test_rawframes_same_clips_as_video(tiny_synth, synth_frames, train):
    """PNG frames are lossless: the raw-frame set gives exactly the video set's items, same sampling."""
    kw = dict(eval_clips=2, crops=3) if not train else {}
    vids = build_dataset(synth_cfg(tiny_synth, stride=2, clip_len=3, **kw), "train" if train else "val", train,
                         MEAN, STD)
    frames = build_dataset(synth_cfg(synth_frames, stride=2, clip_len=3, **kw), "train" if train else "val",
                           train, MEAN, STD)
    assert len(vids) == len(frames) and frames.classes == vids.classes
    for i in range(len(vids)):
        torch.manual_seed(i)
        a = vids[i]
        torch.manual_seed(i)
        b = frames[i]
        assert torch.equal(a[0], b[0]) and a[1:] == b[1:]


def test_rawframes_class_folders_without_list(synth_frames, tmp_path):
    root = tmp_path / "folders"
    shutil.copytree(synth_frames / "train", root / "train")
    ds = build_dataset(synth_cfg(root), "train", True, MEAN, STD)
    assert synth_cfg(root).resolved_format() == "rawframes" and ds.num_videos == 16
    assert ds.classes == sorted(["right", "left", "down", "up"])
    assert ds[0][0].shape == (3, 8, 32, 32)
    with pytest.raises(UserError, match="data.fps"):  # no rawframes.json: the frame rate is unknown
        build_dataset(synth_cfg(root, fps=10.0), "train", True, MEAN, STD)


def test_rawframes_bad_input(synth_frames, tmp_path):
    root = tmp_path / "bad"
    shutil.copytree(synth_frames, root)
    (root / rawframes.STAMP).unlink()
    assert synth_cfg(root).resolved_format() == "rawframes"  # told by the 3-column list file naming folders
    lines = (root / "train.txt").read_text().splitlines()
    (root / "train.txt").write_text("\n".join(lines[:2] + ["train/right/x 8"]) + "\n")
    with pytest.raises(UserError, match=r"train.txt:3: expected 'frame_dir total_frames label'"):
        build_dataset(synth_cfg(root), "train", True, MEAN, STD)
    (root / "train.txt").write_text("\n".join(lines[:2] + ["train/right/nothere 8 0"]) + "\n")
    with pytest.raises(UserError, match=r"train.txt:3: listed frame folder .*nothere does not exist"):
        build_dataset(synth_cfg(root), "train", True, MEAN, STD)
    with pytest.warns(UserWarning, match="skipping 1 listed frame folders"):
        assert build_dataset(synth_cfg(root, on_missing="skip"), "train", True, MEAN, STD).num_videos == 2
    # a frame file gone: that item is skipped with a warning naming the file
    (root / "train.txt").write_text("\n".join(lines[:2]) + "\n")
    first = root / lines[0].split()[0]
    (first / "img_00003.png").unlink()
    ds = build_dataset(synth_cfg(root, sampling="tsn"), "train", False, MEAN, STD)  # TSN eval: frames 0..7
    with pytest.warns(UserWarning, match="img_00003.png: missing frame file"):
        assert ds[0] is None


def test_extract_frames_resumes_and_never_touches_src(tiny_synth, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(tiny_synth / "val", src / "val")
    first_up = sorted((src / "val" / "up").glob("*.mp4"))[0]
    (src / "val" / "up" / "broken.mp4").write_bytes(first_up.read_bytes()[:300])
    dst = tmp_path / "dst"
    with pytest.raises(UserError, match="inside the source"):
        extract_frames(src, src / "frames", progress=False)
    with pytest.raises(UserError, match="is the source"):
        extract_frames(src, src, progress=False)
    stale = dst / "val" / "up" / f".{first_up.stem}{TEMP_MARK}999"  # left by an interrupted run
    stale.mkdir(parents=True)
    before = tree_digest(src)
    r = extract_frames(src, dst, workers=1, progress=False)
    assert r["written"] == 8 and r["skipped"] == 0 and len(r["failed"]) == 1 and "broken.mp4" in r["failed"][0]
    assert not (dst / "val" / "up" / "broken").exists() and not stale.exists()
    assert not list(dst.rglob("*.lightvid-tmp-*"))
    r2 = extract_frames(src, dst, workers=2, progress=False)
    assert r2["written"] == 0 and r2["skipped"] == 8 and len(r2["failed"]) == 1
    assert tree_digest(src) == before
    with pytest.raises(UserError, match="extracted with"):
        extract_frames(src, dst, ext="png", progress=False)


# -- re-encoding ---------------------------------------------------------------------------------
def test_reencode_tiny_synth(tiny_synth, tmp_path):
    dst = tmp_path / "gop"
    before = tree_digest(tiny_synth)
    r = reencode(tiny_synth, dst, gop=3, short_side=16, crf=18, preset="ultrafast", workers=2, progress=False)
    assert r["written"] == 24 and not r["failed"] and r["copied"] >= 3  # classes.txt, train.txt, val.txt
    assert tree_digest(tiny_synth) == before
    assert not (dst / "synth.json").exists()  # the re-encoded set is not the generator's byte-exact output
    for f in sorted(tiny_synth.rglob("*.mp4"))[:4]:
        out = dst / f.relative_to(tiny_synth)
        assert probe(out).frames == probe(f).frames and (probe(out).width, probe(out).height) == (16, 16)
        assert max(keyframe_gaps(out)) <= 3
    ds = build_dataset(synth_cfg(dst, size=16), "train", True, MEAN, STD)
    assert ds.num_videos == 16 and ds[0][0].shape == (3, 8, 16, 16)
    r2 = reencode(tiny_synth, dst, gop=3, short_side=16, crf=18, preset="ultrafast", workers=1, progress=False)
    assert r2["written"] == 0 and r2["skipped"] == 24
    with pytest.raises(UserError, match="re-encoded with"):
        reencode(tiny_synth, dst, gop=8, progress=False)
    with pytest.raises(UserError, match="inside the source"):
        reencode(tiny_synth, tiny_synth / "x", progress=False)


def test_reencode_size_is_even_and_never_enlarges():
    assert reencode_size(171, 128, 64) == (86, 64)
    assert reencode_size(33, 47, None) == (32, 46)
    assert reencode_size(140, 96, 256) == (140, 96)


# -- decoders ------------------------------------------------------------------------------------
def test_decord_exact_on_generated(tiny_synth, tmp_path):
    from test_data_video import make_video

    try:
        dec = get_decoder("decord")  # (imports OpenCV before decord: see lightvid.data.decoders)
    except UserError as e:
        pytest.skip(str(e))
    # B-frames, a keyframe every 5 frames, variable rate (64 wide: decord 0.6 fails on 48-pixel-wide video,
    # copying 64-pixel rows; that is an error naming the file, the item is skipped)
    vfr = make_video(tmp_path / "vfr.mp4", n=30, w=64, h=48, durations=[20, 60, 33, 100, 40])
    for f in [vfr] + sorted(tiny_synth.rglob("*.mp4"))[:4]:
        n = probe(f).frames
        idx = [n - 1, 0, 3, 3, n // 2]
        assert torch.equal(dec.read_clip(f, idx), read_clip(f, idx))
        assert torch.equal(dec.read_clip(VideoBytes("x", Path(f).read_bytes()), idx), read_clip(f, idx))
        assert dec.probe(f)[:1] == probe(f)[:1]
    with pytest.raises(VideoDecodeError, match="outside"):
        dec.read_clip(vfr, [30])
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    for bad in (tmp_path / "bad.mp4", VideoBytes("bad-member.mp4", b"not a video")):
        with pytest.raises(VideoDecodeError, match=r"bad.*: not a readable video \(decord: "):
            dec.probe(bad)


def test_decoder_choice_and_torchcodec_message(tiny_synth):
    with pytest.raises(UserError, match="data.decoder: must be one of"):
        synth_cfg(tiny_synth, decoder="ffmpeg").validate()
    try:
        import torchcodec.decoders  # noqa: F401
    except Exception:  # noqa: BLE001 - not installed, or its libraries do not load
        with pytest.raises(UserError, match=r"data.decoder: torchcodec cannot load here .*FFmpeg") as e:
            build_dataset(synth_cfg(tiny_synth, decoder="torchcodec"), "train", True, MEAN, STD)
        assert "\n" not in str(e.value)
    else:
        ds = build_dataset(synth_cfg(tiny_synth, decoder="torchcodec"), "val", False, MEAN, STD)
        ref = build_dataset(synth_cfg(tiny_synth), "val", False, MEAN, STD)
        assert torch.equal(ds[0][0], ref[0][0])


@pytest.mark.parametrize("decoder", ["decord", "torchcodec"])
def test_decoders_exact_on_real_clips(shared_data, decoder):
    """Every frame read through decord / torchcodec equals PyAV's, on the real clips (where the package loads)."""
    try:
        dec = get_decoder(decoder)
    except UserError as e:
        pytest.skip(str(e))
    files = sorted((shared_data / "kinetics5-raw").rglob("*.mp4"))
    files += sorted((shared_data / "kinetics5").rglob("*.mp4"))[::8]
    for f in files:
        n = probe(f).frames
        idx = sorted({0, 1, n // 3, n // 2, n // 2 + 1, n - 2, n - 1})
        assert torch.equal(dec.read_clip(f, idx), read_clip(f, idx)), f
    ds = build_dataset(DataConfig(root=str(shared_data / "kinetics5"), decoder=decoder, clip_len=8, stride=2,
                                  size=112), "val", False, MEAN, STD)
    ref = build_dataset(DataConfig(root=str(shared_data / "kinetics5"), clip_len=8, stride=2, size=112), "val", False,
                        MEAN, STD)
    assert ds[5][1:] == ref[5][1:] and (ds[5][0] - ref[5][0]).abs().mean() < 0.05  # the resize differs slightly


# -- shards --------------------------------------------------------------------------------------
def test_parse_size():
    assert parse_size("1GB") == 10**9 and parse_size("512MiB") == 2**29 and parse_size("1500") == 1500
    with pytest.raises(UserError, match="--shard-size"):
        parse_size("1 parsec")


@pytest.mark.parametrize("equalize", ["none", "pad", "drop"])
def test_assign_shards(equalize):
    counts = [5, 5, 5, 4, 5, 5, 2, 5, 3]
    for epoch in range(3):
        plan = assign_shards(counts, 4, seed=1, epoch=epoch, shuffle=True, equalize=equalize)
        owned = sorted(s for shards, _ in plan for s in shards)
        assert owned == list(range(len(counts)))  # every shard to exactly one stream
        loads = [sum(counts[s] for s in shards) for shards, _ in plan]
        assert max(loads) - min(loads) <= 5  # balanced to within one shard
        targets = [t for _, t in plan]
        if equalize == "none":
            assert targets == loads
        else:
            assert len(set(targets)) == 1 and targets[0] == (max(loads) if equalize == "pad" else min(loads))
    assert assign_shards(counts, 4, 1, 0, True, equalize) != assign_shards(counts, 4, 1, 1, True, equalize)
    if equalize == "none":  # more streams than shards: some streams idle, nothing read twice
        plan = assign_shards(counts, 12, 0, 0, True, "none")
        assert sum(t for _, t in plan) == sum(counts) and sum(not shards for shards, _ in plan) == 3
    else:
        with pytest.raises(UserError, match="9 shards for 12 loader streams"):
            assign_shards(counts, 12, 0, 0, True, equalize)


@pytest.fixture(scope="module")
def synth_shards(tiny_synth, tmp_path_factory):
    dst = tmp_path_factory.mktemp("shards") / "synth-shards"
    size = sum(f.stat().st_size for f in (tiny_synth / "train").rglob("*.mp4")) // 8
    report = write_shards(tiny_synth, dst, shard_size=size, progress=False)
    assert report["train"]["samples"] == 16 and report["train"]["shards"] >= 6 and report["val"]["samples"] == 8
    return dst


def test_shards_layout_and_resume(tiny_synth, synth_shards):
    import tarfile

    names = []
    for tar in sorted((synth_shards / "train").glob("shard-*.tar")):
        with tarfile.open(tar) as t:
            names += t.getnames()
            for m in t.getmembers():
                if m.name.endswith(".json"):
                    meta = json.loads(t.extractfile(m).read())
                    video = t.extractfile(m.name.replace(".json", ".mp4")).read()
                    assert video == (tiny_synth / meta["path"]).read_bytes()  # the mp4 itself
                    assert meta["class"] == meta["path"].split("/")[1] and m.name == f"{meta['index']:08d}.json"
    assert len(names) == 32 and all(n.endswith((".mp4", ".json")) for n in names)  # WebDataset: key.ext pairs
    size = json.loads((synth_shards / "shards.json").read_text())["shard_size"]
    again = write_shards(tiny_synth, synth_shards, shard_size=size, progress=False)
    assert again["train"]["written"] == 0 and again["train"]["skipped"] == again["train"]["shards"]
    with pytest.raises(UserError, match="another source, shard size or seed"):
        write_shards(tiny_synth, synth_shards, shard_size=size, seed=5, progress=False)
    with pytest.raises(UserError, match="inside the source"):
        write_shards(tiny_synth, tiny_synth / "shards", progress=False)


def test_shards_eval_reads_every_sample_once(tiny_synth, synth_shards):
    ds = build_dataset(synth_cfg(synth_shards, eval_clips=2, crops=3), "val", False, MEAN, STD)
    ref = build_dataset(synth_cfg(tiny_synth, eval_clips=2, crops=3), "val", False, MEAN, STD)
    assert ds.num_videos == 8 and len(ds) == 48 and ds.classes == ref.classes
    items = list(DataLoader(ds, batch_size=4, num_workers=2, collate_fn=collate_skip_bad))
    vids = torch.cat([b[2] for b in items])
    assert sorted(vids.tolist()) == sorted(list(range(8)) * 6)
    # each sample's clips equal the video set's clips of the same file
    order = json.loads((synth_shards / "val" / "shards.json").read_text())
    assert order["complete"]
    path_of = {}
    import tarfile
    for tar in sorted((synth_shards / "val").glob("*.tar")):
        with tarfile.open(tar) as t:
            for m in t.getmembers():
                if m.name.endswith(".json"):
                    meta = json.loads(t.extractfile(m).read())
                    path_of[meta["index"]] = tiny_synth / meta["path"]
    clips = torch.cat([b[0] for b in items])
    labels = torch.cat([b[1] for b in items])
    for k in range(0, 48, 5):
        v = int(vids[k])
        j = [p for p, _ in ref.samples].index(path_of[v]) * 6
        same = [torch.equal(clips[k], ref[j + c][0]) for c in range(6)]
        assert any(same) and int(labels[k]) == ref[j][1]


@pytest.mark.parametrize("equalize", ["pad", "none"])
def test_shard_loader_length_is_exact(synth_shards, equalize):
    """Each worker batches its own stream; the loader's len() counts those partial batches (Lightning relies on it)."""
    ds = build_dataset(synth_cfg(synth_shards, num_workers=2, shard_equalize=equalize, clip_len=2), "train", True,
                       MEAN, STD)
    loader = ShardLoader(ds, batch_size=3, num_workers=2, collate_fn=collate_skip_bad)
    batches = list(loader)
    assert len(loader) == len(batches) and sum(len(b[1]) for b in batches) == len(ds)
    if equalize == "none":
        assert sorted(i for b in batches for i in b[2].tolist()) == list(range(16))


def test_read_clip_from_bytes_equals_file(tiny_synth):
    f = sorted(tiny_synth.rglob("*.mp4"))[0]
    src = VideoBytes("shard-000000.tar:00000001.mp4", f.read_bytes())
    assert torch.equal(read_clip(src, [7, 0, 2]), read_clip(f, [7, 0, 2])) and probe(src) == probe(f)
    with pytest.raises(VideoDecodeError, match=r"^shard-000000.tar:00000001.mp4: empty file"):
        read_clip(VideoBytes("shard-000000.tar:00000001.mp4", b""), [0])
    with pytest.raises(VideoDecodeError, match="not a readable video|could not be decoded|no video"):
        read_clip(VideoBytes("x.mp4", f.read_bytes()[:200]), [0])


def _ddp_reader(rank: int, world: int, root: str, out: str, init_file: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        result = {}
        for eq in ("none", "pad", "drop"):
            cfg = DataConfig(root=root, format="shards", size=32, short_side=None, clip_len=4, num_workers=2,
                             shard_equalize=eq, shuffle_buffer=3)
            ds = build_dataset(cfg, "train", True, MEAN, STD)
            for epoch in (0, 1) if eq == "none" else (1,):
                ds.set_epoch(epoch)
                # the workers of a process started by spawn are spawned too (and do not share its process
                # group); epoch 0 so, epoch 1 forked (faster)
                ctx = "spawn" if epoch == 0 and eq == "none" else "fork"
                loader = ShardLoader(ds, batch_size=2, num_workers=2, collate_fn=collate_skip_bad,
                                     multiprocessing_context=ctx)
                batches = list(loader)
                result[f"{eq}{epoch}"] = {"seen": [i for b in batches for i in b[2].tolist()], "batches": len(batches),
                                          "bad": sum(b[3] for b in batches), "len": len(ds), "loader_len": len(loader)}
        Path(out, f"{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_shards_ddp_two_ranks_two_workers(synth_shards, tmp_path):
    """2 gloo processes x 2 loader workers: each sample exactly once per epoch (``none``); equal counts (pad/drop)."""
    import torch.multiprocessing as tmp

    tmp.spawn(_ddp_reader, args=(2, str(synth_shards), str(tmp_path), str(tmp_path / "init")), nprocs=2, join=True)
    r = [json.loads((tmp_path / f"{k}.json").read_text()) for k in range(2)]
    for epoch in (0, 1):
        both = r[0][f"none{epoch}"]["seen"] + r[1][f"none{epoch}"]["seen"]
        assert sorted(both) == list(range(16))  # exactly once, across ranks and workers
        assert not set(r[0][f"none{epoch}"]["seen"]) & set(r[1][f"none{epoch}"]["seen"])
        assert r[0][f"none{epoch}"]["bad"] == r[1][f"none{epoch}"]["bad"] == 0
        assert all(r[k][f"none{epoch}"]["loader_len"] == r[k][f"none{epoch}"]["batches"] for k in range(2))
    for epoch in (1,):
        pad = [r[k][f"pad{epoch}"] for k in range(2)]
        assert pad[0]["batches"] == pad[1]["batches"] == pad[0]["loader_len"]
        assert len(pad[0]["seen"]) == len(pad[1]["seen"]) == pad[0]["len"]
        assert set(pad[0]["seen"]) | set(pad[1]["seen"]) == set(range(16))  # at least once
        drop = [r[k][f"drop{epoch}"] for k in range(2)]
        assert drop[0]["batches"] == drop[1]["batches"] and len(drop[0]["seen"]) == len(drop[1]["seen"])
        assert len(set(drop[0]["seen"] + drop[1]["seen"])) == len(drop[0]["seen"] + drop[1]["seen"])  # no repeats
        assert all(r[k][f"{m}{epoch}"]["bad"] == 0 for k in range(2) for m in ("pad", "drop"))
    assert r[0]["none0"]["seen"] != r[0]["none1"]["seen"]  # a new shard order and shuffle each epoch


# -- real clips ----------------------------------------------------------------------------------
def test_extract_frames_real_clips_exact(shared_data, tmp_path):
    """PNG frames of the three raw Kinetics clips (portrait, 10 fps, 23 fps) equal PyAV's frames."""
    src = shared_data / "kinetics5-raw"
    before = tree_digest(src)
    r = extract_frames(src, tmp_path / "f", ext="png", short_side=64, workers=2, progress=False)
    assert r["written"] == 3 and not r["failed"]
    assert tree_digest(src) == before
    reader = rawframes.RawFrames()
    for f in sorted(src.rglob("*.mp4")):
        folder = tmp_path / "f" / f.relative_to(src).with_suffix("")
        n = probe(f).frames
        assert reader.probe(folder).frames == n
        idx = [0, n // 2, n - 1, 5]
        assert torch.equal(reader.read_clip(folder, idx), read_clip(f, idx, short_side=64)), f


def test_reencode_real_clips(shared_data, tmp_path):
    src = tmp_path / "src"
    for f in sorted((shared_data / "kinetics5" / "val" / "archery").glob("*.mp4"))[:2]:
        (src / "archery").mkdir(parents=True, exist_ok=True)
        shutil.copy(f, src / "archery" / f.name)
    r = reencode(src, tmp_path / "gop", gop=16, short_side=64, preset="veryfast", workers=2, progress=False)
    assert r["written"] == 2 and not r["failed"]
    for f in sorted(src.rglob("*.mp4")):
        out = tmp_path / "gop" / f.relative_to(src)
        assert probe(out).frames == probe(f).frames and min(probe(out).width, probe(out).height) == 64
        assert max(keyframe_gaps(out)) <= 16 and max(keyframe_gaps(f)) > 16
        n = probe(f).frames
        a = read_clip(out, [0, n // 2, n - 1]).float()  # (T, H, W, 3); the width rounded to even
        b = read_clip(f, [0, n // 2, n - 1], short_side=64).float()
        h, w = min(a.shape[1], b.shape[1]), min(a.shape[2], b.shape[2])
        psnr = 10 * torch.log10(255**2 / ((a[:, :h, :w] - b[:, :h, :w]) ** 2).mean())
        assert psnr > 22  # the same frames, re-encoded


def test_shards_real_clips(shared_data, tmp_path):
    src = shared_data / "kinetics5"
    report = write_shards(src, tmp_path / "s", shard_size=parse_size("2MB"), progress=False)
    assert report["train"]["samples"] == 49 and report["val"]["samples"] == 44 and report["val"]["shards"] >= 2
    cfg = DataConfig(root=str(tmp_path / "s"), clip_len=8, stride=2, size=112, num_workers=0)
    ds = build_dataset(cfg, "val", False, MEAN, STD)
    ref = build_dataset(DataConfig(root=str(src), clip_len=8, stride=2, size=112), "val", False, MEAN, STD)
    items = list(DataLoader(ds, batch_size=8, num_workers=2, collate_fn=collate_skip_bad))
    assert sorted(torch.cat([b[2] for b in items]).tolist()) == list(range(44))
    assert sorted(torch.cat([b[1] for b in items]).tolist()) == sorted(ref.labels())
    assert sum(b[3] for b in items) == 0


def test_data_check_rawframes_and_shards(synth_frames, synth_shards, tmp_path):
    from lightvid.data.check import check_dataset

    assert check_dataset(synth_shards, progress=False) == (24, [])
    assert check_dataset(synth_frames, progress=False) == (24, [])
    root = tmp_path / "frames"
    shutil.copytree(synth_frames, root)
    folder = root / (root / "val.txt").read_text().split()[0]
    (folder / "img_00004.png").unlink()
    (folder / "img_00008.png").write_bytes(b"not a png")
    checked, bad = check_dataset(root, progress=False)
    assert checked == 24 and len(bad) == 1 and "img_00004.png: missing frame file (1 of 8 missing)" in bad[0]
