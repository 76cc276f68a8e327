"""Nothing of the user's is lost: every place lightvid writes or deletes, salted with user files.

Each test puts a user file and a user folder where lightvid writes, runs the command, and
checks by hash that they are still there, unchanged (see docs/files.md).
"""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lightvid.data.synth import MANIFEST, ensure_synth, generate, read_stamp
from lightvid.errors import UserError

REPO = Path(__file__).resolve().parents[1]
TINY = {"classes": 2, "train": 4, "val": 2, "frames": 4, "size": 32}


def hashes(root: Path) -> dict[str, str]:
    """``relative path -> sha256`` of every file under ``root`` (folders as ``path/`` -> ``dir``)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        out[rel + "/" if p.is_dir() else rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def salt(folder: Path, where: str = "") -> dict[str, str]:
    """A user file and a user folder (with a file) under ``folder/where``; returns their hashes."""
    base = folder / where
    (base / "my_folder").mkdir(parents=True, exist_ok=True)
    (base / "my_notes.txt").write_text("the user's notes\n")
    (base / "my_folder" / "data.bin").write_bytes(os.urandom(64))
    h = hashes(folder)
    return {k: v for k, v in h.items() if "my_" in k}


def assert_kept(folder: Path, salted: dict[str, str]) -> None:
    now = hashes(folder)
    lost = {k for k, v in salted.items() if now.get(k) != v}
    assert not lost, f"user files lost or changed: {sorted(lost)}"


def class_folder_set(root: Path) -> Path:
    """A user's own class-folder video set (train/<class>/*.mp4, val/<class>/*.mp4)."""
    for split in ("train", "val"):
        for cls in ("right", "cats"):  # "right" is also a synthetic class name
            d = root / split / cls
            d.mkdir(parents=True)
            (d / f"{cls}_00000.mp4").write_bytes(os.urandom(256))
            (d / "holiday.mp4").write_bytes(os.urandom(256))
    return root


# ----------------------------------------------------------------------------- synthetic set


def test_synth_refuses_a_class_folder_set(tmp_path):
    root = class_folder_set(tmp_path / "my_videos")
    before = hashes(root)
    with pytest.raises(UserError, match="not a lightvid synthetic set.*data.format=folders") as e:
        ensure_synth(root, workers=1, progress=False, **TINY)
    assert str(root) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(UserError, match="not a lightvid synthetic set"):
        generate(root, workers=1, progress=False, **TINY)
    assert hashes(root) == before


def test_data_synth_cli_into_a_non_empty_folder(tmp_path, capsys):
    from lightvid.cli import main

    root = tmp_path / "out"
    salted = salt(root, "train")  # a user folder named like the set's own
    salted.update(salt(root, "val"))
    before = hashes(root)
    argv = ["data", "synth", str(root), *(f"--{k}={v}" for k, v in TINY.items()), "--workers", "1"]
    assert main(argv) == 2
    assert "not a lightvid synthetic set" in capsys.readouterr().err
    assert hashes(root) == before
    assert_kept(root, salted)


def test_synth_cache_regenerates_only_its_own_files(tmp_path, capsys):
    root = ensure_synth(tmp_path / "s", workers=1, progress=False, **TINY)
    manifest = json.loads((root / MANIFEST).read_text())
    assert set(manifest["files"]) == {p.relative_to(root).as_posix() for p in root.rglob("*")
                                      if p.is_file() and p.name != MANIFEST}
    salted = salt(root, "train/right")  # the user added files inside the set
    salted.update(salt(root))
    ensure_synth(root, workers=1, progress=False, **{**TINY, "classes": 3, "train": 3, "val": 3})  # other parameters
    assert "regenerating" in capsys.readouterr().err
    assert_kept(root, salted)
    assert read_stamp(root)["classes"] == 3
    assert not (root / "train" / "left" / "left_00003.mp4").exists()  # the old set's clip is gone
    assert not (root / "train" / "left").exists() or any((root / "train" / "left").iterdir())
    listed = set(json.loads((root / MANIFEST).read_text())["files"])
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert on_disk - listed - {MANIFEST} == {k for k in salted if not k.endswith("/")}


