"""Dataset formats on tiny fixtures of their own: list, folders, UCF101, HMDB51, Kinetics CSV, images."""
import pickle
import shutil
import zipfile

import cv2
import numpy as np
import pytest

from lightvid.data import formats, images
from lightvid.data.build import DataConfig
from lightvid.errors import UserError


@pytest.fixture
def clip(tiny_synth):
    return next((tiny_synth / "train" / "right").glob("*.mp4"))


def _put(path, src):
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, path)
    return path


def test_list_and_folders(tiny_synth):
    samples, classes = formats.list_file(tiny_synth, "train")
    assert classes == ["right", "left", "down", "up"] and len(samples) == 16
    assert all(p.parent.name == classes[label] for p, label in samples)
    f_samples, f_classes = formats.folders(tiny_synth, "val")
    assert f_classes == classes and len(f_samples) == 8
    assert sorted(f_samples) == sorted(formats.list_file(tiny_synth, "val")[0])
    assert formats.detect(tiny_synth, "train") == "list"


def test_list_file_errors(tmp_path, clip):
    _put(tmp_path / "a" / "x.mp4", clip)
    (tmp_path / "classes.txt").write_text("a\nb\n")
    cases = {"a/x.mp4 0\nbroken\n": "train.txt:2: expected", "a/x.mp4 zero\n": "train.txt:1: label 'zero'",
             "a/x.mp4 0\na/x.mp4 7\n": "train.txt:2: unknown label 7",
             "a/y.mp4 1\n": "train.txt:1: listed video .*y.mp4 does not exist"}
    for text, msg in cases.items():
        (tmp_path / "train.txt").write_text(text)
        with pytest.raises(UserError, match=msg):
            formats.list_file(tmp_path, "train")
    (tmp_path / "train.txt").write_text("a/x.mp4 b\na/y.mp4 1\n")  # names are accepted as labels
    with pytest.warns(UserWarning, match="1 of 2 listed videos"):
        samples, _ = formats.list_file(tmp_path, "train", on_missing="skip")
    assert samples == [(tmp_path / "a" / "x.mp4", 1)]


