"""Single-object tracking: OTB metrics, the contrastive loss, ROI align, NCC and Siamese trackers, CLI."""
import json
import math

import numpy as np
import pytest
import torch

import lightvid
from lightvid.errors import UserError
from lightvid.models.sint import marginal_contrastive_loss
from lightvid.track.metrics import TrackerScore, centre_error, iou_xywh, score_sequence, success_curve
from lightvid.track.ncc import NCCTracker
from lightvid.track.sequences import load_sequence
from lightvid.track.synth import DEFAULTS, coco_document, render_sequence
from lightvid.track.tracker import SiameseTracker, TrackerConfig, run_tracker

TINY = dict(DEFAULTS, frames=6, width=96, height=80, min_size=14, max_size=20, max_objects=3, twins=1, occluders=0)


def test_iou_and_centre_error_known_values():
    a = [[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]]
    b = [[0, 0, 10, 10], [5, 0, 10, 10], [20, 20, 5, 5], [0, 0, 5, 10]]
    np.testing.assert_allclose(iou_xywh(a, b), [1.0, 50 / 150, 0.0, 0.5])
    np.testing.assert_allclose(centre_error(a, b), [0.0, 5.0, math.hypot(17.5, 17.5), 2.5])


def test_success_and_precision_curves_by_hand():
    gt = [[0, 0, 10, 10]] * 4
    pred = [[0, 0, 10, 10], [0, 0, 10, 10], [5, 0, 10, 10], [30, 0, 10, 10]]  # IoU 1, 1, 1/3, 0
    s = score_sequence(pred, gt, "hand")
    np.testing.assert_allclose(s.ious, [1, 1, 1 / 3, 0])
    curve = success_curve(s.ious)
    assert curve[0] == 0.75 and curve[6] == 0.75 and curve[7] == 0.5 and curve[20] == 0.0  # t = 0, .30, .35, 1
    score = TrackerScore("hand", [s])
    assert score.auc == pytest.approx((7 * 0.75 + 13 * 0.5) / 21)
    # centre errors 0, 0, 5, 30: within 20 px three of four; within 4 px two
    assert score.precision_at_20 == 0.75 and score.precision[4] == 0.5 and score.precision[50] == 1.0


def test_missing_ground_truth_is_left_out_and_lost_boxes_score_zero():
    gt = [[0, 0, 10, 10], None, [0, 0, 10, 10], [0, 0, 0, 0]]
    pred = [[0, 0, 10, 10], [50, 50, 10, 10], [float("nan")] * 4, [0, 0, 10, 10]]
    s = score_sequence(pred, gt)
    assert s.skipped == 2 and list(s.ious) == [1.0, 0.0] and np.isinf(s.errors[1])
    with pytest.raises(ValueError, match="3 predicted boxes for 4"):
        score_sequence(pred[:3], gt)


def test_marginal_contrastive_loss_formula():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[0.0, 1.0], [0.0, 1.0], [0.6, 0.8]])  # D^2 = 2, 2, 0.16 + 0.64 = 0.8
    y = torch.tensor([1, 0, 0])
    # positive: 1/2 * 2; negative beyond the margin (sigma = 1 < 2): 0; negative inside: 1/2 * (1 - 0.8)
    expected = (0.5 * 2 + 0.0 + 0.5 * (1 - 0.8)) / 3
    assert marginal_contrastive_loss(a, b, y, margin=1.0).item() == pytest.approx(expected)
    assert marginal_contrastive_loss(a, a, torch.ones(3)).item() == 0.0


def test_sint_embeddings_are_unit_norm_and_batched_per_image():
    model = lightvid.create_model("sint").eval()
    x = torch.randn(2, 3, 64, 64)
    rois = torch.tensor([[0, 8.0, 8.0, 40.0, 40.0], [1, 8.0, 8.0, 40.0, 40.0], [1, 20.0, 16.0, 50.0, 60.0]])
    with torch.no_grad():
        feats = model.forward_features(x)
        emb = model.embed_rois(feats, rois)
        one = model.embed_rois(feats[1:], torch.tensor([[0, 8.0, 8.0, 40.0, 40.0]]))
    assert emb.shape == (3, model.num_features)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(emb[1], one[0], atol=1e-5, rtol=1e-5)  # same box, same image: same embedding
    assert not torch.allclose(emb[0], emb[1])


def _moving_square(frames=12, step=(3, 2)):
    rng = np.random.default_rng(0)
    bg = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    tex = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
    out, boxes = [], []
    for t in range(frames):
        f = bg.copy()
        x, y = 20 + step[0] * t, 30 + step[1] * t
        f[y:y + 20, x:x + 20] = tex
        out.append(f)
        boxes.append([x, y, 20, 20])
    return np.stack(out), np.array(boxes, dtype=float)