def test_synth_refuses_to_overwrite_a_user_file_at_one_of_its_paths(tmp_path):
    root = ensure_synth(tmp_path / "s", workers=1, progress=False, **TINY)
    mine = root / "val" / "down" / "down_00002.mp4"  # a 3-class set would write it
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"mine")
    before = hashes(root)
    with pytest.raises(UserError, match="down_00002.mp4.*lightvid did not write"):
        ensure_synth(root, workers=1, progress=False, **{**TINY, "classes": 3, "val": 3})
    assert hashes(root) == before


@pytest.mark.slow
def test_interrupted_generation_resumes_and_touches_only_its_files(tmp_path):
    root = tmp_path / "s"
    params = {"classes": 2, "train": 150, "val": 2, "frames": 4, "size": 32}
    code = ("import sys; from lightvid.data.synth import ensure_synth; "
            f"ensure_synth(sys.argv[1], workers=1, progress=False, **{params!r})")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", code, str(root)], env=env)
    try:
        deadline = time.time() + 120
        while len(list(root.rglob("*.mp4"))) < 5 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the generator finished before it could be interrupted"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert read_stamp(root) is None and (root / MANIFEST).is_file()  # listed before the first clip
    done = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.mp4"))
    assert 5 <= len(done) < 150
    mtimes = {rel: (root / rel).stat().st_mtime_ns for rel in done}
    salted = salt(root)  # the user put things into the interrupted set's folder
    salted.update(salt(root, "train/left"))
    with pytest.raises(UserError, match="not a lightvid synthetic set"):  # interrupted sets stay ours...
        ensure_synth(tmp_path, workers=1, progress=False, **params)  # ...but not the folder above them
    ensure_synth(root, workers=1, progress=False, **params)
    assert read_stamp(root)["train"] == 150
    assert_kept(root, salted)
    assert all((root / rel).stat().st_mtime_ns == t for rel, t in mtimes.items())  # finished clips kept
    assert not list(root.rglob("*.part"))
    listed = set(json.loads((root / MANIFEST).read_text())["files"])
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert on_disk - listed - {MANIFEST} == {k for k in salted if not k.endswith("/")}
    # the resumed set is the set an uninterrupted run writes (bytes of the first clips)
    fresh = generate(tmp_path / "fresh", workers=1, progress=False, **{**params, "train": 6})
    for rel in (f"train/{c}/{c}_{i:05d}.mp4" for i, c in enumerate(["right", "left"] * 3)):
        assert (root / rel).read_bytes() == (fresh / rel).read_bytes(), rel


def test_quickstart_pointed_at_a_class_folder_set_deletes_nothing(tmp_path):
    from lightvid.data.build import DataConfig, build_dataset
    from lightvid.train.config import load_config
    from lightvid.train.run import train

    root = class_folder_set(tmp_path / "my_videos")
    salted = salt(root)
    before = hashes(root)
    cfg = load_config(REPO / "configs" / "quickstart.yaml", [f"data.root={root}"])
    out = tmp_path / "run"
    with pytest.raises(UserError, match="data.root=.*not a lightvid synthetic set.*data.format=folders"):
        train(cfg, out)
    assert not out.exists()  # refused before the run folder was made
    with pytest.raises(UserError, match="not a lightvid synthetic set"):  # the data path on its own
        build_dataset(cfg.data, "train", True, (0.5,) * 3, (0.5,) * 3)
    assert hashes(root) == before
    assert_kept(root, salted)
    # what the message says works: data.format=folders reads the user's set as it is
    ds = build_dataset(DataConfig(root=str(root), format="folders", size=32, short_side=None, clip_len=4,
                                  cache=False), "train", True, (0.5,) * 3, (0.5,) * 3)
    assert sorted(ds.classes) == ["cats", "right"]
    assert hashes(root) == before


# ----------------------------------------------------------------------------- checkpoint errors


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("true",))