def test_ucf101(tmp_path, clip):
    ann = tmp_path / "ucfTrainTestlist"
    ann.mkdir()
    (ann / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Archery\n")
    for cls in ("ApplyEyeMakeup", "Archery"):
        for g in (1, 2):
            _put(tmp_path / cls / f"v_{cls}_g0{g}_c01.avi", clip)
    (ann / "trainlist01.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi 1\n"
                                         "Archery/v_Archery_g01_c01.avi 2\n")
    (ann / "testlist01.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g02_c01.avi\nArchery/v_Archery_g02_c01.avi\n")
    assert formats.detect(tmp_path, "train") == "ucf101"
    train, classes = formats.ucf101(tmp_path, "train")
    test, _ = formats.ucf101(tmp_path, "val")
    assert classes == ["ApplyEyeMakeup", "Archery"]
    assert [label for _, label in train] == [0, 1] and [p.name for p, _ in test][1] == "v_Archery_g02_c01.avi"
    (ann / "trainlist01.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi 1\n"
                                         "Bowling/v_Bowling_g01_c01.avi 3\n")
    with pytest.raises(UserError, match="trainlist01.txt:2: unknown class 'Bowling'"):
        formats.ucf101(tmp_path, "train")
    (ann / "trainlist01.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi 2\n")
    with pytest.raises(UserError, match="trainlist01.txt:1: label '2' does not match"):
        formats.ucf101(tmp_path, "train")


def test_hmdb51(tmp_path, clip):
    for cls in ("brush_hair", "cartwheel"):
        lines = []
        for i, mark in enumerate("120"):
            _put(tmp_path / cls / f"{cls}_{i}.avi", clip)
            lines.append(f"{cls}_{i}.avi {mark} \n")
        (tmp_path / f"{cls}_test_split1.txt").write_text("".join(lines))
    assert formats.detect(tmp_path, "train") == "hmdb51"
    train, classes = formats.hmdb51(tmp_path, "train", fold=1)
    test, _ = formats.hmdb51(tmp_path, "val", fold=1)
    assert classes == ["brush_hair", "cartwheel"]
    assert [p.name for p, _ in train] == ["brush_hair_0.avi", "cartwheel_0.avi"]
    assert [(p.name, label) for p, label in test] == [("brush_hair_1.avi", 0), ("cartwheel_1.avi", 1)]
    (tmp_path / "cartwheel_test_split1.txt").write_text("cartwheel_0.avi 5\n")
    with pytest.raises(UserError, match="cartwheel_test_split1.txt:1: expected"):
        formats.hmdb51(tmp_path, "train", fold=1)
    with pytest.raises(UserError, match="no \\*_test_split2.txt"):
        formats.hmdb51(tmp_path, "train", fold=2)


def test_kinetics_csv(tmp_path, clip):
    rows = [("abseiling", "aaa", 10, 20, "train"), ("air drumming", "bbb", 0, 10, "train"),
            ("abseiling", "ccc", 5, 15, "val")]
    (tmp_path / "kinetics.csv").write_text("label,youtube_id,time_start,time_end,split\n"
                                           + "".join(f'"{r[0]}",{r[1]},{r[2]},{r[3]},{r[4]}\n' for r in rows))
    _put(tmp_path / "train" / "abseiling" / "aaa_000010_000020.mp4", clip)
    _put(tmp_path / "train" / "air drumming" / "bbb_000000_000010.mp4", clip)
    _put(tmp_path / "val" / "ccc_000005_000015.mp4", clip)  # flat split folder works too
    assert formats.detect(tmp_path, "train") == "kinetics_csv"
    train, classes = formats.kinetics_csv(tmp_path, "train")
    val, _ = formats.kinetics_csv(tmp_path, "val")
    assert classes == ["abseiling", "air drumming"] and [label for _, label in train] == [0, 1]
    assert val == [(tmp_path / "val" / "ccc_000005_000015.mp4", 0)]
    with open(tmp_path / "kinetics.csv", "a") as fh:
        fh.write("zumba,ddd,0,10,val\n")
    with pytest.raises(UserError, match="kinetics.csv:5: unknown label 'zumba'"):
        formats.kinetics_csv(tmp_path, "val")
    (tmp_path / "kinetics.csv").write_text("label,youtube_id\nx,y\n")
    with pytest.raises(UserError, match="kinetics.csv:1: CSV header lacks time_start"):
        formats.kinetics_csv(tmp_path, "train")


def _jpg(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((12, 10, 3), value, np.uint8))


def test_image_folder_and_zip(tmp_path):
    for split in ("train", "val"):
        for c, v in (("cat", 30), ("dog", 220)):
            for i in range(2):
                _jpg(tmp_path / "imgs" / split / c / f"{i}.jpg", v)
    src = images.FolderImages(tmp_path / "imgs", "train")
    assert src.classes == ["cat", "dog"] and src.labels == [0, 0, 1, 1]
    img = src.load(3)
    assert img.shape == (12, 10, 3) and abs(int(img.float().mean()) - 220) < 4
    assert formats.detect(tmp_path / "imgs", "train") == "image_folder"
    with zipfile.ZipFile(tmp_path / "imgs.zip", "w") as zf:
        for p in sorted((tmp_path / "imgs").rglob("*.jpg")):
            zf.write(p, "top/" + p.relative_to(tmp_path / "imgs").as_posix())
        zf.writestr("top/train/dog/bad.jpg", b"not a jpeg")
    z = images.ZipImages(tmp_path / "imgs.zip", "train")
    assert z.classes == ["cat", "dog"] and len(z) == 5
    assert abs(int(z.load(0).float().mean()) - 30) < 4
    with pytest.raises(images.ImageDecodeError, match="imgs.zip:top/train/dog/bad.jpg: not a readable image"):
        z.load(z.members.index("top/train/dog/bad.jpg"))
    with pytest.raises(UserError, match="no images under test/"):
        images.ZipImages(tmp_path / "imgs.zip", "test")


def test_cifar10_and_digits(tmp_path):
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
        with open(tmp_path / name, "wb") as fh:
            pickle.dump({b"data": data, b"labels": [0, 1, 2, 9]}, fh)
    with open(tmp_path / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, fh)
    assert formats.detect(tmp_path, "train") == "cifar10"
    train, test = images.cifar10(tmp_path, "train"), images.cifar10(tmp_path, "val")
    assert len(train) == 20 and len(test) == 4 and train.classes[9] == "c9"
    with open(tmp_path / "test_batch", "rb") as fh:
        raw = pickle.load(fh)[b"data"][1]
    assert np.array_equal(test.load(1).numpy()[..., 0].ravel(), raw[:1024])  # red plane, row-major
    (tmp_path / "test_batch").write_bytes(b"junk")
    with pytest.raises(UserError, match="test_batch: not a CIFAR-10 pickle batch"):
        images.cifar10(tmp_path, "val")
    d_train, d_val = images.digits("train"), images.digits("val")
    assert len(d_train) + len(d_val) == 1797 and d_train.load(0).shape == (8, 8, 3)
    assert DataConfig(root="digits").resolved_format() == "digits"


def test_cifar10_zip(shared_data):
    z = images.ZipImages(shared_data / "cifar10-jpeg.zip", "test")
    assert len(z.classes) == 10 and len(z) == 10000
    assert z.load(0).shape == (32, 32, 3)
