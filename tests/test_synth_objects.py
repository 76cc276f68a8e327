"""The synthetic objects generator: format, determinism, masks vs boxes, safe writes."""
import json

import cv2
import numpy as np
import pytest

from lightvid.data.cli import data_command
from lightvid.data.synth_objects import ACTIONS, CATEGORIES, generate_objects, mask_to_rle, rle_to_mask
from lightvid.errors import UserError

SMALL = dict(train=3, val=2, frames=4, size=64, max_objects=3, min_radius=6, max_radius=10, distractor_prob=0.8)


def test_rle_round_trip():
    rng = np.random.default_rng(0)
    for shape in [(5, 7), (1, 1), (4, 4)]:
        m = rng.uniform(size=shape) > 0.5
        assert (rle_to_mask(mask_to_rle(m)) == m).all()
    m = np.zeros((3, 2), bool)
    m[0, 0] = m[1, 0] = True
    assert mask_to_rle(m)["counts"] == [0, 2, 4]  # column-major, starts with the zeros' run


def test_generate_format_and_determinism(tmp_path):
    a, written = generate_objects(tmp_path / "a", workers=1, **SMALL)
    assert written
    stamp = json.loads((a / "objects.json").read_text())
    assert stamp["categories"] == list(CATEGORIES) and stamp["actions"] == list(ACTIONS)
    assert stamp["videos"] == {"train": ["v00000", "v00001", "v00002"], "val": ["v00000", "v00001"]}
    n_ann = 0
    for split, names in stamp["videos"].items():
        for name in names:
            doc = json.loads((a / split / name / "annotations.json").read_text())
            assert len(doc["images"]) == 4 and {t["track_id"] for t in doc["tracks"]}
            for ann in doc["annotations"]:
                mask = rle_to_mask(ann["segmentation"])
                ys, xs = np.nonzero(mask)
                x, y, w, h = ann["bbox"]
                assert (xs.min(), ys.min(), xs.max() + 1 - x, ys.max() + 1 - y) == (x, y, w, h)
                assert mask.sum() == ann["area"] and 0 < ann["visibility"] <= 1
                assert 1 <= ann["category_id"] <= len(CATEGORIES) and 1 <= ann["action_id"] <= len(ACTIONS)
                n_ann += 1
            frame = cv2.imread(str(a / split / name / doc["images"][0]["file_name"]))
            assert frame.shape == (64, 64, 3)
    assert n_ann > 0
    b, _ = generate_objects(tmp_path / "b", workers=2, **SMALL)
    for split, names in stamp["videos"].items():
        for name in names:
            for f in ("annotations.json", "000003.png"):
                assert (a / split / name / f).read_bytes() == (b / split / name / f).read_bytes()
    # same parameters: kept as is; other parameters or a foreign folder: refused, nothing touched
    assert generate_objects(a, workers=1, **SMALL) == (a, False)
    with pytest.raises(UserError, match="other parameters"):
        generate_objects(a, workers=1, **{**SMALL, "seed": 1})
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="not a lightvid objects set"):
        generate_objects(foreign, workers=1, **SMALL)
    assert [p.name for p in foreign.iterdir()] == ["keep.txt"]


def test_occlusion_and_distractors_occur(tmp_path):
    root, _ = generate_objects(tmp_path / "o", workers=1, **{**SMALL, "train": 8, "val": 1})
    vis, twins = [], 0
    for d in sorted((root / "train").iterdir()):
        doc = json.loads((d / "annotations.json").read_text())
        vis += [a["visibility"] for a in doc["annotations"]]
        twins += sum(t["distractor_of"] is not None for t in doc["tracks"])
    assert min(vis) < 0.95 and twins > 0


def test_cli_and_photo_backgrounds(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        cv2.imwrite(str(photos / f"p{i}.jpg"), rng.integers(0, 255, (50, 70, 3), dtype=np.uint8))
    out = tmp_path / "set"
    argv = ["synth-objects", str(out), "--train", "1", "--val", "1", "--frames", "3", "--size", "48",
            "--min-radius", "5", "--max-radius", "8", "--backgrounds", str(photos), "--patches", "--workers", "1"]
    assert data_command(argv) == 0
    assert "written" in capsys.readouterr().out
    assert data_command(argv) == 0
    assert "already there" in capsys.readouterr().out
    with pytest.raises(UserError, match="too small"):
        generate_objects(tmp_path / "x", size=20)
