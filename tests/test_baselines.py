"""The classic baselines (Part 1 of the scene-recognition report) on small generated image and video sets,
and scene15."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest

from lightvid.baselines.bow import BowConfig, dense_sift, histogram, vocab_key
from lightvid.baselines.folders import find_data, frame_indices
from lightvid.baselines.report import confusion_matrix, per_class_accuracy
from lightvid.baselines.tiny import tiny_feature
from lightvid.cli import main
from lightvid.errors import UserError

ANGLES = (0.0, 45.0, 90.0, 135.0)  # one grating orientation per class
LAYOUTS = ("top", "bottom", "left", "right")  # one bright half per class


def texture(cls: int, rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """Class ``cls``: a grating of one orientation (random phase, frequency) over a bright half, plus noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    theta = np.deg2rad(ANGLES[cls] + rng.uniform(-8, 8))
    freq = rng.uniform(0.35, 0.5)
    grating = np.sin(freq * (xx * np.cos(theta) + yy * np.sin(theta)) + rng.uniform(0, 2 * np.pi))
    half = {"top": yy < size / 2, "bottom": yy >= size / 2, "left": xx < size / 2,
            "right": xx >= size / 2}[LAYOUTS[cls]]
    img = 90 + 60 * half + 45 * grating + rng.normal(0, 12, (size, size))
    return np.clip(img, 0, 255).astype(np.uint8)


def make_image_set(root: Path, train: int = 10, test: int = 6, classes: int = 4) -> Path:
    import cv2

    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("test", test)):
        for c in range(classes):
            d = root / split / f"class{c}"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                cv2.imwrite(str(d / f"{i:03d}.jpg"), texture(c, rng))
    return root


@pytest.fixture(scope="module")
def image_set(tmp_path_factory) -> Path:
    return make_image_set(tmp_path_factory.mktemp("textures"))


def run_json(args) -> dict:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(args) == 0
    return json.loads(buf.getvalue())


def test_tiny_command(image_set, tmp_path):
    out = tmp_path / "tiny"
    res = run_json(["baseline", "tiny", "--data", str(image_set), "--out", str(out), "--json"])
    assert res["accuracy"] >= 0.9  # the bright half is plain to see at 16x16
    assert set(res["per_class"]) == {f"class{c}" for c in range(4)}
    assert res["seconds"] > 0 and res["num_train"] == 40 and res["num_test"] == 24
    assert res["params"] == dict(size=16, norm="l2", center=True, metric="cityblock", k=1)
    with open(out / "confusion.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["true\\predicted", "class0", "class1", "class2", "class3"]
    counts = np.array([[int(v) for v in r[1:]] for r in rows[1:]])
    assert counts.sum() == 24 and counts.trace() == round(res["accuracy"] * 24)
    assert (out / "confusion.png").stat().st_size > 1000
    assert json.loads((out / "result.json").read_text())["accuracy"] == res["accuracy"]


def test_bow_knn_and_svm_with_cached_vocabulary(image_set, tmp_path):
    common = ["baseline", "bow", "--data", str(image_set), "--step", "8", "--sift-size", "3", "--vocab", "24",
              "--vocab-samples", "3000", "--cache", str(tmp_path / "cache"), "--no-outputs", "--json"]
    svm = run_json(common + ["--classifier", "svm"])
    assert svm["accuracy"] >= 0.9  # orientation is what SIFT sees
    assert "vocabulary" in svm["timings"]
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    knn = run_json(common + ["--classifier", "knn", "--k", "3"])
    assert "vocabulary (cached)" in knn["timings"]  # the same parameters and files: k-means is skipped
    assert knn["accuracy"] >= 0.75
    assert knn["params"]["k"] == 3 and "C" not in knn["params"]


def test_text_report_and_errors(image_set, tmp_path, capsys):
    assert main(["baseline", "tiny", "--data", str(image_set), "--k", "3", "--metric", "euclidean",
                 "--out", str(tmp_path / "o")]) == 0
    text = capsys.readouterr().out
    assert "accuracy:" in text and "per-class accuracy:" in text and "class3" in text and "time:" in text
    assert main(["baseline", "tiny", "--data", str(tmp_path / "nowhere")]) == 2
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "only" / "train" / "a").mkdir(parents=True)
    assert main(["baseline", "bow", "--data", str(tmp_path / "only")]) == 2
    assert "no test/ or val/ folder" in capsys.readouterr().err
    assert main(["baseline", "bow", "--data", str(image_set), "--step", "0"]) == 2
    assert "--step must be >= 1" in capsys.readouterr().err