def test_ncc_baseline_follows_a_moving_square():
    frames, gt = _moving_square()
    result = run_tracker(NCCTracker(), frames, gt[0])
    assert len(result.boxes) == len(frames) and result.boxes[0] == list(gt[0])
    assert iou_xywh(result.boxes, gt).min() > 0.8


def _tiny_sequence(tmp_path, seed=0):
    frames, tracks, anns = render_sequence(np.random.default_rng(seed), TINY)
    folder = tmp_path / f"v{seed}"
    folder.mkdir()
    import cv2

    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:06d}.png"), f[..., ::-1])
    (folder / "annotations.json").write_text(json.dumps(coco_document(folder.name, "test", frames, tracks, anns)))
    return folder


def test_generated_sequence_loads_with_lookalikes(tmp_path):
    seq = load_sequence(_tiny_sequence(tmp_path) / "annotations.json")
    assert seq.frames.shape == (6, 80, 96, 3)
    assert seq.lookalikes == {2: 1}  # the first object's twin
    assert set(seq.tracks) >= {1, 2} and all(b.shape == (6, 4) for b in seq.tracks.values())


def test_bad_annotation_names_the_key(tmp_path):
    bad = tmp_path / "a.json"
    bad.write_text(json.dumps({"images": [{"id": 1, "frame_index": 0, "file_name": "x.png"}],
                               "annotations": [{"image_id": 1, "bbox": [0, 0, 4, 4]}]}))
    with pytest.raises(UserError, match=r"annotations\[0\]: missing key 'track_id'"):
        load_sequence(bad)


@pytest.mark.parametrize("regression", [False, True])
def test_siamese_tracker_returns_one_box_per_frame(tmp_path, regression):
    seq = load_sequence(_tiny_sequence(tmp_path) / "annotations.json")
    start, box = seq.first_box(1)
    model = lightvid.create_model("sint")
    config = TrackerConfig(input_size=64, box_regression=regression, regression_samples=64)
    result = run_tracker(SiameseTracker(model, config), seq.frames[start:], box)
    boxes = np.array(result.boxes)
    assert boxes.shape == (len(seq.frames) - start, 4) and np.isfinite(boxes).all()
    assert list(boxes[0]) == list(box) and (boxes[:, 2:] > 0).all()
    assert torch.get_num_threads() >= 1  # the tracker's thread setting is restored


@pytest.mark.slow
def test_train_then_track_and_eval_cli(tmp_path, capsys):
    from lightvid.cli import main
    from lightvid.track.pairs import PairConfig
    from lightvid.track.train import TrainConfig, train_sint

    data = tmp_path / "data"
    data.mkdir()
    seqs = [load_sequence(_tiny_sequence(data, s) / "annotations.json") for s in range(2)]
    ckpt = train_sint(seqs, tmp_path / "run", TrainConfig(steps=2, batch_size=2, threads=1),
                      PairConfig(input_size=64, candidates=12, positives=3, distractors=2), progress=False)
    with pytest.raises(UserError, match="exists"):
        train_sint(seqs, tmp_path / "run", TrainConfig(steps=1, batch_size=2), progress=False)
    frames = data / "v0"
    start, box = seqs[0].first_box(1)
    assert start == 0
    out = tmp_path / "boxes.json"
    argv = ["track", str(frames), "--box", ",".join(str(v) for v in box), "--checkpoint", str(ckpt),
            "--out", str(out), "--video", str(tmp_path / "out.mp4")]
    assert main(argv) == 0
    boxes = json.loads(out.read_text())["boxes"]
    assert len(boxes) == 6 and boxes[0] == [float(v) for v in box]
    assert (tmp_path / "out.mp4").stat().st_size > 0
    assert main(argv) == 2  # refuses to overwrite
    assert "exists" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: usage and one error line
        main(["track", str(frames), "--box", "1,2,3"])
    assert "--box expects x,y,w,h" in capsys.readouterr().err
    assert main(["eval", "--task", "track", "--checkpoint", str(ckpt), "--data", str(data), "--split", "",
                 "--out", str(tmp_path / "ev"), "--min-frames", "4", "--json"]) == 0
    res = json.loads((tmp_path / "ev" / "track_eval.json").read_text())
    assert set(res["results"]) == {"sint", "ncc"} and res["targets"] >= 2
    assert 0 <= res["results"]["ncc"]["success_auc"] <= 1
    assert (tmp_path / "ev" / "success_plot.png").is_file() and (tmp_path / "ev" / "precision_plot.png").is_file()


def test_reads_the_synthetic_objects_format(tmp_path):
    from lightvid.data.synth_objects import generate_objects
    from lightvid.track.sequences import find_sequences

    generate_objects(tmp_path / "objs", workers=1, train=1, val=1, frames=4)
    files = find_sequences(tmp_path / "objs", "train")
    seq = load_sequence(files[0])
    assert seq.frames.shape[0] == 4 and seq.tracks
    for tid, boxes in seq.tracks.items():
        ok = seq.usable(tid, 0.0)
        assert ok.any() and (boxes[ok, 2:] > 0).all()