def _checkpoint_files(d: Path) -> dict[str, Path]:
    """One file of each kind ``load_file`` tells apart."""
    import pickle
    import zipfile

    import numpy as np
    import torch

    d.mkdir(exist_ok=True)
    f = {k: d / f"{k}.ckpt" for k in ("text", "empty", "noise", "truncated", "truncated_legacy", "npy", "npz",
                                     "zip", "plain_pickle", "numpy_pickle", "crafted", "crafted_zip", "crafted_p0")}
    f["text"].write_text("epoch 3, accuracy 0.91\n")
    f["empty"].write_bytes(b"")
    f["noise"].write_bytes(bytes(range(7, 256)) * 3)
    torch.save({"state_dict": {"w": torch.zeros(64)}}, d / "good.ckpt")
    data = (d / "good.ckpt").read_bytes()
    f["truncated"].write_bytes(data[: len(data) * 2 // 3])
    torch.save({"w": torch.zeros(64)}, d / "legacy.ckpt", _use_new_zipfile_serialization=False)
    data = (d / "legacy.ckpt").read_bytes()
    f["truncated_legacy"].write_bytes(data[: len(data) // 2])
    with open(f["npy"], "wb") as fh:
        np.save(fh, np.zeros(3))
    with open(f["npz"], "wb") as fh:
        np.savez(fh, w=np.zeros(3))
    with zipfile.ZipFile(f["zip"], "w") as z:
        z.writestr("images/cat.jpg", b"\xff\xd8")
    f["plain_pickle"].write_bytes(pickle.dumps({"epoch": 3, "lr": [0.1, 0.01]}))
    f["numpy_pickle"].write_bytes(pickle.dumps({"w": np.zeros(3)}))
    f["crafted"].write_bytes(pickle.dumps({"state_dict": {}, "x": _RunsCode()}))
    torch.save({"x": _RunsCode()}, f["crafted_zip"])
    f["crafted_p0"].write_bytes(b"cposix\nsystem\n(S'true'\ntR.")
    return f


@pytest.mark.parametrize("kind, message", [
    ("text", r"a text file \(it begins 'epoch 3, accuracy 0.91'\), not a checkpoint"),
    ("empty", r"empty file \(0 bytes\), not a checkpoint"),
    ("noise", r"not a checkpoint \(unrecognised contents"),
    ("truncated", r"truncated PyTorch checkpoint"),
    ("truncated_legacy", r"truncated PyTorch checkpoint"),
    ("npy", r"numpy \.npy array.*not a PyTorch checkpoint"),
    ("npz", r"numpy \.npz archive.*not a PyTorch checkpoint"),
    ("zip", r"zip archive of other files \(images/cat.jpg\), not a PyTorch checkpoint"),
    ("plain_pickle", r"plain Python pickle.*not a torch.save checkpoint"),
    ("numpy_pickle", r"pickle of numpy objects.*not a torch.save checkpoint"),
    ("crafted", r"refused, unpickling it would call posix.system \(code execution\)"),
    ("crafted_zip", r"refused, unpickling it would call posix.system \(code execution\)"),
    ("crafted_p0", r"refused, unpickling it would call posix.system \(code execution\)"),
])
def test_checkpoint_errors_say_what_is_wrong(tmp_path, kind, message):
    from lightvid.checkpoint import CheckpointError, load_file

    path = _checkpoint_files(tmp_path)[kind]
    with pytest.raises(CheckpointError, match=message) as e:
        load_file(path)
    text = str(e.value)
    assert text.startswith(str(path)) and "\n" not in text
    if kind not in ("crafted", "crafted_zip", "crafted_p0"):
        assert "refused" not in text and "run code" not in text and "code execution" not in text


def test_eval_of_a_text_file_says_not_a_checkpoint(tmp_path, capsys):
    from lightvid.cli import main

    bad = tmp_path / "bad.ckpt"
    bad.write_text("not a checkpoint\n")
    assert main(["eval", "--checkpoint", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert "bad.ckpt: a text file" in err and "refused" not in err and len(err.splitlines()) == 1


def test_checkpoints_still_load(tmp_path):
    import torch

    from lightvid.checkpoint import load_file, save_atomic

    torch.save({"w": torch.ones(2)}, tmp_path / "a.pt")
    torch.save({"w": torch.ones(2)}, tmp_path / "b.pt", _use_new_zipfile_serialization=False)
    save_atomic({"w": torch.ones(2)}, tmp_path / "c.safetensors")
    (tmp_path / "c.safetensors").rename(tmp_path / "c.bin")  # safetensors content under another suffix
    for name in ("a.pt", "b.pt", "c.bin"):
        assert torch.equal(load_file(tmp_path / name)["w"], torch.ones(2)), name


def test_a_failing_checkpoint_write_keeps_the_previous_file(tmp_path, monkeypatch):
    import errno

    import torch

    from lightvid.checkpoint import CheckpointError, save_atomic

    path = tmp_path / "last.ckpt"
    save_atomic({"epoch": 1, "w": torch.ones(4)}, path)
    before = hashes(tmp_path)
    real_save = torch.save

    def disk_full(obj, f, *a, **k):  # writes part of the file, then the disk is full
        real_save(obj, f, *a, **k)
        with open(f, "r+b") as fh:
            fh.truncate(100)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(CheckpointError, match=r"last.ckpt: writing failed \(.*No space left.*\); the previous "
                                              r"last.ckpt is unchanged"):
        save_atomic({"epoch": 2, "w": torch.zeros(4)}, path)
    assert hashes(tmp_path) == before  # no temporary file left either
    with pytest.raises(CheckpointError, match="no file was written"):
        save_atomic({"epoch": 2}, tmp_path / "other.ckpt")
    assert hashes(tmp_path) == before


# ----------------------------------------------------------------------------- run folders


def _tiny_cfg(root: Path, epochs: int = 1, final_eval: bool = False):
    from test_train_run import tiny_overrides

    from lightvid.train.config import load_config

    return load_config(REPO / "configs" / "quickstart.yaml",
                       [*tiny_overrides(root, epochs), f"trainer.final_eval={str(final_eval).lower()}"])


@pytest.mark.slow
def test_train_out_into_an_existing_folder(tiny_synth, tmp_path):
    from lightvid.fileio import FolderLock
    from lightvid.train.run import DATA_READY, train

    out = tmp_path / "mine"
    salted = salt(out)
    train(_tiny_cfg(tiny_synth), out)
    assert_kept(out, salted)
    assert (out / "checkpoints" / "last.ckpt").is_file()
    assert not (out / FolderLock.NAME).exists() and not (out / DATA_READY).exists()  # its own markers are gone
    # a folder holding a file the run would write is refused before anything is written
    other = tmp_path / "results"
    salted = salt(other)
    (other / "report.json").write_text('{"mine": true}\n')
    before = hashes(other)
    with pytest.raises(UserError, match=r"report.json: exists, and a new run would overwrite it") as e:
        train(_tiny_cfg(tiny_synth), other)
    assert "\n" not in str(e.value)
    assert hashes(other) == before


def test_a_second_run_on_the_same_folder_is_refused(tiny_synth, tmp_path):
    import socket

    from lightvid.fileio import FolderLock
    from lightvid.train.run import train

    out = tmp_path / "run"
    salted = salt(out)
    lock = out / FolderLock.NAME
    lock.write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname(), "started": "earlier",
                                "token": "another process"}))  # a live process holds it
    before = hashes(out)
    with pytest.raises(UserError, match=r"another lightvid training run \(pid \d+ on .*\) is writing this folder"):
        train(_tiny_cfg(tiny_synth), out)
    assert hashes(out) == before  # the holder's lock too
    assert_kept(out, salted)


def test_folder_lock_is_exclusive_and_stale_locks_are_taken_over(tmp_path):
    import socket

    from lightvid.fileio import FolderLock

    with FolderLock(tmp_path) as first:
        with pytest.raises(UserError, match="another lightvid run"):
            FolderLock(tmp_path).acquire()
        assert first.path.is_file()
    assert not (tmp_path / FolderLock.NAME).exists()  # released at exit
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid is no longer running
    (tmp_path / FolderLock.NAME).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    with FolderLock(tmp_path) as lock:  # a killed run's lock is stale
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    (tmp_path / FolderLock.NAME).write_text(json.dumps({"pid": 1, "host": "another-machine"}))
    with pytest.raises(UserError, match="if it died on another machine, delete"):
        FolderLock(tmp_path).acquire()


@pytest.mark.slow
def test_disk_full_keeps_the_last_checkpoint_and_resume_is_safe(tiny_synth, tmp_path, monkeypatch):
    import errno

    import torch

    from lightvid.checkpoint import CheckpointError, load_file
    from lightvid.fileio import FolderLock
    from lightvid.train.run import train

    out = tmp_path / "run"
    real_save = torch.save
    calls = []

    def disk_full_in_epoch_2(obj, f, *a, **k):  # epoch 1 writes best + last; epoch 2's first write fails part-way
        calls.append(f)
        real_save(obj, f, *a, **k)
        if len(calls) > 2:
            with open(f, "r+b") as fh:
                fh.truncate(1000)
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full_in_epoch_2)
    with pytest.raises(CheckpointError, match=r"(best|last).ckpt: writing failed \(.*No space left on device\); "
                                              r"the previous \1.ckpt is unchanged"):
        train(_tiny_cfg(tiny_synth, epochs=2), out)
    monkeypatch.setattr(torch, "save", real_save)
    for name in ("best.ckpt", "last.ckpt"):
        assert load_file(out / "checkpoints" / name)["epoch"] == 0  # epoch 1's, whole
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]  # no temp file
    assert not (out / FolderLock.NAME).exists()
    salted = salt(out)
    salted.update(salt(out, "checkpoints"))
    report = train(_tiny_cfg(tiny_synth, epochs=2), out, resume=True)
    assert report["epochs"] == 2
    assert_kept(out, salted)
    assert (out / "metrics.part0.csv").is_file()  # the first session's metrics, kept


# ----------------------------------------------------------------------------- export, convert, caches


def _checkpoint(path: Path) -> Path:
    from lightvid.train.checkpoint import AtomicCheckpointIO
    from lightvid.train.module import ClassificationModule

    m = ClassificationModule("c3d", num_classes=2, classes=["a", "b"],
                             model_kwargs={"width_mult": 0.0625, "fc_width": 32},
                             config={"data": {"root": "x", "format": "synth"}})
    ckpt = {"state_dict": m.state_dict(), "epoch": 0, "global_step": 0, "hyper_parameters": dict(m.hparams)}
    m.on_save_checkpoint(ckpt)
    AtomicCheckpointIO().save_checkpoint(ckpt, path)
    return path


def test_export_and_convert_write_only_their_output(tmp_path, capsys):
    from lightvid.cli import main

    folder = tmp_path / "models"
    salted = salt(folder)
    ckpt = _checkpoint(folder / "best.ckpt")
    salted["best.ckpt"] = hashes(folder)["best.ckpt"]
    assert main(["export", str(ckpt), str(folder / "model.safetensors")]) == 0
    assert main(["convert", str(ckpt), "--to", "c3d_mc4", "--no-data", "--calib", "1",
                 "--out", str(folder / "mc4.ckpt")]) == 0
    capsys.readouterr()
    assert_kept(folder, salted)
    assert set(hashes(folder)) - set(salted) == {"model.safetensors", "mc4.ckpt"}  # no temporary files left
    # an output that is the input (or a folder) is refused before anything is written
    before = hashes(folder)
    assert main(["export", str(ckpt), str(ckpt), "--format", "safetensors"]) == 2
    assert "is also the input" in capsys.readouterr().err
    assert main(["convert", str(ckpt), "--to", "c3d_mc4", "--no-data", "--out", str(ckpt)]) == 2
    assert "is also the input" in capsys.readouterr().err
    assert main(["export", str(ckpt), str(folder / "my_folder")]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert hashes(folder) == before


def test_bow_vocabulary_cache_writes_only_its_entry(tmp_path):
    from test_baselines import make_image_set

    from lightvid.baselines.bow import BowConfig, load_or_fit_vocabulary, vocab_key
    from lightvid.baselines.folders import find_data

    data = find_data(make_image_set(tmp_path / "images", train=2, test=1, classes=2))
    cfg = BowConfig(vocab=4, vocab_samples=64)
    cache = tmp_path / "cache"
    salted = salt(cache)
    rng = np.random.default_rng(0)
    descs = [(rng.random((40, 128), dtype=np.float32), None) for _ in range(4)]
    centers, cached = load_or_fit_vocabulary(cfg, data, descs, cache)
    assert not cached and centers.shape == (4, 128)
    assert set(hashes(cache)) - set(salted) == {f"{vocab_key(cfg, data)}.npz"}
    entry = cache / f"{vocab_key(cfg, data)}.npz"
    again, cached = load_or_fit_vocabulary(cfg, data, descs, cache)
    assert cached and np.array_equal(again, centers)
    entry.write_bytes(b"damaged")  # a damaged entry of its own is rebuilt; nothing else changes
    load_or_fit_vocabulary(cfg, data, descs, cache)
    assert_kept(cache, salted)
    assert set(hashes(cache)) - set(salted) == {entry.name}


def test_baseline_out_refuses_result_files_it_did_not_write(tmp_path, capsys):
    from test_baselines import make_image_set

    from lightvid.cli import main

    images = make_image_set(tmp_path / "images", train=2, test=1, classes=2)
    out = tmp_path / "out"
    salted = salt(out)
    args = ["baseline", "tiny", "--data", str(images), "--out", str(out), "--json"]
    assert main(args) == 0
    assert main(args) == 0  # its own earlier result is replaced
    assert_kept(out, salted)
    mine = tmp_path / "mine"
    salted = salt(mine)
    (mine / "confusion.png").write_bytes(b"my picture")
    before = hashes(mine)
    assert main(["baseline", "tiny", "--data", str(images), "--out", str(mine)]) == 2
    assert "confusion.png: exists and is not an earlier lightvid baseline result" in capsys.readouterr().err
    assert hashes(mine) == before


def test_eval_out_replaces_only_its_own_results(tiny_synth, tmp_path, capsys):
    from lightvid.cli import main
    from lightvid.train.checkpoint import AtomicCheckpointIO
    from lightvid.train.module import ClassificationModule

    data = {"root": str(tiny_synth), "format": "list", "clip_len": 8, "size": 32, "short_side": None,
            "num_workers": 0}
    m = ClassificationModule("r3d_10", num_classes=4, classes=["right", "left", "down", "up"],
                             model_kwargs={"width_mult": 0.0625}, config={"data": data})
    ckpt = {"state_dict": m.state_dict(), "epoch": 0, "global_step": 0, "hyper_parameters": dict(m.hparams)}
    m.on_save_checkpoint(ckpt)
    AtomicCheckpointIO().save_checkpoint(ckpt, tmp_path / "best.ckpt")
    out = tmp_path / "eval"
    salted = salt(out)
    args = ["eval", "--checkpoint", str(tmp_path / "best.ckpt"), "--out", str(out), "--json"]
    assert main(args) == 0 and main(args) == 0  # a rerun replaces its own results
    assert_kept(out, salted)
    mine = tmp_path / "mine"
    salt(mine)
    (mine / "confusion_matrix.csv").write_text("my,table\n")
    before = hashes(mine)
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(tmp_path / "best.ckpt"), "--out", str(mine)]) == 2
    assert "confusion_matrix.csv: exists and is not an earlier lightvid evaluation result" in capsys.readouterr().err
    assert hashes(mine) == before


def test_synth_never_deletes_through_a_linked_folder(tmp_path):
    three = {**TINY, "classes": 3, "train": 3, "val": 3}
    root = ensure_synth(tmp_path / "s", workers=1, progress=False, **three)
    for cls in ("right", "down"):  # the user moved class folders away and linked them back
        (root / "val" / cls).rename(tmp_path / cls)
        (root / "val" / cls).symlink_to(tmp_path / cls, target_is_directory=True)
    before = {cls: hashes(tmp_path / cls) for cls in ("right", "down")}
    with pytest.raises(UserError, match="holds val/down .*lightvid did not write"):  # it would write through them
        ensure_synth(root, workers=1, progress=False, **{**three, "seed": 5})
    (root / "val" / "right").unlink()
    ensure_synth(root, workers=1, progress=False, **TINY)  # 2 classes: val/down's old clips are stale
    assert read_stamp(root)["classes"] == 2
    assert {cls: hashes(tmp_path / cls) for cls in ("right", "down")} == before