def test_unreadable_image_is_skipped_and_counted(tmp_path, capsys):
    root = make_image_set(tmp_path / "d", train=4, test=2, classes=2)
    (root / "test" / "class1" / "broken.jpg").write_bytes(b"not a jpeg")
    res = run_json(["baseline", "tiny", "--data", str(root), "--no-outputs", "--json"])
    assert res["num_bad"] == 1 and res["num_test"] == 5
    assert sum(map(sum, res["confusion"])) == 4
    assert "broken.jpg" in capsys.readouterr().err
    (root / "test" / "stranger").mkdir()
    with pytest.raises(UserError, match="stranger"):
        find_data(root)


def test_building_blocks():
    img = texture(0, np.random.default_rng(1))
    v = tiny_feature(img, 16, "l1")
    assert v.shape == (256,) and abs(v.mean()) < 1e-6 and np.isclose(np.abs(v).sum(), 1.0)
    clip = np.stack([img, img[::-1]])
    assert tiny_feature(clip, 8, "l2").shape == (128,)
    d = dense_sift(img, step=8, size=3)
    assert d.shape == (64, 128) and d.dtype == np.uint8 and d.max() > 0
    centers = np.random.default_rng(0).uniform(0, 50, (10, 128)).astype(np.float32)
    h = histogram(d, centers, "sqrt")
    assert h.shape == (10,) and np.isclose(np.linalg.norm(h), 1.0)
    assert np.isclose(histogram(d, centers, "l1").sum(), 1.0)
    # a spatial pyramid: level 0 equals the plain histogram, each 2x2 cell counts its quarter
    pos = np.array([[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.6, 0.2]], np.float16)
    four = np.stack([centers[3], centers[3], centers[5], centers[7]])
    pyr = histogram(four, centers, "l1", pos, levels=1) * 2  # level weights 1/2 and 1/2, total 1 -> 2
    assert pyr.shape == (50,)
    assert np.allclose(pyr[:10], histogram(four, centers, "l1")) and np.isclose(pyr.sum(), 2.0)
    cells = pyr[10:].reshape(4, 10)  # (cell = row * 2 + column, word)
    assert cells[0, 3] == 0.25 and cells[1, 3] == 0.25 and cells[1, 7] == 0.25 and cells[3, 5] == 0.25
    cm = confusion_matrix(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]), 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]
    assert per_class_accuracy(cm, ["a", "b", "c"]) == {"a": 0.5, "b": 1.0, "c": 0.0}
    assert frame_indices(10, 4) == [1, 3, 6, 8] and frame_indices(3, 5) == [0, 0, 1, 2, 2]


def test_vocab_key_depends_on_files_and_params(tmp_path):
    root = make_image_set(tmp_path / "d", train=2, test=1, classes=2)
    data = find_data(root)
    k1, k2 = vocab_key(BowConfig(), data), vocab_key(BowConfig(vocab=10), data)
    assert k1 == vocab_key(BowConfig(), find_data(root))
    (root / "train" / "class0" / "000.jpg").unlink()
    k3 = vocab_key(BowConfig(), find_data(root))
    assert len({k1, k2, k3}) == 3


def make_video_set(root: Path, train: int = 4, val: int = 3, classes: int = 2, frames: int = 10) -> Path:
    from lightvid.data.synth import write_mp4

    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("val", val)):
        for c in range(classes):
            d = root / split / f"class{c}"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                base = texture(c, rng, 48)
                clip = np.stack([np.roll(base, t, axis=1) for t in range(frames)])  # (T, H, W) a moving texture
                write_mp4(d / f"v{i}.mp4", np.repeat(clip[..., None], 3, axis=3))
    return root


def test_video_versions(tmp_path):
    root = make_video_set(tmp_path / "videos")
    tiny = run_json(["baseline", "tiny", "--data", str(root), "--frames", "4", "--no-outputs", "--json"])
    assert tiny["kind"] == "video" and tiny["num_test"] == 6 and tiny["params"]["frames"] == 4
    assert tiny["accuracy"] >= 5 / 6
    bow = run_json(["baseline", "bow", "--data", str(root), "--frames", "3", "--step", "8", "--sift-size", "3",
                    "--vocab", "16", "--vocab-samples", "2000", "--no-cache", "--no-outputs", "--json"])
    assert bow["kind"] == "video" and bow["accuracy"] >= 5 / 6


@pytest.mark.slow
def test_scene15_tiny_meets_the_seed(shared_data, tmp_path):
    """The seed's tiny-image accuracy (0.2233) on the real 15-scene test set (about 30 s)."""
    res = run_json(["baseline", "tiny", "--data", str(shared_data / "scene15"), "--out", str(tmp_path), "--json"])
    assert res["num_train"] == 1500 and res["num_test"] == 2985 and len(res["classes"]) == 15
    assert res["accuracy"] >= 0.2233
